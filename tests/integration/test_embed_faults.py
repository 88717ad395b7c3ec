"""The embedded driver after things went wrong, against the real QEMU and the TCG test guest.

A lost status record, a module run killed half-way through a start, a
corrupt definition, a QEMU that is stopped or whose monitor socket is gone,
a pidfile naming somebody else's process, two runs starting the same domain:
each test sets the fault up for real and checks what the next run does.
Every test has a private root and kills whatever QEMU it started.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from ansible_collections.virtops.qemu.plugins.module_utils.driver.base import DomainStatus
from ansible_collections.virtops.qemu.plugins.module_utils.driver.connect import open_driver
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import state
from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import parse


pytestmark = [pytest.mark.embed]


# -- fixtures and helpers ---------------------------------------------------------
@pytest.fixture
def root():
    if os.geteuid() != 0:
        pytest.fail("the embedded driver tests run as root (QEMU, /proc of every process)")
    path = Path(tempfile.mkdtemp(prefix="vf-", dir="/tmp"))
    try:
        yield path
    finally:
        for pid in _qemu_pids(path):
            _signal(pid, signal.SIGKILL)      # SIGKILL also ends a stopped QEMU
        shutil.rmtree(path, ignore_errors=True)


def _qemu_pids(root: Path) -> list[int]:
    """Live QEMUs whose command line mentions this test's root: only QEMUs this test started."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if stat[stat.rfind(")") + 2] not in "ZX" and str(root).encode() in cmdline and b"qemu-system" in cmdline:
            pids.append(int(entry))
    return pids


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _driver(root: Path):
    return open_driver(f"qemu:///embed?root={root}")


def _xml(guest, root: Path, name: str = "vm1", uuid: str = "", extra: str = "") -> str:
    return f"""<domain type='qemu'>
  <name>{name}</name>{f'<uuid>{uuid}</uuid>' if uuid else ''}
  <memory unit='MiB'>256</memory>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{guest.kernel}</kernel>
    <initrd>{guest.initrd}</initrd>
    <cmdline>{guest.cmdline}</cmdline>
  </os>
  <features><acpi/></features>
  <devices>
    <serial type='file'><source path='{root}/{name}-serial.log'/><target port='0'/></serial>
    {extra}
  </devices>
</domain>"""


def _started(guest, root: Path, name: str = "vm1", **kwargs) -> int:
    """Define and start a domain; its QEMU's pid."""
    with _driver(root) as drv:
        drv.domain_define(_xml(guest, root, name, **kwargs))
        drv.domain_start(name)
    return _pid(root, name)


def _pid(root: Path, name: str = "vm1") -> int:
    return int((root / "run" / "qemu" / f"{name}.pid").read_text())


def _monitor(root: Path, name: str = "vm1") -> str:
    return state.load_record(str(root / "run" / "qemu" / f"{name}.xml")).monitor


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


def _python(script: str, *args: str, **kwargs) -> subprocess.Popen:
    """A separate module run: a Python process of its own using the collection under test."""
    path = os.pathsep.join(p for p in sys.path if p.endswith("collections"))
    return subprocess.Popen([sys.executable, "-c", script, *args], env=dict(os.environ, PYTHONPATH=path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


# -- a corrupt definition ---------------------------------------------------------------
def test_corrupt_definition_of_a_running_domain(guest_build, root):
    _started(guest_build, root, "vm1")
    with _driver(root) as drv:
        drv.domain_define(_xml(guest_build, root, "vm2"))
    config = root / "etc" / "qemu" / "vm1.xml"
    config.write_bytes(b"\xff\xfe<domain>not xml \x00")
    nvram = root / "lib" / "qemu" / "nvram" / "vm1_VARS.fd"
    nvram.write_bytes(b"vars")

    with _driver(root) as drv:
        assert drv.domain_names() == ["vm1", "vm2"]
        assert drv.domain_status("vm1") == DomainStatus("running", "booted")
        with pytest.raises(BackendError, match=f"definition file {config} cannot be parsed"):
            drv.domain_xml("vm1")
        assert parse(drv.domain_xml("vm1", inactive=False), "domain").findtext("name") == "vm1"
        drv.domain_define(_xml(guest_build, root, "vm3", uuid="00000000-0000-4000-8000-0000000000a3"))
        drv.domain_shutdown("vm1")
        drv.domain_destroy("vm1")
        assert drv.domain_status("vm1") == DomainStatus("shutoff", "destroyed")
        assert _qemu_pids(root) == []
        drv.domain_undefine("vm1")
        assert any(str(config) in w and "NVRAM" in w for w in drv.warnings)
        assert not drv.domain_exists("vm1") and not config.exists()
        assert drv.domain_names() == ["vm2", "vm3"]
    assert nvram.exists()       # nobody could tell whether it was this domain's


def test_corrupt_definition_can_be_undefined_while_running(guest_build, root):
    pid = _started(guest_build, root, "vm1")
    (root / "etc" / "qemu" / "vm1.xml").write_text("<domain><name>vm1")
    with _driver(root) as drv:
        drv.domain_undefine("vm1")                  # the running domain stays, transient
        assert drv.domain_names() == ["vm1"]
        assert drv.domain_status("vm1").state == "running"
        drv.domain_destroy("vm1")
        assert drv.domain_names() == []
    assert not _alive(pid)


# -- a silent QEMU ------------------------------------------------------------------------
def test_stopped_qemu_does_not_stall_status_or_destroy(guest_build, root):
    pid = _started(guest_build, root, "vm1")
    _started(guest_build, root, "vm2")
    os.kill(pid, signal.SIGSTOP)
    with _driver(root) as drv:
        began = time.monotonic()
        assert drv.domain_status("vm1") == DomainStatus("running", "booted")
        assert time.monotonic() - began < 6
        assert any("'vm1'" in w and _monitor(root, "vm1") in w and "does not answer" in w for w in drv.warnings)
        assert drv.domain_status("vm2") == DomainStatus("running", "booted")
        began = time.monotonic()
        with pytest.raises(BackendError, match="does not answer"):
            drv.domain_suspend("vm1")
        assert time.monotonic() - began < 9       # the status check, then the command: two deadlines
        began = time.monotonic()
        drv.domain_destroy("vm1")
        assert time.monotonic() - began < 15
        assert drv.domain_status("vm1") == DomainStatus("shutoff", "destroyed")
        drv.domain_destroy("vm2")
    assert _qemu_pids(root) == []


def test_removed_monitor_socket_fails_fast_and_destroy_uses_signals(guest_build, root):
    pid = _started(guest_build, root)
    monitor = _monitor(root)
    os.unlink(monitor)
    with _driver(root) as drv:
        began = time.monotonic()
        assert drv.domain_status("vm1") == DomainStatus("running", "booted")
        assert time.monotonic() - began < 2
        assert any(monitor in w for w in drv.warnings)
        began = time.monotonic()
        with pytest.raises(BackendError, match=monitor):
            drv.domain_monitor("vm1", {"execute": "query-status"})
        assert time.monotonic() - began < 2
        began = time.monotonic()
        drv.domain_destroy("vm1")
        assert time.monotonic() - began < 8
        assert drv.domain_status("vm1") == DomainStatus("shutoff", "destroyed")
    assert not _alive(pid) and _qemu_pids(root) == []
