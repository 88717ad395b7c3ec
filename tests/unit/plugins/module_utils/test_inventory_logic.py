"""What the domains inventory makes of a hypervisor: hosts, groups, variables and addresses, on a fake driver."""

from __future__ import annotations

import pytest
from fakes import MemoryDriver

from ansible_collections.virtops.qemu.plugins.module_utils.driver.base import Lease
from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError, NotFound
from ansible_collections.virtops.qemu.plugins.module_utils.inventory import (
    host_variables,
    hypervisor_group,
    inventory_hosts,
    read_hypervisors,
    safe_group_name,
)

MAC1, MAC2, MAC3 = "52:54:00:00:00:01", "52:54:00:00:00:02", "52:54:00:00:00:03"


def domain_xml(name, nics=(), memory="262144", unit=None, vcpu="<vcpu>1</vcpu>"):
    unit_attr = f" unit='{unit}'" if unit else ""
    return (f"<domain type='qemu'><name>{name}</name><uuid>uuid-{name}</uuid>"
            f"<memory{unit_attr}>{memory}</memory>{vcpu}<os><type>hvm</type></os>"
            f"<devices>{''.join(nics)}</devices></domain>")


def nic(mac, network=None, bridge=None, kind=None, target=None):
    kind = kind or ("network" if network else "bridge" if bridge else "user")
    attrs = "".join(f" {key}='{value}'" for key, value in (("network", network), ("bridge", bridge)) if value)
    source = f"<source{attrs}/>" if attrs else ""
    tap = f"<target dev='{target}'/>" if target else ""
    return f"<interface type='{kind}'><mac address='{mac}'/>{source}{tap}<model type='virtio'/></interface>"


def lease(mac, ip, expiry=100, family="ipv4"):
    return Lease(mac=mac, ip=ip, prefix=24, hostname=None, expiry=expiry, family=family)


def opener_of(drivers):
    def opener(uri, read_only=False):
        if isinstance(drivers[uri], Exception):
            raise drivers[uri]
        drivers[uri].read_only = read_only
        return drivers[uri]
    return opener


@pytest.fixture
def lab():
    """web (running, on network lab), db (running, two NICs), old (shut off, its lease not expired yet)."""
    stored = {
        "web": domain_xml("web", [nic(MAC1, network="lab")], vcpu="<vcpu current='2'>4</vcpu>"),
        "db": domain_xml("db", [nic(MAC2, network="lab")], memory="2", unit="GiB"),
        "old-auto": domain_xml("old-auto", [nic(MAC3, network="lab")]),
    }
    live = {
        "web": domain_xml("web", [nic(MAC1, network="lab", bridge="virbr7", target="vnet0")],
                          vcpu="<vcpu current='2'>4</vcpu>"),
        # a NIC plugged into the running guest only: the live definition is what counts
        "db": domain_xml("db", [nic(MAC2, network="lab", target="vnet1"), nic(MAC1.replace("01", "09"), kind="user")],
                         memory="2", unit="GiB"),
    }
    states = {"web": "running", "db": "running", "old-auto": "shutoff"}
    leases = [lease(MAC1, "fd00::10", family="ipv6"), lease(MAC1, "10.0.0.10"), lease(MAC2, "10.0.0.20", expiry=5),
              lease(MAC2, "10.0.0.21", expiry=50), lease(MAC3, "10.0.0.30")]
    driver = MemoryDriver("qemu:///system")
    for xml in stored.values():
        driver.domains.define(xml)
    driver.domains.running.update(live)
    driver.domains.states.update(states)
    driver.domains.autostarts["old-auto"] = True
    for name, bridge in (("lab", "virbr7"), ("other", "virbr8"), ("down", "virbr9")):
        driver.networks.define(f"<network><name>{name}</name><bridge name='{bridge}'/></network>")
    driver.networks.start("lab")
    driver.networks.start("other")
    driver.networks.leases_of.update({"lab": leases, "other": [lease(MAC1, "10.9.9.9")]})
    return driver


def read(drivers, uris=None):
    return read_hypervisors(uris or list(drivers), opener_of(drivers))


