# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Host tools of the embedded storage driver: qemu-img, mount, mkfs, iscsi-ls, as argv lists.

libvirt's storage driver makes file volumes with ``qemu-img`` (create,
convert for clones, resize) and mounts fs pools with ``mount``; so does
this one.  Every failure is a BackendError carrying the tool's own words.
Private to the collection.
"""

from __future__ import annotations

import json
import os
import re
import struct

from ansible_collections.virtops.qemu.plugins.module_utils.driver.hosttools import run
from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError

QEMU_IMG = "qemu-img"


# -- qemu-img -------------------------------------------------------------------
def info(filename: str) -> dict:
    """``qemu-img info`` of an image, its members the driver reads: format, virtual-size, the backing file.

    A qcow2 image's header holds them, and is read here as libvirt's storage
    driver reads it, without starting qemu-img; any other image is asked of
    ``qemu-img info``, whose -U reads one a running guest holds open.
    """
    found = qcow2_info(filename)
    if found is not None:
        return found
    text = run([QEMU_IMG, "info", "-U", "--output=json", filename], f"read image {filename}")
    return json.loads(text)


# The qcow2 header (QEMU's docs/interop/qcow2.txt), big-endian.
QCOW2_MAGIC = b"QFI\xfb"
QCOW2_HEADER = struct.Struct(">4sIQIIQ")       # magic, version, backing file offset and size, cluster bits, size
QCOW2_V3_FIELDS = struct.Struct(">Q20xI")      # at 72: incompatible features ... header length
QCOW2_V3_MIN_HEADER = 104
QCOW2_PROBE_SIZE = 112                         # qemu's probe takes a file this long as qcow2, no shorter one
QCOW2_KNOWN_INCOMPATIBLE = 0x1F                # dirty, corrupt, external data file, compression type, extended L2
QCOW2_EXTENSION = struct.Struct(">II")         # type, length; the data follows, padded to 8 bytes
QCOW2_BACKING_FORMAT = 0xE2792ACA


def qcow2_info(filename: str) -> dict | None:
    """What qemu-img info says of a qcow2 image, from its header; None for any other file.

    None too for a header qemu-img would judge otherwise (unknown incompatible
    features, a backing file named by protocol), so that qemu-img answers.
    """
    try:
        with open(filename, "rb") as image:
            header = image.read(QCOW2_PROBE_SIZE)
            if len(header) < QCOW2_PROBE_SIZE:
                return None
            magic, version, backing_offset, backing_size, cluster_bits, size = QCOW2_HEADER.unpack_from(header)
            if magic != QCOW2_MAGIC or version not in (2, 3) or not 9 <= cluster_bits <= 21:
                return None
            first_cluster = header + image.read((1 << cluster_bits) - len(header))
    except OSError:
        return None     # qemu-img names the problem
    extensions_at = 72
    if version == 3:
        incompatible, extensions_at = QCOW2_V3_FIELDS.unpack_from(header, 72)
        if incompatible & ~QCOW2_KNOWN_INCOMPATIBLE or extensions_at < QCOW2_V3_MIN_HEADER:
            return None
    backing_format = _qcow2_backing_format(first_cluster, extensions_at)
    found: dict = {"filename": filename, "format": "qcow2", "virtual-size": size}
    if backing_offset:
        backing = first_cluster[backing_offset:backing_offset + backing_size]
        if len(backing) != backing_size or not backing_size:
            return None
        name = backing.decode("utf-8", "surrogateescape")
        if not name.startswith("/") and ":" in name.split("/", 1)[0]:
            return None     # a protocol ("nbd:", "json:"): qemu-img resolves it its own way
        found["backing-filename"] = name
        found["full-backing-filename"] = os.path.join(os.path.dirname(filename), name)
        if backing_format is not None:
            found["backing-filename-format"] = backing_format
    return found


def _qcow2_backing_format(first_cluster: bytes, offset: int) -> str | None:
    """The backing format named by a header extension, if any (the extensions end with a type 0)."""
    while offset + QCOW2_EXTENSION.size <= len(first_cluster):
        kind, length = QCOW2_EXTENSION.unpack_from(first_cluster, offset)
        offset += QCOW2_EXTENSION.size
        if kind == 0:
            break
        if kind == QCOW2_BACKING_FORMAT:
            return first_cluster[offset:offset + length].decode("ascii", "replace")
        offset += (length + 7) & ~7
    return None


def create(path: str, fmt: str, capacity: int, backing: tuple[str, str] | None = None,
           preallocate: bool = False) -> None:
    argv = [QEMU_IMG, "create", "-q", "-f", fmt]
    if backing is not None:
        argv += ["-b", backing[0], "-F", backing[1]]
    if preallocate:
        argv += ["-o", "preallocation=falloc"]
    run(argv + [path, str(capacity)], f"create volume {path}")


def convert(source: str, source_format: str, path: str, fmt: str) -> None:
    run([QEMU_IMG, "convert", "-q", "-U", "-f", source_format, "-O", fmt, source, path],
        f"copy {source} to {path}")


def resize(path: str, fmt: str, capacity: int, shrink: bool) -> None:
    argv = [QEMU_IMG, "resize", "-q", "-f", fmt] + ["--shrink"] * shrink
    run(argv + [path, str(capacity)], f"resize volume {path}")


# -- filesystems ------------------------------------------------------------------
def mount_of(target: str) -> tuple[int, int] | None:
    """The device number (major, minor) mounted on ``target`` in this mount namespace, if any."""
    wanted = os.path.realpath(target)
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as handle:
            lines = handle.readlines()
    except OSError as exc:
        raise BackendError(f"cannot read the mount table: {exc.strerror}") from exc
    found = None
    for line in lines:
        fields = line.split()
        if len(fields) > 4 and _unescape(fields[4]) == wanted:
            major, minor = fields[2].split(":")
            found = (int(major), int(minor))       # the last mount on a point is the one seen
    return found


def _unescape(text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def device_number(device: str) -> tuple[int, int] | None:
    try:
        rdev = os.stat(device).st_rdev
    except OSError:
        return None
    return os.major(rdev), os.minor(rdev)


def mount(device: str, target: str, fstype: str | None) -> None:
    argv = ["mount"] + (["-t", fstype] if fstype and fstype != "auto" else []) + [device, target]
    run(argv, f"mount {device} on {target}", timeout=60)


def unmount(target: str) -> None:
    run(["umount", target], f"unmount {target}", timeout=60)


def mkfs(device: str, fstype: str) -> None:
    run([f"mkfs.{fstype}", "-F", "-q", device] if fstype.startswith("ext") else [f"mkfs.{fstype}", device],
        f"make a {fstype} filesystem on {device}")


# -- iSCSI (user space, libiscsi) ------------------------------------------------------
_LUN = re.compile(r"^\s*Lun:(\d+)\s+Type:(\S+)")


def iscsi_url(host: str, port: int, target: str, lun: int | None = None) -> str:
    address = f"[{host}]" if ":" in host else host
    return f"iscsi://{address}:{port}/{target}" + (f"/{lun}" if lun is not None else "")


def iscsi_luns(host: str, port: int, target: str, initiator: str) -> list[int]:
    """The disk LUNs of the target, by libiscsi's iscsi-ls (REPORT LUNS and INQUIRY)."""
    text = run(["iscsi-ls", "-s", "-i", initiator, iscsi_url(host, port, target)],
               f"list the LUNs of {target} on {host}:{port}", timeout=30)
    luns, ours = [], False
    for line in text.splitlines():
        if line.startswith("Target:"):
            ours = line.split()[0] == f"Target:{target}"
        found = _LUN.match(line)
        if ours and found and found.group(2) == "DIRECT_ACCESS":    # disks; LUN 0 is the controller
            luns.append(int(found.group(1)))
    return luns


def iscsi_capacity(host: str, port: int, target: str, initiator: str, lun: int) -> int:
    """The LUN's size in bytes, read by QEMU's own iSCSI client."""
    spec = {"driver": "iscsi", "transport": "tcp", "portal": f"{host}:{port}", "target": target,
            "lun": lun, "initiator-name": initiator}
    return int(info("json:" + json.dumps(spec)).get("virtual-size") or 0)
