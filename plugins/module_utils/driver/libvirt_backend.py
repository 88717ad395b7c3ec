# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The libvirt backend: the driver interface on libvirt's Python bindings.

Private to the collection.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shlex
import tempfile
from abc import abstractmethod
from typing import TYPE_CHECKING

from ansible_collections.virtops.qemu.plugins.module_utils.driver.base import (
    DOMAIN_STATES,
    DomainRuntime,
    Domains,
    DomainStatus,
    Driver,
    Lease,
    Networks,
    Pools,
    PoolSpace,
    Resources,
    SecurityLabel,
    Snapshots,
    Volumes,
)
from ansible_collections.virtops.qemu.plugins.module_utils.errors import (
    BackendError,
    Conflict,
    InvalidInput,
    MissingDependency,
    NotFound,
    VirtError,
)
from ansible_collections.virtops.qemu.plugins.module_utils.lazy import load_part
from ansible_collections.virtops.qemu.plugins.module_utils.model import kinds
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import parse, to_string

if TYPE_CHECKING:
    from ansible_collections.virtops.qemu.plugins.module_utils.model.volume import ImageSource

try:
    import libvirt
    HAS_LIBVIRT = True
except ImportError:  # pragma: no cover - depends on the host
    libvirt = None
    HAS_LIBVIRT = False

# virDomain*Reason words, indexed by the reason code of each state.
STATE_REASONS = {
    "running": ("unknown", "booted", "migrated", "restored", "from snapshot", "unpaused",
                "migration canceled", "save canceled", "wakeup", "crashed", "post-copy",
                "post-copy failed"),
    "blocked": ("unknown",),
    "paused": ("unknown", "user", "migrating", "saving", "dumping", "I/O error", "watchdog",
               "from snapshot", "shutting down", "creating snapshot", "crashed", "starting up",
               "post-copy", "post-copy failed", "api error"),
    "shutdown": ("unknown", "user"),
    "shutoff": ("unknown", "shutdown", "destroyed", "crashed", "migrated", "saved", "failed",
                "from snapshot", "daemon"),
    "crashed": ("unknown", "panicked"),
    "pmsuspended": ("unknown",),
    "nostate": ("unknown",),
}

_UNDEFINE_FLAG_NAMES = ("VIR_DOMAIN_UNDEFINE_MANAGED_SAVE", "VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA",
                        "VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA", "VIR_DOMAIN_UNDEFINE_NVRAM",
                        "VIR_DOMAIN_UNDEFINE_TPM")


_ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")

# The messages libvirtd keeps for each virDomainTaintFlags value ("tainted: <message>"),
# mapped back to the flag names libvirt writes into its status XML.
TAINT_MESSAGES = {
    "custom configuration parameters specified": "custom-argv",
    "custom monitor control commands issued": "custom-monitor",
    "running with undesirable elevated privileges": "high-privileges",
    "network configuration using opaque shell scripts": "shell-scripts",
    "potentially unsafe disk format probing": "disk-probing",
    "managing externally launched configuration": "external-launch",
    "potentially unsafe use of host CPU passthrough": "host-cpu",
    "configuration potentially modified by hook script": "hook-script",
    "use of host cdrom passthrough": "cdrom-passthrough",
    "custom device tree blob used": "custom-dtb",
    "custom guest agent control commands issued": "custom-ga-command",
    "hypervisor feature autodetection override": "custom-hypervisor-feature",
    "use of deprecated configuration settings": "deprecated-config",
    "custom device configuration": "custom-device",
}
# Where libvirtd's QEMU driver keeps its pidfiles, per local instance.
SYSTEM_RUN_DIR = "/run/libvirt/qemu"
ADDRESS_SOURCE_CODES = {"lease": "VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE",
                        "agent": "VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT",
                        "arp": "VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_ARP"}
_ADDRESS_FAMILIES = {0: "ipv4", 1: "ipv6"}     # virIPAddrType
AGENT_CHANNEL = "org.qemu.guest_agent.0"
# Where virt-install and virt-manager keep images of qemu:///system: the default place of seed files.
IMAGES_DIRECTORY = "/var/lib/libvirt/images"


