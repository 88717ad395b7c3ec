# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The embedded driver leaves the host alone: root checks, lazy tree, lock files, OS errors, probes.

Real QEMU, real module runs through Ansible; every test gets a private root
under /tmp and kills whatever QEMU it started.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ansible_collections.virtops.qemu.plugins.module_utils.driver.connect import open_driver
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import process
from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError, InvalidInput, NotFound
from harness.ansible import run_module
from harness.embed import private_root
from harness.libvirtd import domain_xml

QEMU = shutil.which("qemu-system-x86_64") or "/usr/bin/qemu-system-x86_64"

pytestmark = [
    pytest.mark.embed,
]


@pytest.fixture
def base():
    """A private directory under /tmp; the embed roots of a test live below it."""
    with private_root() as path:
        yield path


def guest_domain(guest, base: Path, name: str = "vm1") -> str:
    return domain_xml(name, guest, base / f"{name}-serial.log")


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def module(module_name: str, uri: str, check: bool = False, **args) -> dict:
    return run_module(module_name, {"uri": uri, **args}, check=check)


# -- the root ---------------------------------------------------------------------------
def test_root_given_twice_is_refused(base):
    with pytest.raises(InvalidInput, match="root more than once"):
        open_driver(f"qemu:///embed?root={base}/a&root={base}/b")
    assert files_under(base) == []


@pytest.mark.parametrize("kind", ["a file", "below a file"])
def test_root_that_is_no_directory_fails_clearly(base, kind):
    blocker = base / "file"
    blocker.write_text("not a directory\n")
    root = blocker if kind == "a file" else blocker / "root"
    with pytest.raises(InvalidInput, match="not a directory"):
        open_driver(f"qemu:///embed?root={root}")
    result = module("domain", f"qemu:///embed?root={root}", name="vm1", memory="64MiB")
    assert result["failed"] and result["msg"].startswith("uri: ") and str(root) in result["msg"], result
    assert "MODULE FAILURE" not in result["msg"]
    assert blocker.read_text() == "not a directory\n"


# -- nothing is written by reads and check mode ---------------------------------------------
def test_opening_and_reading_create_nothing(base):
    root = base / "root"
    for read_only in (False, True):
        with open_driver(f"qemu:///embed?root={root}", read_only=read_only) as driver:
            assert driver.domains.names() == []
            assert not driver.domains.exists("vm1")
            with pytest.raises(NotFound):
                driver.domains.status("vm1")
            with pytest.raises(NotFound):
                driver.domains.xml("vm1")
    with open_driver(f"qemu:///embed?root={root}", read_only=True) as driver:
        assert "<capabilities>" in driver.capabilities()
        with pytest.raises(BackendError, match="read-only"):
            driver.domains.define("<domain type='qemu'><name>vm1</name><memory>65536</memory>"
                                  "<os><type>hvm</type></os></domain>")
    assert not root.exists()


def test_check_mode_and_info_modules_write_nothing(base):
    root = base / "root"
    uri = f"qemu:///embed?root={root}"
    predicted = module("domain", uri, check=True, name="vm1", type="qemu", memory="64MiB", state="running")
    assert not predicted.get("failed") and predicted["changed"] and predicted["state"] == "running", predicted
    listed = module("domain_info", uri)
    assert not listed.get("failed") and listed["domains"] == [], listed
    unknown = module("domain_info", uri, name="vm1")
    assert not unknown.get("failed") and unknown["exists"] is False, unknown
    host = module("host_info", uri)
    assert not host.get("failed") and host["arch"] == "x86_64", host
    assert not root.exists()


def test_host_info_uses_but_never_creates_the_cache(base, guest_build):
    root = base / "root"
    with open_driver(f"qemu:///embed?root={root}") as driver:
        driver.domains.define(guest_domain(guest_build, base))        # probes and caches x86_64
    cache = root / "cache" / "qemu" / "capabilities"
    cached = sorted(os.listdir(cache))
    assert len(cached) == 1
    assert not module("host_info", f"qemu:///embed?root={root}").get("failed")
    assert len(os.listdir(cache)) == 2      # i386 joins the existing cache; nothing else changed
    assert set(cached) < set(os.listdir(cache))


