# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How the embedded driver finds a domain's QEMU again and cleans up after one that is gone.

Each run learns a domain's state from its status record (state.py) and,
for a running one, from QEMU itself over QMP: a record of a start that did
not finish, a QEMU found dead, a QEMU running without a record (reattached
from its command line and monitor), a monitor that does not answer.  The
``DomainRecovery`` layer of EmbedDomains.  Private to the collection.
"""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ansible_collections.virtops.qemu.plugins.module_utils import fileio
from ansible_collections.virtops.qemu.plugins.module_utils import qmp_commands as qmpc
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import process, state
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.state import DomainRecord
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.store import StoredResources
from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError, Conflict, VirtError
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import uuid_of
from ansible_collections.virtops.qemu.plugins.module_utils.qmp import QMPClient, QMPError, TrafficLog

if TYPE_CHECKING:
    from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.backend import EmbedDriver

# Connecting to a QEMU that already runs: its greeting comes at once unless QEMU is stopped or wedged.
MONITOR_TIMEOUT = 3.0
# How long after a start by this run its record stands for what QEMU said (seconds).
JUST_STARTED = 1.0
# QMP runstates -> (libvirt state, reason when the driver did not cause it).
_RUNSTATES = {
    "running": ("running", "unknown"),
    "paused": ("paused", "unknown"),
    # "starting up" is kept for the record written before launch: it marks a start not finished.
    "prelaunch": ("paused", "unknown"),
    "debug": ("paused", "unknown"),
    "io-error": ("paused", "I/O error"),
    "watchdog": ("paused", "watchdog"),
    "shutdown": ("paused", "shutting down"),
    "guest-panicked": ("crashed", "panicked"),
    "internal-error": ("paused", "unknown"),
    "inmigrate": ("paused", "migrating"),
    "postmigrate": ("paused", "migrating"),
    "finish-migrate": ("paused", "migrating"),
    "save-vm": ("paused", "saving"),
    "restore-vm": ("paused", "unknown"),
    "suspended": ("pmsuspended", "unknown"),
    "colo": ("running", "unknown"),
}


class DomainRecovery(StoredResources[DomainRecord]):
    """Bringing a domain's status record in line with its QEMU; every method runs under the domain's lock."""

    driver: EmbedDriver
    records = state.RECORDS

    def __init__(self, driver: EmbedDriver):
        super().__init__(driver)
        # Monitors that timed out once in this run: asking again would only stall the run again.
        self._unanswered: set[str] = set()
        # Domains this run started (name: QEMU's pid, when), whose state QEMU has just confirmed.
        self._started: dict[str, tuple[int | None, float]] = {}

    def _config(self, name: str):
        return self.store.read(name)

    def _refresh(self, name: str) -> DomainRecord:
        """The domain's current record; a QEMU found dead is cleaned up here.  Lock held."""
        record = self._record(name)
        if record is None:
            if not self.store.defined(name):
                raise self.store.not_found(name)
            return self._recover(name, scan=False) or DomainRecord("shutoff", "unknown")
        if not record.active:
            return record
        if (record.state, record.reason) == ("paused", "starting up"):
            # Starts hold the domain lock, as this caller does: the record is a leftover.  Another run
            # that wrote it and is still alive is left its QEMU; this run's own leftover is not.
            if record.starter != os.getpid() and process.is_alive(record.starter, record.starter_time):
                return record
            # The start was interrupted half-way.  Like libvirt on reconnect: such a QEMU is not trusted.
            self._kill_leftover(name, record)
            return self._cleanup(name, record, "failed")
        if self._runs(record):
            if self._just_started(name, record):
                return record
            observed = self._observe(name, record)
            if observed is not None or self._runs(record):
                return observed or record   # a stopped or hung monitor: trust the record
        # QEMU is gone (perhaps while we asked it): clean up after it.
        pidfile_left = os.path.exists(self.layout.pidfile(name))
        trace = fileio.read_text(self.layout.trace_file(name))
        return self._cleanup(name, record, process.exit_reason(pidfile_left, trace))

    def _just_started(self, name: str, record: DomainRecord) -> bool:
        """This run started that QEMU moments ago and has not talked to it since: the record holds
        what QEMU's reply to the start said, and asking again would only cost a new QMP session."""
        started = self._started.get(name)
        return started is not None and started[0] == record.pid and time.monotonic() - started[1] < JUST_STARTED

    def _runs(self, record: DomainRecord) -> bool:
        return process.is_domain_process(record.pid, record.starttime, uuid_of(record.live))

    def _kill_leftover(self, name: str, record: DomainRecord) -> None:
        """Kill the QEMU of an unfinished start: the recorded one, else whatever runs with its pidfile and uuid."""
        pid, starttime = record.pid, record.starttime
        if not (pid and starttime and process.is_alive(pid, starttime)):
            pid = process.find_domain_process(self.layout.pidfile(name), uuid_of(record.live))
            starttime = process.start_time(pid) if pid else None
        if pid and starttime:
            process.kill(pid, starttime)

    def _recover(self, name: str, scan: bool) -> DomainRecord | None:
        """Find a live QEMU of the domain that has no status record and reattach to it."""
        pidfile = self.layout.pidfile(name)
        if not scan and process.read_pid(pidfile) is None:
            return None
        config = self._config(name)
        if config is None:
            return None
        pid = process.find_domain_process(pidfile, uuid_of(config), scan)
        return None if pid is None else self._reattach(name, config, pid)

    def _reattach(self, name: str, config, pid: int) -> DomainRecord:
        """Rebuild the status record of a running QEMU from its command line and monitor."""
        argv, starttime = process.command_line(pid), process.start_time(pid)
        monitor = process.monitor_path(argv) or self._inherited_monitor(name, pid)
        try:
            with QMPClient.connect(monitor, timeout=MONITOR_TIMEOUT, wait_for_socket=False,
                                   traffic=self._traffic(name)) as qmp:
                runstate = qmpc.runstate(qmp)
        except VirtError as exc:
            raise Conflict(f"QEMU process {pid} runs domain {name!r}, which has no status record, and its "
                           f"monitor {monitor or '(none on its command line)'} does not answer ({exc}); "
                           f"stop process {pid} before starting the domain again") from exc
        domain_dir = os.path.dirname(monitor)
        domain_id = _id_from_dir(os.path.basename(domain_dir))
        live = copy.deepcopy(config)
        if domain_id is not None:
            live.set("id", str(domain_id))
        state_word, reason = _RUNSTATES.get(runstate, ("paused", "unknown"))
        record = DomainRecord(state_word, reason, pid=pid, starttime=starttime, domain_id=domain_id,
                              monitor=monitor, domain_dir=domain_dir, taps=process.tap_names(argv), live=live)
        self._save(name, record)
        self.warnings.append(f"domain {name!r} had no status record; reattached to QEMU process {pid}")
        return record

    def _inherited_monitor(self, name: str, pid: int) -> str:
        """Where the driver made the monitor socket QEMU inherited: in its domain directory, its HOME."""
        domain_id = _id_from_dir(os.path.basename(process.environment(pid).get("HOME", "")))
        return "" if domain_id is None else self.layout.monitor_socket(domain_id, name)

    def _observe(self, name: str, record: DomainRecord) -> DomainRecord | None:
        """Bring the recorded state in line with what QEMU says it is doing; None if it did not answer."""
        try:
            with self._session(record.monitor, name) as qmp:
                runstate = qmpc.runstate(qmp)
        except VirtError as exc:
            self._warn_silent(name, record, exc)
            return None
        word, reason = _RUNSTATES.get(runstate, ("nostate", "unknown"))
        if word == "running" and record.state == "paused":
            reason = "unpaused"
        if word != record.state:
            record.state, record.reason = word, reason
            self._save(name, record)
        return record

    @contextlib.contextmanager
    def _session(self, monitor: str, name: str = "") -> Iterator[QMPClient]:
        """QMP with a running QEMU.  A monitor that did not greet in time is not asked again by this
        driver, so a stopped QEMU costs a run one deadline instead of one per call; a command that
        times out later (a slow one, say) does not count."""
        self._started.pop(name, None)      # what QEMU says next is what counts
        if monitor in self._unanswered:
            raise BackendError(f"QMP {monitor}: did not answer earlier in this run")
        try:
            client = QMPClient.connect(monitor, timeout=MONITOR_TIMEOUT, wait_for_socket=False,
                                       traffic=self._traffic(name))
        except QMPError:
            raise       # QEMU answered, with an error
        except VirtError:
            self._unanswered.add(monitor)
            raise
        with client as qmp:
            yield qmp

    def _traffic(self, name: str) -> TrafficLog | None:
        """The domain's QMP traffic log (log/qemu/NAME.qmp.log); a read-only run writes none."""
        if not name or self.driver.read_only:
            return None
        return TrafficLog(self.layout.qmp_log_file(name))

    def _warn_silent(self, name: str, record: DomainRecord, exc: VirtError) -> None:
        warning = f"domain {name!r}: the QEMU monitor {record.monitor} does not answer"
        if not any(w.startswith(warning) for w in self.warnings):
            self.warnings.append(f"{warning} ({exc}); reporting the last recorded state, "
                                 f"{record.state} ({record.reason})")

    def _cleanup(self, name: str, record: DomainRecord, reason: str) -> DomainRecord:
        """Remove what a stopped QEMU left behind and remember why it stopped."""
        errors = []
        for tap in record.taps:
            try:
                process.delete_tap(tap)
            except BackendError as exc:
                errors.append(str(exc))
        if record.live is not None or record.security:
            from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import security
            errors += security.release(record.live, record.security, self.layout, name)
        self._started.pop(name, None)
        if record.monitor:
            fileio.remove_quietly(record.monitor)
            self._unanswered.discard(record.monitor)
        if record.domain_dir and os.path.dirname(record.domain_dir) == self.layout.lib_dir:
            shutil.rmtree(record.domain_dir, ignore_errors=True)
        for leftover in (self.layout.pidfile(name), self.layout.trace_file(name)):
            fileio.remove_quietly(leftover)
        stopped = DomainRecord("shutoff", reason)
        if self.store.defined(name):
            self._save(name, stopped)
        else:
            fileio.remove_quietly(self.layout.domains.status_file(name))
            self.store.remove_lock(name)
        if errors:
            raise BackendError(f"domain {name!r} stopped but cleaning up failed: {'; '.join(errors)}")
        return stopped


def _id_from_dir(dirname: str) -> int | None:
    """The domain id in a ``domain-<id>-<short name>`` directory name."""
    parts = dirname.split("-", 2)
    return int(parts[1]) if len(parts) == 3 and parts[0] == "domain" and parts[1].isdigit() else None