def taint_flags(messages: list[str]) -> list[str]:
    """libvirt's taint flag names from the domain's "tainted: ..." messages; unknown ones verbatim."""
    flags = []
    for message in messages:
        text = message.split("tainted:", 1)[-1].strip()
        flag = TAINT_MESSAGES.get(text, text)
        if flag not in flags:
            flags.append(flag)
    return flags


def domain_taints(domain) -> list[str]:
    """The taint flags of a running domain; none where libvirt (< 7.1, or a remote libvirtd) cannot tell."""
    messages = getattr(domain, "messages", None)
    if messages is None:
        return []
    try:
        return taint_flags(messages(getattr(libvirt, "VIR_DOMAIN_MESSAGE_TAINTING", 2)))
    except libvirt.libvirtError:
        return []


def split_native_command(text: str) -> tuple[list[str], dict[str, str]]:
    """libvirt's shell-quoted "VAR=value ... /usr/bin/qemu-system-x86_64 -name ..." as argv and env."""
    words = shlex.split(text)
    env = {}
    while words and _ENV_ASSIGNMENT.match(words[0]):
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    return words, env


def _quiet(_ctx, _err):
    """libvirt prints every error to stderr by default; the exceptions say it all."""


def _not_found_codes() -> tuple[int, ...]:
    names = ("VIR_ERR_NO_DOMAIN", "VIR_ERR_NO_NETWORK", "VIR_ERR_NO_STORAGE_POOL", "VIR_ERR_NO_STORAGE_VOL")
    return tuple(getattr(libvirt, n) for n in names if hasattr(libvirt, n))


def call(what: str, fn, *args, definition: bool = False):
    """Call libvirt; ``definition`` says that a refusal is about the XML being defined."""
    try:
        return fn(*args)
    except libvirt.libvirtError as e:
        if e.get_error_code() in _not_found_codes():
            raise NotFound(f"cannot {what}: {e.get_error_message()}") from e
        if e.get_error_code() == libvirt.VIR_ERR_OPERATION_INVALID:
            # "domain is not running", "network is already active": the embedded driver's Conflict.
            raise Conflict(f"cannot {what}: {e.get_error_message()}") from e
        if definition and e.get_error_code() in (libvirt.VIR_ERR_XML_ERROR, libvirt.VIR_ERR_XML_DETAIL,
                                                 libvirt.VIR_ERR_CONFIG_UNSUPPORTED):
            raise InvalidInput(f"libvirt rejected the definition: {e.get_error_message()}", "xml") from e
        raise BackendError(f"cannot {what}: {e.get_error_message()}") from e


class LibvirtResources(Resources):
    """The protocol every kind shares, on libvirt's look-up/define/create/destroy calls.

    A kind names its connection methods (``virConnectListAll*``,
    ``*LookupByName``, ``*DefineXML``) and its XML and undefine flags.
    """

    _list_method = ""
    _lookup_method = ""
    _define_method = ""

    def __init__(self, conn):
        self.conn = conn

    def _object(self, name: str):
        return call(f"find {self.kind} {name!r}", getattr(self.conn, self._lookup_method), name)

    @abstractmethod
    def _xml_flags(self, inactive: bool) -> int:
        """The kind's XMLDesc flags; ``inactive`` asks for the persistent definition (its *_XML_INACTIVE)."""

    def _define_args(self, xml: str) -> tuple:
        return (xml,)

    def _undefine_object(self, obj) -> None:
        obj.undefine()

    def names(self) -> list[str]:
        found = call(f"list {self.kind}s", getattr(self.conn, self._list_method), 0)
        return sorted(o.name() for o in found)

    def exists(self, name: str) -> bool:
        try:
            self._object(name)
        except NotFound:
            return False
        return True

    def xml(self, name: str, inactive: bool = True) -> str:
        return call(f"read the XML of {name!r}", self._object(name).XMLDesc, self._xml_flags(inactive))

    def define(self, xml: str) -> None:
        call(f"define the {self.kind}", getattr(self.conn, self._define_method), *self._define_args(xml),
             definition=True)

    def undefine(self, name: str) -> None:
        call(f"undefine {name!r}", self._undefine_object, self._object(name))

    def autostart(self, name: str) -> bool:
        return bool(call(f"read autostart of {name!r}", self._object(name).autostart))

    def set_autostart(self, name: str, enabled: bool) -> None:
        call(f"set autostart of {name!r}", self._object(name).setAutostart, int(enabled))

    def active(self, name: str) -> bool:
        return bool(call(f"read the state of {name!r}", self._object(name).isActive))

    def start(self, name: str) -> None:
        call(f"start {name!r}", self._object(name).create)

    def stop(self, name: str) -> None:
        call(f"stop {name!r}", self._object(name).destroy)


