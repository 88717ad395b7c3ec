"""The network and network_info modules on each backend, with test guests getting DHCP leases.

One scenario file, parametrised by backend: libvirtd (whose bridges, dnsmasq
and iptables rules live in the harness daemon's own network namespace) and
the embedded driver (every module call runs in a namespace made for the
test, so its bridge, dnsmasq and nftables table are there). Both get the
same module calls and the same assertions; what each assertion observes
(bridge links, the dnsmasq process, firewall rules) is read from the
namespace where that backend's networks live (harness.backends.NetworkSide).

The guest boots with ``virtops.dhcp`` on its command line: busybox udhcpc
asks for a lease on every NIC and the guest prints each lease it binds on
its serial console (harness.guest.parse_leases).

Only the embedded driver is a subject of the crash tests at the end: it
must notice a killed dnsmasq or a half-torn network on its next run, which
is its own promise (libvirtd only does that when the daemon restarts).
"""

from __future__ import annotations

import os
import random
import secrets
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from lxml import etree

from harness.ansible import run_module, run_module_calls
from harness.backends import EmbedNetworkSide, LibvirtNetworkSide, NetworkSide, is_live_dnsmasq
from harness.guest import DHCP_CMDLINE, parse_leases
from harness.libvirt_marker import BACKENDS
from harness.netns import private_netns

pytestmark = [pytest.mark.guest]

LEASE_TIMEOUT = 150


@dataclass
class Net:
    """A NAT network of the test: unique name, bridge and /24, static hosts by MAC."""

    name: str = field(default_factory=lambda: f"vt-{secrets.token_hex(4)}")
    bridge: str = field(default_factory=lambda: f"vtb{secrets.token_hex(4)}")
    prefix: str = field(default_factory=lambda: f"10.{random.randint(16, 250)}.{random.randint(1, 250)}")
    hosts: dict[str, str] = field(default_factory=dict)

    def address(self, last: int) -> str:
        return f"{self.prefix}.{last}"

    def options(self, **extra) -> dict:
        dhcp = {"ranges": [{"start": self.address(100), "end": self.address(199)}],
                "hosts": [{"mac": mac, "ip": ip} for mac, ip in self.hosts.items()]}
        return {"name": self.name, "forward": {"mode": "nat"}, "bridge": {"name": self.bridge},
                "ips": [{"address": self.address(1), "prefix": 24, "dhcp": dhcp}], **extra}


def random_mac() -> str:
    return "52:54:00:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(3))


class Scenario:
    """Module calls on one backend, and the objects they made (removed afterwards)."""

    def __init__(self, side: NetworkSide, guest, workdir):
        self.side = side
        self.guest = guest
        self.workdir = workdir
        self.networks: list[str] = []
        self.domains: list[str] = []

    def network(self, args: dict, **kwargs) -> dict:
        if not kwargs.get("check"):
            self.networks.append(args["name"])
        return run_module("network", {"uri": self.side.uri, **args}, netns=self.side.module_netns, **kwargs)

    def network_calls(self, calls: list[dict]) -> list[dict]:
        """Many network module calls as the tasks of one playbook; their results in order."""
        self.networks.extend(args["name"] for args in calls)
        return run_module_calls([("network", {"uri": self.side.uri, **args}) for args in calls],
                                netns=self.side.module_netns)

    def network_info(self, name: str) -> dict:
        return run_module("network_info", {"uri": self.side.uri, "name": name}, netns=self.side.module_netns)

    def domain(self, args: dict) -> dict:
        self.domains.append(args["name"])
        return run_module("domain", {"uri": self.side.uri, **args}, netns=self.side.module_netns)

    def guest_args(self, name: str, net: Net, mac: str, **nic) -> dict:
        """A guest with one NIC on ``net`` (``nic`` adds interface options) and its console in a file."""
        return {
            "name": name, "type": "qemu", "memory": "256MiB", "vcpus": 1, "state": "running",
            "kernel": {"path": str(self.guest.kernel), "initrd": str(self.guest.initrd), "cmdline": DHCP_CMDLINE},
            "serials": [{"type": "file", "path": str(self.workdir / f"{name}.log")}],
            "interfaces": [{"type": "network", "network": net.name, "mac": mac, "model": "virtio", **nic}],
            "features": ["acpi"], "on_poweroff": "destroy",
        }

    def boot_on(self, net: Net, mac: str) -> str:
        """Define and start a guest with one NIC on ``net``; the name of its serial log."""
        name = f"virtops-test-{secrets.token_hex(4)}"
        result = self.domain(self.guest_args(name, net, mac))
        assert result["changed"] and result["state"] == "running", result
        return name

    def domain_info(self, name: str) -> dict:
        return run_module("domain_info", {"uri": self.side.uri, "name": name}, netns=self.side.module_netns)

    def lease_of(self, domain: str, mac: str):
        """The first lease the guest printed for ``mac``; fails after LEASE_TIMEOUT."""
        log = self.workdir / f"{domain}.log"
        deadline = time.monotonic() + LEASE_TIMEOUT
        while time.monotonic() < deadline:
            text = log.read_text(errors="replace") if log.exists() else ""
            leases = [lease for lease in parse_leases(text) if lease.mac == mac]
            if leases:
                return leases[0]
            time.sleep(0.5)
        tail = "\n".join(text.splitlines()[-30:])
        raise AssertionError(f"no lease for {mac} after {LEASE_TIMEOUT}s; console tail:\n{tail}")

    def stop_domain(self, name: str) -> None:
        result = self.domain({"name": name, "state": "destroyed"})
        assert result["state"] == "shutoff", result

    def close(self) -> None:
        for name in self.domains:
            self.side.remove_domain(name)
        for name in dict.fromkeys(self.networks):
            self.side.remove(name)


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


