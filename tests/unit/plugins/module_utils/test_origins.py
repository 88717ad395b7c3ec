"""A fault found in a definition rendered from options is reported at the option, in option syntax."""

from __future__ import annotations

import copy

import pytest

from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.model import domain_options, origins, schema
from ansible_collections.virtops.qemu.plugins.module_utils.model import network as network_model
from ansible_collections.virtops.qemu.plugins.module_utils.model import pool as pool_model
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import check_option_text, etree, parse
from ansible_collections.virtops.qemu.plugins.modules import domain as domain_module
from ansible_collections.virtops.qemu.plugins.modules import network as network_module
from ansible_collections.virtops.qemu.plugins.modules import pool as pool_module

FULL_DOMAIN = {
    "name": "d1", "title": "t", "description": "d", "type": "qemu", "arch": "x86_64", "machine": "q35",
    "memory": "256MiB", "current_memory": "128MiB", "vcpus": 2, "cpu": {"mode": "custom", "model": "qemu64"},
    "firmware": "efi", "kernel": {"path": "/k", "initrd": "/i", "cmdline": "console=ttyS0", "dtb": "/d"},
    "boot_order": ["hd", "network"],
    "disks": [{"path": "/a.qcow2", "format": "qcow2", "cache": "none", "readonly": True, "bus": "sata"},
              {"type": "volume", "pool": "p", "volume": "v"}],
    "interfaces": [{"network": "default", "mac": "52:54:00:00:00:01", "model": "e1000", "portgroup": "pg"},
                   {"bridge": "br0"}],
    "graphics": {"type": "vnc", "port": 5901, "listen": "127.0.0.1", "password": "pw"},
    "serials": [{"type": "file", "path": "/s.log"}, {"type": "unix", "path": "/s.sock"}],
    "features": {"acpi": True, "apic": False}, "on_poweroff": "destroy", "on_reboot": "restart",
    "on_crash": "destroy",
    "clock": {"offset": "utc", "timers": [{"name": "rtc", "tickpolicy": "catchup", "present": True}]},
}
FULL_NETWORK = {
    "name": "n1", "forward": {"mode": "nat", "dev": "eth0", "nat_ports": {"start": 2000, "end": 3000}},
    "bridge": {"name": "vtb1", "stp": False, "delay": 2, "mtu": 9000, "mac_table_manager": "libvirt"},
    "mac": "52:54:00:aa:bb:cc", "domain": {"name": "lab", "local_only": True},
    "ips": [{"address": "10.9.8.1", "prefix": 24,
             "dhcp": {"ranges": [{"start": "10.9.8.100", "end": "10.9.8.200", "lease_time": "2h"}],
                      "hosts": [{"mac": "52:54:00:00:00:0a", "name": "h", "ip": "10.9.8.10", "lease_time": "1h"}]}},
            {"address": "fd00::1", "prefix": 64, "family": "ipv6"}],
    "dns": {"hosts": [{"ip": "10.9.8.10", "hostnames": ["a", "b"]}], "forwarders": [{"addr": "1.1.1.1"}],
            "srv": [{"service": "ldap", "protocol": "tcp", "domain": "lab", "target": "t", "port": 389,
                     "priority": 1, "weight": 2}], "txt": [{"name": "t", "value": "v"}]},
    "portgroups": [{"name": "pg", "default": True, "vlan_tag": 42}],
}
FULL_POOLS = [
    {"name": "p1", "type": "dir", "target": {"path": "/srv/p", "mode": "0755", "owner": 0, "group": 0}},
    {"name": "p2", "type": "iscsi-direct", "source": {
        "hosts": [{"name": "192.0.2.1", "port": 3260}], "devices": ["iqn.2024-01.org.example:d"],
        "initiator": "iqn.2024-01.org.example:i", "auth": {"type": "chap", "username": "u", "usage": "s"}}},
    {"name": "p3", "type": "netfs", "source": {"hosts": [{"name": "nfs"}], "dir": "/export", "format": "nfs"},
     "target": {"path": "/mnt/p"}},
    {"name": "p4", "type": "logical", "source": {"name": "vg", "devices": ["/dev/sdb"]}},
]


# Places every rendered definition has, whatever the options say.
FIXED = {("/domain/os/type", None)}


def _places(tree):
    """(path, attribute or None) of every leaf element and every attribute."""
    root = tree.getroottree()
    for node in tree.iter(etree.Element):
        if not len(node):
            yield root.getpath(node), None
        for name in node.attrib:
            yield root.getpath(node), name


def _in_argspec(options: dict, option: str) -> bool:
    spec: dict = {"options": options}
    for part in option.replace("[", ".[").split("."):
        if part.startswith("["):
            continue
        spec = (spec.get("options") or {}).get(part)
        if spec is None:
            return False
    return True


