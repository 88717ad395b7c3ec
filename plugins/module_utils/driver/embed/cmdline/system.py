# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The machine itself on the command line: firmware, machine type, CPU, memory, SMP, SMBIOS, clock, boot."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.cmdline.base import (
    CommandLine,
    opt_escape,
    to_json,
    yes,
)
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.postparse.common import cpu_ranges, to_kib
from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import etree

if TYPE_CHECKING:
    from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.caps import LaunchCaps

_BACKENDS = {"anonymous": "memory-backend-ram", "memfd": "memory-backend-memfd", "file": "memory-backend-file"}
# (sysinfo section, SMBIOS type, entries in the order libvirt writes them)
_SMBIOS_TABLES = (
    ("bios", 0, ("vendor", "version", "date", "release")),
    ("system", 1, ("manufacturer", "product", "version", "serial", "uuid", "sku", "family")),
    ("baseBoard", 2, ("manufacturer", "product", "version", "serial", "asset", "location")),
    ("chassis", 3, ("manufacturer", "version", "serial", "asset", "sku")),
)


def environment(cmd: CommandLine) -> dict[str, str]:
    """QEMU's environment: a C locale, a fixed PATH, and the domain's directory as its home."""
    home = cmd.paths.domain_dir
    return {
        "LC_ALL": "C",
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": home,
        "XDG_DATA_HOME": os.path.join(home, ".local/share"),
        "XDG_CACHE_HOME": os.path.join(home, ".cache"),
        "XDG_CONFIG_HOME": os.path.join(home, ".config"),
    }


def lifecycle_action(domain: etree._Element, caps: LaunchCaps) -> str:
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


# -- firmware and machine

def firmware(cmd: CommandLine) -> list[str]:
    """-bios for a ROM loader (noted, emitted with the CPU); pflash nodes, returned for -machine."""
    loader = cmd.dom.find("os/loader")
    if loader is None:
        return []
    path = (loader.text or "").strip()
    if loader.get("type", "rom") == "rom":
        cmd.bios = path
        return []
    readonly = yes(loader.get("readonly", "no"))
    nodes = [_pflash_node(cmd, 0, path, readonly=readonly)]
    if readonly:
        nvram = (cmd.dom.findtext("os/nvram") or "").strip() or cmd.paths.nvram
        if not nvram:
            raise InvalidInput("a read-only pflash loader needs an <nvram> vars file", "os/nvram")
        nodes.append(_pflash_node(cmd, 1, nvram, readonly=False))
    return nodes


def _pflash_node(cmd: CommandLine, unit: int, path: str, readonly: bool) -> str:
    storage, fmt = f"libvirt-pflash{unit}-storage", f"libvirt-pflash{unit}-format"
    cmd.add("-blockdev", to_json({"driver": "file", "filename": path, "node-name": storage,
                                  "auto-read-only": True, "discard": "unmap"}))
    cmd.add("-blockdev", to_json({"node-name": fmt, "read-only": readonly, "driver": "raw", "file": storage}))
    return fmt


def machine(cmd: CommandLine, pflash: list[str]) -> None:
    dom = cmd.dom
    opts = [cmd.machine, "usb=off"]
    vmport, smm = dom.find("features/vmport"), dom.find("features/smm")
    if vmport is not None:
        opts.append(f"vmport={vmport.get('state', 'on')}")
    if smm is not None:
        opts.append(f"smm={smm.get('state', 'on')}")
    ioapic = dom.find("features/ioapic")
    if ioapic is not None and ioapic.get("driver"):
        opts.append("kernel_irqchip=" + ("split" if ioapic.get("driver") == "qemu" else "on"))
    opts.append("dump-guest-core=off")
    if dom.find("memoryBacking/nosharepages") is not None:
        opts.append("mem-merge=off")
    if not dom.findall("cpu/numa/cell"):
        opts.append("memory-backend=pc.ram")
    opts += [f"pflash{i}={node}" for i, node in enumerate(pflash)]
    if dom.find("os/bios[@useserial='yes']") is not None:
        opts.append("graphics=off")
    cmd.add("-machine", ",".join(opts))
    _accelerator(cmd)
    tseg = dom.find("features/smm/tseg")
    if tseg is not None:
        cmd.add("-global", f"mch.extended-tseg-mbytes={to_kib(tseg, 'features/smm/tseg') // 1024}")


def _accelerator(cmd: CommandLine) -> None:
    accel = "kvm" if cmd.dom.get("type") == "kvm" else "tcg"
    if cmd.caps.accels and accel not in cmd.caps.accels:
        raise InvalidInput(f"accelerator {accel} is not available on this host", "domain@type")
    cmd.add("-accel", accel)


# -- CPU, memory, SMP

