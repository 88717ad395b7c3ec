# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Live migration between two embed roots, over QEMU's own migration and NBD.

No daemon sits on either side, so the two halves are separate calls that
Ansible runs on the two hosts, in this order:

1. ``prepare`` (destination): checks the host can take the domain, creates
   its disks, starts QEMU with ``-incoming defer`` for a transient domain
   whose status says "migrating", listens for the migration stream and
   exports the disks over NBD; returns where to connect.
2. ``perform`` (source): mirrors every copied disk into the NBD export
   (``blockdev-mirror``), then migrates memory and device state.  QEMU
   pauses the source before the switch-over (``pause-before-switchover``):
   the mirrors are finished there (cancelled while ready, which leaves the
   copy in sync), then the device state goes and the destination QEMU,
   started without ``-S``, runs the guest at once.  On shared storage the
   destination waits for ``finish`` instead.
3. ``finish`` (destination): stops the NBD server, makes sure the guest
   runs, and stores the definition when the domain is persistent.
4. ``confirm`` (source): stops the paused source QEMU and, when asked,
   removes its definition.

``cancel`` on either side undoes what that side started: the destination
kills its incoming QEMU and deletes the disks it created; the source stops
its migration and mirrors and resumes the guest.  Until ``finish`` the
source QEMU keeps the guest's memory and disks as they were when it paused,
so cancelling on both sides (destination first) after a failure or a killed
task anywhere before ``finish`` leaves the guest running on the source.

When the controller itself died after ``perform`` paused the source, nobody
cancels; the next run takes it up.  ``source`` reports the paused source as
``unfinished``; a destination QEMU that received the whole migration holds
the guest's newest state, so ``prepare`` finishes the move there and
``confirm`` stops the source.  Otherwise ``prepare`` clears the destination
and ``perform`` resumes the source before migrating again: one copy of the
guest runs at any time, and the one with its latest state.

A shut-off domain with its disks (``live: false``) goes the same way with
QEMU's tools instead of a QEMU: ``prepare`` creates the disks and exports
them writable with qemu-storage-daemon, ``perform`` copies each disk into
its export with ``qemu-img convert``, ``finish`` stops the export and
defines the domain, ``confirm`` removes the source's definition.
Private to the collection.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import subprocess
import time

from ansible_collections.virtops.qemu.plugins.module_utils import fileio
from ansible_collections.virtops.qemu.plugins.module_utils import qmp_commands as qmpc
from ansible_collections.virtops.qemu.plugins.module_utils.driver import hosttools
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import process
from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError, Conflict, InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import parse, to_string
from ansible_collections.virtops.qemu.plugins.module_utils.qmp import QMPClient

MIGRATION_PORTS = (49152, 49215)    # libvirt's migration_port_min/max
NBD_PORTS = (10809, 10872)
INCOMING = ("paused", "migrating")      # the destination, until finish
OUTGOING = ("paused", "migrated")       # the source, from perform to confirm
# query-migrate states that end a migration.
_DONE = {"completed", "failed", "cancelled"}
_POLL = 0.05
_JOB_PREFIX = "migrate-"


# -- destination ------------------------------------------------------------------
def incoming_state(domains, name: str) -> str:
    """"incoming" (prepared, not finished), "absent", or the domain's state here."""
    if os.path.exists(_created_file(domains, name)):
        return "incoming"
    if not domains.exists(name):
        return "absent"
    return domains.status(name).state


def preflight(domains, xml: str, copy_storage: str, disk_sizes: dict[str, int]):
    """What the destination lacks for this domain, as an error; the completed definition otherwise."""
    desired = parse(xml, "domain")
    for source in desired.findall("devices/interface[@type='network']/source"):
        network = source.get("network")
        if not domains.driver.networks.exists(network) or domains.driver.networks.bridge(network) is None:
            raise Conflict(f"the destination has no active network {network!r}, which the domain uses")
    for source in desired.findall("devices/disk/source[@pool]"):
        if not domains.driver.pools.exists(source.get("pool")):
            raise Conflict(f"the destination has no storage pool {source.get('pool')!r}, which the domain uses")
    caps = domains.driver.caps_for(desired)
    machine = desired.find("os/type").get("machine")
    if machine and caps.canonical_machine(machine) is None:
        raise Conflict(f"the destination's QEMU has no machine type {machine!r}")
    model = (desired.findtext("cpu/model") or "").strip()
    if model and model not in caps.cpu_models:
        raise Conflict(f"the destination's QEMU has no CPU model {model!r}")
    _check_disks(desired, copy_storage, disk_sizes)
    return desired


