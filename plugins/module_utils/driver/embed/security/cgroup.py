# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The device ACL of a domain: a cgroup of the v1 ``devices`` controller.

QEMU is placed, before it executes, in a cgroup of its own under the
controller's mount (``virtops/<root hash>/<name>``) whose list denies every
device but ``cgroup_device_acl`` (libvirt's default list when unset), the
domain's own block and character devices, the pty devices of its pty
chardevs and /dev/net/tun for its taps.  The kernel checks the list when a
device node is opened, so a device QEMU opens later (a hot-plugged disk) is
denied unless allowed.  The cgroup is removed when the domain stops.

Where the host has only cgroup v2 (device filters are eBPF programs there)
or no devices controller, ``controller_mount`` returns None and domains run
without a device ACL; the driver says so in a warning.  Private to the
collection.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from dataclasses import dataclass

from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError, host_error

# libvirt's default cgroup_device_acl.
DEFAULT_ACL = ("/dev/null", "/dev/full", "/dev/zero", "/dev/random", "/dev/urandom", "/dev/ptmx",
               "/dev/kvm", "/dev/userfaultfd")
PTY_MAJOR = 136
TUN = "/dev/net/tun"
MOUNTS = "/proc/self/mounts"


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
    """The devices cgroup of one domain of one embed root."""

    def __init__(self, mount: str, root: str, name: str):
        tag = hashlib.sha256(root.encode()).hexdigest()[:12]
        self.parent = os.path.join(mount, "virtops", f"embed-{tag}")
        self.path = os.path.join(self.parent, name)

    @classmethod
    def at(cls, path: str) -> DomainCgroup:
        group = cls.__new__(cls)
        group.parent, group.path = os.path.dirname(path), path
        return group

    def create(self, rules: list[DeviceRule]) -> None:
        self.remove()
        try:
            try:
                os.makedirs(self.path, 0o755)
            except FileNotFoundError:
                os.makedirs(self.path, 0o755)     # the root's cgroup went with its last domain meanwhile
            self._write("devices.deny", "a")
            for rule in rules:
                self._write("devices.allow", rule.line())
        except OSError as exc:
            raise host_error(exc, "set up the device cgroup", self.path) from exc

    def procs_file(self) -> str:
        return os.path.join(self.path, "cgroup.procs")

    def allowed(self) -> list[str]:
        with open(os.path.join(self.path, "devices.list"), encoding="ascii") as handle:
            return handle.read().split("\n")[:-1]

    def remove(self, timeout: float = 5.0) -> None:
        """Remove the cgroup once its processes are gone (a killed QEMU leaves it a moment later)."""
        deadline = time.monotonic() + timeout
        while os.path.isdir(self.path):
            try:
                os.rmdir(self.path)
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise BackendError(f"cannot remove the device cgroup {self.path}: {exc.strerror}") from exc
                time.sleep(0.05)
        try:
            os.rmdir(self.parent)     # the root's cgroup goes with its last domain
        except OSError:
            pass

    def _write(self, name: str, text: str) -> None:
        with open(os.path.join(self.path, name), "w", encoding="ascii") as handle:
            handle.write(text)


def join(procs_file: str) -> None:
    """Move the calling process into a cgroup (runs in the child, before QEMU executes)."""
    fd = os.open(procs_file, os.O_WRONLY)
    try:
        os.write(fd, b"0")      # 0: the writing process itself
    finally:
        os.close(fd)
