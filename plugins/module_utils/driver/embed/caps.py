# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Host and QEMU capabilities for the embedded driver, probed as libvirt does.

Each ``qemu-system-*`` binary is started once, paused and without a machine,
and asked over QMP what it supports.  The answer is cached as JSON under
``<cache_dir>/capabilities/`` and reused until the binary (or its module
directory) changes.  A probe never outlives the run that started it: the
kernel kills the probe QEMU when its parent dies, and the next probe removes
the directories (socket, pidfile, log) of probes whose run is gone.
``host_capabilities_xml`` renders libvirt's ``<capabilities>`` document from
the probed binaries.  Private to the collection.
"""

from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypedDict

from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.process import is_alive, read_pid, start_time
from ansible_collections.virtops.qemu.plugins.module_utils.errors import (
    BackendError,
    VirtError,
)
from ansible_collections.virtops.qemu.plugins.module_utils.fileio import atomic_write
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import etree

# The QMP client and its commands are needed only to probe a binary whose capabilities are not cached.
if TYPE_CHECKING:
    from ansible_collections.virtops.qemu.plugins.module_utils import qmp_commands as qmpc
    from ansible_collections.virtops.qemu.plugins.module_utils.qmp import QMPClient

CACHE_FORMAT = 1
PROBE_TIMEOUT = 30.0
KVM_DEVICE = "/dev/kvm"
EMULATOR_PREFIX = "qemu-system-"
KVM_EMULATORS = ("qemu-kvm",)
# Probe directories are named after the run that owns them: virtops-caps-<pid>-<start time>-<random>.
PROBE_DIR_PREFIX = "virtops-caps-"
_PROBE_DIR = re.compile(r"^virtops-caps-(\d+)-(\d+)-")
_PR_SET_PDEATHSIG = 1
_reaped_in: set[str] = set()    # temp directories this process has already cleaned

# QEMU target names whose libvirt architecture name differs.
_LIBVIRT_ARCH = {"i386": "i686", "arm": "armv7l"}
_WORDSIZE_64 = {"x86_64", "aarch64", "alpha", "loongarch64", "mips64", "mips64el",
                "ppc64", "ppc64le", "riscv64", "s390x", "sparc64"}
# Guest architectures a host can run under KVM besides its own.
_KVM_COMPAT = {"x86_64": {"i686"}, "aarch64": {"armv7l"}, "ppc64le": {"ppc64"},
               "ppc64": {"ppc64le"}}


class MachineInfo(TypedDict):
    """One machine type of query-machines, as cached."""

    alias: str | None
    default: bool
    cpu_max: int
    deprecated: bool


class CpuDefinition(TypedDict):
    """One CPU model of query-cpu-definitions, as cached."""

    usable_tcg: bool
    deprecated: bool
    alias_of: str | None


class LaunchCaps(Protocol):
    """What post-parse and the command builder read of a QEMU's capabilities.

    ``QemuCaps`` has all of it; the builder's unit tests stand in for it with
    the values of one probed QEMU.
    """

    @property
    def binary(self) -> str: ...

    @property
    def version(self) -> tuple[int, int, int]: ...

    @property
    def arch(self) -> str: ...

    @property
    def default_machine(self) -> str | None: ...

    @property
    def devices(self) -> Collection[str]: ...

    @property
    def cpu_models(self) -> Collection[str]: ...

    @property
    def accels(self) -> Collection[str]: ...

    def canonical_machine(self, name: str) -> str | None: ...


@dataclass
class QemuCaps:
    """What one QEMU binary supports."""

    binary: str
    version: tuple[int, int, int]
    version_string: str                 # "7.2.22"
    package: str                        # distribution's package version, may be ""
    arch: str                           # libvirt's name: x86_64, i686, aarch64, ...
    target_arch: str                    # QEMU's name: x86_64, i386, arm, ...
    machines: dict[str, MachineInfo]    # canonical -> its info; the default first
    machine_aliases: dict[str, str]     # alias -> canonical
    default_machine: str | None
    devices: set[str] = field(default_factory=set)        # instantiable QOM device types
    objects: set[str] = field(default_factory=set)        # -object (user-creatable) types
    cpu_models: list[str] = field(default_factory=list)
    cpu_definitions: dict[str, CpuDefinition] = field(default_factory=dict)
    kvm_present: bool = False           # the binary was built with KVM support
    accels: list[str] = field(default_factory=list)       # usable now on this host
    commands: set[str] = field(default_factory=set)
    command_line_options: set[str] = field(default_factory=set)
    tpm_models: list[str] = field(default_factory=list)
    tpm_types: list[str] = field(default_factory=list)

    def canonical_machine(self, name: str) -> str | None:
        """The canonical machine type for an alias or canonical name; None if unknown."""
        if name in self.machines:
            return name
        return self.machine_aliases.get(name)

    def has_option(self, option: str) -> bool:
        """Whether a command-line option is accepted, e.g. 'sandbox', 'action', 'compat'."""
        if option == "compat":
            # -compat is QAPI-parsed, so query-command-line-options never lists it.
            return self.version >= (6, 0, 0)
        return option in self.command_line_options

    @property
    def wordsize(self) -> int:
        return 64 if self.arch in _WORDSIZE_64 else 32

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        for name, value in data.items():
            if isinstance(value, set):
                data[name] = sorted(value)
        data["version"] = list(self.version)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> QemuCaps:
        data = dict(data)
        for item in dataclasses.fields(cls):
            if item.name in data and _is_set_field(item):
                data[item.name] = set(data[item.name])
        data["version"] = tuple(data["version"])
        return cls(**data)


def _is_set_field(item: dataclasses.Field) -> bool:
    return str(item.type).startswith("set[")


# -- host -------------------------------------------------------------------
def kvm_usable(device: str = KVM_DEVICE) -> bool:
    """/dev/kvm exists and this process may open it read-write."""
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def host_arch() -> str:
    return _libvirt_arch(os.uname().machine)


def find_emulators(search_path: str | None = None) -> list[str]:
    """Every ``qemu-system-<target>`` (and ``qemu-kvm``) in /usr/bin and on PATH.

    The first directory holding a name wins, as a shell lookup would; a
    directory seen before under another name (/bin on a merged /usr) is not
    listed again.
    """
    if search_path is None:
        search_path = os.environ.get("PATH", "")
    directories = ["/usr/bin"] + [d for d in search_path.split(os.pathsep) if d]
    found: dict[str, str] = {}
    listed: set[tuple[int, int]] = set()
    for directory in directories:
        try:
            identity = os.stat(directory)
        except OSError:
            continue
        if (identity.st_dev, identity.st_ino) in listed:
            continue
        listed.add((identity.st_dev, identity.st_ino))
        for name in _emulator_names(directory):
            candidate = os.path.join(directory, name)
            if name not in found and os.access(candidate, os.X_OK):
                found[name] = candidate
    return [found[name] for name in sorted(found)]


def _emulator_names(directory: str) -> list[str]:
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return [name for name in names if name in KVM_EMULATORS or _is_system_emulator(name)]


def _is_system_emulator(name: str) -> bool:
    # Variants such as qemu-system-x86_64-microvm are not separate targets.
    target = name[len(EMULATOR_PREFIX):]
    return name.startswith(EMULATOR_PREFIX) and target.isidentifier()


def _libvirt_arch(target: str) -> str:
    return _LIBVIRT_ARCH.get(target, target)


def _kvm_can_run(guest_arch: str, host: str) -> bool:
    return guest_arch == host or guest_arch in _KVM_COMPAT.get(host, set())


# -- probing ----------------------------------------------------------------
def probe(binary: str, cache_dir: str | None, timeout: float = PROBE_TIMEOUT) -> QemuCaps:
    """Capabilities of ``binary``, from the cache when the binary is unchanged.

    Without ``cache_dir`` the binary is probed and nothing is written.
    """
    reap_stale_probes()
    binary = _resolve_binary(binary)
    key = _cache_key(binary)
    path = cache_path(cache_dir, binary) if cache_dir else None
    caps = _load_cache(path, key) if path else None
    if caps is None:
        caps = _probe_binary(binary, timeout)
        if path:
            _write_cache(path, key, caps)
    caps.accels = _usable_accels(caps)
    return caps


def _resolve_binary(binary: str) -> str:
    if os.sep in binary:
        return os.path.abspath(binary)
    found = shutil.which(binary)
    if found is None:
        raise BackendError(f"QEMU binary {binary} not found on PATH")
    return os.path.abspath(found)


def probe_all(cache_dir: str | None, binaries: list[str] | None = None) -> list[QemuCaps]:
    """Probe every emulator found on the host; one entry per architecture."""
    by_arch: dict[str, QemuCaps] = {}
    for binary in binaries if binaries is not None else find_emulators():
        caps = probe(binary, cache_dir)
        by_arch.setdefault(caps.arch, caps)
    return [by_arch[arch] for arch in sorted(by_arch)]


def cache_path(cache_dir: str, binary: str) -> str:
    # Named like libvirt's cache files: the SHA-256 of the binary's path.
    digest = hashlib.sha256(os.path.abspath(binary).encode()).hexdigest()
    return os.path.join(cache_dir, "capabilities", digest + ".json")


def _usable_accels(caps: QemuCaps) -> list[str]:
    if caps.kvm_present and kvm_usable() and _kvm_can_run(caps.arch, host_arch()):
        return ["tcg", "kvm"]
    return ["tcg"]


def _probe_binary(binary: str, timeout: float) -> QemuCaps:
    workdir = _probe_dir()
    try:
        socket_path = os.path.join(workdir, "qmp.sock")
        log_path = os.path.join(workdir, "stderr.log")
        with open(log_path, "wb") as log:
            process = _start_probe_process(binary, socket_path, os.path.join(workdir, "qemu.pid"), log)
        try:
            return _query_process(binary, process, socket_path, timeout)
        except VirtError as exc:
            raise BackendError(f"probing {binary} failed: {exc}{_log_tail(log_path)}") from exc
        finally:
            _stop(process)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _probe_dir() -> str:
    # A short private directory: UNIX socket paths are limited to 108 bytes.
    me = os.getpid()
    try:
        return tempfile.mkdtemp(prefix=f"{PROBE_DIR_PREFIX}{me}-{start_time(me)}-")
    except OSError as exc:
        raise BackendError(f"cannot create a directory for probing QEMU in {tempfile.gettempdir()}: "
                           f"{exc.strerror or exc}") from exc


def _start_probe_process(binary: str, socket_path: str, pidfile: str, log) -> subprocess.Popen:
    argv = [binary, "-S", "-no-user-config", "-nodefaults", "-nographic",
            "-machine", "none,accel=tcg",
            "-qmp", f"unix:{socket_path},server=on,wait=off", "-pidfile", pidfile]
    env = {"LC_ALL": "C", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    try:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=env, close_fds=True,
                                preexec_fn=_die_with(os.getpid()))  # noqa: PLW1509 - see _die_with
    except OSError as exc:
        raise BackendError(f"cannot run {binary} to probe its capabilities: {exc}") from exc


def _die_with(parent: int) -> Callable[[], None] | None:
    """A preexec_fn that has the kernel SIGKILL the child when the thread that spawned it ends.

    QEMU has no option to exit with its parent, and a module run killed while
    it probes would leave the probe QEMU running for good.  The libc handle is
    loaded here, before the fork, so that the child only makes two system calls
    and takes no lock a thread of the parent could hold.
    """
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None     # not Linux: stale probes are still reaped by the next run

    def set_parent_death_signal():
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)     # the parent died before the signal was armed
    return set_parent_death_signal


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
    process.wait()


def reap_stale_probes(directory: str | None = None) -> None:
    """Kill the QEMU and remove the directory of every probe whose run has died."""
    directory = directory or tempfile.gettempdir()
    if directory in _reaped_in:
        return
    _reaped_in.add(directory)
    try:
        entries = os.listdir(directory)
    except OSError:
        return
    for entry in entries:
        owner = _PROBE_DIR.match(entry)
        if owner and not is_alive(int(owner[1]), int(owner[2])):
            _reap_probe(os.path.join(directory, entry))


def _reap_probe(workdir: str) -> None:
    try:
        info = os.lstat(workdir)
    except OSError:
        return
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        return      # not one of ours
    pid = read_pid(os.path.join(workdir, "qemu.pid"))
    needle = f"unix:{os.path.join(workdir, 'qmp.sock')},".encode()
    if pid and needle in _cmdline(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass        # gone already: another run reaped it
        deadline = time.monotonic() + 5
        while is_alive(pid, None) and time.monotonic() < deadline:
            time.sleep(0.02)
    shutil.rmtree(workdir, ignore_errors=True)


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as source:
            return source.read()
    except OSError:
        return b""


def _log_tail(log_path: str) -> str:
    try:
        with open(log_path, "rb") as log:
            text = log.read()[-2000:].decode(errors="replace").strip()
    except OSError:
        return ""
    return f"; QEMU said: {text}" if text else ""


def _query_process(binary: str, process: subprocess.Popen,
                   socket_path: str, timeout: float) -> QemuCaps:
    from ansible_collections.virtops.qemu.plugins.module_utils import qmp_commands as qmpc
    from ansible_collections.virtops.qemu.plugins.module_utils.qmp import QMPClient
    with QMPClient.connect(socket_path, timeout=timeout,
                           alive=lambda: process.poll() is None) as qmp:
        caps = _query(binary, qmp, timeout)
        try:
            qmpc.quit_qemu(qmp, timeout=timeout)
        except VirtError:
            pass    # QEMU may close the socket before replying; _stop kills it anyway
    return caps


def _query(binary: str, qmp: QMPClient, timeout: float) -> QemuCaps:
    from ansible_collections.virtops.qemu.plugins.module_utils import qmp_commands as qmpc
    commands = {item["name"] for item in qmpc.query_commands(qmp, timeout)}
    qemu_version = qmpc.query_version(qmp, timeout)
    version = _version_tuple(qemu_version["qemu"])
    target = qmpc.query_target(qmp, timeout)["arch"]
    machines, aliases, default = _machines(qmpc.query_machines(qmp, timeout))
    cpu_definitions = _cpu_definitions(qmpc.query_cpu_definitions(qmp, timeout)) \
        if "query-cpu-definitions" in commands else {}
    return QemuCaps(
        binary=binary,
        version=version,
        version_string=".".join(str(part) for part in version),
        package=qemu_version.get("package", "").strip(),
        arch=_libvirt_arch(target),
        target_arch=target,
        machines=machines,
        machine_aliases=aliases,
        default_machine=default,
        devices=_type_names(qmp, "device", timeout),
        objects=_type_names(qmp, "user-creatable", timeout),
        cpu_models=list(cpu_definitions),
        cpu_definitions=cpu_definitions,
        kvm_present=bool(qmpc.query_kvm(qmp, timeout).get("present")),
        commands=commands,
        command_line_options={item["option"] for item in qmpc.query_command_line_options(qmp, timeout)
                              if item["option"]},
        tpm_models=qmpc.query_tpm_models(qmp, timeout) if "query-tpm-models" in commands else [],
        tpm_types=qmpc.query_tpm_types(qmp, timeout) if "query-tpm-types" in commands else [],
    )


def _version_tuple(qemu: qmpc.VersionTriple) -> tuple[int, int, int]:
    return (int(qemu["major"]), int(qemu["minor"]), int(qemu["micro"]))


def _machines(reply: list[qmpc.MachineInfo]) -> tuple[dict[str, MachineInfo], dict[str, str], str | None]:
    """Machine types in QEMU's order with the default moved first, as libvirt lists them."""
    entries = [item for item in reply if item["name"] != "none"]
    entries.sort(key=lambda item: not item.get("is-default", False))
    machines = {
        item["name"]: MachineInfo({
            "alias": item.get("alias"),
            "default": bool(item.get("is-default", False)),
            "cpu_max": item.get("cpu-max", 1),
            "deprecated": bool(item.get("deprecated", False)),
        })
        for item in entries
    }
    aliases = {info["alias"]: name for name, info in machines.items() if info["alias"]}
    default = next((name for name, info in machines.items() if info["default"]), None)
    return machines, aliases, default


