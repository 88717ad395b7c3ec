"""A libvirtd for the tests: reuse a running one, or start one privately.

When no libvirtd runs, ``Libvirtd.start()`` prepares the host
(harness.host), then starts ``virtlogd -d`` (unless it runs already) and
``libvirtd -d`` inside a fresh network namespace, so every bridge, tap,
dnsmasq or NAT rule libvirtd makes lives there. ``stop()`` ends exactly the
daemons it started, sweeps whatever is left in the namespace and deletes it.
A daemon that does not come up raises DaemonStartError, which ends with the
tail of the daemon's log.

Several test processes (pytest-xdist workers, or runs side by side) share
the daemons the harness started: SHARED_RECORD, under the lock SHARED_LOCK,
names them and the processes using them.  A process that finds it joins
the daemons, and ``stop()`` ends them only in the last one to leave.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from .guest import Guest
from .host import prepare_host

URI = "qemu:///system"
LIBVIRTD_PIDFILE = Path("/var/run/libvirtd.pid")
VIRTLOGD_PIDFILE = Path("/var/run/virtlogd.pid")
VIRTLOGD_SOCKET = Path("/var/run/libvirt/virtlogd-sock")
NETNS_DIR = Path("/run/netns")
LOG_DIR = Path("/var/log/libvirt")
LOG_TAIL_LINES = 20
SHARED_DIR = Path("/run/virtops-tests")
SHARED_LOCK = SHARED_DIR / "libvirtd.lock"
SHARED_RECORD = SHARED_DIR / "libvirtd.json"


class VirshError(RuntimeError):
    pass


class DaemonStartError(RuntimeError):
    """virtlogd or libvirtd did not come up; the message ends with its log's tail."""


def virsh(*args: str, uri: str = URI, check: bool = True,
          timeout: float = 60) -> str:
    """Run ``virsh -c URI ARGS``; return stdout, raise VirshError on failure."""
    argv = ["virsh", "-q", "-c", uri, *args]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise VirshError(f"{' '.join(argv)} failed ({proc.returncode}): "
                         f"{proc.stderr.strip()}")
    return proc.stdout


def answers(uri: str = URI, timeout: float = 10) -> bool:
    # `virsh uri` only opens the connection; `version` and `capabilities`
    # can wait for a QEMU capabilities probe.
    try:
        virsh("uri", uri=uri, timeout=timeout)
    except (VirshError, subprocess.TimeoutExpired):
        return False
    return True


