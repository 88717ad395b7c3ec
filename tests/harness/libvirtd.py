"""A libvirtd for the tests: reuse a running one, or start one privately.

When no libvirtd answers on qemu:///system, ``Libvirtd.start()`` starts
``virtlogd -d`` (unless it runs already) and ``libvirtd -d`` inside a fresh
network namespace, so every bridge, tap, dnsmasq or NAT rule libvirtd makes
lives there. ``stop()`` ends exactly the daemons it started, sweeps whatever
is left in the namespace and deletes it.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from .guest import Guest

URI = "qemu:///system"
QEMU_USER = "libvirt-qemu"
QEMU_GROUP = "kvm"
RUN_DIRS = (Path("/var/log/libvirt"), Path("/var/run/libvirt"))
LIBVIRTD_PIDFILE = Path("/var/run/libvirtd.pid")
VIRTLOGD_PIDFILE = Path("/var/run/virtlogd.pid")
VIRTLOGD_SOCKET = Path("/var/run/libvirt/virtlogd-sock")
NETNS_DIR = Path("/run/netns")


class VirshError(RuntimeError):
    pass


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


def answers(uri: str = URI) -> bool:
    try:
        virsh("version", uri=uri, timeout=10)
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
    def start(cls) -> "Libvirtd":
        ensure_host_setup()
        daemon = cls()
        if answers(daemon.uri):
            return daemon
        try:
            daemon._start_private()
        except BaseException:
            daemon.stop()
            raise
        return daemon

    def _start_private(self) -> None:
        self._netns_dir_was_mount = _is_mountpoint(NETNS_DIR)
        name = f"virtops-test-{secrets.token_hex(4)}"
        _run(["ip", "netns", "add", name])
        self.netns = name
        _run(["ip", "-n", name, "link", "set", "lo", "up"])
        if not _virtlogd_running():
            _run(["virtlogd", "-d"])
            self.started["virtlogd"] = _wait_pidfile(VIRTLOGD_PIDFILE,
                                                     "virtlogd")
        _run(["ip", "netns", "exec", name, "libvirtd", "-d"])
        self.started["libvirtd"] = _wait_pidfile(LIBVIRTD_PIDFILE,
                                                 "libvirtd")
        _wait(lambda: answers(self.uri), 60, "libvirtd to answer")

    def stop(self) -> None:
        """Stop what start() started; a reused daemon is left alone."""
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


# -- host preparation -------------------------------------------------------

def ensure_host_setup() -> None:
    """Create the dirs, group and user libvirtd/QEMU need, if missing."""
    for path in RUN_DIRS:
        path.mkdir(mode=0o755, parents=True, exist_ok=True)
    if _run(["getent", "group", QEMU_GROUP], check=False).returncode:
        _run(["groupadd", "--system", QEMU_GROUP])
    if _run(["getent", "passwd", QEMU_USER], check=False).returncode:
        _run(["useradd", "--system", "--gid", QEMU_GROUP, "--no-create-home",
              "--home-dir", "/var/lib/libvirt", "--shell", "/usr/sbin/nologin",
              QEMU_USER])


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
