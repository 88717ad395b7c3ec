# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A no-op call on an embedded root imports only what it needs.

Every module run compiles each source file it imports (AnsiballZ ships them
in a zip, without bytecode), so a domain or volume call that changes nothing
must not load the QEMU command-line builder, post-parse, the capabilities
prober, the keycode tables, another kind's driver or libvirt's bindings.
Each call runs the module's main() in a new Python process, which then lists
the heavy modules it has loaded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest
from qemu72_caps import CAPS

from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.backend import EmbedDriver
from ansible_collections.virtops.qemu.plugins.module_utils.uri import parse_uri

MU = "ansible_collections.virtops.qemu.plugins.module_utils"
HEAVY = [
    f"{MU}.driver.embed.cmdline",
    f"{MU}.driver.embed.postparse",
    f"{MU}.driver.embed.caps",
    f"{MU}.driver.embed.firmware",
    f"{MU}.driver.embed.security",
    f"{MU}.keycodes",
    f"{MU}.model.sendkey",
    f"{MU}.driver.libvirt_backend",
    f"{MU}.driver.image_import",
    f"{MU}.seed.nocloud",
    "libvirt",
    "ansible.module_utils.urls",
]
# Each kind's driver stays out of a call about another kind.
NOT_FOR_DOMAINS = [f"{MU}.driver.embed.network", f"{MU}.driver.embed.storage"]
NOT_FOR_VOLUMES = [f"{MU}.driver.embed.network", f"{MU}.manager.domain"]
# The domain driver (its layers and QMP code) stays out of a call about another kind.
DOMAIN_DRIVER = [f"{MU}.driver.embed.{name}" for name in ("domains", "recovery", "launch", "snapshot")] + \
    [f"{MU}.qmp", f"{MU}.qmp_commands", f"{MU}.guest_agent"]
# Storage calls run no process of their own (networks look for their bridge and dnsmasq).
PROCESSES = [f"{MU}.driver.embed.process"]
# A domain call that does not describe snapshots loads no snapshot code.
SNAPSHOT_CODE = [f"{MU}.manager.snapshot", f"{MU}.model.snapshot", f"{MU}.driver.embed.snapshot"]
# The RelaxNG helpers load only when a definition is validated (one is defined or given).
SCHEMA = [f"{MU}.model.schema"]
# A pool call that does not list volumes loads no volume code.
VOLUME_CODE = [f"{MU}.manager.volume", f"{MU}.model.volume"]

RUNNER = """
import json, runpy, sys
from ansible.module_utils import basic
basic._ANSIBLE_ARGS = sys.argv[2].encode()
basic._ANSIBLE_PROFILE = "legacy"
try:
    runpy.run_module(sys.argv[1], run_name="__main__")
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


@pytest.fixture(scope="module")
def root():
    path = tempfile.mkdtemp(prefix="vo", dir="/tmp")
    driver = EmbedDriver(parse_uri(f"qemu:///embed?root={path}"))
    driver.caps_for = lambda domain: CAPS       # post-parse without probing a QEMU
    driver.domains.define("<domain type='qemu'><name>lean1</name><memory unit='MiB'>64</memory>"
                          "<os><type arch='x86_64'>hvm</type></os></domain>")
    os.mkdir(os.path.join(path, "pool"))
    driver.pools.define(f"<pool type='dir'><name>lean</name><target><path>{path}/pool</path></target></pool>")
    driver.pools.start("lean")
    with open(os.path.join(path, "pool", "disk.img"), "wb") as image:
        image.truncate(1 << 20)
    driver.networks.define("<network><name>lean</name></network>")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run_module(module: str, args: dict) -> tuple[dict, set[str]]:
    """The module's result and the names in sys.modules when it finished."""
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, f"ansible_collections.virtops.qemu.plugins.modules.{module}",
         json.dumps({"ANSIBLE_MODULE_ARGS": args})],
        capture_output=True, text=True, check=False, timeout=120,
        env=dict(os.environ, PYTHONPATH=os.environ["ANSIBLE_COLLECTIONS_PATH"]))   # set by tests/conftest.py
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), set(json.loads(proc.stderr.strip().splitlines()[-1]))


