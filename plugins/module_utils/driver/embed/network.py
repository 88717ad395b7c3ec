# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The embedded driver's virtual networks, made on the host as libvirt's bridge driver makes them.

Definitions live in ``etc/network`` (a DefinitionStore), completed at
define as libvirt completes them: uuid, a free ``virbrN`` bridge with STP
on and no forward delay, a MAC, the NAT port range.  Starting a network
creates its bridge with its addresses, its nftables table (firewall.py)
and its dnsmasq (dnsmasq.py), in the network namespace of the caller.
What a start makes is named in the status record before it is made
(netstate.py), so a network left half-made by a killed run, or one whose
bridge, table or dnsmasq has gone, is torn down completely by the next
call that looks at it and reported inactive with a warning.  Every
operation on a network holds that network's lock; starts also hold the
networks' driver lock while they check and take a bridge name and subnets.
Private to the collection.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import os
import uuid

from ansible_collections.virtops.qemu.plugins.module_utils import fileio
from ansible_collections.virtops.qemu.plugins.module_utils.driver.base import NETWORK_UPDATE_SECTIONS, Lease, Networks
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import dnsmasq, firewall, netstate, process
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.netstate import ACTIVE, STARTING, NetworkRecord
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.store import StoredResources
from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError, Conflict, InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.model.network import ip_interface, subnets
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import XmlNode, etree, parse, to_string

MAX_BRIDGE_NAME = 15        # IFNAMSIZ - 1
BRIDGE_PREFIX = "virbr"
# Forward modes that need macvtap or a PCI device; the embedded driver makes bridges only.
UNSUPPORTED_MODES = ("passthrough", "private", "vepa", "hostdev")
SUPPORTED_MODES = ("none", "nat", "route", "open", "bridge")
# Forward modes whose networks make the host forward packets.
FORWARDING_MODES = ("nat", "route")
# virNetworkUpdate section -> (the element it changes, the container element below the network or its <ip>).
_SECTIONS = {"ip-dhcp-host": ("host", "dhcp"), "ip-dhcp-range": ("range", "dhcp"), "dns-host": ("host", "dns"),
             "dns-txt": ("txt", "dns"), "dns-srv": ("srv", "dns"), "portgroup": ("portgroup", None)}
_COMMANDS = ("add-first", "add-last", "delete", "modify")


