# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""dnsmasq files of the embedded driver's networks, rendered as libvirt renders them, and leases read back."""

from __future__ import annotations

import os

import pytest

from ansible_collections.virtops.qemu.plugins.module_utils.driver.base import Lease
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import dnsmasq, process
from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import parse

FILES = dnsmasq.Files(conf="/r/lib/dnsmasq/n.conf", hostsfile="/r/lib/dnsmasq/n.hostsfile",
                      addnhosts="/r/lib/dnsmasq/n.addnhosts", leases="/r/lib/dnsmasq/n.leases",
                      pidfile="/r/run/network/n.pid")


def network(body: str):
    return parse(f"<network><name>n</name>{body}</network>", "network")


def conf_lines(body: str) -> list[str]:
    return dnsmasq.render_conf(network(body), "virbr3", FILES).splitlines()


def test_an_ipv4_dhcp_network_gets_libvirts_options():
    lines = conf_lines("<ip address='10.1.2.1' netmask='255.255.255.0'><dhcp>"
                       "<range start='10.1.2.10' end='10.1.2.19'><lease expiry='2' unit='hours'/></range>"
                       "<range start='10.1.2.30' end='10.1.2.30'/></dhcp></ip>")
    assert lines[0] == "strict-order" and lines[1].startswith("user=") and lines[2].startswith("group=")
    assert lines[3:] == [
        "pid-file=/r/run/network/n.pid", "except-interface=lo", "bind-dynamic", "interface=virbr3",
        "dhcp-range=10.1.2.10,10.1.2.19,255.255.255.0,2h", "dhcp-range=10.1.2.30,10.1.2.30,255.255.255.0",
        "dhcp-no-override", "dhcp-authoritative", "dhcp-lease-max=11",
        "dhcp-hostsfile=/r/lib/dnsmasq/n.hostsfile", "dhcp-leasefile=/r/lib/dnsmasq/n.leases",
        "addn-hosts=/r/lib/dnsmasq/n.addnhosts"]


def test_ipv6_gets_router_advertisements_with_or_without_dhcp():
    routed_only = conf_lines("<ip family='ipv6' address='fd00::1' prefix='64'/>")
    assert "dhcp-range=fd00::1,ra-only" in routed_only and "enable-ra" in routed_only
    assert not any(line.startswith("dhcp-hostsfile") for line in routed_only)
    with_dhcp = conf_lines("<ip family='ipv6' address='fd00::1' prefix='64'><dhcp>"
                           "<range start='fd00::100' end='fd00::1ff'/></dhcp></ip>")
    assert "dhcp-range=fd00::100,fd00::1ff,64" in with_dhcp and "enable-ra" in with_dhcp
    assert "dhcp-lease-max=256" in with_dhcp


def test_dns_options():
    lines = conf_lines(
        "<domain name='lab.example' localOnly='yes'/>"
        "<dns forwardPlainNames='no'><forwarder domain='corp.example' addr='192.0.2.53'/>"
        "<forwarder domain='blocked.example'/><forwarder addr='192.0.2.1'/>"
        "<txt name='info' value='hello world'/>"
        "<srv service='ldap' protocol='tcp' domain='lab.example' target='dc1' port='389' priority='1' weight='5'/>"
        "</dns><ip address='10.1.2.1' prefix='24'/>")
    assert lines[7:] == [
        "local=/lab.example/", "domain=lab.example", "expand-hosts", "domain-needed", "local=//",
        "server=/corp.example/192.0.2.53", "server=/blocked.example/#", "server=192.0.2.1", "no-resolv",
        "srv-host=_ldap._tcp.lab.example,dc1,389,1,5", "txt-record=info,hello world",
        "addn-hosts=/r/lib/dnsmasq/n.addnhosts"]


def test_dns_disabled_turns_the_dns_port_off():
    assert "port=0" in conf_lines("<dns enable='no'/><ip address='10.1.2.1' prefix='24'/>")


