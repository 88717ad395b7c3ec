# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The network model: structured options to XML, bad input, merge rules, live-update classification."""

from __future__ import annotations

import pytest

from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.model import network as model
from ansible_collections.virtops.qemu.plugins.module_utils.model import schema
from ansible_collections.virtops.qemu.plugins.module_utils.model.domain_options import render as render_domain
from ansible_collections.virtops.qemu.plugins.module_utils.model.merge import merge
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import parse

SUBNET = {"address": "10.9.8.1", "prefix": 24}

LIVE = """
<network connections='1'>
  <name>n1</name>
  <uuid>0b3c2c59-5f4a-4d8a-9e4c-3c5d7b1c0a01</uuid>
  <forward mode='nat'><nat><port start='1024' end='65535'/></nat></forward>
  <bridge name='vtb1' stp='on' delay='0'/>
  <mac address='52:54:00:12:34:56'/>
  <dns><txt name='a' value='1'/></dns>
  <ip address='10.9.8.1' prefix='24'>
    <dhcp>
      <range start='10.9.8.100' end='10.9.8.200'/>
      <host mac='52:54:00:00:00:01' name='one' ip='10.9.8.10'/>
    </dhcp>
  </ip>
  <ip family='ipv6' address='fd00:98::1' prefix='64'>
    <dhcp><range start='fd00:98::100' end='fd00:98::1ff'/></dhcp>
  </ip>
</network>
"""


def rendered(**options):
    return model.render({"name": "n1", **options})


def desired(**options):
    tree, owned = rendered(**options)
    model.validate(tree)
    return tree, owned


def merged_live(**options):
    live = parse(LIVE, "network")
    tree, owned = desired(**options)
    result = merge(live, tree, model.NETWORK_RULES, owned)
    return live, result


# -- render -----------------------------------------------------------------------
def test_full_options_render_schema_valid_xml():
    tree, owned = desired(
        forward={"mode": "nat", "dev": "eth0", "nat_ports": {"start": 2000, "end": 3000}},
        bridge={"name": "vtb1", "stp": False, "delay": 2, "mtu": 9000, "mac_table_manager": "libvirt"},
        mac="52:54:00:AA:BB:CC", domain={"name": "lab", "local_only": True},
        ips=[{**SUBNET, "dhcp": {"ranges": [{"start": "10.9.8.100", "end": "10.9.8.200", "lease_time": "2h"}],
                                 "hosts": [{"mac": "52:54:00:00:00:0A", "ip": "10.9.8.10", "lease_time": "infinite"}]}},
             {"address": "fd00::1", "prefix": 64}],
        dns={"hosts": [{"ip": "10.9.8.10", "hostnames": ["a", "b"]}], "forwarders": [{"domain": "corp"}],
             "srv": [{"service": "ldap", "protocol": "tcp"}], "txt": [{"name": "t", "value": "v"}]},
        portgroups=[{"name": "pg", "default": True, "vlan_tag": 42}])
    schema.validate(tree, "network")
    assert tree.find("forward").get("dev") == "eth0"
    assert tree.find("forward/nat/port").attrib == {"start": "2000", "end": "3000"}
    assert tree.find("bridge").attrib == {"name": "vtb1", "stp": "off", "delay": "2", "macTableManager": "libvirt"}
    assert tree.find("mtu").get("size") == "9000"
    assert tree.find("mac").get("address") == "52:54:00:aa:bb:cc"
    assert tree.find("domain").attrib == {"name": "lab", "localOnly": "yes"}
    assert tree.find("ip/dhcp/range/lease").attrib == {"expiry": "2", "unit": "hours"}
    assert tree.find("ip/dhcp/host").get("mac") == "52:54:00:00:00:0a"
    assert tree.find("ip/dhcp/host/lease").attrib == {"expiry": "0"}
    assert tree.findall("ip")[1].get("family") == "ipv6"
    assert [h.text for h in tree.findall("dns/host/hostname")] == ["a", "b"]
    assert tree.find("portgroup/vlan/tag").get("id") == "42"
    assert owned == {"network/forward", "network/ip", "network/ip/dhcp/range", "network/ip/dhcp/host",
                     "network/dns/host", "network/dns/forwarder", "network/dns/srv", "network/dns/txt",
                     "network/portgroup"}


@pytest.mark.parametrize("mode", ["none", "isolated"])
def test_isolated_modes_render_no_forward_but_own_it(mode):
    tree, owned = desired(forward={"mode": mode})
    assert tree.find("forward") is None and "network/forward" in owned