def _check_disks(desired, copy_storage: str, disk_sizes: dict[str, int]) -> None:
    needed: dict[int, int] = {}
    for disk in copied_disks(desired):
        path = disk.find("source").get("file")
        if copy_storage == "none":
            if not os.path.exists(path):
                raise Conflict(f"disk {path} is not on the destination; shared storage must be mounted there "
                               "(or copy_storage: all)")
            continue
        if os.path.exists(path):
            raise Conflict(f"disk {path} already exists on the destination; it is not overwritten")
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            raise Conflict(f"directory {directory} for disk {path} does not exist on the destination")
        device = os.stat(directory).st_dev
        needed[device] = needed.get(device, 0) + disk_sizes.get(disk.find("target").get("dev"), 0)
        stats = os.statvfs(directory)
        if stats.f_bavail * stats.f_frsize < needed[device]:
            raise Conflict(f"no room for disk {path} on the destination: {needed[device]} bytes needed, "
                           f"{stats.f_bavail * stats.f_frsize} free")


def copied_disks(domain) -> list:
    """Writable file disks: the ones a migration copies (or, on shared storage, finds again)."""
    return [disk for disk in domain.findall("devices/disk")
            if disk.get("type", "file") == "file" and disk.get("device", "disk") == "disk"
            and disk.find("readonly") is None and disk.find("shareable") is None
            and disk.find("source") is not None and disk.find("source").get("file")]


def prepare(domains, xml: str, address: str, copy_storage: str, disks: dict[str, dict]) -> dict:
    """Start the incoming QEMU; returns where the source sends its migration and disks."""
    desired = preflight(domains, xml, copy_storage, {t: d["allocation"] for t, d in disks.items()})
    name = desired.findtext("name")
    config = domains._postparse(desired, None)
    created = _create_disks(config, copy_storage, disks)
    _save_created(domains, name, created)
    try:
        return _start_incoming(domains, name, config, address, copy_storage)
    except BaseException:
        _delete_created(domains, name)
        raise


def _create_disks(config, copy_storage: str, disks: dict[str, dict]) -> list[str]:
    created: list[str] = []
    if copy_storage == "none":
        return created
    for disk in copied_disks(config):
        path, target = disk.find("source").get("file"), disk.find("target").get("dev")
        fmt = _disk_format(disk)
        size = disks.get(target, {}).get("capacity")
        if not size:
            raise InvalidInput(f"the source did not say how large disk {target} is", "disks")
        hosttools.run(["qemu-img", "create", "-q", "-f", fmt, path, str(size)], f"create {path}")
        created.append(path)
    return created


def _disk_format(disk) -> str:
    driver = disk.find("driver")
    return driver.get("type", "raw") if driver is not None else "raw"


def _created_file(domains, name: str) -> str:
    return os.path.join(domains.layout.path("run", "qemu"), f"{name}.incoming.json")


def _save_created(domains, name: str, created: list[str], offline: dict | None = None) -> None:
    domains.driver.ensure_tree()
    record = {"disks": created, "offline": offline}
    fileio.atomic_write(_created_file(domains, name), json.dumps(record), mode=0o600)


def _load_created(domains, name: str) -> dict:
    text = fileio.read_text(_created_file(domains, name))
    record = json.loads(text) if text else {}
    return {"disks": record} if isinstance(record, list) else record


def _delete_created(domains, name: str) -> None:
    """The disks a prepare created for a migration that did not finish (and their offline export)."""
    record = _load_created(domains, name)
    _stop_export(record.get("offline"))
    for path in record.get("disks", []):
        fileio.remove_quietly(path)
    fileio.remove_quietly(_created_file(domains, name))


