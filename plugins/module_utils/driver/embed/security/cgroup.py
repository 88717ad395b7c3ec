# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The device ACL of a domain: a cgroup of the v1 ``devices`` controller.

QEMU is placed, before it executes, in a cgroup of its own in the
controller's hierarchy (``/virtops/embed-<root hash>/<name>``) whose list
denies every device but ``cgroup_device_acl`` (libvirt's default list when
unset), the domain's own block and character devices, the pty devices of
its pty chardevs and /dev/net/tun for its taps.  The kernel checks the list
when a device node is opened, so a device QEMU opens later (a hot-plugged
disk) is denied unless allowed.  The cgroup is removed when the domain stops.

The hierarchy is worked on through a directory descriptor of its root.  A
mount namespace that does not show the controller (``ip netns exec``
mounts a /sys of its own, without cgroups) gets one from a helper process
that mounts the controller in a private mount namespace and hands the
directory over: nothing is mounted where anyone else can see it, and the
mount goes with the last descriptor.  The status record keeps the cgroup's
path within the hierarchy, so any run, in any namespace, can remove it.

Where the host has only cgroup v2 (device filters are eBPF programs there)
or no devices controller, ``open_hierarchy`` returns None and domains run
without a device ACL; the driver says so in a warning.  Private to the
collection.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import queue
import socket
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError, host_error

# libvirt's default cgroup_device_acl.
DEFAULT_ACL = ("/dev/null", "/dev/full", "/dev/zero", "/dev/random", "/dev/urandom", "/dev/ptmx",
               "/dev/kvm", "/dev/userfaultfd")
PTY_MAJOR = 136
TUN = "/dev/net/tun"
MOUNTS = "/proc/self/mounts"
CGROUPS = "/proc/cgroups"
# The top of the driver's cgroups in the hierarchy; a domain's is TOP/embed-<root hash>/<name>.
TOP = "virtops"
# Where the helper mounts the controller inside its own mount namespace (present wherever sysfs is).
PRIVATE_MOUNT = "/sys/fs/cgroup"
_CLONE_NEWNS = 0x00020000
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REC, _MS_PRIVATE = 0x2, 0x4, 0x8, 0x4000, 0x40000
T = TypeVar("T")


@dataclass(frozen=True)
class DeviceRule:
    kind: str       # "c" or "b"
    major: int
    minor: int | None   # None: every minor ("*")
    access: str     # "rw" or "r"

    def line(self) -> str:
        minor = "*" if self.minor is None else str(self.minor)
        return f"{self.kind} {self.major}:{minor} {self.access}"


def controller_mount(mounts_file: str = MOUNTS) -> str | None:
    """Where the cgroup v1 devices controller is mounted, None when the host has none."""
    try:
        with open(mounts_file, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) >= 4 and fields[2] == "cgroup" and "devices" in fields[3].split(","):
            return fields[1]
    return None


def host_has_controller(cgroups_file: str = CGROUPS) -> bool:
    """Whether the kernel has the devices controller in a cgroup v1 hierarchy, wherever that is mounted."""
    try:
        with open(cgroups_file, encoding="ascii") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return False
    for line in lines:
        fields = line.split()
        if len(fields) == 4 and fields[0] == "devices":
            return fields[1] != "0" and fields[3] == "1"     # hierarchy 0: not on a v1 hierarchy
    return False


