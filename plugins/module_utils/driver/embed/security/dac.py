# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The DAC security manager of the embedded driver: file ownership for QEMU's user.

With ``dynamic_ownership = 1`` the files a domain uses (disk images, kernel,
initrd, dtb, NVRAM, file-backed serial devices) are given to the QEMU user
and group at start and given back at stop.  With ``remember_owner = 1`` the
original owner is kept in extended attributes of the file, as libvirt keeps
it (``trusted.libvirt.security.dac``, a reference count in ``ref_dac`` for
files several domains use, and the boot they belong to in
``timestamp_dac``: attributes left by an earlier boot are stale); without
it, files go back to root:root as libvirt does.  Read-only and shareable
disks are given to QEMU but never taken back: other domains may still use
them.  A ``<seclabel model='dac' relabel='no'/>`` of the domain or of a
disk source keeps its hands off; a static label of a disk gives the file to
that owner.  Private to the collection.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError, InvalidInput, host_error
from ansible_collections.virtops.qemu.plugins.module_utils.model import seclabel

XATTR_OWNER = "trusted.libvirt.security.dac"
XATTR_REFS = "trusted.libvirt.security.ref_dac"
XATTR_STAMP = "trusted.libvirt.security.timestamp_dac"
BOOT_ID = "/proc/sys/kernel/random/boot_id"


@dataclass(frozen=True)
class Owner:
    uid: int
    gid: int

    @property
    def label(self) -> str:
        return f"+{self.uid}:+{self.gid}"


@dataclass(frozen=True)
class LabelledFile:
    path: str
    owner: Owner
    restore: bool       # given back at stop (False for read-only and shareable disks)
    create: bool = False    # a serial log: made empty if missing, as QEMU may not write its directory


def parse_label(text: str, option: str) -> Owner:
    """The owner a DAC label (libvirt's ``+UID:+GID`` or ``USER:GROUP``) names."""
    return Owner(*seclabel.parse_dac_label(text, option))


def domain_files(live, nvram_default: str, owner: Owner) -> list[LabelledFile]:
    """Every file the domain's QEMU opens that DAC gives to ``owner``, in the order libvirt labels them."""
    files = []
    for disk in live.findall("devices/disk"):
        found = _disk_file(disk, owner)
        if found is not None:
            files.append(found)
    for tag in ("kernel", "initrd", "dtb"):
        path = (live.findtext(f"os/{tag}") or "").strip()
        if path:
            files.append(LabelledFile(path, owner, True))
    loader = live.find("os/loader")
    if loader is not None and loader.get("readonly") == "yes":
        nvram = (live.findtext("os/nvram") or "").strip() or nvram_default
        files.append(LabelledFile(nvram, owner, True))
    for device in live.findall("devices/serial") + live.findall("devices/console"):
        source = device.find("source")
        if device.get("type") == "file" and source is not None and source.get("path"):
            files.append(LabelledFile(source.get("path"), owner, True, create=True))
    return _unique(files)


def _disk_file(disk, owner: Owner) -> LabelledFile | None:
    source = disk.find("source")
    if disk.get("type", "file") not in ("file", "block") or source is None:
        return None
    path = source.get("file") or source.get("dev")
    if not path:
        return None
    label = source.find("seclabel[@model='dac']")
    if label is None:
        label = source.find("seclabel")
    if label is not None and label.get("relabel") == "no":
        return None
    if label is not None and (label.findtext("label") or "").strip():
        owner = parse_label(label.findtext("label"), "devices/disk/source/seclabel/label")
    shared = disk.find("readonly") is not None or disk.find("shareable") is not None
    return LabelledFile(path, owner, not shared)


def _unique(files: list[LabelledFile]) -> list[LabelledFile]:
    seen, out = set(), []
    for item in files:
        if item.path not in seen:
            seen.add(item.path)
            out.append(item)
    return out


def boot_id() -> str:
    try:
        with open(BOOT_ID, encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def set_owner(item: LabelledFile, remember: bool) -> None:
    """Give a file to QEMU's owner, remembering who had it (once, however many domains use it)."""
    path = item.path
    if item.create and not os.path.exists(path):
        _create_empty(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if not path.startswith("/dev/"):
            return      # QEMU creates what it needs (a serial log); the file it creates is its own
        raise InvalidInput(f"{path} does not exist", "devices") from None
    except OSError as exc:
        raise host_error(exc, "read the owner of", path) from exc
    if remember and item.restore:
        _remember(path, Owner(info.st_uid, info.st_gid))
    if (info.st_uid, info.st_gid) != (item.owner.uid, item.owner.gid):
        _chown(path, item.owner)


def restore_owner(item: LabelledFile, remember: bool) -> None:
    """Give a file back: to the remembered owner, or to root:root as libvirt does without remember_owner."""
    if not item.restore or not os.path.exists(item.path):
        return
    original = Owner(0, 0)
    if remember:
        recalled = _recall(item.path)
        if recalled is False:
            return      # another domain still uses it
        if recalled is not None:
            original = recalled
    _chown(item.path, original)


def remembered_owner(path: str) -> Owner | None:
    """The owner kept in the file's attributes, None when none is kept (or from an earlier boot)."""
    if _get(path, XATTR_STAMP) != boot_id():
        return None
    text = _get(path, XATTR_OWNER)
    return parse_label(text, path) if text else None


def _remember(path: str, current: Owner) -> None:
    refs = int(_get(path, XATTR_REFS) or 0) if _get(path, XATTR_STAMP) == boot_id() else 0
    if refs == 0:
        _set(path, XATTR_OWNER, current.label)
        _set(path, XATTR_STAMP, boot_id())
    _set(path, XATTR_REFS, str(refs + 1))


def _recall(path: str):
    """The remembered owner once the last user lets go; False while others hold it; None if unknown."""
    if _get(path, XATTR_STAMP) != boot_id():
        return None
    refs = int(_get(path, XATTR_REFS) or 1) - 1
    if refs > 0:
        _set(path, XATTR_REFS, str(refs))
        return False
    owner = remembered_owner(path)
    for name in (XATTR_OWNER, XATTR_REFS, XATTR_STAMP):
        _remove(path, name)
    return owner


def _create_empty(path: str) -> None:
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600))
    except OSError as exc:
        raise host_error(exc, "create", path) from exc


def _chown(path: str, owner: Owner) -> None:
    try:
        os.chown(path, owner.uid, owner.gid)
    except OSError as exc:
        raise host_error(exc, f"give {owner.label} ownership of", path) from exc


def _get(path: str, name: str) -> str | None:
    try:
        return os.getxattr(path, name).decode()
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP, errno.ENOENT):
            return None
        raise host_error(exc, f"read attribute {name} of", path) from exc


def _set(path: str, name: str, value: str) -> None:
    try:
        os.setxattr(path, name, value.encode())
    except OSError as exc:
        if exc.errno == errno.ENOTSUP:
            return      # a file system without extended attributes: nothing is remembered, as in libvirt
        raise BackendError(f"cannot remember the owner of {path} ({name}): {exc.strerror}") from exc


def _remove(path: str, name: str) -> None:
    try:
        os.removexattr(path, name)
    except OSError:
        pass
