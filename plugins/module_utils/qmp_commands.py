# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The QMP commands the collection sends, one function each, with typed arguments and results.

Each function runs its command on a ``qmp.QMPClient``: an error reply
raises ``qmp.QMPError`` (a BackendError) naming the command, the monitor and
QEMU's error class and description; a reply of the wrong shape raises
BackendError naming the command.  Results are QEMU's own objects, typed as
the QAPI schema defines the members the collection reads; members QEMU adds
stay in the dict.  A user's monitor passthrough is not typed: it goes to
``QMPClient.execute`` as given.  Private to the collection.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, TypedDict, cast

from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError
from ansible_collections.virtops.qemu.plugins.module_utils.qmp import DEFAULT_TIMEOUT, QMPClient


# -- results (QAPI names; members with a dash use the functional form) -----------------
class StatusInfo(TypedDict):
    running: bool
    status: str


ChardevInfo = TypedDict("ChardevInfo", {"label": str, "filename": str, "frontend-open": bool})

MigrationInfo = TypedDict("MigrationInfo", {
    "status": str, "ram": dict, "disk": dict, "total-time": int, "downtime": int,
    "expected-downtime": int, "setup-time": int, "error-desc": str,
}, total=False)

BlockJobInfo = TypedDict("BlockJobInfo", {
    "type": str, "device": str, "len": int, "offset": int, "busy": bool, "paused": bool,
    "speed": int, "io-status": str, "ready": bool, "status": str,
})

# QEMU always sends all but "error", which only a job that failed has.
JobInfo = TypedDict("JobInfo", {
    "id": str, "type": str, "status": str, "current-progress": int, "total-progress": int, "error": str,
}, total=False)

BlockExportInfo = TypedDict("BlockExportInfo", {"id": str, "type": str, "node-name": str,
                                                "shutting-down": bool})

# An image's ImageInfo: "backing-image" (another ImageInfo) only over a backing file, "snapshots" only
# when it has internal snapshots.
ImageInfo = TypedDict("ImageInfo", {"filename": str, "format": str, "backing-filename": str,
                                    "backing-image": dict, "snapshots": list}, total=False)

# query-named-block-nodes: BlockDeviceInfo; anonymous nodes have no node-name.
BlockDeviceInfo = TypedDict("BlockDeviceInfo", {"node-name": str, "drv": str, "file": str, "ro": bool,
                                                "image": ImageInfo}, total=False)


class BlockInfo(TypedDict, total=False):
    """query-block's BlockInfo; "inserted" (a BlockDeviceInfo) only when a medium is in."""
    device: str
    qdev: str
    locked: bool
    removable: bool
    inserted: BlockDeviceInfo


# -- what a capabilities probe reads ----------------------------------------------------------
class CommandInfo(TypedDict):
    name: str


class VersionTriple(TypedDict):
    major: int
    minor: int
    micro: int


class VersionInfo(TypedDict):
    qemu: VersionTriple
    package: str


class TargetInfo(TypedDict):
    arch: str


class KvmInfo(TypedDict):
    enabled: bool
    present: bool


# Only "name" is always there.
MachineInfo = TypedDict("MachineInfo", {"name": str, "alias": str, "is-default": bool, "cpu-max": int,
                                        "deprecated": bool}, total=False)
CpuDefinitionInfo = TypedDict("CpuDefinitionInfo", {"name": str, "unavailable-features": list,
                                                    "deprecated": bool, "alias-of": str}, total=False)


class CommandLineOptionInfo(TypedDict):
    option: str
    parameters: list


class ObjectTypeInfo(TypedDict, total=False):
    name: str
    abstract: bool
    parent: str


class TransactionAction(TypedDict):
    """One action of a ``transaction``: its command's name and arguments."""
    type: str
    data: dict


class KeyValue(TypedDict):
    """A key of send-key: a QEMU key number (``qcode`` names are spelt the same way, type "qcode")."""
    type: Literal["number", "qcode"]
    data: int | str


# -- capabilities (a probe has its own deadline) -------------------------------------------------
def query_commands(qmp: QMPClient, timeout: float | None = None) -> list[CommandInfo]:
    return cast(list[CommandInfo], _objects(qmp, "query-commands", timeout=timeout))