@dataclass
class Libvirtd:
    uri: str = URI
    netns: str | None = None
    started: dict[str, int] = field(default_factory=dict)
    _netns_dir_was_mount: bool = True

    def virsh(self, *args: str, check: bool = True, timeout: float = 60
              ) -> str:
        return virsh(*args, uri=self.uri, check=check, timeout=timeout)

    @classmethod
    def start(cls) -> Libvirtd:
        with _shared_record() as record:
            daemon = cls._join(record) or cls._start_or_reuse()
            if daemon.started:
                users = [pid for pid in record.get("users", []) if _alive(pid)]
                record.clear()
                record.update(daemon._record(users + [os.getpid()]))
            return daemon

    @classmethod
    def _join(cls, record: dict) -> Libvirtd | None:
        """The daemons another test process started, if they still run."""
        pid = record.get("started", {}).get("libvirtd")
        if not pid or _pid_of(LIBVIRTD_PIDFILE, "libvirtd") != pid or not answers(record["uri"]):
            record.clear()
            return None
        return cls(uri=record["uri"], netns=record["netns"], started=dict(record["started"]),
                   _netns_dir_was_mount=record["netns_dir_was_mount"])

    @classmethod
    def _start_or_reuse(cls) -> Libvirtd:
        daemon = cls()
        if answers(daemon.uri):
            return daemon
        running = _pid_of(LIBVIRTD_PIDFILE, "libvirtd")
        if running:
            # a second libvirtd cannot take the pidfile: wait for this one
            with _explained("libvirtd"):
                _wait(lambda: _answers_while_alive(daemon.uri, running), 120, f"libvirtd (pid {running}) to answer")
            return daemon
        prepare_host()
        try:
            daemon._start_private()
        except BaseException:
            daemon._stop_daemons()
            raise
        return daemon

    def _record(self, users: list[int]) -> dict:
        return {"uri": self.uri, "netns": self.netns, "started": self.started,
                "netns_dir_was_mount": self._netns_dir_was_mount, "users": users}

    def _start_private(self) -> None:
        self._netns_dir_was_mount = _is_mountpoint(NETNS_DIR)
        name = f"virtops-test-{secrets.token_hex(4)}"
        _run(["ip", "netns", "add", name])
        self.netns = name
        _run(["ip", "-n", name, "link", "set", "lo", "up"])
        if not _virtlogd_running():
            self.started["virtlogd"] = _start_daemon(["virtlogd", "-d"], VIRTLOGD_PIDFILE, "virtlogd")
        pid = _start_daemon(["ip", "netns", "exec", name, "libvirtd", "-d"], LIBVIRTD_PIDFILE, "libvirtd")
        self.started["libvirtd"] = pid
        with _explained("libvirtd"):
            _wait(lambda: _answers_while_alive(self.uri, pid), 60, "libvirtd to answer")

    def stop(self) -> None:
        """Stop what start() started, unless other test processes still use it; a reused daemon is left alone."""
        if not self.started:
            return
        with _shared_record() as record:
            if record.get("started") == self.started:
                others = [pid for pid in record["users"] if pid != os.getpid() and _alive(pid)]
                if others:
                    record["users"] = others
                    self.started, self.netns = {}, None
                    return
                record.clear()
            self._stop_daemons()

    def _stop_daemons(self) -> None:
        if "libvirtd" in self.started:
            self._destroy_domains()
            _terminate(self.started.pop("libvirtd"))
        if self.netns:
            _sweep_netns(self.netns)
            _run(["ip", "netns", "delete", self.netns])
            self.netns = None
            self._unmount_netns_dir()
        if "virtlogd" in self.started:
            _terminate(self.started.pop("virtlogd"))

    def _destroy_domains(self) -> None:
        running = self.virsh("list", "--name", check=False).split()
        for name in running:
            self.virsh("destroy", name, check=False)

    def _unmount_netns_dir(self) -> None:
        # `ip netns add` bind-mounts /run/netns onto itself the first time.
        if (not self._netns_dir_was_mount and _is_mountpoint(NETNS_DIR)
                and not any(NETNS_DIR.iterdir())):
            _run(["umount", str(NETNS_DIR)])


