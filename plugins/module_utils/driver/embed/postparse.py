# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Post-parse step of the embedded QEMU driver.

libvirt's QEMU driver completes every domain definition it accepts: uuid,
canonical machine type, MAC addresses, implicit controllers and devices,
drive and PCI addresses.  ``postparse`` does the same for the embedded
backend, from the probed QEMU capabilities, so that one XML defined here or
on libvirtd 9.0 yields the same devices at the same addresses.

Values already present in the input are never changed.  Only the
``pc-i440fx-*`` and ``pc-q35-*`` machine families are supported.
"""

from __future__ import annotations

import copy
import random
import uuid as uuidlib

from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import firmware
from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.model.units import UNIT_FACTORS
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import etree

# Order in which libvirt formats <devices> children.
_DEVICE_ORDER = (
    "emulator", "disk", "controller", "lease", "filesystem", "interface",
    "smartcard", "serial", "parallel", "console", "channel", "input", "tpm",
    "graphics", "sound", "audio", "video", "hostdev", "redirdev",
    "redirfilter", "hub", "watchdog", "memballoon", "rng", "panic", "shmem",
    "memory", "iommu", "vsock",
)

_BUS_BY_PREFIX = (("hd", "ide"), ("sd", "scsi"), ("vd", "virtio"), ("fd", "fdc"))
_DRIVE_BUSES = ("ide", "sata", "scsi", "fdc")
_GENERATED_TAP_PREFIXES = ("vnet", "macvtap", "macvlan")

# Video models that are PCI devices, with the attributes libvirt fills in.
_VIDEO_DEFAULTS = {
    "cirrus": {"vram": "16384", "heads": "1"},
    "vga": {"vram": "16384", "heads": "1"},
    "bochs": {"vram": "16384", "heads": "1"},
    "qxl": {"ram": "65536", "vram": "65536", "vgamem": "16384", "heads": "1"},
    "virtio": {"heads": "1"},
}

# Devices QEMU exposes as PCI Express endpoints; everything else on a q35
# machine is conventional PCI and needs a pcie-to-pci-bridge.
_PCIE_NET_MODELS = ("virtio", "virtio-transitional", "virtio-non-transitional", "e1000e")
_PCIE_USB_MODELS = ("qemu-xhci", "nec-xhci")
_PCI_SOUND_MODELS = ("ich6", "ich9", "ac97", "es1370")
# PCI function of each member of an EHCI controller and its UHCI companions (one slot).
_USB_GROUP_FUNCTIONS = {"ich9-ehci1": 7, "ich9-uhci1": 0, "ich9-uhci2": 1, "ich9-uhci3": 2}
_PCIE_SCSI_MODELS = ("virtio-scsi", "virtio-transitional", "virtio-non-transitional")

# Order in which libvirt formats <os> children.
_OS_ORDER = ("type", "firmware", "loader", "nvram", "kernel", "initrd", "cmdline", "dtb", "acpi", "boot",
             "bootmenu", "bios", "smbios")

DEFAULT_SCSI_MODEL_ORDER = (("lsi", "lsilogic"), ("virtio-scsi-pci", "virtio-scsi"))


def postparse(domain: etree._Element, caps) -> etree._Element:
    """Return a completed copy of ``domain`` as libvirt's define would store it."""
    dom = copy.deepcopy(domain)
    if dom.tag != "domain":
        raise InvalidInput(f"root element must be <domain>, not <{dom.tag}>", "domain")
    if dom.get("type") not in ("qemu", "kvm"):
        raise InvalidInput(f"domain type {dom.get('type')!r} is not supported, use 'qemu' or 'kvm'",
                           "domain@type")
    if not dom.findtext("name"):
        raise InvalidInput("a domain needs a <name>", "name")
    _ensure_uuid(dom)
    _normalise_numa(dom)
    _normalise_memory(dom)
    _normalise_vcpu(dom)
    machine = _normalise_os(dom, caps)
    _ensure_cpu(dom, caps)
    _ensure_clock_and_lifecycle(dom)
    check_system(dom)
    devices = _child(dom, "devices", after=("on_crash", "on_reboot", "on_poweroff", "clock", "cpu", "features", "os"))
    _ensure_emulator(devices, caps)
    refuse_helper_devices(devices)
    _complete_disks(devices)
    _complete_controllers(devices, machine, caps)
    _complete_interfaces(dom, devices)
    _complete_chardevs(devices)
    _complete_channels(devices)
    _complete_parallels(devices)
    _complete_inputs(devices)
    _assign_usb_ports(devices)
    _complete_rngs(devices)
    _complete_graphics(devices)
    _complete_audio(devices)
    _complete_video(devices, caps)
    _complete_memballoon(devices)
    PciPlanner(devices, machine).assign()
    _sort_devices(devices)
    return dom


def machine_family(machine: str) -> str:
    """'q35' or 'i440fx' for a canonical machine name."""
    if machine == "q35" or machine.startswith("pc-q35-"):
        return "q35"
    if machine == "pc" or machine.startswith("pc-i440fx-"):
        return "i440fx"
    raise InvalidInput(f"machine type {machine!r} is not supported by the embedded driver "
                       "(pc-i440fx-* and pc-q35-* are)", "os/type@machine")


# -- generic helpers ---------------------------------------------------------

def _child(parent: etree._Element, tag: str, after: tuple[str, ...] = (),
           attrib: dict[str, str] | None = None) -> etree._Element:
    """Return parent's <tag>, creating it after the first existing sibling in ``after``."""
    found = parent.find(tag)
    if found is not None:
        return found
    new = etree.Element(tag, attrib or {})
    for name in after:
        anchor = parent.find(name)
        if anchor is not None:
            anchor.addnext(new)
            return new
    parent.append(new)
    return new


def _insert_before_address(elem, child):
    """Insert ``child`` before <alias>/<address>, where libvirt keeps them last."""
    for tail in ("alias", "address"):
        anchor = elem.find(tail)
        if anchor is not None:
            anchor.addprevious(child)
            return child
    elem.append(child)
    return child


def _set_default(elem: etree._Element, name: str, value: str) -> None:
    if elem.get(name) is None:
        elem.set(name, value)


# -- domain level ------------------------------------------------------------

def _ensure_uuid(dom: etree._Element) -> None:
    node = dom.find("uuid")
    if node is None:
        node = _child(dom, "uuid", after=("name",))
        node.text = str(uuidlib.uuid4())
        return
    try:
        uuidlib.UUID(node.text or "")
    except ValueError:
        raise InvalidInput(f"malformed uuid {node.text!r}", "uuid") from None


