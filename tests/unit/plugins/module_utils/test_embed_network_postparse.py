# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Network definitions completed and checked by the embedded driver, live updates of the network XML,
and the network status record.  Nothing here touches the host's network."""

from __future__ import annotations

import pytest

from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import dnsmasq, netstate, network, process
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.backend import EmbedDriver
from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import parse, to_string
from ansible_collections.virtops.qemu.plugins.module_utils.uri import parse_uri

NAT = ("<network><name>{name}</name><forward/>{extra}"
       "<ip address='10.1.2.1' netmask='255.255.255.0'><dhcp><range start='10.1.2.10' end='10.1.2.20'/>"
       "</dhcp></ip></network>")


@pytest.fixture
def root(short_tmp_path):
    """A short root: the driver checks that monitor socket paths would fit."""
    return short_tmp_path


@pytest.fixture
def networks(root):
    with EmbedDriver(parse_uri(f"qemu:///embed?root={root}")) as driver:
        yield driver.networks


def tree(body: str):
    return parse(f"<network><name>n</name>{body}</network>", "network")


def define_and_read(networks, xml: str):
    networks.define(xml)
    return parse(networks.xml(parse(xml, "network").findtext("name")), "network")


# -- define -------------------------------------------------------------------------
def test_define_fills_what_libvirt_fills(networks):
    config = define_and_read(networks, NAT.format(name="n1", extra=""))
    assert [child.tag for child in config] == ["name", "uuid", "forward", "bridge", "mac", "ip"]
    assert config.find("forward").get("mode") == "nat"
    nat = to_string(config.find("forward/nat")).split()
    assert nat == ["<nat>", "<port", 'start="1024"', 'end="65535"/>', "</nat>"]
    bridge = config.find("bridge")
    assert bridge.get("name").startswith("virbr") and bridge.get("name") not in process.link_names()
    assert (bridge.get("stp"), bridge.get("delay")) == ("on", "0")
    assert config.find("mac").get("address").startswith("52:54:00:")


def test_a_redefinition_keeps_uuid_bridge_and_mac(networks):
    first = define_and_read(networks, NAT.format(name="n1", extra=""))
    again = define_and_read(networks, NAT.format(name="n1", extra=""))
    for path, attribute in (("bridge", "name"), ("mac", "address")):
        assert again.find(path).get(attribute) == first.find(path).get(attribute)
    assert again.findtext("uuid") == first.findtext("uuid")


def test_defining_a_transient_network_keeps_its_live_uuid_and_bridge(networks, root):
    live = tree("<uuid>5e1f6a52-8d4a-4c47-9d8e-2b1f3c4d5e6f</uuid><bridge name='virbr7'/>"
                "<ip address='10.1.2.1' prefix='24'/>")
    (root / "run" / "network").mkdir(parents=True)
    netstate.save_record(str(root / "run" / "network" / "n.xml"),
                         # made in another namespace: this test never looks at the host's links
                         netstate.NetworkRecord(netstate.ACTIVE, "virbr7", True, live=live, netns=1))
    config = define_and_read(networks, "<network><name>n</name><ip address='10.1.2.1' prefix='24'/></network>")
    assert config.findtext("uuid") == "5e1f6a52-8d4a-4c47-9d8e-2b1f3c4d5e6f"
    assert config.find("bridge").get("name") == "virbr7"


def test_bridge_names_are_not_shared(networks):
    first = define_and_read(networks, NAT.format(name="n1", extra=""))
    second = define_and_read(networks, NAT.format(name="n2", extra=""))
    assert first.find("bridge").get("name") != second.find("bridge").get("name")
    taken = first.find("bridge").get("name")
    with pytest.raises(InvalidInput, match=f"bridge@name: bridge name '{taken}' is already used by network 'n1'"):
        networks.define(NAT.format(name="n3", extra=f"<bridge name='{taken}'/>"))
    assert not networks.exists("n3")


