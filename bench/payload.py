#!/usr/bin/env python3
# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The price of one module call: each module's AnsiballZ payload on a converged object against ping's.

For each backend (the embedded driver on a root of its own, and the libvirtd
``--uri`` names) every module converges one object with ``ansible``; the
payload Ansible builds for the second, no-op call is kept
(ANSIBLE_KEEP_REMOTE_FILES) and then run on its own, alternating with
ansible.builtin.ping's payload.  Reported per module: median wall times and
the median of the per-round ratio module / ping.

On libvirtd, community.libvirt's modules make the same no-op calls on the
same objects (virt, virt_net, virt_pool, virt_volume): one file each on the
same libvirt bindings and lxml, they show what that much of a call costs
by itself.  Their rows are the reference, not aims.

Then the listing: ``--domains`` domains are defined (not started) in a second
embed root, and domain_info without a name (its payload against ping's) and
the domains inventory plugin (``ansible-inventory --list`` against the same
command on an empty inventory) list them.

Not part of the collection; see bench/README.md.
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
    BENCH_COLLECTIONS,
    TEST_COLLECTIONS,
    BenchError,
    ensure_our_collection_link,
    ensure_reference_collection,
    median,
    run_checked,
)

AIM_RATIO = 1.25
AIM_LISTING = 1.0
AIM_FIRST_CALL_MS = 60.0
VENV_BIN = Path(sys.executable).parent


class Payloads:
    """Builds AnsiballZ payloads with ad-hoc ``ansible`` runs and keeps the one of the last run."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.remote = workdir / "remote"
        collections = os.pathsep.join([str(BENCH_COLLECTIONS), str(TEST_COLLECTIONS)])
        self.env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections, ANSIBLE_KEEP_REMOTE_FILES="1",
                        ANSIBLE_REMOTE_TEMP=str(self.remote), ANSIBLE_LOCAL_TEMP=str(workdir / "local"),
                        ANSIBLE_NOCOLOR="1", ANSIBLE_DEPRECATION_WARNINGS="false",
                        ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
        self.env.pop("ANSIBLE_CONFIG", None)

    def call(self, module: str, args: dict) -> dict:
        """One ad-hoc call on localhost; its result."""
        shutil.rmtree(self.remote, ignore_errors=True)
        proc = subprocess.run(
            [str(VENV_BIN / "ansible"), "localhost", "-c", "local", "-o", "-e",
             f"ansible_python_interpreter={sys.executable}", "-m", module, *(["-a", json.dumps(args)] if args else [])],
            capture_output=True, text=True, env=self.env, check=False)
        if proc.returncode != 0:
            raise BenchError(f"{module} failed: {proc.stdout.strip()} {proc.stderr.strip()}")
        return json.loads(proc.stdout.split("=>", 1)[1])

    def no_op(self, label: str, module: str, args: dict) -> Path:
        """Converge with one call; keep the payload of a second call, which must change nothing."""
        self.call(module, args)
        result = self.call(module, args)
        if result.get("changed"):
            raise BenchError(f"{label}: the second call changed something: {result}")
        found = sorted(self.remote.glob("*/AnsiballZ_*.py"))
        if len(found) != 1:
            raise BenchError(f"{label}: expected one kept payload, found {found}")
        kept = self.workdir / f"AnsiballZ-{label}.py"
        shutil.copy(found[0], kept)
        return kept


def run_payload(path: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0 or '"failed": true' in proc.stdout:
        raise BenchError(f"{path.name} failed: {proc.stdout.strip()[-500:]} {proc.stderr.strip()[-500:]}")
    return elapsed


def cases(uri: str, tag: str, workdir: Path, backend: str) -> list[tuple[str, str, dict]]:
    """(label, module, arguments) of one converged object per module."""
    pool_dir = workdir / f"pool-{backend}"
    name = f"vopl-{tag}-{backend}"
    found = [
        ("domain", "virtops.qemu.domain", {"uri": uri, "name": name, "type": "qemu", "memory": "64MiB",
                                           "state": "present"}),
        ("domain_info", "virtops.qemu.domain_info", {"uri": uri, "name": name}),
        ("network", "virtops.qemu.network", {"uri": uri, "name": name, "state": "present",
                                             "forward": {"mode": "isolated"}}),
        ("network_info", "virtops.qemu.network_info", {"uri": uri, "name": name}),
        ("pool", "virtops.qemu.pool", {"uri": uri, "name": name, "type": "dir",
                                       "target": {"path": str(pool_dir)}, "build": True}),
        ("pool_info", "virtops.qemu.pool_info", {"uri": uri, "name": name}),
        ("volume", "virtops.qemu.volume", {"uri": uri, "pool": name, "name": "v1.qcow2", "capacity": "16MiB",
                                           "format": "qcow2"}),
        ("host_info", "virtops.qemu.host_info", {"uri": uri}),
    ]
    if backend == "embed":      # the libvirt one would edit the host's /etc/libvirt/qemu.conf
        found.append(("qemu_conf", "virtops.qemu.qemu_conf", {"uri": uri, "settings": {"vnc_listen": "127.0.0.1"}}))
    return found


def reference_cases(uri: str, tag: str) -> list[tuple[str, str, dict]]:
    """community.libvirt's no-op calls on the objects cases() converged on libvirtd."""
    name = f"vopl-{tag}-libvirt"
    volume_xml = ("<volume><name>v1.qcow2</name><capacity unit='bytes'>16777216</capacity>"
                  "<target><format type='qcow2'/></target></volume>")
    return [
        ("virt", "community.libvirt.virt", {"uri": uri, "name": name, "state": "shutdown"}),
        ("virt_net", "community.libvirt.virt_net", {"uri": uri, "name": name, "state": "present"}),
        ("virt_pool", "community.libvirt.virt_pool", {"uri": uri, "name": name, "state": "active"}),
        ("virt_volume", "community.libvirt.virt_volume", {"uri": uri, "pool": name, "state": "present",
                                                          "xml": volume_xml}),
    ]


