# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The driver interface shared by the libvirt and the embedded backend.

A driver exposes one object per resource kind (``driver.domains``,
``driver.networks``, ``driver.pools``).  Every kind speaks the small
``Resources`` protocol: objects are addressed by name and described by
libvirt XML strings.  What only one kind does (domain power and monitor, network live update)
lives on that kind's object.  Volumes, addressed by pool and name,
are ``driver.volumes``.  Methods block until the hypervisor has
accepted the request; waiting for a guest to react (an ACPI shutdown, say)
is the caller's business.  Errors are raised as the types of
``module_utils.errors``, the same type for the same situation on every
backend (NotFound for an unknown name, ...).  Private to the collection.
"""

from __future__ import annotations

import os
import stat
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, NamedTuple

from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError, InvalidInput, host_error
from ansible_collections.virtops.qemu.plugins.module_utils.lazy import load_part
from ansible_collections.virtops.qemu.plugins.module_utils.model import kinds
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import parse

if TYPE_CHECKING:
    from ansible_collections.virtops.qemu.plugins.module_utils.model.volume import ImageSource

# libvirt's words for a domain's state, virDomainState order.
DOMAIN_STATES = ("nostate", "running", "blocked", "paused", "shutdown",
                 "shutoff", "crashed", "pmsuspended")
# States in which no QEMU process runs for the domain.
INACTIVE_STATES = ("shutoff", "crashed", "nostate")


def is_active(state: str) -> bool:
    return state not in INACTIVE_STATES


class DomainStatus(NamedTuple):
    state: str          # one of DOMAIN_STATES
    reason: str         # libvirt's reason word for that state, e.g. "booted", "destroyed"

    @property
    def active(self) -> bool:
        return is_active(self.state)


class DomainRuntime(NamedTuple):
    """What only a running domain has; pid and domain_id are None when it is not running."""
    pid: int | None             # the QEMU process, where the backend can tell
    domain_id: int | None       # libvirt's domain id (virsh domid)
    taints: list[str]           # libvirt's taint flag names, e.g. "custom-argv", "host-cpu"


class SecurityLabel(NamedTuple):
    """A security label in force on a running domain (virDomainGetSecurityLabelList)."""
    model: str                  # "selinux", "apparmor", "dac"
    label: str                  # e.g. "+64055:+994", "system_u:system_r:svirt_t:s0:c1,c2", "libvirt-<uuid>"
    enforcing: bool


class Resources(ABC):
    """The objects of one kind (domains, networks, ...) of one driver."""

    kind: str = ""      # the word of the kind's record (model/kinds.py): "domain", "network", ...

    @abstractmethod
    def names(self) -> list[str]:
        """Names of every defined or active object, sorted."""

    @abstractmethod
    def exists(self, name: str) -> bool: ...

    @abstractmethod
    def xml(self, name: str, inactive: bool = True) -> str:
        """The object's XML, secrets included; the persistent definition when ``inactive``."""

    @abstractmethod
    def define(self, xml: str) -> None:
        """Create or replace the persistent definition."""

    def check_definition(self, xml: str) -> None:
        """Refuse what ``define`` would refuse, without writing anything; check mode relies on it.

        The managers check libvirt's schema themselves; a driver adds here
        the checks its define runs beyond that.
        """
        return None

    @abstractmethod
    def undefine(self, name: str) -> None:
        """Remove the persistent definition; an active object stays, transient, until stopped."""

    @abstractmethod
    def autostart(self, name: str) -> bool: ...

    @abstractmethod
    def set_autostart(self, name: str, enabled: bool) -> None: ...

    @abstractmethod
    def active(self, name: str) -> bool: ...

    def state(self, name: str) -> str:
        """The object's state word: "active" or "inactive" (a domain's is one of DOMAIN_STATES)."""
        return "active" if self.active(name) else "inactive"

    @abstractmethod
    def start(self, name: str) -> None: ...

    @abstractmethod
    def stop(self, name: str) -> None:
        """Stop at once, as ``virsh destroy`` / ``net-destroy`` / ``pool-destroy`` do."""


