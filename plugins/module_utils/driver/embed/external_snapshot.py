# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Disk-only (external) snapshots of the embedded driver's domains.

Taking one puts a new qcow2 overlay, named by the user, on top of each
listed disk (``qemu-img create -b``): a running QEMU switches to it with
``blockdev-add`` and one ``transaction`` of ``blockdev-snapshot``, and the
definition's disk becomes the overlay with the old image as its
``<backingStore>``, as libvirt writes it.  The definition and the metadata
are written before QEMU switches: a run killed in between leaves a disk
whose overlay is still empty, which reads as the image below it.

Deleting one merges each overlay into the image below it: a running QEMU by
an active ``block-commit`` (the definition goes back to the image once the
job is ready, when the image holds everything, then ``job-complete`` pivots),
a shut-off disk by ``qemu-img commit``.  The overlay file is removed only
after that, when neither the definition nor QEMU uses it.  Every step can
be run again after a kill: what QEMU and the definition use says what is
left to do.  The caller holds the domain's lock.  Private to the collection.
"""

from __future__ import annotations

import os
import secrets
import time

from ansible_collections.virtops.qemu.plugins.module_utils import qmp_commands as qmpc
from ansible_collections.virtops.qemu.plugins.module_utils.driver import hosttools
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import images
from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError, Conflict, VirtError
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import element, sub
from ansible_collections.virtops.qemu.plugins.module_utils.qmp import QMPClient

JOB_TIMEOUT = 1800.0
JOB_POLL = 0.2
PROTOCOL_DRIVERS = ("file", "host_device")


def overlays_of(meta) -> list[tuple[str, str]]:
    """(target, overlay file) of each external disk of a snapshot's (or a create request's) XML."""
    found = []
    for disk in meta.findall("disks/disk[@snapshot='external']"):
        source = disk.find("source")
        if source is not None and source.get("file"):
            found.append((disk.get("name") or "", source.get("file")))
    return found


def disk_of(definition, target: str):
    for disk in definition.findall("devices/disk"):
        found = disk.find("target")
        if found is not None and found.get("dev") == target:
            return disk
    return None


# -- the definition ----------------------------------------------------------------------
def with_overlay(disk, overlay: str) -> None:
    """The disk becomes ``overlay``, a qcow2 file, with its image as the backing store."""
    source, driver = disk.find("source"), disk.find("driver")
    below = element("backingStore", type="file")
    sub(below, "format", type=driver.get("type", "raw") if driver is not None else "raw")
    sub(below, "source", file=source.get("file"))
    old = disk.find("backingStore")
    if old is not None:
        disk.remove(old)
        if len(old) or old.attrib:
            below.append(old)
    source.set("file", overlay)
    if driver is None:
        driver = element("driver", name="qemu")
        disk.insert(0, driver)
    driver.set("type", "qcow2")
    source.addnext(below)


def without_overlay(disk, saved) -> None:
    """The disk back on the image below its overlay: its backing store, else the disk as ``saved`` had it."""
    below = disk.find("backingStore")
    source, driver = disk.find("source"), disk.find("driver")
    if below is not None and below.find("source") is not None:
        source.set("file", below.find("source").get("file"))
        fmt = below.find("format")
        driver.set("type", fmt.get("type") if fmt is not None else "raw")
        rest = below.find("backingStore")
        if rest is not None:
            below.addnext(rest)
        disk.remove(below)
    elif saved is not None:
        source.set("file", saved.find("source").get("file"))
        saved_driver = saved.find("driver")
        driver.set("type", saved_driver.get("type", "raw") if saved_driver is not None else "raw")


def image_below(disk) -> tuple[str, str]:
    """(file, format) of the disk's image, which gets the overlay; a file disk only."""
    source, driver = disk.find("source"), disk.find("driver")
    target = disk.find("target").get("dev")
    if disk.get("type", "file") != "file" or source is None or not source.get("file"):
        raise Conflict(f"disk {target} is not a file; a disk-only snapshot here needs file disks")
    return source.get("file"), driver.get("type", "raw") if driver is not None else "raw"


# -- files -----------------------------------------------------------------------------------
def make_overlay(path: str, base: str, fmt: str) -> None:
    """A new, empty qcow2 overlay of ``base``, owned as the image is (QEMU opens both)."""
    if os.path.lexists(path):
        raise Conflict(f"{path} exists already; the overlay must be a new file")
    size = images.info(base)["virtual-size"]
    # -u: a running QEMU holds the image's lock; the size is given, so the image is not opened.
    hosttools.run(["qemu-img", "create", "-q", "-f", "qcow2", "-u", "-F", fmt, "-b", base, path, str(size)],
                  f"create the overlay {path}")
    found = os.stat(base)
    os.chown(path, found.st_uid, found.st_gid)
    os.chmod(path, found.st_mode & 0o7777)