def to_kib(elem: etree._Element, option: str) -> int:
    """Value of a libvirt scaled-integer element in KiB."""
    unit = (elem.get("unit") or "KiB").lower()
    if unit not in UNIT_FACTORS:
        raise InvalidInput(f"unknown unit {elem.get('unit')!r}", option)
    try:
        value = int((elem.text or "").strip())
    except ValueError:
        raise InvalidInput(f"not an integer: {elem.text!r}", option) from None
    if value < 0:
        raise InvalidInput("must not be negative", option)
    return value * UNIT_FACTORS[unit] // 1024


def _normalise_memory(dom: etree._Element) -> None:
    memory = dom.find("memory")
    if memory is None:
        raise InvalidInput("a domain needs <memory>", "memory")
    kib = to_kib(memory, "memory")
    if kib == 0:
        raise InvalidInput("memory size must be greater than zero", "memory")
    memory.text, memory.attrib["unit"] = str(kib), "KiB"
    current = _child(dom, "currentMemory", after=("memory",))
    current_kib = to_kib(current, "currentMemory") if current.text else kib
    current.text, current.attrib["unit"] = str(min(current_kib, kib)), "KiB"


def _normalise_vcpu(dom: etree._Element) -> None:
    vcpu = _child(dom, "vcpu", after=("currentMemory", "memory"))
    if not (vcpu.text or "").strip():
        vcpu.text = "1"
    if not vcpu.text.strip().isdigit() or int(vcpu.text) < 1:
        raise InvalidInput(f"vcpu count must be a positive integer, not {vcpu.text!r}", "vcpu")
    _set_default(vcpu, "placement", "static")


def _normalise_os(dom: etree._Element, caps) -> str:
    os_elem = dom.find("os")
    if os_elem is None:
        os_elem = _child(dom, "os", after=("vcpu",))
    ostype = os_elem.find("type")
    if ostype is None:
        ostype = etree.Element("type")
        ostype.text = "hvm"
        os_elem.insert(0, ostype)
    if (ostype.text or "").strip() != "hvm":
        raise InvalidInput(f"os type {ostype.text!r} is not supported, only 'hvm'", "os/type")
    _set_default(ostype, "arch", caps.arch)
    if ostype.get("arch") != caps.arch:
        raise InvalidInput(f"arch {ostype.get('arch')!r} does not match the emulator ({caps.arch})",
                           "os/type@arch")
    requested = ostype.get("machine") or caps.default_machine
    canonical = caps.canonical_machine(requested)
    if canonical is None:
        raise InvalidInput(f"machine type {requested!r} is not supported by {caps.binary}",
                           "os/type@machine")
    machine_family(canonical)
    ostype.set("machine", canonical)
    firmware.validate(dom)
    if os_elem.find("boot") is None and dom.find("devices//boot") is None:
        os_elem.append(etree.Element("boot", dev="hd"))
    _sort_children(os_elem, _OS_ORDER)
    return canonical


def _sort_children(parent: etree._Element, order: tuple[str, ...]) -> None:
    """Put known children in libvirt's order; unknown ones keep their place at the end."""
    rank = {tag: i for i, tag in enumerate(order)}
    children = [c for c in parent if isinstance(c.tag, str)]
    for child in children:
        parent.remove(child)
    for child in sorted(children, key=lambda c: rank.get(c.tag, len(rank))):
        parent.append(child)


def _ensure_cpu(dom: etree._Element, caps) -> None:
    cpu = dom.find("cpu")
    if cpu is None:
        cpu = _child(dom, "cpu", after=("features", "os"))
    mode = cpu.get("mode", "custom")
    topology = cpu.find("topology")
    if topology is not None:
        _set_default(topology, "dies", "1")
        for attr in ("sockets", "dies", "cores", "threads"):
            topology.set(attr, topology.attrib.pop(attr, "1"))  # libvirt's attribute order
    if mode != "custom":
        _set_default(cpu, "check", "none")
        return
    cpu.set("mode", "custom")
    model = cpu.find("model")
    _set_default(cpu, "match", "exact")
    _set_default(cpu, "check", "none")
    if model is None:
        model = etree.Element("model", fallback="forbid")
        model.text = "qemu64" if caps.arch == "x86_64" else "qemu32"
        cpu.insert(0, model)
    _set_default(model, "fallback", "allow")


def _normalise_numa(dom: etree._Element) -> None:
    """Cells get ids and KiB sizes; with NUMA, <memory> is the sum of the cells, as in libvirt."""
    cells = dom.findall("cpu/numa/cell")
    if not cells:
        return
    total = 0
    for index, cell in enumerate(cells):
        _set_default(cell, "id", str(index))
        if _int_attr(cell, "id", "cpu/numa/cell@id") != index:
            raise InvalidInput("NUMA cell ids must be 0, 1, ... in order", "cpu/numa/cell@id")
        if cell.get("cpus") is None or cell.get("memory") is None:
            raise InvalidInput("a NUMA cell needs cpus and memory", "cpu/numa/cell")
        cpu_ranges(cell.get("cpus"), "cpu/numa/cell@cpus")
        kib = _scaled_attr(cell, "memory", "cpu/numa/cell@memory")
        attrs = dict(cell.attrib)
        attrs.update(memory=str(kib), unit="KiB")
        cell.attrib.clear()
        for name in ("id", "cpus", "memory", "unit", "memAccess", "discard", *sorted(attrs)):
            if name in attrs and name not in cell.attrib:
                cell.set(name, attrs[name])
        total += kib
    memory = dom.find("memory")
    if memory is None:
        memory = _child(dom, "memory", after=("uuid", "name"))
    memory.text, memory.attrib["unit"] = str(total), "KiB"


def cpu_ranges(text: str, option: str) -> list[str]:
    """The runs of a libvirt CPU list ('0-3,^2,5') as libvirt formats them: ['0-1', '3', '5']."""
    cpus: set[int] = set()
    for item in text.replace(" ", "").split(","):
        exclude = item.startswith("^")
        first, _dash, last = item.lstrip("^").partition("-")
        if not first.isdigit() or not (last.isdigit() or not _dash) or (exclude and _dash):
            raise InvalidInput(f"malformed CPU list {text!r}", option)
        span = set(range(int(first), int(last or first) + 1))
        cpus = cpus - span if exclude else cpus | span
    if not cpus:
        raise InvalidInput(f"CPU list {text!r} names no CPU", option)
    runs: list[list[int]] = []
    for cpu in sorted(cpus):
        if runs and runs[-1][1] == cpu - 1:
            runs[-1][1] = cpu
        else:
            runs.append([cpu, cpu])
    return [f"{a}-{b}" if a != b else str(a) for a, b in runs]


