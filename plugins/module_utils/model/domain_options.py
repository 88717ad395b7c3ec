# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Render the ``domain`` module's structured options to a desired domain XML.

Only what the user gave is rendered, so the result is the subset that must
hold; ``with_creation_defaults`` completes it for a new domain.
Private to the collection.
"""

from __future__ import annotations

from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.model.domain import DEVICES
from ansible_collections.virtops.qemu.plugins.module_utils.model.units import to_bytes
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import element, sub

DEFINITION_OPTIONS = (
    "title", "description", "type", "arch", "machine", "memory", "current_memory",
    "vcpus", "cpu", "firmware", "kernel", "boot_order", "disks", "interfaces",
    "graphics", "serials", "features", "clock", "on_poweroff", "on_reboot", "on_crash",
)
TARGET_PREFIX = {"virtio": "vd", "sata": "sd", "scsi": "sd", "usb": "sd", "ide": "hd"}


def has_definition(params: dict) -> bool:
    return any(params.get(k) is not None for k in DEFINITION_OPTIONS)


def render(params: dict):
    """Return (domain element, owned list paths) for the given options."""
    domain = element("domain", type=params.get("type"))
    sub(domain, "name", params["name"])
    for option, tag in (("title", "title"), ("description", "description")):
        if params.get(option) is not None:
            sub(domain, tag, params[option])
    _memory(domain, params)
    if params.get("vcpus") is not None:
        sub(domain, "vcpu", params["vcpus"])
    owned = set()
    _os(domain, params, owned)
    _cpu(domain, params.get("cpu"))
    _features(domain, params.get("features"))
    _clock(domain, params.get("clock"))
    for event in ("on_poweroff", "on_reboot", "on_crash"):
        if params.get(event):
            sub(domain, event, params[event])
    _devices(domain, params, owned)
    return domain, owned


def _memory(domain, params):
    memory = params.get("memory")
    current = params.get("current_memory", None)
    if memory is not None:
        sub(domain, "memory", to_bytes(memory, "MiB", "memory") // 1024, unit="KiB")
        if current is None:
            current = memory
    if current is not None:
        sub(domain, "currentMemory", to_bytes(current, "MiB", "current_memory") // 1024, unit="KiB")


def _os(domain, params, owned):
    kernel = params.get("kernel") or {}
    if not (kernel or params.get("boot_order") is not None
            or any(params.get(k) for k in ("arch", "machine", "firmware"))):
        return
    os_node = sub(domain, "os", firmware=params.get("firmware") if params.get("firmware") == "efi" else None)
    sub(os_node, "type", "hvm", arch=params.get("arch"), machine=params.get("machine"))
    for option, tag in (("path", "kernel"), ("initrd", "initrd"), ("cmdline", "cmdline"), ("dtb", "dtb")):
        if kernel.get(option) is not None:
            sub(os_node, tag, kernel[option])
    if params.get("boot_order") is not None:
        owned.add("domain/os/boot")
        for dev in params["boot_order"]:
            sub(os_node, "boot", dev=dev)


def _cpu(domain, cpu):
    if not cpu:
        return
    node = sub(domain, "cpu", mode=cpu.get("mode"))
    if cpu.get("model"):
        if cpu.get("mode") in (None, "custom"):
            node.set("match", "exact")
        sub(node, "model", cpu["model"], fallback="allow")


def _features(domain, features):
    if features:
        node = sub(domain, "features")
        for name in features:
            sub(node, name)


def _clock(domain, clock):
    if not clock:
        return
    node = sub(domain, "clock", offset=clock.get("offset"))
    for timer in clock.get("timers") or []:
        sub(node, "timer", name=timer["name"], tickpolicy=timer.get("tickpolicy"),
            present=None if timer.get("present") is None else ("yes" if timer["present"] else "no"))


def _devices(domain, params, owned):
    devices = element("devices")
    builders = (("disks", "disk", _disks), ("interfaces", "interface", _interfaces),
                ("graphics", "graphics", _graphics), ("serials", "serial", _serials))
    mentioned = [b for b in builders if params.get(b[0]) is not None]
    for option, tag, build in mentioned:
        owned.add(f"{DEVICES}/{tag}")
        build(devices, params[option])
    if mentioned:
        domain.append(devices)


def _disks(devices, disks):
    used = set()
    for index, disk in enumerate(disks):
        devices.append(_disk(disk, used, f"disks[{index}]"))


def _disk(disk, used, where):
    device = disk.get("device") or "disk"
    bus = disk.get("bus") or ("sata" if device == "cdrom" else "virtio")
    kind = disk.get("type") or _disk_type(disk, where)
    node = element("disk", type=kind, device=device)
    if disk.get("format") or disk.get("cache"):
        sub(node, "driver", name="qemu", type=disk.get("format"), cache=disk.get("cache"))
    _disk_source(node, kind, disk, where)
    target = disk.get("target") or _next_target(bus, used, where)
    if target in used:
        raise InvalidInput(f"target {target!r} is used by two disks", where)
    used.add(target)
    sub(node, "target", dev=target, bus=bus)
    if disk.get("readonly"):
        sub(node, "readonly")
    return node


def _disk_type(disk, where):
    if disk.get("volume"):
        return "volume"
    path = disk.get("path")
    if path is None:
        if (disk.get("device") or "disk") != "cdrom":
            raise InvalidInput("a disk needs a path or a volume (only a cdrom may be empty)", where)
        return "file"
    return "block" if path.startswith("/dev/") else "file"


def _disk_source(node, kind, disk, where):
    if kind == "volume":
        if not disk.get("pool") or not disk.get("volume"):
            raise InvalidInput("a volume disk needs both pool and volume", where)
        sub(node, "source", pool=disk["pool"], volume=disk["volume"])
    elif disk.get("path"):
        if not disk["path"].startswith("/"):
            raise InvalidInput(f"path {disk['path']!r} must be absolute", where)
        sub(node, "source", **{"dev" if kind == "block" else "file": disk["path"]})


def _next_target(bus, used, where):
    prefix = TARGET_PREFIX.get(bus)
    if prefix is None:
        raise InvalidInput(f"unknown bus {bus!r}", where)
    for letter in "abcdefghijklmnopqrstuvwxyz":
        if prefix + letter not in used:
            return prefix + letter
    raise InvalidInput(f"no free target name on bus {bus}", where)


def _interfaces(devices, interfaces):
    for index, nic in enumerate(interfaces):
        devices.append(_interface(nic, f"interfaces[{index}]"))


def _interface(nic, where):
    kind = nic.get("type") or ("network" if nic.get("network") else "bridge" if nic.get("bridge") else None)
    if kind is None:
        raise InvalidInput("set network, bridge, or type: user", where)
    node = element("interface", type=kind)
    if nic.get("mac"):
        sub(node, "mac", address=nic["mac"].lower())
    if kind in ("network", "bridge"):
        if not nic.get(kind):
            raise InvalidInput(f"an interface of type {kind} needs the {kind} option", where)
        sub(node, "source", **{kind: nic[kind]})
    sub(node, "model", type=nic.get("model") or "virtio")
    return node


def _graphics(devices, graphics):
    kind = graphics.get("type") or "vnc"
    if kind == "none":
        return
    password = graphics.get("password")
    if kind == "vnc" and password is not None and len(password) > 8:
        raise InvalidInput("a VNC password has at most 8 characters (a limit of the VNC protocol)",
                           "graphics.password")
    port = graphics.get("port")
    node = element("graphics", type=kind,
                   port=-1 if port is None else port,
                   autoport="yes" if port in (None, -1) else "no",
                   listen=graphics.get("listen"),
                   passwd=graphics.get("password"))
    devices.append(node)


def _serials(devices, serials):
    for port, serial in enumerate(serials):
        kind = serial.get("type") or "pty"
        node = element("serial", type=kind)
        if kind in ("file", "unix"):
            if not serial.get("path"):
                raise InvalidInput(f"a serial of type {kind} needs a path", f"serials[{port}]")
            sub(node, "source", path=serial["path"], **({"mode": "bind"} if kind == "unix" else {}))
        sub(node, "target", port=port)
        devices.append(node)
