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

from ansible_collections.virtops.qemu.plugins.module_utils.driver.hosttools import run
from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError

QEMU_IMG = "qemu-img"


# -- qemu-img -------------------------------------------------------------------
def info(filename: str) -> dict:
    """``qemu-img info`` of an image; -U reads one a running guest holds open."""
    text = run([QEMU_IMG, "info", "-U", "--output=json", filename], f"read image {filename}")
    return json.loads(text)


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
