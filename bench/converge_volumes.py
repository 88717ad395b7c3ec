# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Create N qcow2 volumes in a dir pool with virtops.qemu and with community.libvirt; compare.

For each tool and each run one ansible-playbook defines, builds and starts
a dir pool and creates N qcow2 volumes in it on libvirtd (the converge),
then the very same playbook runs again (the no-op re-run); both are timed.
Every tool gets its own pool (``vocv-<tag>-<run><tool>``) with its target
directory under the script's work directory, the same volume names and
sizes, the same libvirtd, and the tools take turns going first.  Each pool
is stopped and undefined (libvirt-python) and its directory removed before
the next tool runs and on the way out, whatever happened.

community.libvirt comes from the pinned `ansible` wheel, as for
converge_domains.py (benchlib.ensure_reference_collection).

Run from the repository's venv:  .venv/bin/python bench/converge_volumes.py
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from benchlib import (
    BenchError,
    Playbook,
    PlaybookRunner,
    ansible_core_version,
    daemon_version,
    ensure_our_collection_link,
    ensure_reference_collection,
    median,
)

OURS = "virtops.qemu"
REFERENCE = "community.libvirt"
COMMAND = "c.l + qemu-img"
FLOOR = "ansible floor"
SLUGS = {OURS: "o", REFERENCE: "r", COMMAND: "c", FLOOR: "f"}

PLAY_HEAD = """\
- name: {title}
  hosts: localhost
  gather_facts: false
  tasks:
"""
LOOP = """\
      loop: "{{ bench_volumes }}"
"""
# What a user writes with community.libvirt's virt_pool: the directory (virt_pool's
# command=build fails on an active pool, so a re-run could not use it), define, start.
REFERENCE_POOL = """\
    - name: The pool's directory
      ansible.builtin.file:
        path: "{{ bench_target }}"
        state: directory
        mode: "0711"
    - name: Define the pool
      community.libvirt.virt_pool:
        uri: "{{ bench_uri }}"
        name: "{{ bench_pool }}"
        command: define
        xml: "{{ bench_pool_xml }}"
    - name: Start the pool
      community.libvirt.virt_pool:
        uri: "{{ bench_uri }}"
        name: "{{ bench_pool }}"
        state: active
"""
PLAYBOOKS = {
    OURS: PLAY_HEAD + """\
    - name: The pool
      virtops.qemu.pool:
        uri: "{{ bench_uri }}"
        name: "{{ bench_pool }}"
        type: dir
        target:
          path: "{{ bench_target }}"
        build: true
    - name: The volumes
      virtops.qemu.volume:
        uri: "{{ bench_uri }}"
        pool: "{{ bench_pool }}"
        name: "{{ item }}"
        capacity: "{{ bench_capacity }}"
        format: qcow2
""" + LOOP,
    # community.libvirt 2.0 has virt_volume: state=present creates from volume XML, and
    # leaves a volume of that name alone.
    REFERENCE: PLAY_HEAD + REFERENCE_POOL + """\
    - name: The volumes
      community.libvirt.virt_volume:
        uri: "{{ bench_uri }}"
        pool: "{{ bench_pool }}"
        state: present
        xml: |
          <volume>
            <name>{{ item }}</name>
            <capacity unit='bytes'>{{ bench_capacity_bytes }}</capacity>
            <target><format type='qcow2'/></target>
          </volume>
""" + LOOP,
    # Before virt_volume, users wrote qemu-img guarded by creates:, then refreshed the pool.
    COMMAND: PLAY_HEAD + REFERENCE_POOL + """\
    - name: The volumes
      ansible.builtin.command:
        argv: [qemu-img, create, -q, -f, qcow2, "{{ bench_target }}/{{ item }}", "{{ bench_capacity_bytes }}"]
        creates: "{{ bench_target }}/{{ item }}"
""" + LOOP + """\
      register: bench_made
    - name: Let libvirt see the new volumes
      community.libvirt.virt_pool:
        uri: "{{ bench_uri }}"
        name: "{{ bench_pool }}"
        command: refresh
      when: bench_made is changed
""",
    FLOOR: PLAY_HEAD + """\
    - name: Ping once per volume
      ansible.builtin.ping:
""" + LOOP,
}

