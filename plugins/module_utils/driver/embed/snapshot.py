# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal snapshots of the embedded driver's domains.

A running domain is snapshotted with QEMU's job-based ``snapshot-save``
(disks and memory, as ``savevm``), reverted with ``snapshot-load`` and
cleaned with ``snapshot-delete``; a shut-off domain's qcow2 disks with
``qemu-img snapshot``.  The metadata is libvirt's: one ``<domainsnapshot>``
per snapshot in ``lib/qemu/snapshot/<domain>/<name>.xml``, with its parent,
creation time, the domain definition it was taken from, and ``<active>1``
on the current one.  Every operation holds the domain's lock.  A snapshot
tag found in the images without metadata is the leftover of an interrupted
run; a new snapshot of that name replaces it.  Disk-only (external)
snapshots are taken and deleted by external_snapshot; reverting to one is
refused, as libvirt 9.0 does.  Private to the collection.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable

from ansible_collections.virtops.qemu.plugins.module_utils import fileio
from ansible_collections.virtops.qemu.plugins.module_utils import qmp_commands as qmpc
from ansible_collections.virtops.qemu.plugins.module_utils.driver import hosttools
from ansible_collections.virtops.qemu.plugins.module_utils.driver.base import Snapshots
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import external_snapshot as external
from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError, Conflict, NotFound, VirtError
from ansible_collections.virtops.qemu.plugins.module_utils.model.names import validate_name
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import element, parse, sub, to_string
from ansible_collections.virtops.qemu.plugins.module_utils.qmp import QMPClient

JOB_TIMEOUT = 1800.0
JOB_POLL = 0.2