def test_only_given_options_render():
    tree, owned = desired(ips=[SUBNET])
    assert [child.tag for child in tree] == ["name", "ip"]
    assert owned == {"network/ip"}


@pytest.mark.parametrize("text, expected", [
    ("infinite", ("0", None)), ("30", ("30", "minutes")), ("45s", ("45", "seconds")),
    ("12m", ("12", "minutes")), (" 2 h", ("2", "hours")), (7, ("7", "minutes")),
])
def test_lease_time(text, expected):
    assert model.parse_lease_time(text) == expected


@pytest.mark.parametrize("text", ["0", "-5", "1d", "soon", "1.5h"])
def test_bad_lease_time_names_the_option(text):
    with pytest.raises(InvalidInput, match=r"ips\[0\].dhcp.hosts\[0\].lease_time: expected 'infinite'"):
        host = {"mac": "52:54:00:00:00:01", "ip": "10.9.8.5", "lease_time": text}
        rendered(ips=[{**SUBNET, "dhcp": {"hosts": [host]}}])


# -- validate ---------------------------------------------------------------------
def dhcp(**parts):
    return {"ips": [{**SUBNET, "dhcp": parts}]}


@pytest.mark.parametrize("options, words", [
    ({"bridge": {"name": "a-bridge-name-too-long"}}, r"^bridge.name: bridge name .* longer than 15 bytes"),
    ({"bridge": {"name": "brü-brü-brü-x"}}, r"^bridge.name: .* longer than 15 bytes"),
    (dhcp(ranges=[{"start": "10.9.9.100", "end": "10.9.8.200"}]),
     r"^ips\[0\].dhcp.ranges\[0\]: DHCP range start 10.9.9.100 is outside the subnet 10.9.8.0/24"),
    (dhcp(ranges=[{"start": "10.9.8.10", "end": "10.9.8.20"}, {"start": "10.9.8.200", "end": "10.9.8.100"}]),
     r"^ips\[0\].dhcp.ranges\[1\]: DHCP range start 10.9.8.200 comes after its end 10.9.8.100"),
    (dhcp(ranges=[{"start": "10.9.8.x", "end": "10.9.8.20"}]), r"ranges\[0\]: DHCP range start '10.9.8.x' is not"),
    (dhcp(hosts=[{"ip": "10.9.8.5"}]), r"^ips\[0\].dhcp.hosts\[0\]: a static DHCP host needs a mac or a name"),
    (dhcp(hosts=[{"mac": "52:54:00:00:00:01", "ip": "10.9.7.5"}]), r"hosts\[0\].ip: host address 10.9.7.5 is outside"),
    (dhcp(hosts=[{"mac": "52:54:00:00:00:01", "ip": "10.9.8.5"}, {"mac": "52:54:00:00:00:01", "ip": "10.9.8.6"}]),
     r"^ips\[0\].dhcp.hosts\[1\].mac: MAC 52:54:00:00:00:01 is given to more than one host"),
    (dhcp(hosts=[{"mac": "52:54:00:00:00:01"}]), r"^ips\[0\].dhcp.hosts\[0\].ip: a static DHCP host needs the ip"),
    (dhcp(hosts=[{"mac": "52:54:00:00:01"}]), r"^ips\[0\].dhcp.hosts\[0\].mac: '52:54:00:00:01' is not a MAC"),
    ({"ips": [{"address": "10.9.8.300", "prefix": 24}]}, r"^ips\[0\].address: '10.9.8.300' is not an IP address"),
    ({"ips": [{"address": "10.9.8.1", "prefix": 33}]}, r"^ips\[0\].prefix: prefix '33' is not a number from 0 to 32"),
    ({"ips": [{"address": "10.9.8.1", "family": "ipv6"}]}, r"^ips\[0\].family: 10.9.8.1 is not an ipv6 address"),
    ({"mac": "nope"}, r"^mac: 'nope' is not a MAC address"),
    ({"portgroups": [{"name": "p", "vlan_tag": 5000}]}, r"^portgroups\[0\].vlan_tag: VLAN tag '5000'"),
    ({"forward": {"mode": "route", "nat_ports": {"start": 1, "end": 2}}}, r"^forward.nat_ports: only applies"),
])
def test_bad_structured_input_names_the_option(options, words):
    with pytest.raises(InvalidInput, match=words):
        desired(**options)


