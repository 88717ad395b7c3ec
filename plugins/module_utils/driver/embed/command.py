# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""QEMU command line of the embedded driver.

``build_command`` turns a post-parsed domain (see postparse.py) into the argv
and environment of the QEMU process, in the modern syntax libvirt 9.0 uses
for QEMU 7.2: JSON ``-blockdev``/``-device``/``-netdev``/``-object``,
``-machine ...,memory-backend=``, ``-accel``, a UNIX-socket QMP monitor.

Differences from libvirt, all due to there being no daemon:

* ``on_poweroff``/``on_reboot``/``on_crash`` become ``-action`` (see
  ``lifecycle_action``) instead of ``-no-shutdown`` plus a daemon reacting to
  monitor events.
* Taps are referenced by name (``ifname`` from the interface's
  ``<target dev>``): the caller creates the tap before starting QEMU and
  records its name in the live XML.  libvirt passes an open fd instead.
* No master-key secret object (nothing here needs encrypted secrets).
* VNC/SPICE passwords are not on the command line: ``password=on`` is
  emitted and the caller sets the password over QMP (``set_password``).
* VNC/SPICE ``autoport``: the caller picks the port and passes it as
  ``paths.vnc_port`` / ``paths.spice_port``.
* A ``variable`` clock starts at its adjustment, but a guest that sets its
  RTC does not update ``adjustment`` (libvirt follows RTC_CHANGE events).
* File-backed guest RAM lives in the domain's directory
  (``lib/qemu/domain-ID-NAME/pc.ram``), not under a separate memory
  backing directory.
"""

from __future__ import annotations

import copy
import json
import os
import time

from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import firmware
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.postparse.common import (
    cpu_ranges,
    machine_family,
    to_kib,
)
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.postparse.devices import disk_index
from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.fileio import make_private_dir
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import etree

QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
_NS = {"qemu": QEMU_NS}

_NET_DRIVERS = {"virtio": "virtio-net-pci", "e1000": "e1000", "e1000e": "e1000e", "rtl8139": "rtl8139"}
_USB_DRIVERS = {"piix3-uhci": "piix3-usb-uhci", "piix4-uhci": "piix4-usb-uhci", "qemu-xhci": "qemu-xhci",
                "nec-xhci": "nec-usb-xhci", "ehci": "usb-ehci", "ich9-ehci1": "ich9-usb-ehci1",
                "ich9-uhci1": "ich9-usb-uhci1", "ich9-uhci2": "ich9-usb-uhci2", "ich9-uhci3": "ich9-usb-uhci3"}
_SCSI_DRIVERS = {"lsilogic": "lsi", "virtio-scsi": "virtio-scsi-pci"}
_INPUT_DRIVERS = {
    ("tablet", "usb"): "usb-tablet", ("mouse", "usb"): "usb-mouse", ("keyboard", "usb"): "usb-kbd",
    ("tablet", "virtio"): "virtio-tablet-pci", ("mouse", "virtio"): "virtio-mouse-pci",
    ("keyboard", "virtio"): "virtio-keyboard-pci",
}
_HDA_DRIVERS = {"ich6": "intel-hda", "ich9": "ich9-intel-hda"}
_SOUND_DRIVERS = {"ac97": "AC97", "es1370": "ES1370", "sb16": "sb16", "usb": "usb-audio"}
_WATCHDOG_ACTIONS = ("reset", "shutdown", "poweroff", "pause", "none", "inject-nmi")
# cache mode -> (cache.direct, cache.no-flush, write-cache)
_CACHE_MODES = {
    "none": (True, False, "on"),
    "writeback": (False, False, "on"),
    "writethrough": (False, False, "off"),
    "directsync": (True, False, "off"),
    "unsafe": (False, True, "on"),
}
_DEPRECATION = {
    "none": None,
    "omit": {"deprecated-output": "hide"},
    "reject": {"deprecated-output": "hide", "deprecated-input": "reject"},
    "crash": {"deprecated-output": "hide", "deprecated-input": "crash"},
}
_BACKENDS = {"anonymous": "memory-backend-ram", "memfd": "memory-backend-memfd", "file": "memory-backend-file"}
# (sysinfo section, SMBIOS type, entries in the order libvirt writes them)
_SMBIOS_TABLES = (
    ("bios", 0, ("vendor", "version", "date", "release")),
    ("system", 1, ("manufacturer", "product", "version", "serial", "uuid", "sku", "family")),
    ("baseBoard", 2, ("manufacturer", "product", "version", "serial", "asset", "location")),
    ("chassis", 3, ("manufacturer", "version", "serial", "asset", "sku")),
)
# Capabilities (libvirt's names) whose removal by <qemu:capabilities> changes this builder's output:
# compat-deprecated -> no -compat (libvirt ignores the deprecation setting without it), seccomp-sandbox ->
# no -sandbox.
MODELLED_CAPABILITIES = ("compat-deprecated", "seccomp-sandbox")
SANDBOX = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"


def build_command(domain: etree._Element, caps, paths, conf: dict | None) -> tuple[list[str], dict[str, str]]:
    """argv and environment that start ``domain`` (post-parsed) paused (-S).

    ``paths`` needs ``monitor_socket``, ``pidfile``, ``domain_dir`` and
    ``log_file``; optional ``vnc_port``/``spice_port`` for autoport graphics,
    ``nvram`` (vars file path used when the XML names none) and
    ``monitor_fd``, a listening socket at ``monitor_socket`` that QEMU inherits.  ``conf``
    holds qemu.conf settings; seccomp_sandbox, vnc_listen, vnc_password and
    spice_listen are used, the rest is ignored here.
    """
    return _CommandBuilder(domain, caps, paths, conf or {}).build()


def taints(domain) -> list[str]:
    """libvirt's taint reasons that apply to this definition, in the order libvirt 9 notes them."""
    reasons = []
    if domain.find("qemu:commandline/qemu:arg", _NS) is not None or \
            domain.find("qemu:commandline/qemu:env", _NS) is not None:
        reasons.append("custom-argv")
    if domain.find("qemu:capabilities/*", _NS) is not None:
        reasons.append("custom-hypervisor-feature")
    if domain.find("qemu:override/qemu:device", _NS) is not None:
        reasons.append("custom-device")
    if domain.findtext("os/dtb"):
        reasons.append("custom-dtb")
    cpu = domain.find("cpu")
    if cpu is not None and cpu.get("mode") == "host-passthrough":
        reasons.append("host-cpu")
    return reasons


def namespace_capabilities(domain) -> dict[str, list[str]]:
    """The capability bits added/removed by <qemu:capabilities>."""
    caps = domain.find("qemu:capabilities", _NS)
    found: dict[str, list[str]] = {"add": [], "del": []}
    if caps is None:
        return found
    for kind in ("add", "del"):
        for elem in caps.findall(f"qemu:{kind}", _NS):
            name = elem.get("capability")
            if not name:
                raise InvalidInput(f"<qemu:{kind}> needs a capability attribute", "qemu:capabilities")
            found[kind].append(name)
    return found


def removed_capabilities(domain) -> set[str]:
    """The modelled capabilities <qemu:capabilities> removes; any capability not modelled is refused.

    QEMU 7.2 has both modelled ones, so adding them changes nothing.
    """
    found = namespace_capabilities(domain)
    for kind in ("add", "del"):
        unknown = [name for name in found[kind] if name not in MODELLED_CAPABILITIES]
        if unknown:
            raise InvalidInput(f"the embedded driver does not model capabilit{'y' if len(unknown) == 1 else 'ies'} "
                               f"{', '.join(unknown)}; it can add or remove only "
                               f"{', '.join(MODELLED_CAPABILITIES)}", f"qemu:capabilities/qemu:{kind}")
    return set(found["del"])