def test_a_domain_no_op_loads_no_start_or_other_kind_code(root):
    result, loaded = run_module("domain", {"uri": f"qemu:///embed?root={root}", "name": "lean1",
                                           "memory": "64MiB"})
    assert result["changed"] is False and "failed" not in result, result
    assert sorted(loaded.intersection(HEAVY + NOT_FOR_DOMAINS + SNAPSHOT_CODE + SCHEMA)) == []


def test_a_domain_no_op_in_check_mode_too(root):
    result, loaded = run_module("domain", {"uri": f"qemu:///embed?root={root}", "name": "lean1",
                                           "_ansible_check_mode": True})
    assert result["changed"] is False and "failed" not in result, result
    assert sorted(loaded.intersection(HEAVY + NOT_FOR_DOMAINS)) == []


def test_a_volume_no_op_loads_no_domain_download_or_start_code(root):
    result, loaded = run_module("volume", {"uri": f"qemu:///embed?root={root}", "pool": "lean",
                                           "name": "disk.img", "capacity": "1MiB", "format": "raw"})
    assert result["changed"] is False and "failed" not in result, result
    assert sorted(loaded.intersection(HEAVY + NOT_FOR_VOLUMES + DOMAIN_DRIVER + PROCESSES + SCHEMA)) == []


def test_a_pool_no_op_loads_no_domain_volume_or_network_code(root):
    result, loaded = run_module("pool", {"uri": f"qemu:///embed?root={root}", "name": "lean", "type": "dir",
                                         "target": {"path": f"{root}/pool"}})
    assert result["changed"] is False and "failed" not in result, result
    assert sorted(loaded.intersection(HEAVY + NOT_FOR_VOLUMES + DOMAIN_DRIVER + PROCESSES + VOLUME_CODE)) == []


def test_a_network_no_op_loads_no_domain_or_storage_code(root):
    result, loaded = run_module("network", {"uri": f"qemu:///embed?root={root}", "name": "lean",
                                            "state": "present"})
    assert result["changed"] is False and "failed" not in result, result
    assert sorted(loaded.intersection(HEAVY + DOMAIN_DRIVER + [f"{MU}.driver.embed.storage", f"{MU}.manager.domain"])) \
        == []


def test_host_info_with_cached_capabilities_loads_no_qmp_or_domain_code(root):
    run_module("host_info", {"uri": f"qemu:///embed?root={root}"})    # probes QEMU and caches what it found
    result, loaded = run_module("host_info", {"uri": f"qemu:///embed?root={root}"})
    assert result["guests"] and "failed" not in result, result
    assert sorted(loaded.intersection(DOMAIN_DRIVER + [f"{MU}.driver.embed.storage", f"{MU}.driver.embed.network",
                                                       f"{MU}.driver.embed.security.cgroup"])) == []


def test_a_qemu_conf_no_op_loads_no_driver_or_misspelling_hints(root):
    args = {"uri": f"qemu:///embed?root={root}", "settings": {"vnc_listen": "127.0.0.1"}}
    run_module("qemu_conf", args)
    result, loaded = run_module("qemu_conf", args)
    assert result["changed"] is False and "failed" not in result, result
    assert sorted(loaded.intersection([f"{MU}.driver.embed.backend", "difflib"])) == []


def test_a_domain_listing_builds_no_command_line(root):
    result, loaded = run_module("domain_info", {"uri": f"qemu:///embed?root={root}"})
    assert [d["name"] for d in result["domains"]] == ["lean1"], result
    assert "qemu_argv" not in result["domains"][0] and result["domains"][0]["state"] == "shutoff"
    assert sorted(loaded.intersection(HEAVY + NOT_FOR_DOMAINS)) == []


def test_a_named_domain_info_builds_its_command_line_without_unused_parts(root):
    """The command line of a domain without volume disks or firmware needs no storage, post-parse steps or
    firmware code; the capabilities are cached by the first call."""
    args = {"uri": f"qemu:///embed?root={root}", "name": "lean1"}
    run_module("domain_info", args)
    result, loaded = run_module("domain_info", args)
    assert result["domain"]["qemu_argv"][0].endswith("qemu-system-x86_64"), result
    unused = [f"{MU}.driver.embed.{name}"
              for name in ("storage", "firmware", "postparse.normalise", "postparse.pci")]
    assert sorted(loaded.intersection(unused + [f"{MU}.driver.libvirt_backend", "uuid"])) == []