def _cpu_definitions(reply: list[qmpc.CpuDefinitionInfo]) -> dict[str, CpuDefinition]:
    return {
        item["name"]: CpuDefinition({
            "usable_tcg": not item.get("unavailable-features"),
            "deprecated": bool(item.get("deprecated", False)),
            "alias_of": item.get("alias-of"),
        })
        for item in reply
    }


def _type_names(qmp: QMPClient, interface: str, timeout: float) -> set[str]:
    from ansible_collections.virtops.qemu.plugins.module_utils import qmp_commands as qmpc
    return {item["name"] for item in qmpc.qom_list_types(qmp, interface, abstract=False, timeout=timeout)}


# -- cache ------------------------------------------------------------------
def _cache_key(binary: str) -> dict:
    try:
        info = os.stat(binary)
    except OSError as exc:
        raise BackendError(f"QEMU binary {binary} is not usable: {exc}") from exc
    return {
        "format": CACHE_FORMAT,
        "binary": binary,
        "mtime_ns": info.st_mtime_ns,
        "size": info.st_size,
        "ino": info.st_ino,
        "module_dirs": _module_dir_mtimes(),
    }


def _module_dir_mtimes() -> dict[str, int]:
    # Installing a QEMU module package (qxl, usb-redir, ...) adds devices
    # without touching the binary.
    multiarch = _multiarch()
    candidates = [f"/usr/lib/{multiarch}/qemu" if multiarch else "", "/usr/lib64/qemu"]
    mtimes = {}
    for directory in filter(None, candidates):
        try:
            mtimes[directory] = os.stat(directory).st_mtime_ns
        except OSError:
            continue
    return mtimes