class Domains(Resources):
    """Domains: the protocol plus power, status with reason, monitor and runtime."""

    kind = kinds.DOMAIN.word

    def active(self, name: str) -> bool:
        return self.status(name).active

    def state(self, name: str) -> str:
        return self.status(name).state

    def stop(self, name: str) -> None:
        self.destroy(name)

    @abstractmethod
    def undefine(self, name: str) -> None:
        """Remove the definition with its managed save, snapshot metadata, NVRAM and TPM state."""

    @abstractmethod
    def start(self, name: str, paused: bool = False) -> None: ...

    @abstractmethod
    def status(self, name: str) -> DomainStatus: ...

    @abstractmethod
    def runtime(self, name: str) -> DomainRuntime:
        """QEMU pid, domain id and taints of the running domain (empty values when it does not run)."""

    @abstractmethod
    def shutdown(self, name: str) -> None:
        """Ask the guest to power off (ACPI power button); returns at once."""

    @abstractmethod
    def destroy(self, name: str) -> None:
        """Hard power off."""

    @abstractmethod
    def suspend(self, name: str) -> None: ...

    @abstractmethod
    def resume(self, name: str) -> None: ...

    @abstractmethod
    def native_command(self, name: str) -> tuple[list[str], dict[str, str]]:
        """The QEMU argv and environment the definition starts with, as ``virsh domxml-to-native qemu-argv``."""

    @abstractmethod
    def monitor(self, name: str, command: dict) -> object:
        """Run one QMP command ({"execute": ..., "arguments": ...}) and return its "return" value.

        The domain is tainted ``custom-monitor``, as libvirt taints it.  QEMU's
        error reply raises qmp.QMPError with QEMU's error class.
        """

    @abstractmethod
    def human_monitor(self, name: str, command_line: str) -> str:
        """Run one HMP command line ("info status") and return QEMU's text; taints like ``monitor``."""

    def interface_addresses(self, name: str, source: str) -> dict[str, list[dict]] | None:
        """The running guest's addresses by MAC from ``source`` (lease, agent, arp); None when it cannot answer.

        Each address is {address, prefix, family}, family ipv4 or ipv6.
        """
        return None

    def guest_agent(self, name: str) -> dict:
        """{connected, os}: whether the guest agent answers, and its guest-get-osinfo (None without)."""
        return {"connected": False, "os": None}

    def agent_shutdown(self, name: str) -> None:
        """Ask the guest agent to power the guest off; returns at once."""
        raise BackendError(f"domain {name!r}: this driver cannot shut a guest down through its agent")

    @abstractmethod
    def send_key(self, name: str, codeset: str, codes: list[int], holdtime: int = 0) -> None:
        """Press and release ``codes`` together, as virDomainSendKey does.

        ``codeset`` is one of model.sendkey.KEYCODE_SETS; the codes are already checked to
        have a QEMU number (keycodes.QNUM); ``holdtime`` in milliseconds, 0 for
        QEMU's default.
        """

    # -- moving to another host (manager/migrate.py) ---------------------------
    def migrate(self, name: str, destination: str, options: dict, check_mode: bool) -> dict:
        """Move the domain to ``destination`` in one call, the backend driving both ends (libvirt).

        ``options``: live, copy_storage, persistent, undefine_source, bandwidth, max_downtime,
        auto_converge.  Returns the module result (``changed``, ``stats``).
        """
        raise InvalidInput("this driver migrates in phases run on both hosts (source, prepare, perform, finish, "
                           "confirm); the virtops.qemu.migrate role runs them", "phase")

    def migration_phase(self, phase: str, name: str, params: dict, check_mode: bool) -> dict:
        """One phase of a move run by Ansible on each host in turn (the embedded driver's handshake)."""
        raise InvalidInput(f"phase {phase!r} is a step of the embedded driver's handshake; this driver "
                           "migrates in one call (phase: managed)", "phase")

    def security_labels(self, name: str) -> list[SecurityLabel]:
        """The labels in force on the running domain, primary model first; [] when it does not run.

        This default reads the live XML's dynamic and static labels, which is the embedded
        driver's own record; the libvirt backend asks libvirtd.
        """

        if not self.active(name):
            return []
        live = parse(self.xml(name, inactive=False), kinds.DOMAIN.tag, "live XML")
        return [SecurityLabel(node.get("model") or "", (node.findtext("label") or "").strip(), True)
                for node in live.findall("seclabel") if node.get("type") != "none"]


# virNetworkUpdate's sections that can change on a running network, by libvirt's names.
NETWORK_UPDATE_SECTIONS = ("ip-dhcp-host", "ip-dhcp-range", "dns-host", "dns-txt", "dns-srv", "portgroup")


