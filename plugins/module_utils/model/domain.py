# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""libvirt domain XML: comparison rules, normalisation and creation defaults.

Private to the collection.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.model import xmltree
from ansible_collections.virtops.qemu.plugins.module_utils.model.merge import (
    Rules,
    child_attr,
    first_key,
    merge,
    own_attr,
)
from ansible_collections.virtops.qemu.plugins.module_utils.model.units import xml_size_to_kib

# Machine aliases libvirt stores as the versioned name it resolves them to.
_MACHINE_FAMILIES = {"pc": "pc-i440fx-", "q35": "pc-q35-"}


def _same_machine(current: str, desired: str) -> bool:
    family = _MACHINE_FAMILIES.get(desired)
    return family is not None and current.startswith(family)


def _any_port(current: str, desired: str) -> bool:
    """Port -1 asks for any free port; the live definition shows the one picked."""
    return desired == "-1"


def _same_mac(current: str, desired: str) -> bool:
    return current.lower() == desired.lower()


DEVICES = "domain/devices"

# Device lists the user describes completely when they mention them at all;
# the others (controllers, input, video, memballoon…) libvirt adds itself.
USER_OWNED_LISTS = frozenset({
    f"{DEVICES}/disk", f"{DEVICES}/interface", f"{DEVICES}/graphics",
    f"{DEVICES}/serial", f"{DEVICES}/parallel", f"{DEVICES}/channel",
    f"{DEVICES}/filesystem", f"{DEVICES}/hostdev", f"{DEVICES}/redirdev",
    f"{DEVICES}/smartcard", f"{DEVICES}/tpm", f"{DEVICES}/watchdog",
    "domain/os/boot",
})

DOMAIN_RULES = Rules(
    identity={
        f"{DEVICES}/disk": child_attr("target", "dev"),
        f"{DEVICES}/interface": first_key(child_attr("mac", "address"), child_attr("alias", "name")),
        f"{DEVICES}/controller": own_attr("type", "index"),
        f"{DEVICES}/graphics": own_attr("type"),
        f"{DEVICES}/serial": child_attr("target", "port"),
        f"{DEVICES}/console": child_attr("target", "port"),
        f"{DEVICES}/channel": child_attr("target", "name"),
        f"{DEVICES}/filesystem": child_attr("target", "dir"),
        f"{DEVICES}/input": own_attr("type", "bus"),
        "domain/os/boot": own_attr("dev"),
        "domain/cpu/feature": own_attr("name"),
        "domain/clock/timer": own_attr("name"),
        "domain/seclabel": own_attr("model"),
    },
    owned=USER_OWNED_LISTS,
    equivalent={
        "domain/os/type@machine": _same_machine,
        f"{DEVICES}/interface/mac@address": _same_mac,
        f"{DEVICES}/graphics@port": _any_port,
    },
)


def parse_domain(text: str, option: str = "xml"):
    return xmltree.parse(text, "domain", option)


def normalise(domain):
    """Bring user XML to the units and spelling libvirt stores, in place."""
    for tag in ("memory", "currentMemory", "maxMemory"):
        node = domain.find(tag)
        if node is not None and (node.text or "").strip():
            node.text = str(xml_size_to_kib(node.text.strip(), node.get("unit")))
            node.set("unit", "KiB")
    for mac in domain.iterfind("devices/interface/mac"):
        if mac.get("address"):
            mac.set("address", mac.get("address").lower())
    return domain


def owned_lists_in(domain) -> set:
    """The user-owned lists a verbatim XML speaks about."""
    return {f"{DEVICES}/{child.tag}" for child in domain.iterfind("devices/*")
            if f"{DEVICES}/{child.tag}" in USER_OWNED_LISTS} | \
        ({"domain/os/boot"} if domain.find("os/boot") is not None else set())


def with_creation_defaults(domain, default_type: str = "kvm", features: Iterable[str] = ()):
    """What a brand-new definition needs besides what the user gave."""
    if not domain.get("type"):
        domain.set("type", default_type)
    if domain.find("memory") is None:
        xmltree.sub(domain, "memory", 1048576, unit="KiB")
    if domain.find("vcpu") is None:
        xmltree.sub(domain, "vcpu", 1)
    os_node = domain.find("os")
    if os_node is None:
        os_node = xmltree.sub(domain, "os")
    os_type = os_node.find("type")
    if os_type is None:
        os_type = xmltree.element("type")
        os_node.insert(0, os_type)
    if not (os_type.text or "").strip():
        os_type.text = "hvm"
    _add_features(domain, features)
    return domain


