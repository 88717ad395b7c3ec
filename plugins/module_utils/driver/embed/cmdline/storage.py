# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controllers, and disks as -blockdev nodes (storage, then format) under a -device front end."""

from __future__ import annotations

from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.cmdline.base import (
    CommandLine,
    alias,
    to_json,
    yes,
)
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.postparse.devices import disk_index
from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import etree

_USB_DRIVERS = {"piix3-uhci": "piix3-usb-uhci", "piix4-uhci": "piix4-usb-uhci", "qemu-xhci": "qemu-xhci",
                "nec-xhci": "nec-usb-xhci", "ehci": "usb-ehci", "ich9-ehci1": "ich9-usb-ehci1",
                "ich9-uhci1": "ich9-usb-uhci1", "ich9-uhci2": "ich9-usb-uhci2", "ich9-uhci3": "ich9-usb-uhci3"}
_SCSI_DRIVERS = {"lsilogic": "lsi", "virtio-scsi": "virtio-scsi-pci"}
_BUILT_IN_CONTROLLERS = ("ide", "fdc")
# cache mode -> (cache.direct, cache.no-flush, write-cache)
_CACHE_MODES = {
    "none": (True, False, "on"),
    "writeback": (False, False, "on"),
    "writethrough": (False, False, "off"),
    "directsync": (True, False, "off"),
    "unsafe": (False, True, "on"),
}


# -- controllers

def controllers(cmd: CommandLine) -> None:
    """PCI controllers by index, then USB, SCSI, SATA and virtio-serial ones; IDE and FDC are built in."""
    ctrls = cmd.devices.findall("controller")
    for ctrl in sorted(ctrls, key=lambda c: int(c.get("index"))):
        if ctrl.get("type") == "pci":
            _pci_controller(cmd, ctrl)
    for ctype in ("usb", "scsi", "sata", "virtio-serial"):
        for ctrl in (c for c in ctrls if c.get("type") == ctype):
            _device_controller(cmd, ctrl)
    for ctrl in ctrls:
        if ctrl.get("type") not in ("pci", "usb", "scsi", "sata", "virtio-serial", *_BUILT_IN_CONTROLLERS):
            raise InvalidInput(f"controller type {ctrl.get('type')!r} is not supported by the embedded "
                               "driver", "devices/controller@type")
        if ctrl.get("type") in _BUILT_IN_CONTROLLERS and (cmd.family == "q35" or int(ctrl.get("index")) > 0):
            raise InvalidInput(f"only the built-in {ctrl.get('type')} controller of pc machines exists",
                               "devices/controller@type")


def _pci_controller(cmd: CommandLine, ctrl: etree._Element) -> None:
    model, index = ctrl.get("model"), int(ctrl.get("index"))
    ident = alias(ctrl, f"pci.{index}")
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
    cmd.add_device(cmd.pci(ctrl, props))


def _device_controller(cmd: CommandLine, ctrl: etree._Element) -> None:
    ctype, model, index = ctrl.get("type"), ctrl.get("model"), int(ctrl.get("index"))
    if ctype == "usb":
        if model == "none":
            return
        driver = _USB_DRIVERS.get(model)
        ident = "usb" if index == 0 else f"usb{index}"
    elif ctype == "scsi":
        driver, ident = _SCSI_DRIVERS.get(model), f"scsi{index}"
    elif ctype == "sata":
        if cmd.family == "q35" and index == 0:
            return  # the ICH9 AHCI controller is built into q35
        driver, ident = "ich9-ahci", f"sata{index}"
    else:
        driver, ident = "virtio-serial-pci", f"virtio-serial{index}"
    if driver is None:
        raise InvalidInput(f"{ctype} controller model {model!r} is not supported by the embedded driver",
                           "devices/controller@model")
    if ctype == "usb" and ctrl.find("master") is not None:
        # a UHCI companion of an EHCI controller: no bus of its own, so no id
        cmd.add_anonymous_device(cmd.pci(ctrl, {"driver": driver, "masterbus": f"{ident}.0",
                                                "firstport": int(ctrl.find("master").get("startport"))}))
        return
    cmd.add_device(cmd.pci(ctrl, {"driver": driver, "id": alias(ctrl, ident)}))


# -- disks

def disks(cmd: CommandLine) -> None:
    """Each disk's nodes and front end; nodes are numbered from the last disk, as libvirt does."""
    found = cmd.devices.findall("disk")
    for number, disk in enumerate(found):
        _disk(cmd, disk, len(found) - number)


def _disk(cmd: CommandLine, disk: etree._Element, node_number: int) -> None:
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
    node = _disk_nodes(cmd, disk, node_number, cache, readonly)
    props = _disk_frontend(cmd, disk, bus, dev, device)
    if node:
        props["drive"] = node
    props["id"] = alias(disk, props.pop("id"))
    _disk_properties(cmd, disk, props, shareable)
    if cache and node:
        props["write-cache"] = cache[2]
    cmd.add_device(props)


def _disk_properties(cmd: CommandLine, disk: etree._Element, props: dict, shareable: bool) -> None:
    boot = cmd.bootindex.of(disk)
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


def _cache_options(cache: tuple | None) -> dict:
    return {"cache": {"direct": cache[0], "no-flush": cache[1]}} if cache else {}