@contextmanager
def _shared_record() -> Iterator[dict]:
    """SHARED_RECORD's content, locked; what the caller leaves in it is written back (nothing: removed)."""
    SHARED_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    with open(SHARED_LOCK, "a", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            record = json.loads(SHARED_RECORD.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            record = {}
        yield record
        if record:
            partial = SHARED_RECORD.with_suffix(".tmp")
            partial.write_text(json.dumps(record), encoding="utf-8")
            partial.replace(SHARED_RECORD)
        else:
            SHARED_RECORD.unlink(missing_ok=True)


def _is_mountpoint(path: Path) -> bool:
    # os.path.ismount misses a directory bind-mounted onto itself, and
    # mountinfo lists over-mounted (hidden) entries; mount ids tell the truth.
    try:
        return _mount_id(path) != _mount_id(path.parent)
    except FileNotFoundError:
        return False


def _mount_id(path: Path) -> int:
    fd = os.open(path, os.O_PATH)
    try:
        with open(f"/proc/self/fdinfo/{fd}", encoding="ascii") as info:
            for line in info:
                if line.startswith("mnt_id:"):
                    return int(line.split()[1])
    finally:
        os.close(fd)
    raise RuntimeError(f"no mnt_id for {path}")


# -- start-up --------------------------------------------------------------

def _start_daemon(argv: list[str], pidfile: Path, comm: str) -> int:
    with _explained(comm):
        _run(argv)
        return _wait_pidfile(pidfile, comm)


@contextmanager
def _explained(comm: str) -> Iterator[None]:
    """Turn a failed start into DaemonStartError carrying the daemon's own log."""
    try:
        yield
    except (RuntimeError, TimeoutError) as error:
        raise DaemonStartError(f"{comm} did not start: {error}\n{log_tail(comm)}") from error


def log_tail(comm: str, lines: int = LOG_TAIL_LINES) -> str:
    path = LOG_DIR / f"{comm}.log"
    try:
        text = path.read_text(errors="replace")
    except OSError as error:
        return f"(no log: {error})"
    tail = "\n".join(text.splitlines()[-lines:])
    return f"last {lines} lines of {path}:\n{tail}"


def _answers_while_alive(uri: str, pid: int) -> bool:
    if not _alive(pid):
        raise RuntimeError(f"pid {pid} exited")
    return answers(uri)


# -- processes --------------------------------------------------------------

def _run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{argv!r} failed ({proc.returncode}): "
                           f"{proc.stderr.strip()}")
    return proc


def _wait(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def _pid_of(pidfile: Path, comm: str) -> int | None:
    try:
        pid = int(pidfile.read_text().split()[0])
        actual = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError, IndexError):
        return None
    return pid if actual == comm else None


def _wait_pidfile(pidfile: Path, comm: str) -> int:
    return _wait(lambda: _pid_of(pidfile, comm), 30, f"{comm} pidfile")


def _virtlogd_running() -> bool:
    if _pid_of(VIRTLOGD_PIDFILE, "virtlogd"):
        return True
    with socket.socket(socket.AF_UNIX) as sock:
        try:
            sock.connect(str(VIRTLOGD_SOCKET))
        except OSError:
            return False
    return True


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1]
    except OSError:
        return False
    return state.split()[0] != "Z"


def _terminate(pid: int, timeout: float = 30) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
        _wait(lambda: not _alive(pid), timeout, f"pid {pid} to exit")
    except ProcessLookupError:
        return
    except TimeoutError:
        os.kill(pid, signal.SIGKILL)
        _wait(lambda: not _alive(pid), 10, f"pid {pid} to die")


def _sweep_netns(netns: str) -> None:
    """End processes left in our namespace (QEMU, dnsmasq our libvirtd ran)."""
    out = _run(["ip", "netns", "pids", netns], check=False).stdout
    for pid in (int(p) for p in out.split()):
        _terminate(pid, timeout=10)


# -- domain XML for the test guest ------------------------------------------

def domain_xml(name: str, guest: Guest, serial_log: str | os.PathLike,
               memory_mib: int = 256, extra_devices: str = "") -> str:
    """Libvirt XML booting ``guest`` directly under TCG, serial to a file."""
    return f"""<domain type='qemu'>
  <name>{escape(name)}</name>
  <memory unit='MiB'>{int(memory_mib)}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{escape(str(guest.kernel))}</kernel>
    <initrd>{escape(str(guest.initrd))}</initrd>
    <cmdline>{escape(guest.cmdline)}</cmdline>
  </os>
  <features>
    <acpi/>
  </features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <serial type='file'>
      <source path={quoteattr(str(serial_log))}/>
      <target port='0'/>
    </serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
{extra_devices}
  </devices>
</domain>
"""


def wait_for_line(path: str | os.PathLike, text: str,
                  timeout: float = 60) -> str:
    """Poll a serial log until ``text`` appears; return the log read so far.

    On timeout raise TimeoutError carrying the log's last lines.
    """
    path = Path(path)
    deadline = time.monotonic() + timeout
    content = ""
    while True:
        try:
            content = path.read_text(errors="replace")
        except FileNotFoundError:
            pass
        if text in content:
            return content
        if time.monotonic() >= deadline:
            tail = "\n".join(content.splitlines()[-30:])
            raise TimeoutError(f"{text!r} not in {path} after {timeout}s; "
                               f"log tail:\n{tail}")
        time.sleep(0.2)
