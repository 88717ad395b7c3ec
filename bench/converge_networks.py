# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Converge N NAT networks with virtops.qemu.network and with community.libvirt.virt_net; compare.

For each tool and each run one ansible-playbook defines and starts N NAT
networks with DHCP from nothing on libvirtd (the converge), then the very
same playbook runs again (the no-op re-run); both are timed.  Both tools get
the same network XML and the same libvirtd, and take turns going first.
Every network carries a random prefix, its own bridge name and /24, and is
destroyed and undefined (libvirt-python) before the other tool runs and on
the way out, whatever happened.  libvirtd makes the bridges, dnsmasqs and
iptables rules in its own network namespace (the harness's): the script
refuses a libvirtd running in the host's namespace.

community.libvirt comes from the pinned `ansible` wheel, as for
converge_domains.py (benchlib.ensure_reference_collection).

Run from the repository's venv:  .venv/bin/python bench/converge_networks.py
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from benchlib import (
    REPO,
    BenchError,
    Playbook,
    PlaybookRunner,
    ansible_core_version,
    daemon_version,
    drop_stale_dnsmasq_pidfile,
    ensure_our_collection_link,
    ensure_reference_collection,
    median,
)

OURS = "virtops.qemu"
REFERENCE = "community.libvirt"
FLOOR = "ansible floor"
SLUGS = {OURS: "o", REFERENCE: "r", FLOOR: "f"}

PLAY_HEAD = """\
- name: {title}
  hosts: localhost
  gather_facts: false
  tasks:
"""
LOOP = """\
      loop: "{{ bench_networks }}"
      loop_control:
        label: "{{ item.name }}"
"""
PLAYBOOKS = {
    OURS: PLAY_HEAD + """\
    - name: Define and start the networks
      virtops.qemu.network:
        uri: "{{ bench_uri }}"
        name: "{{ item.name }}"
        xml: "{{ item.xml }}"
        state: active
""" + LOOP,
    # virt_net defines with state=present (command=define does the same) and
    # starts with state=active: two module calls per network.
    REFERENCE: PLAY_HEAD + """\
    - name: Define the networks
      community.libvirt.virt_net:
        uri: "{{ bench_uri }}"
        name: "{{ item.name }}"
        xml: "{{ item.xml }}"
        state: present
""" + LOOP + """
    - name: Start the networks
      community.libvirt.virt_net:
        uri: "{{ bench_uri }}"
        name: "{{ item.name }}"
        state: active
""" + LOOP,
    FLOOR: PLAY_HEAD + """\
    - name: Ping once per network
      ansible.builtin.ping:
""" + LOOP,
}

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


@dataclass
class Series:
    converge: list[Playbook] = field(default_factory=list)
    noop: list[Playbook] = field(default_factory=list)


class Bench:
    def __init__(self, args, workdir: Path, log):
        import libvirt

        self.args = args
        self.workdir = workdir
        self.log = log
        self.conn = libvirt.open(args.uri)
        self.tag = secrets.token_hex(3)
        self.prefix = f"vocn-{self.tag}-"
        self.runner = PlaybookRunner(workdir, args.pipelining)
        for tool, text in PLAYBOOKS.items():
            (workdir / f"{SLUGS[tool]}.yml").write_text(text.replace("{title}", tool), encoding="utf-8")

    def networks(self, run: int, tool: str) -> list[dict]:
        second = random.randint(200, 249)
        names = [(f"{self.prefix}{run}{SLUGS[tool]}-{i:02d}", f"vocn{self.tag}{run % 10}{SLUGS[tool]}{i:02d}")
                 for i in range(self.args.count)]
        return [{"name": name, "xml": NETWORK_XML.format(name=name, bridge=bridge, prefix=f"10.{second}.{i + 1}")}
                for i, (name, bridge) in enumerate(names)]

    def names(self, prefix: str, active_only: bool = False) -> list[str]:
        return sorted(n.name() for n in self.conn.listAllNetworks()
                      if n.name().startswith(prefix) and (n.isActive() or not active_only))

    def remove(self, prefix: str) -> list[str]:
        for name in self.names(prefix):
            net = self.conn.networkLookupByName(name)
            if net.isActive():
                net.destroy()
            net.undefine()
            drop_stale_dnsmasq_pidfile(name)
        return self.names(prefix)

    def playbook(self, tool: str, run: int, step: str) -> Playbook:
        varsfile = self.workdir / f"vars-{run}-{SLUGS[tool]}.json"
        return self.runner.run(self.workdir / f"{SLUGS[tool]}.yml", varsfile, f"{run}-{SLUGS[tool]}-{step}")

    def write_vars(self, tool: str, run: int) -> str:
        varsfile = self.workdir / f"vars-{run}-{SLUGS[tool]}.json"
        varsfile.write_text(json.dumps({"bench_uri": self.args.uri, "bench_networks": self.networks(run, tool)}),
                            encoding="utf-8")
        return f"{self.prefix}{run}{SLUGS[tool]}-"

    def measure_tool(self, tool: str, run: int, series: Series) -> None:
        prefix = self.write_vars(tool, run)
        try:
            if self.names(prefix):
                raise BenchError(f"networks named {prefix}* exist before the run")
            converge = self.playbook(tool, run, "converge")
            active = self.names(prefix, active_only=True)
            if len(active) != self.args.count:
                raise BenchError(f"{tool}: {len(active)} of {self.args.count} networks active after converge")
            noop = self.playbook(tool, run, "noop")
            if noop.changed:
                self.log(f"  warning: {tool} reported {noop.changed} changed item(s) on the no-op re-run")
            series.converge.append(converge)
            series.noop.append(noop)
            self.log(f"  run {run} {tool:18s} converge {converge.wall:6.2f}s  no-op {noop.wall:6.2f}s"
                     f"  (changed {converge.changed} -> {noop.changed})")
        finally:
            leftovers = self.remove(prefix)
            if leftovers:
                raise BenchError(f"could not remove {leftovers}")

    def measure_floor(self, run: int, series: Series) -> None:
        self.write_vars(FLOOR, run)
        result = self.playbook(FLOOR, run, "floor")
        series.converge.append(result)
        series.noop.append(result)


def report(results: dict[str, Series], args, versions: dict, log) -> None:
    log("")
    log(f"{args.count} NAT networks with DHCP, {args.runs} run(s), median wall time of ansible-playbook; "
        f"pipelining {'on' if args.pipelining else 'off'}")
    log("  " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    log("")
    head = f"{'':20s}{'converge s':>12s}{'no-op s':>10s}{'no-op tasks s':>15s}{'module calls':>14s}{'ms/network':>12s}"
    log(head)
    log("-" * len(head))
    for tool in (REFERENCE, OURS, FLOOR):
        series = results.get(tool)
        if not series or not series.noop:
            continue
        tasks = median([p.tasks for p in series.noop])
        conv = "-" if tool == FLOOR else f"{median([p.wall for p in series.converge]):.2f}"
        log(f"{tool:20s}{conv:>12s}{median([p.wall for p in series.noop]):>10.2f}{tasks:>15.2f}"
            f"{series.noop[0].calls:>14d}{1000 * tasks / args.count:>12.0f}")
    ours, ref = results.get(OURS), results.get(REFERENCE)
    if not (ours and ref and ours.noop and ref.noop):
        return
    noop_ratio = median([p.wall for p in ref.noop]) / median([p.wall for p in ours.noop])
    converge_ratio = median([p.wall for p in ref.converge]) / median([p.wall for p in ours.converge])
    log("")
    log("ratio community.libvirt / virtops.qemu (higher is better for virtops.qemu):")
    log(f"  converge (wall)      {converge_ratio:5.2f}x")
    log(f"  no-op re-run (wall)  {noop_ratio:5.2f}x   target >= {args.target:.2f}x: "
        f"{'met' if noop_ratio >= args.target else 'NOT met'}")
    log(f"  no-op (tasks only)   "
        f"{median([p.tasks for p in ref.noop]) / median([p.tasks for p in ours.noop]):5.2f}x")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--count", type=int, default=20, help="networks per converge (default 20, at most 99)")
    parser.add_argument("--runs", type=int, default=3, help="repetitions; medians are reported (default 3)")
    parser.add_argument("--uri", default="qemu:///system", help="libvirt URI (default qemu:///system)")
    parser.add_argument("--target", type=float, default=2.0, help="no-op ratio to aim for (default 2.0)")
    parser.add_argument("--pipelining", action="store_true", help="run ansible with ANSIBLE_PIPELINING=true")
    parser.add_argument("--no-floor", action="store_true", help="skip the ansible.builtin.ping floor playbook")
    parser.add_argument("--keep-workdir", action="store_true", help="keep playbooks, vars, logs and timings")
    args = parser.parse_args(argv)
    if not 1 <= args.count <= 99 or args.runs < 1:
        parser.error("--count must be 1 to 99 and --runs at least 1")
    return args


def refuse_host_namespace() -> None:
    sys.path.insert(0, str(REPO / "tests"))
    from harness.backends import LIBVIRTD_PIDFILE, netns_named_like

    pid = int(Path(LIBVIRTD_PIDFILE).read_text(encoding="ascii").split()[0])
    if netns_named_like(pid).same_as_ours():
        raise BenchError("libvirtd runs in the host's network namespace; start the harness's (tests/harness)")


def _terminate(signum, _frame):
    raise SystemExit(128 + signum)


def main(argv=None) -> int:
    args = parse_args(argv)

    def log(text=""):
        print(text, flush=True)

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    try:
        refuse_host_namespace()
        versions = {"ansible-core": ansible_core_version(), "community.libvirt": ensure_reference_collection(log),
                    "libvirtd": daemon_version(args.uri)}
    except (BenchError, RuntimeError, OSError) as error:
        log(f"error: {error}")
        return 2
    ensure_our_collection_link()
    workdir = Path(tempfile.mkdtemp(prefix="vocn-"))
    bench, status, results = None, 0, {}
    try:
        bench = Bench(args, workdir, log)
        log(f"network prefix {bench.prefix}; workdir {workdir}")
        for run in range(1, args.runs + 1):
            if not args.no_floor:
                bench.measure_floor(run, results.setdefault(FLOOR, Series()))
            for tool in (REFERENCE, OURS) if run % 2 else (OURS, REFERENCE):
                bench.measure_tool(tool, run, results.setdefault(tool, Series()))
        report(results, args, versions, log)
    except BenchError as error:
        log(f"error: {error}")
        status = 1
    finally:
        if bench is not None and bench.remove(bench.prefix):
            log("error: benchmark networks left behind")
            status = 1
        if args.keep_workdir or status:
            log(f"workdir kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