def _int_attr(elem: etree._Element, attr: str, option: str, default: str = "0") -> int:
    value = elem.get(attr, default)
    try:
        return int(value, 10)
    except ValueError:
        raise InvalidInput(f"{attr} {value!r} is not an integer", option) from None


def _scaled_attr(elem: etree._Element, attr: str, option: str) -> int:
    probe = etree.Element("value", unit=elem.get("unit", "KiB"))
    probe.text = elem.get(attr)
    return to_kib(probe, option)


def _ensure_clock_and_lifecycle(dom: etree._Element) -> None:
    _child(dom, "clock", after=("cpu", "features", "os"), attrib={"offset": "utc"})
    anchor = "clock"
    for event, default in (("on_poweroff", "destroy"), ("on_reboot", "restart"), ("on_crash", "destroy")):
        node = _child(dom, event, after=(anchor,))
        if not (node.text or "").strip():
            node.text = default
        anchor = event


# -- machine and system checks -------------------------------------------------

# <features> children the embedded driver honours, in libvirt's order
FEATURE_ORDER = ("acpi", "apic", "pae", "hap", "privnet", "hyperv", "kvm", "pvspinlock", "pmu", "vmport",
                 "smm", "ioapic", "vmcoreinfo")
_MEMORY_BACKING_ORDER = ("hugepages", "nosharepages", "locked", "source", "access", "allocation", "discard")
_TIMERS = ("rtc", "pit", "hpet", "kvmclock")


def check_system(dom: etree._Element) -> None:
    """Order what libvirt orders and refuse what needs a daemon or host probing the embedded driver lacks."""
    _check_features(dom)
    _check_cpu_mode(dom)
    _check_memory(dom)
    _check_sysinfo(dom)
    _check_clock(dom)
    _check_bios_serial(dom)
    _check_vcpus(dom)


def _check_features(dom: etree._Element) -> None:
    features = dom.find("features")
    if features is None:
        return
    for feature in features:
        if isinstance(feature.tag, str) and feature.tag not in FEATURE_ORDER:
            raise InvalidInput(f"feature <{feature.tag}> is not supported by the embedded driver",
                               f"features/{feature.tag}")
    for kvm_feature in features.findall("kvm/*"):
        if kvm_feature.tag not in ("hidden", "hint-dedicated", "poll-control", "pv-ipi"):
            raise InvalidInput(f"kvm feature <{kvm_feature.tag}> is not supported by the embedded driver",
                               f"features/kvm/{kvm_feature.tag}")
    hyperv = features.find("hyperv")
    if hyperv is not None and hyperv.get("mode", "custom") != "custom":
        raise InvalidInput("hyperv mode 'passthrough' needs the host CPU (KVM); use mode 'custom'",
                           "features/hyperv@mode")
    _sort_children(features, FEATURE_ORDER)


def _check_cpu_mode(dom: etree._Element) -> None:
    cpu = dom.find("cpu")
    mode = cpu.get("mode", "custom")
    if mode == "host-model":
        raise InvalidInput("host-model needs libvirt's expansion of the host CPU, which the embedded driver "
                           "does not do; use a named model, 'maximum' or (kvm) 'host-passthrough'", "cpu@mode")
    for feature in cpu.findall("feature"):
        policy = feature.get("policy", "require")
        if policy == "optional":
            raise InvalidInput(f"feature {feature.get('name')!r}: policy 'optional' depends on probing the host "
                               "CPU, which the embedded driver does not do; use require or disable",
                               "cpu/feature@policy")
        if policy not in ("require", "force", "disable", "forbid"):
            raise InvalidInput(f"unknown feature policy {policy!r}", "cpu/feature@policy")


def _check_memory(dom: etree._Element) -> None:
    if dom.find("maxMemory") is not None:
        raise InvalidInput("memory hotplug (<maxMemory>) is not supported by the embedded driver", "maxMemory")
    backing = dom.find("memoryBacking")
    if backing is None:
        return
    if backing.find("hugepages") is not None:
        raise InvalidInput("hugepages need a hugetlbfs mount the embedded driver does not manage; use "
                           "<source type='memfd'/> or 'file'", "memoryBacking/hugepages")
    source = backing.find("source")
    if source is not None and source.get("type") not in ("anonymous", "memfd", "file"):
        raise InvalidInput(f"unknown memory source {source.get('type')!r}", "memoryBacking/source@type")
    _sort_children(backing, _MEMORY_BACKING_ORDER)


def _check_sysinfo(dom: etree._Element) -> None:
    for sysinfo in dom.findall("sysinfo"):
        if sysinfo.get("type") != "smbios":
            raise InvalidInput(f"sysinfo type {sysinfo.get('type')!r} is not supported by the embedded driver, "
                               "only 'smbios'", "sysinfo@type")
        uuid = sysinfo.findtext("system/entry[@name='uuid']")
        if uuid and uuid.strip().lower() != dom.findtext("uuid").strip().lower():
            raise InvalidInput("the SMBIOS system uuid must be the domain's uuid", "sysinfo/system/entry")
    smbios = dom.find("os/smbios")
    if smbios is None:
        return
    mode = smbios.get("mode")
    if mode == "host":
        raise InvalidInput("smbios mode 'host' copies the host's tables (dmidecode); the embedded driver "
                           "supports 'sysinfo' and 'emulate'", "os/smbios@mode")
    if mode == "sysinfo" and dom.find("sysinfo[@type='smbios']") is None:
        raise InvalidInput("smbios mode 'sysinfo' needs a <sysinfo type='smbios'>", "os/smbios@mode")


def _check_clock(dom: etree._Element) -> None:
    clock = dom.find("clock")
    offset = clock.get("offset", "utc")
    if offset not in ("utc", "localtime", "variable", "timezone"):
        raise InvalidInput(f"clock offset {clock.get('offset')!r} is not supported", "clock@offset")
    _check_adjustment(clock, offset)
    for timer in clock.findall("timer"):
        name, policy = timer.get("name"), timer.get("tickpolicy")
        if name not in _TIMERS:
            raise InvalidInput(f"timer {name!r} is not supported by the embedded driver", "clock/timer@name")
        if name == "rtc" and policy not in (None, "delay", "catchup"):
            raise InvalidInput(f"rtc tickpolicy {policy!r} is not supported by QEMU", "clock/timer@tickpolicy")
        if name == "pit" and policy not in (None, "delay", "catchup", "discard"):
            raise InvalidInput(f"pit tickpolicy {policy!r} is not supported by QEMU", "clock/timer@tickpolicy")
        if name == "rtc" and timer.get("track") == "boot":
            raise InvalidInput("rtc track 'boot' is not supported by QEMU", "clock/timer@track")