def _multiarch() -> str:
    """The platform triplet of Debian's library directories ("x86_64-linux-gnu"); "" where there is none.

    CPython keeps it in ``sys.implementation``; sysconfig, which also has it, costs an import per call.
    """
    known = getattr(sys.implementation, "_multiarch", None)
    if known is not None:
        return known
    import sysconfig
    return sysconfig.get_config_var("MULTIARCH") or ""


def _load_cache(path: str, key: dict) -> QemuCaps | None:
    try:
        with open(path, encoding="utf-8") as cache:
            document = json.load(cache)
        if document.get("key") != key:
            return None
        return QemuCaps.from_dict(document["caps"])
    except (OSError, ValueError, KeyError, TypeError):
        return None     # missing, stale or unreadable: probe again


def _write_cache(path: str, key: dict, caps: QemuCaps) -> None:
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    document = json.dumps({"key": key, "caps": caps.to_dict()}, indent=1)
    atomic_write(path, document, mode=0o644)


# -- <capabilities> XML -----------------------------------------------------
def host_capabilities_xml(caps_list: list[QemuCaps], kvm_usable: bool,
                          host_uuid: str | None = None,
                          secmodels: list[dict] | None = None) -> str:
    """libvirt's host ``<capabilities>`` document for the probed binaries.

    ``secmodels`` items look like ``{"model": "dac", "doi": "0",
    "baselabels": {"kvm": "+64055:+994", "qemu": "+64055:+994"}}``.
    """
    root = etree.Element("capabilities")
    _host_element(root, host_uuid if host_uuid is not None else host_uuid_default(),
                  secmodels or [])
    seen_arches = set()
    for caps in caps_list:
        if caps.arch not in seen_arches:
            seen_arches.add(caps.arch)
            _guest_element(root, caps, kvm_usable)
    return etree.tostring(root, pretty_print=True, encoding="unicode")