def lifecycle_action(domain, caps) -> str:
    """The ``-action`` value for on_poweroff/on_reboot/on_crash.

    * on_poweroff: destroy -> shutdown=poweroff (QEMU exits); preserve ->
      shutdown=pause (the guest stays, stopped).  restart/rename-restart
      need a daemon and are refused.
    * on_reboot: restart -> reboot=reset; destroy/preserve -> reboot=shutdown,
      which then runs the shutdown action, so destroy needs
      on_poweroff=destroy and preserve needs on_poweroff=preserve.
    * on_crash (seen only with a <panic> device): destroy -> panic=exit-failure
      (QEMU >= 7.1, so the exit is recognisable as a crash; older QEMU:
      panic=shutdown), preserve -> panic=pause, restart -> panic=none (QEMU
      lets the guest run its own panic handler, e.g. Linux ``panic=N``
      reboots); coredump-* need a daemon and are refused.
    """
    poweroff = domain.findtext("on_poweroff") or "destroy"
    reboot = domain.findtext("on_reboot") or "restart"
    crash = domain.findtext("on_crash") or "destroy"
    shutdown_action = {"destroy": "poweroff", "preserve": "pause"}.get(poweroff)
    if shutdown_action is None:
        raise InvalidInput(f"{poweroff!r} needs a daemon; the embedded driver supports destroy and preserve",
                           "on_poweroff")
    if reboot == "restart":
        reboot_action = "reset"
    elif reboot in ("destroy", "preserve") and reboot == poweroff:
        reboot_action = "shutdown"
    elif reboot in ("destroy", "preserve"):
        raise InvalidInput(f"on_reboot={reboot} needs on_poweroff={reboot} in the embedded driver "
                           "(QEMU turns the reboot into a shutdown)", "on_reboot")
    else:
        raise InvalidInput(f"unknown action {reboot!r}", "on_reboot")
    destroy_on_panic = "exit-failure" if tuple(caps.version[:2]) >= (7, 1) else "shutdown"
    panic_action = {"destroy": destroy_on_panic, "preserve": "pause", "restart": "none"}.get(crash)
    if panic_action is None:
        raise InvalidInput(f"{crash!r} needs a daemon; the embedded driver supports destroy, preserve "
                           "and restart", "on_crash")
    return f"reboot={reboot_action},shutdown={shutdown_action},panic={panic_action}"


def channel_socket_path(domain_dir: str, name: str | None) -> str | None:
    """Socket of a unix channel without a path: in the domain's ``channel`` directory, as libvirt's channel dir."""
    if not name:
        return None
    path = os.path.join(domain_dir, "channel", name)
    if len(path.encode()) >= 108:
        raise InvalidInput(f"the channel socket path {path} is longer than the 107 bytes a UNIX socket allows; "
                           "use a shorter root or a <source path>", "devices/channel/source@path")
    return path


def record_channel_paths(live, domain_dir: str) -> None:
    """Write the generated socket of each unix channel into the live XML, as libvirt shows it.

    The sockets' directory is created here, as QEMU binds them at start.
    """
    for channel in live.findall("devices/channel[@type='unix']"):
        source = channel.find("source")
        if source is not None and source.get("path"):
            continue
        path = channel_socket_path(domain_dir, channel.find("target").get("name"))
        if path is None:
            continue
        make_private_dir(os.path.dirname(path))
        if source is None:
            source = channel.makeelement("source", {})
            channel.insert(0, source)
        source.set("mode", "bind")
        source.set("path", path)


def opt_escape(value: str) -> str:
    """Escape a value for QEMU's key=value option syntax (commas are doubled)."""
    return str(value).replace(",", ",,")


def _json(props: dict) -> str:
    return json.dumps(props, separators=(",", ":"))


def _yes(value: str | None) -> bool:
    return value in ("yes", "on")


def _discards(backing: etree._Element | None, cell: etree._Element | None) -> bool:
    """Whether guest RAM is discarded on exit: a NUMA cell's discard attribute wins over <memoryBacking>."""
    if cell is not None and cell.get("discard"):
        return _yes(cell.get("discard"))
    return backing is not None and backing.find("discard") is not None


def _kvm_flags(kvm: etree._Element | None) -> list[str]:
    """CPU flags of <features><kvm>: a hidden hypervisor signature, then the PV hints."""
    if kvm is None:
        return []
    flags = []
    hidden = kvm.find("hidden")
    if hidden is not None:
        flags.append(f"kvm={'off' if hidden.get('state', 'on') == 'on' else 'on'}")
    for name in ("hint-dedicated", "poll-control", "pv-ipi"):
        feature = kvm.find(name)
        if feature is not None:
            flags.append(f"kvm-{name}={feature.get('state', 'on')}")
    return flags


def _rtc_base(clock: etree._Element, offset: str) -> str:
    """-rtc base: utc, localtime or, for a variable clock, the start time shifted by the adjustment."""
    if offset in ("utc", "localtime"):
        return offset
    if offset == "timezone":
        return "localtime"
    adjustment = clock_adjustment(clock)
    now = time.time() + adjustment
    stamp = time.localtime(now) if clock.get("basis") == "localtime" else time.gmtime(now)
    return time.strftime("%Y-%m-%dT%H:%M:%S", stamp)


def clock_adjustment(clock: etree._Element) -> int:
    """Seconds of a variable clock's adjustment; 'reset' (valid with utc/localtime in libvirt) is 0."""
    value = clock.get("adjustment", "0")
    if value == "reset":
        return 0
    try:
        return int(value, 10)
    except ValueError:
        raise InvalidInput(f"clock adjustment {value!r} is not an integer number of seconds",
                           "clock@adjustment") from None


def _spinlock_retries(feature: etree._Element) -> int:
    value = feature.get("retries", "4095")
    try:
        return int(value, 10)
    except ValueError:
        raise InvalidInput(f"spinlocks retries {value!r} is not an integer",
                           "features/hyperv/spinlocks@retries") from None


def _hyperv_flags(hyperv: etree._Element | None) -> list[str]:
    """hv-* CPU flags of <features><hyperv mode='custom'>."""
    if hyperv is None:
        return []
    flags = []
    for feature in hyperv:
        if not isinstance(feature.tag, str):
            continue
        name, state = feature.tag, feature.get("state", "on")
        if name == "spinlocks" and state == "on":
            flags.append(f"hv-spinlocks=0x{_spinlock_retries(feature):x}")
        elif name == "vendor_id" and state == "on":
            flags.append(f"hv-vendor-id={opt_escape(feature.get('value', ''))}")
        elif name not in ("spinlocks", "vendor_id"):
            flags.append(f"hv-{name.replace('_', '-')}={state}")
    return flags


def _discard_options(driver) -> dict:
    """discard/detect-zeroes of a disk's format node; detect-zeroes=unmap only applies with discard=unmap."""
    opts = {}
    if driver.get("discard") == "unmap":
        opts["discard"] = "unmap"
    zeroes = driver.get("detect_zeroes")
    if zeroes and zeroes != "off":
        opts["detect-zeroes"] = "unmap" if zeroes == "unmap" and opts.get("discard") else "on"
    return opts