class EmbedNetworks(StoredResources[NetworkRecord], Networks):
    """The networks of one embed root."""

    records = netstate.RECORDS

    def __init__(self, driver):
        super().__init__(driver)
        # Inactive networks found without leftovers of a lost status record: later reads in the same run
        # skip the search (a scan of /proc).  A start or stop here searches again afterwards.
        self._no_leftovers: set[str] = set()

    # -- helpers ------------------------------------------------------------
    def files(self, name: str) -> dnsmasq.Files:
        suffix = self.layout.dnsmasq_file
        return dnsmasq.Files(conf=suffix(name, "conf"), hostsfile=suffix(name, "hostsfile"),
                             addnhosts=suffix(name, "addnhosts"), leases=suffix(name, "leases"),
                             pidfile=self.layout.network_pidfile(name))

    def _config(self, name: str) -> XmlNode:
        config = self.store.read(name)
        if config is None:
            raise self.store.not_found(name)
        return config

    # -- the protocol -----------------------------------------------------------
    def exists(self, name: str) -> bool:
        if self.store.defined(name):
            return True
        try:
            return self._record(name) is not None
        except BackendError:
            return True     # listed, so that its status names the unreadable file

    # -- the hooks of StoredResources ---------------------------------------------
    def _replaced(self, name: str) -> XmlNode | None:
        current = self.store.read(name)
        if current is None:
            current = self._transient_live(name)    # defining a transient network keeps its uuid and bridge
        return current

    def _transient_live(self, name: str) -> XmlNode | None:
        try:
            record = self._record(name)
        except BackendError:
            return None
        return record.live if record is not None else None

    def _complete(self, name: str, desired: XmlNode, current: XmlNode | None) -> XmlNode:
        return self._postparse(name, desired, current)

    def _refreshed(self, name: str) -> NetworkRecord | None:
        return self._refresh(name)

    def _undefined(self, name: str, config: XmlNode | None, active: bool) -> None:
        if not active:
            self._forget(name)

    def persistent(self, name: str) -> bool:
        if not self.exists(name):
            raise self.store.not_found(name)
        return self.store.defined(name)

    def active(self, name: str) -> bool:
        with self._lock(name):
            return self._refresh(name) is not None

    def bridge(self, name: str) -> str | None:
        with self._lock(name):
            record = self._refresh(name)
        return record.bridge if record is not None else None

    def start(self, name: str) -> None:
        with self._lock(name):
            if self._refresh(name) is not None:
                raise Conflict(f"network {name!r} is already active")
            self._no_leftovers.discard(name)     # a failed start may leave something behind
            record = self._reserve(name, self._config(name))
            try:
                self._bring_up(name, record)
            except BaseException:
                self._abort_start(name, record)
                raise

    def stop(self, name: str) -> None:
        with self._lock(name):
            self._no_leftovers.discard(name)
            record = self._active_here(name, "stop")
            self._teardown(name, record)

    def leases(self, name: str) -> list[Lease]:
        with self._lock(name):
            record = self._refresh(name)
        if record is None or record.live is None or not record.dnsmasq:
            return []
        text = fileio.read_text(self.files(name).leases) or ""
        return dnsmasq.parse_leases(text, lambda address: _prefix_of(record.live, address))

    # -- define -------------------------------------------------------------------
    def _postparse(self, name: str, desired: XmlNode, current: XmlNode | None) -> XmlNode:
        tree = copy.deepcopy(desired)
        mode = check_forward(tree)
        if tree.find("forward") is not None:
            tree.find("forward").set("mode", mode)     # libvirt spells out its default, nat
        _carry_over(tree, current)
        if tree.find("uuid") is None:
            _insert_after(tree, _element("uuid", text=str(uuid.uuid4())), ("name",))
        if mode != "bridge":
            complete_bridge(tree, lambda: self._free_bridge(name))
            if tree.find("mac") is None:
                _insert_after(tree, _element("mac", address=_random_mac()), ("bridge", "forward", "uuid"))
        if mode == "nat":
            complete_nat(tree)
        check_addresses(tree)
        self._check_bridge_unique(name, tree)
        return tree

    def _other_bridges(self, name: str) -> dict[str, str]:
        """Bridge name -> the other network of this root that names it (definition or live)."""
        used = {}
        for other in self.store.names_on_disk() - {name}:
            for tree in self._trees_of(other):
                bridge = tree.find("bridge")
                if bridge is not None and bridge.get("name"):
                    used[bridge.get("name")] = other
        return used

    def _trees_of(self, name: str) -> list[XmlNode]:
        trees: list[XmlNode] = []
        try:
            config = self.store.read(name)
            record = self._record(name)
        except BackendError:
            return trees
        if config is not None:
            trees.append(config)
        if record is not None and record.live is not None:
            trees.append(record.live)
        return trees

    def _free_bridge(self, name: str) -> str:
        taken = set(self._other_bridges(name)) | process.link_names()
        for number in range(0, 65536):
            if f"{BRIDGE_PREFIX}{number}" not in taken:
                return f"{BRIDGE_PREFIX}{number}"
        raise BackendError("no free virbrN bridge name")

    def _check_bridge_unique(self, name: str, tree: XmlNode) -> None:
        if firewall.forward_mode(tree) == "bridge":
            return
        bridge = tree.find("bridge").get("name")
        other = self._other_bridges(name).get(bridge)
        if other:
            raise InvalidInput(f"bridge name {bridge!r} is already used by network {other!r}", "bridge@name")

    # -- start --------------------------------------------------------------------
    def _reserve(self, name: str, config: XmlNode) -> NetworkRecord:
        """Check the bridge and subnets against the host and the other networks, and record the start."""
        live = copy.deepcopy(config)
        mode = check_forward(live)
        bridge = live.find("bridge").get("name")
        with fileio.file_lock(self.layout.network_driver_lock_file(), f"networks of {self.layout.root}"):
            if mode == "bridge":
                if not process.is_bridge(bridge):
                    raise InvalidInput(f"network {name!r}: bridge {bridge!r} does not exist on this host",
                                       "bridge@name")
            else:
                self._check_free(name, live, bridge)
            record = NetworkRecord(
                STARTING, bridge, bridge_created=mode != "bridge",
                table=firewall.table_name(bridge) if firewall.needs_rules(live) else "",
                dnsmasq=mode != "bridge" and live.find("ip") is not None,
                starter=os.getpid(), starter_time=process.start_time(os.getpid()), live=live,
                netns=netstate.current_netns())
            self._save(name, record)
        return record

    def _check_free(self, name: str, live: XmlNode, bridge: str) -> None:
        if bridge in process.link_names():
            raise Conflict(f"network {name!r}: a link named {bridge!r} already exists on this host")
        mine = subnets(live)
        for other, record in self._active_records(name):
            for subnet in subnets(record.live):
                for own in mine:
                    if own.overlaps(subnet):
                        raise Conflict(f"network {name!r}: subnet {own} overlaps subnet {subnet} "
                                       f"of active network {other!r}")
        for own in mine:
            for route, dev in host_routes(own.version):
                if route.subnet_of(own):    # equal or more specific: the bridge's route would clash with it
                    raise Conflict(f"network {name!r}: subnet {own} is already in use on this host "
                                   f"(route {route} dev {dev})")

    def _active_records(self, name: str) -> list[tuple[str, NetworkRecord]]:
        found = []
        for other in self.store.names_on_disk() - {name}:
            try:
                record = self._record(other)
            except BackendError:
                continue
            if record is not None and record.live is not None:
                found.append((other, record))
        return found

    def _bring_up(self, name: str, record: NetworkRecord) -> None:
        live = record.live
        if record.bridge_created:
            create_bridge(live, record.bridge)
        if firewall.forward_mode(live) in FORWARDING_MODES:
            enable_forwarding(live)
        if record.table:
            firewall.load(firewall.ruleset(live, record.bridge))
        if record.dnsmasq:
            self._write_dnsmasq_files(name, record)
            record.pid, record.starttime = dnsmasq.start(self.files(name))
        record.state, record.starter, record.starter_time = ACTIVE, None, None
        self._save(name, record)

    def _write_dnsmasq_files(self, name: str, record: NetworkRecord) -> None:
        """All three files rendered (and checked) before the first is written."""
        files = self.files(name)
        contents = {files.conf: dnsmasq.render_conf(record.live, record.bridge, files),
                    files.hostsfile: dnsmasq.render_hostsfile(record.live),
                    files.addnhosts: dnsmasq.render_addnhosts(record.live)}
        for path, text in contents.items():
            fileio.atomic_write(path, text, mode=0o600)

    def _abort_start(self, name: str, record: NetworkRecord) -> None:
        try:
            self._teardown(name, record)
        except BackendError:
            pass    # the start error matters more

    # -- state and teardown ------------------------------------------------------------
    def _refresh(self, name: str) -> NetworkRecord | None:
        """The record of an active network; None for an inactive one, after tearing down a broken one."""
        record = self._record(name)
        if record is None:
            if not self.store.defined(name):
                raise self.store.not_found(name)
            self._clean_up_unrecorded(name)
            return None
        if not _here(record):
            return self._refresh_elsewhere(name, record)
        if record.state == STARTING:
            if record.starter != os.getpid() and process.is_alive(record.starter, record.starter_time):
                return record       # a start in progress in a run that is still alive
            self._clean_up_broken(name, record, "its start did not finish")
            return None
        missing = self._missing(name, record)
        if missing:
            self._clean_up_broken(name, record, f"{', '.join(missing)} had gone")
            return None
        return record

    def _refresh_elsewhere(self, name: str, record: NetworkRecord) -> NetworkRecord | None:
        """A network of another namespace: its bridge and table are invisible from here, its dnsmasq is not.

        A dead dnsmasq means that namespace's network is broken (or the namespace is gone): the record
        goes, the bridge and table are left to that namespace.
        """
        if record.state != ACTIVE or not record.dnsmasq or \
                dnsmasq.runs(record.pid, record.starttime, self.files(name).conf):
            return record
        self._drop_record(name)
        if not self.store.defined(name):
            self._forget(name)
        self.warnings.append(f"network {name!r} was started in network namespace net:[{record.netns}] and its "
                             f"dnsmasq (pid {record.pid}) has gone; it is inactive, and its bridge and firewall "
                             "table, if that namespace still exists, were left there")
        return None

    def check_reachable(self, name: str, verb: str) -> None:
        with self._lock(name):
            record = self._refresh(name)
        if record is not None and not _here(record):
            raise _elsewhere(name, record, verb)

    def _active_here(self, name: str, verb: str) -> NetworkRecord:
        """The record of a network active in the caller's network namespace, for changing it."""
        record = self._refresh(name)
        if record is None or record.live is None:
            raise Conflict(f"network {name!r} is not active")
        if not _here(record):
            raise _elsewhere(name, record, verb)
        return record

    def _missing(self, name: str, record: NetworkRecord) -> list[str]:
        missing = []
        if record.bridge_created and record.bridge not in process.link_names():
            missing.append(f"bridge {record.bridge}")
        if record.table and not firewall.exists(record.table):
            missing.append(f"nftables table {firewall.FAMILY} {record.table}")
        if record.dnsmasq and not dnsmasq.runs(record.pid, record.starttime, self.files(name).conf):
            missing.append(f"dnsmasq (pid {record.pid})")
        return missing

    def _clean_up_unrecorded(self, name: str) -> None:
        """Tear down what a start made for a network whose status record was lost, and warn.

        The driver's own leftovers are known by name: the definition's bridge when it also has the
        definition's MAC, the ``virtops_<bridge>`` table, a dnsmasq started with the network's
        configuration file; only those of the caller's namespace are reachable.  Cleaning rather
        than adopting: what the lost record said about the live network cannot be known.
        """
        if name in self._no_leftovers:
            return
        leftover = self._unrecorded_leftovers(name)
        if leftover is None:
            self._no_leftovers.add(name)
            return
        found = [f"bridge {leftover.bridge}"] * leftover.bridge_created + \
            [f"nftables table {firewall.FAMILY} {leftover.table}"] * bool(leftover.table) + \
            [f"dnsmasq (pid {leftover.pid})"] * bool(leftover.pid)
        self._teardown(name, leftover)
        self.warnings.append(f"network {name!r} had lost its status record ({self.paths.status_file(name)}) "
                             f"while its {', '.join(found)} remained; they were removed and it is inactive")

    def _unrecorded_leftovers(self, name: str) -> NetworkRecord | None:
        """A record naming the leftovers of an unrecorded start found in this namespace; None without any.

        A bridge of another MAC is not ours; a table counts only next to our bridge or dnsmasq.
        """
        try:
            config = self.store.read(name)
        except BackendError:
            return None     # an unreadable definition names no bridge
        if config is None or firewall.forward_mode(config) == "bridge" or config.find("bridge") is None:
            return None
        bridge = config.find("bridge").get("name") or ""
        mac = config.find("mac")
        ours = bool(bridge) and mac is not None and process.link_address(bridge) == (mac.get("address") or "").lower()
        running = dnsmasq.find_running(self.files(name), netstate.current_netns())
        if not (ours or running):
            return None     # a table alone might be another root's network with the same bridge name
        table = firewall.table_name(bridge) if bridge and _table_exists(firewall.table_name(bridge)) else ""
        pid, starttime = running or (None, None)
        return NetworkRecord(ACTIVE, bridge, bridge_created=ours, table=table, dnsmasq=running is not None,
                             pid=pid, starttime=starttime, netns=netstate.current_netns())

    def _clean_up_broken(self, name: str, record: NetworkRecord, why: str) -> None:
        self._teardown(name, record)
        self.warnings.append(f"network {name!r} was left half-made ({why}); "
                             "its bridge, dnsmasq and firewall table were removed and it is inactive")

    def _teardown(self, name: str, record: NetworkRecord) -> None:
        """Remove everything the record names, then the record; every step is tried."""
        errors = []
        for step in (self._stop_dnsmasq, self._remove_table, self._remove_bridge):
            try:
                step(name, record)
            except BackendError as exc:
                errors.append(str(exc))
        files = self.files(name)
        for leftover in (files.pidfile, files.conf, files.hostsfile, files.addnhosts):
            fileio.remove_quietly(leftover)
        self._drop_record(name)
        if not self.store.defined(name):
            self._forget(name)
        if errors:
            raise BackendError(f"network {name!r} stopped but cleaning up failed: {'; '.join(errors)}")

    def _stop_dnsmasq(self, name: str, record: NetworkRecord) -> None:
        files = self.files(name)
        if record.pid and dnsmasq.runs(record.pid, record.starttime, files.conf):
            dnsmasq.stop(record.pid, record.starttime)
        elif record.dnsmasq:
            found = dnsmasq.find(files)     # started by a run killed before it recorded the pid
            if found:
                dnsmasq.stop(*found)

    @staticmethod
    def _remove_table(_name: str, record: NetworkRecord) -> None:
        if record.table:
            firewall.delete(record.table)

    @staticmethod
    def _remove_bridge(_name: str, record: NetworkRecord) -> None:
        if record.bridge_created and record.bridge in process.link_names():
            process.run_ip("link", "del", "dev", record.bridge)

    def _forget(self, name: str) -> None:
        """A network with neither definition nor status: its leases and lock go too."""
        fileio.remove_quietly(self.files(name).leases)
        self.store.remove_lock(name)

    # -- live update ----------------------------------------------------------------
    def update(self, name: str, command: str, section: str, xml: str, parent_index: int = -1) -> None:
        if section not in NETWORK_UPDATE_SECTIONS:
            raise InvalidInput(f"cannot update section {section!r} of a running network; "
                               f"sections: {', '.join(NETWORK_UPDATE_SECTIONS)}", "section")
        if command not in _COMMANDS:
            raise InvalidInput(f"unknown update command {command!r}; commands: {', '.join(_COMMANDS)}", "command")
        tag, _container = _SECTIONS[section]
        item = parse(xml, tag)
        with self._lock(name):
            record = self._active_here(name, "update")
            live = copy.deepcopy(record.live)
            apply_update(live, command, section, item, parent_index)
            check_addresses(live, option="xml")
            from ansible_collections.virtops.qemu.plugins.module_utils.model import schema
            schema.validate(live, "network", what="the updated network")
            record.live = live
            self._apply_live(name, record, section)

    def _apply_live(self, name: str, record: NetworkRecord, section: str) -> None:
        """Tell dnsmasq: SIGHUP for hosts files, a restart for its configuration."""
        if not record.dnsmasq or section == "portgroup":
            self._save(name, record)
            return
        self._write_dnsmasq_files(name, record)
        if section in ("ip-dhcp-host", "dns-host") and record.pid and record.starttime:
            dnsmasq.reload(record.pid, record.starttime)
        else:
            self._stop_dnsmasq(name, record)
            record.pid = record.starttime = None
            self._save(name, record)
            record.pid, record.starttime = dnsmasq.start(self.files(name))
        self._save(name, record)