class EmbedSnapshots(Snapshots):
    def __init__(self, driver):
        self.driver = driver
        self.domains = driver.domains
        self.layout = driver.layout

    # -- metadata -------------------------------------------------------------------
    def _dir(self, domain: str) -> str:
        return self.layout.path("lib", "qemu", "snapshot", validate_name(domain, "domain"))

    def _file(self, domain: str, name: str) -> str:
        return os.path.join(self._dir(domain), f"{validate_name(name, 'snapshot', 'snapshot')}.xml")

    def _read(self, domain: str, name: str):
        text = fileio.read_text(self._file(domain, name))
        if text is None:
            raise NotFound(f"domain {domain!r} has no snapshot {name!r}")
        return parse(text, "domainsnapshot", self._file(domain, name))

    def _write(self, domain: str, tree) -> None:
        self.driver.ensure_tree()
        fileio.make_private_dir(os.path.dirname(self._dir(domain)))
        fileio.make_private_dir(self._dir(domain))
        fileio.atomic_write(self._file(domain, tree.findtext("name")), to_string(tree), 0o600)

    def names(self, domain: str) -> list[str]:
        if not self.domains.exists(domain):
            raise self.domains.store.not_found(domain)
        return sorted(f[:-4] for f in fileio.list_dir(self._dir(domain)) if f.endswith(".xml"))

    def xml(self, domain: str, name: str) -> str:
        return to_string(self._read(domain, name))

    def current(self, domain: str) -> str | None:
        for name in self.names(domain):
            if (self._read(domain, name).findtext("active") or "").strip() == "1":
                return name
        return None

    def _set_current(self, domain: str, name: str | None) -> None:
        for other in self.names(domain):
            tree = self._read(domain, other)
            active = tree.find("active")
            if active is None:
                active = sub(tree, "active", "0")
            flag = "1" if other == name else "0"
            if active.text != flag:
                active.text = flag
                self._write(domain, tree)

    def remove_all(self, domain: str) -> None:
        """Forget every snapshot of the domain (metadata only), as undefine's SNAPSHOTS_METADATA flag."""
        directory = self._dir(domain)
        for entry in fileio.list_dir(directory):
            fileio.remove_quietly(os.path.join(directory, entry))
        try:
            os.rmdir(directory)
        except OSError:
            pass    # absent already

    # -- disks ----------------------------------------------------------------------------
    def _disks(self, config) -> list[tuple[str, str]]:
        """(target, image path) of each writable disk; internal snapshots need qcow2 ones."""
        resolved = self.driver.volume_sources(config)
        found = []
        for disk in resolved.findall("devices/disk"):
            if disk.get("device") in ("cdrom", "floppy") or disk.find("readonly") is not None:
                continue
            target = disk.find("target").get("dev") if disk.find("target") is not None else "?"
            source = disk.find("source")
            path = source.get("file") if source is not None and disk.get("type", "file") == "file" else None
            fmt = disk.find("driver").get("type") if disk.find("driver") is not None else "raw"
            if not path or fmt != "qcow2":
                raise Conflict(f"disk {target} of domain is {fmt if path else disk.get('type')}; an internal "
                               "snapshot needs every writable disk to be a qcow2 file")
            found.append((target, path))
        return found

    @staticmethod
    def _image_tags(path: str) -> list[str]:
        out = hosttools.run(["qemu-img", "snapshot", "-U", "-l", path], f"list the snapshots in {path}")
        tags = []
        for line in out.splitlines()[2:]:
            fields = line.split()
            if len(fields) >= 2:
                tags.append(fields[1])
        return tags

    # -- create ---------------------------------------------------------------------------
    def create(self, domain: str, xml: str) -> None:
        wanted = parse(xml, "domainsnapshot")
        name = validate_name((wanted.findtext("name") or "").strip(), "snapshot", "snapshot")
        with self.domains._lock(domain):
            config = self.domains._config(domain)
            if config is None:
                raise self.domains.store.not_found(domain)
            if os.path.exists(self._file(domain, name)):
                raise Conflict(f"domain {domain!r} already has a snapshot {name!r}")
            record = self.domains._refresh(domain)
            overlays = external.overlays_of(wanted)
            if overlays:
                self._create_external(domain, wanted, name, config, record, overlays)
                return
            disks = self._disks(record.live if record.active and record.live is not None else config)
            if not disks:
                raise Conflict(f"domain {domain!r} has no writable disk to snapshot")
            created = int(time.time())
            parent = self.current(domain)
            if record.active:
                self._save_running(domain, record, name)
                state, memory = record.state if record.state in ("running", "paused") else "running", "internal"
            else:
                self._save_shutoff(disks, name)
                state, memory = "shutoff", "no"
            listed: list[tuple[str, str, str | None]] = [(target, "internal", None) for target, _path in disks]
            self._write(domain, _metadata(wanted, name, state, memory, parent, created, listed, config))
            self._set_current(domain, name)

    def _create_external(self, domain: str, wanted, name: str, config, record, overlays) -> None:
        """Overlays, then the definition and metadata, then QEMU's switch; undone on an error.  Lock held."""
        bases = {}
        for target, _path in overlays:
            disk = external.disk_of(config, target)
            if disk is None:
                raise Conflict(f"domain {domain!r} has no disk {target}")
            bases[target] = external.image_below(disk)
        parent, old_live = self.current(domain), record.live
        changed = copy.deepcopy(config)
        for target, path in overlays:
            external.with_overlay(external.disk_of(changed, target), path)
        # Completed before any file is made: a kill between the overlays and the metadata leaves as little as can be.
        changed = self.domains._completed(domain, changed, config)
        made: list[str] = []
        try:
            for target, path in overlays:
                external.make_overlay(path, *bases[target])
                made.append(path)
            self.domains.store.write(domain, changed)
            if record.active and old_live is not None:
                record.live = self._live_with_overlays(old_live, overlays)
                self.domains._save(domain, record)
            listed: list[tuple[str, str, str | None]] = [(target, "external", path) for target, path in overlays]
            state = "disk-snapshot" if record.active else "shutoff"
            self._write(domain, _metadata(wanted, name, state, "no", parent, int(time.time()), listed, config))
            self._set_current(domain, name)
            if record.active:
                with self.domains._monitor(domain, record) as qmp:
                    external.switch_to_overlays(qmp, domain, [(bases[t][0], p) for t, p in overlays])
        except (VirtError, OSError) as exc:
            if not self._qemu_writes_to(domain, record, [path for _target, path in overlays]):
                self._undo_external(domain, name, config, record, old_live, parent, made)
            if isinstance(exc, OSError):
                raise BackendError(f"domain {domain!r}: cannot take snapshot {name!r}: {exc}") from exc
            raise

    @staticmethod
    def _live_with_overlays(live, overlays):
        changed = copy.deepcopy(live)
        for target, path in overlays:
            disk = external.disk_of(changed, target)
            if disk is not None:
                external.with_overlay(disk, path)
        return changed

    def _qemu_writes_to(self, domain: str, record, paths: list[str]) -> bool:
        """Whether the running QEMU switched to one of ``paths`` after all (an answer lost, say), or may have
        (it does not answer): then the definition and metadata that name them stay, which is safe either way -
        an overlay QEMU never wrote to reads as the image below it."""
        if not record.active:
            return False
        try:
            with self.domains._monitor(domain, record) as qmp:
                return bool(external.files_in_use(qmp) & set(paths))
        except VirtError:
            return True

    def _undo_external(self, domain: str, name: str, config, record, old_live, parent, made: list[str]) -> None:
        self.domains.store.write(domain, config)
        if record.active and old_live is not None and record.live is not old_live:
            record.live = old_live
            self.domains._save(domain, record)
        if fileio.remove_quietly(self._file(domain, name)):
            self._set_current(domain, parent)
        for path in made:
            fileio.remove_quietly(path)

    def _save_running(self, domain: str, record, name: str) -> None:
        with self.domains._monitor(domain, record) as qmp:
            nodes = _writable_nodes(qmp, domain)
            if any(name in tags for tags in nodes.values()):
                self.driver.warnings.append(f"snapshot {name!r} found in the disks of {domain!r} without "
                                            "metadata (an interrupted run) was replaced")
                _job(qmp, domain, "snapshot-delete", name,
                     lambda job_id: qmpc.snapshot_delete(qmp, job_id, name, list(nodes)))
            _job(qmp, domain, "snapshot-save", name,
                 lambda job_id: qmpc.snapshot_save(qmp, job_id, name, next(iter(nodes)), list(nodes)))

    def _save_shutoff(self, disks: list[tuple[str, str]], name: str) -> None:
        for _target, path in disks:
            if name in self._image_tags(path):
                self.driver.warnings.append(f"snapshot {name!r} found in {path} without metadata "
                                            "(an interrupted run) was replaced")
                hosttools.run(["qemu-img", "snapshot", "-d", name, path], f"delete snapshot {name!r} in {path}")
            hosttools.run(["qemu-img", "snapshot", "-c", name, path], f"take snapshot {name!r} of {path}")

    # -- revert -----------------------------------------------------------------------------
    def revert(self, domain: str, name: str) -> None:
        with self.domains._lock(domain):
            meta = self._read(domain, name)
            if external.overlays_of(meta):
                raise Conflict(f"snapshot {name!r} of {domain!r} is a disk-only (external) snapshot; reverting to "
                               "an external snapshot is not supported (libvirt 9.0 cannot, it came in libvirt 9.9)")
            self._restore_definition(domain, meta)
            active = self.domains._refresh(domain).active
        state = (meta.findtext("state") or "").strip()
        if state in ("running", "paused"):
            if not active:
                self.domains.start(domain, paused=True)
            self._load_running(domain, name, state)
        else:
            if active:
                self.domains.destroy(domain)
            with self.domains._lock(domain):
                config = self.domains._config(domain)
                for _target, path in self._disks(config):
                    hosttools.run(["qemu-img", "snapshot", "-a", name, path], f"revert {path} to snapshot {name!r}")
        with self.domains._lock(domain):
            self._set_current(domain, name)

    def _restore_definition(self, domain: str, meta) -> None:
        """The definition the snapshot was taken with, as libvirt's revert restores it.  Lock held."""
        saved = meta.find("domain")
        config = self.domains._config(domain)
        if saved is None or config is None or to_string(saved) == to_string(config):
            return
        self.domains.store.write(domain, self.domains._completed(domain, copy.deepcopy(saved), config))

    def _load_running(self, domain: str, name: str, state: str) -> None:
        with self.domains._lock(domain):
            record = self.domains._refresh(domain)
            if not record.active:
                raise Conflict(f"domain {domain!r} stopped while being reverted to snapshot {name!r}")
            with self.domains._monitor(domain, record) as qmp:
                nodes = _writable_nodes(qmp, domain)
                _job(qmp, domain, "snapshot-load", name,
                     lambda job_id: qmpc.snapshot_load(qmp, job_id, name, next(iter(nodes)), list(nodes)))
                running = qmpc.query_status(qmp)["running"]
                if state == "running" and not running:
                    qmpc.cont(qmp)
                elif state == "paused" and running:
                    qmpc.stop(qmp)
            record.state, record.reason = state, "from snapshot"
            self.domains._save(domain, record)

    # -- delete ------------------------------------------------------------------------------
    def delete(self, domain: str, name: str) -> None:
        with self.domains._lock(domain):
            meta = self._read(domain, name)
            record = self.domains._refresh(domain)
            overlays = external.overlays_of(meta)
            if overlays:
                self._delete_external(domain, name, meta, record, overlays)
            elif record.active:
                with self.domains._monitor(domain, record) as qmp:
                    nodes = _writable_nodes(qmp, domain)
                    holding = [node for node, tags in nodes.items() if name in tags]
                    if holding:
                        _job(qmp, domain, "snapshot-delete", name,
                             lambda job_id: qmpc.snapshot_delete(qmp, job_id, name, holding))
            else:
                for _target, path in self._disks(self.domains._config(domain)):
                    if name in self._image_tags(path):
                        hosttools.run(["qemu-img", "snapshot", "-d", name, path],
                                      f"delete snapshot {name!r} in {path}")
            if not overlays:
                self._forget(domain, name, meta)

    def _delete_external(self, domain: str, name: str, meta, record, overlays) -> None:
        """Merge each overlay into the image below, put the disk back on it, remove it, forget.  Lock held."""
        in_use: set[str] = set()
        if record.active:
            with self.domains._monitor(domain, record) as qmp:
                for target, path in overlays:
                    external.commit_running(qmp, domain, path,
                                            lambda t=target, p=path: self._back_to_image(domain, t, p, meta, record))
                in_use = external.files_in_use(qmp)
        for target, path in overlays:
            if not record.active and self._disk_file(domain, target) == path:
                hosttools.run(["qemu-img", "commit", "-q", "-f", "qcow2", path],
                              f"merge the overlay {path} into the image below it")
            self._back_to_image(domain, target, path, meta, record if record.active else None)
        for target, path in overlays:
            if not os.path.lexists(path):
                continue        # removed by an earlier run, killed before it forgot the snapshot
            # Its data are in the image below only when the disk is that image now (the merge put them there).
            merged = self._disk_file(domain, target) == external.backing_of(path)
            if path in in_use or not merged:
                self.driver.warnings.append(f"the overlay {path} of snapshot {name!r} was kept: disk {target} "
                                            "does not use the image below it")
            else:
                fileio.remove_quietly(path)
        self._forget(domain, name, meta)

    def _disk_file(self, domain: str, target: str) -> str | None:
        disk = external.disk_of(self.domains._config(domain), target)
        source = disk.find("source") if disk is not None else None
        return source.get("file") if source is not None else None

    def _back_to_image(self, domain: str, target: str, overlay: str, meta, record) -> None:
        """The definition's disk (and the running one's, with ``record``) back on the image below ``overlay``."""
        saved = external.saved_disk(meta, target)
        config = self.domains._config(domain)
        if self._disk_file(domain, target) == overlay:
            changed = copy.deepcopy(config)
            external.without_overlay(external.disk_of(changed, target), saved)
            self.domains.store.write(domain, self.domains._completed(domain, changed, config))
        live_disk = external.disk_of(record.live, target) if record is not None and record.live is not None else None
        if live_disk is not None and live_disk.find("source").get("file") == overlay:
            external.without_overlay(live_disk, saved)
            self.domains._save(domain, record)

    def _forget(self, domain: str, name: str, meta) -> None:
        """Remove the metadata; children get the parent, which becomes current if this one was."""
        parent = (meta.findtext("parent/name") or "").strip() or None
        was_current = (meta.findtext("active") or "").strip() == "1"
        for other in self.names(domain):
            if other == name:
                continue
            tree = self._read(domain, other)
            if (tree.findtext("parent/name") or "").strip() == name:
                node = tree.find("parent")
                if parent is None:
                    tree.remove(node)
                else:
                    node.find("name").text = parent
                self._write(domain, tree)
        fileio.remove_quietly(self._file(domain, name))
        if was_current:
            self._set_current(domain, parent)