def by_name(reading, uri):
    return {domain["name"]: domain for domain in reading.domains[uri]}


def test_running_domains_get_their_leased_addresses_ipv4_first_and_only_from_their_own_network(lab):
    reading = read({"qemu:///system": lab})
    assert not reading.failures and not reading.warnings and lab.read_only is True
    web = host_variables("qemu:///system", by_name(reading, "qemu:///system")["web"])
    assert web["ansible_host"] == "10.0.0.10"
    assert web["virtops_ips"] == ["10.0.0.10", "fd00::10"]      # not 10.9.9.9 of network "other"
    assert web["virtops_interfaces"] == [{"mac": MAC1, "type": "network", "network": "lab", "bridge": "virbr7",
                                          "model": "virtio", "target": "vnet0", "ips": ["10.0.0.10", "fd00::10"]}]
    assert (web["virtops_state"], web["virtops_reason"], web["virtops_active"]) == ("running", "booted", True)
    assert (web["virtops_uuid"], web["virtops_autostart"], web["virtops_uri"]) == ("uuid-web", False, "qemu:///system")
    assert (web["virtops_memory_mib"], web["virtops_current_memory_mib"], web["virtops_vcpus"]) == (256, 256, 2)
    assert web["virtops_macs"] == [MAC1]


def test_the_live_definition_gives_the_nics_and_the_network_gives_a_missing_bridge(lab):
    db = host_variables("qemu:///system", by_name(read({"qemu:///system": lab}), "qemu:///system")["db"])
    assert db["virtops_macs"] == [MAC2, "52:54:00:00:00:09"]
    assert db["virtops_interfaces"][0]["bridge"] == "virbr7"
    assert db["virtops_interfaces"][1]["type"] == "user" and db["virtops_interfaces"][1]["ips"] == []
    assert db["virtops_ips"] == ["10.0.0.21", "10.0.0.20"]      # the newest lease first
    assert db["ansible_host"] == "10.0.0.21"
    assert (db["virtops_memory_mib"], db["virtops_vcpus"]) == (2048, 1)


def test_a_shut_off_domain_has_no_address_even_with_an_unexpired_lease(lab):
    old = host_variables("qemu:///system", by_name(read({"qemu:///system": lab}), "qemu:///system")["old-auto"])
    assert "ansible_host" not in old and old["virtops_ips"] == []
    assert old["virtops_interfaces"][0]["ips"] == [] and old["virtops_interfaces"][0]["bridge"] == "virbr7"
    assert (old["virtops_state"], old["virtops_active"], old["virtops_autostart"]) == ("shutoff", False, True)


def test_hosts_are_grouped_by_hypervisor_and_state(lab):
    reading = read({"qemu:///system": lab})
    hosts, warnings = inventory_hosts(["qemu:///system"], reading.domains, "virtops_")
    assert not warnings
    assert {host["name"]: host["groups"] for host in hosts} == {
        "db": ["virtops_qemu_system", "virtops_running"],
        "old-auto": ["virtops_qemu_system", "virtops_shutoff"],
        "web": ["virtops_qemu_system", "virtops_running"],
    }


def test_a_failing_uri_is_recorded_and_the_others_are_still_read(lab, tmp_path):
    missing_root = f"qemu:///embed?root={tmp_path}/nothing-here"
    drivers = {"qemu+tcp://kvm9/system": BackendError("cannot connect to qemu+tcp://kvm9/system: refused"),
               "qemu:///system": lab, missing_root: AssertionError("a missing root must not be opened"),
               "qemu:///nowhere": AssertionError("a malformed URI must not be opened")}
    reading = read(drivers)
    assert list(reading.domains) == ["qemu:///system"]
    assert reading.failures["qemu+tcp://kvm9/system"] == "cannot connect to qemu+tcp://kvm9/system: refused"
    assert reading.failures[missing_root] == f"the embed root {tmp_path}/nothing-here does not exist"
    assert "must be /system, /session or /embed" in reading.failures["qemu:///nowhere"]


