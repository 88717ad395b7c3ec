"""The embedded driver after things went wrong, against the real QEMU and the TCG test guest.

A lost status record, a module run killed half-way through a start, a
corrupt definition, a QEMU that is stopped or whose monitor socket is gone,
a pidfile naming somebody else's process, two runs starting the same domain:
each test sets the fault up for real and checks what the next run does.
Every test has a private root and kills whatever QEMU it started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ansible_collections.virtops.qemu.plugins.module_utils.driver.base import DomainStatus
from ansible_collections.virtops.qemu.plugins.module_utils.driver.connect import open_driver
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import process, state
from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError, Conflict
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import parse
from harness.ansible import run_module  # noqa: E402  (tests/ is on sys.path via conftest)
from harness.embed import qemu_pids  # noqa: E402
from harness.guest import MARKER  # noqa: E402
from harness.libvirtd import wait_for_line  # noqa: E402

pytestmark = [pytest.mark.embed]


# -- fixtures and helpers ---------------------------------------------------------
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
        drv.domains.define(_xml(guest, root, name, **kwargs))
        drv.domains.start(name)
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


def _exit_code(run: subprocess.Popen, timeout: float = 60) -> int:
    """The run's exit code; a run still going after ``timeout`` is killed, not left behind."""
    try:
        return run.wait(timeout)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()


# -- a lost status record -----------------------------------------------------------
def test_lost_status_record_is_rebuilt_from_the_running_qemu(guest_build, root):
    pid = _started(guest_build, root)
    (root / "run" / "qemu" / "vm1.xml").unlink()
    with _driver(root) as drv:
        with pytest.raises(Conflict, match="already running"):
            drv.domains.start("vm1")
        assert drv.domains.status("vm1") == DomainStatus("running", "unknown")
        assert any("reattached" in w and str(pid) in w for w in drv.warnings)
        assert parse(drv.domains.xml("vm1", inactive=False), "domain").get("id") == "1"
        assert qemu_pids(root) == [pid]
        drv.domains.destroy("vm1")
        assert drv.domains.status("vm1") == DomainStatus("shutoff", "destroyed")
    assert qemu_pids(root) == []


def test_lost_status_record_and_pidfile_still_find_the_qemu(guest_build, root):
    pid = _started(guest_build, root)
    (root / "run" / "qemu" / "vm1.xml").unlink()
    (root / "run" / "qemu" / "vm1.pid").unlink()
    with _driver(root) as drv:
        with pytest.raises(Conflict, match=f"QEMU process {pid}"):
            drv.domains.start("vm1")
        assert qemu_pids(root) == [pid]
        assert drv.domains.status("vm1").state == "running"
        drv.domains.destroy("vm1")
    assert qemu_pids(root) == []


def test_lost_status_record_of_a_silent_qemu_refuses_start_naming_the_pid(guest_build, root):
    pid = _started(guest_build, root)
    os.kill(pid, signal.SIGSTOP)
    (root / "run" / "qemu" / "vm1.xml").unlink()
    with _driver(root) as drv:
        with pytest.raises(Conflict, match=f"QEMU process {pid} runs domain 'vm1'"):
            drv.domains.start("vm1")
    assert qemu_pids(root) == [pid]


# -- a start killed half-way ----------------------------------------------------------
KILLED_START = r"""
import os, signal, sys, time
from ansible_collections.virtops.qemu.plugins.module_utils.driver.connect import open_driver
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import launch, process
root, when = sys.argv[1], sys.argv[2]

def die(*args):
    os.kill(os.getpid(), signal.SIGKILL)

def spawn_then_die(argv, env, log_file, *rest, **named):
    process_spawn(argv, env, log_file, *rest, **named)
    pidfile = argv[argv.index("-pidfile") + 1]
    while when == "after-spawn" and not os.path.exists(pidfile):
        time.sleep(0.01)
    die()

if when == "qmp-setup":
    launch._set_passwords = die             # connected to QEMU, nothing configured yet
else:
    process_spawn, process.spawn = process.spawn, spawn_then_die
with open_driver(f"qemu:///embed?root={root}") as drv:
    drv.domains.start("vm1")
"""