def backing_of(path: str) -> str | None:
    try:
        found = images.info(path)
    except BackendError:
        return None
    return found.get("full-backing-filename") or found.get("backing-filename")


# -- QEMU --------------------------------------------------------------------------------------
def switch_to_overlays(qmp: QMPClient, domain: str, disks: list[tuple[str, str]]) -> None:
    """Make the running QEMU write to each (image, overlay): all disks at once, or none."""
    tops = _device_nodes(qmp)
    added: list[str] = []
    actions: list[qmpc.TransactionAction] = []
    try:
        for base, overlay in disks:
            if base not in tops:
                raise Conflict(f"domain {domain!r}: QEMU does not have {base} open as a disk")
            node = f"virtops-{secrets.token_hex(6)}"
            qmpc.blockdev_add(qmp, {"driver": "qcow2", "node-name": node, "backing": None,
                                    "file": {"driver": "file", "filename": overlay}})
            added.append(node)
            actions.append(qmpc.blockdev_snapshot_action(tops[base], node))
        qmpc.transaction(qmp, actions)
    except VirtError:
        for node in added:
            _forget_node(qmp, node)
        raise


def commit_running(qmp: QMPClient, domain: str, overlay: str, on_ready) -> bool:
    """Merge the active overlay into the image below it and pivot; False when QEMU does not write to it.

    ``on_ready`` runs once the image holds everything (the job is ready), before QEMU pivots to it.
    """
    tops = _device_nodes(qmp)
    if overlay not in tops:
        return False
    top = tops[overlay]
    job_id = f"virtops-commit-{top}"
    if not _job(qmp, job_id):
        base = _backing_node(qmp, top)
        qmpc.block_commit(qmp, job_id, top, base, auto_dismiss=False)
    _run_to_pivot(qmp, domain, job_id, on_ready)
    nodes = [n for n in qmpc.query_named_block_nodes(qmp) if n.get("file") == overlay]
    for node in sorted(nodes, key=lambda n: n.get("drv") in PROTOCOL_DRIVERS):
        _forget_node(qmp, node["node-name"])
    return True


def _run_to_pivot(qmp: QMPClient, domain: str, job_id: str, on_ready) -> None:
    deadline, completing = time.monotonic() + JOB_TIMEOUT, False
    while True:
        job = _job(qmp, job_id)
        status = job.get("status") if job else "null"
        if status == "ready" and not completing:
            on_ready()
            qmpc.job_complete(qmp, job_id)
            completing = True
        elif status in ("concluded", "null"):
            break
        if time.monotonic() > deadline:
            raise BackendError(f"domain {domain!r}: the block commit {job_id} did not finish in {JOB_TIMEOUT:.0f} s")
        time.sleep(JOB_POLL)
    if job:
        qmpc.job_dismiss(qmp, job_id)
        if job.get("error"):
            raise BackendError(f"domain {domain!r}: the block commit {job_id} failed: {job['error']}")


def _job(qmp: QMPClient, job_id: str) -> qmpc.JobInfo | None:
    return next((j for j in qmpc.query_jobs(qmp) if j.get("id") == job_id), None)


def _device_nodes(qmp: QMPClient) -> dict[str, str]:
    """The file each disk of the running QEMU writes to -> its top node."""
    return {device["inserted"]["file"]: device["inserted"]["node-name"]
            for device in qmpc.query_block(qmp) if device.get("inserted")}


def _backing_node(qmp: QMPClient, top: str) -> str:
    nodes = qmpc.query_named_block_nodes(qmp)
    top_info = next((n for n in nodes if n.get("node-name") == top), None)
    below = ((top_info or {}).get("image") or {}).get("backing-image", {}).get("filename")
    for node in nodes:
        if node.get("file") == below and node.get("drv") not in PROTOCOL_DRIVERS:
            return node["node-name"]
    raise BackendError(f"cannot find the image below {top} ({below}) in QEMU")


def _forget_node(qmp: QMPClient, node: str) -> None:
    """Close a node no disk uses any more; one QEMU made itself goes with its parent, and refuses."""
    try:
        qmpc.blockdev_del(qmp, node)
    except VirtError:
        pass


def files_in_use(qmp) -> set[str]:
    """The files the running QEMU's disks write to."""
    return set(_device_nodes(qmp))


def saved_disk(meta, target: str):
    """The disk as the definition saved with the snapshot had it."""
    saved = meta.find("domain")
    return disk_of(saved, target) if saved is not None else None