def _start_incoming(domains, name: str, config, address: str, copy_storage: str) -> dict:
    with domains._lock(name, creating=True):
        if domains.store.defined(name) or (domains._record(name) is not None and domains._refresh(name).active):
            raise Conflict(f"domain {name!r} already exists on the destination")
        caps = domains.driver.caps_for(config)
        record = domains._reserve(name, config, caps, domains._network_bridges(config))
        try:
            child = _launch_incoming(domains, name, record, caps, autostart=copy_storage != "none")
            return _listen(domains, name, record, child, address, copy_storage)
        except BaseException:
            domains._abort_start(name, record)
            raise


def _launch_incoming(domains, name: str, record, caps, autostart: bool):
    def incoming(argv: list[str]) -> list[str]:
        # Without -S the guest starts by itself the moment the migration completes: its pause is
        # QEMU's downtime, not that plus the next Ansible task.  Only on disks of its own: on shared
        # storage a destination that ran and was then cancelled would have written under the source.
        return [arg for arg in argv if arg != "-S" or not autostart] + ["-incoming", "defer"]

    child, _offset = domains._spawn(name, record, caps, extra_args=incoming)
    domains._save(name, record)
    return child


def _listen(domains, name: str, record, child, address: str, copy_storage: str) -> dict:
    migration_port = process.free_port(address, *MIGRATION_PORTS, set())
    exports = []
    with QMPClient.connect(record.monitor, timeout=60, alive=lambda: child.poll() is None,
                           traffic=domains._traffic(name)) as qmp:
        qmpc.migrate_set_capabilities(qmp, {"events": True})
        qmpc.migrate_incoming(qmp, f"tcp:{_host(address)}:{migration_port}")
        nbd_port = None
        if copy_storage != "none":
            nbd_port = process.free_port(address, *NBD_PORTS, {migration_port})
            qmpc.nbd_server_start(qmp, address, nbd_port)
            exports = _export_disks(qmp, record.live)
    record.state, record.reason = INCOMING
    record.starter = record.starter_time = None
    domains._save(name, record)
    return {"migration_uri": f"tcp:{_host(address)}:{migration_port}",
            "nbd": {"host": address, "port": nbd_port} if nbd_port else None, "exports": exports}


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _export_disks(qmp: QMPClient, live) -> list[dict]:
    nodes = _format_nodes(live)
    exports = []
    for disk in copied_disks(live):
        target = disk.find("target").get("dev")
        qmpc.block_export_add_nbd(qmp, f"{_JOB_PREFIX}{target}", nodes[target], target, writable=True)
        exports.append({"target": target, "name": target})
    return exports


def _format_nodes(live) -> dict[str, str]:
    """Disk target -> the format node command.py names for it (libvirt-<n>-format, counted from the end)."""
    disks = live.findall("devices/disk")
    return {disk.find("target").get("dev"): f"libvirt-{len(disks) - index}-format"
            for index, disk in enumerate(disks)}


def finish(domains, name: str, persistent: bool) -> None:
    """Resume the migrated guest here; store its definition when it is persistent."""
    with domains._lock(name):
        record = domains._refresh(name)
        if not os.path.exists(_created_file(domains, name)) or not record.active:
            raise Conflict(f"domain {name!r} is not waiting for an incoming migration here")
        with domains._monitor(name, record) as qmp:
            status = qmpc.query_migrate(qmp).get("status")
            if status != "completed":
                raise BackendError(f"domain {name!r}: the incoming migration is {status or 'not started'}, "
                                   "not completed; nothing was resumed")
            if qmpc.query_block_exports(qmp):
                qmpc.nbd_server_stop(qmp)
            if qmpc.runstate(qmp) != "running":
                qmpc.cont(qmp)
        record.state, record.reason = "running", "migrated"
        domains._save(name, record)
        if persistent and record.live is not None:
            config = copy.deepcopy(record.live)
            config.attrib.pop("id", None)
            domains.store.write(name, domains._postparse(parse(to_string(config), "domain"), None))
    fileio.remove_quietly(_created_file(domains, name))


