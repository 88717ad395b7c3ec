# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Render the ``domain`` module's structured options to a desired domain XML.

Only what the user gave is rendered, so the result is the subset that must
hold; ``with_creation_defaults`` completes it for a new domain.
Private to the collection.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.model.domain import DEVICES
from ansible_collections.virtops.qemu.plugins.module_utils.model.units import to_bytes
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import XmlNode, element, sub

DEFINITION_OPTIONS = (
    "title", "description", "type", "arch", "machine", "memory", "current_memory",
    "vcpus", "cpu", "firmware", "kernel", "boot_order", "disks", "interfaces",
    "graphics", "serials", "features", "clock", "on_poweroff", "on_reboot", "on_crash",
)
TARGET_PREFIX = {"virtio": "vd", "sata": "sd", "scsi": "sd", "usb": "sd", "ide": "hd"}
# What virt-install turns on for x86 guests: without ACPI the power button
# (state: shutdown) cannot reach the guest.
X86_ARCHES = frozenset({"x86_64", "i686", "i586", "i486", "i386"})
X86_DEFAULT_FEATURES = ("acpi", "apic")
VNC_FIRST_PORT = 5900
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")

Params = dict[str, Any]


def has_definition(params: Params) -> bool:
    return any(params.get(k) is not None for k in DEFINITION_OPTIONS)


def creation_features(params: Params) -> tuple[str, ...]:
    """Features a new domain gets unless the user turned them off: ACPI and APIC on x86."""
    arch = params.get("arch") or os.uname().machine
    if arch not in X86_ARCHES:
        return ()
    switches = feature_switches(params.get("features"))
    return tuple(name for name in X86_DEFAULT_FEATURES if switches.get(name, True))


def feature_switches(features: Any) -> dict[str, bool]:
    """The features option (a list of names to turn on, or a dict of name: on/off) as a dict."""
    if features is None:
        return {}
    if isinstance(features, str):
        features = [f.strip() for f in features.split(",") if f.strip()]
    if isinstance(features, list) and all(isinstance(name, str) for name in features):
        return dict.fromkeys(features, True)
    if isinstance(features, dict) and all(_switch(on) is not None for on in features.values()):
        return {str(name): bool(_switch(on)) for name, on in features.items()}
    raise InvalidInput("expected a list of feature names, or a dict of feature name: true/false", "features")