@pytest.mark.parametrize("body, option, words", [
    ("<bridge name='vtb0123456789abc'/>", "bridge@name", "is 16 bytes; Linux allows at most 15"),
    ("<forward mode='vepa'><interface dev='eth0'/></forward>", "forward@mode", "'vepa' is not supported"),
    ("<forward mode='passthrough'><interface dev='eth0'/></forward>", "forward@mode",
     "'passthrough' is not supported"),
    ("<forward mode='bridge'/>", "bridge@name", "needs <bridge name='...'/>"),
    ("<forward mode='bridge'/><bridge name='br0'/><ip address='10.1.2.1' prefix='24'/>", "ip", "has no <ip>"),
    ("<ip address='10.1.2.1' prefix='24'><dhcp><range start='10.1.3.10' end='10.1.3.20'/></dhcp></ip>",
     "ip/dhcp/range", "is not inside the subnet 10.1.2.0/24"),
    ("<ip address='10.1.2.1' prefix='24'><dhcp><range start='10.1.2.30' end='10.1.2.20'/></dhcp></ip>",
     "ip/dhcp/range", "start 10.1.2.30 is after its end 10.1.2.20"),
    ("<ip address='10.1.2.1' prefix='24'><dhcp><host mac='52:54:00:00:00:01' ip='10.9.2.5'/></dhcp></ip>",
     "ip/dhcp/host", "is not inside the subnet"),
])
def test_bad_definitions_are_refused_naming_the_option(networks, root, body, option, words):
    with pytest.raises(InvalidInput) as caught:
        networks.define(f"<network><name>bad</name>{body}</network>")
    assert caught.value.option == option and words in str(caught.value)
    assert not (root / "etc" / "network" / "bad.xml").exists()


def test_a_bridge_mode_network_keeps_the_host_bridge_and_gets_no_mac(networks):
    config = define_and_read(networks, "<network><name>lan</name><forward mode='bridge'/>"
                                       "<bridge name='br0'/></network>")
    assert config.find("bridge").attrib == {"name": "br0"} and config.find("mac") is None


# -- live updates ------------------------------------------------------------------------
LIVE = ("<forward mode='nat'/><bridge name='virbr0'/>"
        "<ip address='10.1.2.1' prefix='24'><dhcp><range start='10.1.2.10' end='10.1.2.20'/>"
        "<host mac='52:54:00:00:00:01' ip='10.1.2.5'/></dhcp></ip>"
        "<ip family='ipv6' address='fd00::1' prefix='64'/>")


def update(live, command: str, section: str, xml: str, parent_index: int = -1):
    tag = network._SECTIONS[section][0]
    network.apply_update(live, command, section, parse(xml, tag), parent_index)
    return live


def test_hosts_are_added_after_the_last_host_and_deleted_by_mac():
    live = update(tree(LIVE), "add-last", "ip-dhcp-host", "<host mac='52:54:00:00:00:02' ip='10.1.2.6'/>")
    assert [h.get("ip") for h in live.findall("ip/dhcp/host")] == ["10.1.2.5", "10.1.2.6"]
    update(live, "add-first", "ip-dhcp-host", "<host mac='52:54:00:00:00:03' ip='10.1.2.7'/>")
    assert [h.get("ip") for h in live.findall("ip/dhcp/host")] == ["10.1.2.7", "10.1.2.5", "10.1.2.6"]
    update(live, "delete", "ip-dhcp-host", "<host mac='52:54:00:00:00:01'/>")
    assert [h.get("ip") for h in live.findall("ip/dhcp/host")] == ["10.1.2.7", "10.1.2.6"]
    update(live, "modify", "ip-dhcp-host", "<host mac='52:54:00:00:00:02' ip='10.1.2.9'/>")
    assert [h.get("ip") for h in live.findall("ip/dhcp/host")] == ["10.1.2.7", "10.1.2.9"]