# -- offline, with storage ----------------------------------------------------------
def prepare_offline(domains, xml: str, address: str, copy_storage: str, disks: dict[str, dict]) -> dict:
    """Create the disks of a shut-off domain and export them writable over NBD (qemu-storage-daemon).

    The domain is defined only by ``finish``, once the source has filled the disks.
    """
    desired = preflight(domains, xml, copy_storage, {t: d["allocation"] for t, d in disks.items()})
    name = desired.findtext("name")
    if domains.store.defined(name):
        raise Conflict(f"domain {name!r} already exists on the destination")
    config = domains._postparse(desired, None)
    created = _create_disks(config, copy_storage, disks)
    _save_created(domains, name, created)
    try:
        port = process.free_port(address, *NBD_PORTS, set())
        daemon = _start_export(domains, name, config, address, port)
        _save_created(domains, name, created, dict(daemon, xml=xml))
    except BaseException:
        _delete_created(domains, name)
        raise
    exports = [{"target": disk.find("target").get("dev"), "name": disk.find("target").get("dev")}
               for disk in copied_disks(config)]
    return {"offline": True, "nbd": {"host": address, "port": port}, "exports": exports}


def _start_export(domains, name: str, config, address: str, port: int) -> dict:
    """qemu-storage-daemon serving each copied disk (its guest-visible data) as an NBD export named by target."""
    run_dir = domains.layout.path("run", "qemu")
    pidfile = os.path.join(run_dir, f"{name}.nbd.pid")
    # The NBD server comes before the exports that use it.
    argv = ["qemu-storage-daemon", "--daemonize", "--pidfile", pidfile,
            "--nbd-server", f"addr.type=inet,addr.host={address},addr.port={port}"]
    for disk in copied_disks(config):
        target = disk.find("target").get("dev")
        fmt = _disk_format(disk)
        blockdev = {"driver": fmt, "node-name": f"{_JOB_PREFIX}{target}",
                    "file": {"driver": "file", "filename": disk.find("source").get("file")}}
        argv += ["--blockdev", json.dumps(blockdev),
                 "--export", f"type=nbd,id={_JOB_PREFIX}{target},node-name={_JOB_PREFIX}{target},"
                             f"name={target},writable=on"]
    log = os.path.join(run_dir, f"{name}.nbd.log")
    with open(log, "wb") as stderr:
        # --daemonize returns once the exports listen.
        done = subprocess.run(argv, check=False, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=stderr, timeout=60)
    if done.returncode != 0:
        reason = (fileio.read_text(log) or "").strip() or f"exit status {done.returncode}"
        fileio.remove_quietly(log)
        raise BackendError(f"cannot export the disks of {name!r} over NBD: {reason}")
    pid = int((fileio.read_text(pidfile) or "0").strip() or 0)
    return {"pid": pid, "starttime": process.start_time(pid) if pid else None, "pidfile": pidfile, "log": log}


def _stop_export(daemon: dict | None) -> None:
    if not daemon:
        return
    if daemon.get("pid"):
        process.kill(daemon["pid"], daemon.get("starttime"))
    fileio.remove_quietly(daemon["pidfile"])
    fileio.remove_quietly(daemon["log"])


def perform_offline(domains, name: str, incoming: dict, options: dict) -> dict:
    """Copy the disks of the shut-off domain into the destination's exports (qemu-img convert)."""
    nbd = incoming["nbd"]
    host = _host(nbd["host"])
    started = time.monotonic()
    copied = 0
    with domains._lock(name):
        record = domains._refresh(name)
        if record.active:
            raise Conflict(f"domain {name!r} is {record.state}; live: false moves a shut-off domain")
        config = domains._config(name)
        disks = {d.find("target").get("dev"): d for d in copied_disks(config)}
        for export in incoming["exports"]:
            disk = disks[export["target"]]
            path = disk.find("source").get("file")
            fmt = _disk_format(disk)
            copied += _img_info(path).get("actual-size", 0)
            hosttools.run(_convert_argv(path, fmt, f"nbd://{host}:{nbd['port']}/{export['name']}", options),
                          f"copy disk {export['target']} to the destination", timeout=3600)
    total = int((time.monotonic() - started) * 1000)
    return {"total_time_ms": total, "downtime_ms": 0, "memory_bytes": 0, "disk_bytes": copied,
            "transferred_bytes": copied}


