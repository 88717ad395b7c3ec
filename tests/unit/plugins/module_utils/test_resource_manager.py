# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The generic resource manager on a kind that is not a domain: an in-memory network."""

from __future__ import annotations

import pytest
from fakes import NETWORK_UUID as UUID
from fakes import MemoryDriver
from lxml import etree

from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError, NotFound
from ansible_collections.virtops.qemu.plugins.module_utils.manager.resource import ResourceManager, ResourceRequest
from ansible_collections.virtops.qemu.plugins.module_utils.model.merge import Rules, differs_in, own_attr
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import parse

RULES = Rules(identity={"network/ip": own_attr("address")}, replace={"network/forward": differs_in("mode")})


ROUTE = "<network><name>n1</name><forward mode='route'/></network>"
NAT = "<network><name>n1</name><forward mode='nat'><nat><port start='1024' end='65535'/></nat></forward></network>"


def ensure(networks, check=False, xml=None, **params):
    desired = parse(xml, "network") if xml else None
    return ResourceManager(networks, RULES).ensure(ResourceRequest(desired=desired, **params), check)


@pytest.mark.parametrize("state, calls", [("present", ["define"]), ("active", ["define", "start"]),
                                          ("inactive", ["define"])])
def test_check_mode_predicts_the_real_run_and_the_repeat_changes_nothing(state, calls):
    networks = MemoryDriver().networks
    predicted = ensure(networks, check=True, name="n1", state=state, xml=NAT, autostart=True)
    assert networks.calls == []
    real = ensure(networks, name="n1", state=state, xml=NAT, autostart=True)
    assert networks.calls == calls[:1] + ["autostart"] + calls[1:]
    assert (predicted["changed"], predicted["state"]) == (real["changed"], real["state"])
    assert real["uuid"] == UUID and real["autostart"]
    again = ensure(networks, name="n1", state=state, xml=NAT, autostart=True)
    assert not again["changed"] and again["diff"]["before"] == again["diff"]["after"]


def test_a_forward_mode_switch_replaces_the_element_and_needs_a_restart():
    networks = MemoryDriver().networks
    ensure(networks, name="n1", state="active", xml=NAT)
    result = ensure(networks, name="n1", state="active", xml=ROUTE)
    stored = etree.fromstring(networks.defs["n1"])
    assert stored.find("forward").get("mode") == "route" and stored.find("forward/nat") is None
    assert result["changed"] and result["restart_required"] and networks.calls[-1] == "define"
    restarted = ensure(networks, name="n1", state="active", restart=True, xml=ROUTE)
    assert networks.calls[-2:] == ["stop", "start"] and not restarted["restart_required"]


def test_absent_stops_and_undefines():
    networks = MemoryDriver().networks
    ensure(networks, name="n1", state="active", xml=NAT)
    networks.calls.clear()
    assert ensure(networks, check=True, name="n1", state="absent")["changed"] and networks.calls == []
    result = ensure(networks, name="n1", state="absent")
    assert networks.calls == ["stop", "undefine"] and result["diff"]["after"] == "" and result["state"] == "absent"
    assert not ensure(networks, name="n1", state="absent")["changed"]


def test_an_unknown_object_without_definition_names_the_kind():
    with pytest.raises(NotFound, match="^network 'n1' is not defined"):
        ensure(MemoryDriver().networks, name="n1", state="active")


def test_a_failure_after_a_change_carries_the_partial_result():
    networks = MemoryDriver().networks
    networks.fail("start", BackendError("dnsmasq did not start"))
    with pytest.raises(BackendError, match="^network 'n1' was defined but failed to start: dnsmasq") as err:
        ensure(networks, name="n1", state="active", xml=NAT)
    assert err.value.result["changed"] and err.value.result["uuid"] == UUID
