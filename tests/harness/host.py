"""Host preparation for libvirtd and QEMU: the accounts and directories.

Debian's ``libvirt-daemon-system`` creates these in its maintainer scripts,
but it also enables and starts libvirtd in the host's network namespace, so
the demo and the tests install ``libvirt-daemon`` alone and prepare the rest
here, the way that package does:

- group ``kvm``, group ``libvirt-qemu``;
- system user ``libvirt-qemu`` (home /var/lib/libvirt, no login), primary
  group ``kvm``, member of ``libvirt-qemu``: libvirt 9 as built by Debian runs
  QEMU as ``libvirt-qemu:libvirt-qemu`` and exits at start-up without them;
- the directories of ``DIRECTORIES``, with the owners and modes Debian gives;
- ``/dev/kvm`` owned by group ``kvm``, mode 0660, as Debian's udev rules set
  it: where the QEMU user cannot open it, libvirt 9 finds its cached QEMU
  capabilities (probed with KVM) stale on every call and probes QEMU again,
  which makes each ``virsh`` call take half a minute or more.

Only what is missing is created; nothing existing is removed.
``tools/setup`` runs ``python3 -m harness.host`` (with tests/ on the path),
and the harness calls ``prepare_host()`` before it starts a libvirtd.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

QEMU_USER = "libvirt-qemu"
QEMU_GROUP = "libvirt-qemu"
KVM_GROUP = "kvm"
# A throwaway host view (harness.fresh) points this at a stand-in file.
KVM_DEVICE_VARIABLE = "VIRTOPS_KVM_DEVICE"
KVM_DEVICE = Path(os.environ.get(KVM_DEVICE_VARIABLE, "/dev/kvm"))
QEMU_HOME = "/var/lib/libvirt"
# The ids Debian allocates to libvirt-qemu, taken when free.
DEBIAN_QEMU_ID = 64055
USERS = (QEMU_USER,)
GROUPS = (KVM_GROUP, QEMU_GROUP)


@dataclass(frozen=True)
class Directory:
    path: Path
    mode: int
    owner: str = "root"
    group: str = "root"


def _qemu_dir(path: str) -> Directory:
    return Directory(Path(path), 0o750, QEMU_USER, QEMU_GROUP)


DIRECTORIES = (
    Directory(Path("/etc/libvirt"), 0o755),
    Directory(Path("/etc/libvirt/qemu"), 0o755),
    Directory(Path("/var/lib/libvirt"), 0o755),
    Directory(Path("/var/lib/libvirt/boot"), 0o711),
    Directory(Path("/var/lib/libvirt/images"), 0o711),
    _qemu_dir("/var/lib/libvirt/qemu"),
    _qemu_dir("/var/lib/libvirt/qemu/channel"),
    _qemu_dir("/var/lib/libvirt/qemu/channel/target"),
    Directory(Path("/var/cache/libvirt"), 0o711),
    Directory(Path("/var/cache/libvirt/qemu"), 0o711),
    Directory(Path("/var/log/libvirt"), 0o755),
    Directory(Path("/var/log/libvirt/qemu"), 0o755),
    Directory(Path("/run/libvirt"), 0o755),
)


def prepare_host() -> list[str]:
    """Create the missing accounts and directories; return what was done."""
    done: list[str] = []
    for group in GROUPS:
        done += _ensure_group(group, DEBIAN_QEMU_ID if group == QEMU_GROUP else None)
    done += _ensure_qemu_user()
    for group in GROUPS:
        done += _ensure_member(QEMU_USER, group)
    for directory in DIRECTORIES:
        done += _ensure_directory(directory)
    done += _ensure_kvm_device()
    return done


# -- accounts ---------------------------------------------------------------

def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _ensure_group(name: str, gid: int | None) -> list[str]:
    if _group_exists(name):
        return []
    argv = ["groupadd", "--system"]
    if gid is not None and _gid_free(gid):
        argv += ["--gid", str(gid)]
    _run(argv + [name])
    return [f"created group {name}"]


def _gid_free(gid: int) -> bool:
    try:
        grp.getgrgid(gid)
    except KeyError:
        return True
    return False


def _ensure_qemu_user() -> list[str]:
    if _user_exists(QEMU_USER):
        return []
    argv = ["useradd", "--system", "--gid", KVM_GROUP, "--no-create-home", "--home-dir", QEMU_HOME,
            "--shell", "/usr/sbin/nologin", "--comment", "Libvirt Qemu"]
    if _uid_free(DEBIAN_QEMU_ID):
        argv += ["--uid", str(DEBIAN_QEMU_ID)]
    _run(argv + [QEMU_USER])
    return [f"created user {QEMU_USER}"]


def _uid_free(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return True
    return False


def _ensure_member(user: str, group: str) -> list[str]:
    entry = grp.getgrnam(group)
    if pwd.getpwnam(user).pw_gid == entry.gr_gid or user in entry.gr_mem:
        return []
    _run(["usermod", "--append", "--groups", group, user])
    return [f"added user {user} to group {group}"]


# -- directories ------------------------------------------------------------

def _ensure_directory(directory: Directory) -> list[str]:
    if directory.path.is_dir():
        return []
    directory.path.mkdir(parents=True)
    # mkdir's mode is filtered by the umask; chmod is not.
    directory.path.chmod(directory.mode)
    os.chown(directory.path, pwd.getpwnam(directory.owner).pw_uid, grp.getgrnam(directory.group).gr_gid)
    return [f"created {directory.path} ({directory.owner}:{directory.group} {directory.mode:o})"]


def _ensure_kvm_device() -> list[str]:
    try:
        info = KVM_DEVICE.stat()
    except FileNotFoundError:
        return []
    gid = grp.getgrnam(KVM_GROUP).gr_gid
    if info.st_gid == gid and info.st_mode & 0o060 == 0o060:
        return []
    os.chown(KVM_DEVICE, -1, gid)
    KVM_DEVICE.chmod(stat.S_IMODE(info.st_mode) | 0o060)     # add group rw; take nothing away
    return [f"gave {KVM_DEVICE} to group {KVM_GROUP} with read and write"]


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv!r} failed ({proc.returncode}): {proc.stderr.strip()}")


def main() -> int:
    if os.geteuid() != 0:
        print("host: preparing the host for libvirtd needs root", file=sys.stderr)
        return 1
    for change in prepare_host():
        print(f"host: {change}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