def _table_exists(table: str) -> bool:
    try:
        return firewall.exists(table)
    except BackendError:
        return False    # no nft: no table either


def _here(record: NetworkRecord) -> bool:
    return record.netns is None or record.netns == netstate.current_netns()


def _elsewhere(name: str, record: NetworkRecord, verb: str) -> Conflict:
    return Conflict(f"cannot {verb} network {name!r}: it was started in another network namespace "
                    f"(net:[{record.netns}]); run in that namespace")


# -- definition checks and defaults ------------------------------------------------------
def _element(tag: str, text: str | None = None, **attrib) -> XmlNode:
    node = etree.Element(tag, {k: v for k, v in attrib.items() if v is not None})
    node.text = text
    return node


def _insert_after(tree: XmlNode, node: XmlNode, preceding: tuple[str, ...]) -> XmlNode:
    """Put ``node`` after the first of ``preceding`` the tree has (libvirt's element order), else first."""
    for tag in preceding:
        anchor = tree.find(tag)
        if anchor is not None:
            anchor.addnext(node)
            return node
    tree.insert(0, node)
    return node


def check_forward(tree: XmlNode) -> str:
    """The network's forward mode; InvalidInput for what the embedded driver cannot make."""
    mode = firewall.forward_mode(tree)
    if mode in UNSUPPORTED_MODES:
        raise InvalidInput(f"forward mode {mode!r} is not supported by the embedded driver "
                           "(it makes bridges; use nat, route, open, bridge or no forward)", "forward@mode")
    if mode not in SUPPORTED_MODES:
        raise InvalidInput(f"unknown forward mode {mode!r}", "forward@mode")
    if mode == "bridge":
        bridge = tree.find("bridge")
        if bridge is None or not bridge.get("name"):
            raise InvalidInput("forward mode 'bridge' on the embedded driver needs <bridge name='...'/>, "
                               "an existing host bridge (macvtap is not supported)", "bridge@name")
        if tree.find("ip") is not None:
            raise InvalidInput("a network with forward mode 'bridge' has no <ip>: the host bridge's "
                               "own network serves its guests", "ip")
    return mode


