# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""NetworkManager's logic over an in-memory Networks: live updates, restart, check mode, absent."""

from __future__ import annotations

import copy

import pytest
from fakes import NETWORK_UUID as UUID
from fakes import MemoryDriver

from ansible_collections.virtops.qemu.plugins.module_utils.driver.base import Lease
from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError, InvalidInput, NotFound
from ansible_collections.virtops.qemu.plugins.module_utils.manager.network import (
    NetworkManager,
    describe,
    request_from_params,
)

HOST = {"mac": "52:54:00:00:00:01", "name": "one", "ip": "10.5.5.10"}


def params(**options):
    base = {"name": "n1", "state": "active", "forward": {"mode": "nat"},
            "ips": [{"address": "10.5.5.1", "prefix": 24, "dhcp": {"hosts": [HOST]}}]}
    return {**base, **options}


def ensure(networks, check=False, **options):
    return NetworkManager(networks).ensure(request_from_params(params(**options)), check)


@pytest.fixture
def nets():
    networks = MemoryDriver().networks
    networks.leases_of["n1"] = [Lease("52:54:00:00:00:01", "10.5.5.10", 24, "one", 0, "ipv4")]
    return networks


def with_second_host():
    second = {"mac": "52:54:00:00:00:02", "ip": "10.5.5.11"}
    return [{"address": "10.5.5.1", "prefix": 24, "dhcp": {"hosts": [HOST, second]}}]


def test_create_then_nothing_to_do(nets):
    predicted = ensure(nets, check=True)
    assert nets.calls == []
    assert (predicted["changed"], predicted["state"], predicted["bridge"]) == (True, "active", None)
    assert "<port start=\"1024\" end=\"65535\"/>" in predicted["xml"]
    first = ensure(nets)
    assert nets.calls == ["define", "start"]
    assert (first["changed"], first["state"], first["bridge"], first["uuid"]) == (True, "active", "virbr7", UUID)
    again = ensure(nets)
    assert not again["changed"] and again["diff"]["before"] == again["diff"]["after"]
    assert nets.calls == ["define", "start"]


def test_added_host_goes_live_and_into_the_definition(nets):
    ensure(nets)
    nets.calls.clear()
    predicted = ensure(nets, check=True, ips=with_second_host())
    assert nets.calls == []
    real = ensure(nets, ips=with_second_host())
    assert nets.calls == ["define", ("update", "add-last", "ip-dhcp-host", 0)]
    assert real["live_updates"] == ['add ip-dhcp-host <host mac="52:54:00:00:00:02" ip="10.5.5.11"/>']
    assert (real["changed"], real["restart_required"]) == (True, False)
    for key in ("changed", "live_updates", "diff", "restart_required", "state", "bridge"):
        assert predicted[key] == real[key], key
    assert "52:54:00:00:00:02" in nets.running["n1"] and "52:54:00:00:00:02" in nets.defs["n1"]
    assert not ensure(nets, ips=with_second_host())["changed"]


def test_live_only_difference_is_applied_without_a_define(nets):
    ensure(nets)
    ensure(nets, state="present", ips=with_second_host())
    nets.running["n1"] = nets.running["n1"].replace('<host mac="52:54:00:00:00:02" ip="10.5.5.11"/>', "")
    nets.calls.clear()
    result = ensure(nets, ips=with_second_host())
    assert nets.calls == [("update", "add-last", "ip-dhcp-host", 0)]
    assert result["changed"] and result["diff"]["before"] == result["diff"]["after"]


def test_forward_change_needs_a_restart(nets):
    ensure(nets)
    nets.calls.clear()
    result = ensure(nets, forward={"mode": "route"})
    assert (result["changed"], result["restart_required"], result["live_updates"]) == (True, True, [])
    assert nets.calls == ["define"]
    assert "mode=\"nat\"" in nets.running["n1"]
    again = ensure(nets, forward={"mode": "route"})
    assert (again["changed"], again["restart_required"]) == (False, True)


def test_restart_applies_it(nets):
    ensure(nets)
    ensure(nets, forward={"mode": "route"})
    nets.calls.clear()
    predicted = ensure(nets, check=True, forward={"mode": "route"}, restart=True)
    result = ensure(nets, forward={"mode": "route"}, restart=True)
    assert nets.calls == ["stop", "start"]
    assert (result["changed"], result["restart_required"], result["state"]) == (True, False, "active")
    assert predicted["changed"] and predicted["state"] == "active"
    assert "mode=\"route\"" in nets.running["n1"]


