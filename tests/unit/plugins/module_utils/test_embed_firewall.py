# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The nftables table of each embedded-driver network, by forward mode."""

from __future__ import annotations

from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import firewall
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import parse

IPV4 = "<ip address='10.1.2.1' netmask='255.255.255.0'/>"
IPV6 = "<ip family='ipv6' address='fd00:1::1' prefix='64'/>"


def network(body: str):
    return parse(f"<network><name>n</name>{body}</network>", "network")


def rules(body: str, bridge: str = "virbr0") -> list[str]:
    return [line.strip() for line in firewall.ruleset(network(body), bridge).splitlines()]


def test_table_names_keep_only_letters_digits_and_underscores():
    assert firewall.table_name("virbr0") == "virtops_virbr0"
    assert firewall.table_name("br-lan.10") == "virtops_br_lan_10"


def test_which_modes_get_rules():
    assert firewall.needs_rules(network("<forward mode='nat'/>"))
    assert firewall.needs_rules(network("<forward/>"))      # libvirt's default mode is nat
    assert firewall.needs_rules(network("<forward mode='route'/>"))
    assert firewall.needs_rules(network(""))                # isolated
    assert not firewall.needs_rules(network("<forward mode='open'/>"))
    assert not firewall.needs_rules(network("<forward mode='bridge'/>"))


def test_nat_masquerades_ipv4_into_the_port_range_and_routes_ipv6():
    lines = rules("<forward mode='nat'><nat><port start='2000' end='3000'/></nat></forward>" + IPV4 + IPV6)
    assert lines[0] == "table inet virtops_virbr0 {"
    forward = lines[lines.index("chain forward {") + 2:lines.index("}")]
    assert forward == [
        'iifname "virbr0" oifname "virbr0" accept',
        'iifname "virbr0" ip saddr 10.1.2.0/24 accept',
        'oifname "virbr0" ip daddr 10.1.2.0/24 ct state established,related accept',
        'iifname "virbr0" ip6 saddr fd00:1::/64 accept',
        'oifname "virbr0" ip6 daddr fd00:1::/64 accept',
        'iifname "virbr0" reject',
        'oifname "virbr0" reject']
    nat = lines[lines.index("chain postrouting {") + 2:-2]
    assert nat == [
        "ip saddr 10.1.2.0/24 ip daddr 224.0.0.0/24 return",
        "ip saddr 10.1.2.0/24 ip daddr 255.255.255.255 return",
        "ip saddr 10.1.2.0/24 ip daddr != 10.1.2.0/24 meta l4proto tcp masquerade to :2000-3000",
        "ip saddr 10.1.2.0/24 ip daddr != 10.1.2.0/24 meta l4proto udp masquerade to :2000-3000",
        "ip saddr 10.1.2.0/24 ip daddr != 10.1.2.0/24 masquerade"]


def test_a_forward_device_limits_where_the_subnet_goes():
    lines = rules("<forward mode='nat' dev='eth1'/>" + IPV4)
    assert 'iifname "virbr0" oifname "eth1" ip saddr 10.1.2.0/24 accept' in lines
    assert 'iifname "eth1" oifname "virbr0" ip daddr 10.1.2.0/24 ct state established,related accept' in lines
    assert 'oifname "eth1" ip saddr 10.1.2.0/24 ip daddr != 10.1.2.0/24 masquerade' in lines


def test_route_lets_traffic_in_without_nat():
    lines = rules("<forward mode='route'/>" + IPV4)
    assert 'oifname "virbr0" ip daddr 10.1.2.0/24 accept' in lines
    assert "chain postrouting {" not in lines


def test_an_isolated_network_only_passes_traffic_between_its_guests():
    lines = rules(IPV4)
    forward = lines[lines.index("chain forward {") + 2:lines.index("}")]
    assert forward == ['iifname "virbr0" oifname "virbr0" accept', 'iifname "virbr0" reject',
                       'oifname "virbr0" reject']
