# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Converge N domains with virtops.qemu.domain and with community.libvirt.virt; compare.

For each tool and each run the script defines and starts N small TCG domains
from nothing (one ansible-playbook), then runs the very same playbook again
(the no-op re-run), timing both.  The two tools get the same domain XML, the
same inventory, the same libvirtd and alternate who goes first.  Every domain
it creates carries a random prefix and is destroyed and undefined (virsh)
before the other tool runs, and again on the way out, whatever happened.

community.libvirt is not a dependency of the collection: the script takes it
from the `ansible` wheel pinned in bench/requirements.txt (pip download, no
install) and keeps only ansible_collections/community/libvirt under
bench/.cache/collections.

Run from the repository's venv:  .venv/bin/python bench/converge_domains.py
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
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
    run_checked,
)

OURS = "virtops.qemu"
REFERENCE = "community.libvirt"
FLOOR = "ansible floor"

PLAY_HEAD = """\
- name: {title}
  hosts: localhost
  gather_facts: false
  tasks:
"""

PLAYBOOKS = {
    OURS: PLAY_HEAD + """\
    - name: Define and start the domains
      virtops.qemu.domain:
        uri: "{{ bench_uri }}"
        name: "{{ item.name }}"
        xml: "{{ item.xml }}"
        state: running
      loop: "{{ bench_domains }}"
      loop_control:
        label: "{{ item.name }}"
""",
    REFERENCE: PLAY_HEAD + """\
    - name: Define the domains
      community.libvirt.virt:
        uri: "{{ bench_uri }}"
        command: define
        xml: "{{ item.xml }}"
      loop: "{{ bench_domains }}"
      loop_control:
        label: "{{ item.name }}"

    - name: Start the domains
      community.libvirt.virt:
        uri: "{{ bench_uri }}"
        name: "{{ item.name }}"
        state: running
      loop: "{{ bench_domains }}"
      loop_control:
        label: "{{ item.name }}"
""",
    # The cheapest module there is, looped the same number of times: what
    # ansible-playbook and one module round trip per item cost by themselves.
    FLOOR: PLAY_HEAD + """\
    - name: Ping once per domain
      ansible.builtin.ping:
      loop: "{{ bench_domains }}"
      loop_control:
        label: "{{ item.name }}"
""",
}

# No disk, no NIC, no console: SeaBIOS finds nothing to boot and, with
# rebootTimeout=-1, stays halted instead of rebooting every minute.
DOMAIN_XML = """\
<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>{memory}</memory>
  <currentMemory unit='MiB'>{memory}</currentMemory>
  <vcpu>1</vcpu>
  <os>
    <type arch='{arch}'{machine}>hvm</type>
    <bios rebootTimeout='-1'/>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
</domain>
"""


# -- libvirt through virsh ----------------------------------------------------

class Virsh:
    def __init__(self, uri: str):
        self.uri = uri

    def _argv(self, *args) -> list[str]:
        return ["virsh", "--quiet", "-c", self.uri, *args]

    def names(self, prefix: str, running_only: bool = False) -> list[str]:
        flag = "--state-running" if running_only else "--all"
        out = run_checked(self._argv("list", "--name", flag)).stdout
        return sorted(n for n in out.split() if n.startswith(prefix))

    def cpu_seconds(self, names: list[str]) -> float:
        out = run_checked(self._argv("domstats", "--cpu-total", *names)).stdout
        return sum(int(v) for v in re.findall(r"cpu\.time=(\d+)", out)) / 1e9

    def settle(self, names: list[str], per_domain: float = 0.03, limit: float = 30.0) -> float:
        """Wait until the guests, together, use less than ``per_domain`` of a CPU each."""
        start = time.monotonic()
        before = self.cpu_seconds(names)
        while time.monotonic() - start < limit:
            time.sleep(1.0)
            now = self.cpu_seconds(names)
            if now - before < per_domain * len(names):
                break
            before = now
        return time.monotonic() - start

    def remove(self, prefix: str) -> list[str]:
        """Destroy and undefine every domain whose name starts with ``prefix``; return leftovers."""
        def drop(name):
            subprocess.run(self._argv("destroy", name), capture_output=True, check=False)
            subprocess.run(self._argv("undefine", name), capture_output=True, check=False)

        # A TCG guest takes a second or two to die; do several at once.
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(drop, self.names(prefix)))
        return self.names(prefix)


