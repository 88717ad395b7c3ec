# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The embedded driver's domains: definitions, state, power and what is asked of a running QEMU.

Definitions are post-parsed and kept by a DefinitionStore under
``etc/qemu``; QEMU is started paused and resumed over QMP (launch.py), and
each later run finds it again from the status XML, the pidfile and the
monitor socket (recovery.py).  An interface of type network gets its tap
on the bridge of that network, which must be active.  Every operation on a
domain holds that domain's lock.  Private to the collection.
"""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, cast

from ansible_collections.virtops.qemu.plugins.module_utils import addresses, fileio
from ansible_collections.virtops.qemu.plugins.module_utils import guest_agent as qga
from ansible_collections.virtops.qemu.plugins.module_utils import qmp_commands as qmpc
from ansible_collections.virtops.qemu.plugins.module_utils.driver.base import DomainRuntime, Domains, DomainStatus
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import process
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.launch import DomainLaunch, check_startable
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.recovery import MONITOR_TIMEOUT
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.state import DomainRecord
from ansible_collections.virtops.qemu.plugins.module_utils.errors import (
    BackendError,
    Conflict,
    InvalidInput,
    VirtError,
)
from ansible_collections.virtops.qemu.plugins.module_utils.lazy import load_part
from ansible_collections.virtops.qemu.plugins.module_utils.model.names import validate_name
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import parse, uuid_of
from ansible_collections.virtops.qemu.plugins.module_utils.qmp import DEFAULT_TIMEOUT, QMPClient, QMPError

if TYPE_CHECKING:
    from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.snapshot import EmbedSnapshots

DESTROY_GRACE = 10.0


class EmbedDomains(DomainLaunch, Domains):
    """The domains of one embed root; every operation on a domain holds that domain's lock.

    Its layers: StoredResources (definitions and status records),
    DomainRecovery (recovery.py: finding QEMU again), DomainLaunch
    (launch.py: starting it); this class adds what a user asks of a domain.
    """

    LIVE_WITHOUT_DEFINITION = False     # a running domain whose definition was removed has no inactive XML

    def exists(self, name: str) -> bool:
        if self.store.defined(name):
            return True
        try:
            record = self._record(name)
        except BackendError:
            return True     # listed, so that its status names the unreadable file
        return record is not None and record.active

    def check_definition(self, xml: str) -> None:
        desired, name = self._parsed(xml)
        self._completed(name, desired, self._replaced(name))

    # -- the hooks of StoredResources ---------------------------------------
    def _complete(self, name: str, desired, current):
        return self._postparse(desired, current)

    def _postparse(self, desired, current):
        from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.postparse import postparse
        if current is not None:
            _carry_over(desired, current)
        return postparse(desired, self.driver.caps_for(desired))

    def _refreshed(self, name: str) -> DomainRecord | None:
        record = self._refresh(name)
        return record if record.active else None

    @contextlib.contextmanager
    def _state(self, name: str) -> Iterator[DomainRecord | None]:
        """As ``_current``: a domain no QEMU runs for is read without the lock."""
        if self._settled(name) is not None:
            yield None
            return
        with self._lock(name):
            yield self._refreshed(name)

    def _to_undefine(self, name: str):
        """The definition; None for an unreadable one, which is removed without knowing its NVRAM."""
        try:
            return self._config(name)
        except BackendError as exc:
            self.warnings.append(f"{exc}; removed unread, so any NVRAM or TPM state of the domain is kept")
            return None

    def _undefined(self, name: str, config, active: bool) -> None:
        cast("EmbedSnapshots", self.driver.snapshots).remove_all(name)
        if not active and config is not None:
            self._remove_domain_data(name, config)
        super()._undefined(name, config, active)

    def _remove_domain_data(self, name: str, config) -> None:
        """NVRAM and TPM state, as virDomainUndefineFlags(NVRAM|TPM) removes them."""
        nvram = (config.findtext("os/nvram") or "").strip()
        fileio.remove_quietly(nvram or self.layout.nvram_file(name))
        uuid = uuid_of(config)
        if uuid and "/" not in uuid:
            shutil.rmtree(self.layout.tpm_state_dir(uuid), ignore_errors=True)

    # -- status -----------------------------------------------------------
    def status(self, name: str) -> DomainStatus:
        with self._current(name) as record:
            return DomainStatus(record.state, record.reason)

    @contextlib.contextmanager
    def _current(self, name: str) -> Iterator[DomainRecord]:
        """The domain's current record: under its lock, unless no QEMU runs for it (see _settled)."""
        record = self._settled(name)
        if record is not None:
            yield record
            return
        with self._lock(name):
            yield self._refresh(name)

    def _settled(self, name: str) -> DomainRecord | None:
        """The record of a defined domain that no QEMU runs for, read without the lock; None if _refresh must tell.

        Only an active record or a pidfile can need what _refresh does under
        the lock, so a listing of shut-off domains costs a few stats each, and
        a read-only run makes no lock file.
        """
        validate_name(name, "domain")
        record = self._record(name)
        if (record is not None and record.active) or not self.store.defined(name):
            return None
        if record is None and os.path.exists(self.layout.pidfile(name)):
            return None
        return record or DomainRecord("shutoff", "unknown")

    # -- life cycle -------------------------------------------------------
    def start(self, name: str, paused: bool = False) -> None:
        with self._lock(name):
            if self._refresh(name).active:
                raise Conflict(f"domain {name!r} is already running")
            config = self._config(name)
            if config is None:
                raise self.store.not_found(name)
            self._refuse_second_qemu(name)
            caps = self.driver.caps_for(config)
            check_startable(config, caps)
            bridges = self._network_bridges(config)
            record = self._reserve(name, config, caps, bridges)
            try:
                self._launch(name, record, caps, paused)
            except BaseException:
                self._abort_start(name, record)
                raise

    def shutdown(self, name: str) -> None:
        self._qmp_on_active(name, "shut down", qmpc.system_powerdown)

    def suspend(self, name: str) -> None:
        self._qmp_on_active(name, "pause", qmpc.stop, ("paused", "user"))

    def resume(self, name: str) -> None:
        self._qmp_on_active(name, "resume", qmpc.cont, ("running", "unpaused"))

    def _qmp_on_active(self, name: str, verb: str, command: Callable[[QMPClient], None], after=None) -> None:
        with self._lock(name):
            record = self._active_record(name, verb)
            with self._monitor(name, record) as qmp:
                command(qmp)
            if after:
                record.state, record.reason = after
                self._save(name, record)

    @contextlib.contextmanager
    def _monitor(self, name: str, record: DomainRecord) -> Iterator[QMPClient]:
        """A QMP session with the domain's running QEMU; fails within seconds when QEMU does not answer."""
        try:
            with self._session(record.monitor, name) as qmp:
                yield qmp
        except QMPError:
            raise
        except VirtError as exc:
            raise BackendError(f"domain {name!r}: the QEMU monitor {record.monitor} does not answer: {exc}") from exc

    def _active_record(self, name: str, verb: str) -> DomainRecord:
        record = self._refresh(name)
        if not record.active:
            raise Conflict(f"cannot {verb} domain {name!r}: it is not running")
        return record

    def destroy(self, name: str) -> None:
        with self._lock(name):
            record = self._active_record(name, "destroy")
            quit_asked = self._quit(name, record)
            # No pid: the leftover of a start by a run still alive that never spawned QEMU; nothing to kill.
            pid = record.pid
            if pid is not None and not (quit_asked and process.wait_gone(pid, record.starttime, DESTROY_GRACE)):
                process.kill(pid, record.starttime)
            self._cleanup(name, record, "destroyed")

    def _quit(self, name: str, record: DomainRecord) -> bool:
        """Ask QEMU to quit; False when its monitor does not answer, and signals must do it."""
        try:
            with self._session(record.monitor, name) as qmp:
                qmpc.quit_qemu(qmp, timeout=MONITOR_TIMEOUT)
        except VirtError:
            return False
        return True

    def monitor(self, name: str, command: dict) -> object:
        if not isinstance(command, dict) or not command.get("execute"):
            raise InvalidInput("a monitor command is a dict with an 'execute' key", "command")
        return self._passthrough(name, command["execute"], command.get("arguments"))

    def human_monitor(self, name: str, command_line: str) -> str:
        reply = self._passthrough(name, "human-monitor-command", {"command-line": command_line},
                                  what=repr(command_line))
        return str(reply)

    def _passthrough(self, name: str, execute: str, arguments, what: str = "") -> object:
        """A user's monitor command: tainted custom-monitor as libvirt does, before QEMU sees it."""
        with self._lock(name):
            record = self._active_record(name, f"run {what or repr(execute)} on")
            if "custom-monitor" not in record.taints:
                record.taints.append("custom-monitor")
                self._save(name, record)
            with self._monitor(name, record) as qmp:
                # A user's command may be slow (savevm): the long deadline, even for a query.
                return qmp.execute(execute, arguments, timeout=DEFAULT_TIMEOUT)

    def send_key(self, name: str, codeset: str, codes: list[int], holdtime: int = 0) -> None:
        """QMP send-key with QEMU's numbers (qnum), as libvirt's QEMU driver sends it."""
        to_qnum = load_part("model.sendkey").to_qnum
        keys: list[qmpc.KeyValue] = [{"type": "number", "data": to_qnum(codeset, code)} for code in codes]
        with self._lock(name):
            record = self._active_record(name, "send keys to")
            with self._monitor(name, record) as qmp:
                qmpc.send_key(qmp, keys, holdtime)

    # -- guest side ---------------------------------------------------------
    def interface_addresses(self, name: str, source: str) -> dict[str, list[dict]] | None:
        live = self._live_tree(name)
        if live is None:
            return None
        nics = addresses.interfaces_of(live)
        if source == "lease":
            return addresses.lease_addresses(self.driver.networks, nics)
        if source == "arp":
            return addresses.arp_addresses(self.driver.networks, nics)
        try:
            with self._agent(name, live) as agent:
                return qga.interface_addresses(agent)
        except VirtError:
            return None

    def guest_agent(self, name: str) -> dict:
        live = self._live_tree(name)
        try:
            with self._agent(name, live) as agent:
                return {"connected": True, "os": qga.os_info(agent)}
        except VirtError:
            return {"connected": False, "os": None}

    def agent_shutdown(self, name: str) -> None:
        live = self._live_tree(name)
        if live is None:
            raise Conflict(f"cannot shut down domain {name!r}: it is not running")
        with self._agent(name, live) as agent:
            agent.send_only("guest-shutdown", {"mode": "powerdown"})

    def _live_tree(self, name: str):
        if not self.status(name).active:
            return None
        return parse(self.xml(name, inactive=False), "domain")

    def _agent(self, name: str, live) -> qga.GuestAgent:
        channel = None if live is None else live.find(
            f"devices/channel/target[@name='{qga.CHANNEL}']/../source")
        if channel is None or not channel.get("path"):
            raise BackendError(f"domain {name!r} has no running guest agent channel ({qga.CHANNEL})")
        return qga.GuestAgent.connect(channel.get("path"))

    # -- moving to another host -------------------------------------------------
    def migration_phase(self, phase: str, name: str, params: dict, check_mode: bool) -> dict:
        return load_part("driver.embed.migration").run_phase(self, phase, name, params, check_mode)

    # -- runtime ------------------------------------------------------------
    def runtime(self, name: str) -> DomainRuntime:
        """QEMU pid, domain id and taints from the status record of a running domain."""
        with self._current(name) as record:
            if not record.active:
                return DomainRuntime(None, None, [])
            return DomainRuntime(record.pid, record.domain_id, list(record.taints))


# -- definition helpers ---------------------------------------------------------
def _carry_over(desired, current) -> None:
    """Keep the generated uuid and MACs when a definition is replaced without them."""
    if desired.find("uuid") is None and current.find("uuid") is not None:
        desired.find("name").addnext(copy.deepcopy(current.find("uuid")))
    old = current.findall("devices/interface")
    for index, iface in enumerate(desired.findall("devices/interface")):
        if iface.find("mac") is None and index < len(old) and old[index].find("mac") is not None \
                and old[index].get("type") == iface.get("type"):
            iface.insert(0, copy.deepcopy(old[index].find("mac")))