def query_version(qmp: QMPClient, timeout: float | None = None) -> VersionInfo:
    return cast(VersionInfo, _object(qmp, "query-version", timeout=timeout))


def query_target(qmp: QMPClient, timeout: float | None = None) -> TargetInfo:
    return cast(TargetInfo, _object(qmp, "query-target", timeout=timeout))


def query_machines(qmp: QMPClient, timeout: float | None = None) -> list[MachineInfo]:
    return cast(list[MachineInfo], _objects(qmp, "query-machines", timeout=timeout))


def query_cpu_definitions(qmp: QMPClient, timeout: float | None = None) -> list[CpuDefinitionInfo]:
    return cast(list[CpuDefinitionInfo], _objects(qmp, "query-cpu-definitions", timeout=timeout))


def query_kvm(qmp: QMPClient, timeout: float | None = None) -> KvmInfo:
    return cast(KvmInfo, _object(qmp, "query-kvm", timeout=timeout))


def query_command_line_options(qmp: QMPClient, timeout: float | None = None) -> list[CommandLineOptionInfo]:
    return cast(list[CommandLineOptionInfo], _objects(qmp, "query-command-line-options", timeout=timeout))


def query_tpm_models(qmp: QMPClient, timeout: float | None = None) -> list[str]:
    return _strings(qmp, "query-tpm-models", timeout)


def query_tpm_types(qmp: QMPClient, timeout: float | None = None) -> list[str]:
    return _strings(qmp, "query-tpm-types", timeout)


def qom_list_types(qmp: QMPClient, implements: str, abstract: bool = False,
                   timeout: float | None = None) -> list[ObjectTypeInfo]:
    arguments = {"implements": implements, "abstract": abstract}
    return cast(list[ObjectTypeInfo], _objects(qmp, "qom-list-types", arguments, timeout))


# -- run state -------------------------------------------------------------------------
def query_status(qmp: QMPClient) -> StatusInfo:
    return cast(StatusInfo, _object(qmp, "query-status"))


def runstate(qmp: QMPClient) -> str:
    """QEMU's run state: running, paused, prelaunch, postmigrate, ..."""
    return query_status(qmp)["status"]


def cont(qmp: QMPClient) -> None:
    _run(qmp, "cont")


def stop(qmp: QMPClient) -> None:
    _run(qmp, "stop")


def system_powerdown(qmp: QMPClient) -> None:
    _run(qmp, "system_powerdown")


def quit_qemu(qmp: QMPClient, timeout: float | None = None) -> None:
    """QMP ``quit``: QEMU exits, and may close the socket before it answers."""
    _run(qmp, "quit", timeout=timeout)


# -- consoles and input ------------------------------------------------------------------
def set_password(qmp: QMPClient, protocol: Literal["vnc", "spice"], password: str) -> None:
    _run(qmp, "set_password", {"protocol": protocol, "password": password})


def expire_password(qmp: QMPClient, protocol: Literal["vnc", "spice"], time: str) -> None:
    """``time``: "now", "never", "+SECONDS" or an absolute time in seconds since the epoch."""
    _run(qmp, "expire_password", {"protocol": protocol, "time": time})


def query_chardev(qmp: QMPClient) -> list[ChardevInfo]:
    return cast(list[ChardevInfo], _objects(qmp, "query-chardev"))


def send_key(qmp: QMPClient, keys: list[KeyValue], hold_time: int = 0) -> None:
    arguments: dict = {"keys": keys}
    if hold_time > 0:
        arguments["hold-time"] = hold_time
    _run(qmp, "send-key", arguments)


def human_monitor_command(qmp: QMPClient, command_line: str, timeout: float | None = DEFAULT_TIMEOUT) -> str:
    """An HMP command line; its output as text (a user's command may be slow: the long deadline)."""
    reply = qmp.execute("human-monitor-command", {"command-line": command_line}, timeout=timeout)
    return _expect(qmp, "human-monitor-command", reply, str)