def test_a_mixed_change_is_not_applied_live(nets):
    ensure(nets)
    nets.calls.clear()
    result = ensure(nets, forward={"mode": "route"}, ips=with_second_host())
    assert result["live_updates"] == [] and result["restart_required"]
    assert nets.calls == ["define"]


def test_inactive_network_changes_only_its_definition(nets):
    ensure(nets, state="inactive")
    nets.calls.clear()
    result = ensure(nets, state="inactive", ips=with_second_host())
    assert nets.calls == ["define"]
    assert (result["state"], result["bridge"], result["live_updates"], result["restart_required"]) == \
        ("inactive", None, [], False)


def test_stop_and_absent(nets):
    ensure(nets)
    stopped = ensure(nets, state="inactive")
    assert (stopped["changed"], stopped["state"]) == (True, "inactive") and "n1" not in nets.running
    ensure(nets)
    predicted = ensure(nets, check=True, state="absent")
    assert predicted["changed"] and nets.exists("n1")
    gone = ensure(nets, state="absent")
    assert (gone["changed"], gone["state"], gone["live_updates"], gone["bridge"]) == (True, "absent", [], None)
    assert not nets.exists("n1")
    assert not ensure(nets, state="absent")["changed"]


def test_failed_live_update_reports_the_define(nets):
    ensure(nets)
    nets.fail("update", BackendError("dnsmasq refused"))
    with pytest.raises(BackendError, match="network 'n1' was defined but the update of the running network failed"):
        ensure(nets, ips=with_second_host())


def test_autostart(nets):
    ensure(nets)
    result = ensure(nets, autostart=True)
    assert result["changed"] and result["autostart"] and nets.autostarts["n1"]


def test_xml_request_checks_its_name_and_content():
    with pytest.raises(InvalidInput, match="xml: the XML names the network 'other'"):
        request_from_params({"name": "n1", "xml": "<network><name>other</name></network>"})
    with pytest.raises(InvalidInput, match=r"^xml: <forward mode>: unknown forward mode"):
        request_from_params({"name": "n1", "xml": "<network><forward mode='warp'/></network>"})
    request = request_from_params({"name": "n1", "xml": "<network><ip address='10.0.0.1'/></network>"})
    assert request.desired.findtext("name") == "n1" and request.owned_lists == {"network/ip"}
    assert request.state == "active"


def test_bad_name_and_state():
    with pytest.raises(InvalidInput, match="not a valid network name"):
        request_from_params({"name": "a/b"})
    with pytest.raises(InvalidInput, match="^state: "):
        request_from_params({"name": "n1", "state": "running"})


def test_describe_has_leases_and_bridge(nets):
    ensure(nets)
    info = describe(nets, "n1")
    assert (info["state"], info["bridge"], info["persistent"], info["uuid"]) == ("active", "virbr7", True, UUID)
    assert info["leases"] == [{"mac": "52:54:00:00:00:01", "ip": "10.5.5.10", "prefix": 24, "hostname": "one",
                               "expiry": 0, "type": "ipv4", "clientid": None}]
    ensure(nets, state="inactive")
    assert describe(nets, "n1")["leases"] == [] and describe(nets, "n1")["bridge"] is None


def test_missing_network_without_definition_is_not_found(nets):
    with pytest.raises(NotFound, match="network 'n9' is not defined"):
        NetworkManager(nets).ensure(request_from_params({"name": "n9"}), False)
    assert copy.copy(nets.calls) == []


@pytest.mark.parametrize("check", [True, False])
def test_a_subnet_overlapping_an_active_network_is_refused_before_anything_changes(nets, check):
    ensure(nets)
    nets.calls.clear()
    overlapping = [{"address": "10.5.0.1", "prefix": 16}]
    with pytest.raises(InvalidInput, match=r"ips: subnet 10.5.0.0/16 of network 'n2' overlaps subnet "
                                           r"10.5.5.0/24 of active network 'n1'"):
        ensure(nets, check=check, name="n2", ips=overlapping)
    assert nets.calls == [] and "n2" not in nets.defs
    # Defined but not started, it may overlap: libvirt allows that too.
    assert ensure(nets, name="n2", ips=overlapping, state="present")["changed"]
