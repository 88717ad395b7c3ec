# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The other devices: IOMMU, USB hubs and redirection, watchdogs, the balloon, RNGs, vmcoreinfo,
panic notifiers, shared memory and vsock."""

from __future__ import annotations

from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.cmdline import chardev
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.cmdline.base import (
    CommandLine,
    alias,
    to_json,
    yes,
)
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.postparse.common import to_kib
from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import etree

_WATCHDOG_ACTIONS = ("reset", "shutdown", "poweroff", "pause", "none", "inject-nmi")


def iommu(cmd: CommandLine) -> None:
    elem = cmd.devices.find("iommu")
    if elem is None:
        return
    if elem.get("model") != "intel" or cmd.family != "q35":
        raise InvalidInput("only the intel IOMMU on q35 machines is supported by the embedded driver",
                           "devices/iommu@model")
    props: dict = {"driver": "intel-iommu", "id": alias(elem, "iommu0")}
    driver = elem.find("driver")
    attrs = driver.attrib if driver is not None else {}
    for attr in ("intremap", "eim"):  # on/off/auto switches in QEMU
        if attrs.get(attr):
            props[attr] = attrs[attr]
    for attr, prop in (("caching_mode", "caching-mode"), ("iotlb", "device-iotlb")):
        if attrs.get(attr):
            props[prop] = yes(attrs[attr])
    if attrs.get("aw_bits"):
        props["aw-bits"] = int(attrs["aw_bits"])
    cmd.add_device(props)


def hubs(cmd: CommandLine) -> None:
    for number, hub in enumerate(cmd.devices.findall("hub")):
        if hub.get("type") != "usb":
            raise InvalidInput(f"hub type {hub.get('type')!r} is not supported", "devices/hub@type")
        cmd.add_device(cmd.usb(hub, {"driver": "usb-hub", "id": alias(hub, f"hub{number}")}))


def watchdogs(cmd: CommandLine) -> None:
    for number, watchdog in enumerate(cmd.devices.findall("watchdog")):
        model = watchdog.get("model")
        props = {"driver": model, "id": alias(watchdog, f"watchdog{number}")}
        if model == "i6300esb":
            cmd.add_device(cmd.pci(watchdog, props))
        elif model == "ib700":
            cmd.add_device(props)
        else:
            raise InvalidInput(f"watchdog model {model!r} is not supported by the embedded driver",
                               "devices/watchdog@model")
        action = watchdog.get("action", "reset")
        if action not in _WATCHDOG_ACTIONS:
            raise InvalidInput(f"watchdog action {action!r} is not supported by the embedded driver "
                               f"(dump needs a daemon to write the core)", "devices/watchdog@action")
        cmd.add("-watchdog-action", action)


def redirdevs(cmd: CommandLine) -> None:
    for number, redir in enumerate(cmd.devices.findall("redirdev")):
        if redir.get("bus", "usb") != "usb":
            raise InvalidInput("only USB redirection is supported", "devices/redirdev@bus")
        ident = f"charredir{number}"
        cmd.add("-chardev", chardev.backend(redir, ident, "devices/redirdev", spice_name="usbredir"))
        cmd.add_device(cmd.usb(redir, {"driver": "usb-redir", "chardev": ident,
                                       "id": alias(redir, f"redir{number}")}))


def balloon(cmd: CommandLine) -> None:
    elem = cmd.devices.find("memballoon")
    if elem is None or elem.get("model") == "none":
        return
    if elem.get("model") != "virtio":
        raise InvalidInput(f"memballoon model {elem.get('model')!r} is not supported", "devices/memballoon@model")
    props: dict = {"driver": "virtio-balloon-pci", "id": alias(elem, "balloon0")}
    for attr, prop in (("autodeflate", "deflate-on-oom"), ("freePageReporting", "free-page-reporting")):
        if elem.get(attr):
            props[prop] = yes(elem.get(attr))
    cmd.add_device(cmd.pci(elem, props))


def rngs(cmd: CommandLine) -> None:
    for number, rng in enumerate(cmd.devices.findall("rng")):
        if rng.get("model") != "virtio":
            raise InvalidInput(f"rng model {rng.get('model')!r} is not supported", "devices/rng@model")
        backend = _rng_backend(cmd, rng.find("backend"), number)
        backend["id"] = f"objrng{number}"
        cmd.add("-object", to_json(backend))
        props = {"driver": "virtio-rng-pci", "rng": backend["id"], "id": alias(rng, f"rng{number}")}
        rate = rng.find("rate")
        if rate is not None and rate.get("bytes"):
            props["max-bytes"] = int(rate.get("bytes"))
            props["period"] = int(rate.get("period", "1000"))
        cmd.add_device(cmd.pci(rng, props))


def _rng_backend(cmd: CommandLine, backend: etree._Element | None, number: int) -> dict:
    if backend is None:
        raise InvalidInput("rng backend None is not supported", "devices/rng/backend@model")
    model = backend.get("model")
    if model == "random":
        return {"qom-type": "rng-random", "filename": (backend.text or "").strip() or "/dev/urandom"}
    if model == "builtin":
        return {"qom-type": "rng-builtin"}
    if model == "egd":
        ident = f"charrng{number}"
        cmd.add("-chardev", chardev.backend(backend, ident, "devices/rng/backend"))
        return {"qom-type": "rng-egd", "chardev": ident}
    raise InvalidInput(f"rng backend {model!r} is not supported", "devices/rng/backend@model")


def vmcoreinfo(cmd: CommandLine) -> None:
    if cmd.dom.find("features/vmcoreinfo[@state='off']") is None and \
            cmd.dom.find("features/vmcoreinfo") is not None:
        cmd.add("-device", to_json({"driver": "vmcoreinfo"}))


def panics(cmd: CommandLine) -> None:
    for panic in cmd.devices.findall("panic"):
        if panic.get("model", "isa") != "isa":
            raise InvalidInput(f"panic model {panic.get('model')!r} is not supported", "devices/panic@model")
        props: dict = {"driver": "pvpanic"}
        address = panic.find("address[@type='isa']")
        if address is not None and address.get("iobase"):
            props["ioport"] = int(address.get("iobase"), 0)
        cmd.add_anonymous_device(props)  # libvirt names none, so qemu:override cannot reach it


def shmems(cmd: CommandLine) -> None:
    for number, shmem in enumerate(cmd.devices.findall("shmem")):
        model = shmem.find("model")
        if model is not None and model.get("type") != "ivshmem-plain":
            raise InvalidInput(f"shmem model {model.get('type')!r} needs ivshmem-server, which the embedded "
                               "driver does not run", "devices/shmem/model@type")
        size = shmem.find("size")
        backend = {"qom-type": "memory-backend-file", "id": f"shmmem-shmem{number}",
                   "mem-path": f"/dev/shm/{shmem.get('name')}",
                   "size": to_kib(size, "devices/shmem/size") * 1024 if size is not None else 4 << 20,
                   "share": True}
        cmd.add("-object", to_json(backend))
        props = {"driver": "ivshmem-plain", "id": alias(shmem, f"shmem{number}"), "memdev": backend["id"]}
        cmd.add_device(cmd.pci(shmem, props))


def vsocks(cmd: CommandLine) -> None:
    for vsock in cmd.devices.findall("vsock"):
        cid = vsock.find("cid")
        if cid is None or cid.get("address") is None or yes(cid.get("auto", "no")):
            raise InvalidInput("the embedded driver needs a fixed guest CID: <cid auto='no' address='N'/>",
                               "devices/vsock/cid")
        props = {"driver": "vhost-vsock-pci", "id": alias(vsock, "vsock0"), "guest-cid": int(cid.get("address"))}
        cmd.add_device(cmd.pci(vsock, props))