def _carry_over(tree: XmlNode, current: XmlNode | None) -> None:
    """Keep the uuid, bridge name and MAC a redefinition leaves out, as libvirt does."""
    if current is None:
        return
    if tree.find("uuid") is None and current.find("uuid") is not None:
        _insert_after(tree, copy.deepcopy(current.find("uuid")), ("name",))
    old_bridge = current.find("bridge")
    if old_bridge is not None and old_bridge.get("name") and firewall.forward_mode(tree) != "bridge":
        bridge = tree.find("bridge")
        if bridge is None:
            bridge = _insert_after(tree, _element("bridge"), ("forward", "uuid"))
        if not bridge.get("name"):
            bridge.set("name", old_bridge.get("name"))
    if tree.find("mac") is None and current.find("mac") is not None:
        _insert_after(tree, copy.deepcopy(current.find("mac")), ("bridge", "forward", "uuid"))


def complete_bridge(tree: XmlNode, free_name) -> None:
    """A bridge name (the lowest free virbrN when none is given), stp on and delay 0."""
    bridge = tree.find("bridge")
    if bridge is None:
        bridge = _insert_after(tree, _element("bridge"), ("forward", "uuid"))
    name = bridge.get("name") or free_name()
    size = len(os.fsencode(name))
    if size > MAX_BRIDGE_NAME:
        raise InvalidInput(f"bridge name {name!r} is {size} bytes; Linux allows at most {MAX_BRIDGE_NAME}",
                           "bridge@name")
    bridge.set("name", name)
    if bridge.get("stp") is None:
        bridge.set("stp", "on")
    if bridge.get("delay") is None:
        bridge.set("delay", "0")