def host_uuid_default() -> str | None:
    """The SMBIOS system UUID if readable, else one derived from /etc/machine-id."""
    import uuid  # only the capabilities XML names the host
    for path, parse in (("/sys/class/dmi/id/product_uuid", uuid.UUID),
                        ("/etc/machine-id", lambda text: uuid.UUID(hex=text))):
        try:
            with open(path, encoding="ascii") as source:
                return str(parse(source.read().strip()))
        except (OSError, ValueError):
            continue
    return None


def _host_element(root: etree._Element, host_uuid: str | None, secmodels: list[dict]) -> None:
    host = etree.SubElement(root, "host")
    if host_uuid:
        etree.SubElement(host, "uuid").text = host_uuid
    cpu = etree.SubElement(host, "cpu")
    etree.SubElement(cpu, "arch").text = host_arch()
    etree.SubElement(host, "power_management")
    etree.SubElement(host, "iommu", support="yes" if _iommu_enabled() else "no")
    for secmodel in secmodels:
        element = etree.SubElement(host, "secmodel")
        etree.SubElement(element, "model").text = secmodel["model"]
        etree.SubElement(element, "doi").text = str(secmodel.get("doi", "0"))
        for virt_type, label in secmodel.get("baselabels", {}).items():
            etree.SubElement(element, "baselabel", type=virt_type).text = label