class LibvirtDomains(LibvirtResources, Domains):
    _list_method = "listAllDomains"
    _lookup_method = "lookupByName"
    _define_method = "defineXMLFlags"

    def __init__(self, conn, uri):
        super().__init__(conn)
        self.uri = uri

    def _xml_flags(self, inactive: bool) -> int:
        flags = libvirt.VIR_DOMAIN_XML_SECURE
        return flags | libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else flags

    def _define_args(self, xml: str) -> tuple:
        return (xml, getattr(libvirt, "VIR_DOMAIN_DEFINE_VALIDATE", 0))

    def _undefine_object(self, obj) -> None:
        flags = 0
        for flag in _UNDEFINE_FLAG_NAMES:
            flags |= getattr(libvirt, flag, 0)
        obj.undefineFlags(flags)

    # -- life cycle -------------------------------------------------------
    def status(self, name: str) -> DomainStatus:
        state, reason = call(f"read the state of {name!r}", self._object(name).state)
        word = DOMAIN_STATES[state] if state < len(DOMAIN_STATES) else "nostate"
        reasons = STATE_REASONS.get(word, ("unknown",))
        return DomainStatus(word, reasons[reason] if reason < len(reasons) else "unknown")

    def runtime(self, name: str) -> DomainRuntime:
        domain = self._object(name)
        if not call(f"read the state of {name!r}", domain.isActive):
            return DomainRuntime(None, None, [])
        domain_id = call(f"read the id of {name!r}", domain.ID)
        return DomainRuntime(self._qemu_pid(name), domain_id if domain_id > 0 else None, domain_taints(domain))

    def _qemu_pid(self, name: str) -> int | None:
        """libvirt has no API for the QEMU pid; a local libvirtd keeps it in its pidfile."""
        run_dir = self._run_dir()
        if run_dir is None:
            return None
        try:
            with open(os.path.join(run_dir, f"{name}.pid"), encoding="ascii") as handle:
                pid = int(handle.read().strip())
        except (OSError, ValueError):
            return None
        return pid if os.path.exists(f"/proc/{pid}") else None

    def _run_dir(self) -> str | None:
        if not self.uri.is_local:
            return None
        if self.uri.instance == "system":
            return SYSTEM_RUN_DIR
        runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
        return os.path.join(runtime, "libvirt", "qemu", "run")

    def start(self, name: str, paused: bool = False) -> None:
        flags = libvirt.VIR_DOMAIN_START_PAUSED if paused else 0
        call(f"start {name!r}", self._object(name).createWithFlags, flags)

    def shutdown(self, name: str) -> None:
        call(f"shut down {name!r}", self._object(name).shutdownFlags, libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)

    def destroy(self, name: str) -> None:
        call(f"destroy {name!r}", self._object(name).destroy)

    # -- guest side ---------------------------------------------------------
    def interface_addresses(self, name: str, source: str) -> dict[str, list[dict]] | None:
        domain = self._object(name)
        if not call(f"read the state of {name!r}", domain.isActive):
            return None
        code = getattr(libvirt, ADDRESS_SOURCE_CODES[source])
        try:
            answer = domain.interfaceAddresses(code, 0) or {}
        except libvirt.libvirtError:
            return None     # no agent, no network with leases: this source has nothing to say
        found: dict[str, list[dict]] = {}
        for nic in answer.values():
            mac = (nic.get("hwaddr") or "").lower()
            found.setdefault(mac, []).extend(
                {"address": addr["addr"], "prefix": addr.get("prefix"), "family": _ADDRESS_FAMILIES.get(addr["type"])}
                for addr in nic.get("addrs") or [])
        return found

    def guest_agent(self, name: str) -> dict:
        domain = self._object(name)
        if not call(f"read the state of {name!r}", domain.isActive):
            return {"connected": False, "os": None}
        live = parse(self.xml(name, inactive=False), kinds.DOMAIN.tag)
        target = live.find(f"devices/channel/target[@name='{AGENT_CHANNEL}']")
        if target is None or target.get("state") == "disconnected":
            return {"connected": False, "os": None}
        try:
            info = domain.guestInfo(libvirt.VIR_DOMAIN_GUEST_INFO_OS, 0)
        except libvirt.libvirtError:
            return {"connected": False, "os": None}
        return {"connected": True, "os": {key[len("os."):]: value for key, value in info.items()
                                          if key.startswith("os.")}}

    def agent_shutdown(self, name: str) -> None:
        call(f"shut down {name!r} through its guest agent", self._object(name).shutdownFlags,
             libvirt.VIR_DOMAIN_SHUTDOWN_GUEST_AGENT)

    def suspend(self, name: str) -> None:
        call(f"pause {name!r}", self._object(name).suspend)

    def resume(self, name: str) -> None:
        call(f"resume {name!r}", self._object(name).resume)

    def native_command(self, name: str) -> tuple[list[str], dict[str, str]]:
        text = call(f"convert {name!r} to a QEMU command line", self.conn.domainXMLToNative,
                    "qemu-argv", self.xml(name), 0)
        return split_native_command(text)

    def monitor(self, name: str, command: dict) -> object:
        execute = command.get("execute") if isinstance(command, dict) else None
        if not execute:
            raise InvalidInput("a monitor command is a dict with an 'execute' key", "command")
        reply = self._passthrough(name, json.dumps(command), f"run {execute!r} on {name!r}", 0)
        answer = json.loads(reply)
        if "error" in answer:
            error = answer["error"]
            raise load_part("qmp").QMPError(execute, error.get("class", "GenericError"), error.get("desc", ""))
        return answer.get("return")

    def human_monitor(self, name: str, command_line: str) -> str:
        libvirt_qemu = _libvirt_qemu()
        return self._passthrough(name, command_line, f"run {command_line!r} on {name!r}",
                                 libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP)

    def _passthrough(self, name: str, text: str, what: str, flags: int) -> str:
        """libvirt's monitor passthrough (virsh qemu-monitor-command), which taints the domain custom-monitor."""
        return call(what, _libvirt_qemu().qemuMonitorCommand, self._object(name), text, flags)

    def send_key(self, name: str, codeset: str, codes: list[int], holdtime: int = 0) -> None:
        codesets = load_part("model.sendkey").KEYCODE_SETS
        if codeset not in codesets:
            raise InvalidInput(f"unknown code set {codeset!r}", "codeset")
        call(f"send keys to {name!r}", self._object(name).sendKey, codesets.index(codeset), holdtime,
             list(codes), len(codes), 0)

    def migrate(self, name: str, destination: str, options: dict, check_mode: bool) -> dict:
        return load_part("driver.libvirt_migration").managed(self, name, destination, options, check_mode)

    def security_labels(self, name: str) -> list[SecurityLabel]:
        """virDomainGetSecurityLabelList, paired with the models of the host's <secmodel> stack."""
        domain = self._object(name)
        if not call(f"read the state of {name!r}", domain.isActive):
            return []
        found = call(f"read the security labels of {name!r}", domain.securityLabelList)
        caps = call("read the host capabilities", self.conn.getCapabilities)
        models = re.findall(r"<secmodel>\s*<model>([^<]*)</model>", caps)
        return [SecurityLabel(models[index] if index < len(models) else "", label, bool(enforcing))
                for index, (label, enforcing) in enumerate(found) if label]