def complete_nat(tree: XmlNode) -> None:
    forward = tree.find("forward")
    nat = forward.find("nat")
    if nat is None:
        nat = etree.SubElement(forward, "nat")
    if nat.find("port") is None:
        etree.SubElement(nat, "port", start="1024", end="65535")


def _random_mac() -> str:
    return "52:54:00:" + ":".join(f"{octet:02x}" for octet in os.urandom(3))


def check_addresses(tree: XmlNode, option: str = "ip") -> None:
    """Addresses that parse; DHCP ranges and hosts inside their subnet; hosts with a MAC, id or name."""
    for ip in tree.findall("ip"):
        try:
            subnet = ip_interface(ip).network
        except ValueError as exc:
            raise InvalidInput(f"bad address {ip.get('address')!r}: {exc}", f"{option}@address") from exc
        for dhcp_range in ip.findall("dhcp/range"):
            _check_range(dhcp_range, subnet, option)
        for host in ip.findall("dhcp/host"):
            _check_host(host, subnet, option)


def _address(text: str | None, where: str):
    try:
        return ipaddress.ip_address(text or "")
    except ValueError as exc:
        raise InvalidInput(f"bad address {text!r}", where) from exc


def _check_range(dhcp_range: XmlNode, subnet, option: str) -> None:
    where = f"{option}/dhcp/range"
    start, end = _address(dhcp_range.get("start"), where), _address(dhcp_range.get("end"), where)
    if start not in subnet or end not in subnet:
        raise InvalidInput(f"DHCP range {start} - {end} is not inside the subnet {subnet}", where)
    if int(start) > int(end):
        raise InvalidInput(f"DHCP range start {start} is after its end {end}", where)