def measure_modules(args, payloads: Payloads, tag: str, workdir: Path, log) -> None:
    backends = {"embed": f"qemu:///embed?root={workdir / 'r'}", "libvirt": args.uri}
    ping = payloads.no_op("ping", "ansible.builtin.ping", {})
    built = []
    for backend, uri in backends.items():
        for label, module, margs in cases(uri, tag, workdir, backend):
            log(f"converging {label} ({backend})")
            built.append((f"{label} ({backend})", payloads.no_op(f"{label}-{backend}", module, margs)))
    references = []
    for label, module, margs in reference_cases(args.uri, tag):
        log(f"community.libvirt {label}")
        references.append((f"{label} (c.l., libvirt)", payloads.no_op(f"{label}-reference", module, margs)))
    built += references
    times: dict[str, list[float]] = {label: [] for label, _ in built}
    pings: dict[str, list[float]] = {label: [] for label, _ in built}
    ratios: dict[str, list[float]] = {label: [] for label, _ in built}
    run_payload(ping)                                   # warm the page cache
    for _label, path in built:
        run_payload(path)
    for round_no in range(args.runs):
        order = built[:]
        random.shuffle(order)
        for label, path in order:
            if round_no % 2:
                module_s, ping_s = run_payload(path), run_payload(ping)
            else:
                ping_s, module_s = run_payload(ping), run_payload(path)
            times[label].append(module_s)
            pings[label].append(ping_s)
            ratios[label].append(module_s / ping_s)
        log(f"round {round_no + 1}/{args.runs} done")
    print(f"\nAnsiballZ payload of a no-op call against ansible.builtin.ping's, {args.runs} interleaved round(s); "
          f"load average {load_average()}")
    print(f"{'module (backend)':<28}{'module ms':>10}{'ping ms':>10}{'ratio':>8}   aim <= {AIM_RATIO}")
    for label, path in built:
        ratio = median(ratios[label])
        mark = "reference" if (label, path) in references else "ok" if ratio <= AIM_RATIO else "missed"
        print(f"{label:<28}{median(times[label]) * 1000:>10.0f}{median(pings[label]) * 1000:>10.0f}"
              f"{ratio:>8.2f}   {mark}")


