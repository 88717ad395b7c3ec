# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The libvirt backend: the driver interface on libvirt's Python bindings.

Private to the collection.
"""

from __future__ import annotations

import json
import os
import re
import shlex

from ansible_collections.virtops.qemu.plugins.module_utils.driver.base import (
    DOMAIN_STATES,
    DomainRuntime,
    DomainStatus,
    Driver,
)
from ansible_collections.virtops.qemu.plugins.module_utils.errors import (
    BackendError,
    InvalidInput,
    MissingDependency,
    NotFound,
)

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


def taint_flags(messages: list[str]) -> list[str]:
    """libvirt's taint flag names from the domain's "tainted: ..." messages; unknown ones verbatim."""
    flags = []
    for message in messages:
        text = message.split("tainted:", 1)[-1].strip()
        flag = TAINT_MESSAGES.get(text, text)
        if flag not in flags:
            flags.append(flag)
    return flags


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


class LibvirtDriver(Driver):
    def __init__(self, uri):
        super().__init__(uri)
        if not HAS_LIBVIRT:
            raise MissingDependency("libvirt-python", f"for the libvirt backend ({uri.raw})")
        libvirt.registerErrorHandler(_quiet, None)
        try:
            self.conn = libvirt.open(uri.raw)
        except libvirt.libvirtError as e:
            raise BackendError(f"cannot connect to {uri.raw}: {e.get_error_message()}") from e

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def capabilities(self) -> str:
        return self._call("read the host capabilities", self.conn.getCapabilities)

    # -- helpers ----------------------------------------------------------
    def _call(self, what, fn, *args, definition: bool = False):
        """Call libvirt; ``definition`` says that a refusal is about the XML being defined."""
        try:
            return fn(*args)
        except libvirt.libvirtError as e:
            if e.get_error_code() in (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_NO_STORAGE_VOL):
                raise NotFound(f"cannot {what}: {e.get_error_message()}") from e
            if definition and e.get_error_code() in (libvirt.VIR_ERR_XML_ERROR, libvirt.VIR_ERR_XML_DETAIL,
                                                     libvirt.VIR_ERR_CONFIG_UNSUPPORTED):
                raise InvalidInput(f"libvirt rejected the definition: {e.get_error_message()}", "xml") from e
            raise BackendError(f"cannot {what}: {e.get_error_message()}") from e

    def _domain(self, name):
        return self._call(f"find domain {name!r}", self.conn.lookupByName, name)

    # -- definition ---------------------------------------------------------
    def domain_names(self) -> list[str]:
        return sorted(d.name() for d in self._call("list domains", self.conn.listAllDomains, 0))

    def domain_exists(self, name: str) -> bool:
        try:
            self._domain(name)
        except NotFound:
            return False
        return True

    def domain_xml(self, name: str, inactive: bool = True) -> str:
        flags = libvirt.VIR_DOMAIN_XML_SECURE
        if inactive:
            flags |= libvirt.VIR_DOMAIN_XML_INACTIVE
        return self._call(f"read the XML of {name!r}", self._domain(name).XMLDesc, flags)

    def domain_define(self, xml: str) -> None:
        flags = getattr(libvirt, "VIR_DOMAIN_DEFINE_VALIDATE", 0)
        self._call("define the domain", self.conn.defineXMLFlags, xml, flags, definition=True)

    def domain_undefine(self, name: str) -> None:
        flags = 0
        for flag in _UNDEFINE_FLAG_NAMES:
            flags |= getattr(libvirt, flag, 0)
        self._call(f"undefine {name!r}", self._domain(name).undefineFlags, flags)

    def domain_autostart(self, name: str) -> bool:
        return bool(self._call(f"read autostart of {name!r}", self._domain(name).autostart))

    def domain_set_autostart(self, name: str, enabled: bool) -> None:
        self._call(f"set autostart of {name!r}", self._domain(name).setAutostart, int(enabled))

    # -- life cycle -------------------------------------------------------
    def domain_status(self, name: str) -> DomainStatus:
        state, reason = self._call(f"read the state of {name!r}", self._domain(name).state)
        word = DOMAIN_STATES[state] if state < len(DOMAIN_STATES) else "nostate"
        reasons = STATE_REASONS.get(word, ("unknown",))
        return DomainStatus(word, reasons[reason] if reason < len(reasons) else "unknown")

    def domain_runtime(self, name: str) -> DomainRuntime:
        domain = self._domain(name)
        if not self._call(f"read the state of {name!r}", domain.isActive):
            return DomainRuntime(None, None, [])
        messages = getattr(domain, "messages", None)     # libvirt >= 7.1
        tainting = getattr(libvirt, "VIR_DOMAIN_MESSAGE_TAINTING", 2)
        taints = taint_flags(self._call(f"read the messages of {name!r}", messages, tainting)) if messages else []
        domain_id = self._call(f"read the id of {name!r}", domain.ID)
        return DomainRuntime(self._qemu_pid(name), domain_id if domain_id > 0 else None, taints)

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

    def domain_start(self, name: str, paused: bool = False) -> None:
        flags = libvirt.VIR_DOMAIN_START_PAUSED if paused else 0
        self._call(f"start {name!r}", self._domain(name).createWithFlags, flags)

    def domain_shutdown(self, name: str) -> None:
        self._call(f"shut down {name!r}", self._domain(name).shutdownFlags,
                   libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)

    def domain_destroy(self, name: str) -> None:
        self._call(f"destroy {name!r}", self._domain(name).destroy)

    def domain_suspend(self, name: str) -> None:
        self._call(f"pause {name!r}", self._domain(name).suspend)

    def domain_resume(self, name: str) -> None:
        self._call(f"resume {name!r}", self._domain(name).resume)

    def domain_native_command(self, name: str) -> tuple[list[str], dict[str, str]]:
        text = self._call(f"convert {name!r} to a QEMU command line", self.conn.domainXMLToNative,
                          "qemu-argv", self.domain_xml(name), 0)
        return split_native_command(text)

    def domain_monitor(self, name: str, command: dict) -> object:
        try:
            import libvirt_qemu
        except ImportError as e:  # pragma: no cover - shipped with the bindings
            raise MissingDependency("libvirt-python", "for monitor commands") from e
        reply = self._call(f"run {command.get('execute')!r} on {name!r}",
                           libvirt_qemu.qemuMonitorCommand, self._domain(name), json.dumps(command), 0)
        answer = json.loads(reply)
        if "error" in answer:
            raise BackendError(f"{command.get('execute')}: {answer['error'].get('desc')}")
        return answer.get("return")

    # -- storage ----------------------------------------------------------
    def delete_disk_source(self, source: dict) -> None:
        if source.get("volume"):
            pool = self._call(f"find pool {source['pool']!r}", self.conn.storagePoolLookupByName, source["pool"])
            volume = self._call(f"find volume {source['volume']!r}", pool.storageVolLookupByName, source["volume"])
            self._call(f"delete volume {source['volume']!r}", volume.delete, 0)
            return
        path = source["path"]
        try:
            volume = self.conn.storageVolLookupByPath(path)
        except libvirt.libvirtError:
            volume = None
        if volume is not None:
            self._call(f"delete volume {path!r}", volume.delete, 0)
        elif self.uri.is_local:
            if os.path.exists(path):
                os.remove(path)
        else:
            raise BackendError(f"{path!r} is not a storage volume of {self.uri.raw}; "
                               "a plain file on a remote host cannot be deleted through libvirt")