def _convert_argv(path: str, fmt: str, target: str, options: dict) -> list[str]:
    # The destination's disk is new, so its zeros need not be written; incremental copies the top image only.
    source = ["-f", fmt, path]
    if options["copy_storage"] == "incremental" and fmt == "qcow2":
        source = ["json:" + json.dumps({"driver": "qcow2", "backing": None,
                                        "file": {"driver": "file", "filename": path}})]
    rate = ["-r", f"{options['bandwidth']}M"] if options.get("bandwidth") else []
    return ["qemu-img", "convert", "-q", "-n", "--target-is-zero", *rate, *source, "-O", "raw", target]


def finish_offline(domains, name: str) -> None:
    """Stop the export and define the domain whose disks the source filled."""
    record = _load_created(domains, name)
    _stop_export(record["offline"])
    domains.define(record["offline"]["xml"])
    fileio.remove_quietly(_created_file(domains, name))


def incoming_completed(domains, name: str) -> bool:
    """The incoming QEMU here received the whole migration (its source may still wait to be confirmed)."""
    if not domains.exists(name) or _load_created(domains, name).get("offline"):
        return False
    with domains._lock(name):
        record = domains._refresh(name)
        if not record.active:
            return False
        with domains._monitor(name, record) as qmp:
            return qmpc.query_migrate(qmp).get("status") == "completed"


def cancel_incoming(domains, name: str) -> bool:
    """Kill an incoming QEMU that was not finished and delete the disks its prepare created."""
    if incoming_state(domains, name) != "incoming":
        return False
    if domains.exists(name) and domains.status(name).active:
        domains.destroy(name)
    _delete_created(domains, name)
    return True


# -- source -------------------------------------------------------------------------
def disk_sizes(domains, name: str) -> dict[str, dict]:
    """Virtual size and allocation of each disk the migration copies, for the destination's prepare."""
    live = parse(domains.xml(name, inactive=False), "domain")
    sizes = {}
    for disk in copied_disks(live):
        info = _img_info(disk.find("source").get("file"))
        sizes[disk.find("target").get("dev")] = {"capacity": info["virtual-size"],
                                                 "allocation": info.get("actual-size", info["virtual-size"])}
    return sizes


def _img_info(path: str) -> dict:
    argv = ["qemu-img", "info", "-U", "--output=json", path]
    try:
        done = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60)
    except subprocess.CalledProcessError as exc:
        raise BackendError(f"qemu-img info {path} failed: {exc.stderr.strip()}") from exc
    return json.loads(done.stdout)


def perform(domains, name: str, incoming: dict, options: dict) -> dict:
    """Mirror the disks and migrate; returns query-migrate's numbers.  The source ends paused."""
    with domains._lock(name):
        record = domains._refresh(name)
        if record.active:
            record = _resume_left(domains, name, record)
        if record.state != "running":
            raise Conflict(f"domain {name!r} is {record.state}, not running; a live migration needs it running")
        started = time.monotonic()
        with domains._monitor(name, record) as qmp:
            try:
                disk_bytes = _mirror(qmp, record.live, incoming, options)
                info = _migrate(qmp, incoming, options)
            except BaseException:
                _cancel_source(qmp, incoming)
                raise
        record.state, record.reason = OUTGOING
        domains._save(name, record)
    return _stats(info, disk_bytes, int((time.monotonic() - started) * 1000))


