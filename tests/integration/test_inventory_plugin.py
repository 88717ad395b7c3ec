"""The virtops.qemu.domains inventory plugin through ``ansible-inventory``, on real hypervisors.

Guests boot on a NAT network and get DHCP leases as in test_network.py
(libvirtd's networks live in the harness daemon's namespace, the embedded
driver's in the test's own, where ``ansible-inventory`` then runs too); the
inventory must show each running guest with the leased address as
``ansible_host``, and a guest that was shut off without one, although its
lease has not expired.  Several URIs at once, a URI that cannot be read, and
the inventory cache are checked on cheap shut-off domains.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from test_network import Net, Scenario, leases_listed, random_mac

from harness.ansible import ansible_env, run_module
from harness.backends import EmbedNetworkSide, LibvirtNetworkSide, NetworkSide
from harness.inventory import ansible_inventory
from harness.libvirt_marker import BACKENDS

BIN = Path(sys.executable).parent


def hypervisor_group(uri: str) -> str:
    return "virtops_" + re.sub(r"[^a-z0-9]+", "_", uri.lower()).strip("_")


def domain_args(uri: str, name: str) -> dict:
    return {"uri": uri, "name": name, "type": "qemu", "memory": "128MiB", "vcpus": 2, "state": "present",
            "interfaces": [{"type": "user", "mac": random_mac()}]}


# -- documentation ------------------------------------------------------------------
def test_ansible_doc_renders_the_plugin(tmp_path):
    env = ansible_env(str(tmp_path / "unused.json"))
    ansible_doc = str(BIN / "ansible-doc")
    text = subprocess.run([ansible_doc, "-t", "inventory", "virtops.qemu.domains"], env=env, capture_output=True,
                          text=True, check=True).stdout
    assert "EXAMPLES:" in text and "uris" in text
    data = json.loads(subprocess.run([ansible_doc, "-t", "inventory", "--json", "virtops.qemu.domains"], env=env,
                                     capture_output=True, text=True, check=True).stdout)
    options = data["virtops.qemu.domains"]["doc"]["options"]
    assert options["uris"]["default"] == ["qemu:///system"]
    assert {"cache", "cache_plugin", "cache_timeout", "cache_connection", "compose", "groups", "keyed_groups",
            "strict"} <= set(options)


# -- guests with leases, on each backend -------------------------------------------------
@pytest.fixture(params=BACKENDS)
def side(request, netns) -> NetworkSide:
    if request.param == "libvirt":
        return LibvirtNetworkSide(request.getfixturevalue("libvirtd"))
    return EmbedNetworkSide(request.getfixturevalue("root"), netns)


@pytest.fixture
def scenario(side, guest, workdir):
    running = Scenario(side, guest, workdir)
    try:
        yield running
    finally:
        running.close()


@pytest.mark.guest
def test_running_guest_has_its_leased_address_and_a_shut_off_one_none(scenario, workdir):
    side = scenario.side
    up_mac, off_mac = random_mac(), random_mac()
    net = Net()
    net.hosts[up_mac] = net.address(50)
    assert scenario.network(net.options())["changed"]
    up, off = scenario.boot_on(net, up_mac), scenario.boot_on(net, off_mac)
    assert scenario.lease_of(up, up_mac).ip == net.address(50)
    off_ip = scenario.lease_of(off, off_mac).ip
    assert leases_listed(scenario, net.name, up_mac) and leases_listed(scenario, net.name, off_mac)
    scenario.stop_domain(off)
    # dnsmasq still holds the lease of the guest that is off
    assert [lease["ip"] for lease in leases_listed(scenario, net.name, off_mac)] == [off_ip]

    inventory = ansible_inventory(workdir / "lab.virtops_domains.yml", {
        "uris": [side.uri],
        "compose": {"lab_bridge": "virtops_interfaces[0].bridge"},
        "keyed_groups": [{"key": "virtops_interfaces | map(attribute='network') | list", "prefix": "net"}],
    }, side.module_netns)
    assert inventory.rc == 0, inventory.stderr
    group = hypervisor_group(side.uri)
    assert {up, off} <= set(inventory.members(group)), inventory.data
    assert up in inventory.members("virtops_running") and off in inventory.members("virtops_shutoff")
    assert {up, off} <= set(inventory.members(f"net_{net.name.replace('-', '_')}"))

    info = run_module("domain_info", {"uri": side.uri, "name": up}, netns=side.module_netns)
    host = inventory.hostvars[up]
    assert host["ansible_host"] == net.address(50)
    state = (host["virtops_state"], host["virtops_uuid"], host["virtops_uri"])
    assert state == ("running", info["domain"]["uuid"], side.uri)
    assert (host["virtops_memory_mib"], host["virtops_vcpus"], host["virtops_macs"]) == (256, 1, [up_mac])
    nic = host["virtops_interfaces"][0]
    assert (nic["mac"], nic["type"], nic["network"], nic["bridge"], nic["ips"]) == \
        (up_mac, "network", net.name, net.bridge, [net.address(50)]), nic
    assert host["virtops_ips"] == [net.address(50)] and host["lab_bridge"] == net.bridge

    shut = inventory.hostvars[off]
    assert "ansible_host" not in shut and shut["virtops_ips"] == [], shut
    assert shut["virtops_state"] == "shutoff" and shut["virtops_macs"] == [off_mac]


# -- several hypervisors, failing URIs ------------------------------------------------------
@pytest.fixture
def libvirt_domain(libvirtd):
    name = f"vt-{secrets.token_hex(4)}"
    yield name
    libvirtd.virsh("undefine", name, "--nvram", check=False)


@pytest.mark.libvirt
def test_two_hypervisors_at_once_and_a_uri_that_fails_is_warned_about(libvirtd, libvirt_domain, root, tmp_path):
    embed_uri = f"qemu:///embed?root={root}"
    embed_domain = f"vt-{secrets.token_hex(4)}"
    for uri, name in ((libvirtd.uri, libvirt_domain), (embed_uri, embed_domain)):
        assert run_module("domain", domain_args(uri, name))["changed"]
    missing_root = f"qemu:///embed?root={tmp_path}/no-such-root"
    no_daemon = "qemu+tcp://127.0.0.1:1/system"
    config = {"uris": [embed_uri, missing_root, libvirtd.uri, no_daemon]}

    inventory = ansible_inventory(tmp_path / "two.virtops_domains.yml", config)
    assert inventory.rc == 0, inventory.stderr
    assert inventory.members(hypervisor_group(embed_uri)) == [embed_domain]
    assert libvirt_domain in inventory.members(hypervisor_group(libvirtd.uri))
    assert embed_domain not in inventory.members(hypervisor_group(libvirtd.uri))
    assert {embed_domain, libvirt_domain} <= set(inventory.members("virtops_shutoff"))
    assert inventory.hostvars[embed_domain]["virtops_uri"] == embed_uri
    assert inventory.hostvars[libvirt_domain]["virtops_uri"] == libvirtd.uri
    assert inventory.hostvars[embed_domain]["virtops_vcpus"] == 2
    warnings = inventory.warnings()
    assert f"leaves out the domains of {missing_root}: the embed root {tmp_path}/no-such-root does not exist" \
        in warnings, warnings
    assert f"leaves out the domains of {no_daemon}: cannot connect to {no_daemon}" in warnings, warnings
    assert not os.path.exists(f"{tmp_path}/no-such-root")

    strict = ansible_inventory(tmp_path / "strict.virtops_domains.yml", {**config, "strict": True},
                               env={"ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "1"})
    assert strict.rc != 0 and f"cannot read {missing_root}: the embed root" in strict.warnings(), strict.stderr


# -- the inventory cache ------------------------------------------------------------------
def test_a_cached_inventory_is_read_from_the_cache_until_flushed(root, tmp_path):
    uri = f"qemu:///embed?root={root}"
    kept, removed = f"vt-{secrets.token_hex(4)}", f"vt-{secrets.token_hex(4)}"
    for name in (kept, removed):
        assert run_module("domain", domain_args(uri, name))["changed"]
    cache_dir = tmp_path / "cache"
    config = {"uris": [uri], "cache": True, "cache_plugin": "ansible.builtin.jsonfile",
              "cache_connection": str(cache_dir), "cache_timeout": 3600}
    path = tmp_path / "cached.virtops_domains.yml"

    first = ansible_inventory(path, config)
    assert first.members("virtops_shutoff") == sorted([kept, removed]), first.stderr
    assert len(list(cache_dir.iterdir())) == 1, "no cache file was written"
    assert run_module("domain", {"uri": uri, "name": removed, "state": "absent"})["changed"]

    uncached = ansible_inventory(tmp_path / "live.virtops_domains.yml", {"uris": [uri]})
    assert uncached.members("virtops_shutoff") == [kept]
    from_cache = ansible_inventory(path, config)
    assert from_cache.members("virtops_shutoff") == sorted([kept, removed]), "the second run did not read the cache"
    assert from_cache.hostvars[removed]["virtops_uri"] == uri

    flushed = ansible_inventory(path, config, None, "--flush-cache")
    assert flushed.members("virtops_shutoff") == [kept]
    assert ansible_inventory(path, config).members("virtops_shutoff") == [kept]