# -- measuring --------------------------------------------------------------

@dataclass
class Series:
    converge: list = field(default_factory=list)
    noop: list = field(default_factory=list)


class Bench:
    def __init__(self, args, workdir: Path, log):
        self.args = args
        self.workdir = workdir
        self.log = log
        self.virsh = Virsh(args.uri)
        self.prefix = f"vobench-{secrets.token_hex(3)}-"
        self.runner = PlaybookRunner(workdir, args.pipelining)
        for tool, text in PLAYBOOKS.items():
            playbook = (workdir / self._slug(tool)).with_suffix(".yml")
            playbook.write_text(text.replace("{title}", tool), encoding="utf-8")

    @staticmethod
    def _slug(tool: str) -> str:
        return re.sub(r"[^a-z0-9]+", "-", tool.lower()).strip("-")

    def domain_xml(self, name: str) -> str:
        arch = platform.machine()
        machine = " machine='pc'" if arch == "x86_64" else ""
        return DOMAIN_XML.format(name=name, memory=self.args.memory, arch=arch, machine=machine)

    def write_vars(self, tool: str, run: int) -> tuple[str, Path]:
        prefix = f"{self.prefix}{run}{self._slug(tool)[0]}-"
        domains = [{"name": f"{prefix}{i:02d}", "xml": self.domain_xml(f"{prefix}{i:02d}")}
                   for i in range(self.args.count)]
        path = self.workdir / f"vars-{run}-{self._slug(tool)}.json"
        path.write_text(json.dumps({"bench_uri": self.args.uri, "bench_domains": domains}), encoding="utf-8")
        return prefix, path

    def playbook(self, tool: str, varsfile: Path, label: str) -> Playbook:
        return self.runner.run((self.workdir / self._slug(tool)).with_suffix(".yml"), varsfile, label)

    def measure_tool(self, tool: str, run: int, series: Series) -> None:
        prefix, varsfile = self.write_vars(tool, run)
        try:
            if self.virsh.names(prefix):
                raise BenchError(f"domains named {prefix}* exist before the run")
            converge = self.playbook(tool, varsfile, f"{run}-{self._slug(tool)}-converge")
            running = self.virsh.names(prefix, running_only=True)
            if len(running) != self.args.count:
                raise BenchError(f"{tool}: {len(running)} of {self.args.count} domains running after converge")
            # Freshly started TCG guests burn CPU in the firmware for a moment;
            # let that pass so it does not land in the no-op measurement.
            settled = self.virsh.settle(running)
            noop = self.playbook(tool, varsfile, f"{run}-{self._slug(tool)}-noop")
            if noop.changed:
                self.log(f"  warning: {tool} reported {noop.changed} changed item(s) on the no-op re-run")
            series.converge.append(converge)
            series.noop.append(noop)
            self.log(f"  run {run} {tool:18s} converge {converge.wall:6.2f}s  no-op {noop.wall:6.2f}s"
                     f"  (changed {converge.changed} -> {noop.changed}; guests settled in {settled:.0f}s)")
        finally:
            leftovers = self.virsh.remove(prefix)
            if leftovers:
                raise BenchError(f"could not remove {leftovers}")

    def measure_floor(self, run: int, series: Series) -> None:
        varsfile = self.write_vars(FLOOR, run)[1]
        result = self.playbook(FLOOR, varsfile, f"{run}-floor")
        series.converge.append(result)
        series.noop.append(result)

    def cleanup_all(self) -> list[str]:
        return self.virsh.remove(self.prefix)


# -- report -----------------------------------------------------------------