# -- lock files ---------------------------------------------------------------------------
def test_unknown_names_get_no_lock_file(base, guest_build):
    root = base / "root"
    uri = f"qemu:///embed?root={root}"
    with open_driver(uri) as driver:
        driver.domains.define(guest_domain(guest_build, base))
    before = files_under(root)
    for read_only in (False, True):
        with open_driver(uri, read_only=read_only) as driver:
            for call in (driver.domains.status, driver.domains.xml, driver.domains.undefine, driver.domains.start):
                with pytest.raises(NotFound):
                    call("ghost")
    assert module("domain_info", uri, name="ghost")["exists"] is False
    assert files_under(root) == before


def test_domain_named_driver_starts_without_deadlock(base, guest_build):
    uri = f"qemu:///embed?root={base / 'root'}"
    outcome = []

    def start():
        with open_driver(uri) as driver:
            driver.domains.define(guest_domain(guest_build, base, name="driver"))
            driver.domains.start("driver")
            state = driver.domains.status("driver").state
            driver.domains.destroy("driver")
            outcome.append(state)

    worker = threading.Thread(target=start, daemon=True)
    started = time.monotonic()
    worker.start()
    worker.join(60)
    assert outcome == ["running"], f"start of domain 'driver' hung or failed after {time.monotonic() - started:.0f}s"


def test_lock_file_goes_with_the_domain(base, guest_build):
    root = base / "root"
    locks = root / "run" / "qemu" / "locks" / "domain"
    with open_driver(f"qemu:///embed?root={root}") as driver:
        driver.domains.define(guest_domain(guest_build, base))
        assert (locks / "vm1.lock").exists()
        driver.domains.undefine("vm1")
        assert not (locks / "vm1.lock").exists()

        driver.domains.define(guest_domain(guest_build, base))
        driver.domains.start("vm1")
        driver.domains.undefine("vm1")                   # still running: transient now
        assert (locks / "vm1.lock").exists()
        driver.domains.destroy("vm1")
        assert not driver.domains.exists("vm1")
        assert not (locks / "vm1.lock").exists()
    # Only the logs stay, QEMU's and the monitor traffic's, as with libvirt.
    assert sorted(name for name in files_under(root) if "vm1" in name) == ["log/qemu/vm1.log",
                                                                           "log/qemu/vm1.qmp.log"]


# -- file and XML errors reach the user as one message ----------------------------------------
def test_unwritable_tree_part_is_named(base):
    root = base / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "qemu").write_text("a file where the definitions go\n")
    result = module("domain", f"qemu:///embed?root={root}", name="vm1", type="qemu", memory="64MiB")
    assert result["failed"] and "MODULE FAILURE" not in result["msg"], result
    assert f"{root}/etc/qemu" in result["msg"] and "not a directory" in result["msg"], result["msg"]


def test_control_character_in_title_is_named(base):
    result = module("domain", f"qemu:///embed?root={base / 'root'}", name="vm1", memory="64MiB", title="a\x01b")
    assert result["failed"] and result["msg"].startswith("title: "), result
    assert not (base / "root").exists()


# -- capability probes ----------------------------------------------------------------------
PROBE_SCRIPT = r"""
import sys, time
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import caps

def hang(binary, process, socket_path, timeout):
    print(process.pid, socket_path, flush=True)
    time.sleep(600)

caps._query_process = hang      # stop mid-probe, with the probe QEMU up
caps.probe(sys.argv[1], sys.argv[2])
"""


def test_probe_of_a_killed_run_leaves_nothing_behind(base):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p.endswith("collections")))
    run = subprocess.Popen([sys.executable, "-c", PROBE_SCRIPT, QEMU, str(base / "cache")],
                           stdout=subprocess.PIPE, text=True, env=env)
    try:
        pid, socket_path = run.stdout.readline().split()
    finally:
        run.kill()
        run.wait()
    qemu, probe_dir = int(pid), os.path.dirname(socket_path)
    first_seen = process.start_time(qemu)
    try:
        module("host_info", f"qemu:///embed?root={base / 'root'}")         # the next run
        deadline = time.monotonic() + 10
        while process.is_alive(qemu, first_seen) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not process.is_alive(qemu, first_seen), "the probe QEMU outlived its run"
        assert not os.path.exists(probe_dir), f"{probe_dir} was left behind"
    finally:
        if process.is_alive(qemu, first_seen):
            os.kill(qemu, signal.SIGKILL)
        shutil.rmtree(probe_dir, ignore_errors=True)
