# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Define and start one NAT network with DHCP: embedded driver against libvirtd, in one namespace.

(e) the embedded driver (qemu:///embed?root=...): open_driver, then
    networks.define(xml) and networks.start(name), in a Python process that
    lives in libvirtd's network namespace (started once; untimed start-up).
(v) libvirtd: wall time of ``virsh net-define FILE`` plus ``virsh net-start NAME``.
(a) libvirtd through libvirt-python in this process: networkDefineXML + create.

All three make the same network (own bridge name, own /24, NAT, a DHCP
range): a bridge with its address, a dnsmasq and NAT rules, in the same
namespace, which is the harness libvirtd's (never the host's: the script
refuses to run against a libvirtd in the host's namespace).  Every round is
checked (the bridge exists, dnsmasq runs) and undone untimed (stop and
undefine); the variants take turns going first.  One warm-up round, then
--runs timed rounds; medians and the ratios v/e and a/e are printed.

Run from the repository's venv:  .venv/bin/python bench/network_start.py
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import (
    REPO,
    TEST_COLLECTIONS,
    BenchError,
    drop_stale_dnsmasq_pidfile,
    ensure_our_collection_link,
    median,
    run_checked,
)

AIM = 3.0
NETWORK_XML = """\
<network>
  <name>{name}</name>
  <forward mode='nat'/>
  <bridge name='{bridge}'/>
  <ip address='{prefix}.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='{prefix}.100' end='{prefix}.199'/>
    </dhcp>
  </ip>
</network>
"""


class Names:
    """Unique network names, bridges and subnets for one benchmark run."""

    def __init__(self):
        self.tag = secrets.token_hex(3)
        self.count = 0
        self.used: set[str] = set()

    def next(self, kind: str) -> tuple[str, str, str]:
        self.count += 1
        prefix = f"10.{random.randint(200, 249)}.{random.randint(1, 250)}"
        while prefix in self.used:
            prefix = f"10.{random.randint(200, 249)}.{random.randint(1, 250)}"
        self.used.add(prefix)
        name = f"vonb-{self.tag}-{kind}{self.count}"
        return name, f"vonb{self.tag}{kind}{self.count}"[:15], prefix

    def xml(self, kind: str) -> tuple[str, str, str]:
        name, bridge, prefix = self.next(kind)
        return name, bridge, NETWORK_XML.format(name=name, bridge=bridge, prefix=prefix)


# -- the embedded side: a child process in the namespace ---------------------

def child_main(root: str) -> int:
    """Read network XML (one JSON line each) on stdin; define+start, report ms, undo."""
    sys.path.insert(0, str(TEST_COLLECTIONS))
    from ansible_collections.virtops.qemu.plugins.module_utils.driver.connect import open_driver

    uri = f"qemu:///embed?root={root}"
    for line in sys.stdin:
        job = json.loads(line)
        start = time.perf_counter()
        with open_driver(uri) as driver:
            driver.networks.define(job["xml"])
            driver.networks.start(job["name"])
        elapsed = time.perf_counter() - start
        with open_driver(uri) as driver:
            bridge = driver.networks.bridge(job["name"]) or "?"
            made = os.path.isdir(f"/sys/class/net/{bridge}") and has_dnsmasq_for(bridge)
            driver.networks.stop(job["name"])
            driver.networks.undefine(job["name"])
        print(json.dumps({"seconds": elapsed, "bridge": bridge, "made": made}), flush=True)
    return 0


class Embedded:
    def __init__(self, netns: str, root: Path):
        self.root = root
        argv = ["ip", "netns", "exec", netns, sys.executable, __file__, "--child-root", str(root)]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def round(self, name: str, xml: str) -> float:
        self.proc.stdin.write(json.dumps({"name": name, "xml": xml}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise BenchError(f"the embedded child exited ({self.proc.wait()}) on {name}")
        reply = json.loads(line)
        if not reply["made"]:
            raise BenchError(f"{name}: no bridge {reply['bridge']} or no dnsmasq serving it after start")
        return reply["seconds"]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


# -- libvirtd ----------------------------------------------------------------

class Libvirt:
    def __init__(self, uri: str, workdir: Path):
        import libvirt

        self.uri = uri
        self.workdir = workdir
        self.conn = libvirt.open(uri)

    def virsh(self, *args: str) -> None:
        run_checked(["virsh", "-q", "-c", self.uri, *args])

    def virsh_round(self, name: str, xml: str) -> float:
        path = self.workdir / f"{name}.xml"
        path.write_text(xml, encoding="utf-8")
        start = time.perf_counter()
        self.virsh("net-define", str(path))
        self.virsh("net-start", name)
        return time.perf_counter() - start

    def api_round(self, name: str, xml: str) -> float:
        start = time.perf_counter()
        self.conn.networkDefineXML(xml).create()
        return time.perf_counter() - start

    def undo(self, name: str) -> None:
        net = self.conn.networkLookupByName(name)
        if net.isActive():
            net.destroy()
        net.undefine()
        drop_stale_dnsmasq_pidfile(name)

    def remove_all(self, prefix: str) -> None:
        for net in self.conn.listAllNetworks():
            if net.name().startswith(prefix):
                self.undo(net.name())


# -- namespace checks and sweeping ---------------------------------------------

def libvirtd_netns() -> str:
    """The named namespace of the harness libvirtd (started if none runs); never the host's."""
    sys.path.insert(0, str(REPO / "tests"))
    from harness.backends import LIBVIRTD_PIDFILE, netns_named_like
    from harness.libvirtd import Libvirtd

    daemon = Libvirtd.start()
    pid = int(Path(LIBVIRTD_PIDFILE).read_text(encoding="ascii").split()[0])
    netns = netns_named_like(pid)
    if netns.same_as_ours():
        raise BenchError("libvirtd runs in this process's network namespace; the benchmark needs the harness's")
    return daemon.netns or netns.name


def bridge_checker(netns: str):
    def check(bridge: str) -> None:
        links = json.loads(run_checked(["ip", "-n", netns, "-j", "link", "show", "dev", bridge]).stdout)
        if not links:
            raise BenchError(f"bridge {bridge} missing after start")
    return check


def has_dnsmasq_for(bridge: str) -> bool:
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"dnsmasq" in cmdline:
            conf = cmdline.split(b"--conf-file=")[-1].split(b"\0")[0]
            try:
                if f"interface={bridge}\n".encode() in Path(os.fsdecode(conf)).read_bytes():
                    return True
            except OSError:
                continue
    return False


def sweep(netns: str, root: Path, tag: str) -> None:
    """What a killed child may have left: its dnsmasqs, bridges and nft tables."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"dnsmasq" in cmdline and os.fsencode(str(root)) in cmdline:
            os.kill(int(pid), signal.SIGKILL)
    for link in json.loads(run_checked(["ip", "-n", netns, "-j", "link"]).stdout):
        if link["ifname"].startswith(f"vonb{tag}e"):
            subprocess.run(["ip", "-n", netns, "link", "delete", link["ifname"]], check=False)
    out = subprocess.run(["ip", "netns", "exec", netns, "nft", "list", "tables"], capture_output=True,
                         text=True, check=False).stdout
    for family, table in (line.split()[1:3] for line in out.splitlines() if line.startswith("table ")):
        if f"vonb{tag}e" in table:
            subprocess.run(["ip", "netns", "exec", netns, "nft", "delete", "table", family, table], check=False)


# -- the run ---------------------------------------------------------------------

def measure(args, netns: str, embedded: Embedded, libvirt: Libvirt, names: Names) -> dict[str, list[float]]:
    check = bridge_checker(netns)

    def embed_round():
        name, _bridge, xml = names.xml("e")
        return embedded.round(name, xml)

    def libvirt_round(way):
        name, bridge, xml = names.xml(way[0])
        try:
            seconds = getattr(libvirt, f"{way}_round")(name, xml)
            check(bridge)
            if not has_dnsmasq_for(bridge):
                raise BenchError(f"no dnsmasq serves {bridge}")
            return seconds
        finally:
            libvirt.undo(name)

    rounds = {"embed": embed_round, "virsh": lambda: libvirt_round("virsh"), "api": lambda: libvirt_round("api")}
    samples: dict[str, list[float]] = {key: [] for key in rounds}
    for number in range(args.runs + 1):
        order = list(rounds)
        random.Random(number).shuffle(order)
        for key in order:
            seconds = rounds[key]()
            if number:
                samples[key].append(seconds)
    return samples


def report(samples: dict[str, list[float]], runs: int, netns: str) -> None:
    labels = {"embed": "(e) embedded define + start", "virsh": "(v) virsh net-define + net-start",
              "api": "(a) libvirt-python define + create"}
    print(f"\none NAT network with DHCP, {runs} timed round(s) after 1 warm-up, all in netns {netns}")
    print(f"{'':40s}{'median ms':>10s}{'min':>9s}{'max':>9s}")
    for key, label in labels.items():
        values = [1000 * s for s in samples[key]]
        print(f"{label:40s}{median(values):10.1f}{min(values):9.1f}{max(values):9.1f}")
    embed = median(samples["embed"])
    virsh_ratio, api_ratio = median(samples["virsh"]) / embed, median(samples["api"]) / embed
    print(f"\nv/e = {virsh_ratio:5.2f}   (aim >= {AIM:.1f}) {'ok' if virsh_ratio >= AIM else 'NOT met'}")
    print(f"a/e = {api_ratio:5.2f}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--runs", type=int, default=10, help="timed rounds (default 10)")
    parser.add_argument("--uri", default="qemu:///system", help="libvirt URI (default qemu:///system)")
    parser.add_argument("--child-root", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def _terminate(signum, _frame):
    raise SystemExit(128 + signum)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child_root:
        return child_main(args.child_root)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    ensure_our_collection_link()
    names = Names()
    workdir = Path(tempfile.mkdtemp(prefix="vonb-", dir="/var/tmp"))
    netns, embedded, libvirt = None, None, None
    try:
        netns = libvirtd_netns()
        embedded = Embedded(netns, workdir / "root")
        libvirt = Libvirt(args.uri, workdir)
        report(measure(args, netns, embedded, libvirt, names), args.runs, netns)
        return 0
    except BenchError as error:
        print(f"error: {error}")
        return 1
    finally:
        if embedded:
            embedded.close()
        if libvirt:
            libvirt.remove_all(f"vonb-{names.tag}-")
        if netns:
            sweep(netns, workdir, names.tag)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