FIRST_CALL = """
import sys
from ansible_collections.virtops.qemu.plugins.module_utils.driver.connect import open_driver
from ansible_collections.virtops.qemu.plugins.module_utils.manager.domain import DomainManager, request_from_params
params = {"name": sys.argv[2], "state": "present", "type": "qemu", "memory": "64MiB"}
with open_driver(sys.argv[1]) as driver:
    result = DomainManager(driver).ensure(request_from_params(params), False)
if result["changed"] != (sys.argv[3] == "converge"):
    sys.exit(f"{sys.argv[3]}: changed is {result['changed']}")
"""


def measure_first_call(args, workdir: Path, tag: str, log) -> None:
    """A no-op ``domain`` present call in a new process, from interpreter start to its result, over bare Python.

    Both are whole processes of the same interpreter (``python -c``), run in
    turns; their difference is what the collection adds: its imports (from
    .pyc, written by the converging call), opening the embed root, the
    capabilities cache and the definition, and the comparison.
    """
    uri = f"qemu:///embed?root={workdir / 'first'}"
    env = dict(os.environ, PYTHONPATH=str(TEST_COLLECTIONS))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    call = [sys.executable, "-c", FIRST_CALL, uri, f"vopl-{tag}-first"]
    bare = [sys.executable, "-c", "pass"]
    log("first call: defining its domain")
    run_checked([*call, "converge"], env=env)
    run_checked([*call, "no-op"], env=env)
    calls, bares, over = [], [], []
    for round_no in range(max(args.runs, 3) * 2):
        if round_no % 2:
            call_s, bare_s = timed([*call, "no-op"], env), timed(bare, env)
        else:
            bare_s, call_s = timed(bare, env), timed([*call, "no-op"], env)
        calls.append(call_s * 1000)
        bares.append(bare_s * 1000)
        over.append((call_s - bare_s) * 1000)
    mark = "ok" if median(over) <= AIM_FIRST_CALL_MS else "missed"
    print(f"\nfirst embedded call in a new process (no-op domain present, from .pyc), {len(over)} interleaved runs; "
          f"load average {load_average()}")
    print(f"  python -c (the call) {median(calls):.0f} ms, python -c pass {median(bares):.0f} ms: "
          f"ratio {median(calls) / median(bares):.2f}")
    print(f"  the call over bare Python: median {median(over):.0f} ms (aim <= {AIM_FIRST_CALL_MS:.0f})  {mark}")


DEFINE_MANY = """
import sys
from ansible_collections.virtops.qemu.plugins.module_utils.driver.connect import open_driver
with open_driver(sys.argv[1]) as driver:
    for n in range(int(sys.argv[3])):
        driver.domains.define(f"<domain type='qemu'><name>{sys.argv[2]}-{n:04d}</name>"
                              "<memory unit='MiB'>64</memory><os><type arch='x86_64'>hvm</type></os></domain>")
"""


