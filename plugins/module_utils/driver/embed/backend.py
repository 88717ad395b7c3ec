# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The embedded (daemonless) QEMU driver at qemu:///embed?root=/dir.

The collection itself plays libvirt's QEMU driver: definitions are
post-parsed and kept by a DefinitionStore under ``etc/qemu``, QEMU is
started paused and resumed over QMP, and each later run finds it again
from the status XML, the pidfile and the monitor socket (see layout.py,
store.py, state.py, process.py).  ``EmbedDriver`` holds what the whole root
shares (tree, capabilities, qemu.conf, the root's lock); ``EmbedDomains``
is its ``domains``, ``EmbedNetworks`` (network.py) its ``networks``: an
interface of type network gets its tap on the bridge of that network,
which must be active.  Every operation on a domain holds that domain's lock.  The root's tree is
created by the first write; a read-only driver (check mode, info modules)
creates nothing and reads a missing tree as a root without domains.  Private
to the collection.
"""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import TYPE_CHECKING, cast

from ansible_collections.virtops.qemu.plugins.module_utils import addresses, fileio
from ansible_collections.virtops.qemu.plugins.module_utils import guest_agent as qga
from ansible_collections.virtops.qemu.plugins.module_utils.driver.base import (
    DomainRuntime,
    Domains,
    DomainStatus,
    Driver,
)
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import process, state
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.layout import Layout, check_socket_path
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.state import DomainRecord
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.store import DefinitionStore, StoredAutostart
from ansible_collections.virtops.qemu.plugins.module_utils.errors import (
    BackendError,
    Conflict,
    InvalidInput,
    VirtError,
    host_error,
)
from ansible_collections.virtops.qemu.plugins.module_utils.model import schema
from ansible_collections.virtops.qemu.plugins.module_utils.model.names import validate_name
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import etree, parse, sub, to_string
from ansible_collections.virtops.qemu.plugins.module_utils.qmp import DEFAULT_TIMEOUT, QMPClient, QMPError, TrafficLog

# What only starting a QEMU, sending keys or another kind needs (the command-line
# builder, post-parse, capabilities, security managers, networks, storage) is
# imported where it is used: every module run pays for each import, and a call
# that reads one domain needs none of them.
if TYPE_CHECKING:
    import subprocess

    from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import security
    from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.cmdline import LaunchPaths
    from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.network import EmbedNetworks
    from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.snapshot import EmbedSnapshots
    from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.storage import EmbedPools, EmbedVolumes

STARTUP_TIMEOUT = 60.0
# Connecting to a QEMU that already runs: its greeting comes at once unless QEMU is stopped or wedged.
MONITOR_TIMEOUT = 3.0
DESTROY_GRACE = 10.0
VNC_PORT_MIN = 5900
# libvirt architecture names whose QEMU target is spelt differently.
_QEMU_TARGET = {"i686": "i386", "armv7l": "arm"}
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


class EmbedDriver(Driver):
    def __init__(self, uri, read_only: bool = False):
        super().__init__(uri)       # parse_uri has checked that the root is absolute
        self.read_only = read_only
        self.layout = Layout(uri.embed_root, uri.raw)
        self.layout.check_socket_room()
        self.layout.check_root()
        self._tree_ready = False
        self._caps_cache: dict[str, object] = {}
        self._conf: tuple[str, dict] | None = None
        self.domains = EmbedDomains(self)
        self._networks: EmbedNetworks | None = None
        self._pools: EmbedPools | None = None
        self._volumes: EmbedVolumes | None = None
        self._snapshots: EmbedSnapshots | None = None

    # Networks and storage are made on first use, so that a domain call does not import them.
    @property
    def networks(self) -> EmbedNetworks:  # type: ignore[override]
        if self._networks is None:
            from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.network import EmbedNetworks
            self._networks = EmbedNetworks(self)
        return self._networks

    @property
    def pools(self) -> EmbedPools:  # type: ignore[override]
        if self._pools is None:
            from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.storage import EmbedPools
            self._pools = EmbedPools(self)
        return self._pools

    @property
    def volumes(self) -> EmbedVolumes:  # type: ignore[override]
        if self._volumes is None:
            from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.storage import EmbedVolumes
            self._volumes = EmbedVolumes(self.pools)
        return self._volumes

    @property
    def snapshots(self) -> EmbedSnapshots:  # type: ignore[override]
        if self._snapshots is None:
            from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.snapshot import EmbedSnapshots
            self._snapshots = EmbedSnapshots(self)
        return self._snapshots

    def close(self) -> None:
        """Nothing stays open between calls: every call opens and closes its own QMP session."""

    def capabilities(self) -> str:
        from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import caps as capsmod
        from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import security
        found = capsmod.probe_all(self._caps_cache_dir())
        text = capsmod.host_capabilities_xml(found, capsmod.kvm_usable())
        return _with_secmodels(text, security.secmodels(self.security_policy()))

    def security_policy(self) -> security.Policy:
        """The security managers in force for this root (qemu.conf and the host)."""
        from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import security
        return security.policy(self.qemu_conf())

    def qemu_conf(self) -> dict:
        """The settings of $root/etc/qemu.conf (empty when the file does not exist)."""
        from ansible_collections.virtops.qemu.plugins.module_utils.qemu_conf import (
            EMBED_HONOURED_KEYS,
            read_conf,
            settings_from_text,
        )
        text = read_conf(self.layout.qemu_conf)
        if self._conf is None or self._conf[0] != text:     # a listing asks once per domain
            self._conf = (text, settings_from_text(text))
        settings = copy.deepcopy(self._conf[1])
        ignored = sorted(set(settings) - EMBED_HONOURED_KEYS)
        warning = f"{self.layout.qemu_conf}: the embedded driver ignores {', '.join(ignored)}"
        if ignored and warning not in self.warnings:
            self.warnings.append(warning)
        return settings

    # -- helpers ----------------------------------------------------------
    def ensure_tree(self) -> None:
        """Make the root ready for this run's first write: its tree, cleared of what killed writes left."""
        if self.read_only:
            raise BackendError(f"{self.uri.raw} was opened read-only; nothing may be written")
        if not self._tree_ready:
            self.layout.ensure_tree()
            self._tree_ready = True
            for paths in self.layout.kinds.values():
                DefinitionStore(paths, self.uri.raw, self.ensure_tree, self.read_only).remove_stale_temporaries()

    def driver_lock(self):
        return fileio.file_lock(self.layout.driver_lock_file(), f"embed root {self.layout.root}")

    def caps_for(self, domain):
        binary = (domain.findtext("devices/emulator") or "").strip() or self._default_emulator(domain)
        if binary not in self._caps_cache:
            from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import caps as capsmod
            self._caps_cache[binary] = capsmod.probe(binary, self._caps_cache_dir())
        return self._caps_cache[binary]

    def _caps_cache_dir(self) -> str | None:
        """Where probed capabilities are cached; None to probe without a cache.

        A read-only run uses and refreshes an existing cache but never creates one.
        """
        if not self.read_only:
            self.ensure_tree()
        return self.layout.cache_dir if os.path.isdir(self.layout.cache_dir) else None

    @staticmethod
    def _default_emulator(domain) -> str:
        from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import caps as capsmod
        ostype = domain.find("os/type")
        arch = (ostype.get("arch") if ostype is not None else None) or capsmod.host_arch()
        binary = shutil.which(f"qemu-system-{_QEMU_TARGET.get(arch, arch)}")
        if binary is None:
            raise InvalidInput(f"no qemu-system binary for architecture {arch!r} is installed",
                               "devices/emulator")
        return binary

    def default_seed_directory(self) -> str:
        return self.layout.path("lib", "qemu", "seeds")

    def write_seed(self, path: str, image: bytes) -> bool:
        self.ensure_tree()
        if path.startswith(self.default_seed_directory() + os.sep):
            _make_dir(self.default_seed_directory())
        return super().write_seed(path, image)

    def delete_disk_source(self, source: dict) -> None:
        if source.get("volume"):
            self.volumes.delete(source["pool"], source["volume"])
            return
        path = source["path"]
        if not os.path.lexists(path):
            return
        if not (os.path.isfile(path) or os.path.islink(path)):
            raise BackendError(f"{path!r} is not a regular file; the embedded driver deletes only image files")
        try:
            os.remove(path)
        except OSError as exc:
            raise host_error(exc, "delete", path) from exc


class EmbedDomains(StoredAutostart, Domains):
    """The domains of one embed root; every operation on a domain holds that domain's lock."""

    def __init__(self, driver: EmbedDriver):
        self.driver = driver
        self.uri = driver.uri
        self.layout = driver.layout
        self.warnings = driver.warnings
        self.store = DefinitionStore(driver.layout.domains, driver.uri.raw, driver.ensure_tree, driver.read_only)
        # Monitors that timed out once in this run: asking again would only stall the run again.
        self._unanswered: set[str] = set()

    def _lock(self, name: str, creating: bool = False):
        return self.store.lock(name, self.exists, creating)

    def _config(self, name: str):
        return self.store.read(name)

    def _record(self, name: str) -> DomainRecord | None:
        return state.load_record(self.layout.domains.status_file(name))

    def _save(self, name: str, record: DomainRecord, durable: bool = True) -> None:
        state.save_record(self.layout.domains.status_file(name), record, durable)

    def names(self) -> list[str]:
        return sorted(n for n in self.store.names_on_disk() if self.exists(n))

    def exists(self, name: str) -> bool:
        if self.store.defined(name):
            return True
        try:
            record = self._record(name)
        except BackendError:
            return True     # listed, so that its status names the unreadable file
        return record is not None and record.active

    def xml(self, name: str, inactive: bool = True) -> str:
        with self._current(name) as record:
            if not inactive and record.active and record.live is not None:
                return to_string(record.live)
            config = self._config(name)
            if config is None:
                raise self.store.not_found(name)
            return to_string(config)

    def define(self, xml: str) -> None:
        desired, name = self._parsed(xml)
        with self._lock(name, creating=True):
            self.store.write(name, self._completed(name, desired, self._config(name)))

    def check_definition(self, xml: str) -> None:
        desired, name = self._parsed(xml)
        self._completed(name, desired, self._config(name))

    @staticmethod
    def _parsed(xml: str):
        desired = parse(xml, "domain")
        name = validate_name((desired.findtext("name") or "").strip(), "domain")
        schema.validate(desired, "domain")
        return desired, name

    def _completed(self, name: str, desired, current):
        """The definition as it is stored: identity checked, post-parsed, valid."""
        self.store.check_identity(name, desired, current)
        final = self._postparse(desired, current)
        schema.validate(final, "domain", what="the completed definition")
        return final

    def _postparse(self, desired, current):
        from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.postparse import postparse
        if current is not None:
            _carry_over(desired, current)
        return postparse(desired, self.driver.caps_for(desired))

    def undefine(self, name: str) -> None:
        with self._lock(name):
            config = self._config_to_undefine(name)
            record = self._refresh(name)
            self.store.remove(name)
            self.driver.snapshots.remove_all(name)
            if not record.active:
                if config is not None:
                    self._remove_domain_data(name, config)
                fileio.remove_quietly(self.layout.domains.status_file(name))
                self.store.remove_lock(name)

    def _config_to_undefine(self, name: str):
        """The definition; None for an unreadable one, which is removed without knowing its NVRAM."""
        if not self.store.defined(name):
            raise self.store.not_found(name)
        try:
            return self._config(name)
        except BackendError as exc:
            self.warnings.append(f"{exc}; removed unread, so any NVRAM or TPM state of the domain is kept")
            return None

    def _remove_domain_data(self, name: str, config) -> None:
        """NVRAM and TPM state, as virDomainUndefineFlags(NVRAM|TPM) removes them."""
        nvram = (config.findtext("os/nvram") or "").strip()
        fileio.remove_quietly(nvram or self.layout.nvram_file(name))
        uuid = (config.findtext("uuid") or "").strip()
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
            observed = self._observe(name, record)
            if observed is not None or self._runs(record):
                return observed or record   # a stopped or hung monitor: trust the record
        # QEMU is gone (perhaps while we asked it): clean up after it.
        pidfile_left = os.path.exists(self.layout.pidfile(name))
        trace = fileio.read_text(self.layout.trace_file(name))
        return self._cleanup(name, record, process.exit_reason(pidfile_left, trace))

    def _runs(self, record: DomainRecord) -> bool:
        return process.is_domain_process(record.pid, record.starttime, _uuid(record.live))

    def _kill_leftover(self, name: str, record: DomainRecord) -> None:
        """Kill the QEMU of an unfinished start: the recorded one, else whatever runs with its pidfile and uuid."""
        pid, starttime = record.pid, record.starttime
        if not (pid and starttime and process.is_alive(pid, starttime)):
            pid = process.find_domain_process(self.layout.pidfile(name), _uuid(record.live))
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
        pid = process.find_domain_process(pidfile, _uuid(config), scan)
        return None if pid is None else self._reattach(name, config, pid)

    def _reattach(self, name: str, config, pid: int) -> DomainRecord:
        """Rebuild the status record of a running QEMU from its command line and monitor."""
        argv, starttime = process.command_line(pid), process.start_time(pid)
        monitor = process.monitor_path(argv) or self._inherited_monitor(name, pid)
        try:
            with QMPClient.connect(monitor, timeout=MONITOR_TIMEOUT, wait_for_socket=False,
                                   traffic=self._traffic(name)) as qmp:
                runstate = _runstate(qmp)
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
                runstate = _runstate(qmp)
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
            _check_startable(config, caps)
            bridges = self._network_bridges(config)
            record = self._reserve(name, config, caps, bridges)
            try:
                self._launch(name, record, caps, paused)
            except BaseException:
                self._abort_start(name, record)
                raise

    def _refuse_second_qemu(self, name: str) -> None:
        """Never two QEMUs for one domain: one that runs without a usable record is reattached, not doubled."""
        record = self._recover(name, scan=True)
        if record is not None:
            raise Conflict(f"domain {name!r} is already running (QEMU process {record.pid})")

    def _network_bridges(self, config) -> dict[str, str]:
        """The bridge of each network the domain's interfaces use; the networks must be active.

        Asked before the root's lock is taken: a network start takes its own locks, never this one.
        """
        bridges: dict[str, str] = {}
        for source in config.findall("devices/interface[@type='network']/source"):
            network = source.get("network")
            if network not in bridges:
                bridge = self.driver.networks.bridge(network)
                if bridge is None:
                    raise Conflict(f"network {network!r} is not active; start it before domains that use it")
                bridges[network] = bridge
            if source.get("portgroup"):
                _refuse_unapplied_portgroup(network, source.get("portgroup"),
                                            self.driver.networks.xml(network, inactive=False))
        return bridges

    def _reserve(self, name: str, config, caps, bridges: dict[str, str]) -> DomainRecord:
        """Pick a domain id, display ports and tap names no other domain of this root uses."""
        from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import cmdline as command
        conf = self.driver.qemu_conf()
        with self.driver.driver_lock():
            others = [r for r in self._other_records(name) if r.active]
            domain_id = _lowest_free({r.domain_id for r in others if r.domain_id})
            monitor = self.layout.monitor_socket(domain_id, name)
            check_socket_path(monitor, self.uri.raw, "the monitor socket")
            live = copy.deepcopy(config)
            live.set("id", str(domain_id))
            _attach_networks(live, bridges)
            _assign_ports(live, conf, _ports_in(others))
            taps = _assign_taps(live, {t for r in others for t in r.taps})
            domain_dir = self.layout.domain_dir(domain_id, name)
            command.record_channel_paths(live, domain_dir)
            record = DomainRecord(
                "paused", "starting up", domain_id=domain_id, monitor=monitor,
                domain_dir=domain_dir, taps=taps, live=live,
                starter=os.getpid(), starter_time=process.start_time(os.getpid()))
            # Not durable: the record that names what the start does to the host (_prepare_host) is.
            self._save(name, record, durable=False)
        return record

    def _other_records(self, name: str) -> list[DomainRecord]:
        records = []
        for other in self.store.names_on_disk() - {name}:
            try:
                found = self._record(other)
            except BackendError:
                continue
            if found is not None:
                records.append(found)
        return records

    def _launch(self, name: str, record: DomainRecord, caps, paused: bool) -> None:
        child, offset = self._spawn(name, record, caps)
        self._configure(name, record, child, offset, self.driver.qemu_conf(), paused)

    def _spawn(self, name: str, record: DomainRecord, caps, extra_args=None) -> tuple[subprocess.Popen, int]:
        """QEMU started for ``record`` (``extra_args`` adjusts its argv); its pid is in the record, unsaved."""
        from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import cmdline as command
        from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import security
        from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.storage import resolve_volume_disks
        live, conf = record.live, self.driver.qemu_conf()
        if live is None:
            raise BackendError(f"domain {name!r}: the start record holds no definition")
        launch = self._prepare_host(name, record, live)
        monitor = None
        try:
            owner = (launch.owner.uid, launch.owner.gid) if launch.owner else None
            monitor = process.listen_monitor(record.monitor, owner)
            paths = self._paths(name, live, record.monitor, record.domain_dir, monitor_fd=monitor.fileno())
            argv, env = command.build_command(resolve_volume_disks(live, self.driver.volumes), caps, paths, conf)
            argv += process.runtime_args(paths.pidfile, self.layout.trace_file(name), caps.has_option("trace"))
            if extra_args is not None:
                argv = extra_args(argv)
            record.taints = command.taints(live)
            child, offset = process.spawn(argv, env, paths.log_file, tuple(security.exec_prefix(launch)),
                                          pass_fds=(monitor.fileno(),), place=security.spawning(launch))
        finally:
            launch.close()
            if monitor is not None:
                monitor.close()     # QEMU's copy is the only one: if QEMU dies, connecting fails at once
        # Not saved yet: should this run die before _configure's save, the next one finds this QEMU
        # by its pidfile and uuid (_kill_leftover), and QEMU is not trusted anyway.
        record.pid = child.pid
        record.starttime = process.start_time(child.pid)
        record.started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return child, offset

    def _prepare_host(self, name: str, record: DomainRecord, live: etree._Element) -> security.Launch:
        from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import firmware, security
        for leftover in (self.layout.pidfile(name), self.layout.trace_file(name), record.monitor):
            fileio.remove_quietly(leftover)
        fileio.make_private_dir(record.domain_dir)
        firmware.fill(live, self.layout.nvram_file(name))
        _copy_nvram_template(live, self.layout.nvram_file(name))
        others = [r.live for r in self._other_records(name) if r.active and r.live is not None]
        launch = security.prepare(self.driver.security_policy(), live, self.layout, name, record.domain_dir, others)
        self.warnings.extend(launch.warnings)
        try:
            # Saved before QEMU runs: whoever cleans up after this start gives the files back.
            record.security = launch.record()
            self._save(name, record)
            owner = (launch.owner.uid, launch.owner.gid) if launch.owner else None
            for iface in _tap_interfaces(live):
                mac = iface.find("mac")
                process.create_tap(iface.find("target").get("dev"), iface.find("source").get("bridge"),
                                   mac.get("address") if mac is not None else None, owner)
        except BaseException:
            launch.close()
            raise
        return launch

    def _paths(self, name: str, live: etree._Element, monitor: str, domain_dir: str,
               monitor_fd: int | None = None) -> LaunchPaths:
        """The paths of a run with this live XML, monitor and directory (``monitor_fd``: its listening socket)."""
        from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.cmdline import LaunchPaths
        ports = {g.get("type"): int(g.get("port")) for g in live.findall("devices/graphics")
                 if (g.get("port") or "-1") != "-1"}
        return LaunchPaths(
            monitor_socket=monitor, pidfile=self.layout.pidfile(name), domain_dir=domain_dir,
            log_file=self.layout.log_file(name), nvram=self.layout.nvram_file(name),
            vnc_port=ports.get("vnc"), spice_port=ports.get("spice"), monitor_fd=monitor_fd)

    def _configure(self, name, record, child, offset, conf, paused) -> None:
        """Connect to the paused QEMU, finish its set-up and let the guest run."""
        log_file = self.layout.log_file(name)
        try:
            with QMPClient.connect(record.monitor, timeout=STARTUP_TIMEOUT,
                                   alive=lambda: child.poll() is None, traffic=self._traffic(name)) as qmp:
                _set_passwords(qmp, record.live, conf)
                _record_ptys(qmp, record.live)
                if not paused:
                    qmp.execute("cont")
        except VirtError as exc:
            raise BackendError(f"domain {name!r} failed to start: {exc}{process.log_tail(log_file, offset)}") from exc
        record.state, record.reason = ("paused", "user") if paused else ("running", "booted")
        record.starter = record.starter_time = None
        # Not durable: after a host crash this QEMU is gone either way, and the durable "starting up"
        # record that may come back in its place is cleaned up just the same.
        self._save(name, record, durable=False)

    def _abort_start(self, name: str, record: DomainRecord) -> None:
        if record.pid:
            try:
                process.kill(record.pid, record.starttime, grace=2.0)
            except BackendError:
                pass
        try:
            self._cleanup(name, record, "failed")
        except BackendError:
            pass    # the start error matters more than a tap that would not go away

    def shutdown(self, name: str) -> None:
        self._qmp_on_active(name, "shut down", "system_powerdown")

    def suspend(self, name: str) -> None:
        self._qmp_on_active(name, "pause", "stop", ("paused", "user"))

    def resume(self, name: str) -> None:
        self._qmp_on_active(name, "resume", "cont", ("running", "unpaused"))

    def _qmp_on_active(self, name: str, verb: str, command: str, after=None) -> None:
        with self._lock(name):
            record = self._active_record(name, verb)
            with self._monitor(name, record) as qmp:
                qmp.execute(command)
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
                qmp.execute("quit", timeout=MONITOR_TIMEOUT)
        except VirtError:
            return False
        return True

    def native_command(self, name: str) -> tuple[list[str], dict[str, str]]:
        """The command line a start would use, with placeholder runtime values as libvirt shows them."""
        from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import cmdline as command
        from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.storage import resolve_volume_disks
        config = self._config(name)
        if config is None:
            raise self.store.not_found(name)
        live = copy.deepcopy(config)
        live.set("id", "-1")
        for graphics in live.findall("devices/graphics"):
            if graphics.get("autoport") == "yes" or (graphics.get("port") or "-1") == "-1":
                graphics.set("port", str(VNC_PORT_MIN))
        _assign_taps(live, set())
        paths = self._paths(name, live, self.layout.monitor_socket(-1, name), self.layout.domain_dir(-1, name))
        return command.build_command(resolve_volume_disks(live, self.driver.volumes), self.driver.caps_for(live),
                                     paths, self.driver.qemu_conf())

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
        from ansible_collections.virtops.qemu.plugins.module_utils.model import sendkey as keycodes
        keys = [{"type": "number", "data": keycodes.to_qnum(codeset, code)} for code in codes]
        arguments: dict = {"keys": keys}
        if holdtime > 0:
            arguments["hold-time"] = holdtime
        with self._lock(name):
            record = self._active_record(name, "send keys to")
            with self._monitor(name, record) as qmp:
                qmp.execute("send-key", arguments)

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
        from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import migration
        return migration.run_phase(self, phase, name, params, check_mode)

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


def _runstate(qmp: QMPClient) -> str:
    """QEMU's run state; query-status returns a StatusInfo object: {"status": ..., "running": ...}."""
    return cast(dict, qmp.execute("query-status"))["status"]


def _uuid(domain) -> str | None:
    return None if domain is None else (domain.findtext("uuid") or "").strip() or None


def _id_from_dir(dirname: str) -> int | None:
    """The domain id in a ``domain-<id>-<short name>`` directory name."""
    parts = dirname.split("-", 2)
    return int(parts[1]) if len(parts) == 3 and parts[0] == "domain" and parts[1].isdigit() else None


def _with_secmodels(text: str, models: list[dict]) -> str:
    """The capabilities with libvirt's <secmodel> elements of the models in force."""
    root = parse(text, "capabilities", "capabilities")
    host = root.find("host")
    for old in host.findall("secmodel"):
        host.remove(old)
    for entry in models:
        node = sub(host, "secmodel")
        sub(node, "model").text = entry["model"]
        sub(node, "doi").text = entry["doi"]
        for virt_type, label in entry["baselabels"].items():
            sub(node, "baselabel", type=virt_type).text = label
    return to_string(root)


# -- start helpers ----------------------------------------------------------------
def _check_startable(domain, caps) -> None:
    if domain.get("type") == "kvm" and "kvm" not in (caps.accels or []):
        raise InvalidInput("domain type 'kvm' needs a usable /dev/kvm on this host; use type 'qemu' (TCG)",
                           "type")
    for iface in domain.findall("devices/interface"):
        kind = iface.get("type")
        if kind == "network" and not (iface.find("source") is not None and iface.find("source").get("network")):
            raise InvalidInput("a network interface needs <source network='...'/>", "devices/interface/source@network")
        if kind == "bridge" and not (iface.find("source") is not None and iface.find("source").get("bridge")):
            raise InvalidInput("a bridge interface needs <source bridge='...'/>", "devices/interface/source@bridge")


# What a portgroup may set that needs tc shaping, VLAN filtering or Open vSwitch, none of which this driver does.
_UNAPPLIED_PORTGROUP_SETTINGS = {"bandwidth": "a bandwidth limit", "vlan": "a VLAN tag",
                                 "virtualport": "a virtual port"}


def _refuse_unapplied_portgroup(network: str, name: str, network_xml: str) -> None:
    """A start that would leave out the portgroup's settings fails instead.

    An unknown portgroup passes, as on libvirt.
    """
    group = next((g for g in parse(network_xml, "network").findall("portgroup") if g.get("name") == name), None)
    for tag, what in _UNAPPLIED_PORTGROUP_SETTINGS.items():
        if group is not None and group.find(tag) is not None:
            raise InvalidInput(f"portgroup {name!r} of network {network!r} sets {what}, which the embedded "
                               "driver does not apply; use qemu:///system, or a portgroup without it",
                               "devices/interface/source@portgroup")


def _lowest_free(used: set[int]) -> int:
    domain_id = 1
    while domain_id in used:
        domain_id += 1
    return domain_id


def _ports_in(records: list[DomainRecord]) -> set[int]:
    ports = set()
    for record in records:
        if record.live is None:
            continue
        for graphics in record.live.findall("devices/graphics"):
            if (graphics.get("port") or "-1").isdigit():
                ports.add(int(graphics.get("port")))
    return ports


def _assign_ports(live, conf: dict, taken: set[int]) -> None:
    """Choose ports for autoport VNC/SPICE, recorded in the live XML like libvirt does."""
    first = int(conf.get("remote_display_port_min", VNC_PORT_MIN))
    last = int(conf.get("remote_display_port_max", 65535))
    for graphics in live.findall("devices/graphics"):
        kind = graphics.get("type")
        listen = graphics.find("listen")
        if kind not in ("vnc", "spice") or (listen is not None and listen.get("type") in ("socket", "none")):
            continue
        if graphics.get("autoport") != "yes" and (graphics.get("port") or "-1") != "-1":
            continue
        address = (listen.get("address") if listen is not None else None) or graphics.get("listen") \
            or conf.get(f"{kind}_listen", "127.0.0.1")
        port = process.free_port(address, first, last, taken)
        taken.add(port)
        graphics.set("port", str(port))


def _tap_interfaces(live) -> list:
    """Interfaces backed by a tap on a host bridge: type bridge, and type network once attached."""
    return [iface for iface in live.findall("devices/interface")
            if iface.get("type") in ("bridge", "network") and iface.find("source") is not None]


def _attach_networks(live, bridges: dict[str, str]) -> None:
    """<source network='N' bridge='virbrX'/> in the live XML, as libvirt shows an attached interface."""
    for source in live.findall("devices/interface[@type='network']/source"):
        source.set("bridge", bridges[source.get("network")])


def _assign_taps(live, taken: set[str]) -> list[str]:
    taps: list[str] = []
    for iface in _tap_interfaces(live):
        target = iface.find("target")
        if target is None:
            target = sub(iface, "target")
            iface.find("source").addnext(target)
        name = target.get("dev") or ""
        if not name or name.startswith(process.TAP_PREFIX):
            name = process.free_tap_name(taken | set(taps))
        target.set("dev", name)
        taps.append(name)
    return taps


def _copy_nvram_template(live, default_path: str) -> None:
    loader = live.find("os/loader")
    if loader is None or loader.get("readonly") != "yes":
        return
    nvram = live.find("os/nvram")
    path = (nvram.text or "").strip() if nvram is not None else ""
    path = path or default_path
    template = nvram.get("template") if nvram is not None else None
    if not os.path.exists(path):
        if not template:
            raise InvalidInput(f"NVRAM file {path} does not exist and <nvram> names no template",
                               "os/nvram@template")
        shutil.copyfile(template, path)
        os.chmod(path, 0o600)


def _set_passwords(qmp: QMPClient, live, conf: dict) -> None:
    for graphics in live.findall("devices/graphics"):
        kind = graphics.get("type")
        password = graphics.get("passwd") or conf.get(f"{kind}_password")
        if kind in ("vnc", "spice") and password:
            qmp.execute("set_password", {"protocol": kind, "password": password})


def _record_ptys(qmp: QMPClient, live) -> None:
    """Write the pty QEMU allocated into the live XML, as libvirt shows it."""
    serials = [s for s in live.findall("devices/serial") if s.get("type") == "pty"]
    if not serials:
        return
    # query-chardev returns a list of ChardevInfo objects: {"label": ..., "filename": ..., ...}.
    chardevs = cast(list, qmp.execute("query-chardev"))
    ptys = {c["label"]: c["filename"][4:] for c in chardevs if c.get("filename", "").startswith("pty:")}
    for serial in serials:
        port = serial.find("target").get("port", "0")
        path = ptys.get(f"charserial{port}")
        if path:
            _set_source_path(serial, path)
            for console in live.findall("devices/console[@type='pty']"):
                if console.find("target").get("port", "0") == port:
                    console.set("tty", path)
                    _set_source_path(console, path)


def _set_source_path(device, path: str) -> None:
    source = device.find("source")
    if source is None:
        source = sub(device, "source")
        device.insert(0, source)
    source.set("path", path)


def _make_dir(path: str) -> None:
    """A directory QEMU may pass through (0711) to the seed files it is given."""
    try:
        os.makedirs(path, mode=0o711, exist_ok=True)
    except OSError as exc:
        raise host_error(exc, "create", path) from exc
