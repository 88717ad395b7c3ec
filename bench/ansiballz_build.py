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
import json
import os
import subprocess
import sys

from benchlib import TEST_COLLECTIONS, ensure_our_collection_link, median

MODULES = ("ansible.builtin.ping", "virtops.qemu.domain", "virtops.qemu.domain_info", "virtops.qemu.network",
           "virtops.qemu.pool", "virtops.qemu.volume", "virtops.qemu.host_info", "virtops.qemu.qemu_conf")

# Runs in a new process per build, so that no cache of ansible-core's survives between builds.
BUILD_ONE = """
import io, json, sys, time, zipfile, base64
from ansible.executor import module_common
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import init_plugin_loader, module_loader
from ansible.template import Templar
init_plugin_loader()
found = module_loader.find_plugin_with_context(sys.argv[1])
started = time.perf_counter()
built = module_common.modify_module(
    module_name=found.resolved_fqcn, module_path=found.plugin_resolved_path, module_args={},
    templar=Templar(loader=DataLoader()), task_vars={"ansible_python_interpreter": sys.executable},
    module_compression="ZIP_DEFLATED")
seconds = time.perf_counter() - started
data = built.b_module_data
marker = b"zip_data='"
files = None
if marker in data:
    start = data.index(marker) + len(marker)
    blob = base64.b64decode(data[start:data.index(b"'", start)])
    files = sum(1 for n in zipfile.ZipFile(io.BytesIO(blob)).namelist() if "/module_utils/" in n)
print(json.dumps({"seconds": seconds, "size": len(data), "files": files}))
"""


def build(module: str, env: dict) -> dict:
    proc = subprocess.run([sys.executable, "-c", BUILD_ONE, module], capture_output=True, text=True, env=env,
                          check=True, timeout=300)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="builds per module (default 5)")
    args = parser.parse_args()
    ensure_our_collection_link()
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(TEST_COLLECTIONS), ANSIBLE_DEPRECATION_WARNINGS="false")
    env.pop("ANSIBLE_CONFIG", None)
    found: dict[str, list[dict]] = {m: [] for m in MODULES}
    for _round in range(args.runs):
        for module in MODULES:
            found[module].append(build(module, env))
    ping = median([r["seconds"] for r in found[MODULES[0]]])
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}, {args.runs} build(s) per module")
    print(f"{'module':28} {'build ms':>9} {'/ ping':>7} {'payload KB':>11} {'module_utils files':>19}")
    for module, results in found.items():
        seconds = median([r["seconds"] for r in results])
        last = results[-1]
        files = "?" if last["files"] is None else str(last["files"])
        print(f"{module:28} {seconds * 1000:9.0f} {seconds / ping:7.1f} {last['size'] / 1024:11.0f} {files:>19}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