@pytest.mark.parametrize("xml, words", [
    ("<network><name>n</name><forward mode='tunnel'/></network>",
     r"^xml: <forward mode>: unknown forward mode 'tunnel'"),
    ("<network><name>n</name><bridge name='virbr-much-too-long'/></network>",
     r"^xml: <bridge name>: bridge name 'virbr-much-too-long' is longer than 15 bytes"),
    ("<network><name>n</name><ip address='10.1.1.1' netmask='255.255.255.0'><dhcp>"
     "<range start='10.1.2.2' end='10.1.2.9'/></dhcp></ip></network>",
     r"^xml: <range start='10.1.2.2' end='10.1.2.9'>: DHCP range start 10.1.2.2 is outside the subnet 10.1.1.0/24"),
    ("<network><name>n</name><ip address='10.1.1.1' prefix='24'><dhcp><host ip='10.1.1.5'/></dhcp></ip></network>",
     r"^xml: <host mac=None name=None ip='10.1.1.5'>: a static DHCP host needs a mac or a name"),
    ("<network><name>n</name><ip family='ipv6' address='fd00::1' prefix='64'><dhcp><host ip='fd00::5'/>"
     "</dhcp></ip></network>", r"a static DHCPv6 host needs a name or an id"),
])
def test_bad_xml_names_the_element(xml, words):
    with pytest.raises(InvalidInput, match=words):
        model.validate(parse(xml, "network"), "xml")


def test_good_xml_passes():
    model.validate(parse(LIVE, "network"), "xml")


# -- rules ------------------------------------------------------------------------
def test_same_request_changes_nothing():
    _live, result = merged_live(
        forward={"mode": "nat"}, bridge={"name": "vtb1"},
        ips=[{**SUBNET, "dhcp": {"hosts": [{"mac": "52:54:00:00:00:01", "name": "one", "ip": "10.9.8.10"}]}},
             {"address": "fd00:98:0::1", "prefix": 64}])
    assert not result.changed, result.changes


def test_hosts_match_by_mac_case_blind_and_an_ip_change_is_one_change():
    _live, result = merged_live(ips=[{**SUBNET, "dhcp": {"hosts": [
        {"mac": "52:54:00:00:00:01", "ip": "10.9.8.11"}]}}, {"address": "fd00:98::1"}])
    assert result.changes == ["network/ip/dhcp/host@ip"]
    assert result.tree.find("ip/dhcp/host").get("name") == "one"


def test_a_shorter_owned_list_shrinks():
    _live, result = merged_live(ips=[{**SUBNET, "dhcp": {"hosts": []}}])
    assert result.tree.find("ip/dhcp/host") is None
    assert len(result.tree.findall("ip")) == 1
    assert result.tree.find("ip/dhcp/range") is not None      # ranges not given: not owned


def test_forward_mode_switch_replaces_the_element():
    _live, result = merged_live(forward={"mode": "route"})
    assert result.changes == ["network/forward="]
    assert result.tree.find("forward/nat") is None


def test_isolated_removes_forward():
    _live, result = merged_live(forward={"mode": "isolated"})
    assert result.changes == ["network/forward-"]


def test_xml_owns_only_the_lists_it_speaks_about():
    tree = parse("<network><name>n1</name><ip address='10.9.8.1'><dhcp><host mac='52:54:00:00:00:01'/></dhcp>"
                 "</ip></network>", "network")
    assert model.owned_lists_in(tree) == {"network/ip", "network/ip/dhcp/host"}


def test_settle_adds_libvirts_nat_port_range_only_when_missing():
    tree = model.settle(parse("<network><name>n</name><forward mode='nat'/></network>", "network"))
    assert tree.find("forward/nat/port").attrib == {"start": "1024", "end": "65535"}
    custom = parse("<network><name>n</name><forward mode='nat'><nat><port start='5' end='6'/></nat></forward>"
                   "</network>", "network")
    assert model.settle(custom).find("forward/nat/port").attrib == {"start": "5", "end": "6"}


# -- live changes -----------------------------------------------------------------
HOST_ONE = '<host mac="52:54:00:00:00:01" name="one" ip="10.9.8.10"/>'
HOST_TWO = '<host mac="52:54:00:00:00:02" name="two" ip="10.9.8.11"><lease expiry="1" unit="hours"/></host>'


