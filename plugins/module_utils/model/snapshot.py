# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Domain snapshots in libvirt's ``<domainsnapshot>`` format.

A snapshot is addressed by its domain and its own name.  It is internal
(kept inside the qcow2 images, with the guest's memory when it ran) or, with
``disk_only``, external: each listed disk gets a new qcow2 overlay file, named
by the user, on top of its image, which stays as it was.  The part of its
XML the snapshot module shows (and diffs) is ``shown_xml``: name,
description, the domain state it holds, its parent, creation time, the
memory and disk kinds (with an external disk's overlay file), and whether it
is the domain's current snapshot.  Private to the collection.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.model.names import validate_name
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import (
    check_option_text,
    element,
    parse,
    sub,
    to_string,
)

STATES = ("present", "absent", "current")


class SnapshotRequest(NamedTuple):
    domain: str
    name: str
    state: str = "present"
    memory: bool | None = None          # None: the default, the memory of a running guest when not disk_only
    description: str | None = None
    force: bool = False
    disk_only: bool = False
    disks: tuple[tuple[str, str], ...] = ()     # (target, overlay file) of a disk-only snapshot


class SnapshotFacts(NamedTuple):
    name: str
    state: str                  # the domain state the snapshot holds: running, paused, shutoff
    creation_time: int          # seconds since the epoch
    parent: str | None = None
    description: str | None = None
    memory: str = "no"          # "internal" when the guest's memory is in the snapshot
    # (target, "internal"|"external"|"no", overlay file of an external one or None)
    disks: tuple[tuple[str, str, str | None], ...] = ()
    current: bool = False

    @property
    def external(self) -> bool:
        return any(kind == "external" for _target, kind, _path in self.disks)


def request_from_params(params: dict) -> SnapshotRequest:
    check_option_text(params, ("name", "snapshot", "description", "disks"))
    if params.get("state", "present") not in STATES:
        raise InvalidInput(f"state must be one of {', '.join(STATES)}", "state")
    disk_only = bool(params.get("disk_only"))
    memory = params.get("memory")
    if disk_only and memory:
        raise InvalidInput("a disk-only snapshot (disk_only: true) holds no memory; leave memory out or set it "
                           "to false", "memory")
    return SnapshotRequest(
        domain=validate_name(params.get("name"), "domain", "name"),
        name=validate_name(params.get("snapshot"), "snapshot", "snapshot"),
        state=params.get("state") or "present",
        memory=None if memory is None else bool(memory),
        description=params.get("description"),
        force=bool(params.get("force")),
        disk_only=disk_only,
        disks=_overlays(params.get("disks"), disk_only),
    )


def _overlays(disks, disk_only: bool) -> tuple[tuple[str, str], ...]:
    """(target, overlay file) of each listed disk; the files absolute and each target and file once."""
    if not disks:
        if disk_only:
            raise InvalidInput("a disk-only snapshot names the overlay file of each disk to snapshot", "disks")
        return ()
    if not disk_only:
        raise InvalidInput("overlay files are for a disk-only snapshot; set disk_only: true", "disks")
    found: list[tuple[str, str]] = []
    for index, disk in enumerate(disks):
        target, path = (disk.get("target") or "").strip(), disk.get("path") or ""
        if not target:
            raise InvalidInput("the disk's target (vda, sdb, ...) is required", f"disks[{index}].target")
        if not os.path.isabs(path):
            raise InvalidInput(f"the overlay file must be an absolute path, not {path!r}", f"disks[{index}].path")
        path = os.path.normpath(path)
        if any(target == t for t, _p in found):
            raise InvalidInput(f"disk {target} is listed twice", f"disks[{index}].target")
        if any(path == p for _t, p in found):
            raise InvalidInput(f"{path} is the overlay of two disks", f"disks[{index}].path")
        found.append((target, path))
    return tuple(found)


def creation_xml(name: str, description: str | None, memory: bool,
                 overlays: tuple[tuple[str, str], ...] = ()) -> str:
    """What a create asks for: an internal snapshot of every disk, with the guest's ``memory`` (running only);
    with ``overlays`` ((target, file), ...) a disk-only one, external for those disks and none for the rest."""
    root = element("domainsnapshot")
    sub(root, "name", name)
    if description:
        sub(root, "description", description)
    if overlays:
        sub(root, "memory", snapshot="no")
        disks = sub(root, "disks")
        for target, path in overlays:
            disk = sub(disks, "disk", name=target, snapshot="external")
            sub(disk, "source", file=path)
    elif memory:
        sub(root, "memory", snapshot="internal")
    return to_string(root)


def facts_from_xml(text: str, current: bool = False) -> SnapshotFacts:
    tree = parse(text, "domainsnapshot")
    memory = tree.find("memory")
    disks = tuple((disk.get("name") or "", disk.get("snapshot") or "internal", disk.find("source").get("file")
                   if disk.get("snapshot") == "external" and disk.find("source") is not None else None)
                  for disk in tree.findall("disks/disk"))
    time_text = (tree.findtext("creationTime") or "0").strip()
    return SnapshotFacts(
        name=(tree.findtext("name") or "").strip(),
        state=(tree.findtext("state") or "").strip(),
        creation_time=int(time_text) if time_text.isdigit() else 0,
        parent=(tree.findtext("parent/name") or "").strip() or None,
        description=tree.findtext("description"),
        memory=memory.get("snapshot", "no") if memory is not None else "no",
        disks=disks,
        current=current,
    )


def shown_xml(facts: SnapshotFacts) -> str:
    """The part of the snapshot's XML the module manages and diffs."""
    root = element("domainsnapshot")
    sub(root, "name", facts.name)
    if facts.description:
        sub(root, "description", facts.description)
    sub(root, "state", facts.state)
    if facts.parent:
        parent = sub(root, "parent")
        sub(parent, "name", facts.parent)
    sub(root, "creationTime", str(facts.creation_time))
    sub(root, "memory", snapshot=facts.memory)
    if facts.disks:
        disks = sub(root, "disks")
        for target, kind, path in facts.disks:
            disk = sub(disks, "disk", name=target, snapshot=kind)
            if path:
                sub(disk, "source", file=path)
    sub(root, "active", "1" if facts.current else "0")
    return to_string(root)


def listed(facts: SnapshotFacts) -> dict:
    """One entry of domain_info's ``snapshots``."""
    return {"name": facts.name, "parent": facts.parent, "creation_time": facts.creation_time,
            "state": facts.state, "current": facts.current, "description": facts.description,
            "memory": facts.memory == "internal",
            "disks": [{"target": target, "snapshot": kind, **({"path": path} if path else {})}
                      for target, kind, path in facts.disks]}
