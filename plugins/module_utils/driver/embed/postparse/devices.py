# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Device completion: the defaults libvirt fills into each device, the implicit controllers and devices it
adds, drive, USB and virtio-serial addresses (PCI addresses are pci.py's), and the devices the embedded
driver cannot run refused at define time."""

from __future__ import annotations

import copy
import random
from typing import TYPE_CHECKING

from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.postparse.common import (
    VIDEO_DEFAULTS,
    add_controller,
    controller,
    insert_before_address,
    int_attr,
    machine_family,
    set_default,
)
from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import etree

if TYPE_CHECKING:
    from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.caps import LaunchCaps

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

DEFAULT_SCSI_MODEL_ORDER = (("lsi", "lsilogic"), ("virtio-scsi-pci", "virtio-scsi"))

# USB devices in the order libvirt gives them root-hub ports.
_USB_DEVICE_PATHS = ("hub[@type='usb']", "disk/target[@bus='usb']/..", "input[@bus='usb']", "sound[@model='usb']",
                     "redirdev")

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


def complete_devices(dom: etree._Element, devices: etree._Element, machine: str, caps: LaunchCaps) -> None:
    """Fill in ``devices`` (the domain's <devices>) as libvirt's define does, all but PCI addresses."""
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
        set_default(disk, "device", "disk")
        if target.get("bus") is None:
            bus = next((b for p, b in _BUS_BY_PREFIX if dev.startswith(p)), None)
            if bus is None:
                raise InvalidInput(f"cannot guess the bus of disk {dev!r}", "devices/disk/target@bus")
            target.set("bus", bus)
        driver = disk.find("driver")
        if driver is None:
            driver = etree.Element("driver")
            disk.insert(0, driver)
        set_default(driver, "name", "qemu")
        if disk.get("type") != "volume":    # a volume's own format applies at start, as in libvirt
            set_default(driver, "type", "raw")
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


def _complete_controllers(devices, machine, caps):
    family = machine_family(machine)
    for ctrl in devices.findall("controller"):
        set_default(ctrl, "index", "0")
    root_model = "pcie-root" if family == "q35" else "pci-root"
    root = controller(devices, "pci", 0)
    if root is None:
        add_controller(devices, "pci", 0, root_model)
    elif root.get("model") is None:
        root.set("model", root_model)
    _default_usb(devices, family, caps)
    _usb_companions(devices)
    if family == "q35" and controller(devices, "sata", 0) is None:
        add_controller(devices, "sata", 0)
    for disk in devices.findall("disk"):
        address = disk.find("address[@type='drive']")
        bus = disk.find("target").get("bus")
        if address is None or bus not in _DRIVE_BUSES:
            continue
        if bus == "ide" and family == "q35":
            raise InvalidInput("IDE disks are not supported on q35 machines, use bus 'sata'",
                               "devices/disk/target@bus")
        index = int(address.get("controller", "0"))
        if controller(devices, bus, index) is None:
            add_controller(devices, bus, index)
    for ctrl in devices.findall("controller[@type='scsi']"):
        if ctrl.get("model") is None:
            ctrl.set("model", _default_scsi_model(caps))


def _default_usb(devices, family, caps):
    usb = controller(devices, "usb", 0)
    default = "qemu-xhci" if family == "q35" else "piix3-uhci"
    if usb is None:
        add_controller(devices, "usb", 0, default)
    elif usb.get("model") is None:
        usb.set("model", default)


def _usb_companions(devices: etree._Element) -> None:
    """UHCI companions of an ICH9 EHCI controller take ports 0-1, 2-3, 4-5 of its bus."""
    for ctrl in devices.findall("controller[@type='usb']"):
        model = ctrl.get("model") or ""
        ehci = devices.find(f"controller[@type='usb'][@model='ich9-ehci1'][@index='{ctrl.get('index')}']")
        if not model.startswith("ich9-uhci") or ehci is None or ctrl.find("master") is not None:
            continue
        insert_before_address(ctrl, etree.Element("master", startport=str(2 * (int(model[-1]) - 1))))


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
            insert_before_address(iface, etree.Element("model", type="rtl8139"))


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
            target = insert_before_address(serial, etree.Element("target"))
        set_default(target, "type", "isa-serial")
        set_default(target, "port", str(port))
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
            target = insert_before_address(console, etree.Element("target"))
        set_default(target, "type", "serial")
        set_default(target, "port", "0")


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
    used = {int_attr(a, "port", where) for c in channels for a in c.findall("address[@port]")
            if a.get("controller", "0") == "0" and a.get("bus", "0") == "0"}
    for channel in channels:
        address = channel.find("address")
        if address is None or address.get("port") is None:
            port = next(p for p in range(1, len(used) + 2) if p not in used)  # the lowest free port
            used.add(port)
            if address is None:
                address = etree.SubElement(channel, "address", type="virtio-serial", controller="0", bus="0")
            address.set("port", str(port))
        index = int_attr(address, "controller", "devices/channel/address@controller")
        if controller(devices, "virtio-serial", index) is None:
            add_controller(devices, "virtio-serial", index)


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
            target = insert_before_address(parallel, etree.Element("target"))
        set_default(target, "port", str(port))


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
            set_default(graphics, "socket", listen.get("socket"))
        if listen.get("type") != "address":
            continue
        if graphics.get("autoport") == "yes" or graphics.get("port") in (None, "-1"):
            graphics.set("port", "-1")
            graphics.set("autoport", "yes")
        else:
            set_default(graphics, "autoport", "no")


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
        for name, value in VIDEO_DEFAULTS.get(model.get("type"), {}).items():
            set_default(model, name, value)
        if position == 0 and model.get("type") != "none":
            set_default(model, "primary", "yes")


def _complete_memballoon(devices):
    if devices.find("memballoon") is None:
        devices.append(etree.Element("memballoon", model="virtio"))


def sort_devices(devices):
    rank = {tag: i for i, tag in enumerate(_DEVICE_ORDER)}
    children = [c for c in devices if isinstance(c.tag, str)]
    for child in children:
        devices.remove(child)
    for child in sorted(children, key=lambda c: rank.get(etree.QName(c).localname, len(rank))):
        devices.append(child)