class LibvirtSnapshots(Snapshots):
    """libvirt's snapshot API: virDomainSnapshot*."""

    def __init__(self, conn):
        self.conn = conn

    def _domain(self, domain: str):
        return call(f"find domain {domain!r}", self.conn.lookupByName, domain)

    def _snapshot(self, domain: str, name: str):
        try:
            return self._domain(domain).snapshotLookupByName(name, 0)
        except libvirt.libvirtError as e:
            if e.get_error_code() == getattr(libvirt, "VIR_ERR_NO_DOMAIN_SNAPSHOT", -1):
                raise NotFound(f"domain {domain!r} has no snapshot {name!r}") from e
            raise BackendError(f"cannot find snapshot {name!r} of {domain!r}: {e.get_error_message()}") from e

    def names(self, domain: str) -> list[str]:
        return sorted(call(f"list the snapshots of {domain!r}", self._domain(domain).snapshotListNames, 0))

    def xml(self, domain: str, name: str) -> str:
        return call(f"read snapshot {name!r} of {domain!r}", self._snapshot(domain, name).getXMLDesc,
                    libvirt.VIR_DOMAIN_XML_SECURE)

    def current(self, domain: str) -> str | None:
        found = self._domain(domain)
        if not call(f"look for the current snapshot of {domain!r}", found.hasCurrentSnapshot, 0):
            return None
        return call(f"read the current snapshot of {domain!r}", found.snapshotCurrent, 0).getName()

    def create(self, domain: str, xml: str) -> None:
        external = parse(xml, "domainsnapshot").find("disks/disk[@snapshot='external']") is not None
        flags = libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY if external else 0
        call(f"take a snapshot of {domain!r}", self._domain(domain).snapshotCreateXML, xml, flags, definition=True)

    def revert(self, domain: str, name: str) -> None:
        # The module asks for force itself, for its own reason; libvirt's cases are covered by it.
        flags = getattr(libvirt, "VIR_DOMAIN_SNAPSHOT_REVERT_FORCE", 0)
        call(f"revert {domain!r} to snapshot {name!r}", self._domain(domain).revertToSnapshot,
             self._snapshot(domain, name), flags)

    def delete(self, domain: str, name: str) -> None:
        call(f"delete snapshot {name!r} of {domain!r}", self._snapshot(domain, name).delete, 0)