def leases_listed(scenario: Scenario, name: str, mac: str, timeout: float = 20) -> list[dict]:
    """network_info's leases for ``mac``, waiting a little for the daemon's lease records."""
    deadline = time.monotonic() + timeout
    while True:
        info = scenario.network_info(name)
        found = [lease for lease in info["network"]["leases"] if lease["mac"].lower() == mac]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(1)


def assert_running(side: NetworkSide, net: Net) -> int:
    """Bridge with its address, dnsmasq and NAT rules are all there; dnsmasq's pid."""
    assert side.bridge_exists(net.bridge)
    assert f"{net.address(1)}/24" in side.netns.addresses(net.bridge)
    pid = side.dnsmasq_pid(net.name)
    assert pid is not None, f"no dnsmasq for {net.name}"
    assert side.firewall_lines(net.bridge), f"no firewall rule names {net.bridge}"
    return pid


def assert_nothing_left(side: NetworkSide, net: Net, old_dnsmasq: int | None = None) -> None:
    assert not side.bridge_exists(net.bridge)
    assert side.dnsmasq_pid(net.name) is None
    if old_dnsmasq is not None:
        assert not is_live_dnsmasq(old_dnsmasq), f"dnsmasq {old_dnsmasq} still runs"
    assert side.firewall_lines(net.bridge) == []