def _switch(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    return _SWITCH_WORDS.get(str(value).lower())


_SWITCH_WORDS = {"true": True, "yes": True, "on": True, "1": True,
                 "false": False, "no": False, "off": False, "0": False}


def render(params: Params) -> tuple[XmlNode, set[str]]:
    """Return (domain element, owned list paths) for the given options."""
    domain = element("domain", type=params.get("type"))
    sub(domain, "name", params["name"])
    for option, tag in (("title", "title"), ("description", "description")):
        if params.get(option) is not None:
            sub(domain, tag, params[option])
    _memory(domain, params)
    if params.get("vcpus") is not None:
        if params["vcpus"] < 1:
            raise InvalidInput(f"a domain needs at least 1 virtual CPU, got {params['vcpus']}", "vcpus")
        sub(domain, "vcpu", params["vcpus"])
    owned: set[str] = set()
    _os(domain, params, owned)
    _cpu(domain, params.get("cpu"))
    _features(domain, feature_switches(params.get("features")), owned)
    _clock(domain, params.get("clock"))
    for event in ("on_poweroff", "on_reboot", "on_crash"):
        if params.get(event):
            sub(domain, event, params[event])
    _devices(domain, params, owned)
    return domain, owned


def _memory(domain: XmlNode, params: Params) -> None:
    memory = _kib(params, "memory")
    current = _kib(params, "current_memory")
    if memory is not None:
        sub(domain, "memory", memory, unit="KiB")
        if current is None:
            current = memory
        elif current > memory:
            raise InvalidInput(f"{params['current_memory']} is more than memory ({params['memory']}); "
                               "the current memory must be at most the memory", "current_memory")
    if current is not None:
        sub(domain, "currentMemory", current, unit="KiB")


def _kib(params: Params, option: str) -> int | None:
    if params.get(option) is None:
        return None
    kib = to_bytes(params[option], "MiB", option) // 1024
    if kib < 1:
        raise InvalidInput(f"{params[option]!r} is less than 1 KiB", option)
    return kib


def _os(domain: XmlNode, params: Params, owned: set[str]) -> None:
    kernel = params.get("kernel") or {}
    if not (kernel or params.get("boot_order") is not None
            or any(params.get(k) for k in ("arch", "machine", "firmware"))):
        return
    os_node = sub(domain, "os", firmware=params.get("firmware") if params.get("firmware") == "efi" else None)
    sub(os_node, "type", "hvm", arch=params.get("arch"), machine=params.get("machine"))
    for option, tag in (("path", "kernel"), ("initrd", "initrd"), ("cmdline", "cmdline"), ("dtb", "dtb")):
        if kernel.get(option) is not None:
            if tag != "cmdline" and not str(kernel[option]).startswith("/"):
                raise InvalidInput(f"{kernel[option]!r} must be an absolute path", f"kernel.{option}")
            sub(os_node, tag, kernel[option])
    if params.get("boot_order") is not None:
        owned.add("domain/os/boot")
        for dev in params["boot_order"]:
            sub(os_node, "boot", dev=dev)


def _cpu(domain: XmlNode, cpu: Params | None) -> None:
    if not cpu:
        return
    node = sub(domain, "cpu", mode=cpu.get("mode"))
    if cpu.get("model"):
        if cpu.get("mode") in (None, "custom"):
            node.set("match", "exact")
        sub(node, "model", cpu["model"], fallback="allow")


def _features(domain: XmlNode, switches: dict[str, bool], owned: set[str]) -> None:
    """Turned-on features must be there; turned-off ones are removed (their path is owned)."""
    if not switches:
        return
    node = sub(domain, "features")
    for name, on in switches.items():
        if on:
            sub(node, name)
        else:
            owned.add(f"domain/features/{name}")


def _clock(domain: XmlNode, clock: Params | None) -> None:
    if not clock:
        return
    node = sub(domain, "clock", offset=clock.get("offset"))
    for timer in clock.get("timers") or []:
        sub(node, "timer", name=timer["name"], tickpolicy=timer.get("tickpolicy"),
            present=None if timer.get("present") is None else ("yes" if timer["present"] else "no"))


def _devices(domain: XmlNode, params: Params, owned: set[str]) -> None:
    devices = element("devices")
    builders: tuple[tuple[str, str, Callable[[XmlNode, Any], None]], ...] = (
        ("disks", "disk", _disks), ("interfaces", "interface", _interfaces),
        ("graphics", "graphics", _graphics), ("serials", "serial", _serials))
    mentioned = [b for b in builders if params.get(b[0]) is not None]
    for option, tag, build in mentioned:
        owned.add(f"{DEVICES}/{tag}")
        build(devices, params[option])
    if mentioned:
        domain.append(devices)


def _disks(devices: XmlNode, disks: list[Params]) -> None:
    used: set[str] = set()
    for index, disk in enumerate(disks):
        devices.append(_disk(disk, used, f"disks[{index}]"))


def _disk(disk: Params, used: set[str], where: str) -> XmlNode:
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


def _disk_type(disk: Params, where: str) -> str:
    if disk.get("volume"):
        return "volume"
    path = disk.get("path")
    if path is None:
        if (disk.get("device") or "disk") != "cdrom":
            raise InvalidInput("a disk needs a path or a volume (only a cdrom may be empty)", where)
        return "file"
    return "block" if path.startswith("/dev/") else "file"


def _disk_source(node: XmlNode, kind: str, disk: Params, where: str) -> None:
    if kind == "volume":
        if not disk.get("pool") or not disk.get("volume"):
            raise InvalidInput("a volume disk needs both pool and volume", where)
        sub(node, "source", pool=disk["pool"], volume=disk["volume"])
    elif disk.get("path"):
        if not disk["path"].startswith("/"):
            raise InvalidInput(f"path {disk['path']!r} must be absolute", where)
        sub(node, "source", **{"dev" if kind == "block" else "file": disk["path"]})


def _next_target(bus: str, used: set[str], where: str) -> str:
    prefix = TARGET_PREFIX.get(bus)
    if prefix is None:
        raise InvalidInput(f"unknown bus {bus!r}", where)
    for letter in "abcdefghijklmnopqrstuvwxyz":
        if prefix + letter not in used:
            return prefix + letter
    raise InvalidInput(f"no free target name on bus {bus}", where)


def _interfaces(devices: XmlNode, interfaces: list[Params]) -> None:
    for index, nic in enumerate(interfaces):
        devices.append(_interface(nic, f"interfaces[{index}]"))


def _interface(nic: Params, where: str) -> XmlNode:
    kind = nic.get("type") or ("network" if nic.get("network") else "bridge" if nic.get("bridge") else None)
    if kind is None:
        raise InvalidInput("set network, bridge, or type: user (or type: network|bridge with source)", where)
    portgroup = _portgroup(nic, kind, where)
    node = element("interface", type=kind)
    if nic.get("mac"):
        sub(node, "mac", address=_mac(nic["mac"], f"{where}.mac"))
    if kind in ("network", "bridge"):
        sub(node, "source", **{kind: _interface_source(nic, kind, where)}, **portgroup)
    sub(node, "model", type=nic.get("model") or "virtio")
    return node


def _portgroup(nic: Params, kind: str, where: str) -> dict:
    """The portgroup attribute of the source: the network's settings for a group of ports."""
    group = nic.get("portgroup")
    if group is None:
        return {}
    if kind != "network":
        raise InvalidInput(f"a portgroup belongs to a virtual network; this interface is of type {kind}",
                           f"{where}.portgroup")
    return {"portgroup": str(group)}


def _mac(address: str, option: str) -> str:
    mac = address.lower()
    if not _MAC.match(mac):
        raise InvalidInput(f"{address!r} is not a MAC address (six hex pairs: 52:54:00:12:34:56)", option)
    if int(mac[:2], 16) & 1:
        raise InvalidInput(f"{address} is a multicast address; an interface needs a unicast one "
                           "(an even first byte)", option)
    return mac


def _interface_source(nic: Params, kind: str, where: str) -> str:
    """The network or bridge name, from ``source`` or from the option named like the type."""
    named, source = nic.get(kind), nic.get("source")
    if named and source and named != source:
        raise InvalidInput(f"source {source!r} and {kind} {named!r} name different {kind}s", where)
    name = named or source
    if not name:
        raise InvalidInput(f"an interface of type {kind} needs source (or the {kind} option)", where)
    return str(name)


def _graphics(devices: XmlNode, graphics: Params) -> None:
    kind = graphics.get("type") or "vnc"
    if kind == "none":
        return
    password = graphics.get("password")
    if kind == "vnc" and password is not None and len(password) > 8:
        raise InvalidInput("a VNC password has at most 8 characters (a limit of the VNC protocol)",
                           "graphics.password")
    port = graphics.get("port")
    _check_port(kind, port)
    node = element("graphics", type=kind,
                   port=-1 if port is None else port,
                   autoport="yes" if port in (None, -1) else "no",
                   listen=graphics.get("listen"),
                   passwd=graphics.get("password"))
    devices.append(node)


def _check_port(kind: str, port: int | None) -> None:
    first = VNC_FIRST_PORT if kind == "vnc" else 1
    if port is not None and port != -1 and not first <= port <= 65535:
        raise InvalidInput(f"{port} is not a {kind} port: use -1 (any free port) or {first} to 65535",
                           "graphics.port")


def _serials(devices: XmlNode, serials: list[Params]) -> None:
    for port, serial in enumerate(serials):
        kind = serial.get("type") or "pty"
        node = element("serial", type=kind)
        if kind in ("file", "unix"):
            if not serial.get("path"):
                raise InvalidInput(f"a serial of type {kind} needs a path", f"serials[{port}]")
            sub(node, "source", path=serial["path"], **({"mode": "bind"} if kind == "unix" else {}))
        sub(node, "target", port=port)
        devices.append(node)