def _libvirt_qemu():
    try:
        import libvirt_qemu
    except ImportError as e:  # pragma: no cover - shipped with the bindings
        raise MissingDependency("libvirt-python", "for monitor commands") from e
    return libvirt_qemu


# virNetworkUpdate's commands and sections by the words the Networks protocol uses.
NETWORK_UPDATE_COMMANDS = {"add-last": "VIR_NETWORK_UPDATE_COMMAND_ADD_LAST",
                           "add-first": "VIR_NETWORK_UPDATE_COMMAND_ADD_FIRST",
                           "delete": "VIR_NETWORK_UPDATE_COMMAND_DELETE",
                           "modify": "VIR_NETWORK_UPDATE_COMMAND_MODIFY"}
NETWORK_UPDATE_SECTION_CODES = {"ip-dhcp-host": "VIR_NETWORK_SECTION_IP_DHCP_HOST",
                                "ip-dhcp-range": "VIR_NETWORK_SECTION_IP_DHCP_RANGE",
                                "dns-host": "VIR_NETWORK_SECTION_DNS_HOST",
                                "dns-txt": "VIR_NETWORK_SECTION_DNS_TXT",
                                "dns-srv": "VIR_NETWORK_SECTION_DNS_SRV",
                                "portgroup": "VIR_NETWORK_SECTION_PORTGROUP"}


class LibvirtNetworks(LibvirtResources, Networks):
    _list_method = "listAllNetworks"
    _lookup_method = "networkLookupByName"

    def _xml_flags(self, inactive: bool) -> int:
        return libvirt.VIR_NETWORK_XML_INACTIVE if inactive else 0

    def define(self, xml: str) -> None:
        # networkDefineXMLFlags (libvirt 7.7) can check the XML against the schema first.
        flags = getattr(libvirt, "VIR_NETWORK_DEFINE_VALIDATE", None)
        if flags is not None and hasattr(self.conn, "networkDefineXMLFlags"):
            call("define the network", self.conn.networkDefineXMLFlags, xml, flags, definition=True)
        else:
            call("define the network", self.conn.networkDefineXML, xml, definition=True)

    def persistent(self, name: str) -> bool:
        return bool(call(f"read whether {name!r} is persistent", self._object(name).isPersistent))

    def update(self, name: str, command: str, section: str, xml: str, parent_index: int = -1) -> None:
        if command not in NETWORK_UPDATE_COMMANDS or section not in NETWORK_UPDATE_SECTION_CODES:
            raise InvalidInput(f"unknown network update {command!r} of section {section!r}")
        command_code = getattr(libvirt, NETWORK_UPDATE_COMMANDS[command])
        section_code = getattr(libvirt, NETWORK_UPDATE_SECTION_CODES[section])
        call(f"{command} {section} of network {name!r}", self._object(name).update, command_code, section_code,
             parent_index, xml, libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE)

    def leases(self, name: str) -> list[Lease]:
        network = self._object(name)
        if not call(f"read the state of {name!r}", network.isActive):
            return []
        found = call(f"read the DHCP leases of {name!r}", network.DHCPLeases)
        return [_lease(entry) for entry in found or []]

    def bridge(self, name: str) -> str | None:
        network = self._object(name)
        if not call(f"read the state of {name!r}", network.isActive):
            return None
        try:
            return call(f"read the bridge of {name!r}", network.bridgeName) or None
        except BackendError:
            return None     # macvtap and hostdev networks have no bridge


