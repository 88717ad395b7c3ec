# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The driver interface shared by the libvirt and the embedded backend.

Domains are addressed by name and described by libvirt domain XML strings.
Methods block until the hypervisor has accepted the request; waiting for a
guest to react (an ACPI shutdown, say) is the caller's business.  Errors are
raised as the types of ``module_utils.errors``.  Private to the collection.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

# libvirt's words for a domain's state, virDomainState order.
DOMAIN_STATES = ("nostate", "running", "blocked", "paused", "shutdown",
                 "shutoff", "crashed", "pmsuspended")
# States in which no QEMU process runs for the domain.
INACTIVE_STATES = ("shutoff", "crashed", "nostate")


def is_active(state: str) -> bool:
    return state not in INACTIVE_STATES


@dataclass(frozen=True)
class DomainStatus:
    state: str          # one of DOMAIN_STATES
    reason: str         # libvirt's reason word for that state, e.g. "booted", "destroyed"

    @property
    def active(self) -> bool:
        return is_active(self.state)


@dataclass(frozen=True)
class DomainRuntime:
    """What only a running domain has; pid and domain_id are None when it is not running."""
    pid: int | None             # the QEMU process, where the backend can tell
    domain_id: int | None       # libvirt's domain id (virsh domid)
    taints: list[str]           # libvirt's taint flag names, e.g. "custom-argv", "host-cpu"


class Driver(ABC):
    """One connection to one QEMU driver instance."""

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

    # -- domains: definition --------------------------------------------
    @abstractmethod
    def domain_names(self) -> list[str]:
        """Names of every defined or running domain."""

    @abstractmethod
    def domain_exists(self, name: str) -> bool: ...

    @abstractmethod
    def domain_xml(self, name: str, inactive: bool = True) -> str:
        """The domain's XML, secrets included; persistent definition when inactive."""

    @abstractmethod
    def domain_define(self, xml: str) -> None:
        """Create or replace the persistent definition."""

    @abstractmethod
    def domain_undefine(self, name: str) -> None:
        """Remove the definition with its managed save, snapshot metadata, NVRAM and TPM state."""

    @abstractmethod
    def domain_autostart(self, name: str) -> bool: ...

    @abstractmethod
    def domain_set_autostart(self, name: str, enabled: bool) -> None: ...

    # -- domains: life cycle --------------------------------------------
    @abstractmethod
    def domain_status(self, name: str) -> DomainStatus: ...

    @abstractmethod
    def domain_runtime(self, name: str) -> DomainRuntime:
        """QEMU pid, domain id and taints of the running domain (empty values when it does not run)."""

    @abstractmethod
    def domain_start(self, name: str, paused: bool = False) -> None: ...

    @abstractmethod
    def domain_shutdown(self, name: str) -> None:
        """Ask the guest to power off (ACPI power button); returns at once."""

    @abstractmethod
    def domain_destroy(self, name: str) -> None:
        """Hard power off."""

    @abstractmethod
    def domain_suspend(self, name: str) -> None: ...

    @abstractmethod
    def domain_resume(self, name: str) -> None: ...

    @abstractmethod
    def domain_native_command(self, name: str) -> tuple[list[str], dict[str, str]]:
        """The QEMU argv and environment the definition starts with, as ``virsh domxml-to-native qemu-argv``."""

    @abstractmethod
    def domain_monitor(self, name: str, command: dict) -> object:
        """Run one QMP command ({"execute": ..., "arguments": ...}) and return its "return" value."""

    # -- storage ----------------------------------------------------------
    @abstractmethod
    def delete_disk_source(self, source: dict) -> None:
        """Delete a disk image: {"path": ...} (a volume or a plain local file) or {"pool": ..., "volume": ...}."""