def measure_listing(args, payloads: Payloads, tag: str, workdir: Path, log) -> None:
    uri = f"qemu:///embed?root={workdir / 'list'}"
    log(f"defining {args.domains} embedded domains")
    run_checked([sys.executable, "-c", DEFINE_MANY, uri, f"vopl-{tag}", str(args.domains)],
                env=dict(os.environ, PYTHONPATH=str(TEST_COLLECTIONS)))
    ping = payloads.no_op("ping-list", "ansible.builtin.ping", {})
    info = payloads.no_op("domain_info-all", "virtops.qemu.domain_info", {"uri": uri})
    listed = json.loads(subprocess.run([sys.executable, str(info)], capture_output=True, text=True,
                                       check=False).stdout)
    if len(listed.get("domains", [])) != args.domains:
        raise BenchError(f"domain_info listed {len(listed.get('domains', []))} domains, not {args.domains}")
    source = workdir / "list.virtops_domains.yml"
    source.write_text(f"plugin: virtops.qemu.domains\nuris: ['{uri}']\n", encoding="utf-8")
    empty = workdir / "empty.ini"
    empty.write_text("", encoding="utf-8")
    inventory = [str(VENV_BIN / "ansible-inventory"), "--list", "-i"]
    hosts = json.loads(run_checked([*inventory, str(source)], env=payloads.env).stdout)["_meta"]["hostvars"]
    if len(hosts) != args.domains:
        raise BenchError(f"the inventory has {len(hosts)} hosts, not {args.domains}")
    over_info, over_inventory, pings, empties = [], [], [], []
    for _ in range(args.runs):
        ping_s = run_payload(ping)
        over_info.append(run_payload(info) - ping_s)
        empty_s = timed([*inventory, str(empty)], payloads.env)
        over_inventory.append(timed([*inventory, str(source)], payloads.env) - empty_s)
        pings.append(ping_s)
        empties.append(empty_s)
    print(f"\nlisting {args.domains} embedded domains (defined, shut off), median over {args.runs} run(s); "
          f"load average {load_average()}")
    print(f"  (the references: ping's payload {median(pings):.2f} s, an empty inventory {median(empties):.2f} s)")
    for label, samples, reference in (("domain_info (all) over ping's payload", over_info, pings),
                                      ("inventory plugin over an empty inventory", over_inventory, empties)):
        mark = "ok" if median(samples) <= AIM_LISTING else "missed"
        print(f"  {label:<44}{median(samples):>7.2f} s = {median(samples) / median(reference):5.2f}x the reference"
              f"   aim <= {AIM_LISTING:.0f} s  {mark}")


def load_average() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def timed(argv: list[str], env: dict) -> float:
    start = time.perf_counter()
    run_checked(argv, env=env)
    return time.perf_counter() - start


def cleanup_libvirt(uri: str, tag: str) -> None:
    try:
        import libvirt
    except ImportError:
        return
    prefix = f"vopl-{tag}-"
    conn = libvirt.open(uri)
    try:
        for domain in conn.listAllDomains():
            if domain.name().startswith(prefix):
                if domain.isActive():
                    domain.destroy()
                domain.undefine()
        for network in conn.listAllNetworks():
            if network.name().startswith(prefix):
                if network.isActive():
                    network.destroy()
                network.undefine()
        for pool in conn.listAllStoragePools():
            if pool.name().startswith(prefix):
                if pool.isActive():
                    pool.destroy()
                pool.undefine()
    finally:
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="interleaved rounds (default 15)")
    parser.add_argument("--uri", default="qemu:///system", help="libvirt URI (default qemu:///system)")
    parser.add_argument("--domains", type=int, default=1000, help="domains of the listing (default 1000)")
    parser.add_argument("--skip-modules", action="store_true", help="no per-module payloads")
    parser.add_argument("--skip-listing", action="store_true", help="no listing of --domains domains")
    parser.add_argument("--skip-first-call", action="store_true", help="no first call in a new process")
    parser.add_argument("--keep-workdir", action="store_true")
    args = parser.parse_args()
    # SIGTERM (timeout, a closed terminal) runs the cleanup below as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))
    ensure_our_collection_link()
    if not args.skip_modules:
        ensure_reference_collection(lambda text: print(f"  {text}", file=sys.stderr, flush=True))
    tag = secrets.token_hex(3)
    workdir = Path(tempfile.mkdtemp(prefix="vopl-", dir="/var/tmp"))
    os.chmod(workdir, 0o755)        # libvirtd's pool lives under it

    def log(text: str) -> None:
        print(f"  {text}", file=sys.stderr, flush=True)

    log(f"objects vopl-{tag}-*; workdir {workdir}")
    payloads = Payloads(workdir)
    failed = True
    try:
        if not args.skip_modules:
            measure_modules(args, payloads, tag, workdir, log)
        if not args.skip_first_call:
            measure_first_call(args, workdir, tag, log)
        if not args.skip_listing:
            measure_listing(args, payloads, tag, workdir, log)
        failed = False
    finally:
        cleanup_libvirt(args.uri, tag)
        if args.keep_workdir or failed:
            print(f"workdir kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