def _check_host(host: XmlNode, subnet, option: str) -> None:
    where = f"{option}/dhcp/host"
    if not (host.get("mac") or host.get("name") or host.get("id")):
        raise InvalidInput("a DHCP host needs a mac or a name", where)
    if host.get("ip") and _address(host.get("ip"), where) not in subnet:
        raise InvalidInput(f"DHCP host address {host.get('ip')} is not inside the subnet {subnet}", where)


# -- host state ------------------------------------------------------------------------------
def _prefix_of(tree: XmlNode, address: str) -> int | None:
    try:
        wanted = ipaddress.ip_address(address)
    except ValueError:
        return None
    for subnet in subnets(tree):
        if wanted in subnet:
            return subnet.prefixlen
    return None


def host_routes(version: int) -> list[tuple]:
    """Unicast routes of the main table of the caller's namespace: (network, dev), default route left out."""
    output = process.run_ip("-j", f"-{version}", "route", "show", "table", "main")
    routes = []
    for route in json.loads(output or "[]"):
        destination = route.get("dst", "default")
        if destination == "default" or route.get("type", "unicast") != "unicast":
            continue
        network = ipaddress.ip_network(destination, strict=False)
        if network.is_link_local or network.is_multicast:
            continue
        routes.append((network, route.get("dev", "?")))
    return routes