def test_unreadable_domains_and_leases_are_warned_about_and_the_rest_listed(lab):
    lab.domains.fail("status", BackendError("cannot parse the definition of 'db'"), "db")
    lab.domains.fail("status", NotFound("domain 'old-auto' not found"), "old-auto")
    lab.networks.fail("leases", BackendError("dnsmasq lease file is garbled"), "other")
    lab.warnings.append("network 'x' was left half-made")
    reading = read({"qemu:///system": lab})
    assert list(by_name(reading, "qemu:///system")) == ["web"]
    assert reading.warnings == [
        "network 'other': its DHCP leases cannot be read: dnsmasq lease file is garbled",
        "qemu:///system: domain 'db' is left out: cannot parse the definition of 'db'",
        "qemu:///system: network 'x' was left half-made",
    ]


def test_the_same_domain_name_on_a_second_hypervisor_is_left_out_with_a_warning():
    first = {"name": "web", "state": "running", "reason": "booted", "active": True, "uuid": "u1", "autostart": False,
             "memory_mib": 256, "current_memory_mib": 256, "vcpus": 1, "interfaces": []}
    second = {**first, "uuid": "u2", "state": "paused"}
    other = {**first, "name": "api", "uuid": "u3"}
    domains = {"qemu:///system": [first], "qemu:///embed?root=/srv/vms": [second, other]}
    hosts, warnings = inventory_hosts(list(domains), domains, "kvm_")
    assert [(host["name"], host["variables"]["virtops_uuid"]) for host in hosts] == [("web", "u1"), ("api", "u3")]
    assert hosts[1]["groups"] == ["kvm_qemu_embed_root_srv_vms", "kvm_running"]
    assert warnings == ["qemu:///embed?root=/srv/vms: domain 'web' is left out, as qemu:///system has a domain "
                        "of that name"]


@pytest.mark.parametrize("uri,group", [
    ("qemu:///system", "virtops_qemu_system"),
    ("qemu+ssh://admin@KVM01.example.com/system", "virtops_qemu_ssh_admin_kvm01_example_com_system"),
    ("qemu:///embed?root=/var/tmp/vte-1a2b", "virtops_qemu_embed_root_var_tmp_vte_1a2b"),
])
def test_hypervisor_group_names_are_safe(uri, group):
    assert hypervisor_group(uri, "virtops_") == group
    assert safe_group_name(group) == group


AGENT_CHANNEL = "<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>"


def test_address_source_order_decides_and_the_agent_is_asked_only_with_its_channel(lab):
    asked = []

    def interface_addresses(name, source):
        asked.append((name, source))
        return {"52:54:00:00:00:09": [{"address": "fe80::9", "prefix": 64, "family": "ipv6"},
                                      {"address": "192.168.1.9", "prefix": 24, "family": "ipv4"}],
                MAC1: [{"address": "192.168.1.1", "prefix": 24, "family": "ipv4"}]}
    lab.domains.interface_addresses = interface_addresses
    lab.domains.running["db"] = lab.domains.running["db"].replace("</devices>", AGENT_CHANNEL + "</devices>")
    reading = read_hypervisors(["qemu:///system"], opener_of({"qemu:///system": lab}), ["lease", "agent"])
    db = by_name(reading, "qemu:///system")["db"]
    assert [nic["ips"] for nic in db["interfaces"]] == [["10.0.0.21", "10.0.0.20"], ["192.168.1.9", "fe80::9"]]
    assert asked == [("db", "agent")], "web has no agent channel; db's agent is asked once"
    reading = read_hypervisors(["qemu:///system"], opener_of({"qemu:///system": lab}), ["agent", "lease"])
    web = by_name(reading, "qemu:///system")["web"]
    assert web["interfaces"][0]["ips"] == ["10.0.0.10", "fd00::10"], "no channel: the lease answers"


def test_hosts_named_by_uuid(lab):
    reading = read({"qemu:///system": lab})
    hosts, warnings = inventory_hosts(["qemu:///system"], reading.domains, "virtops_", hostname="uuid")
    assert sorted(host["name"] for host in hosts) == ["uuid-db", "uuid-old-auto", "uuid-web"] and not warnings