def test_hostsfile_and_addnhosts():
    tree = network(
        "<dns><host ip='10.1.2.7'><hostname>web</hostname><hostname>www</hostname></host></dns>"
        "<ip address='10.1.2.1' prefix='24'><dhcp>"
        "<host mac='52:54:00:AA:00:01' ip='10.1.2.5' name='one'><lease expiry='0'/></host>"
        "<host name='two' ip='10.1.2.6'/><host mac='52:54:00:aa:00:03' name='three'/></dhcp></ip>"
        "<ip family='ipv6' address='fd00::1' prefix='64'><dhcp>"
        "<host id='0:3:0:1:52:54:0:aa:0:4' ip='fd00::5' name='four'><lease expiry='30' unit='seconds'/></host>"
        "</dhcp></ip>")
    assert dnsmasq.render_hostsfile(tree) == (
        "52:54:00:aa:00:01,10.1.2.5,one,infinite\n"
        "10.1.2.6,two\n"
        "52:54:00:aa:00:03,three\n"
        "id:0:3:0:1:52:54:0:aa:0:4,[fd00::5],four,30\n")
    assert dnsmasq.render_addnhosts(tree) == "10.1.2.7\tweb\twww\n"


def test_leases_of_both_families_unexpired_only():
    text = ("1700000100 52:54:00:AA:00:01 10.1.2.5 one 01:52:54:00:aa:00:01\n"
            "1600000000 52:54:00:aa:00:02 10.1.2.6 old *\n"
            "0 52:54:00:aa:00:03 10.1.2.7 * *\n"
            "duid 00:01:00:01:2c:00:00:00:52:54:00:00:00:ff\n"
            "1700000200 1234 fd00::5 four 00:03:00:01:52:54:00:aa:00:04\n")
    prefixes = {"10.1.2.5": 24, "10.1.2.7": 24, "fd00::5": 64}
    leases = dnsmasq.parse_leases(text, prefixes.get, now=1700000000)
    assert leases == [
        Lease("52:54:00:aa:00:01", "10.1.2.5", 24, "one", 1700000100, "ipv4", "01:52:54:00:aa:00:01"),
        Lease("52:54:00:aa:00:03", "10.1.2.7", 24, None, 0, "ipv4", None),
        Lease("52:54:00:aa:00:04", "fd00::5", 64, "four", 1700000200, "ipv6", "00:03:00:01:52:54:00:aa:00:04"),
    ]


def test_lease_times():
    def time_of(lease: str) -> str | None:
        return dnsmasq.lease_time(parse(f"<range start='a' end='b'>{lease}</range>", "range"))
    assert time_of("") is None
    assert time_of("<lease expiry='0'/>") == "infinite"
    assert time_of("<lease expiry='45'/>") == "45m"      # libvirt's default unit is minutes
    assert time_of("<lease expiry='3' unit='hours'/>") == "3h"
    assert time_of("<lease expiry='300' unit='seconds'/>") == "300"


def test_a_live_process_is_not_the_dnsmasq_unless_it_runs_the_configuration():
    me = os.getpid()
    assert not dnsmasq.runs(me, process.start_time(me), "/r/lib/dnsmasq/n.conf")
    assert not dnsmasq.runs(None, None, "/r/lib/dnsmasq/n.conf")


@pytest.mark.parametrize("body, render", [
    ("<dns><txt name='t' value='x&#10;dhcp-script=/bin/true'/></dns>", "conf"),
    ("<domain name='lab&#13;'/>", "conf"),
    ("<ip address='10.1.2.1' prefix='24'><dhcp><host mac='52:54:00:aa:00:01' name='a&#10;b' ip='10.1.2.5'/>"
     "</dhcp></ip>", "hostsfile"),
    ("<dns><host ip='10.1.2.7'><hostname>a&#10;b</hostname></host></dns>", "addnhosts"),
])
def test_no_file_gets_a_control_character(body, render):
    renderers = {"conf": lambda tree: dnsmasq.render_conf(tree, "virbr3", FILES),
                 "hostsfile": dnsmasq.render_hostsfile, "addnhosts": dnsmasq.render_addnhosts}
    with pytest.raises(InvalidInput, match="control character"):
        renderers[render](network(body))
