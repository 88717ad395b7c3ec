# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Starting a domain's QEMU under the embedded driver.

A start reserves what the domain takes from the root (domain id, display
ports, tap names) in a "starting up" status record, prepares the host
(NVRAM, security labels, taps) and records what must be undone, spawns
QEMU paused with its monitor socket passed in, then sets it up over QMP and
lets the guest run.  A start that fails is undone.  The ``DomainLaunch``
layer of EmbedDomains; the command-line builder, firmware and security
managers are imported only when a QEMU is started.  Private to the collection.
"""

from __future__ import annotations

import copy
import os
import shutil
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from ansible_collections.virtops.qemu.plugins.module_utils import fileio
from ansible_collections.virtops.qemu.plugins.module_utils import qmp_commands as qmpc
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import process
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.layout import check_socket_path
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.recovery import DomainRecovery
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.state import DomainRecord
from ansible_collections.virtops.qemu.plugins.module_utils.errors import (
    BackendError,
    Conflict,
    InvalidInput,
    VirtError,
)
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import etree, parse, sub
from ansible_collections.virtops.qemu.plugins.module_utils.qmp import QMPClient

if TYPE_CHECKING:
    import subprocess

    from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import security
    from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.cmdline import LaunchPaths

STARTUP_TIMEOUT = 60.0
VNC_PORT_MIN = 5900


class DomainLaunch(DomainRecovery):
    """Starting a domain's QEMU; every method runs under the domain's lock."""

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
            check_socket_path(monitor, self.driver.uri.raw, "the monitor socket")
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
        live, conf = record.live, self.driver.qemu_conf()
        if live is None:
            raise BackendError(f"domain {name!r}: the start record holds no definition")
        launch = self._prepare_host(name, record, live)
        monitor = None
        try:
            owner = (launch.owner.uid, launch.owner.gid) if launch.owner else None
            monitor = process.listen_monitor(record.monitor, owner)
            paths = self._paths(name, live, record.monitor, record.domain_dir, monitor_fd=monitor.fileno())
            argv, env = command.build_command(self.driver.volume_sources(live), caps, paths, conf)
            argv += process.runtime_args(paths.pidfile, self.layout.trace_file(name), caps.has_option("trace"))
            if extra_args is not None:
                argv = extra_args(argv)
            record.taints = command.taints(live)
            child, offset = process.spawn(argv, env, paths.log_file, tuple(security.exec_prefix(launch)),
                                          pass_fds=(monitor.fileno(),), spawner=security.spawning(launch))
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
                    qmpc.cont(qmp)
        except VirtError as exc:
            raise BackendError(f"domain {name!r} failed to start: {exc}{process.log_tail(log_file, offset)}") from exc
        record.state, record.reason = ("paused", "user") if paused else ("running", "booted")
        record.starter = record.starter_time = None
        # Not durable: after a host crash this QEMU is gone either way, and the durable "starting up"
        # record that may come back in its place is cleaned up just the same.
        self._save(name, record, durable=False)
        self._started[name] = (record.pid, time.monotonic())

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

    def native_command(self, name: str) -> tuple[list[str], dict[str, str]]:
        """The command line a start would use, with placeholder runtime values as libvirt shows them."""
        from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import cmdline as command
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
        return command.build_command(self.driver.volume_sources(live), self.driver.caps_for(live), paths,
                                     self.driver.qemu_conf())


# -- start helpers ----------------------------------------------------------------
def check_startable(domain, caps) -> None:
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
            qmpc.set_password(qmp, kind, password)


def _record_ptys(qmp: QMPClient, live) -> None:
    """Write the pty QEMU allocated into the live XML, as libvirt shows it."""
    serials = [s for s in live.findall("devices/serial") if s.get("type") == "pty"]
    if not serials:
        return
    ptys = {c["label"]: c["filename"][4:] for c in qmpc.query_chardev(qmp)
            if c.get("filename", "").startswith("pty:")}
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