# -- migration ---------------------------------------------------------------------------
def migrate_set_capabilities(qmp: QMPClient, capabilities: Mapping[str, bool]) -> None:
    states = [{"capability": name, "state": state} for name, state in capabilities.items()]
    _run(qmp, "migrate-set-capabilities", {"capabilities": states})


def migrate_set_parameters(qmp: QMPClient, max_bandwidth: int | None = None,
                           downtime_limit: int | None = None) -> None:
    """Bandwidth in bytes per second, downtime in milliseconds; a parameter left None is not changed."""
    parameters = {key: value for key, value in (("max-bandwidth", max_bandwidth),
                                                ("downtime-limit", downtime_limit)) if value is not None}
    if parameters:
        _run(qmp, "migrate-set-parameters", parameters)


def migrate(qmp: QMPClient, uri: str) -> None:
    _run(qmp, "migrate", {"uri": uri})


def migrate_incoming(qmp: QMPClient, uri: str) -> None:
    _run(qmp, "migrate-incoming", {"uri": uri})


def migrate_continue(qmp: QMPClient, state: str) -> None:
    """Let a migration paused at ``state`` (pre-switchover) go on."""
    _run(qmp, "migrate-continue", {"state": state})


def migrate_cancel(qmp: QMPClient) -> None:
    _run(qmp, "migrate_cancel")


def query_migrate(qmp: QMPClient) -> MigrationInfo:
    """The migration's state; no ``status`` before any migration started."""
    return cast(MigrationInfo, _object(qmp, "query-migrate"))


# -- NBD and block exports -------------------------------------------------------------------
def nbd_server_start(qmp: QMPClient, host: str, port: int) -> None:
    _run(qmp, "nbd-server-start", {"addr": {"type": "inet", "data": {"host": host, "port": str(port)}}})


def nbd_server_stop(qmp: QMPClient) -> None:
    _run(qmp, "nbd-server-stop")


def block_export_add_nbd(qmp: QMPClient, export_id: str, node_name: str, name: str, writable: bool) -> None:
    _run(qmp, "block-export-add", {"type": "nbd", "id": export_id, "node-name": node_name, "name": name,
                                   "writable": writable})


def query_block_exports(qmp: QMPClient) -> list[BlockExportInfo]:
    return cast(list[BlockExportInfo], _objects(qmp, "query-block-exports"))


# -- block nodes and jobs ------------------------------------------------------------------
def blockdev_add(qmp: QMPClient, options: Mapping[str, object]) -> None:
    """A block node; ``options`` is QEMU's BlockdevOptions (driver, node-name, ...)."""
    _run(qmp, "blockdev-add", dict(options))


def blockdev_add_nbd(qmp: QMPClient, node_name: str, host: str, port: int, export: str) -> None:
    """A node that writes to an NBD export on ``host:port``."""
    blockdev_add(qmp, {"driver": "nbd", "node-name": node_name, "export": export,
                       "server": {"type": "inet", "host": host, "port": str(port)}})


def blockdev_del(qmp: QMPClient, node_name: str) -> None:
    _run(qmp, "blockdev-del", {"node-name": node_name})


def blockdev_mirror(qmp: QMPClient, job_id: str, device: str, target: str,
                    sync: Literal["full", "top", "none"], auto_dismiss: bool = True,
                    speed: int | None = None) -> None:
    """Mirror node ``device`` into node ``target``; ``speed`` in bytes per second."""
    arguments: dict = {"job-id": job_id, "device": device, "target": target, "sync": sync,
                       "auto-dismiss": auto_dismiss}
    if speed:
        arguments["speed"] = speed
    _run(qmp, "blockdev-mirror", arguments)


def blockdev_snapshot(qmp: QMPClient, node: str, overlay: str) -> None:
    """Make node ``overlay`` (added, with no backing yet) the active layer over ``node``."""
    _run(qmp, "blockdev-snapshot", {"node": node, "overlay": overlay})


def blockdev_snapshot_action(node: str, overlay: str) -> TransactionAction:
    """``blockdev_snapshot`` as an action of a ``transaction``."""
    return {"type": "blockdev-snapshot", "data": {"node": node, "overlay": overlay}}


