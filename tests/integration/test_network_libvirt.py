"""The network and network_info modules against the harness's libvirtd (qemu:///system).

The libvirtd the harness starts lives in a network namespace of its own, so
the bridges, dnsmasq and firewall rules these tests make never touch the
host's; a fixture checks that before anything is created.  Every network
has a unique name, bridge and 10.x.y.0/24 subnet and is removed afterwards.
"""

from __future__ import annotations

import os
import random
import secrets
import subprocess
import time
from pathlib import Path

import pytest
from lxml import etree

from harness.ansible import run_module
from harness.netns import netns_of_pid

pytestmark = pytest.mark.libvirt

URI = "qemu:///system"


def libvirtd_pid() -> int:
    try:
        return int(Path("/run/libvirtd.pid").read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return int(subprocess.run(["pgrep", "-x", "libvirtd"], capture_output=True, text=True,
                                  check=True).stdout.split()[0])


@pytest.fixture
def isolated_libvirtd(libvirtd):
    """libvirtd must not share our network namespace: its networks would be made in the host's."""
    assert netns_of_pid(libvirtd_pid()) != os.stat("/proc/self/ns/net").st_ino
    return libvirtd


class Net:
    def __init__(self, libvirtd):
        token = secrets.token_hex(4)
        self.libvirtd = libvirtd
        self.name = f"vt-{token}"
        self.bridge = f"vtb{token}"
        self.prefix = f"10.{random.randint(64, 250)}.{random.randint(1, 250)}"

    def addr(self, last: int) -> str:
        return f"{self.prefix}.{last}"

    def dumpxml(self, inactive: bool = False):
        args = ["net-dumpxml", self.name] + ["--inactive"] * inactive
        return etree.fromstring(self.libvirtd.virsh(*args).encode())

    def exists(self) -> bool:
        return self.name in self.libvirtd.virsh("net-list", "--all", "--name").split()

    def dnsmasq_pid(self) -> int:
        """The network's running dnsmasq, from libvirt's pidfile."""
        pid = int(Path(f"/run/libvirt/network/{self.name}.pid").read_text(encoding="ascii").strip())
        assert f"{self.name}.conf".encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
        return pid

    def remove(self) -> None:
        self.libvirtd.virsh("net-destroy", self.name, check=False)
        self.libvirtd.virsh("net-undefine", self.name, check=False)


@pytest.fixture
def net(isolated_libvirtd):
    created = Net(isolated_libvirtd)
    yield created
    created.remove()


def network(args: dict, check: bool = False) -> dict:
    return run_module("network", args, check=check, diff=True, uri=URI)


def nat_args(net: Net, hosts: list | None = None, **extra) -> dict:
    dhcp = {"ranges": [{"start": net.addr(100), "end": net.addr(199), "lease_time": "1h"}],
            "hosts": hosts if hosts is not None else [{"mac": "52:54:00:10:00:01", "name": "one", "ip": net.addr(10)}]}
    return {"name": net.name, "forward": {"mode": "nat"}, "bridge": {"name": net.bridge},
            "ips": [{"address": net.addr(1), "prefix": 24, "dhcp": dhcp}], **extra}


def created(net: Net) -> dict:
    predicted = network(nat_args(net), check=True)
    assert not predicted.get("failed"), predicted.get("msg")
    assert not net.exists(), "check mode created the network"
    first = network(nat_args(net))
    assert not first.get("failed"), first.get("msg")
    return {"predicted": predicted, "first": first}


def test_nat_network_with_dhcp_is_created_once(net):
    runs = created(net)
    predicted, first = runs["predicted"], runs["first"]
    assert (predicted["changed"], predicted["state"], predicted["bridge"]) == (True, "active", net.bridge)
    assert (first["changed"], first["state"], first["bridge"]) == (True, "active", net.bridge)
    assert predicted["diff"]["before"] == first["diff"]["before"] == ""
    for text in (f'<bridge name="{net.bridge}"', f'<range start="{net.addr(100)}" end="{net.addr(199)}"',
                 '<host mac="52:54:00:10:00:01" name="one"', '<port start="1024" end="65535"/>'):
        assert text in predicted["diff"]["after"] and text in first["diff"]["after"], text
    live = net.dumpxml()
    assert live.find("forward").get("mode") == "nat"
    assert live.find("ip/dhcp/range/lease").attrib == {"expiry": "1", "unit": "hours"}
    assert first["uuid"] == live.findtext("uuid")
    for check in (True, False):
        again = network(nat_args(net), check=check)
        assert (again["changed"], again["live_updates"], again["restart_required"]) == (False, [], False)
        assert again["diff"]["before"] == again["diff"]["after"]


def test_static_host_is_added_to_the_running_network(net):
    created(net)
    dnsmasq = net.dnsmasq_pid()
    hosts = [{"mac": "52:54:00:10:00:01", "name": "one", "ip": net.addr(10)},
             {"mac": "52:54:00:10:00:02", "name": "two", "ip": net.addr(11)}]
    expected = [f'add ip-dhcp-host <host mac="52:54:00:10:00:02" name="two" ip="{net.addr(11)}"/>']
    predicted = network(nat_args(net, hosts), check=True)
    assert net.dumpxml().find("ip/dhcp/host[@mac='52:54:00:10:00:02']") is None
    result = network(nat_args(net, hosts))
    for key in ("changed", "live_updates", "restart_required", "diff", "state", "bridge"):
        assert predicted[key] == result[key], key
    assert (result["changed"], result["live_updates"], result["restart_required"]) == (True, expected, False)
    assert result["diff"]["after"].count("<host ") == 2 and result["diff"]["before"].count("<host ") == 1
    for inactive in (False, True):
        assert net.dumpxml(inactive).find("ip/dhcp/host[@mac='52:54:00:10:00:02']").get("ip") == net.addr(11)
    assert net.dnsmasq_pid() == dnsmasq
    assert "52:54:00:10:00:02" in Path(f"/var/lib/libvirt/dnsmasq/{net.name}.hostsfile").read_text()
    assert not network(nat_args(net, hosts))["changed"]
    removed = network(nat_args(net, hosts[:1]))
    assert removed["live_updates"] == [expected[0].replace("add ", "delete ", 1)]
    assert net.dumpxml().find("ip/dhcp/host[@mac='52:54:00:10:00:02']") is None
    assert net.dnsmasq_pid() == dnsmasq


def test_forward_mode_change_waits_for_a_restart(net):
    created(net)
    routed = {**nat_args(net), "forward": {"mode": "route"}}
    predicted = network(routed, check=True)
    result = network(routed)
    assert (predicted["changed"], predicted["restart_required"]) == (True, True)
    assert (result["changed"], result["restart_required"], result["live_updates"]) == (True, True, [])
    assert predicted["diff"] == result["diff"]
    assert net.dumpxml().find("forward").get("mode") == "nat"
    assert net.dumpxml(inactive=True).find("forward").get("mode") == "route"
    assert net.dumpxml(inactive=True).find("forward/nat") is None
    pending = network(routed)
    assert (pending["changed"], pending["restart_required"]) == (False, True)
    restarted = network({**routed, "restart": True})
    assert (restarted["changed"], restarted["restart_required"], restarted["state"]) == (True, False, "active")
    assert net.dumpxml().find("forward").get("mode") == "route"
    assert network(routed)["restart_required"] is False


def test_inactive_then_absent(net):
    created(net)
    dnsmasq = net.dnsmasq_pid()
    stopped = network({"name": net.name, "state": "inactive"})
    assert (stopped["changed"], stopped["state"], stopped["bridge"]) == (True, "inactive", None)
    assert net.name not in net.libvirtd.virsh("net-list", "--name").split()
    assert gone_soon(dnsmasq, net.name), "dnsmasq outlived its network"
    assert not network({"name": net.name, "state": "inactive"})["changed"]
    started = network({"name": net.name, "state": "active", "autostart": True})
    assert (started["changed"], started["state"], started["autostart"]) == (True, "active", True)
    predicted = network({"name": net.name, "state": "absent"}, check=True)
    assert predicted["changed"] and net.exists()
    gone = network({"name": net.name, "state": "absent"})
    assert (gone["changed"], gone["state"]) == (True, "absent")
    assert "<name>" in gone["diff"]["before"] and gone["diff"]["after"] == ""
    assert not net.exists()
    assert not network({"name": net.name, "state": "absent"})["changed"]


def gone_soon(pid: int, name: str, timeout: float = 10) -> bool:
    """libvirt signals dnsmasq and does not wait for it: wait until the network's dnsmasq has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return True
        if f"{name}.conf".encode() not in cmdline:
            return True
        time.sleep(0.1)
    return False


def bad_cases(net: Net) -> list[tuple[dict, str]]:
    subnet = {"address": net.addr(1), "prefix": 24}
    return [
        ({"bridge": {"name": "vtb-far-too-long-name"}}, "bridge.name: bridge name"),
        ({"ips": [{**subnet, "dhcp": {"ranges": [{"start": "10.255.0.2", "end": net.addr(9)}]}}]},
         "ips[0].dhcp.ranges[0]: DHCP range start 10.255.0.2 is outside the subnet"),
        ({"ips": [{**subnet, "dhcp": {"ranges": [{"start": net.addr(50), "end": net.addr(40)}]}}]},
         f"ips[0].dhcp.ranges[0]: DHCP range start {net.addr(50)} comes after its end"),
        ({"ips": [{**subnet, "dhcp": {"hosts": [{"ip": net.addr(5)}]}}]},
         "ips[0].dhcp.hosts[0]: a static DHCP host needs a mac or a name"),
        ({"ips": [{"address": net.addr(1), "prefix": 40}]}, "ips[0].prefix: prefix '40'"),
        ({"xml": f"<network><name>{net.name}</name><forward mode='warp'/></network>"},
         "xml: <forward mode>: unknown forward mode 'warp'"),
    ]


def test_bad_input_names_the_option_and_creates_nothing(net):
    for options, words in bad_cases(net):
        result = network({"name": net.name, **options})
        assert result.get("failed") and words in result["msg"], (options, result.get("msg"))
        assert not net.exists()
    unknown = network({"name": net.name, "forward": {"mode": "warp"}})
    assert unknown.get("failed") and "forward" in unknown["msg"] and "mode" in unknown["msg"]
    assert not net.exists()


def test_network_info_lists_bridge_and_leases(net):
    created(net)
    one = run_module("network_info", {"name": net.name}, uri=URI)
    info = one["network"]
    assert (one["changed"], one["exists"]) == (False, True)
    assert (info["state"], info["bridge"], info["persistent"], info["autostart"]) == \
        ("active", net.bridge, True, False)
    assert isinstance(info["leases"], list)
    assert info["uuid"] == net.dumpxml().findtext("uuid")
    listing = run_module("network_info", {}, uri=URI)["networks"]
    assert [n["bridge"] for n in listing if n["name"] == net.name] == [net.bridge]
    missing = run_module("network_info", {"name": f"{net.name}-none"}, uri=URI)
    assert (missing["exists"], missing.get("failed", False)) == (False, False)
