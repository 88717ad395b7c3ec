# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The devices a cloud guest needs from its host: the NoCloud seed disk and the guest agent channel.

The seed is a file beside the domain (``<name>.cidata.iso``), attached as a
read-only virtio disk: Debian's cloud kernels have virtio_blk but no AHCI
driver, so a SATA CD-ROM would stay invisible, and cloud-init's NoCloud
looks for the ``cidata`` label on every block device anyway.  The disk's
``<serial>`` carries a digest of the seed, so a new content is a change of
the definition (with its diff and its pending restart) although the path
stays the same.  Private to the collection.
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Callable

from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.model.domain import DEVICES
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import XmlNode, element, sub

AGENT_CHANNEL = "org.qemu.guest_agent.0"
SEED_SUFFIX = ".cidata.iso"
SERIAL_PREFIX = "cidata-"
SEED_BUS = "virtio"


def seed_file_name(domain_name: str) -> str:
    return domain_name + SEED_SUFFIX


def seed_serial(image: bytes) -> str:
    """The disk serial naming the seed's content (virtio-blk keeps at most 20 characters)."""
    return SERIAL_PREFIX + hashlib.sha256(image).hexdigest()[:12]


def seed_disk(path: str, target: str, image: bytes) -> XmlNode:
    disk = element("disk", type="file", device="disk")
    sub(disk, "driver", name="qemu", type="raw")
    sub(disk, "source", file=path)
    sub(disk, "target", dev=target, bus=SEED_BUS)
    sub(disk, "serial", seed_serial(image))
    sub(disk, "readonly")
    return disk


def agent_channel() -> XmlNode:
    channel = element("channel", type="unix")
    sub(channel, "target", type="virtio", name=AGENT_CHANNEL)
    return channel


def is_agent_channel(node: XmlNode) -> bool:
    target = node.find("target")
    return target is not None and target.get("name") == AGENT_CHANNEL


def seed_paths(tree: XmlNode | None, domain_name: str) -> list[str]:
    """The seed files a definition uses: read-only file disks named like this domain's seed."""
    if tree is None:
        return []
    found = []
    for disk in tree.iterfind("devices/disk"):
        source = disk.find("source")
        if disk.find("readonly") is None or source is None or not source.get("file"):
            continue
        if os.path.basename(source.get("file")) == seed_file_name(domain_name):
            found.append(source.get("file"))
    return found


def place_seed(desired: XmlNode, before: XmlNode | None, owned: set[str], path: str, image: bytes | None) -> None:
    """Put the seed disk at ``path`` into ``desired`` (``image`` None: take every seed disk out)."""
    wanted = None
    if image is not None:
        wanted = seed_disk(path, _seed_target(desired, before, owned, path), image)
    _place(desired, before, owned, "disk", lambda disk: _has_source(disk, path), wanted)


def place_agent_channel(desired: XmlNode, before: XmlNode | None, owned: set[str], enabled: bool) -> None:
    _place(desired, before, owned, "channel", is_agent_channel, agent_channel() if enabled else None)


def _place(desired: XmlNode, before: XmlNode | None, owned: set[str], tag: str,
           mine: Callable[[XmlNode], bool], wanted: XmlNode | None) -> None:
    """Make ``wanted`` the one device of ``tag`` that ``mine`` picks, keeping every other one.

    A list the request already describes keeps its own other devices; otherwise
    the current definition's others are carried over, so the list can be
    owned (which is how a device is taken out) without losing them.
    """
    devices = desired.find("devices")
    if devices is None:
        devices = sub(desired, "devices")
    path = f"{DEVICES}/{tag}"
    if path not in owned and devices.find(tag) is None and before is not None:
        for node in before.iterfind(f"devices/{tag}"):
            devices.append(copy.deepcopy(node))
    for node in devices.findall(tag):
        if mine(node):
            devices.remove(node)
    if wanted is not None:
        devices.append(wanted)
    owned.add(path)


def _seed_target(desired: XmlNode, before: XmlNode | None, owned: set[str], path: str) -> str:
    """The target the seed has now, or the first virtio name no other disk takes."""
    current = [] if before is None else before.findall("devices/disk")
    others = desired.findall("devices/disk")
    if f"{DEVICES}/disk" not in owned and not others:
        others = current
    used = {d.find("target").get("dev") for d in others
            if d.find("target") is not None and not _has_source(d, path)}
    for disk in current:
        if _has_source(disk, path) and disk.find("target") is not None and disk.find("target").get("dev") not in used:
            return disk.find("target").get("dev")
    for letter in "abcdefghijklmnopqrstuvwxyz":
        if "vd" + letter not in used:
            return "vd" + letter
    raise InvalidInput("no free virtio disk name is left for the seed", "cloud_init")


def _has_source(disk: XmlNode, path: str) -> bool:
    source = disk.find("source")
    return source is not None and source.get("file") == path