def transaction(qmp: QMPClient, actions: list[TransactionAction]) -> None:
    """Run ``actions`` all at once: when one fails, QEMU undoes the others."""
    _run(qmp, "transaction", {"actions": actions})


def block_commit(qmp: QMPClient, job_id: str, device: str, base_node: str, auto_dismiss: bool = True) -> None:
    """Merge node ``device`` (the active layer: a job that gets ready) into ``base_node`` below it."""
    _run(qmp, "block-commit", {"job-id": job_id, "device": device, "base-node": base_node,
                               "auto-dismiss": auto_dismiss})


def block_job_cancel(qmp: QMPClient, device: str, force: bool = False) -> None:
    """Cancel a block job; a ready mirror cancelled without ``force`` leaves its copy in sync."""
    arguments: dict = {"device": device}
    if force:
        arguments["force"] = True
    _run(qmp, "block-job-cancel", arguments)


def query_block_jobs(qmp: QMPClient) -> list[BlockJobInfo]:
    return cast(list[BlockJobInfo], _objects(qmp, "query-block-jobs"))


def query_jobs(qmp: QMPClient) -> list[JobInfo]:
    return cast(list[JobInfo], _objects(qmp, "query-jobs"))


def job_complete(qmp: QMPClient, job_id: str) -> None:
    """Let a ready job finish (a commit or a mirror pivots to its target)."""
    _run(qmp, "job-complete", {"id": job_id})


def job_dismiss(qmp: QMPClient, job_id: str) -> None:
    _run(qmp, "job-dismiss", {"id": job_id})


def query_named_block_nodes(qmp: QMPClient) -> list[BlockDeviceInfo]:
    return cast(list[BlockDeviceInfo], _objects(qmp, "query-named-block-nodes"))


def query_block(qmp: QMPClient) -> list[BlockInfo]:
    return cast(list[BlockInfo], _objects(qmp, "query-block"))


# -- internal snapshots (jobs) ------------------------------------------------------------------
def snapshot_save(qmp: QMPClient, job_id: str, tag: str, vmstate: str, devices: list[str]) -> None:
    """Start a job that saves the VM state to node ``vmstate`` and snapshots ``devices`` as ``tag``."""
    _run(qmp, "snapshot-save", {"job-id": job_id, "tag": tag, "vmstate": vmstate, "devices": devices})


def snapshot_load(qmp: QMPClient, job_id: str, tag: str, vmstate: str, devices: list[str]) -> None:
    _run(qmp, "snapshot-load", {"job-id": job_id, "tag": tag, "vmstate": vmstate, "devices": devices})


def snapshot_delete(qmp: QMPClient, job_id: str, tag: str, devices: list[str]) -> None:
    _run(qmp, "snapshot-delete", {"job-id": job_id, "tag": tag, "devices": devices})


# -- helpers ----------------------------------------------------------------------------------
def _run(qmp: QMPClient, command: str, arguments: dict | None = None, timeout: float | None = None) -> object:
    return qmp.execute(command, arguments, timeout=timeout)


def _object(qmp: QMPClient, command: str, arguments: dict | None = None, timeout: float | None = None) -> dict:
    return _expect(qmp, command, _run(qmp, command, arguments, timeout), dict)


def _objects(qmp: QMPClient, command: str, arguments: dict | None = None,
             timeout: float | None = None) -> list[dict]:
    return _list_of(qmp, command, _run(qmp, command, arguments, timeout), dict)


def _strings(qmp: QMPClient, command: str, timeout: float | None) -> list[str]:
    return _list_of(qmp, command, _run(qmp, command, None, timeout), str)


def _list_of(qmp: QMPClient, command: str, reply: object, kind) -> list:
    items = _expect(qmp, command, reply, list)
    for item in items:
        _expect(qmp, command, item, kind)
    return items


def _expect(qmp: QMPClient, command: str, value: object, kind):
    if not isinstance(value, kind):
        raise BackendError(f"QMP {command} on {qmp.path}: expected a reply of type {kind.__name__}, "
                           f"got {str(value)[:200]!r}")
    return value