def test_nat_network_gives_guests_their_static_leases_and_takes_hosts_live(scenario):
    side = scenario.side
    first, second = random_mac(), random_mac()
    net = Net(hosts={first: ""})
    net.hosts[first] = net.address(50)

    predicted = scenario.network(net.options(), check=True)
    assert predicted["changed"] and predicted["state"] == "active", predicted
    assert net.name not in side.names() and not side.bridge_exists(net.bridge)
    made = scenario.network(net.options())
    assert made["changed"] and made["state"] == "active" and made["bridge"] == net.bridge, made
    assert net.name in side.names()
    dnsmasq = assert_running(side, net)
    again = scenario.network(net.options())
    assert not again["changed"] and not again["restart_required"] and not again["live_updates"], again

    guest_one = scenario.boot_on(net, first)
    lease = scenario.lease_of(guest_one, first)
    assert (lease.ip, lease.prefix) == (net.address(50), 24), lease
    listed = leases_listed(scenario, net.name, first)
    assert [lease["ip"] for lease in listed] == [net.address(50)], listed

    net.hosts[second] = net.address(60)
    predicted = scenario.network(net.options(), check=True)
    assert predicted["changed"] and not predicted["restart_required"], predicted
    assert any(second in update for update in predicted["live_updates"]), predicted
    assert side.dnsmasq_pid(net.name) == dnsmasq
    updated = scenario.network(net.options())
    assert updated["changed"] and not updated["restart_required"], updated
    assert updated["live_updates"] == predicted["live_updates"]
    assert side.dnsmasq_pid(net.name) == dnsmasq, "dnsmasq was restarted for a host entry"
    assert assert_running(side, net) == dnsmasq
    assert not scenario.network(net.options())["changed"]

    guest_two = scenario.boot_on(net, second)
    assert scenario.lease_of(guest_two, second).ip == net.address(60)
    assert [lease["ip"] for lease in leases_listed(scenario, net.name, second)] == [net.address(60)]

    for name in (guest_one, guest_two):
        scenario.stop_domain(name)
    predicted = scenario.network({"name": net.name, "state": "inactive"}, check=True)
    assert predicted["changed"] and predicted["state"] == "inactive", predicted
    assert side.dnsmasq_pid(net.name) == dnsmasq
    stopped = scenario.network({"name": net.name, "state": "inactive"})
    assert stopped["changed"] and stopped["state"] == "inactive", stopped
    assert_nothing_left(side, net, dnsmasq)
    assert net.name in side.names()
    assert not scenario.network({"name": net.name, "state": "inactive"})["changed"]
    info = scenario.network_info(net.name)["network"]
    assert info["state"] == "inactive" and info["leases"] == []


BAD_INPUTS = [
    ({"bridge": {"name": "vtb0123456789abcdef"}}, "bridge.name", "longer than 15 bytes"),
    ({"ips": [{"address": "10.9.9.1", "prefix": 24, "dhcp": {"ranges": [{"start": "10.9.8.10", "end": "10.9.8.20"}]}}]},
     "ips[0].dhcp.ranges[0]", "10.9.8.10"),
    ({"ips": [{"address": "10.9.9.1", "prefix": 24, "dhcp": {"hosts": [{"ip": "10.9.9.5"}]}}]},
     "ips[0].dhcp.hosts[0]", "mac or a name"),
    ({"xml": "<network><forward mode='warp'/></network>"}, "xml", "unknown forward mode 'warp'"),
]


def test_bad_input_names_the_option_and_changes_nothing(scenario):
    nets = [Net() for _case in BAD_INPUTS]
    results = scenario.network_calls([{"name": net.name, **bad} if "xml" in bad else {**net.options(), **bad}
                                      for net, (bad, _option, _message) in zip(nets, BAD_INPUTS, strict=True)])
    for net, (bad, option, message), result in zip(nets, BAD_INPUTS, results, strict=True):
        assert result.get("failed") and result["msg"].startswith(f"{option}: ") and message in result["msg"], \
            (bad, result)
        assert net.name not in scenario.side.names() and not scenario.side.bridge_exists(net.bridge)


def test_a_subnet_overlapping_an_active_network_is_refused_and_nothing_made(scenario):
    first, second = Net(), Net()
    assert scenario.network(first.options())["changed"]
    second.prefix = first.prefix
    result = scenario.network(second.options())
    assert result.get("failed") and result["msg"].startswith("ips: subnet ") and first.name in result["msg"], result
    assert second.name not in scenario.side.names() and not scenario.side.bridge_exists(second.bridge)


def test_missing_network_is_reported_not_failed(scenario):
    info = scenario.network_info(Net().name)
    assert not info.get("failed") and info["exists"] is False, info


def portgroup_network(net: Net) -> str:
    """A NAT network with a portgroup that trusts the guest's RX filters and one that limits bandwidth."""
    return (f"<network><name>{net.name}</name><forward mode='nat'/><bridge name='{net.bridge}'/>"
            f"<ip address='{net.address(1)}' netmask='255.255.255.0'/>"
            "<portgroup name='trusted' trustGuestRxFilters='yes'/>"
            "<portgroup name='shaped'><bandwidth><inbound average='1000'/></bandwidth></portgroup></network>")