def _mirror(qmp: QMPClient, live, incoming: dict, options: dict) -> int:
    nbd = incoming.get("nbd")
    if not nbd:
        return 0
    nodes = _format_nodes(live)
    speed = options["bandwidth"] * 1024 * 1024 if options.get("bandwidth") else None
    for export in incoming["exports"]:
        job = f"{_JOB_PREFIX}{export['target']}"
        qmpc.blockdev_add_nbd(qmp, job, nbd["host"], nbd["port"], export["name"])
        qmpc.blockdev_mirror(qmp, job, nodes[export["target"]], job, auto_dismiss=False, speed=speed,
                             sync="top" if options["copy_storage"] == "incremental" else "full")
    return _wait_mirrors_ready(qmp, [e["target"] for e in incoming["exports"]])


def _wait_mirrors_ready(qmp: QMPClient, targets: list[str]) -> int:
    wanted = {f"{_JOB_PREFIX}{t}" for t in targets}
    while True:
        jobs = {j["device"]: j for j in qmpc.query_block_jobs(qmp) if j["device"] in wanted}
        failed = [d for d in wanted if d not in jobs or jobs[d].get("status") == "concluded"]
        if failed:
            raise BackendError(f"copying disk {failed[0][len(_JOB_PREFIX):]} to the destination failed")
        if all(j.get("ready") for j in jobs.values()):
            return sum(j.get("offset", 0) for j in jobs.values())
        time.sleep(_POLL)


def _migrate(qmp: QMPClient, incoming: dict, options: dict) -> qmpc.MigrationInfo:
    """Migrate; the mirrors are finished at the switch-over, so the destination starts on whole disks."""
    qmpc.migrate_set_capabilities(qmp, {"events": True, "auto-converge": bool(options.get("auto_converge")),
                                        "pause-before-switchover": bool(incoming.get("exports"))})
    bandwidth = options.get("bandwidth")
    qmpc.migrate_set_parameters(qmp, max_bandwidth=bandwidth * 1024 * 1024 if bandwidth else None,
                                downtime_limit=options.get("max_downtime") or None)
    qmpc.migrate(qmp, incoming["migration_uri"])
    continued = False
    while True:
        info = qmpc.query_migrate(qmp)
        if info.get("status") == "pre-switchover" and not continued:
            continued = True
            # The source is paused and its memory sent: the last disk writes go before the device state.
            _finish_mirrors(qmp, incoming)
            qmpc.migrate_continue(qmp, "pre-switchover")
        elif info.get("status") in _DONE:
            break
        time.sleep(_POLL)
    if info.get("status") != "completed":
        raise BackendError(f"the migration {info.get('status')}: {info.get('error-desc', 'no reason given')}")
    return info


def _finish_mirrors(qmp: QMPClient, incoming: dict) -> None:
    """Cancel the ready mirrors: with the source paused that flushes the last writes and leaves the copy whole."""
    for export in incoming.get("exports", []):
        job = f"{_JOB_PREFIX}{export['target']}"
        qmpc.block_job_cancel(qmp, job)
        _conclude(qmp, job)
        qmpc.blockdev_del(qmp, job)


def _conclude(qmp: QMPClient, job: str) -> None:
    """Wait for a block job to end and dismiss it; its error, if it had one, is raised."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        jobs = {j["id"]: j for j in qmpc.query_jobs(qmp)}
        if job not in jobs:
            return
        if jobs[job]["status"] == "concluded":
            qmpc.job_dismiss(qmp, job)
            if jobs[job].get("error"):
                raise BackendError(f"disk copy {job} failed: {jobs[job]['error']}")
            return
        time.sleep(_POLL)
    raise BackendError(f"disk copy {job} did not finish within 60 s")


def _stats(info: qmpc.MigrationInfo, disk_bytes: int, total_ms: int) -> dict:
    """Wall-clock time of the whole move (disk copy included); QEMU's downtime and byte counts."""
    ram = info.get("ram", {})
    return {"total_time_ms": total_ms, "downtime_ms": info.get("downtime"),
            "memory_bytes": ram.get("transferred"), "disk_bytes": disk_bytes,
            "transferred_bytes": (ram.get("transferred") or 0) + disk_bytes}