def report(results: dict, args, versions: dict, log) -> None:
    log("")
    log(f"{args.count} domains, {args.runs} run(s), median wall time of ansible-playbook; "
        f"pipelining {'on' if args.pipelining else 'off'}")
    log("  " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    log("")
    head = (f"{'':20s}{'converge s':>12s}{'no-op s':>10s}{'no-op tasks s':>15s}"
            f"{'module calls':>14s}{'no-op ms/domain':>17s}")
    log(head)
    log("-" * len(head))
    for tool in (REFERENCE, OURS, FLOOR):
        series = results.get(tool)
        if not series or not series.noop:
            continue
        conv = median([p.wall for p in series.converge])
        noop = median([p.wall for p in series.noop])
        tasks = median([p.tasks for p in series.noop])
        calls = series.noop[0].calls
        conv_text = "-" if tool == FLOOR else f"{conv:.2f}"
        log(f"{tool:20s}{conv_text:>12s}{noop:>10.2f}{tasks:>15.2f}{calls:>14d}"
            f"{1000 * tasks / args.count:>17.0f}")
    ours, ref = results.get(OURS), results.get(REFERENCE)
    if not (ours and ref and ours.noop and ref.noop):
        return
    conv_ratio = median([p.wall for p in ref.converge]) / median([p.wall for p in ours.converge])
    noop_ratio = median([p.wall for p in ref.noop]) / median([p.wall for p in ours.noop])
    task_ratio = median([p.tasks for p in ref.noop]) / median([p.tasks for p in ours.noop])
    log("")
    log("ratio community.libvirt / virtops.qemu (higher is better for virtops.qemu):")
    log(f"  converge (wall)      {conv_ratio:5.2f}x")
    log(f"  no-op re-run (wall)  {noop_ratio:5.2f}x   target >= {args.target:.2f}x: "
        f"{'met' if noop_ratio >= args.target else 'NOT met'}")
    log(f"  no-op (tasks only)   {task_ratio:5.2f}x   (without ansible-playbook start-up)")
    noop_changed = [p.changed for p in ours.noop]
    if any(noop_changed):
        log(f"  note: virtops.qemu was not idempotent here (changed items per no-op run: {noop_changed})")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--count", type=int, default=20, help="domains per converge (default 20)")
    parser.add_argument("--runs", type=int, default=3, help="repetitions; medians are reported (default 3)")
    parser.add_argument("--memory", type=int, default=64, help="MiB of memory per domain (default 64)")
    parser.add_argument("--uri", default="qemu:///system", help="libvirt URI (default qemu:///system)")
    parser.add_argument("--target", type=float, default=1.5, help="no-op ratio to aim for (default 1.5)")
    parser.add_argument("--pipelining", action="store_true", help="run ansible with ANSIBLE_PIPELINING=true")
    parser.add_argument("--no-floor", action="store_true", help="skip the ansible.builtin.ping floor playbook")
    parser.add_argument("--keep-workdir", action="store_true",
                        help="keep playbooks, vars, logs and timings (their path is printed)")
    args = parser.parse_args(argv)
    if args.count < 1 or args.runs < 1:
        parser.error("--count and --runs must be at least 1")
    return args


def _terminate(signum, _frame):
    raise SystemExit(128 + signum)


def main(argv=None) -> int:
    args = parse_args(argv)

    def log(text=""):
        print(text, flush=True)

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    if shutil.which("virsh") is None:
        log("virsh is required")
        return 2
    try:
        reference_version = ensure_reference_collection(log)
    except BenchError as e:
        log(f"error: {e}")
        return 2
    ensure_our_collection_link()
    versions = {
        "ansible-core": ansible_core_version(),
        "community.libvirt": reference_version,
        "libvirtd": daemon_version(args.uri),
    }

    workdir = Path(tempfile.mkdtemp(prefix="vobench-"))
    bench = None
    status = 0
    results: dict[str, Series] = {}
    try:
        bench = Bench(args, workdir, log)
        log(f"domain prefix {bench.prefix}; workdir {workdir}")
        for run in range(1, args.runs + 1):
            order = (REFERENCE, OURS) if run % 2 else (OURS, REFERENCE)
            if not args.no_floor:
                bench.measure_floor(run, results.setdefault(FLOOR, Series()))
            for tool in order:
                bench.measure_tool(tool, run, results.setdefault(tool, Series()))
        report(results, args, versions, log)
    except BenchError as e:
        log(f"error: {e}")
        status = 1
    except (KeyboardInterrupt, SystemExit):
        log("interrupted; removing the benchmark domains")
        status = 130
        raise
    finally:
        if bench is not None:
            leftovers = bench.cleanup_all()
            if leftovers:
                log(f"error: benchmark domains left behind: {leftovers}")
                status = 1
        if args.keep_workdir or status:
            log(f"workdir kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