class LibvirtPools(LibvirtResources, Pools):
    _list_method = "listAllStoragePools"
    _lookup_method = "storagePoolLookupByName"
    _define_method = "storagePoolDefineXML"

    def __init__(self, conn, uri):
        super().__init__(conn)
        self.uri = uri

    def _xml_flags(self, inactive: bool) -> int:
        return libvirt.VIR_STORAGE_XML_INACTIVE if inactive else 0

    def _define_args(self, xml: str) -> tuple:
        return (xml, 0)

    def build(self, name: str, overwrite: bool = False) -> None:
        flags = libvirt.VIR_STORAGE_POOL_BUILD_OVERWRITE if overwrite else 0
        call(f"build pool {name!r}", self._object(name).build, flags)

    def built(self, name: str) -> bool:
        if not self.uri.is_local:
            return True
        path = _pool_target(self.xml(name))
        return path is None or os.path.isdir(path)

    def refresh(self, name: str) -> None:
        call(f"refresh pool {name!r}", self._object(name).refresh, 0)

    def space(self, name: str) -> PoolSpace:
        _state, capacity, allocation, available = call(f"read the space of pool {name!r}", self._object(name).info)
        return PoolSpace(capacity, allocation, available)

    def delete_target(self, name: str) -> None:
        call(f"remove the target of pool {name!r}", self._object(name).delete, 0)

    def host_path_kind(self, path: str) -> str | None:
        return super().host_path_kind(path) if self.uri.is_local else None


def _pool_target(xml: str) -> str | None:
    return parse(xml, kinds.POOL.tag).findtext("target/path")