def _cancel_source(qmp: QMPClient, incoming: dict | None) -> None:
    """Stop the migration and mirrors this side started and let the guest run here again."""
    info = qmpc.query_migrate(qmp)
    if info.get("status") not in (None, *_DONE):
        qmpc.migrate_cancel(qmp)
        _wait_migration_over(qmp)
    jobs = {j["id"]: j for j in qmpc.query_jobs(qmp)}
    for job in [j for j in jobs if j.startswith(_JOB_PREFIX)]:
        if jobs[job]["status"] != "concluded":
            qmpc.block_job_cancel(qmp, job, force=True)
        with contextlib.suppress(BackendError):
            _conclude(qmp, job)     # a cancelled copy ends with an error, which is what was asked
    nodes = {n.get("node-name") for n in qmpc.query_named_block_nodes(qmp)}
    for node in sorted(n for n in nodes if n and n.startswith(_JOB_PREFIX)):
        qmpc.blockdev_del(qmp, node)
    if qmpc.runstate(qmp) in ("postmigrate", "finish-migrate", "paused"):
        qmpc.cont(qmp)


def _wait_migration_over(qmp: QMPClient) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if qmpc.query_migrate(qmp).get("status") in _DONE:
            return
        time.sleep(_POLL)
    raise BackendError("the migration did not stop within 30 s of migrate_cancel")


def _started_here(qmp: QMPClient) -> bool:
    """A disk copy of a migration (its job, or its connection to the destination) is still there."""
    jobs = [j["id"] for j in qmpc.query_jobs(qmp)]
    nodes = [n.get("node-name") or "" for n in qmpc.query_named_block_nodes(qmp)]
    return any(item.startswith(_JOB_PREFIX) for item in jobs + nodes)


def outgoing_left(domains, name: str) -> str | None:
    """The state of a migration a controller that died left on this source (its QEMU paused); None if none."""
    with domains._lock(name):
        record = domains._refresh(name)
        if not record.active:
            return None
        with domains._monitor(name, record) as qmp:
            status = qmpc.query_migrate(qmp).get("status")
            started = _started_here(qmp)
    if status in (None, "failed", "cancelled") and not started:
        return None
    return status or "disk copy"


def _resume_left(domains, name: str, record):
    """Run the guest here again when an unfinished move paused it, and drop its disk copies.  Lock held.

    The destination did not take the guest over (its prepare would have finished the move and
    this perform would not run), so this source holds the guest's only state.
    """
    with domains._monitor(name, record) as qmp:
        status = qmpc.query_migrate(qmp).get("status")
        if status in (None, "failed", "cancelled") and not _started_here(qmp):
            return record       # paused by someone else: not this module's to resume
        _cancel_source(qmp, None)
    record.state, record.reason = "running", "migration canceled"
    domains._save(name, record)
    return record


def cancel_outgoing(domains, name: str) -> bool:
    """Resume a source left paused or migrating by a migration that did not finish; True if it was."""
    if incoming_state(domains, name) == "incoming" or not domains.exists(name):
        return False
    with domains._lock(name):
        record = domains._refresh(name)
        if not record.active:
            return False
        with domains._monitor(name, record) as qmp:
            runstate = qmpc.runstate(qmp)
            migrating = qmpc.query_migrate(qmp).get("status") not in (None, *_DONE)
            started = _started_here(qmp)
            _cancel_source(qmp, None)
        changed = runstate != "running" or migrating or started
        if changed:
            record.state, record.reason = "running", "migration canceled"
            domains._save(name, record)
    return changed


def confirm(domains, name: str, undefine: bool) -> bool:
    """Stop the source QEMU of a finished migration; remove its definition when asked."""
    changed = False
    if domains.exists(name) and domains.status(name).active:
        with domains._lock(name):
            record = domains._refresh(name)
            with domains._monitor(name, record) as qmp:
                if qmpc.query_migrate(qmp).get("status") != "completed":
                    raise Conflict(f"domain {name!r} has not migrated away from here; it is kept running")
        domains.destroy(name)
        changed = True
    if undefine and domains.store.defined(name):
        domains.undefine(name)
        changed = True
    return changed


# -- the phases, as the migrate module runs them --------------------------------------
def run_phase(domains, phase: str, name: str, params: dict, check_mode: bool) -> dict:
    """One phase on this host; every phase reports what is already done as unchanged."""
    return _PHASES[phase](domains, name, params, check_mode)