def test_an_added_host_is_one_live_add_on_its_ip():
    live, result = merged_live(ips=[{**SUBNET, "dhcp": {"hosts": [
        {"mac": "52:54:00:00:00:01", "name": "one", "ip": "10.9.8.10"},
        {"mac": "52:54:00:00:00:02", "name": "two", "ip": "10.9.8.11", "lease_time": "1h"}]}},
        {"address": "fd00:98::1"}])
    updates, other = model.live_changes(live, result.tree)
    assert (updates, other) == ([("add-last", "ip-dhcp-host", HOST_TWO, 0)], False)
    assert model.describe_update(updates[0]) == f"add ip-dhcp-host {HOST_TWO}"


def test_a_changed_host_is_deleted_then_added():
    live, result = merged_live(ips=[{**SUBNET, "dhcp": {"hosts": [{"mac": "52:54:00:00:00:01", "ip": "10.9.8.12"}]}},
                                    {"address": "fd00:98::1"}])
    updates, other = model.live_changes(live, result.tree)
    assert not other
    assert updates == [("delete", "ip-dhcp-host", HOST_ONE, 0),
                       ("add-last", "ip-dhcp-host", HOST_ONE.replace("10.9.8.10", "10.9.8.12"), 0)]


def test_ipv6_range_goes_to_its_parent_index():
    live, result = merged_live(ips=[SUBNET, {"address": "fd00:98::1", "dhcp": {"ranges": [
        {"start": "fd00:98::100", "end": "fd00:98::1ff"}, {"start": "fd00:98::300", "end": "fd00:98::3ff"}]}}])
    updates, other = model.live_changes(live, result.tree)
    assert not other
    assert updates == [("add-last", "ip-dhcp-range", '<range start="fd00:98::300" end="fd00:98::3ff"/>', 1)]


def test_dns_and_portgroups_are_live():
    live, result = merged_live(dns={"txt": [{"name": "a", "value": "2"}], "hosts": []},
                               portgroups=[{"name": "pg"}])
    updates, other = model.live_changes(live, result.tree)
    assert not other
    assert updates == [("delete", "dns-txt", '<txt name="a" value="1"/>', -1),
                       ("add-last", "dns-txt", '<txt name="a" value="2"/>', -1),
                       ("add-last", "portgroup", '<portgroup name="pg"/>', -1)]


@pytest.mark.parametrize("options", [
    {"forward": {"mode": "route"}},
    {"bridge": {"stp": False}},
    {"ips": [SUBNET, {"address": "fd00:98::1"}, {"address": "10.9.7.1", "prefix": 24}]},
    {"domain": {"name": "lab"}},
])
def test_other_changes_need_a_restart(options):
    live, result = merged_live(**options)
    assert result.changed
    assert model.live_changes(live, result.tree)[1] is True


def test_dhcp_on_an_ip_without_it_needs_a_restart():
    live, result = merged_live(ips=[SUBNET, {"address": "fd00:98::1"}, ])
    live.findall("ip")[0].remove(live.find("ip/dhcp"))
    tree, owned = desired(ips=[{**SUBNET, "dhcp": {"hosts": [{"mac": "52:54:00:00:00:09", "ip": "10.9.8.9"}]}},
                               {"address": "fd00:98::1"}])
    after = merge(live, tree, model.NETWORK_RULES, owned).tree
    updates, other = model.live_changes(live, after)
    assert other and updates == [("add-last", "ip-dhcp-host", '<host mac="52:54:00:00:00:09" ip="10.9.8.9"/>', 0)]


# -- domain interfaces ----------------------------------------------------------------
@pytest.mark.parametrize("nic, source", [
    ({"type": "network", "source": "lab"}, {"network": "lab"}),
    ({"type": "bridge", "source": "br0"}, {"bridge": "br0"}),
    ({"network": "lab"}, {"network": "lab"}),
    ({"type": "network", "network": "lab", "source": "lab"}, {"network": "lab"}),
])
def test_interface_source_names_the_network_or_bridge(nic, source):
    domain = render_domain({"name": "vm1", "interfaces": [nic]})[0]
    assert dict(domain.find("devices/interface/source").attrib) == source


@pytest.mark.parametrize("nic, words", [
    ({"type": "network"}, r"interfaces\[0\]: an interface of type network needs source"),
    ({"type": "bridge", "bridge": "br0", "source": "br1"}, r"source 'br1' and bridge 'br0' name different"),
])
def test_interface_source_errors(nic, words):
    with pytest.raises(InvalidInput, match=words):
        render_domain({"name": "vm1", "interfaces": [nic]})


