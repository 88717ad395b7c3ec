# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the post-parse steps and the command builder share: machine families, libvirt's sizes and CPU
lists, and small helpers that add and order elements the way libvirt writes them."""

from __future__ import annotations

from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.model.units import UNIT_FACTORS
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import etree

# Video models that are PCI devices, with the attributes libvirt fills in.
VIDEO_DEFAULTS = {
    "cirrus": {"vram": "16384", "heads": "1"},
    "vga": {"vram": "16384", "heads": "1"},
    "bochs": {"vram": "16384", "heads": "1"},
    "qxl": {"ram": "65536", "vram": "65536", "vgamem": "16384", "heads": "1"},
    "virtio": {"heads": "1"},
}


def machine_family(machine: str) -> str:
    """'q35' or 'i440fx' for a canonical machine name."""
    if machine == "q35" or machine.startswith("pc-q35-"):
        return "q35"
    if machine == "pc" or machine.startswith("pc-i440fx-"):
        return "i440fx"
    raise InvalidInput(f"machine type {machine!r} is not supported by the embedded driver "
                       "(pc-i440fx-* and pc-q35-* are)", "os/type@machine")


def to_kib(elem: etree._Element, option: str) -> int:
    """Value of a libvirt scaled-integer element in KiB."""
    unit = (elem.get("unit") or "KiB").lower()
    if unit not in UNIT_FACTORS:
        raise InvalidInput(f"unknown unit {elem.get('unit')!r}", option)
    try:
        value = int((elem.text or "").strip())
    except ValueError:
        raise InvalidInput(f"not an integer: {elem.text!r}", option) from None
    if value < 0:
        raise InvalidInput("must not be negative", option)
    return value * UNIT_FACTORS[unit] // 1024


def cpu_ranges(text: str, option: str) -> list[str]:
    """The runs of a libvirt CPU list ('0-3,^2,5') as libvirt formats them: ['0-1', '3', '5']."""
    cpus: set[int] = set()
    for item in text.replace(" ", "").split(","):
        exclude = item.startswith("^")
        first, _dash, last = item.lstrip("^").partition("-")
        if not first.isdigit() or not (last.isdigit() or not _dash) or (exclude and _dash):
            raise InvalidInput(f"malformed CPU list {text!r}", option)
        span = set(range(int(first), int(last or first) + 1))
        cpus = cpus - span if exclude else cpus | span
    if not cpus:
        raise InvalidInput(f"CPU list {text!r} names no CPU", option)
    runs: list[list[int]] = []
    for cpu in sorted(cpus):
        if runs and runs[-1][1] == cpu - 1:
            runs[-1][1] = cpu
        else:
            runs.append([cpu, cpu])
    return [f"{a}-{b}" if a != b else str(a) for a, b in runs]


def int_attr(elem: etree._Element, attr: str, option: str, default: str = "0") -> int:
    value = elem.get(attr, default)
    try:
        return int(value, 10)
    except ValueError:
        raise InvalidInput(f"{attr} {value!r} is not an integer", option) from None


def child(parent: etree._Element, tag: str, after: tuple[str, ...] = (),
          attrib: dict[str, str] | None = None) -> etree._Element:
    """Return parent's <tag>, creating it after the first existing sibling in ``after``."""
    found = parent.find(tag)
    if found is not None:
        return found
    new = etree.Element(tag, attrib or {})
    for name in after:
        anchor = parent.find(name)
        if anchor is not None:
            anchor.addnext(new)
            return new
    parent.append(new)
    return new


def insert_before_address(elem, new):
    """Insert ``new`` before <alias>/<address>, where libvirt keeps them last."""
    for tail in ("alias", "address"):
        anchor = elem.find(tail)
        if anchor is not None:
            anchor.addprevious(new)
            return new
    elem.append(new)
    return new


def set_default(elem: etree._Element, name: str, value: str) -> None:
    if elem.get(name) is None:
        elem.set(name, value)


def sort_children(parent: etree._Element, order: tuple[str, ...]) -> None:
    """Put known children in libvirt's order; unknown ones keep their place at the end."""
    rank = {tag: i for i, tag in enumerate(order)}
    children = [c for c in parent if isinstance(c.tag, str)]
    for elem in children:
        parent.remove(elem)
    for elem in sorted(children, key=lambda c: rank.get(c.tag, len(rank))):
        parent.append(elem)


def controller(devices, ctype, index):
    """The <controller> of this type and index, or None."""
    for ctrl in devices.findall(f"controller[@type='{ctype}']"):
        if int(ctrl.get("index", "0")) == index:
            return ctrl
    return None


def add_controller(devices, ctype, index, model=None):
    attrs = {"type": ctype, "index": str(index)}
    if model:
        attrs["model"] = model
    ctrl = etree.Element("controller", attrs)
    devices.append(ctrl)
    return ctrl