def _source(domains, name: str, params: dict, check_mode: bool) -> dict:
    """What the destination needs to prepare: the definition and the size of each copied disk."""
    if not domains.exists(name):
        return {"changed": False, "present": False}
    status = domains.status(name)
    unfinished = outgoing_left(domains, name) if params["live"] and status.state == "paused" else None
    if params["live"] and status.state != "running" and unfinished is None:
        raise Conflict(f"domain {name!r} is {status.state}; a live migration moves a running domain")
    if not params["live"] and status.state != "shutoff":
        raise Conflict(f"domain {name!r} is {status.state}; live: false moves a shut-off domain")
    xml = domains.xml(name, inactive=not params["live"])
    disks = disk_sizes(domains, name) if params["copy_storage"] != "none" else {}
    result = {"changed": False, "present": True, "state": status.state, "xml": xml, "disks": disks}
    return dict(result, unfinished=unfinished) if unfinished else result


def _prepare(domains, name: str, params: dict, check_mode: bool) -> dict:
    here = incoming_state(domains, name)
    if here not in ("absent", "incoming"):
        return {"changed": False, "present": True, "state": here}
    if not params["xml"]:
        raise InvalidInput("prepare needs the domain's definition from the source phase", "xml")
    if here == "incoming" and incoming_completed(domains, name):
        # A controller that died after the switch-over: the guest's state is here, so the move is finished.
        if not check_mode:
            finish(domains, name, params["persistent"])
        return {"changed": True, "present": True, "state": "running", "recovered": True}
    disks = params["disks"] or {}
    offline, shared = not params["live"], params["copy_storage"] == "none"
    if check_mode or (offline and shared):
        preflight(domains, params["xml"], params["copy_storage"], {t: d["allocation"] for t, d in disks.items()})
        if not check_mode:
            domains.define(params["xml"])    # offline on shared storage: the definition is all that moves
        return {"changed": True, "present": False}
    if not params["listen_address"]:
        raise InvalidInput("prepare needs the destination's address for the migration stream and disk copy",
                           "listen_address")
    if here == "incoming":
        cancel_incoming(domains, name)      # the leftover of an interrupted move
    start = prepare_offline if offline else prepare
    incoming = start(domains, params["xml"], params["listen_address"], params["copy_storage"], disks)
    return {"changed": True, "present": False, "incoming": incoming}


def _perform(domains, name: str, params: dict, check_mode: bool) -> dict:
    if not params["incoming"]:
        raise InvalidInput("perform needs the incoming result of the destination's prepare", "incoming")
    if not domains.exists(name):
        raise Conflict(f"domain {name!r} does not exist on the source")
    if check_mode:
        return {"changed": True}
    move = perform_offline if params["incoming"].get("offline") else perform
    return {"changed": True, "stats": move(domains, name, params["incoming"], params)}


def _finish(domains, name: str, params: dict, check_mode: bool) -> dict:
    if incoming_state(domains, name) != "incoming":
        if domains.exists(name) and domains.status(name).active:
            return {"changed": False}
        raise Conflict(f"domain {name!r} has no incoming migration to finish here")
    if not check_mode:
        if _load_created(domains, name).get("offline"):
            finish_offline(domains, name)
        else:
            finish(domains, name, params["persistent"])
    return {"changed": True}


def _confirm(domains, name: str, params: dict, check_mode: bool) -> dict:
    if check_mode:
        return {"changed": domains.exists(name) and (domains.status(name).active or params["undefine_source"])}
    return {"changed": confirm(domains, name, params["undefine_source"])}


def _cancel(domains, name: str, params: dict, check_mode: bool) -> dict:
    if check_mode:
        return {"changed": incoming_state(domains, name) == "incoming"}
    return {"changed": cancel_incoming(domains, name) or cancel_outgoing(domains, name)}


_PHASES = {"source": _source, "prepare": _prepare, "perform": _perform, "finish": _finish,
           "confirm": _confirm, "cancel": _cancel}