def _iommu_enabled() -> bool:
    try:
        return bool(os.listdir("/sys/kernel/iommu_groups"))
    except OSError:
        return False


def _guest_element(root: etree._Element, caps: QemuCaps, kvm_usable: bool) -> None:
    guest = etree.SubElement(root, "guest")
    etree.SubElement(guest, "os_type").text = "hvm"
    arch = etree.SubElement(guest, "arch", name=caps.arch)
    etree.SubElement(arch, "wordsize").text = str(caps.wordsize)
    etree.SubElement(arch, "emulator").text = caps.binary
    for name, info in caps.machines.items():
        _machine_element(arch, name, info)
        if info["alias"]:
            _machine_element(arch, info["alias"], info, canonical=name)
    etree.SubElement(arch, "domain", type="qemu")
    if kvm_usable and caps.kvm_present and _kvm_can_run(caps.arch, host_arch()):
        etree.SubElement(arch, "domain", type="kvm")
    _guest_features(guest, caps.arch)


def _machine_element(arch: etree._Element, text: str, info: MachineInfo,
                     canonical: str | None = None) -> None:
    machine = etree.SubElement(arch, "machine")
    if canonical:
        machine.set("canonical", canonical)
    machine.set("maxCpus", str(info["cpu_max"]))
    if info["deprecated"]:
        machine.set("deprecated", "yes")
    machine.text = text


def _guest_features(guest: etree._Element, arch: str) -> None:
    features = etree.SubElement(guest, "features")
    x86 = arch in ("i686", "x86_64")
    if arch == "i686":
        etree.SubElement(features, "pae")
        etree.SubElement(features, "nonpae")
    if x86 or arch == "aarch64":
        etree.SubElement(features, "acpi", default="on", toggle="yes")
    if x86:
        etree.SubElement(features, "apic", default="on", toggle="no")
    etree.SubElement(features, "cpuselection")
    etree.SubElement(features, "deviceboot")
    etree.SubElement(features, "disksnapshot", default="on", toggle="no")
