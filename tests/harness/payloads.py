"""Build modules' AnsiballZ payloads with ansible-core's own builder, as a controller does for a task.

Nothing is run on a host. Used by the payload tests and bench/ansiballz_build.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from .ansible import COLLECTIONS

# Builds each module named on its command line in this one process; prints a JSON object per module:
# the build's seconds, the payload's size and the names of the module_utils files in its zip.
BUILD = """
import base64, io, json, sys, time, zipfile
from ansible.executor import module_common
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import init_plugin_loader, module_loader
from ansible.template import Templar
init_plugin_loader()
built = {}
for name in sys.argv[1:]:
    found = module_loader.find_plugin_with_context(name)
    started = time.perf_counter()
    payload = module_common.modify_module(
        module_name=found.resolved_fqcn, module_path=found.plugin_resolved_path, module_args={},
        templar=Templar(loader=DataLoader()), task_vars={"ansible_python_interpreter": sys.executable},
        module_compression="ZIP_DEFLATED")
    seconds = time.perf_counter() - started
    data = payload.b_module_data
    start = data.index(b"zip_data='") + len(b"zip_data='")
    names = zipfile.ZipFile(io.BytesIO(base64.b64decode(data[start:data.index(b"'", start)]))).namelist()
    built[name] = {"seconds": seconds, "size": len(data),
                   "module_utils": sorted(n for n in names if "/module_utils/" in n)}
print(json.dumps(built))
"""


def build_payloads(modules: list[str]) -> dict[str, dict]:
    """Each module's (FQCN) payload built in one new process: {"seconds", "size", "module_utils"} by name."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS), ANSIBLE_DEPRECATION_WARNINGS="false")
    env.pop("ANSIBLE_CONFIG", None)
    proc = subprocess.run([sys.executable, "-c", BUILD, *modules], capture_output=True, text=True, env=env,
                          check=True, timeout=300)
    return json.loads(proc.stdout.strip().splitlines()[-1])