class LibvirtVolumes(Volumes):
    """Volumes through virStorageVol*; libvirt's pools must be active for any of it."""

    def __init__(self, conn, uri):
        self.conn = conn
        self.uri = uri

    def _pool(self, pool: str):
        return call(f"find pool {pool!r}", self.conn.storagePoolLookupByName, pool)

    def _volume(self, pool: str, name: str):
        return call(f"find volume {name!r} in pool {pool!r}", self._pool(pool).storageVolLookupByName, name)

    def names(self, pool: str) -> list[str]:
        found = call(f"list the volumes of pool {pool!r}", self._pool(pool).listAllVolumes, 0)
        return sorted(v.name() for v in found)

    def exists(self, pool: str, name: str) -> bool:
        try:
            self._volume(pool, name)
        except NotFound:
            return False
        return True

    def xml(self, pool: str, name: str) -> str:
        return call(f"read the XML of volume {name!r}", self._volume(pool, name).XMLDesc, 0)

    def create(self, pool: str, xml: str, clone_from: tuple[str, str] | None = None) -> None:
        target = self._pool(pool)
        if clone_from is None:
            call(f"create a volume in pool {pool!r}", target.createXML, xml, 0, definition=True)
            return
        source = self._volume(*clone_from)
        call(f"clone volume {clone_from[1]!r}", target.createXMLFrom, xml, source, 0, definition=True)

    def delete(self, pool: str, name: str) -> None:
        call(f"delete volume {name!r} of pool {pool!r}", self._volume(pool, name).delete, 0)

    def import_image(self, pool: str, xml: str, source: ImageSource, opener, capacity: int | None) -> str:
        """Staged on the module's host, uploaded into a hidden volume, which libvirt then copies into place.

        The upload goes through libvirt's stream (virStorageVolUpload), so a
        remote host works too.  The copy (virStorageVolCreateXMLFrom) runs in
        libvirtd and finishes even when this run is killed, so the volume
        under its own name is never half uploaded; a hidden volume or a
        local temporary left by a killed run is removed by the next import.
        """
        from ansible_collections.virtops.qemu.plugins.module_utils.driver import image_import
        wanted = parse(xml, kinds.VOLUME.tag)
        name = (wanted.findtext("name") or "").strip()
        fmt = wanted.find("target/format").get("type") if wanted.find("target/format") is not None else "raw"
        target = self._pool(pool)
        stem = f"virtops.{pool}.{name}"
        image_import.sweep(tempfile.gettempdir(), stem)
        self._sweep(pool, name)
        if self.exists(pool, name):
            raise Conflict(f"storage volume {name!r} already exists in pool {pool!r}")
        staged = image_import.stage(source, opener, fmt, tempfile.gettempdir(), stem, copy=False)
        try:
            image_import.check_capacity(capacity, staged.size, source.url or source.path or "")
            size = max(capacity or 0, staged.size)
            hidden = _with_name_and_capacity(wanted, os.path.basename(image_import.temporary("", name)),
                                             staged.size)
            volume = call(f"create a volume in pool {pool!r}", target.createXML, hidden, 0, definition=True)
            try:
                self._upload(volume, staged.path)
                if size > staged.size:
                    call(f"grow the imported volume {name!r}", volume.resize, size, 0)
                call(f"copy the imported image into volume {name!r}", target.createXMLFrom,
                     _with_name_and_capacity(wanted, name, size), volume, 0, definition=True)
            finally:
                with contextlib.suppress(libvirt.libvirtError):
                    volume.delete(0)
        finally:
            staged.remove_temporaries()
        return staged.checksum

    def _upload(self, volume, path: str) -> None:
        try:
            length = os.path.getsize(path)
            handle = open(path, "rb")
        except OSError as exc:
            raise BackendError(f"cannot read {path}: {exc.strerror or exc}") from exc
        stream = call("open a stream to libvirt", self.conn.newStream, 0)
        with handle:
            try:
                call("start the upload", volume.upload, stream, 0, length, 0)
                call("upload the image", stream.sendAll, lambda _stream, size, opaque: opaque.read(size), handle)
                call("finish the upload", stream.finish)
            except BaseException:
                with contextlib.suppress(libvirt.libvirtError):
                    stream.abort()
                raise

    def _sweep(self, pool: str, name: str) -> None:
        """Delete the hidden volumes earlier imports of ``name`` from this host left when they were killed."""
        from ansible_collections.virtops.qemu.plugins.module_utils.driver import image_import
        pattern = re.compile(rf"^\.{re.escape(name)}\.import-(\d+)(?:\.\w+)?\.part$")
        for other in self.names(pool):
            match = pattern.match(other)
            if match and not image_import.alive(int(match.group(1))):
                with contextlib.suppress(NotFound):
                    self.delete(pool, other)

    def resize(self, pool: str, name: str, capacity: int, shrink: bool = False) -> None:
        flags = libvirt.VIR_STORAGE_VOL_RESIZE_SHRINK if shrink else 0
        call(f"resize volume {name!r}", self._volume(pool, name).resize, capacity, flags)

    def set_permissions(self, pool: str, name: str, mode: str | None, owner: int | None,
                        group: int | None) -> None:
        """libvirt has no call for it: a local volume's file is changed directly, then the pool rescanned."""
        if not self.uri.is_local:
            raise BackendError(f"cannot change the permissions of volume {name!r}: libvirt has no API for it "
                               "and the host is remote")
        path = self.path(pool, name)
        try:
            if mode is not None:
                os.chmod(path, int(mode, 8))
            if owner is not None or group is not None:
                os.chown(path, -1 if owner is None else owner, -1 if group is None else group)
        except OSError as e:
            raise BackendError(f"cannot change the permissions of {path}: {e.strerror or e}") from e
        call(f"refresh pool {pool!r}", self._pool(pool).refresh, 0)

    def path(self, pool: str, name: str) -> str:
        return call(f"read the path of volume {name!r}", self._volume(pool, name).path)