# "spawned": killed as soon as QEMU runs, before it wrote its pidfile; nothing recorded its pid.
@pytest.mark.parametrize("when", ["spawned", "after-spawn", "qmp-setup"])
def test_start_killed_half_way_is_cleaned_up_then_started_afresh(guest_build, root, when):
    pty = "<serial type='pty'><target port='1'/></serial>"
    with _driver(root) as drv:
        drv.domains.define(_xml(guest_build, root, extra=pty))
    run = _python(KILLED_START, str(root), when)
    assert _exit_code(run) == -signal.SIGKILL, run.stderr.read()
    leftover = qemu_pids(root)
    assert len(leftover) == 1                                   # paused, half set up

    with _driver(root) as drv:
        assert drv.domains.status("vm1") == DomainStatus("shutoff", "failed")
        assert qemu_pids(root) == []
        drv.domains.start("vm1")
        assert drv.domains.status("vm1") == DomainStatus("running", "booted")
        live = parse(drv.domains.xml("vm1", inactive=False), "domain")
        assert live.find("devices/serial[@type='pty']/source").get("path").startswith("/dev/pts/")
        wait_for_line(root / "vm1-serial.log", MARKER, timeout=90)
        assert len(qemu_pids(root)) == 1 and qemu_pids(root) != leftover
        drv.domains.destroy("vm1")
    assert qemu_pids(root) == []


KILLED_WRITE = r"""
import os, signal, sys
from ansible_collections.virtops.qemu.plugins.module_utils.driver.connect import open_driver
root, what, name, xml = sys.argv[1:5]
replace = os.replace

def replace_or_die(source, target):
    if os.path.basename(source).startswith(f".{name}.xml."):
        os.kill(os.getpid(), signal.SIGKILL)        # the temporary is written, not yet renamed
    replace(source, target)

os.replace = replace_or_die
with open_driver(f"qemu:///embed?root={root}") as drv:
    drv.pools.start(name) if what == "pool-start" else drv.networks.define(xml)
"""


def test_writes_killed_half_way_leave_no_temporaries_after_the_next_run(root, workdir):
    """A pool's status record (run/storage) and a network's definition (etc/network), each killed mid-write."""
    with _driver(root) as drv:
        drv.pools.define(f"<pool type='dir'><name>p1</name><target><path>{workdir}/images</path></target></pool>")
        drv.pools.build("p1")
    assert _exit_code(_python(KILLED_WRITE, str(root), "pool-start", "p1", "")) == -signal.SIGKILL
    pool_leftover = list(root.glob("run/storage/.p1.xml.*.tmp"))
    assert len(pool_leftover) == 1, pool_leftover

    # The next run that writes clears every kind's leftovers; this one is killed in turn.
    network = "<network><name>n1</name><bridge name='vtk1'/></network>"
    assert _exit_code(_python(KILLED_WRITE, str(root), "network-define", "n1", network)) == -signal.SIGKILL
    assert not pool_leftover[0].exists()
    network_leftover = list(root.glob("etc/network/.n1.xml.*.tmp"))
    assert len(network_leftover) == 1, network_leftover

    started = run_module("pool", {"uri": f"qemu:///embed?root={root}", "name": "p1", "state": "active"})
    assert started["changed"] and started["state"] == "active", started
    assert not network_leftover[0].exists()
    assert not (root / "run" / "network" / "locks" / "network" / "n1.lock").exists()
    with _driver(root) as drv:
        assert drv.networks.names() == []
        drv.pools.stop("p1")


def test_a_start_found_half_way_is_killed_by_the_next_start(guest_build, root):
    with _driver(root) as drv:
        drv.domains.define(_xml(guest_build, root))
    assert _exit_code(_python(KILLED_START, str(root), "qmp-setup")) == -signal.SIGKILL
    leftover = qemu_pids(root)
    assert len(leftover) == 1                                   # paused, half set up
    with _driver(root) as drv:
        drv.domains.start("vm1")                                  # no status asked first
        assert drv.domains.status("vm1") == DomainStatus("running", "booted")
        assert len(qemu_pids(root)) == 1 and not any(_alive(pid) for pid in leftover)
        drv.domains.destroy("vm1")


def test_a_start_in_progress_in_another_run_is_left_alone(guest_build, root):
    with _driver(root) as drv:
        drv.domains.define(_xml(guest_build, root))
        config = parse(drv.domains.xml("vm1"), "domain")
    starter = subprocess.Popen(["sleep", "60"])     # the run doing the start, alive
    try:
        state.save_record(str(root / "run" / "qemu" / "vm1.xml"), state.DomainRecord(
            "paused", "starting up", domain_id=1, monitor=str(root / "lib" / "qemu" / "domain-1-vm1" / "monitor.sock"),
            domain_dir=str(root / "lib" / "qemu" / "domain-1-vm1"), live=config,
            starter=starter.pid, starter_time=process.start_time(starter.pid)))
        with _driver(root) as drv:
            assert drv.domains.status("vm1") == DomainStatus("paused", "starting up")
    finally:
        starter.kill()
        starter.wait()
    with _driver(root) as drv:
        assert drv.domains.status("vm1") == DomainStatus("shutoff", "failed")