@pytest.mark.parametrize("table,options,trees", [
    (origins.DOMAIN, domain_module.OPTIONS, lambda: [domain_options.render(FULL_DOMAIN)[0]]),
    (origins.NETWORK, network_module.OPTIONS, lambda: [network_model.render(FULL_NETWORK)[0]]),
    (origins.POOL, pool_module.OPTIONS, lambda: [pool_model.render(p)[0] for p in FULL_POOLS]),
], ids=["domain", "network", "pool"])
def test_every_place_the_options_render_names_an_option_of_the_module(table, options, trees):
    for tree in trees():
        for path, attribute in set(_places(tree)) - FIXED:
            option = origins.option_at(table, path, attribute)
            assert option is not None, (path, attribute)
            assert _in_argspec(options, option), (path, attribute, option)


@pytest.mark.parametrize("path,attribute,option", [
    ("/network/ip[2]/dhcp/range[3]", "start", "ips[1].dhcp.ranges[2].start"),
    ("/network/ip/dhcp/host/lease", "expiry", "ips[0].dhcp.hosts[0].lease_time"),
    ("/network/bridge", "name", "bridge.name"),
    ("/network/bridge", "stp", "bridge.stp"),
    ("/network/mtu", "size", "bridge.mtu"),
    ("/network/dns/host[2]/hostname[3]", None, "dns.hosts[1].hostnames[2]"),
    ("/domain/devices/interface[2]/mac", "address", "interfaces[1].mac"),
    ("/domain/devices/interface[1]/source", "portgroup", "interfaces[0].portgroup"),
    ("/domain/os/kernel", None, "kernel.path"),
    ("/domain", "type", "type"),
    ("/pool/target/path", None, "target.path"),
])
def test_a_place_maps_to_its_option_with_list_positions(path, attribute, option):
    table = {"network": origins.NETWORK, "domain": origins.DOMAIN, "pool": origins.POOL}[path.split("/")[1]]
    assert origins.option_at(table, path, attribute) == option


def test_a_place_no_option_renders_maps_to_none():
    assert origins.option_at(origins.DOMAIN, "/domain/uuid") is None
    assert origins.option_at(origins.DOMAIN, "/domain/devices/controller[2]", "model") is None


def test_a_place_of_the_merged_definition_is_traced_to_the_rendered_one():
    rendered = parse("<domain><devices><interface type='user'><mac address='zz:zz'/></interface>"
                     "</devices></domain>", "domain")
    merged = parse("<domain><uuid>u</uuid><devices><controller type='usb'/>"
                   "<interface type='network'><mac address='52:54:00:00:00:01'/></interface>"
                   "<interface type='user'><mac address='zz:zz'/><alias name='net1'/></interface>"
                   "</devices></domain>", "domain")
    locate = origins.locator(origins.DOMAIN, rendered)
    assert locate(merged.findall("devices/interface")[1].find("mac"), None) == "interfaces[0].mac"
    assert locate(merged.find("devices/controller"), None) is None
    assert locate(merged.find("uuid"), None) is None


def _schema_error(tree, kind, table, rendered=None) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        locate = origins.locator(table, tree if rendered is None else rendered)
        schema.validate(tree, kind, option="options", locate=locate)
    return caught.value


@pytest.mark.parametrize("params,option", [
    ({"mac": "zz:zz:zz:zz:zz:zz"}, "mac"),
    ({"ips": [{"address": "10.1.1.1"}, {"address": "10.2.2.1", "dhcp": {"hosts": [{"mac": "x", "ip": "a"}]}}]},
     "ips[1].dhcp.hosts[0]"),
    ({"portgroups": [{"name": "a"}, {"name": "b", "vlan_tag": 5000}]}, "portgroups[1].vlan_tag"),
])
def test_schema_faults_of_a_rendered_network_name_the_option(params, option):
    tree, _owned = network_model.render({"name": "n1", **params})
    error = _schema_error(tree, "network", origins.NETWORK)
    assert error.option == option and "libvirt's network schema refuses" in str(error), str(error)


def test_schema_faults_in_a_merged_domain_name_the_option():
    rendered, _owned = domain_options.render({"name": "d", "type": "qemu", "memory": "64MiB", "arch": "x86_64",
                                              "title": "a\nb"})
    merged = copy.deepcopy(rendered)
    etree.SubElement(merged, "vcpu").text = "1"
    merged.insert(1, etree.Element("uuid"))
    merged[1].text = "0b3c2c59-5f4a-4d8a-9e4c-3c5d7b1c0a01"
    error = _schema_error(merged, "domain", origins.DOMAIN, rendered)
    assert error.option == "title", str(error)


def test_without_a_locator_the_fault_is_the_xml_place():
    tree = parse("<network><name>n</name><mtu size='-1'/></network>", "network")
    with pytest.raises(InvalidInput, match=r"^xml: .*/network/mtu"):
        schema.validate(tree, "network")