class Lease(NamedTuple):
    """One DHCP lease a network's DHCP server handed out (virNetworkDHCPLease)."""
    mac: str                    # lower case
    ip: str
    prefix: int | None
    hostname: str | None
    expiry: int                 # seconds since the epoch; 0 for an infinite lease
    family: str                 # "ipv4" or "ipv6"
    clientid: str | None = None


class Networks(Resources):
    """Virtual networks: the protocol plus live updates, DHCP leases and the bridge in use."""

    kind = kinds.NETWORK.word

    @abstractmethod
    def update(self, name: str, command: str, section: str, xml: str, parent_index: int = -1) -> None:
        """Change the running network only, as virNetworkUpdate(..., AFFECT_LIVE).

        ``command`` is "add-last" or "delete"; ``section`` one of
        NETWORK_UPDATE_SECTIONS; ``xml`` the one element added or deleted
        (<host>, <range>, <txt>, <srv>, <portgroup>); ``parent_index`` the
        position of the <ip> element that holds a DHCP host or range among
        the network's <ip> elements (-1: the first with DHCP of the element's
        family).  The persistent definition is the caller's (define).
        """

    @abstractmethod
    def persistent(self, name: str) -> bool:
        """Whether the network has a persistent definition (an active one may be transient)."""

    @abstractmethod
    def leases(self, name: str) -> list[Lease]:
        """The current DHCP leases of an active network ([] when it is not active)."""

    @abstractmethod
    def bridge(self, name: str) -> str | None:
        """The host bridge the active network's guests attach to; None when it is not active."""

    def check_reachable(self, name: str, verb: str) -> None:
        """Refuse (Conflict) to ``verb`` a running network that this run cannot change.

        libvirtd reaches all of its networks; the embedded driver only those made in the
        caller's network namespace.
        """


class PoolSpace(NamedTuple):
    """What a pool holds and has left, in bytes (virStoragePoolInfo)."""
    capacity: int
    allocation: int
    available: int


class Pools(Resources):
    """Storage pools: the protocol plus build, refresh, space and removing the empty target."""

    kind = kinds.POOL.word

    @abstractmethod
    def build(self, name: str, overwrite: bool = False) -> None:
        """Make what the pool type needs on the host: its target directory (with the pool's permissions);
        with ``overwrite`` a new filesystem on an fs pool's device (mkfs), whatever the device held."""

    @abstractmethod
    def built(self, name: str) -> bool:
        """Whether the pool's target exists on the host (True where the backend cannot tell)."""

    @abstractmethod
    def refresh(self, name: str) -> None:
        """Rescan the active pool's volumes."""

    @abstractmethod
    def space(self, name: str) -> PoolSpace:
        """Capacity, allocation and available bytes of the active pool (zeros when it is inactive)."""

    @abstractmethod
    def delete_target(self, name: str) -> None:
        """Remove the inactive pool's target directory, which must be empty (virStoragePoolDelete)."""

    def host_path_kind(self, path: str) -> str | None:
        """What ``path`` is on the pools' host, for checks made before anything changes.

        One of "block device", "regular file", "empty directory", "directory
        with entries", "mount point", "missing" or "other file"; None where the
        backend cannot look at the host (libvirt on a remote one).
        """
        return local_path_kind(path)


def local_path_kind(path: str) -> str:
    """host_path_kind on this machine."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        raise host_error(exc, "look at", path) from exc
    if stat.S_ISBLK(info.st_mode):
        return "block device"
    if stat.S_ISREG(info.st_mode):
        return "regular file"
    if not stat.S_ISDIR(info.st_mode):
        return "other file"
    if os.path.ismount(path):
        return "mount point"     # what lies beneath cannot be seen while it is mounted
    try:
        entries = os.listdir(path)
    except OSError as exc:
        raise host_error(exc, "list directory", path) from exc
    return "directory with entries" if entries else "empty directory"


class Volumes(ABC):
    """Storage volumes, addressed by pool and name; the pool must be active."""

    kind = kinds.VOLUME.word

    @abstractmethod
    def names(self, pool: str) -> list[str]: ...

    @abstractmethod
    def exists(self, pool: str, name: str) -> bool: ...

    @abstractmethod
    def xml(self, pool: str, name: str) -> str:
        """The volume's XML as libvirt describes it (capacity, allocation, target path, format, ...)."""

    @abstractmethod
    def create(self, pool: str, xml: str, clone_from: tuple[str, str] | None = None) -> None:
        """Create the volume the XML describes; ``clone_from`` (pool, volume) copies that volume's content."""

    @abstractmethod
    def import_image(self, pool: str, xml: str, source: ImageSource, opener, capacity: int | None) -> str:
        """Create the volume the XML describes (name, format, permissions) from the image ``source``.

        The image is converted to the volume's format when its own differs and
        grown to ``capacity`` when that is larger.  ``opener`` opens a URL
        (image_import.Opener).  Nothing is left behind on failure; the
        result is the image's checksum as "algorithm:hex".
        """

    @abstractmethod
    def delete(self, pool: str, name: str) -> None: ...

    @abstractmethod
    def resize(self, pool: str, name: str, capacity: int, shrink: bool = False) -> None:
        """Set the volume's capacity in bytes; a smaller one only with ``shrink``."""

    @abstractmethod
    def set_permissions(self, pool: str, name: str, mode: str | None, owner: int | None,
                        group: int | None) -> None:
        """Change the mode (octal text) and owner of the volume's file; None leaves a value as it is."""

    @abstractmethod
    def path(self, pool: str, name: str) -> str: ...


