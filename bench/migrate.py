# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Migrate the same guest by the embedded driver and by libvirt, and compare.

Two hosts on this machine (tests/harness/twohosts.py): for the embedded
driver two network and mount namespaces with an embed root each; for libvirt
two private libvirtds in their own namespaces, reached over qemu+tcp on a
veth pair.  The guest is the tests' TCG guest (128 MiB, a 16 MiB qcow2 disk
that is not shared), started fresh for every run; it moves live with its
disk (copy_storage: all).

Reported per driver, medians over --runs:
  move s      the migration itself (module's stats.total_time_ms: disk copy + memory)
  downtime ms the guest's pause at the switch-over (QEMU's / libvirt's figure)
  task s      wall time of the Ansible run that moves it (the role's five phases
              on the embedded driver, one module call on libvirt)
Ratios are libvirt / embedded: above 1 means the embedded driver is faster.
Aim: move at least 3x faster, downtime no longer than libvirt's.

Run from the repository's venv:  .venv/bin/python bench/migrate.py [--runs 3]
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from harness.ansible import run_module  # noqa: E402
from harness.guest import DISK_MARKER, build_guest  # noqa: E402
from harness.twohosts import libvirt_domain_xml, play, role_play, start_guest, tasks, two_hosts, two_libvirtds, wait_for  # noqa: E402,E501

AIM_SPEED = 3.0


def embedded_run(guest) -> dict:
    with two_hosts() as (src, dst):
        start_guest(src, "bench", guest)
        started = time.monotonic()
        results = play([src, dst], role_play(src, dst, "bench", migrate_copy_storage="all"))
        wall = time.monotonic() - started
    failed = [r for r in results if r["failed"]]
    if failed:
        raise RuntimeError(f"embedded migration failed: {failed[0].get('msg')}")
    return dict(tasks(results)["Mirror the disks and migrate (source)"]["stats"], task_s=wall)


def libvirt_run(guest) -> dict:
    with two_libvirtds() as [(src, src_uri), (_dst, dst_uri)]:
        src.virsh("vol-create-as", "default", "bench.qcow2", "16M", "--format", "qcow2")
        xml = src.base / "bench.xml"
        xml.write_text(libvirt_domain_xml("bench", guest))
        src.virsh("define", str(xml))
        src.virsh("start", "bench")
        serial = src.base / "log" / "qemu" / "bench-serial.log"
        wait_for(lambda: serial.exists() and f"{DISK_MARKER} written" in serial.read_text(errors="replace"),
                 60, "the guest's disk marker")
        started = time.monotonic()
        result = run_module("migrate", {"name": "bench", "destination": dst_uri, "copy_storage": "all"},
                            uri=src_uri, netns=src.netns)
        wall = time.monotonic() - started
    if result["failed"]:
        raise RuntimeError(f"libvirt migration failed: {result.get('msg')}")
    return dict(result["stats"], task_s=wall)


def readable_guest(guest, directory: Path):
    """The guest's kernel and initrd where libvirt-qemu may read them."""
    directory.mkdir(mode=0o755)
    kernel = Path(shutil.copy(guest.kernel, directory / "vmlinuz"))
    initrd = Path(shutil.copy(guest.initrd, directory / "initrd.img"))
    for path in (kernel, initrd):
        path.chmod(0o644)
    return replace(guest, kernel=kernel, initrd=initrd)


def summary(rows: list[dict]) -> dict:
    return {"move_s": statistics.median(r["total_time_ms"] for r in rows) / 1000,
            "downtime_ms": statistics.median(r["downtime_ms"] for r in rows),
            "task_s": statistics.median(r["task_s"] for r in rows)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vobm-", dir="/var/tmp") as tmp:
        Path(tmp).chmod(0o755)
        guest = readable_guest(build_guest(), Path(tmp) / "guest")
        embedded, libvirt = [], []
        for run in range(args.runs):
            # Drivers take turns going first.
            order = [(embedded, embedded_run), (libvirt, libvirt_run)]
            for rows, runner in order if run % 2 == 0 else reversed(order):
                rows.append(runner(guest))
    qemu = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True,
                          check=True).stdout.splitlines()[0]
    print(f"host: {platform.node()}, {qemu}, runs: {args.runs}")
    emb, lib = summary(embedded), summary(libvirt)
    print(f"{'driver':10} {'move s':>8} {'downtime ms':>12} {'task s':>8}")
    for label, row in (("embedded", emb), ("libvirt", lib)):
        print(f"{label:10} {row['move_s']:8.2f} {row['downtime_ms']:12.0f} {row['task_s']:8.2f}")
    speed = lib["move_s"] / emb["move_s"]
    print(f"ratio libvirt/embedded: move {speed:.1f}x, downtime {lib['downtime_ms'] / max(emb['downtime_ms'], 1):.1f}x,"
          f" task {lib['task_s'] / emb['task_s']:.1f}x")
    met = speed >= AIM_SPEED and emb["downtime_ms"] <= lib["downtime_ms"]
    print(f"aim (move >= {AIM_SPEED}x, downtime <= libvirt's): {'met' if met else 'NOT met'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