def create_bridge(live: XmlNode, bridge: str) -> None:
    """ip link add with STP, delay, MTU and MAC, then the addresses, then up."""
    settings = live.find("bridge")
    args = ["link", "add", "name", bridge]
    mac = live.find("mac")
    if mac is not None and mac.get("address"):
        args += ["address", mac.get("address")]
    mtu = live.find("mtu")
    if mtu is not None and mtu.get("size"):
        args += ["mtu", mtu.get("size")]
    # forward_delay is in hundredths of a second; it is set before STP, which needs at least 2 s.
    args += ["type", "bridge", "forward_delay", str(int(settings.get("delay") or "0") * 100),
             "stp_state", "0" if settings.get("stp") == "off" else "1"]
    process.run_ip(*args)
    for ip in live.findall("ip"):
        interface = ip_interface(ip)
        extra = ["broadcast", "+"] if interface.version == 4 else []
        process.run_ip("addr", "add", str(interface), *extra, "dev", bridge)
    process.run_ip("link", "set", "dev", bridge, "up")


def enable_forwarding(live: XmlNode) -> None:
    """The namespace forwards IPv4 (and IPv6 when the network has an IPv6 subnet)."""
    settings = ["/proc/sys/net/ipv4/ip_forward"]
    if any(subnet.version == 6 for subnet in subnets(live)):
        settings.append("/proc/sys/net/ipv6/conf/all/forwarding")
    for path in settings:
        try:
            with open(path, "r+", encoding="ascii") as handle:
                if handle.read().strip() != "1":
                    handle.seek(0)
                    handle.write("1\n")
        except OSError as exc:
            raise BackendError(f"cannot enable forwarding ({path}): {exc.strerror or exc}") from exc