def open_hierarchy() -> int | None:
    """A directory descriptor of the devices hierarchy's root; None when the host has no v1 devices controller."""
    mount = controller_mount()
    if mount is not None:
        try:
            return os.open(mount, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise host_error(exc, "open the cgroup devices controller at", mount) from exc
    if not host_has_controller():
        return None
    return _mounted_privately()


def _mounted_privately() -> int:
    """The hierarchy's root, mounted by a helper process in a mount namespace of its own."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pid = os.fork()
    if pid == 0:
        ours.close()
        _helper(theirs)
    theirs.close()
    try:
        message, fds, _flags, _address = socket.recv_fds(ours, 4096, 1)
    finally:
        ours.close()
        os.waitpid(pid, 0)
    if not fds:
        raise BackendError("the cgroup devices controller is not mounted in this mount namespace and cannot be "
                           f"mounted in a private one: {message.decode(errors='replace') or 'the helper died'}")
    return fds[0]


def _helper(channel: socket.socket) -> None:
    """In the forked helper: mount the controller privately, send its root, exit (never returns)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        _libc_call(libc.unshare(_CLONE_NEWNS), "unshare the mount namespace")
        _libc_call(libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None), "make the mounts private")
        _libc_call(libc.mount(b"cgroup", PRIVATE_MOUNT.encode(), b"cgroup", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC,
                              b"devices"), f"mount the devices controller on {PRIVATE_MOUNT}")
        root = os.open(PRIVATE_MOUNT, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        socket.send_fds(channel, [b"root"], [root])
    except BaseException as exc:    # noqa: BLE001 - whatever it is, the parent must hear of it
        channel.sendall(str(exc).encode(errors="replace"))
    finally:
        os._exit(0)


def _libc_call(result: int, what: str) -> None:
    if result != 0:
        raise OSError(ctypes.get_errno(), f"cannot {what}: {os.strerror(ctypes.get_errno())}")


def rule_for(path: str, access: str = "rw") -> DeviceRule | None:
    """The rule that lets ``path`` be opened; None when it is no device node (or does not exist)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    if stat.S_ISCHR(info.st_mode):
        kind = "c"
    elif stat.S_ISBLK(info.st_mode):
        kind = "b"
    else:
        return None
    return DeviceRule(kind, os.major(info.st_rdev), os.minor(info.st_rdev), access)


def domain_rules(live, acl: list[str] | None) -> list[DeviceRule]:
    """The rules of a domain: the ACL, its disks and devices, ptys, the tun device for taps."""
    rules = [rule_for(path) for path in (DEFAULT_ACL if acl is None else acl)]
    for disk in live.findall("devices/disk"):
        source = disk.find("source")
        if source is not None and (source.get("dev") or source.get("file")):
            access = "r" if disk.find("readonly") is not None else "rw"
            rules.append(rule_for(source.get("dev") or source.get("file"), access))
    for device in live.findall("devices/serial") + live.findall("devices/console") + live.findall("devices/parallel"):
        source = device.find("source")
        if device.get("type") == "dev" and source is not None and source.get("path"):
            rules.append(rule_for(source.get("path")))
        if device.get("type") == "pty":
            rules.append(DeviceRule("c", PTY_MAJOR, None, "rw"))
    if live.find("devices/interface[@type='bridge']") is not None \
            or live.find("devices/interface[@type='network']") is not None:
        rules.append(rule_for(TUN))
    return _unique([r for r in rules if r is not None])


def _unique(rules: list[DeviceRule]) -> list[DeviceRule]:
    out: list[DeviceRule] = []
    for rule in rules:
        if rule not in out:
            out.append(rule)
    return out


class DomainCgroup:
    """The devices cgroup of one domain of one embed root, reached through the hierarchy's root ``hierarchy``."""

    def __init__(self, hierarchy: int, path: str):
        self.hierarchy = hierarchy
        self.path = path.strip("/")       # within the hierarchy: virtops/embed-<hash>/<name>

    @classmethod
    def of(cls, hierarchy: int, root: str, name: str) -> DomainCgroup:
        tag = hashlib.sha256(root.encode()).hexdigest()[:12]
        return cls(hierarchy, f"{TOP}/embed-{tag}/{name}")

    @classmethod
    def recorded(cls, hierarchy: int, recorded: str) -> DomainCgroup:
        """The cgroup a status record names; older records hold the path where the controller was mounted."""
        parts = recorded.strip("/").split("/")
        return cls(hierarchy, "/".join(parts[parts.index(TOP):]) if TOP in parts else recorded)

    @property
    def name(self) -> str:
        """The path as /proc/PID/cgroup shows it."""
        return f"/{self.path}"

    def create(self, rules: list[DeviceRule]) -> None:
        self.remove()
        try:
            try:
                self._make_dirs()
            except FileNotFoundError:
                self._make_dirs()       # the root's cgroup went with its last domain meanwhile
            self._write("devices.deny", "a")
            for rule in rules:
                self._write("devices.allow", rule.line())
        except OSError as exc:
            raise host_error(exc, "set up the device cgroup", self.name) from exc

    def open_tasks(self) -> int:
        """A descriptor of its ``tasks``, for the thread that spawns QEMU to enter (Spawner)."""
        return _open_tasks(self.hierarchy, self.path, self.name)

    def allowed(self) -> list[str]:
        fd = os.open(f"{self.path}/devices.list", os.O_RDONLY, dir_fd=self.hierarchy)
        with os.fdopen(fd, encoding="ascii") as handle:
            return handle.read().split("\n")[:-1]

    def remove(self, timeout: float = 5.0) -> None:
        """Remove the cgroup once its processes are gone (a killed QEMU leaves it a moment later)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                os.rmdir(self.path, dir_fd=self.hierarchy)
                break
            except FileNotFoundError:
                break
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise BackendError(f"cannot remove the device cgroup {self.name}: {exc.strerror}") from exc
                time.sleep(0.05)
        try:
            os.rmdir(os.path.dirname(self.path), dir_fd=self.hierarchy)     # the root's goes with its last domain
        except OSError:
            pass

    def _make_dirs(self) -> None:
        parts = self.path.split("/")
        for depth in range(1, len(parts) + 1):
            try:
                os.mkdir("/".join(parts[:depth]), 0o755, dir_fd=self.hierarchy)
            except FileExistsError:
                continue

    def _write(self, name: str, text: str) -> None:
        fd = os.open(f"{self.path}/{name}", os.O_WRONLY, dir_fd=self.hierarchy)
        try:
            os.write(fd, text.encode("ascii"))
        finally:
            os.close(fd)


def _open_tasks(hierarchy: int, path: str, name: str) -> int:
    try:
        return os.open(f"{path}/tasks", os.O_WRONLY | os.O_CLOEXEC, dir_fd=hierarchy)
    except OSError as exc:
        raise host_error(exc, "open the device cgroup", name) from exc


class Spawner:
    """A thread that makes a domain's device cgroup, enters it and spawns QEMU from there.

    A process starts in the cgroup of the thread that forks it, so QEMU is in
    its device cgroup before it executes, with no code of ours in the child
    (cgroup v1 moves single threads; the others stay put).  The thread enters
    by writing 0, itself, to ``tasks``: a move of the writing thread is the one
    the kernel makes without its global threadgroup lock, whose taking waits
    for an RCU grace period (8 ms or more here, against 0.2 ms).  Meanwhile
    the caller goes on with the start (labels, the status record, the command
    line).  The thread ends after the spawn, so no thread of ours stays in the
    cgroup or has to move back.  The Spawner owns ``group``'s hierarchy
    descriptor.
    """

    def __init__(self, group: DomainCgroup, rules: list[DeviceRule]):
        self.group = group
        self._jobs: queue.Queue = queue.Queue(maxsize=1)
        self._results: queue.Queue = queue.Queue(maxsize=1)
        self._ended = False
        self._thread = threading.Thread(target=self._serve, args=(rules,), name="virtops-spawner", daemon=True)
        self._thread.start()

    def run(self, job: Callable[[], T]) -> T:
        """``job()`` run in the cgroup (it forks QEMU); its result, or its exception raised here."""
        self._jobs.put(job)
        result, error = self._results.get()
        self._end()
        if error is not None:
            raise error
        return result

    def cancel(self) -> None:
        """End the thread without spawning and remove the cgroup it made; nothing after ``run``."""
        if self._ended:
            return
        self._jobs.put(None)
        self._thread.join()
        try:
            self.group.remove()
        except BackendError:
            pass    # an empty cgroup left behind; the domain's next start removes it first
        self._end()

    def _end(self) -> None:
        self._ended = True
        self._thread.join()
        os.close(self.group.hierarchy)
        self.group.hierarchy = -1

    def _serve(self, rules: list[DeviceRule]) -> None:
        refused: Exception | None = None
        try:
            self.group.create(rules)
            tasks = self.group.open_tasks()
            try:
                os.write(tasks, b"0")
            except OSError as exc:
                raise BackendError(f"cannot enter the device cgroup to start QEMU: {exc.strerror}") from exc
            finally:
                os.close(tasks)
        except Exception as exc:    # raised to the caller by run, which must never wait in vain
            refused = exc
        job = self._jobs.get()
        if job is None:
            return
        if refused is not None:
            self._results.put((None, refused))
            return
        try:
            self._results.put((job(), None))
        except BaseException as exc:    # handed to the caller, raised there
            self._results.put((None, exc))