# -- pids that are not the domain's ---------------------------------------------------
def test_a_pid_is_trusted_only_if_its_qemu_names_the_domain_uuid(guest_build, root):
    with _driver(root) as drv:
        drv.domains.define(_xml(guest_build, root, "vm1"))
        config = parse(drv.domains.xml("vm1"), "domain")
    other = _started(guest_build, root, "vm2")
    status_file, pidfile = str(root / "run" / "qemu" / "vm1.xml"), root / "run" / "qemu" / "vm1.pid"

    # A start of vm1 that died before recording a pid, with a pidfile naming vm2's QEMU (a reused pid).
    state.save_record(status_file, state.DomainRecord(
        "paused", "starting up", domain_id=7, monitor=str(root / "lib" / "qemu" / "domain-7-vm1" / "monitor.sock"),
        domain_dir=str(root / "lib" / "qemu" / "domain-7-vm1"), live=config))
    pidfile.write_text(f"{other}\n")
    with _driver(root) as drv:
        assert drv.domains.status("vm1") == DomainStatus("shutoff", "failed")
    assert _alive(other)

    # A record without a start time whose pid is now vm2's QEMU.
    state.save_record(status_file, state.DomainRecord(
        "running", "booted", pid=other, domain_id=7, monitor=str(root / "nowhere.sock"), live=config))
    with _driver(root) as drv:
        with pytest.raises(Conflict, match="not running"):
            drv.domains.destroy("vm1")
        assert drv.domains.status("vm2") == DomainStatus("running", "booted")
        drv.domains.destroy("vm2")
    assert not _alive(other)


# -- a corrupt definition ---------------------------------------------------------------
def test_corrupt_definition_of_a_running_domain(guest_build, root):
    _started(guest_build, root, "vm1")
    with _driver(root) as drv:
        drv.domains.define(_xml(guest_build, root, "vm2"))
    config = root / "etc" / "qemu" / "vm1.xml"
    config.write_bytes(b"\xff\xfe<domain>not xml \x00")
    nvram = root / "lib" / "qemu" / "nvram" / "vm1_VARS.fd"
    nvram.write_bytes(b"vars")

    with _driver(root) as drv:
        assert drv.domains.names() == ["vm1", "vm2"]
        assert drv.domains.status("vm1") == DomainStatus("running", "booted")
        with pytest.raises(BackendError, match=f"definition file {config} cannot be parsed"):
            drv.domains.xml("vm1")
        assert parse(drv.domains.xml("vm1", inactive=False), "domain").findtext("name") == "vm1"
        drv.domains.define(_xml(guest_build, root, "vm3", uuid="00000000-0000-4000-8000-0000000000a3"))
        drv.domains.shutdown("vm1")
        drv.domains.destroy("vm1")
        assert drv.domains.status("vm1") == DomainStatus("shutoff", "destroyed")
        assert qemu_pids(root) == []
        drv.domains.undefine("vm1")
        assert any(str(config) in w and "NVRAM" in w for w in drv.warnings)
        assert not drv.domains.exists("vm1") and not config.exists()
        assert drv.domains.names() == ["vm2", "vm3"]
    assert nvram.exists()       # nobody could tell whether it was this domain's


def test_corrupt_definition_can_be_undefined_while_running(guest_build, root):
    pid = _started(guest_build, root, "vm1")
    (root / "etc" / "qemu" / "vm1.xml").write_text("<domain><name>vm1")
    with _driver(root) as drv:
        drv.domains.undefine("vm1")                  # the running domain stays, transient
        assert drv.domains.names() == ["vm1"]
        assert drv.domains.status("vm1").state == "running"
        drv.domains.destroy("vm1")
        assert drv.domains.names() == []
    assert not _alive(pid)


def test_corrupt_definition_does_not_stop_the_domain_module(guest_build, root):
    """state=destroyed and state=absent need nothing from the definition file."""
    pid = _started(guest_build, root, "vm1")
    config = root / "etc" / "qemu" / "vm1.xml"
    config.write_text("<domain><name>vm1")
    uri = f"qemu:///embed?root={root}"
    checked = run_module("domain", {"name": "vm1", "state": "destroyed"}, check=True, uri=uri)
    assert checked["changed"] is True and _alive(pid)
    destroyed = run_module("domain", {"name": "vm1", "state": "destroyed"}, uri=uri)
    assert destroyed["changed"] is True and destroyed["state"] == "shutoff"
    assert any("cannot be parsed" in w for w in destroyed.get("warnings", []))
    assert not _alive(pid)
    refused = run_module("domain", {"name": "vm1", "state": "running", "memory": "128MiB"}, uri=uri)
    assert refused.get("failed") and "cannot be parsed" in refused["msg"]
    removed = run_module("domain", {"name": "vm1", "state": "absent"}, uri=uri)
    assert removed["changed"] is True and not config.exists()


