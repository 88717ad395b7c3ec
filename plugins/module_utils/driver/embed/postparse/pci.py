# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""PCI planning: the addresses libvirt's QEMU driver gives new PCI devices, and the root ports and
bridges it adds for them on q35."""

from __future__ import annotations

from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.postparse.common import (
    VIDEO_DEFAULTS,
    add_controller,
    controller,
    machine_family,
    set_default,
)
from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import etree

# Devices QEMU exposes as PCI Express endpoints; everything else on a q35
# machine is conventional PCI and needs a pcie-to-pci-bridge.
_PCIE_NET_MODELS = ("virtio", "virtio-transitional", "virtio-non-transitional", "e1000e")
_PCIE_USB_MODELS = ("qemu-xhci", "nec-xhci")
_PCI_SOUND_MODELS = ("ich6", "ich9", "ac97", "es1370")
# PCI function of each member of an EHCI controller and its UHCI companions (one slot).
_USB_GROUP_FUNCTIONS = {"ich9-ehci1": 7, "ich9-uhci1": 0, "ich9-uhci2": 1, "ich9-uhci3": 2}
_PCIE_SCSI_MODELS = ("virtio-scsi", "virtio-transitional", "virtio-non-transitional")


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
        ide = controller(self.devices, "ide", 0)
        usb = controller(self.devices, "usb", 0)
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
        sata = controller(self.devices, "sata", 0)
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
        if video.find("model").get("type") not in VIDEO_DEFAULTS:
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
            if vtype in VIDEO_DEFAULTS:
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
        ctrl = add_controller(self.devices, "pci", index, model)
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
                set_default(target, "chassisNr", index)
                continue
            set_default(target, "chassis", index)
            address = ctrl.find("address[@type='pci']")
            if address is not None and target.get("port") is None:
                port = (_int(address.get("slot", "0")) << 3) | _int(address.get("function", "0"))
                target.set("port", f"0x{port:x}")

    def _set_multifunction(self):
        for elem, bus, slot, function in self.assigned:
            if function == 0 and len(bus.used.get(slot, ())) > 1:
                set_default(elem.find("address"), "multifunction", "on")


def _canonical_pci_address(address, bus, slot, function):
    """Spell an existing address the way libvirt formats it; the values stay."""
    address.set("domain", f"0x{_int(address.get('domain', '0')):04x}")
    address.set("bus", f"0x{bus:02x}")
    address.set("slot", f"0x{slot:02x}")
    address.set("function", f"0x{function:x}")


def _int(text):
    return int(text, 0)