def test_updates_that_match_nothing_or_something_already_there_are_refused():
    live = tree(LIVE)
    with pytest.raises(InvalidInput, match="already has a ip-dhcp-host entry"):
        update(live, "add-last", "ip-dhcp-host", "<host mac='52:54:00:00:00:01' ip='10.1.2.8'/>")
    with pytest.raises(InvalidInput, match="no ip-dhcp-range entry matches"):
        update(live, "delete", "ip-dhcp-range", "<range start='10.1.2.30' end='10.1.2.40'/>")
    with pytest.raises(InvalidInput, match="no <ip> number 5"):
        update(live, "add-last", "ip-dhcp-host", "<host mac='52:54:00:00:00:09'/>", 5)


def test_an_ipv6_range_goes_to_the_ipv6_address_which_gets_its_dhcp():
    live = update(tree(LIVE), "add-last", "ip-dhcp-range", "<range start='fd00::10' end='fd00::20'/>")
    assert live.findall("ip")[1].find("dhcp/range").get("start") == "fd00::10"
    assert len(live.findall("ip")[0].findall("dhcp/range")) == 1


def test_dns_entries_create_the_dns_element_before_the_addresses():
    live = update(tree(LIVE), "add-last", "dns-host", "<host ip='10.1.2.5'><hostname>web</hostname></host>")
    update(live, "add-last", "dns-txt", "<txt name='info' value='x'/>")
    update(live, "add-last", "dns-srv", "<srv service='ldap' protocol='tcp'/>")
    update(live, "add-last", "portgroup", "<portgroup name='pg1'/>")
    assert [child.tag for child in live] == ["name", "forward", "bridge", "dns", "ip", "ip", "portgroup"]
    assert [child.tag for child in live.find("dns")] == ["host", "txt", "srv"]
    update(live, "delete", "dns-txt", "<txt name='info'/>")
    assert live.find("dns/txt") is None


def test_a_live_host_needs_a_mac_or_a_name():
    live = update(tree(LIVE), "add-last", "ip-dhcp-host", "<host ip='10.1.2.8'/>")
    with pytest.raises(InvalidInput, match="xml/dhcp/host: a DHCP host needs a mac or a name"):
        network.check_addresses(live, option="xml")


def test_subnets_and_lease_prefixes():
    live = tree(LIVE)
    assert [str(s) for s in network.subnets(live)] == ["10.1.2.0/24", "fd00::/64"]
    assert network._prefix_of(live, "10.1.2.77") == 24 and network._prefix_of(live, "192.0.2.1") is None


# -- status record -------------------------------------------------------------------------
def test_a_starting_record_names_what_it_will_make(tmp_path):
    path = str(tmp_path / "n.xml")
    record = netstate.NetworkRecord(netstate.STARTING, "virbr4", True, table="virtops_virbr4", dnsmasq=True,
                                    starter=42, starter_time=4242, live=tree(LIVE))
    netstate.save_record(path, record)
    back = netstate.load_record(path)
    assert (back.state, back.bridge, back.bridge_created, back.table, back.dnsmasq, back.pid) == \
        ("starting", "virbr4", True, "virtops_virbr4", True, None)
    assert (back.starter, back.starter_time) == (42, 4242) and back.live.findtext("name") == "n"


def test_an_active_record_of_a_host_bridge_names_no_table_nor_dnsmasq(tmp_path):
    path = str(tmp_path / "n.xml")
    netstate.save_record(path, netstate.NetworkRecord(netstate.ACTIVE, "br0", False))
    back = netstate.load_record(path)
    assert (back.state, back.bridge_created, back.table, back.dnsmasq, back.starter) == \
        ("active", False, "", False, None)
    assert netstate.load_record(str(tmp_path / "missing.xml")) is None


# -- reading an inactive network ------------------------------------------------------
def test_an_inactive_network_is_searched_for_leftovers_once_per_run(networks, monkeypatch):
    """What a start that lost its status record left is looked for by the first read of a run only."""
    networks.define(NAT.format(name="n1", extra=""))
    searches = []
    search = dnsmasq.find_running
    monkeypatch.setattr(dnsmasq, "find_running", lambda *args: searches.append(args) or search(*args))
    assert not networks.active("n1") and networks.bridge("n1") is None and not networks.active("n1")
    assert len(searches) == 1