POOL_XML = """\
<pool type='dir'>
  <name>{name}</name>
  <target><path>{path}</path></target>
</pool>
"""
CAPACITY = 1024 ** 3


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
        self.prefix = f"vocv-{secrets.token_hex(3)}-"
        self.runner = PlaybookRunner(workdir, args.pipelining)
        for tool, text in PLAYBOOKS.items():
            (workdir / f"{SLUGS[tool]}.yml").write_text(text.replace("{title}", tool), encoding="utf-8")

    def pools(self) -> list[str]:
        return sorted(p.name() for p in self.conn.listAllStoragePools() if p.name().startswith(self.prefix))

    def volumes(self, name: str) -> list[str]:
        pool = self.conn.storagePoolLookupByName(name)
        pool.refresh(0)
        return sorted(pool.listVolumes())

    def remove(self, name: str | None = None) -> list[str]:
        """Stop and undefine our pools (``name`` or all); their directories go with the work directory."""
        for found in self.pools():
            if name in (None, found):
                pool = self.conn.storagePoolLookupByName(found)
                if pool.isActive():
                    pool.destroy()
                pool.undefine()
        return [p for p in self.pools() if name in (None, p)]

    def write_vars(self, tool: str, run: int) -> tuple[str, Path]:
        name, target = f"{self.prefix}{run}{SLUGS[tool]}", self.workdir / f"pool-{run}{SLUGS[tool]}"
        (self.workdir / f"vars-{run}-{SLUGS[tool]}.json").write_text(json.dumps({
            "bench_uri": self.args.uri, "bench_pool": name, "bench_target": str(target),
            "bench_pool_xml": POOL_XML.format(name=name, path=target),
            "bench_capacity": "1GiB", "bench_capacity_bytes": CAPACITY,
            "bench_volumes": [f"vol-{i:02d}.qcow2" for i in range(self.args.count)]}), encoding="utf-8")
        return name, target

    def playbook(self, tool: str, run: int, step: str) -> Playbook:
        varsfile = self.workdir / f"vars-{run}-{SLUGS[tool]}.json"
        return self.runner.run(self.workdir / f"{SLUGS[tool]}.yml", varsfile, f"{run}-{SLUGS[tool]}-{step}")

    def measure_tool(self, tool: str, run: int, series: Series) -> None:
        name, target = self.write_vars(tool, run)
        try:
            converge = self.playbook(tool, run, "converge")
            made = self.volumes(name)
            if len(made) != self.args.count:
                raise BenchError(f"{tool}: {len(made)} of {self.args.count} volumes in the pool after converge")
            noop = self.playbook(tool, run, "noop")
            if noop.changed:
                self.log(f"  warning: {tool} reported {noop.changed} changed item(s) on the no-op re-run")
            series.converge.append(converge)
            series.noop.append(noop)
            self.log(f"  run {run} {tool:18s} converge {converge.wall:6.2f}s  no-op {noop.wall:6.2f}s"
                     f"  (changed {converge.changed} -> {noop.changed})")
        finally:
            leftovers = self.remove(name)
            shutil.rmtree(target, ignore_errors=True)
            if leftovers:
                raise BenchError(f"could not remove {leftovers}")

    def measure_floor(self, run: int, series: Series) -> None:
        self.write_vars(FLOOR, run)
        result = self.playbook(FLOOR, run, "floor")
        series.converge.append(result)
        series.noop.append(result)


def report(results: dict[str, Series], args, versions: dict, log) -> None:
    log("")
    log(f"{args.count} qcow2 volumes in a dir pool, {args.runs} run(s), median wall time of ansible-playbook; "
        f"pipelining {'on' if args.pipelining else 'off'}")
    log("  " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    log("")
    head = f"{'':20s}{'converge s':>12s}{'no-op s':>10s}{'no-op tasks s':>15s}{'module calls':>14s}{'ms/volume':>12s}"
    log(head)
    log("-" * len(head))
    for tool in (REFERENCE, COMMAND, OURS, FLOOR):
        series = results.get(tool)
        if not series or not series.noop:
            continue
        tasks = median([p.tasks for p in series.noop])
        conv = "-" if tool == FLOOR else f"{median([p.wall for p in series.converge]):.2f}"
        log(f"{tool:20s}{conv:>12s}{median([p.wall for p in series.noop]):>10.2f}{tasks:>15.2f}"
            f"{series.noop[0].calls:>14d}{1000 * tasks / args.count:>12.0f}")
    ours = results.get(OURS)
    if not (ours and ours.noop):
        return
    log("")
    log("ratio reference / virtops.qemu (higher is better for virtops.qemu):")
    for tool in (REFERENCE, COMMAND):
        ref = results.get(tool)
        if not (ref and ref.noop):
            continue
        noop_ratio = median([p.wall for p in ref.noop]) / median([p.wall for p in ours.noop])
        converge_ratio = median([p.wall for p in ref.converge]) / median([p.wall for p in ours.converge])
        log(f"  {tool}:")
        log(f"    converge (wall)      {converge_ratio:5.2f}x")
        log(f"    no-op re-run (wall)  {noop_ratio:5.2f}x   target >= {args.target:.2f}x: "
            f"{'met' if noop_ratio >= args.target else 'NOT met'}")
        log(f"    no-op (tasks only)   "
            f"{median([p.tasks for p in ref.noop]) / median([p.tasks for p in ours.noop]):5.2f}x")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--count", type=int, default=50, help="volumes per pool (default 50, at most 99)")
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


def _terminate(signum, _frame):
    raise SystemExit(128 + signum)


def main(argv=None) -> int:
    args = parse_args(argv)

    def log(text=""):
        print(text, flush=True)

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    try:
        versions = {"ansible-core": ansible_core_version(), "community.libvirt": ensure_reference_collection(log),
                    "libvirtd": daemon_version(args.uri)}
    except (BenchError, RuntimeError, OSError) as error:
        log(f"error: {error}")
        return 2
    ensure_our_collection_link()
    # Under /var/tmp, world-searchable: libvirtd's volumes live in it.
    workdir = Path(tempfile.mkdtemp(prefix="vocv-", dir="/var/tmp"))
    workdir.chmod(0o755)
    bench, status, results = None, 0, {}
    try:
        bench = Bench(args, workdir, log)
        log(f"pool prefix {bench.prefix}; workdir {workdir}")
        tools = [REFERENCE, COMMAND, OURS]
        for run in range(1, args.runs + 1):
            if not args.no_floor:
                bench.measure_floor(run, results.setdefault(FLOOR, Series()))
            for tool in tools[run - 1:] + tools[:run - 1]:
                bench.measure_tool(tool, run, results.setdefault(tool, Series()))
        report(results, args, versions, log)
    except BenchError as error:
        log(f"error: {error}")
        status = 1
    finally:
        if bench is not None and bench.remove():
            log("error: benchmark pools left behind")
            status = 1
        if args.keep_workdir or status:
            log(f"workdir kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