class Snapshots(ABC):
    """Snapshots of a domain, addressed by the domain and the snapshot's name (libvirt's <domainsnapshot>)."""

    kind = kinds.SNAPSHOT.word

    @abstractmethod
    def names(self, domain: str) -> list[str]:
        """The domain's snapshots, sorted."""

    def exists(self, domain: str, name: str) -> bool:
        return name in self.names(domain)

    @abstractmethod
    def xml(self, domain: str, name: str) -> str:
        """The snapshot's <domainsnapshot> XML (name, state, parent, creationTime, memory, disks, domain)."""

    @abstractmethod
    def current(self, domain: str) -> str | None:
        """The name of the domain's current snapshot, None without one."""

    @abstractmethod
    def create(self, domain: str, xml: str) -> None:
        """Take an internal snapshot of every writable disk, with the memory of a running guest when the
        XML has <memory snapshot='internal'/>; it becomes the current snapshot, a child of the previous one."""

    @abstractmethod
    def revert(self, domain: str, name: str) -> None:
        """Bring the domain back to the snapshot: disks, and the guest's memory and run state when it holds
        them (a snapshot of a shut-off domain leaves it shut off); the snapshot becomes current."""

    @abstractmethod
    def delete(self, domain: str, name: str) -> None:
        """Delete the snapshot and its data inside the disk images; its children get its parent.

        The disk images themselves stay.
        """


class Driver(ABC):
    """One connection to one QEMU driver instance."""

    domains: Domains
    snapshots: Snapshots
    networks: Networks
    pools: Pools
    volumes: Volumes

    def __init__(self, uri):
        self.uri = uri          # a uri.ConnectionURI
        self.warnings: list[str] = []   # things the user should know, shown as Ansible warnings

    # -- connection -----------------------------------------------------
    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @abstractmethod
    def capabilities(self) -> str:
        """The host capabilities XML (libvirt's <capabilities> format)."""

    # -- storage ----------------------------------------------------------
    def seed_directory(self, pool: str | None) -> str:
        """Where a domain's NoCloud seed file lives: the directory of ``pool``, or the driver's default."""
        if pool is None:
            return self.default_seed_directory()
        path = self._pool_directory(pool)
        if path is None:
            raise InvalidInput(f"pool {pool!r} is not a directory pool, so it cannot hold a seed file",
                               "cloud_init.pool")
        return path

    def _pool_directory(self, pool: str) -> str | None:
        tree = parse(self.pools.xml(pool), kinds.POOL.tag)
        if tree.get("type") not in ("dir", "fs", "netfs"):
            return None
        return tree.findtext("target/path")

    def default_seed_directory(self) -> str:
        raise BackendError(f"{self.uri.raw} has no place for seed files; name a pool (cloud_init.pool)")

    def write_seed(self, path: str, image: bytes) -> bool:
        """Write a seed image to ``path`` (atomically, private to root until QEMU's label); True when written."""
        try:
            return load_part("seed.nocloud").write_seed(path, image)
        except OSError as exc:
            raise host_error(exc, "write", path) from exc

    @abstractmethod
    def delete_disk_source(self, source: dict) -> None:
        """Delete a disk image: {"path": ...} (a volume or a plain local file) or {"pool": ..., "volume": ...}."""