@pytest.mark.parametrize("place,verbatim,message", [
    ("os/type@machine", False, "machine: no such machine"),
    ("domain@type", False, "type: no such machine"),
    ("vcpu", False, "vcpus: no such machine"),
    ("os/type@machine", True, "xml: /domain/os/type/@machine: no such machine"),
    ("devices/disk/target@bus", False, "options: /domain/devices/disk/target/@bus: no such machine"),
    ("vcpus/vcpu[@enabled='yes']", False, "options: /domain/vcpus/vcpu[@enabled='yes']: no such machine"),
    ("xml", False, "options: no such machine"),
])
def test_a_driver_refusal_at_a_place_is_named_as_the_user_wrote_it(place, verbatim, message):
    rendered, _owned = domain_options.render({"name": "d", "type": "qemu", "machine": "q35", "vcpus": 1,
                                              "disks": [{"path": "/a"}, {"path": "/b"}]})
    named = origins.named(InvalidInput("no such machine", place), origins.DOMAIN, rendered, verbatim, "domain")
    assert str(named) == message


# -- direct checks with a reason ------------------------------------------------------------
@pytest.mark.parametrize("params,message", [
    ({"kernel": {"path": "relative/vmlinuz"}}, "kernel.path: 'relative/vmlinuz' must be an absolute path"),
    ({"kernel": {"path": "/k", "initrd": "i.img"}}, "kernel.initrd: 'i.img' must be an absolute path"),
    ({"interfaces": [{"type": "user"}, {"type": "user", "mac": "zz:zz"}]},
     "interfaces[1].mac: 'zz:zz' is not a MAC address"),
    ({"interfaces": [{"type": "user", "mac": "01:00:5e:00:00:01"}]},
     "interfaces[0].mac: 01:00:5e:00:00:01 is a multicast"),
])
def test_bad_domain_options_are_refused_with_the_reason(params, message):
    with pytest.raises(InvalidInput) as caught:
        domain_options.render({"name": "d", **params})
    assert str(caught.value).startswith(message), str(caught.value)


@pytest.mark.parametrize("params,message", [
    ({"forward": {"mode": "nat", "nat_ports": {"start": 1024, "end": 70000}}},
     "forward.nat_ports.end: end port '70000' is not a number from 1 to 65535"),
    ({"forward": {"mode": "nat", "nat_ports": {"start": 0, "end": 10}}}, "forward.nat_ports.start: start port '0'"),
    ({"forward": {"mode": "nat", "nat_ports": {"start": 3000, "end": 2000}}},
     "forward.nat_ports: start port 3000 comes after end port 2000"),
    ({"bridge": {"name": "advbré"}}, "bridge.name: 'advbré' is not a valid bridge name"),
    ({"bridge": {"name": "vtb1", "mtu": -1}}, "bridge.mtu: MTU '-1' is not a number from 1 to 65535"),
    ({"bridge": {"mtu": 0}}, "bridge.mtu: MTU '0'"),
])
def test_bad_network_options_are_refused_with_the_reason(params, message):
    tree, _owned = network_model.render({"name": "n", **params})
    with pytest.raises(InvalidInput) as caught:
        network_model.validate(tree)
    assert str(caught.value).startswith(message), str(caught.value)


def test_the_same_network_checks_name_the_element_of_verbatim_xml():
    tree = parse("<network><name>n</name><forward mode='nat'><nat><port start='1' end='70000'/></nat></forward>"
                 "</network>", "network")
    with pytest.raises(InvalidInput, match=r"^xml: <forward><nat><port>: end port '70000'"):
        network_model.validate(tree, "xml")


def test_a_pool_target_of_slash_is_refused():
    tree, _owned = pool_model.render({"name": "p", "type": "dir", "target": {"path": "/"}})
    with pytest.raises(InvalidInput, match=r"^target.path: the target path must be a directory below /"):
        pool_model.validate(tree)


@pytest.mark.parametrize("params,names,option", [
    ({"bridge": {"name": "br\x01"}}, ("bridge",), "bridge.name"),
    ({"commandline": {"args": ["-a", "b\x00"]}}, ("commandline",), "commandline.args[1]"),
    ({"ips": [{"dhcp": {"hosts": [{"name": "ok"}, {"name": "x\x1b"}]}}]}, ("ips",), "ips[0].dhcp.hosts[1].name"),
    ({"commandline": {"env": {"A\x01": "v"}}}, ("commandline",), "commandline.env"),
])
def test_a_value_xml_cannot_hold_is_named_by_its_option_path(params, names, option):
    with pytest.raises(InvalidInput) as caught:
        check_option_text(params, names)
    assert caught.value.option == option and "XML cannot hold" in str(caught.value)


def test_values_xml_can_hold_pass():
    check_option_text({"bridge": {"name": "vtb1", "mtu": 1500}, "ips": [{"address": "10.0.0.1"}]}, ("bridge", "ips"))
