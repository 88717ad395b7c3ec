"""The embedded driver's networks, made for real in a private network namespace per test.

Every driver call runs in a fresh process inside the test's namespace
(harness.netdriver), as module runs do; what the driver made is observed
there with ip, nft and /proc.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from pathlib import Path

import pytest

from ansible_collections.virtops.qemu.plugins.module_utils.driver.connect import open_driver
from ansible_collections.virtops.qemu.plugins.module_utils.errors import Conflict
from harness.libvirtd import domain_xml
from harness.netdriver import EmbedInNetns

pytestmark = pytest.mark.embed

# A start whose run dies after dnsmasq is up but before the record says so: the run is killed, not mocked.
KILLED_START = """
import os, sys
from ansible_collections.virtops.qemu.plugins.module_utils.driver.connect import open_driver
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import dnsmasq
real_start = dnsmasq.start
def start_then_die(files):
    real_start(files)
    os.kill(os.getpid(), 9)
dnsmasq.start = start_then_die
with open_driver("qemu:///embed?root=" + sys.argv[1]) as drv:
    drv.networks.start(sys.argv[2])
"""


@pytest.fixture
def drv(netns, root) -> EmbedInNetns:
    return EmbedInNetns(netns, root)


def subnet() -> str:
    """A /24 prefix no other test picks at the same time: "10.A.B"."""
    return f"10.{random.randrange(100, 250)}.{random.randrange(1, 250)}"


def nat_xml(name: str, net: str, bridge: str = "", hosts: str = "", ipv6: str = "") -> str:
    bridge_element = f"<bridge name='{bridge}'/>" if bridge else ""
    return (f"<network><name>{name}</name><forward mode='nat'/>{bridge_element}"
            f"<ip address='{net}.1' netmask='255.255.255.0'><dhcp>"
            f"<range start='{net}.10' end='{net}.50'/>{hosts}</dhcp></ip>{ipv6}</network>")


def dnsmasq_pids(netns) -> list[int]:
    return [pid for pid in netns.pids() if Path(f"/proc/{pid}/comm").read_text().strip() == "dnsmasq"]


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def status(root, name: str) -> Path:
    return Path(root) / "run" / "network" / f"{name}.xml"


def assert_nothing_left(netns, root, name: str) -> None:
    assert list(netns.links()) == ["lo"]
    assert netns.nft_tables() == []
    assert netns.pids() == []
    assert not status(root, name).exists()
    assert not (Path(root) / "run" / "network" / f"{name}.pid").exists()


def test_a_nat_network_gets_its_bridge_nat_table_and_dnsmasq(drv, netns, root):
    net = subnet()
    assert drv.net("define", nat_xml("n1", net)) is None
    config = drv.net("xml", "n1")
    mac = config.split("<mac address=\"")[1].split("\"")[0]
    assert "<bridge name=\"virbr0\" stp=\"on\" delay=\"0\"/>" in config
    assert "<port start=\"1024\" end=\"65535\"/>" in config

    drv.net("start", "n1")

    assert drv.net("active", "n1") is True and drv.net("bridge", "n1") == "virbr0"
    link = netns.links()["virbr0"]
    assert link["linkinfo"]["info_kind"] == "bridge" and link["address"] == mac
    assert link["linkinfo"]["info_data"]["stp_state"] == 1
    assert f"{net}.1/24" in netns.addresses("virbr0")
    [pid] = dnsmasq_pids(netns)
    assert cmdline(pid)[1:] == [f"--conf-file={root}/lib/dnsmasq/n1.conf"]
    conf = (Path(root) / "lib" / "dnsmasq" / "n1.conf").read_text()
    assert f"dhcp-range={net}.10,{net}.50,255.255.255.0\n" in conf and "interface=virbr0\n" in conf
    assert netns.nft_tables() == ["inet virtops_virbr0"]
    ruleset = netns.ruleset()
    assert f"ip saddr {net}.0/24 ip daddr != {net}.0/24 meta l4proto tcp masquerade to :1024-65535" in ruleset
    assert netns.run(["cat", "/proc/sys/net/ipv4/ip_forward"]).stdout.strip() == "1"
    assert drv.call("networks", "start", "n1")["error"] == "Conflict"


def test_a_dhcp_host_added_live_keeps_dnsmasq_and_a_range_change_restarts_it(drv, netns, root):
    net = subnet()
    drv.net("define", nat_xml("n1", net, hosts=f"<host mac='52:54:00:00:00:01' ip='{net}.5' name='one'/>"))
    drv.net("start", "n1")
    [pid] = dnsmasq_pids(netns)
    hostsfile = Path(root) / "lib" / "dnsmasq" / "n1.hostsfile"
    assert hostsfile.read_text() == f"52:54:00:00:00:01,{net}.5,one\n"

    drv.net("update", "n1", "add-last", "ip-dhcp-host", f"<host mac='52:54:00:00:00:02' ip='{net}.6' name='two'/>", -1)

    assert hostsfile.read_text() == f"52:54:00:00:00:01,{net}.5,one\n52:54:00:00:00:02,{net}.6,two\n"
    assert dnsmasq_pids(netns) == [pid]
    assert f"ip=\"{net}.6\"" in drv.net("xml", "n1", False)
    assert f"ip=\"{net}.6\"" not in drv.net("xml", "n1")      # the definition is the caller's business

    drv.net("update", "n1", "delete", "ip-dhcp-range", f"<range start='{net}.10' end='{net}.50'/>", -1)
    drv.net("update", "n1", "add-last", "ip-dhcp-range", f"<range start='{net}.100' end='{net}.120'/>", -1)

    [new_pid] = dnsmasq_pids(netns)
    assert new_pid != pid
    conf = (Path(root) / "lib" / "dnsmasq" / "n1.conf").read_text()
    assert f"dhcp-range={net}.100,{net}.120,255.255.255.0\n" in conf and f"{net}.50" not in conf
    duplicate = drv.call("networks", "update", "n1", "add-last", "ip-dhcp-host",
                         f"<host mac='52:54:00:00:00:02' ip='{net}.7'/>", -1)
    assert duplicate["error"] == "InvalidInput" and dnsmasq_pids(netns) == [new_pid]


def test_stop_removes_bridge_dnsmasq_and_table(drv, netns, root):
    drv.net("define", nat_xml("n1", subnet()))
    drv.net("start", "n1")
    assert len(dnsmasq_pids(netns)) == 1

    drv.net("stop", "n1")

    assert drv.net("active", "n1") is False and drv.net("bridge", "n1") is None
    assert_nothing_left(netns, root, "n1")
    assert drv.call("networks", "stop", "n1")["error"] == "Conflict"
    drv.net("start", "n1")      # and it starts again
    assert drv.net("active", "n1") is True


def test_a_killed_dnsmasq_is_noticed_and_the_network_torn_down(drv, netns, root):
    drv.net("define", nat_xml("n1", subnet()))
    drv.net("start", "n1")
    [pid] = dnsmasq_pids(netns)
    os.kill(pid, signal.SIGKILL)
    _wait_gone(pid)

    out = drv.call("networks", "active", "n1")

    assert out["value"] is False
    assert len(out["warnings"]) == 1 and f"dnsmasq (pid {pid}) had gone" in out["warnings"][0]
    assert_nothing_left(netns, root, "n1")
    assert "virbr0" in drv.net("xml", "n1")         # the definition stays


def test_a_start_whose_run_died_is_cleaned_up_by_the_next_run(drv, netns, root):
    drv.net("define", nat_xml("n1", subnet()))
    done = netns.run([*_python(), "-c", KILLED_START, str(root), "n1"], check=False)
    assert done.returncode == -signal.SIGKILL
    assert "virbr0" in netns.links() and len(dnsmasq_pids(netns)) == 1
    assert "state=\"starting\"" in status(root, "n1").read_text()

    out = drv.call("networks", "xml", "n1", False)

    assert "error" not in out and "its start did not finish" in out["warnings"][0]
    assert_nothing_left(netns, root, "n1")


def test_a_subnet_overlapping_an_active_network_or_a_route_is_refused(drv, netns, root):
    net = subnet()
    drv.net("define", nat_xml("n1", net))
    drv.net("define", f"<network><name>n2</name><ip address='{net}.129' prefix='25'/></network>")
    drv.net("start", "n1")
    before = (netns.links().keys(), netns.nft_tables(), dnsmasq_pids(netns))

    out = drv.call("networks", "start", "n2")

    assert out["error"] == "Conflict" and f"overlaps subnet {net}.0/24 of active network 'n1'" in out["message"]
    assert (netns.links().keys(), netns.nft_tables(), dnsmasq_pids(netns)) == before
    assert not status(root, "n2").exists()

    drv.net("stop", "n1")
    netns.run(["ip", "link", "add", "vt0", "type", "veth", "peer", "name", "vt1"])
    netns.run(["ip", "addr", "add", f"{net}.200/24", "dev", "vt0"])
    netns.run(["ip", "link", "set", "vt0", "up"])

    out = drv.call("networks", "start", "n1")

    assert out["error"] == "Conflict" and f"route {net}.0/24 dev vt0" in out["message"]
    assert sorted(netns.links()) == ["lo", "vt0", "vt1"] and netns.nft_tables() == [] and netns.pids() == []


def test_a_bridge_name_over_15_bytes_is_refused_at_define(drv, root):
    out = drv.call("networks", "define", nat_xml("n1", subnet(), bridge="vtb0123456789abc"))

    assert out["error"] == "InvalidInput" and "bridge@name" in out["message"] and "16 bytes" in out["message"]
    assert not (Path(root) / "etc" / "network" / "n1.xml").exists()


def test_an_ipv6_network_sends_router_advertisements(drv, netns, root):
    drv.net("define", "<network><name>n6</name><forward mode='route'/>"
                      "<ip family='ipv6' address='fd00:5:6::1' prefix='64'/></network>")
    drv.net("start", "n6")

    assert "fd00:5:6::1/64" in netns.addresses("virbr0")
    conf = (Path(root) / "lib" / "dnsmasq" / "n6.conf").read_text()
    assert "enable-ra\n" in conf and "dhcp-range=fd00:5:6::1,ra-only\n" in conf
    assert len(dnsmasq_pids(netns)) == 1
    assert "ip6 saddr fd00:5:6::/64 accept" in netns.ruleset()
    assert netns.run(["cat", "/proc/sys/net/ipv6/conf/all/forwarding"]).stdout.strip() == "1"


def test_a_domain_attaches_to_its_networks_bridge(drv, netns, root, guest_build):
    drv.net("define", nat_xml("n1", subnet()))
    interface = ("<interface type='network'><mac address='52:54:00:12:34:99'/><source network='n1'/>"
                 "<model type='virtio'/></interface>")
    drv.call("domains", "define", domain_xml("vm1", guest_build, f"{root}/serial.log", extra_devices=interface))

    refused = drv.call("domains", "start", "vm1", True)

    assert refused["error"] == "Conflict" and "network 'n1' is not active" in refused["message"]
    assert sorted(netns.links()) == ["lo"]

    drv.net("start", "n1")
    assert "error" not in drv.call("domains", "start", "vm1", True)

    tap = netns.links()["vnet0"]
    assert tap["master"] == "virbr0" and tap["address"] == "fe:54:00:12:34:99"
    live = drv.call("domains", "xml", "vm1", False)["value"]
    assert "<source network=\"n1\" bridge=\"virbr0\"/>" in live and "<target dev=\"vnet0\"/>" in live
    assert "<source network=\"n1\"/>" in drv.call("domains", "xml", "vm1")["value"]
    drv.call("domains", "destroy", "vm1")
    assert "vnet0" not in netns.links()


def test_a_network_is_left_alone_by_runs_in_another_namespace(drv, netns, root):
    drv.net("define", nat_xml("n1", subnet()))
    drv.net("start", "n1")
    [pid] = dnsmasq_pids(netns)
    # This test process is in the host's namespace: the bridge is invisible from here, and must not be "repaired".
    with open_driver(f"qemu:///embed?root={root}") as host_side:
        assert host_side.networks.active("n1") and host_side.networks.bridge("n1") == "virbr0"
        with pytest.raises(Conflict, match="started in another network namespace"):
            host_side.networks.stop("n1")
        assert host_side.warnings == []
    assert dnsmasq_pids(netns) == [pid] and "virbr0" in netns.links() and netns.nft_tables()
    netns.close()       # the namespace goes with its dnsmasq, bridge and table
    with open_driver(f"qemu:///embed?root={root}") as host_side:
        assert not host_side.networks.active("n1")
        assert "its dnsmasq (pid" in host_side.warnings[0]
    assert not status(root, "n1").exists()


def test_an_undefined_active_network_stays_until_stopped(drv, netns, root):
    drv.net("define", nat_xml("n1", subnet()))
    drv.net("start", "n1")
    drv.net("undefine", "n1")

    assert drv.net("names") == ["n1"] and drv.net("active", "n1") is True
    assert "<name>n1</name>" in drv.net("xml", "n1")    # only the live XML is left
    drv.net("stop", "n1")

    assert drv.net("names") == [] and drv.call("networks", "active", "n1")["error"] == "NotFound"
    assert_nothing_left(netns, root, "n1")
    assert not (Path(root) / "run" / "network" / "locks" / "network" / "n1.lock").exists()


def test_a_bridge_mode_network_uses_the_host_bridge_as_it_is(drv, netns, root):
    netns.run(["ip", "link", "add", "vtbhost", "type", "bridge"])
    drv.net("define", "<network><name>lan</name><forward mode='bridge'/><bridge name='vtbhost'/></network>")
    drv.net("start", "lan")

    assert drv.net("bridge", "lan") == "vtbhost"
    assert netns.nft_tables() == [] and netns.pids() == []
    drv.net("stop", "lan")
    assert "vtbhost" in netns.links() and not status(root, "lan").exists()


def _python() -> list[str]:
    return ["env", f"PYTHONPATH={os.pathsep.join(p for p in sys.path if p)}", sys.executable]


def _wait_gone(pid: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text(errors="replace")
        except OSError:
            return
        if stat[stat.rfind(")") + 2] in "ZX":
            return
        time.sleep(0.02)


AUTOSTART = """
import json, sys
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import autostart
print(json.dumps(autostart.autostart_all(sys.argv[1])))
"""


def test_boot_autostart_starts_networks_before_the_domains_on_them(drv, netns, root, guest_build):
    drv.net("define", nat_xml("n1", subnet()))
    interface = "<interface type='network'><source network='n1'/><model type='virtio'/></interface>"
    drv.call("domains", "define", domain_xml("vm1", guest_build, f"{root}/serial.log", extra_devices=interface))
    drv.net("set_autostart", "n1", True)
    drv.call("domains", "set_autostart", "vm1", True)

    started = json.loads(netns.python(AUTOSTART, str(root)))

    assert started == {"network n1": None, "domain vm1": None}
    assert netns.links()["vnet0"]["master"] == "virbr0"
    assert json.loads(netns.python(AUTOSTART, str(root))) == {}      # all running already
    drv.call("domains", "destroy", "vm1")
    drv.net("stop", "n1")


def test_the_dnsmasq_writer_refuses_a_control_character_itself(drv, netns, root):
    net = subnet()
    injected = "<dns><txt name='t1' value='x&#10;dhcp-script=/bin/true'/></dns>"
    drv.net("define", nat_xml("n1", net).replace("<ip ", f"{injected}<ip ", 1))

    out = drv.call("networks", "start", "n1")

    assert out["error"] == "InvalidInput" and "control character" in out["message"], out
    assert_nothing_left(netns, root, "n1")
    assert not list((Path(root) / "lib" / "dnsmasq").glob("n1.*"))

    drv.net("define", nat_xml("n2", subnet()))
    drv.net("start", "n2")
    [pid] = dnsmasq_pids(netns)
    files = {path: path.read_text() for path in (Path(root) / "lib" / "dnsmasq").glob("n2.*")}
    out = drv.call("networks", "update", "n2", "add-last", "dns-txt",
                   "<txt name='t2' value='x&#10;dhcp-script=/bin/true'/>", -1)
    assert out["error"] == "InvalidInput" and "control character" in out["message"], out
    assert {path: path.read_text() for path in files} == files and dnsmasq_pids(netns) == [pid]
    assert "t2" not in drv.net("xml", "n2", False)


def test_a_bridge_of_the_same_name_but_not_ours_is_left_alone(drv, netns, root):
    drv.net("define", nat_xml("n1", subnet(), bridge="vtbforeign"))
    netns.run(["ip", "link", "add", "vtbforeign", "address", "02:00:00:00:00:01", "type", "bridge"])

    out = drv.call("networks", "active", "n1")

    assert out == {"value": False, "warnings": []}
    assert "vtbforeign" in netns.links()
    refused = drv.call("networks", "start", "n1")
    assert refused["error"] == "Conflict" and "already exists" in refused["message"]
    assert "vtbforeign" in netns.links() and netns.nft_tables() == [] and netns.pids() == []


LINKS = """
import json
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import process
names = sorted(process.link_names())
print(json.dumps({"names": names, "addresses": {n: process.link_address(n) for n in names + ["nolink", "x" * 16]}}))
"""


def test_links_and_their_addresses_are_those_ip_shows_in_the_callers_namespace(netns):
    netns.run(["ip", "link", "add", "vtbr0", "type", "bridge"])
    netns.run(["ip", "link", "set", "vtbr0", "address", "52:54:00:AB:CD:01"])
    netns.run(["ip", "link", "add", "vtveth0", "type", "veth", "peer", "name", "vtveth1"])

    seen = json.loads(netns.python(LINKS))

    shown = netns.links()
    assert seen["names"] == sorted(shown) == ["lo", "vtbr0", "vtveth0", "vtveth1"]
    assert {name: seen["addresses"][name] for name in shown} == {name: link["address"] for name, link in shown.items()}
    assert seen["addresses"]["vtbr0"] == "52:54:00:ab:cd:01"
    assert seen["addresses"]["nolink"] is None and seen["addresses"]["x" * 16] is None