# -- a silent QEMU ------------------------------------------------------------------------
def test_stopped_qemu_does_not_stall_status_or_destroy(guest_build, root):
    pid = _started(guest_build, root, "vm1")
    _started(guest_build, root, "vm2")
    os.kill(pid, signal.SIGSTOP)
    with _driver(root) as drv:
        began = time.monotonic()
        assert drv.domains.status("vm1") == DomainStatus("running", "booted")
        assert time.monotonic() - began < 6
        assert any("'vm1'" in w and _monitor(root, "vm1") in w and "does not answer" in w for w in drv.warnings)
        began = time.monotonic()
        assert drv.domains.status("vm1") == DomainStatus("running", "booted")
        assert time.monotonic() - began < 1         # not waited for twice in one run
        assert len([w for w in drv.warnings if "does not answer" in w]) == 1
        assert drv.domains.status("vm2") == DomainStatus("running", "booted")
        began = time.monotonic()
        with pytest.raises(BackendError, match="does not answer"):
            drv.domains.suspend("vm1")
        assert time.monotonic() - began < 1
        began = time.monotonic()
        drv.domains.destroy("vm1")
        assert time.monotonic() - began < 8
        drv.domains.start("vm1")                     # the same monitor path, a QEMU that answers
        assert drv.domains.monitor("vm1", {"execute": "query-status"})["status"] == "running"
        os.kill(_pid(root, "vm1"), signal.SIGSTOP)
    with _driver(root) as drv:                      # a later run asks again
        began = time.monotonic()
        with pytest.raises(BackendError, match="does not answer"):
            drv.domains.monitor("vm1", {"execute": "query-status"})
        assert 2 < time.monotonic() - began < 5     # one deadline, in the status check; the command is not tried
        drv.domains.destroy("vm1")
        assert drv.domains.status("vm1") == DomainStatus("shutoff", "destroyed")
        drv.domains.destroy("vm2")
    assert qemu_pids(root) == []


def test_removed_monitor_socket_fails_fast_and_destroy_uses_signals(guest_build, root):
    pid = _started(guest_build, root)
    monitor = _monitor(root)
    os.unlink(monitor)
    with _driver(root) as drv:
        began = time.monotonic()
        assert drv.domains.status("vm1") == DomainStatus("running", "booted")
        assert time.monotonic() - began < 2
        assert any(monitor in w for w in drv.warnings)
        began = time.monotonic()
        with pytest.raises(BackendError, match=monitor):
            drv.domains.monitor("vm1", {"execute": "query-status"})
        assert time.monotonic() - began < 2
        began = time.monotonic()
        drv.domains.destroy("vm1")
        assert time.monotonic() - began < 8
        assert drv.domains.status("vm1") == DomainStatus("shutoff", "destroyed")
    assert not _alive(pid) and qemu_pids(root) == []


# -- concurrent runs ------------------------------------------------------------------------
RACING_START = r"""
import os, sys, time
from ansible_collections.virtops.qemu.plugins.module_utils.driver.connect import open_driver
from ansible_collections.virtops.qemu.plugins.module_utils.errors import Conflict
root, go = sys.argv[1], sys.argv[2]
with open_driver(f"qemu:///embed?root={root}") as drv:
    while not os.path.exists(go):
        time.sleep(0.001)
    try:
        drv.domains.start("vm1")
        print("started")
    except Conflict:
        print("conflict")
"""


def test_concurrent_processes_start_one_qemu(guest_build, root):
    with _driver(root) as drv:
        drv.domains.define(_xml(guest_build, root))
    go = root / "go"
    runs = [_python(RACING_START, str(root), str(go)) for _run in range(3)]
    time.sleep(1.0)     # every run has opened the driver and waits
    go.touch()
    outcomes = []
    for run in runs:
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
        outcomes.append(out.strip())
    assert sorted(outcomes) == ["conflict", "conflict", "started"]
    assert len(qemu_pids(root)) == 1
    with _driver(root) as drv:
        assert drv.domains.status("vm1") == DomainStatus("running", "booted")
        drv.domains.destroy("vm1")
    assert qemu_pids(root) == []