def _with_name_and_capacity(wanted, name: str, capacity: int) -> str:
    tree = parse(to_string(wanted), kinds.VOLUME.tag)
    tree.find("name").text = name
    tree.find("capacity").text = str(capacity)
    tree.find("capacity").set("unit", "bytes")
    allocation = tree.find("allocation")
    if allocation is not None:
        tree.remove(allocation)
    return to_string(tree)


def _lease(entry: dict) -> Lease:
    family = "ipv6" if entry.get("type") == getattr(libvirt, "VIR_IP_ADDR_TYPE_IPV6", 1) else "ipv4"
    return Lease(mac=(entry.get("mac") or "").lower(), ip=entry.get("ipaddr") or "", prefix=entry.get("prefix"),
                 hostname=entry.get("hostname") or None, expiry=int(entry.get("expirytime") or 0),
                 family=family, clientid=entry.get("clientid") or None)


def connect_error(uri, error) -> BackendError:
    """Why libvirt.open failed; a local URI whose daemon socket nobody listens on says how to fix it."""
    reason = error.get_error_message()
    no_daemon = error.get_error_code() == libvirt.VIR_ERR_SYSTEM_ERROR and \
        error.get_int1() in (errno.ENOENT, errno.ECONNREFUSED) and "socket" in reason
    if not (uri.is_local and no_daemon):
        return BackendError(f"cannot connect to {uri.raw}: {reason}")
    return BackendError(f"cannot connect to {uri.raw}: no libvirtd is running to answer it ({reason}). "
                        "Start libvirtd (for example: systemctl start libvirtd), or use the daemonless "
                        "embedded driver with uri: qemu:///embed?root=/an/absolute/dir")


class LibvirtDriver(Driver):
    def __init__(self, uri):
        super().__init__(uri)
        if not HAS_LIBVIRT:
            raise MissingDependency("libvirt-python", f"for the libvirt backend ({uri.raw})")
        libvirt.registerErrorHandler(_quiet, None)
        try:
            self.conn = libvirt.open(uri.raw)
        except libvirt.libvirtError as e:
            raise connect_error(uri, e) from e
        self.domains = LibvirtDomains(self.conn, uri)
        self.snapshots = LibvirtSnapshots(self.conn)
        self.networks = LibvirtNetworks(self.conn)
        self.pools = LibvirtPools(self.conn, uri)
        self.volumes = LibvirtVolumes(self.conn, uri)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def capabilities(self) -> str:
        return call("read the host capabilities", self.conn.getCapabilities)

    # -- storage ----------------------------------------------------------
    def default_seed_directory(self) -> str:
        return IMAGES_DIRECTORY

    def write_seed(self, path: str, image: bytes) -> bool:
        if not self.uri.is_local:
            raise BackendError(f"a seed file cannot be written on the host of {self.uri.raw} through libvirt; "
                               "run the task on that host with a local URI")
        written = super().write_seed(path, image)
        self._refresh_pool_of(os.path.dirname(path))
        return written

    def _refresh_pool_of(self, directory: str) -> None:
        """Let the pool holding ``directory`` list the seed as a volume (best effort: the file is what counts)."""
        for pool in self.pools.names():
            try:
                if self.pools.active(pool) and self._pool_directory(pool) == directory:
                    self.pools.refresh(pool)
            except VirtError:
                continue

    def delete_disk_source(self, source: dict) -> None:
        if source.get("volume"):
            pool = call(f"find pool {source['pool']!r}", self.conn.storagePoolLookupByName, source["pool"])
            volume = call(f"find volume {source['volume']!r}", pool.storageVolLookupByName, source["volume"])
            call(f"delete volume {source['volume']!r}", volume.delete, 0)
            return
        path = source["path"]
        try:
            volume = self.conn.storageVolLookupByPath(path)
        except libvirt.libvirtError:
            volume = None
        if volume is not None:
            call(f"delete volume {path!r}", volume.delete, 0)
        elif self.uri.is_local:
            if os.path.exists(path):
                os.remove(path)
        else:
            raise BackendError(f"{path!r} is not a storage volume of {self.uri.raw}; "
                               "a plain file on a remote host cannot be deleted through libvirt")
