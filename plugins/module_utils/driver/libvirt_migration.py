# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""libvirt's managed migration, peer to peer: the source libvirtd drives the whole move.

The source libvirtd connects to the destination URI itself, so the task runs
on the source alone; libvirt prepares, copies the disks over NBD
(non-shared-disk migration), migrates, resumes on the destination and
cleans up, and on any failure leaves the guest on the source.  Private to
the collection.
"""

from __future__ import annotations

import threading
import time
from urllib.parse import urlsplit

from ansible_collections.virtops.qemu.plugins.module_utils.driver.libvirt_backend import call, libvirt
from ansible_collections.virtops.qemu.plugins.module_utils.errors import Conflict, InvalidInput, VirtError
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import parse

_POLL = 0.1
_COPY_FLAGS = {"all": "VIR_MIGRATE_NON_SHARED_DISK", "incremental": "VIR_MIGRATE_NON_SHARED_INC"}


def flags_for(options: dict) -> int:
    names = ["VIR_MIGRATE_PEER2PEER"]
    names.append("VIR_MIGRATE_LIVE" if options["live"] else "VIR_MIGRATE_OFFLINE")
    if options["persistent"] or not options["live"]:
        names.append("VIR_MIGRATE_PERSIST_DEST")
    if options["undefine_source"]:
        names.append("VIR_MIGRATE_UNDEFINE_SOURCE")
    if options["auto_converge"]:
        names.append("VIR_MIGRATE_AUTO_CONVERGE")
    if options["copy_storage"] != "none":
        names.append(_COPY_FLAGS[options["copy_storage"]])
    flags = 0
    for name in names:
        flags |= getattr(libvirt, name)
    return flags


def data_uri(destination: str) -> str:
    """tcp://HOST of the destination URI: the migration stream goes where the destination libvirtd is."""
    host = urlsplit(destination).hostname
    if not host:
        raise InvalidInput(f"destination {destination!r} names no host", "destination")
    return f"tcp://[{host}]" if ":" in host else f"tcp://{host}"


def preflight(dest_conn, networks: list[str], pools: list[str]) -> None:
    """What the destination lacks, before anything moves (libvirt would fail half-way otherwise)."""
    have = {n.name() for n in dest_conn.listAllNetworks(0) if n.isActive()}
    for network in networks:
        if network not in have:
            raise Conflict(f"the destination has no active network {network!r}, which the domain uses")
    have_pools = {p.name() for p in dest_conn.listAllStoragePools(0)}
    for pool in pools:
        if pool not in have_pools:
            raise Conflict(f"the destination has no storage pool {pool!r}, which the domain uses")


def migrate(conn, name: str, destination: str, options: dict) -> tuple[int, int]:
    """Run the migration; returns how long it took in ms and how many bytes of disk it copied."""
    domain = call(f"find domain {name!r}", conn.lookupByName, name)
    params: dict = {}
    if options["live"]:
        params[libvirt.VIR_MIGRATE_PARAM_URI] = data_uri(destination)
    if options.get("bandwidth"):
        params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = options["bandwidth"]
    if options.get("max_downtime") and options["live"]:
        call("set the maximum downtime", domain.migrateSetMaxDowntime, options["max_downtime"], 0)
    started = time.monotonic()
    outcome: dict = {}
    worker = threading.Thread(target=_run_migration, args=(domain, destination, params, flags_for(options), outcome))
    worker.start()
    disk_total = _watch_disk_copy(domain, worker)
    if "error" in outcome:
        raise outcome["error"]
    return int((time.monotonic() - started) * 1000), disk_total


def _run_migration(domain, destination: str, params: dict, flags: int, outcome: dict) -> None:
    try:
        call(f"migrate {domain.name()!r} to {destination}", domain.migrateToURI3, destination, params, flags)
    except VirtError as exc:
        outcome["error"] = exc


def _watch_disk_copy(domain, worker: threading.Thread) -> int:
    """The size of the disk copy, read from the running job: the destination's statistics leave it out."""
    disk_total = 0
    while worker.is_alive():
        try:
            disk_total = max(disk_total, domain.jobStats(0).get("disk_total", 0))
        except libvirt.libvirtError:
            pass    # no job yet, or the domain has left
        worker.join(_POLL)
    return disk_total


def completed_stats(dest_conn, name: str, elapsed_ms: int, disk_total: int) -> dict:
    """The destination's record of the finished migration job (time, downtime, bytes)."""
    stats: dict = {}
    try:
        domain = dest_conn.lookupByName(name)
        stats = domain.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
    except libvirt.libvirtError:
        pass
    memory = stats.get("memory_processed")
    disk = stats.get("disk_processed") or disk_total
    return {"total_time_ms": stats.get("time_elapsed", elapsed_ms), "downtime_ms": stats.get("downtime"),
            "memory_bytes": memory, "disk_bytes": disk,
            "transferred_bytes": (memory or 0) + (disk or 0)}


def managed(source, name: str, destination: str, options: dict, check_mode: bool) -> dict:
    """The module's phase managed: checks, then the move; a domain already moved is unchanged."""
    from ansible_collections.virtops.qemu.plugins.module_utils.driver.libvirt_backend import LibvirtDriver
    from ansible_collections.virtops.qemu.plugins.module_utils.uri import parse_uri
    if not destination:
        raise InvalidInput("the destination's libvirt URI is needed", "destination")
    with LibvirtDriver(parse_uri(destination)) as dest:
        here, there = source.exists(name), dest.domains.exists(name)
        if not here and there:
            return {"changed": False}
        if not here:
            raise Conflict(f"domain {name!r} exists on neither {source.uri.raw} nor {destination}")
        _check_state(source.status(name).state, name, options["live"])
        if there and dest.domains.status(name).active:
            raise Conflict(f"domain {name!r} runs on both {source.uri.raw} and {destination}")
        domain = parse(source.xml(name), "domain")
        preflight(dest.conn, [s.get("network") for s in domain.findall("devices/interface[@type='network']/source")],
                  [s.get("pool") for s in domain.findall("devices/disk/source[@pool]")])
        if check_mode:
            return {"changed": True}
        elapsed, disk_total = migrate(source.conn, name, destination, options)
        return {"changed": True, "stats": completed_stats(dest.conn, name, elapsed, disk_total)}


def _check_state(state: str, name: str, live: bool) -> None:
    if live and state != "running":
        raise Conflict(f"domain {name!r} is {state}; a live migration moves a running domain")
    if not live and state != "shutoff":
        raise Conflict(f"domain {name!r} is {state}; live: false moves a shut-off domain")