def _check_adjustment(clock: etree._Element, offset: str) -> None:
    """adjustment: seconds, or 'reset' (no adjustment); utc/localtime with seconds become variable, as in libvirt."""
    value = clock.get("adjustment")
    if value is None or value == "reset" or offset == "timezone":
        return
    try:
        int(value, 10)
    except ValueError:
        raise InvalidInput(f"clock adjustment {value!r} is not an integer number of seconds or 'reset'",
                           "clock@adjustment") from None
    if offset in ("utc", "localtime"):
        clock.set("offset", "variable")
        clock.set("basis", offset)


def _check_vcpus(dom: etree._Element) -> None:
    vcpu = dom.find("vcpu")
    if vcpu.get("placement") == "auto" or vcpu.get("cpuset"):
        raise InvalidInput("vcpu placement 'auto' (numad) and cpuset pinning are applied by a daemon; the "
                           "embedded driver does not pin", "vcpu")
    for tag in ("cputune", "numatune", "memtune", "blkiotune"):
        if dom.find(tag) is not None:
            raise InvalidInput(f"<{tag}> needs cgroups or thread pinning set up by a daemon, which the embedded "
                               "driver does not do", tag)
    if dom.find("vcpus/vcpu[@enabled='yes'][@hotpluggable='yes']") is not None:
        raise InvalidInput("enabled hotpluggable vcpus are plugged over the monitor by libvirt at start; the "
                           "embedded driver starts every enabled vcpu as a boot CPU (use hotpluggable='no')",
                           "vcpus/vcpu@hotpluggable")


def _check_bios_serial(dom: etree._Element) -> None:
    bios = dom.find("os/bios")
    if bios is not None and bios.get("useserial") == "yes" and dom.find("devices/serial") is None:
        raise InvalidInput("BIOS serial output needs at least one <serial> device", "os/bios@useserial")


# -- devices -----------------------------------------------------------------

def _ensure_emulator(devices, caps):
    emulator = devices.find("emulator")
    if emulator is None:
        emulator = etree.Element("emulator")
        devices.insert(0, emulator)
    if not (emulator.text or "").strip():
        emulator.text = caps.binary


def disk_index(dev: str) -> int:
    """Index of a disk from its target name: vda -> 0, sdb -> 1, hdaa -> 26."""
    for start in ("xvd", "hd", "sd", "vd", "fd", "ub"):
        if dev.startswith(start):
            suffix = dev[len(start):]
            break
    else:
        raise InvalidInput(f"disk target {dev!r} has no known prefix (hd, sd, vd, fd)", "devices/disk/target@dev")
    if not suffix or not suffix.isalpha() or not suffix.islower():
        raise InvalidInput(f"disk target {dev!r} must end in letters", "devices/disk/target@dev")
    index = 0
    for char in suffix:
        index = index * 26 + (ord(char) - ord("a") + 1)
    return index - 1


def _complete_disks(devices):
    for disk in devices.findall("disk"):
        target = disk.find("target")
        if target is None or not target.get("dev"):
            raise InvalidInput("every disk needs <target dev='...'/>", "devices/disk/target")
        dev = target.get("dev")
        _set_default(disk, "device", "disk")
        if target.get("bus") is None:
            bus = next((b for p, b in _BUS_BY_PREFIX if dev.startswith(p)), None)
            if bus is None:
                raise InvalidInput(f"cannot guess the bus of disk {dev!r}", "devices/disk/target@bus")
            target.set("bus", bus)
        driver = disk.find("driver")
        if driver is None:
            driver = etree.Element("driver")
            disk.insert(0, driver)
        _set_default(driver, "name", "qemu")
        if disk.get("type") != "volume":    # a volume's own format applies at start, as in libvirt
            _set_default(driver, "type", "raw")
        if disk.get("device") == "cdrom" and disk.find("readonly") is None:
            _insert_after_target(disk, etree.Element("readonly"))
        if target.get("bus") in _DRIVE_BUSES and disk.find("address") is None:
            disk.append(_drive_address(target.get("bus"), disk_index(dev), devices))


def _insert_after_target(disk, child):
    disk.find("target").addnext(child)