def _metadata(wanted, name: str, state: str, memory: str, parent: str | None, created: int,
              disks: list[tuple[str, str, str | None]], config):
    tree = parse(to_string(wanted), "domainsnapshot")
    for tag in ("name", "state", "parent", "creationTime", "memory", "disks", "domain", "active"):
        for node in tree.findall(tag):
            tree.remove(node)
    tree.insert(0, element("name", name))
    sub(tree, "state", state)
    if parent:
        sub(sub(tree, "parent"), "name", parent)
    sub(tree, "creationTime", str(created))
    sub(tree, "memory", snapshot=memory)
    listed = sub(tree, "disks")
    for target, kind, path in disks:
        disk = sub(listed, "disk", name=target, snapshot=kind)
        if path:
            disk.set("type", "file")
            sub(disk, "driver", type="qcow2")
            sub(disk, "source", file=path)
    tree.append(copy.deepcopy(config))
    sub(tree, "active", "0")
    return tree


def _writable_nodes(qmp: QMPClient, domain: str) -> dict[str, list[str]]:
    """Format node name -> snapshot tags, of each writable disk of the running QEMU; qcow2 only."""
    nodes: dict[str, list[str]] = {}
    for device in qmpc.query_block(qmp):
        inserted = device.get("inserted")
        if not inserted or inserted.get("ro"):
            continue
        if inserted.get("drv") != "qcow2":
            raise Conflict(f"domain {domain!r} has a writable {inserted.get('drv')} disk "
                           f"({inserted.get('file')}); an internal snapshot needs qcow2 disks only")
        tags = [s.get("name") for s in (inserted.get("image") or {}).get("snapshots", [])]
        nodes[inserted["node-name"]] = tags
    if not nodes:
        raise Conflict(f"domain {domain!r} has no writable disk to snapshot")
    return nodes


def _job(qmp: QMPClient, domain: str, command: str, tag: str, start: Callable[[str], None]) -> None:
    """Run one of QEMU's snapshot jobs (``start`` sends ``command`` with the job's id) to its end and
    dismiss it; its error is a BackendError."""
    job_id = f"virtops-{command}-{os.getpid()}-{time.monotonic_ns()}"
    start(job_id)
    deadline = time.monotonic() + JOB_TIMEOUT
    while True:
        jobs = [j for j in qmpc.query_jobs(qmp) if j.get("id") == job_id]
        if jobs and jobs[0].get("status") in ("concluded", "null"):
            break
        if time.monotonic() > deadline:
            raise BackendError(f"domain {domain!r}: {command} did not finish in {JOB_TIMEOUT:.0f} s")
        time.sleep(JOB_POLL)
    error = jobs[0].get("error")
    qmpc.job_dismiss(qmp, job_id)
    if error:
        raise BackendError(f"domain {domain!r}: {command} {tag!r} failed: {error}")