# -- live update -------------------------------------------------------------------------------
def apply_update(live: XmlNode, command: str, section: str, item: XmlNode, parent_index: int) -> None:
    """Change the live network as virNetworkUpdate does for one element of one section."""
    tag, _container_tag = _SECTIONS[section]
    container = _container(live, section, item, parent_index)
    match = _matching(container, tag, section, item)
    if command in ("delete", "modify"):
        if match is None:
            raise InvalidInput(f"no {section} entry matches {to_string(item).strip()}", "xml")
        if command == "modify":
            match.addnext(item)
        container.remove(match)
        return
    if match is not None:
        raise InvalidInput(f"the network already has a {section} entry matching {to_string(item).strip()}", "xml")
    siblings = container.findall(tag)
    if command == "add-first" and siblings:
        siblings[0].addprevious(item)
    elif siblings:
        siblings[-1].addnext(item)
    else:
        container.append(item)


def _container(live: XmlNode, section: str, item: XmlNode, parent_index: int) -> XmlNode:
    """The element holding the section's entries, created empty when missing (a failed update is discarded)."""
    _tag, container_tag = _SECTIONS[section]
    if container_tag is None:
        return live
    parent = live if container_tag == "dns" else _dhcp_ip(live, item, parent_index)
    container = parent.find(container_tag)
    if container is None:
        container = etree.SubElement(parent, container_tag)
        if container_tag == "dns" and live.find("ip") is not None:
            live.find("ip").addprevious(container)
    return container


def _dhcp_ip(live: XmlNode, item: XmlNode, parent_index: int) -> XmlNode:
    """The <ip> holding a DHCP host or range: by index, or the first of the item's family (with DHCP first)."""
    ips = live.findall("ip")
    if parent_index >= 0:
        if parent_index >= len(ips):
            raise InvalidInput(f"the network has no <ip> number {parent_index}", "parent_index")
        return ips[parent_index]
    address = item.get("ip") or item.get("start") or ""
    family = "ipv6" if ":" in address or item.get("id") else "ipv4"
    candidates = [ip for ip in ips if dnsmasq.ip_family(ip) == family]
    with_dhcp = [ip for ip in candidates if ip.find("dhcp") is not None]
    if not (with_dhcp or candidates):
        raise InvalidInput(f"the network has no {family} address for this DHCP entry", "xml")
    return (with_dhcp or candidates)[0]


def _matching(container: XmlNode, tag: str, section: str, item: XmlNode) -> XmlNode | None:
    key = _key(section, item)
    for existing in container.findall(tag):
        if _key(section, existing) == key:
            return existing
    return None


def _key(section: str, node: XmlNode) -> tuple:
    if section == "ip-dhcp-host":
        for attribute in ("mac", "id", "name", "ip"):
            if node.get(attribute):
                return (attribute, node.get(attribute).lower())
        return ()
    attributes = {"ip-dhcp-range": ("start", "end"), "dns-host": ("ip",), "dns-txt": ("name",),
                  "dns-srv": ("service", "protocol", "domain", "target"), "portgroup": ("name",)}[section]
    return tuple(node.get(attribute) for attribute in attributes)