class _CommandBuilder:
    def __init__(self, domain: etree._Element, caps, paths, conf: dict) -> None:
        if domain.find("os").get("firmware") or domain.find("os/loader") is not None:
            domain = copy.deepcopy(domain)   # the caller's definition stays as it is
            firmware.fill(domain, getattr(paths, "nvram", None) or "")
        self.dom = domain
        self.bios: str | None = None
        self.extra_env: dict[str, str] = {}
        self.caps = caps
        self.paths = paths
        self.conf = conf
        self.devices = domain.find("devices")
        if self.devices is None:
            raise InvalidInput("the domain has no <devices>; run postparse first", "devices")
        self.machine = domain.find("os/type").get("machine")
        self.family = machine_family(self.machine)
        self.argv: list[str] = []
        self.device_args: dict[str, dict] = {}  # id -> JSON props of -device (for qemu:override)
        self.bootindex = _BootOrder(domain)
        self.removed_caps = removed_capabilities(domain)

    def add(self, *args: object) -> None:
        self.argv.extend(str(a) for a in args)

    def add_device(self, props):
        self.device_args[props["id"]] = props
        self.argv.append("-device")
        self.argv.append(props)  # serialised at the end, after overrides

    # -- top level

    def build(self) -> tuple[list[str], dict[str, str]]:
        emulator = (self.devices.findtext("emulator") or "").strip() or self.caps.binary
        self.add(emulator, "-name", f"guest={opt_escape(self.dom.findtext('name'))},debug-threads=on")
        self._compat()
        self.add("-S")
        pflash = self._firmware()
        self._machine(pflash)
        self._cpu_memory_smp()
        self.add("-uuid", self.dom.findtext("uuid"))
        self._smbios()
        if self.devices.find("graphics") is None:
            self.add("-display", "none")
        self.add("-no-user-config", "-nodefaults")
        self.add("-chardev", f"socket,id=charmonitor,{self._monitor_address()},server=on,wait=off",
                 "-mon", "chardev=charmonitor,id=monitor,mode=control")
        self._clock()
        self.add("-action", lifecycle_action(self.dom, self.caps))
        if self.dom.find("features/acpi") is None:
            self.add("-no-acpi")
        self._power_management()
        self._boot()
        self._iommu()
        self._controllers()
        self._hubs()
        self._disks()
        self._interfaces()
        self._serials()
        self._parallels()
        self._channels()
        self._inputs()
        audio_id = self._audio()
        self._graphics(audio_id)
        self._videos()
        self._sounds(audio_id)
        self._watchdogs()
        self._redirdevs()
        self._balloon()
        self._rngs()
        self._vmcoreinfo()
        self._panics()
        self._shmems()
        self._vsocks()
        self._apply_overrides()
        argv = [_json(a) if isinstance(a, dict) else a for a in self.argv]
        argv.extend(self._custom_args())
        if str(self.conf.get("seccomp_sandbox", 1)) != "0" and "seccomp-sandbox" not in self.removed_caps:
            argv += ["-sandbox", SANDBOX]
        argv += ["-msg", "timestamp=on"]
        return argv, {**self._environment(), **self.extra_env}

    def _monitor_address(self) -> str:
        # A socket the driver made listens before QEMU runs: nobody has to wait for QEMU to make it.
        fd = getattr(self.paths, "monitor_fd", None)
        return f"fd={fd}" if fd is not None else f"path={opt_escape(self.paths.monitor_socket)}"

    def _environment(self):
        home = self.paths.domain_dir
        env = {
            "LC_ALL": "C",
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": home,
            "XDG_DATA_HOME": os.path.join(home, ".local/share"),
            "XDG_CACHE_HOME": os.path.join(home, ".cache"),
            "XDG_CONFIG_HOME": os.path.join(home, ".config"),
        }
        for var in self.dom.findall("qemu:commandline/qemu:env", _NS):
            name = var.get("name")
            if not name or not (name[0].isalpha() or name[0] == "_") or not all(
                    c.isalnum() or c == "_" for c in name):
                raise InvalidInput(f"invalid environment variable name {name!r}", "qemu:commandline/qemu:env")
            env[name] = var.get("value", "")
        return env

    def _custom_args(self):
        args = []
        for arg in self.dom.findall("qemu:commandline/qemu:arg", _NS):
            if arg.get("value") is None:
                raise InvalidInput("<qemu:arg> needs a value attribute", "qemu:commandline/qemu:arg")
            args.append(arg.get("value"))
        return args

    def _compat(self):
        deprecation = self.dom.find("qemu:deprecation", _NS)
        if deprecation is None:
            return
        behavior = deprecation.get("behavior")
        if behavior not in _DEPRECATION:
            raise InvalidInput(f"unknown behavior {behavior!r}", "qemu:deprecation")
        if _DEPRECATION[behavior] and "compat-deprecated" not in self.removed_caps:
            self.add("-compat", _json(_DEPRECATION[behavior]))

    def _firmware(self) -> list[str]:
        loader = self.dom.find("os/loader")
        if loader is None:
            return []
        path = (loader.text or "").strip()
        if loader.get("type", "rom") == "rom":
            self.bios = path
            return []
        readonly = _yes(loader.get("readonly", "no"))
        nodes = [self._pflash_node(0, path, readonly=readonly)]
        if readonly:
            nvram = (self.dom.findtext("os/nvram") or "").strip() or getattr(self.paths, "nvram", None)
            if not nvram:
                raise InvalidInput("a read-only pflash loader needs an <nvram> vars file", "os/nvram")
            nodes.append(self._pflash_node(1, nvram, readonly=False))
        return nodes

    def _pflash_node(self, unit: int, path: str, readonly: bool) -> str:
        storage, fmt = f"libvirt-pflash{unit}-storage", f"libvirt-pflash{unit}-format"
        self.add("-blockdev", _json({"driver": "file", "filename": path, "node-name": storage,
                                     "auto-read-only": True, "discard": "unmap"}))
        self.add("-blockdev", _json({"node-name": fmt, "read-only": readonly, "driver": "raw", "file": storage}))
        return fmt

    def _machine(self, pflash: list[str]) -> None:
        opts = [self.machine, "usb=off"]
        vmport, smm = self.dom.find("features/vmport"), self.dom.find("features/smm")
        if vmport is not None:
            opts.append(f"vmport={vmport.get('state', 'on')}")
        if smm is not None:
            opts.append(f"smm={smm.get('state', 'on')}")
        ioapic = self.dom.find("features/ioapic")
        if ioapic is not None and ioapic.get("driver"):
            opts.append("kernel_irqchip=" + ("split" if ioapic.get("driver") == "qemu" else "on"))
        opts.append("dump-guest-core=off")
        if self.dom.find("memoryBacking/nosharepages") is not None:
            opts.append("mem-merge=off")
        if not self.dom.findall("cpu/numa/cell"):
            opts.append("memory-backend=pc.ram")
        opts += [f"pflash{i}={node}" for i, node in enumerate(pflash)]
        if self.dom.find("os/bios[@useserial='yes']") is not None:
            opts.append("graphics=off")
        self.add("-machine", ",".join(opts))
        accel = "kvm" if self.dom.get("type") == "kvm" else "tcg"
        if self.caps.accels and accel not in self.caps.accels:
            raise InvalidInput(f"accelerator {accel} is not available on this host", "domain@type")
        self.add("-accel", accel)
        tseg = self.dom.find("features/smm/tseg")
        if tseg is not None:
            self.add("-global", f"mch.extended-tseg-mbytes={to_kib(tseg, 'features/smm/tseg') // 1024}")

    def _cpu_memory_smp(self) -> None:
        cpu = self.dom.find("cpu")
        model = self._cpu_model(cpu)
        if model:
            self.add("-cpu", model)
        if self.bios:
            self.add("-bios", self.bios)
        elif self.dom.find("os/loader[@secure='yes']") is not None:
            self.add("-global", "driver=cfi.pflash01,property=secure,value=on")
        mib = -(-to_kib(self.dom.find("memory"), "memory") // 1024)
        self.add("-m", mib)
        if not self.dom.findall("cpu/numa/cell"):
            self.add("-object", _json(self._memory_backend("pc.ram", mib * 1024 * 1024, None)))
        locked = self.dom.find("memoryBacking/locked") is not None
        self.add("-overcommit", f"mem-lock={'on' if locked else 'off'}")
        self.add("-smp", self._smp(cpu))
        for number in range(1, int(self.dom.findtext("iothreads") or 0) + 1):
            self.add("-object", _json({"qom-type": "iothread", "id": f"iothread{number}"}))
        self._numa()

    def _memory_backend(self, ident: str, size: int, cell: etree._Element | None) -> dict:
        """A memory-backend-* object for guest RAM (``cell`` is a NUMA <cell> or None)."""
        backing = self.dom.find("memoryBacking")
        source = backing.find("source").get("type") if backing is not None and backing.find("source") \
            is not None else "anonymous"
        access = backing.find("access").get("mode") if backing is not None and backing.find("access") \
            is not None else None
        if cell is not None and cell.get("memAccess"):
            access = cell.get("memAccess")
        if source == "anonymous" and access is not None:
            source = "file"     # shared or private mappings need a file, as in libvirt
        props: dict = {"qom-type": _BACKENDS[source], "id": ident}
        if source == "file":
            props["mem-path"] = os.path.join(self.paths.domain_dir, ident)
            if _discards(backing, cell):
                props["discard-data"] = True
        if access is not None:
            props["share"] = access == "shared"
        if source != "anonymous" and cell is None:
            props["x-use-canonical-path-for-ramblock-id"] = False
        props["size"] = size
        return props

    def _numa(self) -> None:
        cells = self.dom.findall("cpu/numa/cell")
        for cell in cells:
            node = f"ram-node{cell.get('id')}"
            self.add("-object", _json(self._memory_backend(node, int(cell.get("memory")) * 1024, cell)))
            cpus = ",".join(f"cpus={span}" for span in cpu_ranges(cell.get("cpus"), "cpu/numa/cell@cpus"))
            self.add("-numa", f"node,nodeid={cell.get('id')},{cpus},memdev={node}")
        for cell in cells:
            for sibling in cell.findall("distances/sibling"):
                self.add("-numa", f"dist,src={cell.get('id')},dst={sibling.get('id')},val={sibling.get('value')}")

    def _cpu_model(self, cpu: etree._Element | None) -> str | None:
        if cpu is None:
            return None
        mode = cpu.get("mode", "custom")
        if mode == "host-passthrough":
            # Refused at start, not at define, as libvirt does: the definition may move to a KVM host.
            if self.dom.get("type") != "kvm":
                raise InvalidInput("CPU mode 'host-passthrough' needs a kvm domain: "
                                   "a qemu (TCG) domain has no host CPU to pass through", "cpu@mode")
            name = "host"
        elif mode == "maximum":
            name = "max"
        elif mode == "custom":
            name = cpu.findtext("model")
            if not name:
                return None
            if self.caps.cpu_models and name not in self.caps.cpu_models:
                raise InvalidInput(f"CPU model {name!r} is not known to {self.caps.binary}", "cpu/model")
        else:
            raise InvalidInput(f"CPU mode {mode!r} is not supported by the embedded driver", "cpu@mode")
        flags = [f"{f.get('name')}={'on' if f.get('policy', 'require') in ('require', 'force') else 'off'}"
                 for f in cpu.findall("feature")]
        flags += self._cpu_flags_from_features()
        return ",".join([name, *flags])

    def _cpu_flags_from_features(self) -> list[str]:
        flags = []
        kvmclock = self.dom.find("clock/timer[@name='kvmclock']")
        if kvmclock is not None and kvmclock.get("present"):
            flags.append(f"kvmclock={'on' if _yes(kvmclock.get('present')) else 'off'}")
        eoi = self.dom.find("features/apic")
        if eoi is not None and eoi.get("eoi"):
            flags.append(f"kvm-pv-eoi={eoi.get('eoi')}")
        pvspinlock = self.dom.find("features/pvspinlock")
        if pvspinlock is not None:
            flags.append(f"kvm-pv-unhalt={pvspinlock.get('state', 'on')}")
        flags += _hyperv_flags(self.dom.find("features/hyperv"))
        flags += _kvm_flags(self.dom.find("features/kvm"))
        pmu = self.dom.find("features/pmu")
        if pmu is not None:
            flags.append(f"pmu={pmu.get('state', 'on')}")
        return flags

    def _smp(self, cpu: etree._Element | None) -> str:
        vcpu = self.dom.find("vcpu")
        maximum = int(vcpu.text)
        current = int(vcpu.get("current", maximum))
        topology = cpu.find("topology") if cpu is not None else None
        opts = [str(current)]
        if current != maximum:
            opts.append(f"maxcpus={maximum}")
        if topology is None:
            return ",".join([*opts, f"sockets={maximum}", "cores=1", "threads=1"])
        counts = [int(topology.get(k, "1")) for k in ("sockets", "dies", "cores", "threads")]
        if counts[0] * counts[1] * counts[2] * counts[3] != maximum:
            raise InvalidInput("CPU topology does not match the vcpu count", "cpu/topology")
        opts += [f"{k}={n}" for k, n in zip(("sockets", "dies", "cores", "threads"), counts, strict=True)]
        return ",".join(opts)

    def _smbios(self) -> None:
        if self.dom.find("os/smbios[@mode='sysinfo']") is None:
            return
        sysinfo = self.dom.find("sysinfo[@type='smbios']")
        for section, number, fields in _SMBIOS_TABLES:
            block = sysinfo.find(section)
            if block is None:
                continue
            entries = {e.get("name"): (e.text or "") for e in block.findall("entry")}
            opts = [f"{name}={opt_escape(entries[name])}" for name in fields if entries.get(name)]
            if opts:
                self.add("-smbios", ",".join([f"type={number}", *opts]))
        strings = [e.text or "" for e in sysinfo.findall("oemStrings/entry")]
        if strings:
            self.add("-smbios", ",".join(["type=11", *(f"value={opt_escape(v)}" for v in strings)]))

    def _clock(self) -> None:
        clock = self.dom.find("clock")
        offset = clock.get("offset", "utc") if clock is not None else "utc"
        rtc = [f"base={_rtc_base(clock, offset)}"]
        if offset == "timezone":
            self.extra_env["TZ"] = clock.get("timezone", "")
        timer = clock.find("timer[@name='rtc']") if clock is not None else None
        if timer is not None:
            track = {"guest": "vm", "wall": "host", "realtime": "rt"}.get(timer.get("track", ""))
            if track:
                rtc.append(f"clock={track}")
            if timer.get("tickpolicy") == "catchup":
                rtc.append("driftfix=slew")
        self.add("-rtc", ",".join(rtc))
        pit = clock.find("timer[@name='pit']") if clock is not None else None
        if pit is not None and pit.get("tickpolicy") in (None, "delay", "discard"):
            self.add("-global", f"kvm-pit.lost_tick_policy={pit.get('tickpolicy') or 'delay'}")
        if clock is not None and clock.find("timer[@name='hpet'][@present='no']") is not None:
            self.add("-no-hpet")

    def _power_management(self) -> None:
        device = "ICH9-LPC" if self.family == "q35" else "PIIX4_PM"
        for tag, state in (("suspend-to-mem", "s3"), ("suspend-to-disk", "s4")):
            elem = self.dom.find(f"pm/{tag}")
            if elem is not None and elem.get("enabled") in ("yes", "no"):
                self.add("-global", f"{device}.disable_{state}={0 if _yes(elem.get('enabled')) else 1}")

    def _vmcoreinfo(self) -> None:
        if self.dom.find("features/vmcoreinfo[@state='off']") is None and \
                self.dom.find("features/vmcoreinfo") is not None:
            self.argv += ["-device", _json({"driver": "vmcoreinfo"})]

    def _boot(self) -> None:
        opts = []
        menu = self.dom.find("os/bootmenu")
        if menu is not None and menu.get("enable") in ("yes", "no"):
            opts.append(f"menu={'on' if _yes(menu.get('enable')) else 'off'}")
        bios = self.dom.find("os/bios")
        if bios is not None and bios.get("rebootTimeout") is not None:
            opts.append(f"reboot-timeout={bios.get('rebootTimeout')}")
        if menu is not None and _yes(menu.get("enable")) and menu.get("timeout") is not None:
            opts.append(f"splash-time={menu.get('timeout')}")
        opts.append("strict=on")
        self.add("-boot", ",".join(opts))
        for tag, flag in (("kernel", "-kernel"), ("initrd", "-initrd"), ("cmdline", "-append"), ("dtb", "-dtb")):
            value = self.dom.findtext(f"os/{tag}")
            if value:
                self.add(flag, value)

    # -- addresses and aliases

    def _bus_name(self, index):
        if index == 0:
            return "pcie.0" if self.family == "q35" else "pci.0"
        return f"pci.{index}"

    def _pci(self, elem, props):
        address = elem.find("address[@type='pci']")
        if address is None:
            raise InvalidInput(f"<{elem.tag}> has no PCI address; run postparse first", f"devices/{elem.tag}/address")
        slot, function = int(address.get("slot"), 0), int(address.get("function", "0"), 0)
        props["bus"] = self._bus_name(int(address.get("bus"), 0))
        if _yes(address.get("multifunction", "off")):
            props["multifunction"] = True
        props["addr"] = f"0x{slot:x}" if function == 0 else f"0x{slot:x}.0x{function:x}"
        return props

    @staticmethod
    def _alias(elem, default):
        alias = elem.find("alias")
        if alias is not None and (alias.get("name") or "").startswith("ua-"):
            return alias.get("name")
        return default

    # -- devices

    def _controllers(self):
        ctrls = self.devices.findall("controller")
        for ctrl in sorted(ctrls, key=lambda c: int(c.get("index"))):
            if ctrl.get("type") == "pci":
                self._pci_controller(ctrl)
        for ctype in ("usb", "scsi", "sata", "virtio-serial"):
            for ctrl in (c for c in ctrls if c.get("type") == ctype):
                self._device_controller(ctrl)
        for ctrl in ctrls:
            if ctrl.get("type") not in ("pci", "usb", "scsi", "sata", "virtio-serial", "ide", "fdc"):
                raise InvalidInput(f"controller type {ctrl.get('type')!r} is not supported by the embedded "
                                   "driver", "devices/controller@type")
            if ctrl.get("type") in ("ide", "fdc") and (self.family == "q35" or int(ctrl.get("index")) > 0):
                raise InvalidInput(f"only the built-in {ctrl.get('type')} controller of pc machines exists",
                                   "devices/controller@type")

    def _pci_controller(self, ctrl):
        model, index = ctrl.get("model"), int(ctrl.get("index"))
        ident = self._alias(ctrl, f"pci.{index}")
        if model in ("pci-root", "pcie-root"):
            return
        target = ctrl.find("target")
        if model == "pcie-root-port":
            props = {"driver": "pcie-root-port", "port": int(target.get("port"), 0),
                     "chassis": int(target.get("chassis")), "id": ident}
        elif model == "pcie-to-pci-bridge":
            props = {"driver": "pcie-pci-bridge", "id": ident}
        elif model == "pci-bridge":
            props = {"driver": "pci-bridge", "chassis_nr": int(target.get("chassisNr")), "id": ident}
        else:
            raise InvalidInput(f"PCI controller model {model!r} is not supported", "devices/controller@model")
        self.add_device(self._pci(ctrl, props))

    def _device_controller(self, ctrl):
        ctype, model, index = ctrl.get("type"), ctrl.get("model"), int(ctrl.get("index"))
        if ctype == "usb":
            if model == "none":
                return
            driver = _USB_DRIVERS.get(model)
            ident = "usb" if index == 0 else f"usb{index}"
        elif ctype == "scsi":
            driver, ident = _SCSI_DRIVERS.get(model), f"scsi{index}"
        elif ctype == "sata":
            if self.family == "q35" and index == 0:
                return  # the ICH9 AHCI controller is built into q35
            driver, ident = "ich9-ahci", f"sata{index}"
        else:
            driver, ident = "virtio-serial-pci", f"virtio-serial{index}"
        if driver is None:
            raise InvalidInput(f"{ctype} controller model {model!r} is not supported by the embedded driver",
                               "devices/controller@model")
        if ctype == "usb" and ctrl.find("master") is not None:
            # a UHCI companion of an EHCI controller: no bus of its own, so no id
            self._add_anonymous_device(self._pci(ctrl, {"driver": driver, "masterbus": f"{ident}.0",
                                                        "firstport": int(ctrl.find("master").get("startport"))}))
            return
        self.add_device(self._pci(ctrl, {"driver": driver, "id": self._alias(ctrl, ident)}))

    def _disks(self):
        disks = self.devices.findall("disk")
        for number, disk in enumerate(disks):
            self._disk(disk, len(disks) - number)

    def _disk(self, disk, node_number: int) -> None:
        target = disk.find("target")
        bus, dev, device = target.get("bus"), target.get("dev"), disk.get("device", "disk")
        if device not in ("disk", "cdrom", "floppy"):
            raise InvalidInput(f"disk device {device!r} is not supported by the embedded driver", "devices/disk@device")
        driver = disk.find("driver")
        shareable = disk.find("shareable") is not None
        mode = (driver.get("cache") if driver is not None else None) or ("none" if shareable else None)
        cache = _CACHE_MODES.get(mode) if mode else None
        if mode and cache is None:
            raise InvalidInput(f"unknown cache mode {mode!r}", "devices/disk/driver@cache")
        readonly = disk.find("readonly") is not None
        node = self._disk_nodes(disk, node_number, cache, readonly)
        props = self._disk_frontend(disk, bus, dev, device)
        if node:
            props["drive"] = node
        props["id"] = self._alias(disk, props.pop("id"))
        self._disk_properties(disk, props, shareable)
        if cache and node:
            props["write-cache"] = cache[2]
        self.add_device(props)

    def _disk_properties(self, disk, props: dict, shareable: bool) -> None:
        boot = self.bootindex.of(disk)
        if boot:
            props["bootindex"] = boot
        if shareable:
            props["share-rw"] = True
        if disk.findtext("serial"):
            props["serial"] = disk.findtext("serial")
        wwn = disk.findtext("wwn")
        if wwn:
            try:
                props["wwn"] = int(wwn, 16)
            except ValueError:
                raise InvalidInput(f"wwn {wwn!r} is not a hexadecimal number", "devices/disk/wwn") from None

    def _disk_nodes(self, disk, number: int, cache, readonly: bool) -> str | None:
        source = disk.find("source")
        dtype = disk.get("type", "file")
        if dtype == "network":
            return self._network_disk_nodes(disk, number, cache, readonly)
        if dtype not in ("file", "block"):
            raise InvalidInput(f"disk type {dtype!r} is not supported by the embedded driver", "devices/disk@type")
        path = None if source is None else source.get("file" if dtype == "file" else "dev")
        if not path:
            if disk.get("device") in ("cdrom", "floppy"):
                return None
            raise InvalidInput(f"disk {disk.find('target').get('dev')} has no source", "devices/disk/source")
        storage, fmt = f"libvirt-{number}-storage", f"libvirt-{number}-format"
        driver = disk.find("driver")
        cache_opts = {"cache": {"direct": cache[0], "no-flush": cache[1]}} if cache else {}
        aio = {"aio": driver.get("io")} if driver.get("io") else {}
        self.add("-blockdev", _json({"driver": "file" if dtype == "file" else "host_device", "filename": path, **aio,
                                     "node-name": storage, **cache_opts, "auto-read-only": True,
                                     "discard": "unmap"}))
        fmt_props = {"node-name": fmt, "read-only": readonly, **_discard_options(driver), **cache_opts,
                     "driver": driver.get("type", "raw"), "file": storage}
        self.add("-blockdev", _json(fmt_props))
        return fmt

    def _network_disk_nodes(self, disk, number: int, cache, readonly: bool) -> str:
        """An iSCSI LUN through QEMU's user-space initiator (libiscsi); the only network disk supported."""
        source = disk.find("source")
        if source is None or source.get("protocol") != "iscsi" or source.find("host") is None:
            raise InvalidInput("the embedded driver supports network disks of protocol iscsi only",
                               "devices/disk/source@protocol")
        target, _slash, lun = (source.get("name") or "").rpartition("/")
        host = source.find("host")
        storage, fmt = f"libvirt-{number}-storage", f"libvirt-{number}-format"
        cache_opts = {"cache": {"direct": cache[0], "no-flush": cache[1]}} if cache else {}
        props = {"driver": "iscsi", "portal": f"{host.get('name')}:{host.get('port') or 3260}",
                 "target": target, "lun": int(lun or 0), "transport": "tcp", "node-name": storage,
                 **cache_opts, "auto-read-only": True, "discard": "unmap"}
        initiator = source.find("initiator/iqn")
        if initiator is not None and initiator.get("name"):
            props["initiator-name"] = initiator.get("name")
        self.add("-blockdev", _json(props))
        driver = disk.find("driver")
        self.add("-blockdev", _json({"node-name": fmt, "read-only": readonly, **cache_opts,
                                     "driver": driver.get("type", "raw") if driver is not None else "raw",
                                     "file": storage}))
        return fmt

    def _disk_frontend(self, disk, bus: str, dev: str, device: str) -> dict:
        cd = device == "cdrom"
        address = disk.find("address")
        if bus == "virtio":
            if cd:
                raise InvalidInput("a cdrom cannot be on the virtio bus", "devices/disk/target@bus")
            return self._pci(disk, {"driver": "virtio-blk-pci", "id": f"virtio-disk{disk_index(dev)}"})
        if bus == "usb":
            removable = _yes(disk.find("target").get("removable", "no"))
            return self._usb(disk, {"driver": "usb-storage", "id": f"usb-disk{disk_index(dev)}",
                                    "removable": removable})
        ctrl, unit = int(address.get("controller")), int(address.get("unit"))
        drive_bus, target = int(address.get("bus")), int(address.get("target", "0"))
        if bus == "fdc":
            return {"driver": "floppy", "unit": unit, "id": f"fdc0-0-{unit}"}
        if bus == "ide":
            return {"driver": "ide-cd" if cd else "ide-hd", "bus": f"ide.{drive_bus}", "unit": unit,
                    "id": f"ide{ctrl}-{drive_bus}-{unit}"}
        if bus == "sata":
            ahci = "ide" if self.family == "q35" and ctrl == 0 else f"sata{ctrl}"
            return {"driver": "ide-cd" if cd else "ide-hd", "bus": f"{ahci}.{unit}", "id": f"sata{ctrl}-0-{unit}"}
        if bus == "scsi":
            return self._scsi_frontend(cd, ctrl, drive_bus, target, unit)
        raise InvalidInput(f"disk bus {bus!r} is not supported by the embedded driver", "devices/disk/target@bus")

    def _scsi_frontend(self, cd, ctrl, drive_bus, target, unit):
        driver = "scsi-cd" if cd else "scsi-hd"
        model = next((c.get("model") for c in self.devices.findall("controller[@type='scsi']")
                      if int(c.get("index")) == ctrl), None)
        if model == "virtio-scsi":
            name = f"scsi{ctrl}-{drive_bus}-{target}-{unit}"
            return {"driver": driver, "bus": f"scsi{ctrl}.0", "channel": drive_bus, "scsi-id": target,
                    "lun": unit, "device_id": f"drive-{name}", "id": name}
        name = f"scsi{ctrl}-{drive_bus}-{unit}"
        return {"driver": driver, "bus": f"scsi{ctrl}.0", "scsi-id": unit, "device_id": f"drive-{name}",
                "id": name}

    def _interfaces(self):
        for number, iface in enumerate(self.devices.findall("interface")):
            netdev = {"type": "user"} if iface.get("type") == "user" else self._tap(iface)
            netdev["id"] = f"hostnet{number}"
            self.add("-netdev", _json(netdev))
            model = iface.find("model").get("type")
            driver = _NET_DRIVERS.get(model)
            if driver is None:
                raise InvalidInput(f"interface model {model!r} is not supported by the embedded driver",
                                   "devices/interface/model@type")
            props = {"driver": driver, "netdev": netdev["id"], "id": self._alias(iface, f"net{number}"),
                     "mac": iface.find("mac").get("address")}
            boot = self.bootindex.of(iface)
            if boot:
                props["bootindex"] = boot
            self.add_device(self._pci(iface, props))

    @staticmethod
    def _tap(iface):
        if iface.get("type") not in ("bridge", "network", "ethernet"):
            raise InvalidInput(f"interface type {iface.get('type')!r} is not supported by the embedded driver",
                               "devices/interface@type")
        target = iface.find("target")
        if target is None or not target.get("dev"):
            raise InvalidInput("a tap interface needs <target dev='...'/>, the tap the driver created",
                               "devices/interface/target@dev")
        return {"type": "tap", "ifname": target.get("dev"), "script": "no", "downscript": "no"}

    def _serials(self):
        for serial in self.devices.findall("serial"):
            target = serial.find("target")
            if target.get("type") != "isa-serial":
                raise InvalidInput(f"serial target {target.get('type')!r} is not supported", "devices/serial/target")
            port = int(target.get("port"))
            chardev = f"charserial{port}"
            self.add("-chardev", self._chardev_backend(serial, chardev))
            self.add_device({"driver": "isa-serial", "chardev": chardev,
                             "id": self._alias(serial, f"serial{port}"), "index": port})
        for console in self.devices.findall("console"):
            if console.find("target").get("type") != "serial":
                raise InvalidInput("only serial consoles are supported by the embedded driver",
                                   "devices/console/target@type")

    def _chardev_backend(self, chardev, ident: str, where: str | None = None, spice_name: str = "vdagent",
                         default_path: str | None = None) -> str:
        """The -chardev value for a character device's backend (its type and <source>)."""
        where = where or f"devices/{chardev.tag}"
        ctype = chardev.get("type", "pty")
        sources = chardev.findall("source")
        src = sources[0].attrib if sources else {}
        if ctype in ("pty", "null"):
            return f"{ctype},id={ident}"
        if ctype == "spicevmc":
            return f"spicevmc,id={ident},name={spice_name}"
        if ctype == "file":
            if not src.get("path"):
                raise InvalidInput("a file chardev needs <source path>", f"{where}/source@path")
            append = ",append=on" if src.get("append") == "on" else ""
            return f"file,id={ident},path={opt_escape(src['path'])}{append}"
        if ctype == "udp":
            return self._udp_chardev(sources, ident, where)
        generated = ctype == "unix" and not src.get("path")
        server = ",server=on,wait=off" if src.get("mode", "bind" if generated else "connect") == "bind" else ""
        path = src.get("path") or default_path
        if ctype == "unix" and path:
            return f"socket,id={ident},path={opt_escape(path)}{server}"
        if ctype == "tcp" and src.get("service"):
            protocol = chardev.find("protocol")
            telnet = ",telnet=on" if protocol is not None and protocol.get("type") == "telnet" else ""
            host = src.get("host", "127.0.0.1")
            return f"socket,id={ident},host={opt_escape(host)},port={src['service']}{telnet}{server}"
        raise InvalidInput(f"chardev type {ctype!r} (or its source) is not supported by the embedded driver",
                           f"{where}@type")

    @staticmethod
    def _udp_chardev(sources, ident: str, where: str) -> str:
        by_mode = {s.get("mode", "connect"): s for s in sources}
        remote = by_mode.get("connect")
        if remote is None or not remote.get("service"):
            raise InvalidInput("a udp chardev needs <source mode='connect' service='...'/>", f"{where}/source")
        opts = f"udp,id={ident},host={opt_escape(remote.get('host', '127.0.0.1'))},port={remote.get('service')}"
        local = by_mode.get("bind")
        if local is not None:
            opts += f",localaddr={opt_escape(local.get('host', '127.0.0.1'))},localport={local.get('service', '0')}"
        return opts

    def _parallels(self) -> None:
        for number, parallel in enumerate(self.devices.findall("parallel")):
            chardev = f"charparallel{number}"
            self.add("-chardev", self._chardev_backend(parallel, chardev))
            self.add_device({"driver": "isa-parallel", "chardev": chardev,
                             "id": self._alias(parallel, f"parallel{number}")})

    def _channels(self) -> None:
        for number, channel in enumerate(self.devices.findall("channel")):
            target = channel.find("target")
            if target is None or target.get("type") != "virtio":
                raise InvalidInput("only virtio channels are supported by the embedded driver (guestfwd needs "
                                   "a daemon-side socket)", "devices/channel/target@type")
            name = target.get("name")
            chardev = f"charchannel{number}"
            self.add("-chardev", self._chardev_backend(channel, chardev, default_path=self._channel_path(name)))
            address = channel.find("address[@type='virtio-serial']")
            props = {"driver": "virtserialport", "bus": f"virtio-serial{address.get('controller', '0')}."
                     f"{address.get('bus', '0')}", "nr": int(address.get("port")), "chardev": chardev,
                     "id": self._alias(channel, f"channel{number}")}
            if name:
                props["name"] = name
            self.add_device(props)

    def _channel_path(self, name: str | None) -> str | None:
        return channel_socket_path(self.paths.domain_dir, name)

    def _inputs(self):
        for number, inp in enumerate(self.devices.findall("input")):
            key = (inp.get("type"), inp.get("bus"))
            if key[1] == "ps2":
                continue  # the i8042 is built into the machine
            driver = _INPUT_DRIVERS.get(key)
            if driver is None:
                raise InvalidInput(f"input {key[0]} on bus {key[1]} is not supported", "devices/input")
            props = {"driver": driver, "id": self._alias(inp, f"input{number}")}
            if key[1] == "usb":
                address = inp.find("address")
                props.update({"bus": f"usb.{address.get('bus', '0')}", "port": address.get("port")})
                self.add_device(props)
            else:
                self.add_device(self._pci(inp, props))

    def _audio(self):
        audio = self.devices.find("audio")
        if audio is None:
            return None
        kind = audio.get("type")
        if kind not in ("none", "spice"):
            raise InvalidInput(f"audio type {kind!r} is not supported by the embedded driver", "devices/audio@type")
        ident = f"audio{audio.get('id', '1')}"
        self.add("-audiodev", _json({"id": ident, "driver": kind}))
        return ident

    def _graphics(self, audio_id):
        for graphics in self.devices.findall("graphics"):
            kind = graphics.get("type")
            if kind == "vnc":
                self.add("-vnc", self._vnc(graphics, audio_id))
            elif kind == "spice":
                self.add("-spice", self._spice(graphics))
            else:
                raise InvalidInput(f"graphics type {kind!r} is not supported by the embedded driver",
                                   "devices/graphics@type")

    def _vnc(self, graphics, audio_id):
        listen = graphics.find("listen")
        ltype = listen.get("type") if listen is not None else "address"
        if ltype == "none":
            display = "none"
        elif ltype == "socket":
            path = listen.get("socket") or graphics.get("socket") or os.path.join(self.paths.domain_dir, "vnc.sock")
            display = f"vnc=unix:{opt_escape(path)}"
        else:
            address = (listen.get("address") if listen is not None else None) or graphics.get("listen") \
                or self.conf.get("vnc_listen", "127.0.0.1")
            if ":" in address:
                address = f"[{address}]"
            display = f"{address}:{self._port(graphics, 'vnc_port', 5900) - 5900}"
        opts = [display]
        if graphics.get("passwd") or self.conf.get("vnc_password"):
            opts.append("password=on")
        if audio_id:
            opts.append(f"audiodev={audio_id}")
        return ",".join(opts)

    def _spice(self, graphics):
        listen = graphics.find("listen")
        opts = []
        if listen is None or listen.get("type") != "none":
            address = (listen.get("address") if listen is not None else None) or graphics.get("listen") \
                or self.conf.get("spice_listen", "127.0.0.1")
            opts += [f"port={self._port(graphics, 'spice_port', 0)}", f"addr={address}"]
        if not (graphics.get("passwd") or self.conf.get("spice_password")):
            opts.append("disable-ticketing=on")
        opts.append("seamless-migration=on")
        return ",".join(opts)

    def _port(self, graphics, attr, minimum):
        port = graphics.get("port")
        if graphics.get("autoport") == "yes" or port in (None, "-1"):
            port = getattr(self.paths, attr, None)
            if port is None:
                raise InvalidInput(f"{graphics.get('type')} autoport needs a port chosen by the caller "
                                   f"(paths.{attr})", "devices/graphics@port")
        port = int(port)
        if port < minimum or port > 65535:
            raise InvalidInput(f"port {port} is out of range", "devices/graphics@port")
        return port

    def _videos(self):
        for number, video in enumerate(self.devices.findall("video")):
            model = video.find("model")
            vtype = model.get("type")
            if vtype == "none":
                continue
            primary = model.get("primary") == "yes" or number == 0
            props = {"driver": self._video_driver(vtype, primary), "id": self._alias(video, f"video{number}")}
            if vtype == "vga":
                props["vgamem_mb"] = int(model.get("vram", "16384")) // 1024
            elif vtype == "virtio":
                props["max_outputs"] = int(model.get("heads", "1"))
            elif vtype == "qxl":
                props.update({"ram_size": int(model.get("ram")) * 1024, "vram_size": int(model.get("vram")) * 1024,
                              "vram64_size_mb": int(model.get("vram64", "0")) // 1024,
                              "vgamem_mb": int(model.get("vgamem")) // 1024, "max_outputs": int(model.get("heads"))})
            elif vtype == "bochs":
                props["vgamem"] = int(model.get("vram", "16384")) * 1024
            self.add_device(self._pci(video, props))

    @staticmethod
    def _video_driver(vtype, primary):
        drivers = {"cirrus": ("cirrus-vga", None), "vga": ("VGA", None), "bochs": ("bochs-display", "bochs-display"),
                   "virtio": ("virtio-vga", "virtio-gpu-pci"), "qxl": ("qxl-vga", "qxl")}
        if vtype not in drivers:
            raise InvalidInput(f"video model {vtype!r} is not supported by the embedded driver",
                               "devices/video/model@type")
        driver = drivers[vtype][0 if primary else 1]
        if driver is None:
            raise InvalidInput(f"video model {vtype!r} can only be the primary video", "devices/video/model@type")
        return driver

    def _watchdogs(self) -> None:
        for number, watchdog in enumerate(self.devices.findall("watchdog")):
            model = watchdog.get("model")
            props = {"driver": model, "id": self._alias(watchdog, f"watchdog{number}")}
            if model == "i6300esb":
                self.add_device(self._pci(watchdog, props))
            elif model == "ib700":
                self.add_device(props)
            else:
                raise InvalidInput(f"watchdog model {model!r} is not supported by the embedded driver",
                                   "devices/watchdog@model")
            action = watchdog.get("action", "reset")
            if action not in _WATCHDOG_ACTIONS:
                raise InvalidInput(f"watchdog action {action!r} is not supported by the embedded driver "
                                   f"(dump needs a daemon to write the core)", "devices/watchdog@action")
            self.add("-watchdog-action", action)

    def _panics(self) -> None:
        for panic in self.devices.findall("panic"):
            if panic.get("model", "isa") != "isa":
                raise InvalidInput(f"panic model {panic.get('model')!r} is not supported", "devices/panic@model")
            props: dict = {"driver": "pvpanic"}
            address = panic.find("address[@type='isa']")
            if address is not None and address.get("iobase"):
                props["ioport"] = int(address.get("iobase"), 0)
            self._add_anonymous_device(props)  # libvirt names none, so qemu:override cannot reach it

    def _balloon(self) -> None:
        balloon = self.devices.find("memballoon")
        if balloon is None or balloon.get("model") == "none":
            return
        if balloon.get("model") != "virtio":
            raise InvalidInput(f"memballoon model {balloon.get('model')!r} is not supported",
                               "devices/memballoon@model")
        props = {"driver": "virtio-balloon-pci", "id": self._alias(balloon, "balloon0")}
        for attr, prop in (("autodeflate", "deflate-on-oom"), ("freePageReporting", "free-page-reporting")):
            if balloon.get(attr):
                props[prop] = _yes(balloon.get(attr))
        self.add_device(self._pci(balloon, props))

    def _rngs(self) -> None:
        for number, rng in enumerate(self.devices.findall("rng")):
            if rng.get("model") != "virtio":
                raise InvalidInput(f"rng model {rng.get('model')!r} is not supported", "devices/rng@model")
            backend = self._rng_backend(rng.find("backend"), number)
            backend["id"] = f"objrng{number}"
            self.add("-object", _json(backend))
            props = {"driver": "virtio-rng-pci", "rng": backend["id"], "id": self._alias(rng, f"rng{number}")}
            rate = rng.find("rate")
            if rate is not None and rate.get("bytes"):
                props["max-bytes"] = int(rate.get("bytes"))
                props["period"] = int(rate.get("period", "1000"))
            self.add_device(self._pci(rng, props))

    def _rng_backend(self, backend, number: int) -> dict:
        model = backend.get("model") if backend is not None else None
        if model == "random":
            return {"qom-type": "rng-random", "filename": (backend.text or "").strip() or "/dev/urandom"}
        if model == "builtin":
            return {"qom-type": "rng-builtin"}
        if model == "egd":
            chardev = f"charrng{number}"
            self.add("-chardev", self._chardev_backend(backend, chardev, "devices/rng/backend"))
            return {"qom-type": "rng-egd", "chardev": chardev}
        raise InvalidInput(f"rng backend {model!r} is not supported", "devices/rng/backend@model")

    def _iommu(self) -> None:
        iommu = self.devices.find("iommu")
        if iommu is None:
            return
        if iommu.get("model") != "intel" or self.family != "q35":
            raise InvalidInput("only the intel IOMMU on q35 machines is supported by the embedded driver",
                               "devices/iommu@model")
        props: dict = {"driver": "intel-iommu", "id": self._alias(iommu, "iommu0")}
        driver = iommu.find("driver")
        attrs = driver.attrib if driver is not None else {}
        for attr in ("intremap", "eim"):  # on/off/auto switches in QEMU
            if attrs.get(attr):
                props[attr] = attrs[attr]
        for attr, prop in (("caching_mode", "caching-mode"), ("iotlb", "device-iotlb")):
            if attrs.get(attr):
                props[prop] = _yes(attrs[attr])
        if attrs.get("aw_bits"):
            props["aw-bits"] = int(attrs["aw_bits"])
        self.add_device(props)

    def _vsocks(self) -> None:
        for vsock in self.devices.findall("vsock"):
            cid = vsock.find("cid")
            if cid is None or cid.get("address") is None or _yes(cid.get("auto", "no")):
                raise InvalidInput("the embedded driver needs a fixed guest CID: <cid auto='no' address='N'/>",
                                   "devices/vsock/cid")
            props = {"driver": "vhost-vsock-pci", "id": self._alias(vsock, "vsock0"),
                     "guest-cid": int(cid.get("address"))}
            self.add_device(self._pci(vsock, props))

    def _shmems(self) -> None:
        for number, shmem in enumerate(self.devices.findall("shmem")):
            model = shmem.find("model")
            if model is not None and model.get("type") != "ivshmem-plain":
                raise InvalidInput(f"shmem model {model.get('type')!r} needs ivshmem-server, which the embedded "
                                   "driver does not run", "devices/shmem/model@type")
            name = shmem.get("name")
            size = shmem.find("size")
            backend = {"qom-type": "memory-backend-file", "id": f"shmmem-shmem{number}",
                       "mem-path": f"/dev/shm/{name}",
                       "size": to_kib(size, "devices/shmem/size") * 1024 if size is not None else 4 << 20,
                       "share": True}
            self.add("-object", _json(backend))
            props = {"driver": "ivshmem-plain", "id": self._alias(shmem, f"shmem{number}"),
                     "memdev": backend["id"]}
            self.add_device(self._pci(shmem, props))

    def _sounds(self, audio_id: str | None) -> None:
        for number, sound in enumerate(self.devices.findall("sound")):
            model = sound.get("model")
            ident = self._alias(sound, f"sound{number}")
            if model in _HDA_DRIVERS:
                self.add_device(self._pci(sound, {"driver": _HDA_DRIVERS[model], "id": ident}))
                self._codecs(sound, ident, audio_id)
            elif model in _SOUND_DRIVERS:
                props = {"driver": _SOUND_DRIVERS[model], "id": ident, "audiodev": audio_id}
                if model == "usb":
                    props = self._usb(sound, props)
                elif model != "sb16":  # an ISA card
                    props = self._pci(sound, props)
                self.add_device(props)
            elif model == "pcspk":
                self.add("-soundhw", "pcspk")
            else:
                raise InvalidInput(f"sound model {model!r} is not supported by the embedded driver",
                                   "devices/sound@model")

    def _codecs(self, sound, ident: str, audio_id: str | None) -> None:
        codecs = [codec.get("type", "duplex") for codec in sound.findall("codec")] or ["duplex"]
        for cad, ctype in enumerate(codecs):
            if ctype not in ("duplex", "micro", "output"):
                raise InvalidInput(f"codec type {ctype!r} is not supported", "devices/sound/codec@type")
            self.add_device({"driver": f"hda-{ctype}", "id": f"{ident}-codec{cad}", "bus": f"{ident}.0",
                             "cad": cad, "audiodev": audio_id})

    def _hubs(self) -> None:
        for number, hub in enumerate(self.devices.findall("hub")):
            if hub.get("type") != "usb":
                raise InvalidInput(f"hub type {hub.get('type')!r} is not supported", "devices/hub@type")
            self.add_device(self._usb(hub, {"driver": "usb-hub", "id": self._alias(hub, f"hub{number}")}))

    def _redirdevs(self) -> None:
        for number, redir in enumerate(self.devices.findall("redirdev")):
            if redir.get("bus", "usb") != "usb":
                raise InvalidInput("only USB redirection is supported", "devices/redirdev@bus")
            chardev = f"charredir{number}"
            self.add("-chardev", self._chardev_backend(redir, chardev, "devices/redirdev", spice_name="usbredir"))
            self.add_device(self._usb(redir, {"driver": "usb-redir", "chardev": chardev,
                                              "id": self._alias(redir, f"redir{number}")}))

    def _add_anonymous_device(self, props):
        """A -device without an id, as libvirt emits some (pvpanic, UHCI companions)."""
        self.argv.append("-device")
        self.argv.append(props)

    def _usb(self, elem, props: dict) -> dict:
        address = elem.find("address[@type='usb']")
        if address is None:
            raise InvalidInput(f"<{elem.tag}> has no USB address; run postparse first", f"devices/{elem.tag}/address")
        props.update({"bus": f"usb.{address.get('bus', '0')}", "port": address.get("port")})
        return props

    # -- qemu:override

    def _apply_overrides(self):
        for device in self.dom.findall("qemu:override/qemu:device", _NS):
            alias = device.get("alias")
            props = self.device_args.get(alias)
            if props is None:
                raise InvalidInput(f"no device with alias {alias!r} to override", "qemu:override/qemu:device@alias")
            for prop in device.findall("qemu:frontend/qemu:property", _NS):
                _override_property(props, prop, alias)


def _override_property(props, prop, alias):
    name, ptype, value = prop.get("name"), prop.get("type"), prop.get("value")
    where = "qemu:override/qemu:device/qemu:frontend/qemu:property"
    if not name:
        raise InvalidInput("a property needs a name", where)
    if ptype == "remove":
        if name not in props:
            raise InvalidInput(f"device {alias!r} has no property {name!r} to remove", where)
        del props[name]
        return
    if value is None:
        raise InvalidInput(f"property {name!r} needs a value", where)
    if ptype == "string":
        props[name] = value
    elif ptype in ("signed", "unsigned"):
        try:
            number = int(value, 10)
        except ValueError:
            raise InvalidInput(f"property {name!r}: {value!r} is not an integer", where) from None
        if ptype == "unsigned" and number < 0:
            raise InvalidInput(f"property {name!r}: {value!r} is not unsigned", where)
        props[name] = number
    elif ptype == "bool":
        if value not in ("true", "false"):
            raise InvalidInput(f"property {name!r}: bool must be 'true' or 'false', not {value!r}", where)
        props[name] = value == "true"
    else:
        raise InvalidInput(f"property {name!r}: unknown type {ptype!r}", where)


class _BootOrder:
    """bootindex of disks and interfaces, from <boot order> or the <os><boot dev> list."""

    def __init__(self, domain):
        # the elements are kept referenced, so lxml hands out the same proxies later
        self.order: list[tuple[object, int]] = []
        devices = domain.find("devices")
        explicit = [e for e in devices if e.find("boot") is not None]
        if explicit:
            self.order = [(e, int(e.find("boot").get("order"))) for e in explicit]
            return
        for position, boot in enumerate(domain.findall("os/boot"), start=1):
            elem = self._first(devices, boot.get("dev"))
            if elem is not None and self.of(elem) is None:
                self.order.append((elem, position))

    @staticmethod
    def _first(devices, dev):
        if dev == "hd":
            return devices.find("disk[@device='disk']")
        if dev == "cdrom":
            return devices.find("disk[@device='cdrom']")
        if dev == "network":
            return devices.find("interface")
        return None

    def of(self, elem):
        return next((index for known, index in self.order if known is elem), None)