def test_a_domain_interface_gets_the_portgroup_it_names(scenario):
    net, mac = Net(), random_mac()
    assert scenario.network({"name": net.name, "xml": portgroup_network(net)})["changed"]
    name = f"virtops-test-{secrets.token_hex(4)}"
    args = scenario.guest_args(name, net, mac, portgroup="trusted")
    started = scenario.domain(args)
    assert started["changed"] and started["state"] == "running", started
    assert not scenario.domain(args)["changed"]
    domain = scenario.domain_info(name)["domain"]
    for xml in (domain["xml"], domain["live_xml"]):
        (source,) = etree.fromstring(xml.encode()).findall("devices/interface/source")
        assert (source.get("network"), source.get("portgroup")) == (net.name, "trusted"), xml
    if scenario.side.name == "libvirt":
        # libvirt hands the portgroup's settings to the domain's port on the network.
        virsh = scenario.side.libvirtd.virsh
        (port,) = virsh("net-port-list", net.name, "--uuid").split()
        port_xml = virsh("net-port-dumpxml", net.name, port)
        assert "<group>trusted</group>" in port_xml and "<rxfilters trustGuest='yes'/>" in port_xml, port_xml


def test_a_portgroup_is_only_for_a_network_interface(scenario):
    name = f"virtops-test-{secrets.token_hex(4)}"
    args = scenario.guest_args(name, Net(), random_mac(), portgroup="trusted")
    args["interfaces"] = [{"type": "user", "portgroup": "trusted"}]
    result = scenario.domain(args)
    assert result.get("failed") and result["msg"].startswith("interfaces[0].portgroup: "), result
    assert "type user" in result["msg"] and not scenario.domain_info(name)["exists"]


def test_embed_refuses_a_portgroup_whose_settings_it_would_leave_out(embed_scenario):
    net, mac = Net(), random_mac()
    assert embed_scenario.network({"name": net.name, "xml": portgroup_network(net)})["changed"]
    name = f"virtops-test-{secrets.token_hex(4)}"
    result = embed_scenario.domain(embed_scenario.guest_args(name, net, mac, portgroup="shaped"))
    assert result.get("failed") and "portgroup 'shaped'" in result["msg"], result
    assert "a bandwidth limit" in result["msg"] and "does not apply" in result["msg"], result
    domain = embed_scenario.domain_info(name)["domain"]
    source = etree.fromstring(domain["xml"].encode()).find("devices/interface/source")
    assert domain["state"] == "shutoff" and source.get("portgroup") == "shaped", domain


# -- the embedded driver's own clean-up of what a crash left --------------------

@pytest.fixture
def embed_scenario(root, netns, guest, workdir):
    running = Scenario(EmbedNetworkSide(root, netns), guest, workdir)
    try:
        yield running
    finally:
        running.close()


def warnings_of(result: dict) -> str:
    return " ".join(result.get("warnings", []))


def test_embed_killed_dnsmasq_is_torn_down_and_restarted(embed_scenario):
    side, net = embed_scenario.side, Net()
    embed_scenario.network(net.options())
    old = assert_running(side, net)
    os.kill(old, signal.SIGKILL)

    result = embed_scenario.network(net.options())
    assert result["changed"] and result["state"] == "active", result
    assert "dnsmasq" in warnings_of(result), result
    new = assert_running(side, net)
    assert new != old
    assert len([t for t in side.netns.nft_tables() if net.bridge in t]) == 1
    assert not embed_scenario.network(net.options())["changed"]


def test_embed_half_made_network_is_cleaned_by_the_next_run(embed_scenario):
    side, net = embed_scenario.side, Net()
    embed_scenario.network(net.options())
    dnsmasq = assert_running(side, net)
    side.netns.run(["ip", "link", "delete", net.bridge])

    result = embed_scenario.network({"name": net.name, "state": "inactive"})
    assert result["state"] == "inactive", result
    assert net.bridge in warnings_of(result) or "bridge" in warnings_of(result), result
    assert_nothing_left(side, net, dnsmasq)
    assert not side.status_exists(net.name)
    assert not embed_scenario.network({"name": net.name, "state": "inactive"})["changed"]


# -- values that would reach a helper's configuration -----------------------------

def observed(scenario: Scenario, net: Net) -> tuple:
    """What a refused change must leave as it was: definition, live XML, dnsmasq's files and pid, the bridge."""
    info = scenario.network_info(net.name)["network"]
    link = scenario.side.netns.links()[net.bridge]
    return (info["xml"], info["state"], scenario.side.dnsmasq_files(net.name), scenario.side.dnsmasq_pid(net.name),
            link["address"], link["operstate"])


