# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The generic resource manager on a kind that is not a domain: an in-memory network."""

from __future__ import annotations

import pytest
from lxml import etree

from ansible_collections.virtops.qemu.plugins.module_utils.driver.base import Resources
from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError, NotFound
from ansible_collections.virtops.qemu.plugins.module_utils.manager.resource import ResourceManager, ResourceRequest
from ansible_collections.virtops.qemu.plugins.module_utils.model.merge import Rules, differs_in, own_attr
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import parse

RULES = Rules(identity={"network/ip": own_attr("address")}, replace={"network/forward": differs_in("mode")})
UUID = "0b3c2c59-5f4a-4d8a-9e4c-3c5d7b1c0a01"


class MemoryNetworks(Resources):
    """Keeps XML as given plus a uuid, as a network driver fills one in."""

    kind = "network"

    def __init__(self):
        self.defs, self.running, self.autostarts, self.calls = {}, {}, {}, []
        self.fail_start = False

    def names(self):
        return sorted(self.defs)

    def exists(self, name):
        return name in self.defs

    def xml(self, name, inactive=True):
        if name not in self.defs:
            raise NotFound(name)
        return self.defs[name] if inactive or name not in self.running else self.running[name]

    def define(self, xml):
        tree = etree.fromstring(xml)
        if tree.find("uuid") is None:
            etree.SubElement(tree, "uuid").text = UUID
        self.calls.append("define")
        self.defs[tree.findtext("name")] = etree.tostring(tree, encoding="unicode")
        self.autostarts.setdefault(tree.findtext("name"), False)

    def undefine(self, name):
        self.calls.append("undefine")
        del self.defs[name]

    def autostart(self, name):
        return self.autostarts[name]

    def set_autostart(self, name, enabled):
        self.calls.append("autostart")
        self.autostarts[name] = enabled

    def active(self, name):
        return name in self.running

    def start(self, name):
        if self.fail_start:
            raise BackendError("dnsmasq did not start")
        self.calls.append("start")
        self.running[name] = self.defs[name]

    def stop(self, name):
        self.calls.append("stop")
        del self.running[name]


ROUTE = "<network><name>n1</name><forward mode='route'/></network>"
NAT = "<network><name>n1</name><forward mode='nat'><nat><port start='1024' end='65535'/></nat></forward></network>"


def ensure(networks, check=False, xml=None, **params):
    desired = parse(xml, "network") if xml else None
    return ResourceManager(networks, RULES).ensure(ResourceRequest(desired=desired, **params), check)


@pytest.mark.parametrize("state, calls", [("present", ["define"]), ("active", ["define", "start"]),
                                          ("inactive", ["define"])])
def test_check_mode_predicts_the_real_run_and_the_repeat_changes_nothing(state, calls):
    networks = MemoryNetworks()
    predicted = ensure(networks, check=True, name="n1", state=state, xml=NAT, autostart=True)
    assert networks.calls == []
    real = ensure(networks, name="n1", state=state, xml=NAT, autostart=True)
    assert networks.calls == calls[:1] + ["autostart"] + calls[1:]
    assert (predicted["changed"], predicted["state"]) == (real["changed"], real["state"])
    assert real["uuid"] == UUID and real["autostart"]
    again = ensure(networks, name="n1", state=state, xml=NAT, autostart=True)
    assert not again["changed"] and again["diff"]["before"] == again["diff"]["after"]


def test_a_forward_mode_switch_replaces_the_element_and_needs_a_restart():
    networks = MemoryNetworks()
    ensure(networks, name="n1", state="active", xml=NAT)
    result = ensure(networks, name="n1", state="active", xml=ROUTE)
    stored = etree.fromstring(networks.defs["n1"])
    assert stored.find("forward").get("mode") == "route" and stored.find("forward/nat") is None
    assert result["changed"] and result["restart_required"] and networks.calls[-1] == "define"
    restarted = ensure(networks, name="n1", state="active", restart=True, xml=ROUTE)
    assert networks.calls[-2:] == ["stop", "start"] and not restarted["restart_required"]


def test_absent_stops_and_undefines():
    networks = MemoryNetworks()
    ensure(networks, name="n1", state="active", xml=NAT)
    networks.calls.clear()
    assert ensure(networks, check=True, name="n1", state="absent")["changed"] and networks.calls == []
    result = ensure(networks, name="n1", state="absent")
    assert networks.calls == ["stop", "undefine"] and result["diff"]["after"] == "" and result["state"] == "absent"
    assert not ensure(networks, name="n1", state="absent")["changed"]


def test_an_unknown_object_without_definition_names_the_kind():
    with pytest.raises(NotFound, match="^network 'n1' is not defined"):
        ensure(MemoryNetworks(), name="n1", state="active")


def test_a_failure_after_a_change_carries_the_partial_result():
    networks = MemoryNetworks()
    networks.fail_start = True
    with pytest.raises(BackendError, match="^network 'n1' was defined but failed to start: dnsmasq") as err:
        ensure(networks, name="n1", state="active", xml=NAT)
    assert err.value.result["changed"] and err.value.result["uuid"] == UUID
