# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Interfaces: a -netdev (user networking or a tap the driver made) and the NIC that uses it."""

from __future__ import annotations

from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.cmdline.base import (
    CommandLine,
    alias,
    to_json,
)
from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import etree

_NET_DRIVERS = {"virtio": "virtio-net-pci", "e1000": "e1000", "e1000e": "e1000e", "rtl8139": "rtl8139"}


def interfaces(cmd: CommandLine) -> None:
    for number, iface in enumerate(cmd.devices.findall("interface")):
        netdev = {"type": "user"} if iface.get("type") == "user" else _tap(iface)
        netdev["id"] = f"hostnet{number}"
        cmd.add("-netdev", to_json(netdev))
        model = iface.find("model").get("type")
        driver = _NET_DRIVERS.get(model)
        if driver is None:
            raise InvalidInput(f"interface model {model!r} is not supported by the embedded driver",
                               "devices/interface/model@type")
        props = {"driver": driver, "netdev": netdev["id"], "id": alias(iface, f"net{number}"),
                 "mac": iface.find("mac").get("address")}
        boot = cmd.bootindex.of(iface)
        if boot:
            props["bootindex"] = boot
        cmd.add_device(cmd.pci(iface, props))


def _tap(iface: etree._Element) -> dict[str, str]:
    """A tap named by <target dev>: the caller creates it before QEMU starts (libvirt passes an open fd)."""
    if iface.get("type") not in ("bridge", "network", "ethernet"):
        raise InvalidInput(f"interface type {iface.get('type')!r} is not supported by the embedded driver",
                           "devices/interface@type")
    target = iface.find("target")
    if target is None or not target.get("dev"):
        raise InvalidInput("a tap interface needs <target dev='...'/>, the tap the driver created",
                           "devices/interface/target@dev")
    return {"type": "tap", "ifname": target.get("dev"), "script": "no", "downscript": "no"}