INJECTED = "x\ndhcp-script=/bin/true"


def with_txt(net: Net, value: str) -> dict:
    return net.options(dns={"txt": [{"name": "t1", "value": value}]})


def with_host_name(net: Net, name: str) -> dict:
    options = net.options()
    options["ips"][0]["dhcp"]["hosts"].append({"mac": "52:54:00:aa:00:02", "ip": net.address(61), "name": name})
    return options


def test_a_control_character_in_a_value_for_dnsmasq_is_refused_and_nothing_changes(scenario):
    net = Net(hosts={"52:54:00:aa:00:01": ""})
    net.hosts["52:54:00:aa:00:01"] = net.address(60)
    assert scenario.network(with_txt(net, "fine"))["changed"]
    before = observed(scenario, net)
    assert "txt-record=t1,fine" in (before[2]["conf"] or ""), before

    refused = [(args, option, check) for args, option in [
        (with_txt(net, INJECTED), "dns.txt[0].value"),
        (with_host_name(net, "web\ndhcp-script=/bin/true"), "ips[0].dhcp.hosts[1].name"),
        (with_host_name(net, "web\x00"), "ips[0].dhcp.hosts[1].name"),
        ({"name": net.name, "xml": f"<network><name>{net.name}</name><dns><txt name='t1' value='x&#10;"
                                   "dhcp-script=/bin/true'/></dns></network>"}, "xml"),
    ] for check in (True, False)]
    # One playbook: each refused call, then the definition and state it must have left.  dnsmasq's
    # files and pid and the bridge are compared at the end: no later call of the playbook succeeds,
    # so none could put back what an earlier one changed.
    results = run_module_calls([call for args, _option, check in refused for call in (
        ("network", {"uri": scenario.side.uri, **args}, {"check_mode": check}),
        ("network_info", {"uri": scenario.side.uri, "name": net.name}))], netns=scenario.side.module_netns)
    for (args, option, check), result, info in zip(refused, results[::2], results[1::2], strict=True):
        assert result.get("failed") and result["msg"].startswith(f"{option}: "), (check, result)
        assert "control character" in result["msg"], result
        assert (info["network"]["xml"], info["network"]["state"]) == before[:2], (args, check)
    assert observed(scenario, net) == before
    assert not scenario.network(with_txt(net, "fine"))["changed"]


REFUSED_DHCP = [
    ([{"address": "fd00:9:9::1", "prefix": 96, "dhcp": {"ranges": [{"start": "fd00:9:9::10", "end": "fd00:9:9::20"}]}}],
     "ips[0].prefix", "DHCPv6 needs a prefix of 64, not 96"),
    ([{"address": "10.9.9.1", "prefix": 24, "dhcp": {"ranges": [{"start": "10.9.9.1", "end": "10.9.9.20"}]}}],
     "ips[0].dhcp.ranges[0]", "covers 10.9.9.1, the network's own address"),
    ([{"address": "10.9.9.1", "prefix": 24, "dhcp": {"ranges": [{"start": "10.9.9.200", "end": "10.9.9.255"}]}}],
     "ips[0].dhcp.ranges[0]", "covers 10.9.9.255, the broadcast address"),
    ([{"address": "10.9.9.9", "prefix": 24, "dhcp": {"ranges": [{"start": "10.9.9.0", "end": "10.9.9.5"}]}}],
     "ips[0].dhcp.ranges[0]", "covers 10.9.9.0, the network address"),
    ([{"address": "10.9.9.1", "prefix": 24}, {"address": "10.9.9.129", "prefix": 25}],
     "ips[1]", "overlaps subnet 10.9.9.0/24 of ips[0]"),
]


def test_dhcp_that_dnsmasq_would_refuse_is_refused_up_front(scenario):
    nets = [Net() for _case in REFUSED_DHCP]
    results = scenario.network_calls([{**net.options(), "ips": ips}
                                      for net, (ips, _option, _message) in zip(nets, REFUSED_DHCP, strict=True)])
    for net, (ips, option, message), result in zip(nets, REFUSED_DHCP, results, strict=True):
        assert result.get("failed") and result["msg"].startswith(f"{option}: ") and message in result["msg"], \
            (ips, result)
        assert net.name not in scenario.side.names() and not scenario.side.bridge_exists(net.bridge)


