# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Name the module option behind a place of a definition rendered from structured options.

A definition is checked as a whole (libvirt's schema, the driver), so a
fault is found at a place of the XML: ``/network/bridge`` and its attribute
``name``.  Users wrote options, so the fault is reported at the option that
rendered that place (``bridge.name``).  Each kind has a table of which
option renders which place; ``[]`` marks a list, whose position in the XML
is the position in the option's list.  A place of the merged definition is
first traced back to the rendered one: the element of the same tags whose
attributes and text it holds.  Private to the collection.
"""

from __future__ import annotations

import re

from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import XmlNode

# "ip[]/dhcp/range[]@start" -> "ips[].dhcp.ranges[].start"; "" is the root element, "@type" its attribute.
Table = dict[str, str]
_STEP = re.compile(r"^(?P<tag>[^\[\]@]+)(?:\[(?P<index>\d+)\])?$")


def option_at(table: Table, path: str, attribute: str | None = None) -> str | None:
    """The option that renders ``path`` (an XPath such as /domain/devices/interface[2]/mac), or None."""
    steps = _steps(path)
    if steps is None:
        return None
    best: tuple[int, str] | None = None
    for key, option in table.items():
        found = _match(key, option, steps, attribute)
        if found is not None and (best is None or found[0] > best[0]):
            best = found
    return None if best is None else best[1]


def _steps(path: str) -> list[tuple[str, int]] | None:
    """(tag, 1-based position) of each step below the root; None for a path that is not a plain element path."""
    parts = [part for part in path.split("/") if part][1:]
    steps = []
    for part in parts:
        step = _STEP.match(part)
        if step is None:
            return None
        steps.append((step.group("tag"), int(step.group("index") or 1)))
    return steps


def _match(key: str, option: str, steps: list[tuple[str, int]], attribute: str | None) -> tuple[int, str] | None:
    """(score, option path) when ``key`` covers the place; a longer key, then one naming the attribute, wins."""
    place, _at, key_attribute = key.partition("@")
    pattern = [part for part in place.split("/") if part]
    if len(pattern) > len(steps):
        return None
    if key_attribute and (key_attribute != attribute or len(pattern) != len(steps)):
        return None
    positions = []
    for want, (tag, position) in zip(pattern, steps[:len(pattern)], strict=True):
        if want.removesuffix("[]") != tag:
            return None
        if want.endswith("[]"):
            positions.append(position - 1)
    for position in positions:
        option = option.replace("[]", f"[{position}]", 1)
    return 2 * len(pattern) + bool(key_attribute), option


def rendered_place(rendered: XmlNode, node: XmlNode) -> str | None:
    """The path in ``rendered`` of the element that ``node`` (of a merged definition) came from, or None.

    It is the element at the same tags whose attributes and text ``node``
    holds; of several, the one at the same position among its siblings.
    """
    tags = [parent.tag for parent in reversed(list(node.iterancestors()))] + [node.tag]
    if tags[0] != rendered.tag:
        return None
    candidates = [rendered] if len(tags) == 1 else rendered.findall("/".join(tags[1:]))
    holding = [candidate for candidate in candidates if _holds(node, candidate)]
    if not holding:
        return None
    same_position = [c for c in holding if _position(c) == _position(node)]
    return rendered.getroottree().getpath((same_position or holding)[0])


def _holds(node: XmlNode, rendered: XmlNode) -> bool:
    text = (rendered.text or "").strip()
    return all(node.get(name) == value for name, value in rendered.attrib.items()) and \
        text in ("", (node.text or "").strip())


def _position(node: XmlNode) -> int:
    parent = node.getparent()
    return 0 if parent is None else [c for c in parent if c.tag == node.tag].index(node)


def locator(table: Table, rendered: XmlNode | None):
    """A function (element of the checked definition, attribute name or None) -> option path or None."""
    def locate(node: XmlNode, attribute: str | None) -> str | None:
        if rendered is None or node is None:
            return None
        place = rendered_place(rendered, node)
        return None if place is None else option_at(table, place, attribute)
    return locate


def named(error: InvalidInput, table: Table, rendered: XmlNode | None, verbatim: bool, root: str) -> InvalidInput:
    """A driver's refusal at a place of the definition (``os/type@machine``), named the way the user wrote it.

    From structured options: the option that rendered the place; from
    ``xml``, or where no option did, the place as an XPath.
    """
    fallback = "xml" if verbatim else "options"
    if error.option in (None, "xml"):
        return InvalidInput(error.reason, fallback)
    steps, attribute = _place(error.option, root)
    option = None
    if not verbatim and rendered is not None and steps is not None:
        option = _option_of_place(table, rendered, steps, attribute)
    if option:
        return InvalidInput(error.reason, option)
    return InvalidInput(f"{_xpath(error.option, steps, attribute, root)}: {error.reason}", fallback)


def _place(place: str, root: str) -> tuple[list[str] | None, str | None]:
    """The steps below the root and the attribute of a driver's place; None steps for one with predicates."""
    if "[" in place or "*" in place:
        return None, None
    path, _at, attribute = place.rpartition("@") if "@" in place else (place, "", "")
    steps = [step for step in path.split("/") if step]
    return (steps[1:] if steps[:1] == [root] else steps), attribute or None


def _option_of_place(table: Table, rendered: XmlNode, steps: list[str], attribute: str | None) -> str | None:
    found = rendered.findall("/".join(steps)) if steps else [rendered]
    if len(found) != 1:     # absent from what was rendered, or ambiguous
        return None
    return option_at(table, rendered.getroottree().getpath(found[0]), attribute)


def _xpath(place: str, steps: list[str] | None, attribute: str | None, root: str) -> str:
    if steps is None:
        return f"/{root}/{place}"
    return "/".join([f"/{root}", *steps] + ([f"@{attribute}"] if attribute else []))


# -- what each kind's structured options render --------------------------------------------
DOMAIN: Table = {
    "@type": "type", "name": "name", "title": "title", "description": "description",
    "memory": "memory", "currentMemory": "current_memory", "vcpu": "vcpus",
    "os@firmware": "firmware", "os/type@arch": "arch", "os/type@machine": "machine",
    "os/kernel": "kernel.path", "os/initrd": "kernel.initrd", "os/cmdline": "kernel.cmdline", "os/dtb": "kernel.dtb",
    "os/boot[]": "boot_order[]",
    "cpu": "cpu", "cpu@mode": "cpu.mode", "cpu/model": "cpu.model",
    "features": "features",
    "clock": "clock", "clock@offset": "clock.offset", "clock/timer[]": "clock.timers[]",
    "clock/timer[]@name": "clock.timers[].name", "clock/timer[]@tickpolicy": "clock.timers[].tickpolicy",
    "clock/timer[]@present": "clock.timers[].present",
    "on_poweroff": "on_poweroff", "on_reboot": "on_reboot", "on_crash": "on_crash",
    "devices/disk[]": "disks[]", "devices/disk[]@type": "disks[].type", "devices/disk[]@device": "disks[].device",
    "devices/disk[]/driver@type": "disks[].format", "devices/disk[]/driver@cache": "disks[].cache",
    "devices/disk[]/source": "disks[].path", "devices/disk[]/source@pool": "disks[].pool",
    "devices/disk[]/source@volume": "disks[].volume", "devices/disk[]/target@dev": "disks[].target",
    "devices/disk[]/target@bus": "disks[].bus", "devices/disk[]/readonly": "disks[].readonly",
    "devices/interface[]": "interfaces[]", "devices/interface[]@type": "interfaces[].type",
    "devices/interface[]/mac": "interfaces[].mac", "devices/interface[]/source": "interfaces[].source",
    "devices/interface[]/source@portgroup": "interfaces[].portgroup",
    "devices/interface[]/model": "interfaces[].model",
    "devices/graphics": "graphics", "devices/graphics@type": "graphics.type", "devices/graphics@port": "graphics.port",
    "devices/graphics@autoport": "graphics.port", "devices/graphics@listen": "graphics.listen",
    "devices/graphics@passwd": "graphics.password",
    "devices/serial[]": "serials[]", "devices/serial[]@type": "serials[].type",
    "devices/serial[]/source": "serials[].path",
}

NETWORK: Table = {
    "name": "name",
    "forward": "forward", "forward@mode": "forward.mode", "forward@dev": "forward.dev",
    "forward/nat": "forward.nat_ports", "forward/nat/port@start": "forward.nat_ports.start",
    "forward/nat/port@end": "forward.nat_ports.end",
    "bridge": "bridge", "bridge@name": "bridge.name", "bridge@stp": "bridge.stp", "bridge@delay": "bridge.delay",
    "bridge@macTableManager": "bridge.mac_table_manager", "mtu": "bridge.mtu",
    "mac": "mac",
    "domain": "domain", "domain@name": "domain.name", "domain@localOnly": "domain.local_only",
    "dns": "dns",
    "dns/forwarder[]": "dns.forwarders[]", "dns/forwarder[]@addr": "dns.forwarders[].addr",
    "dns/forwarder[]@domain": "dns.forwarders[].domain",
    "dns/txt[]": "dns.txt[]", "dns/txt[]@name": "dns.txt[].name", "dns/txt[]@value": "dns.txt[].value",
    "dns/host[]": "dns.hosts[]", "dns/host[]@ip": "dns.hosts[].ip", "dns/host[]/hostname[]": "dns.hosts[].hostnames[]",
    "dns/srv[]": "dns.srv[]", "dns/srv[]@service": "dns.srv[].service", "dns/srv[]@protocol": "dns.srv[].protocol",
    "dns/srv[]@domain": "dns.srv[].domain", "dns/srv[]@target": "dns.srv[].target",
    "dns/srv[]@port": "dns.srv[].port", "dns/srv[]@priority": "dns.srv[].priority",
    "dns/srv[]@weight": "dns.srv[].weight",
    "ip[]": "ips[]", "ip[]@address": "ips[].address", "ip[]@prefix": "ips[].prefix", "ip[]@family": "ips[].family",
    "ip[]/dhcp": "ips[].dhcp",
    "ip[]/dhcp/range[]": "ips[].dhcp.ranges[]", "ip[]/dhcp/range[]@start": "ips[].dhcp.ranges[].start",
    "ip[]/dhcp/range[]@end": "ips[].dhcp.ranges[].end", "ip[]/dhcp/range[]/lease": "ips[].dhcp.ranges[].lease_time",
    "ip[]/dhcp/host[]": "ips[].dhcp.hosts[]", "ip[]/dhcp/host[]@mac": "ips[].dhcp.hosts[].mac",
    "ip[]/dhcp/host[]@name": "ips[].dhcp.hosts[].name", "ip[]/dhcp/host[]@ip": "ips[].dhcp.hosts[].ip",
    "ip[]/dhcp/host[]/lease": "ips[].dhcp.hosts[].lease_time",
    "portgroup[]": "portgroups[]", "portgroup[]@name": "portgroups[].name",
    "portgroup[]@default": "portgroups[].default", "portgroup[]/vlan": "portgroups[].vlan_tag",
}

POOL: Table = {
    "@type": "type", "name": "name",
    "source": "source", "source/host[]": "source.hosts[]", "source/host[]@name": "source.hosts[].name",
    "source/host[]@port": "source.hosts[].port", "source/device[]": "source.devices[]",
    "source/dir": "source.dir", "source/name": "source.name", "source/format": "source.format",
    "source/initiator": "source.initiator", "source/auth": "source.auth", "source/auth@type": "source.auth.type",
    "source/auth@username": "source.auth.username", "source/auth/secret": "source.auth.usage",
    "target": "target", "target/path": "target.path", "target/permissions/mode": "target.mode",
    "target/permissions/owner": "target.owner", "target/permissions/group": "target.group",
}
