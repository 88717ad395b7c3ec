# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Take, revert to and delete one snapshot of a domain.

``present`` takes the snapshot when the domain has none of that name (an
existing one is left as it is); ``absent`` deletes exactly the named one,
never a disk image; ``current`` reverts the domain to it unless it is the
current snapshot already.

A revert throws away what the domain did since its current snapshot, so it
needs ``force`` when there are such changes, which this module takes to be:
the domain runs or is paused (its memory and disks move on while it runs),
it has no current snapshot, or one of its disk images was written after the
current snapshot was taken (the file's modification time, with a grace of
SNAPSHOT_GRACE seconds for the snapshot's own write).  Where it cannot tell
(an image on another host, a volume) it counts as changed.  ``force`` also
reverts to the snapshot that is current already, to throw away the changes
since.  Backend-agnostic: it speaks only the driver's ``Domains`` and
``Snapshots``.  Private to the collection.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace

from ansible_collections.virtops.qemu.plugins.module_utils.driver.base import Domains, Snapshots
from ansible_collections.virtops.qemu.plugins.module_utils.errors import Conflict, InvalidInput, NotFound, VirtError
from ansible_collections.virtops.qemu.plugins.module_utils.model.snapshot import (
    SnapshotFacts,
    SnapshotRequest,
    creation_xml,
    facts_from_xml,
    listed,
    shown_xml,
)
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import parse

SNAPSHOT_GRACE = 2


class SnapshotManager:
    def __init__(self, domains: Domains, snapshots: Snapshots, local: bool = True):
        self.domains = domains
        self.snapshots = snapshots
        self.local = local          # whether the domain's disk images are files on this host

    def ensure(self, req: SnapshotRequest, check_mode: bool) -> dict:
        if not self.domains.exists(req.domain):
            raise NotFound(f"domain {req.domain!r} is not defined", )
        names = self.snapshots.names(req.domain)
        current = self.snapshots.current(req.domain)
        before = self._facts(req.domain, req.name, current) if req.name in names else None
        step, after = self._plan(req, before, current)
        if step and not check_mode:
            self._act(req, step)
            after = None if step == "delete" else self._facts(req.domain, req.name,
                                                              self.snapshots.current(req.domain))
        return _result(req, step, before, after)

    def _facts(self, domain: str, name: str, current: str | None) -> SnapshotFacts:
        return facts_from_xml(self.snapshots.xml(domain, name), current == name)

    # -- planning ------------------------------------------------------------------------
    def _plan(self, req: SnapshotRequest, before: SnapshotFacts | None, current: str | None):
        if req.state == "absent":
            return ("delete" if before else None), None
        if req.state == "present":
            if before is not None:
                return None, before
            return "create", self._predicted(req, current)
        if before is None:
            raise NotFound(f"domain {req.domain!r} has no snapshot {req.name!r} to revert to")
        if before.current and not req.force:
            return None, before
        changes = self._changes_since(req.domain, current)
        if changes and not req.force:
            raise Conflict(f"reverting domain {req.domain!r} to snapshot {req.name!r} would discard its changes "
                           f"since: {changes}; set force: true to revert anyway")
        return "revert", replace(before, current=True)

    def _predicted(self, req: SnapshotRequest, current: str | None) -> SnapshotFacts:
        state = self.domains.status(req.domain).state
        if state not in ("running", "paused"):
            state = "shutoff"
        elif not req.memory:
            raise InvalidInput(f"domain {req.domain!r} is {state}: a snapshot of a running domain includes its "
                               "memory (memory: true); disk-only snapshots are not supported", "memory")
        return SnapshotFacts(name=req.name, state=state, creation_time=int(time.time()), parent=current,
                             description=req.description, memory="internal" if state != "shutoff" else "no",
                             disks=tuple((target, "internal") for target, _path in self._disks(req.domain)),
                             current=True)

    def _disks(self, domain: str) -> list[tuple[str, str | None]]:
        """(target, file path or None) of each writable disk of the definition."""
        tree = parse(self.domains.xml(domain), "domain")
        found = []
        for disk in tree.findall("devices/disk"):
            if disk.get("device") in ("cdrom", "floppy") or disk.find("readonly") is not None:
                continue
            target = disk.find("target")
            source = disk.find("source")
            path = source.get("file") if source is not None and disk.get("type", "file") == "file" else None
            found.append((target.get("dev") if target is not None else "", path))
        return found

    def _changes_since(self, domain: str, current: str | None) -> str | None:
        """Why a revert would lose something (see the module docstring); None when nothing changed."""
        state = self.domains.status(domain).state
        if state in ("running", "paused", "pmsuspended", "blocked"):
            return f"it is {state}"
        if current is None:
            return "it has no current snapshot"
        taken = facts_from_xml(self.snapshots.xml(domain, current)).creation_time
        for target, path in self._disks(domain):
            if path is None or not self.local:
                return f"disk {target} cannot be checked for writes"
            try:
                written = os.stat(path).st_mtime
            except OSError:
                return f"disk {target} ({path}) cannot be checked for writes"
            if written > taken + SNAPSHOT_GRACE:
                return f"disk {target} ({path}) was written after snapshot {current!r} was taken"
        return None

    # -- acting ----------------------------------------------------------------------------
    def _act(self, req: SnapshotRequest, step: str) -> None:
        try:
            if step == "create":
                running = self.domains.status(req.domain).state in ("running", "paused")
                self.snapshots.create(req.domain, creation_xml(req.name, req.description, running))
            elif step == "revert":
                self.snapshots.revert(req.domain, req.name)
            elif step == "delete":
                self.snapshots.delete(req.domain, req.name)
        except VirtError as e:
            e.after_changes(f"snapshot {req.name!r} of {req.domain!r}: {step} failed: {e}",
                            {"changed": True, "name": req.domain, "snapshot": req.name})
            raise


def _result(req: SnapshotRequest, step: str | None, before: SnapshotFacts | None,
            after: SnapshotFacts | None) -> dict:
    shown_before = shown_xml(before) if before else ""
    shown_after = shown_xml(after) if after else ""
    return {
        "changed": step is not None,
        "name": req.domain,
        "snapshot": req.name,
        "state": req.state,
        "action": step,
        "info": listed(after) if after else None,
        "xml": shown_after,
        "diff": {"before": shown_before, "after": shown_after},
    }


def describe_snapshots(snapshots: Snapshots, domain: str) -> list[dict]:
    """The domain's snapshots for domain_info, oldest first."""
    current = snapshots.current(domain)
    found = []
    for name in snapshots.names(domain):
        try:
            found.append(listed(facts_from_xml(snapshots.xml(domain, name), name == current)))
        except NotFound:
            continue
    return sorted(found, key=lambda s: (s["creation_time"], s["name"]))