def test_embed_unreadable_definition_is_listed_stopped_from_its_record_and_removed(embed_scenario):
    side, net = embed_scenario.side, Net()
    embed_scenario.network(net.options())
    dnsmasq = assert_running(side, net)
    config = Path(side.root) / "etc" / "network" / f"{net.name}.xml"
    config.write_text("<network><x\n")

    listed = run_module("network_info", {"uri": side.uri}, netns=side.module_netns)
    [entry] = [n for n in listed["networks"] if n["name"] == net.name]
    assert set(entry) == {"name", "error"} and str(config) in entry["error"], listed
    predicted = embed_scenario.network({"name": net.name, "state": "absent"}, check=True)
    assert predicted["changed"] and predicted["state"] == "absent", predicted
    assert assert_running(side, net) == dnsmasq and config.exists()

    stopped = embed_scenario.network({"name": net.name, "state": "inactive"})
    assert stopped["changed"] and stopped["state"] == "inactive", stopped
    assert str(config) in warnings_of(stopped), stopped
    assert_nothing_left(side, net, dnsmasq)
    assert not side.status_exists(net.name)
    removed = embed_scenario.network({"name": net.name, "state": "absent"})
    assert removed["changed"] and removed["state"] == "absent", removed
    assert not config.exists() and net.name not in side.names()
    assert not embed_scenario.network({"name": net.name, "state": "absent"})["changed"]


def test_embed_leftovers_of_a_lost_status_record_are_removed(embed_scenario):
    side, net = embed_scenario.side, Net()
    embed_scenario.network(net.options())
    old = assert_running(side, net)
    record = Path(side.root) / "run" / "network" / f"{net.name}.xml"
    record.unlink()

    result = embed_scenario.network(net.options())

    assert result["changed"] and result["state"] == "active", result
    assert "lost its status record" in warnings_of(result) and f"dnsmasq (pid {old})" in warnings_of(result), result
    new = assert_running(side, net)
    assert new != old and not is_live_dnsmasq(old)
    assert len([t for t in side.netns.nft_tables() if net.bridge in t]) == 1
    assert not embed_scenario.network(net.options())["changed"]

    record.unlink()
    stopped = embed_scenario.network({"name": net.name, "state": "inactive"})
    assert stopped["state"] == "inactive" and "lost its status record" in warnings_of(stopped), stopped
    assert_nothing_left(side, net, new)


def test_embed_change_from_another_namespace_is_refused_before_anything_is_written(embed_scenario):
    side, net = embed_scenario.side, Net(hosts={"52:54:00:aa:00:01": ""})
    net.hosts["52:54:00:aa:00:01"] = net.address(60)
    embed_scenario.network(net.options())
    dnsmasq = assert_running(side, net)
    config = Path(side.root) / "etc" / "network" / f"{net.name}.xml"
    record = Path(side.root) / "run" / "network" / f"{net.name}.xml"
    before = (config.read_bytes(), record.read_bytes(), side.dnsmasq_files(net.name))
    net.hosts["52:54:00:aa:00:02"] = net.address(61)

    with private_netns() as elsewhere:
        for args, verb in [(net.options(), "update"), ({**net.options(forward={"mode": "route"}), "restart": True},
                                                       "restart"),
                           ({"name": net.name, "state": "inactive"}, "stop"),
                           ({"name": net.name, "state": "absent"}, "remove")]:
            for check in (True, False):
                result = run_module("network", {"uri": side.uri, **args}, netns=elsewhere.name, check=check)
                assert result.get("failed") and f"cannot {verb} network" in result["msg"], result
                assert "another network namespace" in result["msg"], result
                assert (config.read_bytes(), record.read_bytes(), side.dnsmasq_files(net.name)) == before
    assert assert_running(side, net) == dnsmasq

    updated = embed_scenario.network(net.options())     # from the network's own namespace it goes live
    assert updated["changed"] and updated["live_updates"], updated
    assert side.dnsmasq_pid(net.name) == dnsmasq