def _disk_nodes(cmd: CommandLine, disk: etree._Element, number: int, cache: tuple | None,
                readonly: bool) -> str | None:
    source = disk.find("source")
    dtype = disk.get("type", "file")
    if dtype == "network":
        return _network_disk_nodes(cmd, disk, number, cache, readonly)
    if dtype not in ("file", "block"):
        raise InvalidInput(f"disk type {dtype!r} is not supported by the embedded driver", "devices/disk@type")
    path = None if source is None else source.get("file" if dtype == "file" else "dev")
    if not path:
        if disk.get("device") in ("cdrom", "floppy"):
            return None
        raise InvalidInput(f"disk {disk.find('target').get('dev')} has no source", "devices/disk/source")
    storage, fmt = f"libvirt-{number}-storage", f"libvirt-{number}-format"
    driver = disk.find("driver")
    cache_opts = _cache_options(cache)
    aio = {"aio": driver.get("io")} if driver.get("io") else {}
    cmd.add("-blockdev", to_json({"driver": "file" if dtype == "file" else "host_device", "filename": path, **aio,
                                  "node-name": storage, **cache_opts, "auto-read-only": True,
                                  "discard": "unmap"}))
    fmt_props = {"node-name": fmt, "read-only": readonly, **_discard_options(driver), **cache_opts,
                 "driver": driver.get("type", "raw"), "file": storage}
    cmd.add("-blockdev", to_json(fmt_props))
    return fmt


def _discard_options(driver: etree._Element) -> dict:
    """discard/detect-zeroes of a disk's format node; detect-zeroes=unmap only applies with discard=unmap."""
    opts = {}
    if driver.get("discard") == "unmap":
        opts["discard"] = "unmap"
    zeroes = driver.get("detect_zeroes")
    if zeroes and zeroes != "off":
        opts["detect-zeroes"] = "unmap" if zeroes == "unmap" and opts.get("discard") else "on"
    return opts


def _network_disk_nodes(cmd: CommandLine, disk: etree._Element, number: int, cache: tuple | None,
                        readonly: bool) -> str:
    """An iSCSI LUN through QEMU's user-space initiator (libiscsi); the only network disk supported."""
    source = disk.find("source")
    if source is None or source.get("protocol") != "iscsi" or source.find("host") is None:
        raise InvalidInput("the embedded driver supports network disks of protocol iscsi only",
                           "devices/disk/source@protocol")
    target, _slash, lun = (source.get("name") or "").rpartition("/")
    host = source.find("host")
    storage, fmt = f"libvirt-{number}-storage", f"libvirt-{number}-format"
    cache_opts = _cache_options(cache)
    props = {"driver": "iscsi", "portal": f"{host.get('name')}:{host.get('port') or 3260}",
             "target": target, "lun": int(lun or 0), "transport": "tcp", "node-name": storage,
             **cache_opts, "auto-read-only": True, "discard": "unmap"}
    initiator = source.find("initiator/iqn")
    if initiator is not None and initiator.get("name"):
        props["initiator-name"] = initiator.get("name")
    cmd.add("-blockdev", to_json(props))
    driver = disk.find("driver")
    cmd.add("-blockdev", to_json({"node-name": fmt, "read-only": readonly, **cache_opts,
                                  "driver": driver.get("type", "raw") if driver is not None else "raw",
                                  "file": storage}))
    return fmt


def _disk_frontend(cmd: CommandLine, disk: etree._Element, bus: str, dev: str, device: str) -> dict:
    cd = device == "cdrom"
    address = disk.find("address")
    if bus == "virtio":
        if cd:
            raise InvalidInput("a cdrom cannot be on the virtio bus", "devices/disk/target@bus")
        return cmd.pci(disk, {"driver": "virtio-blk-pci", "id": f"virtio-disk{disk_index(dev)}"})
    if bus == "usb":
        removable = yes(disk.find("target").get("removable", "no"))
        return cmd.usb(disk, {"driver": "usb-storage", "id": f"usb-disk{disk_index(dev)}", "removable": removable})
    ctrl, unit = int(address.get("controller")), int(address.get("unit"))
    drive_bus, target = int(address.get("bus")), int(address.get("target", "0"))
    if bus == "fdc":
        return {"driver": "floppy", "unit": unit, "id": f"fdc0-0-{unit}"}
    if bus == "ide":
        return {"driver": "ide-cd" if cd else "ide-hd", "bus": f"ide.{drive_bus}", "unit": unit,
                "id": f"ide{ctrl}-{drive_bus}-{unit}"}
    if bus == "sata":
        ahci = "ide" if cmd.family == "q35" and ctrl == 0 else f"sata{ctrl}"
        return {"driver": "ide-cd" if cd else "ide-hd", "bus": f"{ahci}.{unit}", "id": f"sata{ctrl}-0-{unit}"}
    if bus == "scsi":
        return _scsi_frontend(cmd, cd, ctrl, drive_bus, target, unit)
    raise InvalidInput(f"disk bus {bus!r} is not supported by the embedded driver", "devices/disk/target@bus")


def _scsi_frontend(cmd: CommandLine, cd: bool, ctrl: int, drive_bus: int, target: int, unit: int) -> dict:
    driver = "scsi-cd" if cd else "scsi-hd"
    model = next((c.get("model") for c in cmd.devices.findall("controller[@type='scsi']")
                  if int(c.get("index")) == ctrl), None)
    if model == "virtio-scsi":
        name = f"scsi{ctrl}-{drive_bus}-{target}-{unit}"
        return {"driver": driver, "bus": f"scsi{ctrl}.0", "channel": drive_bus, "scsi-id": target,
                "lun": unit, "device_id": f"drive-{name}", "id": name}
    name = f"scsi{ctrl}-{drive_bus}-{unit}"
    return {"driver": driver, "bus": f"scsi{ctrl}.0", "scsi-id": unit, "device_id": f"drive-{name}",
            "id": name}
