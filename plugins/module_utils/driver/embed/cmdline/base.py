# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The command line being built, the paths of a launch, and the helpers every device family uses."""

from __future__ import annotations

import copy
import json
from typing import TYPE_CHECKING, NamedTuple

from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.postparse.common import machine_family
from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import etree

if TYPE_CHECKING:
    from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.caps import LaunchCaps


class LaunchPaths(NamedTuple):
    """Where one QEMU run keeps its files, and what the caller picked for it before the start.

    ``nvram`` is the vars file used when the XML names none; ``vnc_port`` and
    ``spice_port`` are the ports of autoport graphics; ``monitor_fd`` is a
    listening socket at ``monitor_socket`` that QEMU inherits.
    """

    monitor_socket: str
    pidfile: str
    domain_dir: str
    log_file: str
    nvram: str | None = None
    vnc_port: int | None = None
    spice_port: int | None = None
    monitor_fd: int | None = None


def opt_escape(value: object) -> str:
    """Escape a value for QEMU's key=value option syntax (commas are doubled)."""
    return str(value).replace(",", ",,")


def to_json(props: dict) -> str:
    return json.dumps(props, separators=(",", ":"))


def yes(value: str | None) -> bool:
    return value in ("yes", "on")


def alias(elem: etree._Element, default: str) -> str:
    """A device's id: the user's alias (ua-*) if it has one, else libvirt's name for it."""
    found = elem.find("alias")
    if found is not None and (found.get("name") or "").startswith("ua-"):
        return found.get("name")
    return default


class CommandLine:
    """The argv of one QEMU start as it grows, and the domain it is built from."""

    def __init__(self, domain: etree._Element, caps: LaunchCaps, paths: LaunchPaths, conf: dict) -> None:
        if domain.find("os").get("firmware") or domain.find("os/loader") is not None:
            from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import firmware
            domain = copy.deepcopy(domain)   # the caller's definition stays as it is
            firmware.fill(domain, paths.nvram or "")
        self.dom = domain
        self.caps = caps
        self.paths = paths
        self.conf = conf
        self.bios: str | None = None
        self.extra_env: dict[str, str] = {}
        devices = domain.find("devices")
        if devices is None:
            raise InvalidInput("the domain has no <devices>; run postparse first", "devices")
        self.devices: etree._Element = devices
        self.machine: str = domain.find("os/type").get("machine")
        self.family = machine_family(self.machine)
        self.argv: list[str | dict] = []
        self.device_args: dict[str, dict] = {}  # id -> JSON props of -device (for qemu:override)
        self.bootindex = BootOrder(domain)

    def add(self, *args: object) -> None:
        self.argv.extend(str(a) for a in args)

    def add_device(self, props: dict) -> None:
        self.device_args[props["id"]] = props
        self.argv.append("-device")
        self.argv.append(props)  # serialised at the end, after overrides

    def add_anonymous_device(self, props: dict) -> None:
        """A -device without an id, as libvirt emits some (pvpanic, UHCI companions)."""
        self.argv.append("-device")
        self.argv.append(props)

    def serialised(self) -> list[str]:
        return [to_json(a) if isinstance(a, dict) else a for a in self.argv]

    def bus_name(self, index: int) -> str:
        if index == 0:
            return "pcie.0" if self.family == "q35" else "pci.0"
        return f"pci.{index}"

    def pci(self, elem: etree._Element, props: dict) -> dict:
        """``props`` placed at the element's PCI address (post-parse gave every PCI device one)."""
        address = elem.find("address[@type='pci']")
        if address is None:
            raise InvalidInput(f"<{elem.tag}> has no PCI address; run postparse first", f"devices/{elem.tag}/address")
        slot, function = int(address.get("slot"), 0), int(address.get("function", "0"), 0)
        props["bus"] = self.bus_name(int(address.get("bus"), 0))
        if yes(address.get("multifunction", "off")):
            props["multifunction"] = True
        props["addr"] = f"0x{slot:x}" if function == 0 else f"0x{slot:x}.0x{function:x}"
        return props

    @staticmethod
    def usb(elem: etree._Element, props: dict) -> dict:
        """``props`` placed at the element's port of the USB bus."""
        address = elem.find("address[@type='usb']")
        if address is None:
            raise InvalidInput(f"<{elem.tag}> has no USB address; run postparse first", f"devices/{elem.tag}/address")
        props.update({"bus": f"usb.{address.get('bus', '0')}", "port": address.get("port")})
        return props


class BootOrder:
    """bootindex of disks and interfaces, from <boot order> or the <os><boot dev> list."""

    def __init__(self, domain: etree._Element) -> None:
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

    def of(self, elem: etree._Element) -> int | None:
        return next((index for known, index in self.order if known is elem), None)
