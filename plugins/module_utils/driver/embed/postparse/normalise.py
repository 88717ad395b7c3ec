# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Normalisation of the domain outside <devices>: uuid, memory, vCPUs, NUMA, <os>, CPU, clock and lifecycle
actions completed as libvirt stores them, in libvirt's order, and what needs a daemon refused."""

from __future__ import annotations

import uuid as uuidlib
from typing import TYPE_CHECKING

from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import firmware
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.postparse.common import (
    child,
    cpu_ranges,
    int_attr,
    machine_family,
    set_default,
    sort_children,
    to_kib,
)
from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import etree

if TYPE_CHECKING:
    from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.caps import LaunchCaps

# Order in which libvirt formats <os> children.
_OS_ORDER = ("type", "firmware", "loader", "nvram", "kernel", "initrd", "cmdline", "dtb", "acpi", "boot",
             "bootmenu", "bios", "smbios")

# <features> children the embedded driver honours, in libvirt's order
FEATURE_ORDER = ("acpi", "apic", "pae", "hap", "privnet", "hyperv", "kvm", "pvspinlock", "pmu", "vmport",
                 "smm", "ioapic", "vmcoreinfo")
_MEMORY_BACKING_ORDER = ("hugepages", "nosharepages", "locked", "source", "access", "allocation", "discard")
_TIMERS = ("rtc", "pit", "hpet", "kvmclock")


def normalise(dom: etree._Element, caps: LaunchCaps) -> str:
    """Complete and check everything but the devices, in place; the canonical machine type."""
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
    return machine


def _ensure_uuid(dom: etree._Element) -> None:
    node = dom.find("uuid")
    if node is None:
        node = child(dom, "uuid", after=("name",))
        node.text = str(uuidlib.uuid4())
        return
    try:
        uuidlib.UUID(node.text or "")
    except ValueError:
        raise InvalidInput(f"malformed uuid {node.text!r}", "uuid") from None


def _normalise_memory(dom: etree._Element) -> None:
    memory = dom.find("memory")
    if memory is None:
        raise InvalidInput("a domain needs <memory>", "memory")
    kib = to_kib(memory, "memory")
    if kib == 0:
        raise InvalidInput("memory size must be greater than zero", "memory")
    memory.text, memory.attrib["unit"] = str(kib), "KiB"
    current = child(dom, "currentMemory", after=("memory",))
    current_kib = to_kib(current, "currentMemory") if current.text else kib
    current.text, current.attrib["unit"] = str(min(current_kib, kib)), "KiB"


def _normalise_vcpu(dom: etree._Element) -> None:
    vcpu = child(dom, "vcpu", after=("currentMemory", "memory"))
    if not (vcpu.text or "").strip():
        vcpu.text = "1"
    if not vcpu.text.strip().isdigit() or int(vcpu.text) < 1:
        raise InvalidInput(f"vcpu count must be a positive integer, not {vcpu.text!r}", "vcpu")
    set_default(vcpu, "placement", "static")


def _normalise_os(dom: etree._Element, caps) -> str:
    os_elem = dom.find("os")
    if os_elem is None:
        os_elem = child(dom, "os", after=("vcpu",))
    ostype = os_elem.find("type")
    if ostype is None:
        ostype = etree.Element("type")
        ostype.text = "hvm"
        os_elem.insert(0, ostype)
    if (ostype.text or "").strip() != "hvm":
        raise InvalidInput(f"os type {ostype.text!r} is not supported, only 'hvm'", "os/type")
    set_default(ostype, "arch", caps.arch)
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
    sort_children(os_elem, _OS_ORDER)
    return canonical


def _ensure_cpu(dom: etree._Element, caps) -> None:
    cpu = dom.find("cpu")
    if cpu is None:
        cpu = child(dom, "cpu", after=("features", "os"))
    mode = cpu.get("mode", "custom")
    topology = cpu.find("topology")
    if topology is not None:
        set_default(topology, "dies", "1")
        for attr in ("sockets", "dies", "cores", "threads"):
            topology.set(attr, topology.attrib.pop(attr, "1"))  # libvirt's attribute order
    if mode != "custom":
        set_default(cpu, "check", "none")
        return
    cpu.set("mode", "custom")
    model = cpu.find("model")
    set_default(cpu, "match", "exact")
    set_default(cpu, "check", "none")
    if model is None:
        model = etree.Element("model", fallback="forbid")
        model.text = "qemu64" if caps.arch == "x86_64" else "qemu32"
        cpu.insert(0, model)
    set_default(model, "fallback", "allow")


def _normalise_numa(dom: etree._Element) -> None:
    """Cells get ids and KiB sizes; with NUMA, <memory> is the sum of the cells, as in libvirt."""
    cells = dom.findall("cpu/numa/cell")
    if not cells:
        return
    total = 0
    for index, cell in enumerate(cells):
        set_default(cell, "id", str(index))
        if int_attr(cell, "id", "cpu/numa/cell@id") != index:
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
        memory = child(dom, "memory", after=("uuid", "name"))
    memory.text, memory.attrib["unit"] = str(total), "KiB"


def _scaled_attr(elem: etree._Element, attr: str, option: str) -> int:
    probe = etree.Element("value", unit=elem.get("unit", "KiB"))
    probe.text = elem.get(attr)
    return to_kib(probe, option)


def _ensure_clock_and_lifecycle(dom: etree._Element) -> None:
    child(dom, "clock", after=("cpu", "features", "os"), attrib={"offset": "utc"})
    anchor = "clock"
    for event, default in (("on_poweroff", "destroy"), ("on_reboot", "restart"), ("on_crash", "destroy")):
        node = child(dom, event, after=(anchor,))
        if not (node.text or "").strip():
            node.text = default
        anchor = event


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
    sort_children(features, FEATURE_ORDER)


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
    sort_children(backing, _MEMORY_BACKING_ORDER)


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