def cpu_memory_smp(cmd: CommandLine) -> None:
    dom = cmd.dom
    cpu = dom.find("cpu")
    model = _cpu_model(cmd, cpu)
    if model:
        cmd.add("-cpu", model)
    if cmd.bios:
        cmd.add("-bios", cmd.bios)
    elif dom.find("os/loader[@secure='yes']") is not None:
        cmd.add("-global", "driver=cfi.pflash01,property=secure,value=on")
    mib = -(-to_kib(dom.find("memory"), "memory") // 1024)
    cmd.add("-m", mib)
    if not dom.findall("cpu/numa/cell"):
        cmd.add("-object", to_json(_memory_backend(cmd, "pc.ram", mib * 1024 * 1024, None)))
    locked = dom.find("memoryBacking/locked") is not None
    cmd.add("-overcommit", f"mem-lock={'on' if locked else 'off'}")
    cmd.add("-smp", _smp(dom, cpu))
    for number in range(1, int(dom.findtext("iothreads") or 0) + 1):
        cmd.add("-object", to_json({"qom-type": "iothread", "id": f"iothread{number}"}))
    _numa(cmd)


def _memory_backend(cmd: CommandLine, ident: str, size: int, cell: etree._Element | None) -> dict:
    """A memory-backend-* object for guest RAM (``cell`` is a NUMA <cell> or None)."""
    backing = cmd.dom.find("memoryBacking")
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
        props["mem-path"] = os.path.join(cmd.paths.domain_dir, ident)
        if _discards(backing, cell):
            props["discard-data"] = True
    if access is not None:
        props["share"] = access == "shared"
    if source != "anonymous" and cell is None:
        props["x-use-canonical-path-for-ramblock-id"] = False
    props["size"] = size
    return props


def _discards(backing: etree._Element | None, cell: etree._Element | None) -> bool:
    """Whether guest RAM is discarded on exit: a NUMA cell's discard attribute wins over <memoryBacking>."""
    if cell is not None and cell.get("discard"):
        return yes(cell.get("discard"))
    return backing is not None and backing.find("discard") is not None


def _numa(cmd: CommandLine) -> None:
    cells = cmd.dom.findall("cpu/numa/cell")
    for cell in cells:
        node = f"ram-node{cell.get('id')}"
        cmd.add("-object", to_json(_memory_backend(cmd, node, int(cell.get("memory")) * 1024, cell)))
        cpus = ",".join(f"cpus={span}" for span in cpu_ranges(cell.get("cpus"), "cpu/numa/cell@cpus"))
        cmd.add("-numa", f"node,nodeid={cell.get('id')},{cpus},memdev={node}")
    for cell in cells:
        for sibling in cell.findall("distances/sibling"):
            cmd.add("-numa", f"dist,src={cell.get('id')},dst={sibling.get('id')},val={sibling.get('value')}")


def _cpu_model(cmd: CommandLine, cpu: etree._Element | None) -> str | None:
    if cpu is None:
        return None
    mode = cpu.get("mode", "custom")
    if mode == "host-passthrough":
        # Refused at start, not at define, as libvirt does: the definition may move to a KVM host.
        if cmd.dom.get("type") != "kvm":
            raise InvalidInput("CPU mode 'host-passthrough' needs a kvm domain: "
                               "a qemu (TCG) domain has no host CPU to pass through", "cpu@mode")
        name = "host"
    elif mode == "maximum":
        name = "max"
    elif mode == "custom":
        name = cpu.findtext("model")
        if not name:
            return None
        if cmd.caps.cpu_models and name not in cmd.caps.cpu_models:
            raise InvalidInput(f"CPU model {name!r} is not known to {cmd.caps.binary}", "cpu/model")
    else:
        raise InvalidInput(f"CPU mode {mode!r} is not supported by the embedded driver", "cpu@mode")
    flags = [f"{f.get('name')}={'on' if f.get('policy', 'require') in ('require', 'force') else 'off'}"
             for f in cpu.findall("feature")]
    flags += _cpu_flags_from_features(cmd.dom)
    return ",".join([name, *flags])


def _cpu_flags_from_features(dom: etree._Element) -> list[str]:
    flags = []
    kvmclock = dom.find("clock/timer[@name='kvmclock']")
    if kvmclock is not None and kvmclock.get("present"):
        flags.append(f"kvmclock={'on' if yes(kvmclock.get('present')) else 'off'}")
    eoi = dom.find("features/apic")
    if eoi is not None and eoi.get("eoi"):
        flags.append(f"kvm-pv-eoi={eoi.get('eoi')}")
    pvspinlock = dom.find("features/pvspinlock")
    if pvspinlock is not None:
        flags.append(f"kvm-pv-unhalt={pvspinlock.get('state', 'on')}")
    flags += _hyperv_flags(dom.find("features/hyperv"))
    flags += _kvm_flags(dom.find("features/kvm"))
    pmu = dom.find("features/pmu")
    if pmu is not None:
        flags.append(f"pmu={pmu.get('state', 'on')}")
    return flags


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


def _spinlock_retries(feature: etree._Element) -> int:
    value = feature.get("retries", "4095")
    try:
        return int(value, 10)
    except ValueError:
        raise InvalidInput(f"spinlocks retries {value!r} is not an integer",
                           "features/hyperv/spinlocks@retries") from None


def _smp(dom: etree._Element, cpu: etree._Element | None) -> str:
    vcpu = dom.find("vcpu")
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


# -- SMBIOS, clock, power management, boot

def smbios(cmd: CommandLine) -> None:
    if cmd.dom.find("os/smbios[@mode='sysinfo']") is None:
        return
    sysinfo = cmd.dom.find("sysinfo[@type='smbios']")
    for section, number, fields in _SMBIOS_TABLES:
        block = sysinfo.find(section)
        if block is None:
            continue
        entries = {e.get("name"): (e.text or "") for e in block.findall("entry")}
        opts = [f"{name}={opt_escape(entries[name])}" for name in fields if entries.get(name)]
        if opts:
            cmd.add("-smbios", ",".join([f"type={number}", *opts]))
    strings = [e.text or "" for e in sysinfo.findall("oemStrings/entry")]
    if strings:
        cmd.add("-smbios", ",".join(["type=11", *(f"value={opt_escape(v)}" for v in strings)]))


def clock(cmd: CommandLine) -> None:
    elem = cmd.dom.find("clock")
    offset = elem.get("offset", "utc") if elem is not None else "utc"
    rtc = [f"base={_rtc_base(elem, offset)}"]
    if offset == "timezone":
        cmd.extra_env["TZ"] = elem.get("timezone", "")
    timer = elem.find("timer[@name='rtc']") if elem is not None else None
    if timer is not None:
        track = {"guest": "vm", "wall": "host", "realtime": "rt"}.get(timer.get("track", ""))
        if track:
            rtc.append(f"clock={track}")
        if timer.get("tickpolicy") == "catchup":
            rtc.append("driftfix=slew")
    cmd.add("-rtc", ",".join(rtc))
    pit = elem.find("timer[@name='pit']") if elem is not None else None
    if pit is not None and pit.get("tickpolicy") in (None, "delay", "discard"):
        cmd.add("-global", f"kvm-pit.lost_tick_policy={pit.get('tickpolicy') or 'delay'}")
    if elem is not None and elem.find("timer[@name='hpet'][@present='no']") is not None:
        cmd.add("-no-hpet")


def _rtc_base(elem: etree._Element, offset: str) -> str:
    """-rtc base: utc, localtime or, for a variable clock, the start time shifted by the adjustment."""
    if offset in ("utc", "localtime"):
        return offset
    if offset == "timezone":
        return "localtime"
    adjustment = clock_adjustment(elem)
    now = time.time() + adjustment
    stamp = time.localtime(now) if elem.get("basis") == "localtime" else time.gmtime(now)
    return time.strftime("%Y-%m-%dT%H:%M:%S", stamp)


def clock_adjustment(elem: etree._Element) -> int:
    """Seconds of a variable clock's adjustment; 'reset' (valid with utc/localtime in libvirt) is 0."""
    value = elem.get("adjustment", "0")
    if value == "reset":
        return 0
    try:
        return int(value, 10)
    except ValueError:
        raise InvalidInput(f"clock adjustment {value!r} is not an integer number of seconds",
                           "clock@adjustment") from None


def acpi(cmd: CommandLine) -> None:
    if cmd.dom.find("features/acpi") is None:
        cmd.add("-no-acpi")


def power_management(cmd: CommandLine) -> None:
    device = "ICH9-LPC" if cmd.family == "q35" else "PIIX4_PM"
    for tag, state in (("suspend-to-mem", "s3"), ("suspend-to-disk", "s4")):
        elem = cmd.dom.find(f"pm/{tag}")
        if elem is not None and elem.get("enabled") in ("yes", "no"):
            cmd.add("-global", f"{device}.disable_{state}={0 if yes(elem.get('enabled')) else 1}")


def boot(cmd: CommandLine) -> None:
    dom = cmd.dom
    opts = []
    menu = dom.find("os/bootmenu")
    if menu is not None and menu.get("enable") in ("yes", "no"):
        opts.append(f"menu={'on' if yes(menu.get('enable')) else 'off'}")
    bios = dom.find("os/bios")
    if bios is not None and bios.get("rebootTimeout") is not None:
        opts.append(f"reboot-timeout={bios.get('rebootTimeout')}")
    if menu is not None and yes(menu.get("enable")) and menu.get("timeout") is not None:
        opts.append(f"splash-time={menu.get('timeout')}")
    opts.append("strict=on")
    cmd.add("-boot", ",".join(opts))
    for tag, flag in (("kernel", "-kernel"), ("initrd", "-initrd"), ("cmdline", "-append"), ("dtb", "-dtb")):
        value = dom.findtext(f"os/{tag}")
        if value:
            cmd.add(flag, value)
