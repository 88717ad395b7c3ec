#!/usr/bin/env python3
# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the controller pays once per module and playbook run: building the module's AnsiballZ payload.

ansible-core builds a module's payload the first time a run uses the module
(it walks the module's imports, parses every module_utils file it reaches
and zips them) and keeps it for the rest of that run only.  Each round
builds every module's payload in a new process, ping's included, and
reports the median build time, the payload size and the number of
module_utils files shipped.  No host is contacted and nothing is run.

Not part of the collection; see bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import sys

from benchlib import REPO, ensure_our_collection_link, median

sys.path.insert(0, str(REPO / "tests"))
from harness.payloads import build_payloads  # noqa: E402

MODULES = ("ansible.builtin.ping", "virtops.qemu.domain", "virtops.qemu.domain_info", "virtops.qemu.network",
           "virtops.qemu.pool", "virtops.qemu.volume", "virtops.qemu.host_info", "virtops.qemu.qemu_conf")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="builds per module (default 5)")
    args = parser.parse_args()
    ensure_our_collection_link()
    found: dict[str, list[dict]] = {m: [] for m in MODULES}
    for _round in range(args.runs):
        for module in MODULES:      # a new process per build, so that no cache of ansible-core's survives
            found[module].append(build_payloads([module])[module])
    ping = median([r["seconds"] for r in found[MODULES[0]]])
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}, {args.runs} build(s) per module")
    print(f"{'module':28} {'build ms':>9} {'/ ping':>7} {'payload KB':>11} {'module_utils files':>19}")
    for module, results in found.items():
        seconds = median([r["seconds"] for r in results])
        last = results[-1]
        files = len(last["module_utils"])
        print(f"{module:28} {seconds * 1000:9.0f} {seconds / ping:7.1f} {last['size'] / 1024:11.0f} {files:19}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