def _add_features(domain, names: Iterable[str]) -> None:
    node = domain.find("features")
    if node is None:
        node = xmltree.element("features")
        anchor = domain.find("os")
        if anchor is not None:
            anchor.addnext(node)
        else:
            domain.append(node)
    for name in names:
        if node.find(name) is None:
            xmltree.sub(node, name)
    if len(node) == 0:
        domain.remove(node)     # features the user only turned off


def settle_memory(domain, desired, option: str) -> None:
    """Keep currentMemory within memory, as libvirt does when it stores a definition.

    A currentMemory above memory that the user asked for is refused: libvirt
    would lower it and every later run would find a difference.  One that
    only stays from the current definition is lowered here, so the plan
    shows what libvirt will store.
    """
    memory, current = _kib(domain, "memory"), _kib(domain, "currentMemory")
    if memory is None or current is None or current <= memory:
        return
    if desired.find("currentMemory") is not None:
        raise InvalidInput(f"the current memory ({current} KiB) is larger than the memory ({memory} KiB); "
                           "it must be at most the memory", option)
    node = domain.find("currentMemory")
    node.text = str(memory)
    node.set("unit", "KiB")


def _kib(domain, tag: str) -> int | None:
    node = domain.find(tag)
    if node is None or not (node.text or "").strip():
        return None
    return xml_size_to_kib(node.text.strip(), node.get("unit"))


def sizing(domain) -> dict:
    """Memory in MiB (maximum and at boot) and the vCPUs the guest boots with."""
    memory = _kib(domain, "memory")
    current = _kib(domain, "currentMemory") or memory
    vcpu = domain.find("vcpu")
    count = int(vcpu.get("current") or (vcpu.text or "").strip() or 1) if vcpu is not None else 1
    return {"memory_mib": None if memory is None else memory // 1024,
            "current_memory_mib": None if current is None else current // 1024,
            "vcpus": count}


def interfaces(domain) -> list[dict]:
    """Each NIC as {mac, type, network, bridge, model, target}; None where the XML does not say."""
    found = []
    for iface in domain.iterfind("devices/interface"):
        source, mac = iface.find("source"), iface.find("mac")
        found.append({
            "mac": None if mac is None or not mac.get("address") else mac.get("address").lower(),
            "type": iface.get("type"),
            "network": None if source is None else source.get("network"),
            "bridge": None if source is None else source.get("bridge"),
            "model": _attribute(iface, "model", "type"),
            "target": _attribute(iface, "target", "dev"),
        })
    return found


def _attribute(parent, tag: str, name: str) -> str | None:
    node = parent.find(tag)
    return None if node is None else node.get(name)


def merge_domain(current, desired, owned_lists):
    return merge(current, desired, DOMAIN_RULES, owned_lists)


def pending_changes(live, persistent) -> list:
    """What of the persistent definition the running guest does not have yet.

    The same desired-subset comparison as for a user's request, minus what
    libvirt rewrites in the running definition at every start: the CPU check
    level, and a host-model CPU, which it expands to the host's model.
    """
    wanted = copy.deepcopy(persistent)
    cpu = wanted.find("cpu")
    if cpu is not None:
        cpu.attrib.pop("check", None)
        if cpu.get("mode") == "host-model":
            wanted.remove(cpu)
    return merge_domain(live, wanted, owned_lists_in(wanted)).changes


def disk_sources(domain) -> list:
    """(target dev, source description) of every disk that has a source.

    The description is {"path": file or block device} or {"pool", "volume"}.
    """
    found = []
    for disk in domain.iterfind("devices/disk"):
        target, source = disk.find("target"), disk.find("source")
        if source is None:
            continue
        if source.get("volume"):
            description = {"pool": source.get("pool"), "volume": source.get("volume")}
        elif source.get("file") or source.get("dev"):
            description = {"path": source.get("file") or source.get("dev")}
        else:
            continue
        found.append((None if target is None else target.get("dev"), description))
    return found
