# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Domain snapshots in libvirt's ``<domainsnapshot>`` format.

A snapshot is addressed by its domain and its own name.  The part of its
XML the snapshot module shows (and diffs) is ``shown_xml``: name,
description, the domain state it holds, its parent, creation time, the
memory and disk kinds, and whether it is the domain's current snapshot.
Private to the collection.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class SnapshotRequest:
    domain: str
    name: str
    state: str = "present"
    memory: bool = True
    description: str | None = None
    force: bool = False


@dataclass(frozen=True)
class SnapshotFacts:
    name: str
    state: str                  # the domain state the snapshot holds: running, paused, shutoff
    creation_time: int          # seconds since the epoch
    parent: str | None = None
    description: str | None = None
    memory: str = "no"          # "internal" when the guest's memory is in the snapshot
    disks: tuple[tuple[str, str], ...] = field(default_factory=tuple)   # (target, "internal"|"external"|"no")
    current: bool = False


def request_from_params(params: dict) -> SnapshotRequest:
    check_option_text(params, ("name", "snapshot", "description"))
    if params.get("state", "present") not in STATES:
        raise InvalidInput(f"state must be one of {', '.join(STATES)}", "state")
    return SnapshotRequest(
        domain=validate_name(params.get("name"), "domain", "name"),
        name=validate_name(params.get("snapshot"), "snapshot", "snapshot"),
        state=params.get("state") or "present",
        memory=params.get("memory", True) is not False,
        description=params.get("description"),
        force=bool(params.get("force")),
    )


def creation_xml(name: str, description: str | None, memory: bool) -> str:
    """What a create asks for: an internal snapshot of every disk, with the guest's ``memory`` (running only)."""
    root = element("domainsnapshot")
    sub(root, "name", name)
    if description:
        sub(root, "description", description)
    if memory:
        sub(root, "memory", snapshot="internal")
    return to_string(root)


def facts_from_xml(text: str, current: bool = False) -> SnapshotFacts:
    tree = parse(text, "domainsnapshot")
    memory = tree.find("memory")
    disks = tuple((disk.get("name") or "", disk.get("snapshot") or "internal")
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
        for target, kind in facts.disks:
            sub(disks, "disk", name=target, snapshot=kind)
    sub(root, "active", "1" if facts.current else "0")
    return to_string(root)


def listed(facts: SnapshotFacts) -> dict:
    """One entry of domain_info's ``snapshots``."""
    return {"name": facts.name, "parent": facts.parent, "creation_time": facts.creation_time,
            "state": facts.state, "current": facts.current, "description": facts.description,
            "memory": facts.memory == "internal"}