# -- values for helpers, and DHCP dnsmasq would refuse ------------------------------------------------
@pytest.mark.parametrize("options, option", [
    ({"dns": {"txt": [{"name": "t", "value": "x\ndhcp-script=/bin/true"}]}}, r"dns.txt\[0\].value"),
    (dhcp(hosts=[{"mac": "52:54:00:00:00:01", "ip": "10.9.8.5", "name": "a\rb"}]), r"ips\[0\].dhcp.hosts\[0\].name"),
    ({"dns": {"hosts": [{"ip": "10.9.8.7", "hostnames": ["ok", "x\x00"]}]}}, r"dns.hosts\[0\].hostnames\[1\]"),
    ({"domain": {"name": "lab\tx"}}, r"domain.name"),
    ({"forward": {"mode": "nat", "dev": "eth0\n"}}, r"forward.dev"),
])
def test_a_control_character_in_an_option_is_refused_by_name(options, option):
    with pytest.raises(InvalidInput, match=rf"^{option}: .* contains a control character"):
        rendered(**options)


@pytest.mark.parametrize("xml", [
    "<dns><txt name='t' value='x&#10;dhcp-script=/bin/true'/></dns>",
    "<dns><host ip='10.1.1.7'><hostname>a&#13;b</hostname></host></dns>",
    "<ip address='10.1.1.1' prefix='24'><dhcp><host mac='52:54:00:00:00:01' name='a&#9;b' ip='10.1.1.5'/></dhcp></ip>",
])
def test_a_control_character_in_xml_is_refused(xml):
    with pytest.raises(InvalidInput, match=r"^xml: <\w+>: .* contains a control character"):
        model.validate(parse(f"<network><name>n</name>{xml}</network>", "network"), "xml")


@pytest.mark.parametrize("ips, words", [
    ([{"address": "fd00::1", "prefix": 80, "dhcp": {"hosts": [{"name": "h", "ip": "fd00::5"}]}}],
     r"^ips\[0\].prefix: DHCPv6 needs a prefix of 64, not 80"),
    ([{**SUBNET, "dhcp": {"ranges": [{"start": "10.9.8.1", "end": "10.9.8.9"}]}}],
     r"^ips\[0\].dhcp.ranges\[0\]: .* covers 10.9.8.1, the network's own address"),
    ([{"address": "10.9.8.1", "dhcp": {"ranges": [{"start": "10.9.8.1", "end": "10.9.8.9"}]}}],
     r"^ips\[0\].dhcp.ranges\[0\]: .* covers 10.9.8.1, the network's own address"),
    ([{"address": "10.9.8.9", "prefix": 24, "dhcp": {"ranges": [{"start": "10.9.8.0", "end": "10.9.8.5"}]}}],
     r"covers 10.9.8.0, the network address"),
    ([{**SUBNET, "dhcp": {"ranges": [{"start": "10.9.8.9", "end": "10.9.8.255"}]}}],
     r"covers 10.9.8.255, the broadcast"),
    ([{"address": "fd00::1", "prefix": 64, "dhcp": {"ranges": [{"start": "fd00::", "end": "fd00::9"}]}}],
     r"covers fd00::1, the network's own address"),
    ([SUBNET, {"address": "fd00::1", "prefix": 64}, {"address": "10.9.8.200", "prefix": 25}],
     r"^ips\[2\]: subnet 10.9.8.128/25 overlaps subnet 10.9.8.0/24 of ips\[0\]"),
])
def test_dhcp_dnsmasq_would_refuse_is_refused_by_name(ips, words):
    with pytest.raises(InvalidInput, match=words):
        desired(ips=ips)


@pytest.mark.parametrize("ips", [
    [{"address": "fd00::1", "prefix": 64, "dhcp": {"ranges": [{"start": "fd00::2", "end": "fd00::ff"}]}}],
    [{"address": "fd00::1", "prefix": 96}],                                    # no DHCP: any prefix
    [{"address": "10.9.8.1", "dhcp": {"ranges": [{"start": "10.9.8.100", "end": "10.9.9.200"}]}}],  # prefix unknown
    [{"address": "10.9.8.1", "prefix": 31}],
    [SUBNET, {"address": "10.9.9.1", "prefix": 24}, {"address": "fd00::1", "prefix": 64}],
])
def test_dhcp_dnsmasq_takes_passes(ips):
    desired(ips=ips)


def test_free_text_may_hold_line_breaks():
    model.validate(parse("<network><name>n</name><title>t</title><description>two\nlines</description>"
                         "<metadata><x:a xmlns:x='urn:x'>a\nb</x:a></metadata></network>", "network"), "xml")
