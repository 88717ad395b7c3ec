# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Take, revert to and delete one snapshot of a domain.

``present`` takes the snapshot when the domain has none of that name (an
existing one is left as it is); ``absent`` deletes exactly the named one,
never a disk image in use; ``current`` reverts the domain to it unless it is
the current snapshot already.

A disk-only (external) snapshot puts a new overlay file, named per disk, on
top of each listed disk.  Deleting it merges the overlay back into the image
below (both backends do: libvirt since 9.0), and only a snapshot with no
snapshot taken after it.  Reverting to one is refused: libvirt learnt that
in 9.9, and this module does what libvirt 9.0 does.

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
            if before is not None and before.external:
                self._check_deletable(req)
            return ("delete" if before else None), None
        if req.state == "present":
            if before is not None:
                return None, before
            return "create", self._predicted(req, current)
        if before is None:
            raise NotFound(f"domain {req.domain!r} has no snapshot {req.name!r} to revert to")
        if before.external:
            raise Conflict(f"snapshot {req.name!r} of {req.domain!r} is a disk-only (external) snapshot; reverting "
                           "to an external snapshot is not supported (libvirt 9.0 cannot, it came in libvirt 9.9)")
        if before.current and not req.force:
            return None, before
        changes = self._changes_since(req.domain, current)
        if changes and not req.force:
            raise Conflict(f"reverting domain {req.domain!r} to snapshot {req.name!r} would discard its changes "
                           f"since: {changes}; set force: true to revert anyway")
        return "revert", before._replace(current=True)

    def _check_deletable(self, req: SnapshotRequest) -> None:
        """An external snapshot is merged away only when it is the last: its overlay is the disk in use."""
        children = [other for other in self.snapshots.names(req.domain) if other != req.name
                    and facts_from_xml(self.snapshots.xml(req.domain, other)).parent == req.name]
        if children:
            raise Conflict(f"snapshot {req.name!r} of {req.domain!r} is a disk-only (external) snapshot with "
                           f"snapshots taken after it ({', '.join(sorted(children))}); delete those first")

    def _predicted(self, req: SnapshotRequest, current: str | None) -> SnapshotFacts:
        state = self.domains.status(req.domain).state
        running = state in ("running", "paused")
        if req.disk_only:
            disks = tuple((target, "external", path) for target, path in self._check_overlays(req))
            return SnapshotFacts(name=req.name, state="disk-snapshot" if running else "shutoff",
                                 creation_time=int(time.time()), parent=current, description=req.description,
                                 memory="no", disks=disks, current=True)
        if running and req.memory is False:
            raise InvalidInput(f"domain {req.domain!r} is {state}: a snapshot of a running domain includes its "
                               "memory; for one of its disks only set disk_only: true and name the overlay files "
                               "in disks", "memory")
        return SnapshotFacts(name=req.name, state=state if running else "shutoff", creation_time=int(time.time()),
                             parent=current, description=req.description, memory="internal" if running else "no",
                             disks=tuple((target, "internal", None) for target, _path in self._disks(req.domain)),
                             current=True)

    def _check_overlays(self, req: SnapshotRequest) -> tuple[tuple[str, str], ...]:
        """The overlay of each writable disk: named for a file disk, and a file that does not exist yet."""
        disks = dict(self._disks(req.domain))
        for index, (target, path) in enumerate(req.disks):
            if target not in disks:
                raise InvalidInput(f"domain {req.domain!r} has no writable disk {target} (it has "
                                   f"{', '.join(disks) or 'none'})", f"disks[{index}].target")
            if disks[target] is None:
                raise InvalidInput(f"disk {target} of domain {req.domain!r} is not a file; a disk-only snapshot "
                                   "here needs file disks", f"disks[{index}].target")
            if self.local and os.path.lexists(path):
                raise InvalidInput(f"{path} exists already; the overlay must be a new file", f"disks[{index}].path")
        missing = [target for target in disks if target not in dict(req.disks)]
        if missing:
            raise InvalidInput(f"every writable disk of {req.domain!r} needs its overlay file; "
                               f"{', '.join(missing)} is not listed", "disks")
        return req.disks

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
                self.snapshots.create(req.domain, creation_xml(req.name, req.description, running, req.disks))
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
