# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The SELinux (sVirt) manager of the embedded driver.

A dynamic label is the base process context (``system_u:system_r:svirt_t:s0``)
with a pair of MCS categories no other running domain of the root uses;
the image label is ``svirt_image_t`` at the same level.  Shareable disks get
``svirt_image_t:s0`` and read-only ones ``virt_content_t:s0``, which every
domain may use.  QEMU's process gets its context through
``/proc/self/attr/exec`` just before it executes; files get theirs through
the ``security.selinux`` attribute.  Private to the collection.
"""

from __future__ import annotations

import os
import random

from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError

SELINUXFS = "/sys/fs/selinux"
BASE_PROCESS = "system_u:system_r:svirt_t:s0"
IMAGE_TYPE = "system_u:object_r:svirt_image_t"
SHARED_IMAGE = "system_u:object_r:svirt_image_t:s0"
READONLY_IMAGE = "system_u:object_r:virt_content_t:s0"
CATEGORIES = 1024
XATTR = "security.selinux"


def available(selinuxfs: str = SELINUXFS) -> bool:
    """SELinux is enabled on this host: its file system is mounted."""
    return os.path.exists(os.path.join(selinuxfs, "enforce"))


def enforcing(selinuxfs: str = SELINUXFS) -> bool:
    try:
        with open(os.path.join(selinuxfs, "enforce"), encoding="ascii") as handle:
            return handle.read().strip() == "1"
    except OSError:
        return False


def mcs_of(label: str) -> str:
    """The categories of a context (``c12,c345``), "" when it has none."""
    parts = label.split(":")
    return parts[4] if len(parts) >= 5 else ""


def allocate_mcs(used: set[str], rng: random.Random | None = None) -> str:
    """Two distinct categories, lower first, as ``c<lo>,c<hi>``, not in ``used``."""
    rng = rng or random.SystemRandom()
    if len(used) >= CATEGORIES * (CATEGORIES - 1) // 2:
        raise BackendError("every SELinux MCS category pair is in use")
    while True:
        low, high = sorted(rng.sample(range(CATEGORIES), 2))
        pair = f"c{low},c{high}"
        if pair not in used:
            return pair


def dynamic_labels(used: set[str], base: str = BASE_PROCESS,
                   rng: random.Random | None = None) -> tuple[str, str]:
    """(process label, image label) of a domain with a dynamic label."""
    pair = allocate_mcs(used, rng)
    return f"{base}:{pair}", f"{IMAGE_TYPE}:{base.split(':')[3]}:{pair}"


def disk_label(image_label: str, readonly: bool, shareable: bool) -> str:
    if shareable:
        return SHARED_IMAGE
    if readonly:
        return READONLY_IMAGE
    return image_label


def set_file_label(path: str, label: str) -> None:
    try:
        os.setxattr(path, XATTR, label.encode() + b"\0")
    except OSError as exc:
        raise BackendError(f"cannot give {path} the SELinux label {label}: {exc.strerror}") from exc