def _drive_address(bus, index, devices):
    if bus == "ide":
        ctrl, rest = divmod(index, 4)
        attrs = {"controller": ctrl, "bus": rest // 2, "target": 0, "unit": rest % 2}
    elif bus == "sata":
        ctrl, unit = divmod(index, 6)
        attrs = {"controller": ctrl, "bus": 0, "target": 0, "unit": unit}
    elif bus == "fdc":
        attrs = {"controller": 0, "bus": 0, "target": 0, "unit": index}
    else:
        per_controller = 16384 if _scsi_model(devices, 0) == "virtio-scsi" else 7
        ctrl, unit = divmod(index, per_controller)
        attrs = {"controller": ctrl, "bus": 0, "target": 0, "unit": unit}
    return etree.Element("address", {"type": "drive", **{k: str(v) for k, v in attrs.items()}})


def _scsi_model(devices, index):
    for ctrl in devices.findall("controller[@type='scsi']"):
        if int(ctrl.get("index", "0")) == index:
            return ctrl.get("model")
    return None


def _controller(devices, ctype, index):
    for ctrl in devices.findall(f"controller[@type='{ctype}']"):
        if int(ctrl.get("index", "0")) == index:
            return ctrl
    return None


def _add_controller(devices, ctype, index, model=None):
    attrs = {"type": ctype, "index": str(index)}
    if model:
        attrs["model"] = model
    ctrl = etree.Element("controller", attrs)
    devices.append(ctrl)
    return ctrl


def _complete_controllers(devices, machine, caps):
    family = machine_family(machine)
    for ctrl in devices.findall("controller"):
        _set_default(ctrl, "index", "0")
    root_model = "pcie-root" if family == "q35" else "pci-root"
    root = _controller(devices, "pci", 0)
    if root is None:
        _add_controller(devices, "pci", 0, root_model)
    elif root.get("model") is None:
        root.set("model", root_model)
    _default_usb(devices, family, caps)
    _usb_companions(devices)
    if family == "q35" and _controller(devices, "sata", 0) is None:
        _add_controller(devices, "sata", 0)
    for disk in devices.findall("disk"):
        address = disk.find("address[@type='drive']")
        bus = disk.find("target").get("bus")
        if address is None or bus not in _DRIVE_BUSES:
            continue
        if bus == "ide" and family == "q35":
            raise InvalidInput("IDE disks are not supported on q35 machines, use bus 'sata'",
                               "devices/disk/target@bus")
        index = int(address.get("controller", "0"))
        if _controller(devices, bus, index) is None:
            _add_controller(devices, bus, index)
    for ctrl in devices.findall("controller[@type='scsi']"):
        if ctrl.get("model") is None:
            ctrl.set("model", _default_scsi_model(caps))


def _default_usb(devices, family, caps):
    usb = _controller(devices, "usb", 0)
    default = "qemu-xhci" if family == "q35" else "piix3-uhci"
    if usb is None:
        _add_controller(devices, "usb", 0, default)
    elif usb.get("model") is None:
        usb.set("model", default)


def _usb_companions(devices: etree._Element) -> None:
    """UHCI companions of an ICH9 EHCI controller take ports 0-1, 2-3, 4-5 of its bus."""
    for ctrl in devices.findall("controller[@type='usb']"):
        model = ctrl.get("model") or ""
        ehci = devices.find(f"controller[@type='usb'][@model='ich9-ehci1'][@index='{ctrl.get('index')}']")
        if not model.startswith("ich9-uhci") or ehci is None or ctrl.find("master") is not None:
            continue
        _insert_before_address(ctrl, etree.Element("master", startport=str(2 * (int(model[-1]) - 1))))


def _default_scsi_model(caps):
    for device, model in DEFAULT_SCSI_MODEL_ORDER:
        if device in caps.devices:
            return model
    raise InvalidInput("this QEMU has no SCSI controller device", "devices/controller@model")


def random_mac(taken=()) -> str:
    while True:
        mac = "52:54:00:" + ":".join(f"{random.randrange(256):02x}" for _octet in range(3))
        if mac not in taken:
            return mac


def _complete_interfaces(dom, devices):
    taken = {m.get("address", "").lower() for m in dom.iter("mac")}
    for iface in devices.findall("interface"):
        mac = iface.find("mac")
        if mac is None:
            mac = etree.Element("mac", address=random_mac(taken))
            iface.insert(0, mac)
            taken.add(mac.get("address"))
        target = iface.find("target")
        if target is not None and target.get("dev", "").startswith(_GENERATED_TAP_PREFIXES):
            iface.remove(target)  # names libvirt reserves for taps it generates at start
        if iface.find("model") is None and iface.get("type") != "hostdev":
            _insert_before_address(iface, etree.Element("model", type="rtl8139"))


def _complete_chardevs(devices):
    serials = devices.findall("serial")
    consoles = devices.findall("console")
    if consoles and not serials and (consoles[0].find("target") is None
                                     or consoles[0].find("target").get("type", "serial") == "serial"):
        serial = _chardev_copy(consoles[0], "serial")
        devices.append(serial)
        serials = [serial]
    for port, serial in enumerate(serials):
        target = serial.find("target")
        if target is None:
            target = _insert_before_address(serial, etree.Element("target"))
        _set_default(target, "type", "isa-serial")
        _set_default(target, "port", str(port))
        if target.find("model") is None and target.get("type") == "isa-serial":
            target.append(etree.Element("model", name="isa-serial"))
    if serials and not consoles:
        devices.append(_console_for(serials[0]))
        return
    if serials and _is_serial_console(consoles[0]):
        consoles[0] = _mirror_serial(consoles[0], serials[0])
    for console in consoles:
        target = console.find("target")
        if target is None:
            target = _insert_before_address(console, etree.Element("target"))
        _set_default(target, "type", "serial")
        _set_default(target, "port", "0")


def _is_serial_console(console: etree._Element) -> bool:
    target = console.find("target")
    return target is None or target.get("type", "serial") == "serial"


def _mirror_serial(console: etree._Element, serial: etree._Element) -> etree._Element:
    """The first serial console shows the first serial port: libvirt makes it a copy of that port's backend."""
    mirror = _chardev_copy(serial, "console")
    for child in console:
        if child.tag not in ("source", "protocol", "log"):
            mirror.append(copy.deepcopy(child))
    console.getparent().replace(console, mirror)
    return mirror


def _chardev_copy(source, tag):
    copy_ = etree.Element(tag, type=source.get("type", "pty"))
    for child in source:
        if child.tag in ("source", "protocol", "log"):
            copy_.append(copy.deepcopy(child))
    return copy_


def _console_for(serial):
    console = _chardev_copy(serial, "console")
    console.append(etree.Element("target", type="serial", port="0"))
    return console


def _complete_inputs(devices):
    for inp in devices.findall("input"):
        if inp.get("bus") is None:
            inp.set("bus", "usb" if inp.get("type") == "tablet" else "ps2")
    for kind in ("mouse", "keyboard"):
        if devices.find(f"input[@type='{kind}'][@bus='ps2']") is None:
            devices.append(etree.Element("input", type=kind, bus="ps2"))


def _complete_channels(devices: etree._Element) -> None:
    """virtio-serial ports for virtio channels, and the controller libvirt adds for them."""
    for channel in devices.findall("channel"):
        _check_channel(channel)
    channels = devices.findall("channel/target[@type='virtio']/..")
    where = "devices/channel/address@port"
    used = {_int_attr(a, "port", where) for c in channels for a in c.findall("address[@port]")
            if a.get("controller", "0") == "0" and a.get("bus", "0") == "0"}
    for channel in channels:
        address = channel.find("address")
        if address is None or address.get("port") is None:
            port = next(p for p in range(1, len(used) + 2) if p not in used)  # the lowest free port
            used.add(port)
            if address is None:
                address = etree.SubElement(channel, "address", type="virtio-serial", controller="0", bus="0")
            address.set("port", str(port))
        index = _int_attr(address, "controller", "devices/channel/address@controller")
        if _controller(devices, "virtio-serial", index) is None:
            _add_controller(devices, "virtio-serial", index)


def _check_channel(channel: etree._Element) -> None:
    """A channel needs a <target>; a virtio one sits on virtio-serial; a generated socket is named by target@name."""
    target = channel.find("target")
    if target is None:
        raise InvalidInput("a channel needs a <target>", "devices/channel/target")
    address = channel.find("address")
    if target.get("type") == "virtio" and address is not None and address.get("type") != "virtio-serial":
        raise InvalidInput(f"a virtio channel needs a virtio-serial address, not {address.get('type')!r}",
                           "devices/channel/address@type")
    name = target.get("name") or ""
    if channel.get("type") == "unix" and ("/" in name or name.startswith(".")):
        raise InvalidInput(f"channel name {name!r} must not contain '/' or start with '.' (it names the socket)",
                           "devices/channel/target@name")


def _complete_parallels(devices: etree._Element) -> None:
    for port, parallel in enumerate(devices.findall("parallel")):
        target = parallel.find("target")
        if target is None:
            target = _insert_before_address(parallel, etree.Element("target"))
        _set_default(target, "port", str(port))


# USB devices in the order libvirt gives them root-hub ports.
_USB_DEVICE_PATHS = ("hub[@type='usb']", "disk/target[@bus='usb']/..", "input[@bus='usb']", "sound[@model='usb']",
                     "redirdev")


def _assign_usb_ports(devices: etree._Element) -> None:
    used = {a.get("port") for a in devices.iterfind("*/address[@type='usb']")}
    port = 1
    for path in _USB_DEVICE_PATHS:
        for device in devices.findall(path):
            if device.find("address") is not None:
                continue
            while str(port) in used:
                port += 1
            device.append(etree.Element("address", type="usb", bus="0", port=str(port)))
            used.add(str(port))


def _complete_rngs(devices: etree._Element) -> None:
    for backend in devices.findall("rng/backend[@model='egd']"):
        if backend.get("type") in ("tcp", "udp") and backend.find("protocol") is None:
            backend.append(etree.Element("protocol", type="raw"))


# Devices that need a helper process next to QEMU (libvirt starts it from its daemon).
_HELPER_DEVICES = (
    ("tpm/backend[@type='emulator']/..", "devices/tpm/backend@type", "needs swtpm"),
    ("filesystem/driver[@type='virtiofs']/..", "devices/filesystem/driver@type", "needs virtiofsd"),
    ("interface[@type='vhostuser']", "devices/interface@type", "needs a vhost-user backend process"),
    ("interface/backend[@type='passt']/..", "devices/interface/backend@type", "needs passt"),
    ("video/driver[@name='vhostuser']/..", "devices/video/driver@name", "needs vhost-user-gpu"),
    ("disk[@type='vhostuser']", "devices/disk@type", "needs a vhost-user-blk backend process"),
    ("shmem/server/..", "devices/shmem/server", "needs ivshmem-server"),
)
# Device families the embedded driver does not build (yet).
_UNSUPPORTED_DEVICES = (
    ("tpm", "devices/tpm"), ("filesystem", "devices/filesystem"), ("hostdev", "devices/hostdev"),
    ("smartcard", "devices/smartcard"), ("lease", "devices/lease"),
    ("interface[@type='hostdev']", "devices/interface@type"), ("crypto", "devices/crypto"),
)


def refuse_helper_devices(devices: etree._Element) -> None:
    """Refuse, at define time, the devices the embedded driver cannot run."""
    for path, option, reason in _HELPER_DEVICES:
        found = devices.find(path)
        if found is not None:
            raise InvalidInput(f"{option} {_describe(found)}{reason}, which the embedded driver does not run",
                               option)
    for path, option in _UNSUPPORTED_DEVICES:
        found = devices.find(path)
        if found is not None:
            raise InvalidInput(f"{option} {_describe(found)}is not supported by the embedded driver", option)
    for cid in devices.findall("vsock/cid"):
        if cid.get("auto") == "yes" or cid.get("address") is None:
            raise InvalidInput("devices/vsock/cid: the embedded driver does not pick guest CIDs; give a fixed one "
                               "with <cid auto='no' address='N'/>", "devices/vsock/cid")
    _refuse_daemon_options(devices)


def _refuse_daemon_options(devices: etree._Element) -> None:
    """Device settings that need a daemon or a display the domain lacks."""
    if devices.find("watchdog[@action='dump']") is not None:
        raise InvalidInput("watchdog action 'dump' needs a daemon to write the core, which the embedded driver "
                           "does not run", "devices/watchdog@action")
    spice = devices.find("graphics[@type='spice']") is not None
    if not spice and devices.find("redirdev[@type='spicevmc']") is not None:
        raise InvalidInput("a spicevmc redirdev needs <graphics type='spice'>", "devices/redirdev@type")


def _describe(device: etree._Element) -> str:
    words = [f"{attr} {device.get(attr)!r}" for attr in ("model", "type") if device.get(attr)]
    backend = device.find("backend")
    if backend is not None and backend.get("type"):
        words.append(f"backend {backend.get('type')!r}")
    return " ".join(words) + " " if words else ""


def _complete_graphics(devices):
    for graphics in devices.findall("graphics"):
        gtype = graphics.get("type")
        if gtype not in ("vnc", "spice"):
            continue
        listen = graphics.find("listen")
        if listen is None:
            listen = etree.SubElement(graphics, "listen", type="address")
            if graphics.get("listen"):
                listen.set("address", graphics.get("listen"))
            elif gtype == "spice" and graphics.get("port") is None and graphics.get("autoport") != "yes":
                listen.set("type", "none")
        elif listen.get("type") == "address" and listen.get("address") and graphics.get("listen") is None:
            graphics.set("listen", listen.get("address"))
        if listen.get("type") == "socket" and gtype == "vnc" and listen.get("socket"):
            _set_default(graphics, "socket", listen.get("socket"))
        if listen.get("type") != "address":
            continue
        if graphics.get("autoport") == "yes" or graphics.get("port") in (None, "-1"):
            graphics.set("port", "-1")
            graphics.set("autoport", "yes")
        else:
            _set_default(graphics, "autoport", "no")


def _complete_audio(devices):
    if devices.find("audio") is not None:
        return
    displays = [g.get("type") for g in devices.findall("graphics") if g.get("type") in ("vnc", "spice")]
    kind = "spice" if displays and displays[-1] == "spice" else "none"  # libvirt: the last display decides
    devices.append(etree.Element("audio", id="1", type=kind))


def _complete_video(devices, caps):
    videos = devices.findall("video")
    if not videos and devices.find("graphics") is not None:
        video = etree.SubElement(devices, "video")
        videos = [video]
    for position, video in enumerate(videos):
        model = video.find("model")
        if model is None:
            model = etree.Element("model")
            video.insert(0, model)
        if model.get("type") is None:
            model.set("type", "cirrus" if "cirrus-vga" in caps.devices else "vga")
        for name, value in _VIDEO_DEFAULTS.get(model.get("type"), {}).items():
            _set_default(model, name, value)
        if position == 0 and model.get("type") != "none":
            _set_default(model, "primary", "yes")


def _complete_memballoon(devices):
    if devices.find("memballoon") is None:
        devices.append(etree.Element("memballoon", model="virtio"))


def _sort_devices(devices):
    rank = {tag: i for i, tag in enumerate(_DEVICE_ORDER)}
    children = [c for c in devices if isinstance(c.tag, str)]
    for child in children:
        devices.remove(child)
    for child in sorted(children, key=lambda c: rank.get(etree.QName(c).localname, len(rank))):
        devices.append(child)


# -- PCI addresses -----------------------------------------------------------

class Bus:
    """One PCI bus (a PCI controller) and the slots/functions in use on it."""

    def __init__(self, index, model, controller=None):
        self.index = index
        self.model = model
        self.controller = controller
        self.used: dict[int, set[int]] = {}
        self.aggregate: set[int] = set()
        self.reserved_for: str | None = None  # the only kind this bus may take
        if model == "pcie-root-port":
            self.slots = range(0, 1)
        elif model in ("pcie-to-pci-bridge", "pci-bridge", "pci-root", "pcie-root"):
            self.slots = range(1, 32)
        else:
            self.slots = range(0, 0)

    def accepts(self, kind):
        if self.reserved_for:
            return kind == self.reserved_for
        return kind in {
            "pci-root": ("pci", "pcie", "pci-bridge"),
            "pci-bridge": ("pci", "pcie", "pci-bridge"),
            "pcie-root": ("root-port",),
            "pcie-root-port": ("pcie", "pcie-pci-bridge"),
            "pcie-to-pci-bridge": ("pci",),
        }.get(self.model, ())

    def mark(self, slot, function):
        self.used.setdefault(slot, set()).add(function)

    def free_slot(self):
        return next((s for s in self.slots if not self.used.get(s)), None)

    def free_aggregate_function(self):
        for slot in sorted(self.aggregate):
            free = [f for f in range(8) if f not in self.used.get(slot, ())]
            if free:
                return slot, free[0]
        return None


class PciPlanner:
    """Assigns PCI addresses the way libvirt's QEMU driver does for new devices."""

    def __init__(self, devices, machine):
        self.devices = devices
        self.family = machine_family(machine)
        self.buses: dict[int, Bus] = {}
        self.assigned: list[tuple[etree._Element, Bus, int, int]] = []
        self.pci_controllers_given = any(
            int(c.get("index", "0")) > 0 for c in devices.findall("controller[@type='pci']"))
        self.added_root_ports = 0
        for ctrl in devices.findall("controller[@type='pci']"):
            index = int(ctrl.get("index"))
            if index in self.buses:
                raise InvalidInput(f"duplicate PCI controller index {index}", "devices/controller@index")
            self.buses[index] = Bus(index, ctrl.get("model") or "pci-bridge", ctrl)

    # public

    def assign(self):
        self._mark_existing()
        self._reserve_fixed()
        for ctrl in sorted(self.devices.findall("controller[@type='pci']"), key=lambda c: int(c.get("index"))):
            if int(ctrl.get("index")) > 0 and ctrl.find("address") is None:
                self._place(ctrl, self._controller_kind(ctrl.get("model")))
        self._reserve_bridge_port()
        for elem, kind in self._devices_in_libvirt_order():
            self._place(elem, kind)
        if self.family == "q35" and self.added_root_ports and not self.pci_controllers_given:
            self._add_root_port()  # libvirt leaves one spare port for hotplug
        self._finish_controllers()
        self._set_multifunction()

    def _reserve_bridge_port(self):
        """On q35, libvirt keeps the first new root port for the pcie-to-pci-bridge that conventional PCI
        devices will need, before it places any device."""
        if self.family != "q35" or any(b.accepts("pci") for b in self.buses.values()):
            return
        if any(kind == "pci" and elem.find("address") is None for elem, kind in self._devices_in_libvirt_order()):
            port = self._add_root_port()
            port.reserved_for = "pcie-pci-bridge"

    # existing and fixed addresses

    def _mark_existing(self):
        for address in self.devices.iterfind(".//address[@type='pci']"):
            bus_index = _int(address.get("bus", "0"))
            if bus_index not in self.buses:
                raise InvalidInput(f"PCI address uses bus {bus_index}, which has no PCI controller",
                                   "devices/*/address@bus")
            slot, function = _int(address.get("slot", "0")), _int(address.get("function", "0"))
            self.buses[bus_index].mark(slot, function)
            owner = address.getparent()
            if owner.tag == "controller" and owner.get("model") == "pcie-root-port":
                self.buses[bus_index].aggregate.add(slot)
            _canonical_pci_address(address, bus_index, slot, function)

    def _reserve_fixed(self):
        root = self.buses[0]
        if self.family == "i440fx":
            self._reserve_i440fx(root)
        else:
            self._reserve_q35(root)

    def _reserve_i440fx(self, root):
        ide = _controller(self.devices, "ide", 0)
        usb = _controller(self.devices, "usb", 0)
        for function in (0, 3):
            root.mark(1, function)
        if ide is not None and ide.find("address") is None:
            self._set_address(ide, root, 1, 1)
        root.mark(1, 1)
        if usb is not None and usb.get("model") == "piix3-uhci" and usb.find("address") is None:
            self._set_address(usb, root, 1, 2)
        root.mark(1, 2)
        self._reserve_primary_video(root, 2)

    def _reserve_q35(self, root):
        for function in range(8):
            root.mark(0x1F, function)
        sata = _controller(self.devices, "sata", 0)
        if sata is not None and sata.find("address") is None:
            self._set_address(sata, root, 0x1F, 2)
        sound = self.devices.find("sound[@model='ich9']")
        if sound is not None and sound.find("address") is None and not root.used.get(0x1B):
            self._set_address(sound, root, 0x1B, 0)  # where the ICH9 HDA sits on real q35 boards
        self._reserve_primary_video(root, 1)

    def _reserve_primary_video(self, root, slot):
        video = self.devices.find("video")
        if video is None or video.find("address") is not None:
            return
        if video.find("model").get("type") not in _VIDEO_DEFAULTS:
            return
        if not root.used.get(slot):
            self._set_address(video, root, slot, 0)

    # what needs an address, in libvirt's order

    def _devices_in_libvirt_order(self):
        dev = self.devices
        for iface in dev.findall("interface"):
            if iface.get("type") != "hostdev":
                yield iface, self._net_kind(iface)
        for sound in dev.findall("sound"):
            if sound.get("model") in _PCI_SOUND_MODELS:
                yield sound, "pci"
        for ctrl in dev.findall("controller"):
            kind = self._controller_device_kind(ctrl)
            if kind:
                yield ctrl, kind
        for disk in dev.findall("disk"):
            if disk.find("target").get("bus") == "virtio":
                yield disk, "pcie"
        for balloon in dev.findall("memballoon"):
            if balloon.get("model", "virtio").startswith("virtio"):
                yield balloon, "pcie"
        for rng in dev.findall("rng"):
            yield rng, "pcie"
        for watchdog in dev.findall("watchdog[@model='i6300esb']"):
            yield watchdog, "pci"
        for video in dev.findall("video"):
            vtype = video.find("model").get("type")
            if vtype in _VIDEO_DEFAULTS:
                yield video, "pcie" if vtype == "virtio" else "pci"
        for shmem in dev.findall("shmem"):
            yield shmem, "pci"
        for inp in dev.findall("input[@bus='virtio']"):
            yield inp, "pcie"
        for vsock in dev.findall("vsock"):
            yield vsock, "pcie"

    def _net_kind(self, iface):
        model = iface.find("model").get("type")
        return "pcie" if model in _PCIE_NET_MODELS else "pci"

    def _controller_device_kind(self, ctrl):
        ctype, model, index = ctrl.get("type"), ctrl.get("model"), int(ctrl.get("index"))
        if ctype == "usb":
            if model == "none":
                return None
            return "pcie" if model in _PCIE_USB_MODELS else "pci"
        if ctype == "scsi":
            return "pcie" if model in _PCIE_SCSI_MODELS else "pci"
        if ctype == "virtio-serial":
            return "pcie"
        if ctype == "sata" and not (self.family == "q35" and index == 0):
            return "pcie"
        return None

    def _controller_kind(self, model):
        return {
            "pcie-root-port": "root-port",
            "pcie-to-pci-bridge": "pcie-pci-bridge",
            "pci-bridge": "pci-bridge",
        }.get(model) or self._unsupported_controller(model)

    @staticmethod
    def _unsupported_controller(model):
        raise InvalidInput(f"PCI controller model {model!r} is not supported by the embedded driver",
                           "devices/controller@model")

    # placement

    def _place(self, elem, kind):
        if elem.find("address") is not None:
            return
        if self.family == "i440fx" and kind in ("pcie", "pcie-pci-bridge"):
            kind = "pci"
        group = self._usb_group_slot(elem)
        if group is not None:
            self._set_address(elem, *group, _USB_GROUP_FUNCTIONS[elem.get("model")])
            return
        bus, slot, function = self._find_slot(kind)
        if elem.tag == "controller" and elem.get("model") in _USB_GROUP_FUNCTIONS:
            function = _USB_GROUP_FUNCTIONS[elem.get("model")]
        self._set_address(elem, bus, slot, function)

    def _usb_group_slot(self, elem):
        """Bus and slot already taken by another member of this USB controller's EHCI/UHCI group."""
        if elem.tag != "controller" or elem.get("model") not in _USB_GROUP_FUNCTIONS:
            return None
        for other, bus, slot, _function in self.assigned:
            if (other.tag == "controller" and other.get("type") == "usb" and other.get("index") == elem.get("index")
                    and other.get("model") in _USB_GROUP_FUNCTIONS):
                return bus, slot
        return None

    def _find_slot(self, kind):
        for bus in sorted(self.buses.values(), key=lambda b: b.index):
            if not bus.accepts(kind):
                continue
            if kind == "root-port":
                spot = bus.free_aggregate_function()
                if spot:
                    return bus, spot[0], spot[1]
            slot = bus.free_slot()
            if slot is not None:
                return bus, slot, 0
        return self._grow(kind)

    def _grow(self, kind):
        if self.family != "q35" or kind == "root-port":
            raise InvalidInput("no free PCI slot left for an automatically placed device; "
                               "add a PCI controller (pci-bridge, pcie-root-port)", "devices")
        if kind == "pci":
            bus = self._add_controller("pcie-to-pci-bridge")
        else:
            bus = self._add_root_port()
        return bus, bus.slots[0], 0

    def _add_root_port(self):
        return self._add_controller("pcie-root-port")

    def _add_controller(self, model):
        # the parent port comes first so that it takes the lower index, as in libvirt
        parent, slot, function = self._find_slot(self._controller_kind(model))
        index = max(self.buses) + 1
        ctrl = _add_controller(self.devices, "pci", index, model)
        self._set_address(ctrl, parent, slot, function)
        bus = Bus(index, model, ctrl)
        self.buses[index] = bus
        parent.reserved_for = None
        if model == "pcie-root-port":
            self.added_root_ports += 1
        return bus

    def _set_address(self, elem, bus, slot, function):
        bus.mark(slot, function)
        if elem.tag == "controller" and elem.get("model") == "pcie-root-port":
            bus.aggregate.add(slot)
        address = etree.Element("address", {
            "type": "pci", "domain": "0x0000", "bus": f"0x{bus.index:02x}",
            "slot": f"0x{slot:02x}", "function": f"0x{function:x}"})
        elem.append(address)
        self.assigned.append((elem, bus, slot, function))

    # finishing touches

    def _finish_controllers(self):
        for ctrl in self.devices.findall("controller[@type='pci']"):
            model = ctrl.get("model")
            index = ctrl.get("index")
            name = {"pcie-root-port": "pcie-root-port", "pcie-to-pci-bridge": "pcie-pci-bridge",
                    "pci-bridge": "pci-bridge"}.get(model)
            if name is None:
                continue
            if ctrl.find("model") is None:
                ctrl.insert(0, etree.Element("model", name=name))
            target = ctrl.find("target")
            if target is None:
                if model == "pcie-to-pci-bridge":
                    continue
                target = etree.Element("target")
                ctrl.find("model").addnext(target)
            if model == "pci-bridge":
                _set_default(target, "chassisNr", index)
                continue
            _set_default(target, "chassis", index)
            address = ctrl.find("address[@type='pci']")
            if address is not None and target.get("port") is None:
                port = (_int(address.get("slot", "0")) << 3) | _int(address.get("function", "0"))
                target.set("port", f"0x{port:x}")

    def _set_multifunction(self):
        for elem, bus, slot, function in self.assigned:
            if function == 0 and len(bus.used.get(slot, ())) > 1:
                _set_default(elem.find("address"), "multifunction", "on")


def _canonical_pci_address(address, bus, slot, function):
    """Spell an existing address the way libvirt formats it; the values stay."""
    address.set("domain", f"0x{_int(address.get('domain', '0')):04x}")
    address.set("bus", f"0x{bus:02x}")
    address.set("slot", f"0x{slot:02x}")
    address.set("function", f"0x{function:x}")


def _int(text):
    return int(text, 0)
