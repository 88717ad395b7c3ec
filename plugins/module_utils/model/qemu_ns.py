# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A domain's ``qemu:`` namespace: commandline, capabilities, override and deprecation.

Renders the sections from the qemu_override module's options, checks them
as libvirt does (types of override values, user aliases that name a device
of the domain, environment variable names), and lays them into a domain
definition in the order libvirt stores them, leaving the rest of the
definition alone.  Private to the collection.
"""

from __future__ import annotations

import copy
import re

from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import element, etree, to_string

QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
NS = {"qemu": QEMU_NS}
# The order in which libvirt 9 writes the sections.
SECTIONS = ("commandline", "capabilities", "override", "deprecation")
DEPRECATION_BEHAVIORS = ("none", "omit", "reject", "crash")
PROPERTY_TYPES = ("string", "signed", "unsigned", "bool", "remove")
# libvirt's schema: filter-param-name for environment variables, aliasName for aliases.
_ENV_NAME = re.compile(r"^[A-Za-z0-9_]+$")
_CAPABILITY = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
USER_ALIAS_PREFIX = "ua-"
# What libvirt parses signed and unsigned override values into.
INTEGER_RANGES = {"signed": (-(2 ** 63), 2 ** 63 - 1), "unsigned": (0, 2 ** 64 - 1)}
RANGE_NAMES = {"signed": "64-bit signed integer", "unsigned": "64-bit unsigned integer"}


def qname(tag: str) -> str:
    return f"{{{QEMU_NS}}}{tag}"


def sections_of(domain) -> dict[str, str]:
    """Each qemu: section of ``domain`` serialised, for comparison; absent ones are left out."""
    found = {}
    for name in SECTIONS:
        node = domain.find(f"qemu:{name}", NS)
        if node is not None:
            found[name] = to_string(node)
    return found


def edited(domain, sections: dict):
    """A copy of ``domain`` with the requested sections laid in.

    ``sections`` maps a section name to its module option: a dict with
    ``state`` (present or absent) and the section's fields; fields left out
    (None) keep what the definition has.
    """
    current = {name: domain.find(f"qemu:{name}", NS) for name in SECTIONS}
    wanted = dict(current)
    for name, option in sections.items():
        if option is None:
            continue
        if option.get("state", "present") == "absent":
            wanted[name] = None
        else:
            wanted[name] = _RENDER[name](option, current[name], domain)
    return _with_sections(domain, wanted)


def _with_sections(domain, sections: dict):
    """``domain`` rebuilt with the qemu: prefix declared on the root, as libvirt writes it, when it is used."""
    nsmap = {k: v for k, v in domain.nsmap.items() if v != QEMU_NS}
    if any(node is not None for node in sections.values()):
        nsmap["qemu"] = QEMU_NS
    root = etree.Element(domain.tag, dict(domain.attrib), nsmap=nsmap)
    root.text = domain.text
    for child in domain:
        if not (isinstance(child.tag, str) and child.tag.startswith(f"{{{QEMU_NS}}}")):
            root.append(copy.deepcopy(child))
    for name in SECTIONS:
        if sections[name] is not None:
            root.append(copy.deepcopy(sections[name]))
    etree.cleanup_namespaces(root)
    return root


# -- sections -----------------------------------------------------------------------
def _commandline(option: dict, current, domain):
    args = option.get("args")
    env = option.get("env")
    if args is None:
        args = [a.get("value") for a in _children(current, "arg")]
    if env is None:
        env = {e.get("name"): e.get("value") for e in _children(current, "env")}
    node = etree.Element(qname("commandline"), nsmap=NS)
    for index, arg in enumerate(args):
        if not isinstance(arg, str):
            raise InvalidInput(f"{arg!r} is not a string", f"commandline.args[{index}]")
        node.append(_el("arg", value=arg))
    for name, value in env.items():
        if not _ENV_NAME.match(str(name)):
            raise InvalidInput(f"{name!r} is not a valid environment variable name (letters, digits, _)",
                               "commandline.env")
        node.append(_el("env", name=name, value=None if value is None else str(value)))
    return node if len(node) else None


def _capabilities(option: dict, current, domain):
    node = etree.Element(qname("capabilities"), nsmap=NS)
    for kind in ("add", "del"):
        names = option.get(kind)
        if names is None:
            names = [c.get("capability") for c in _children(current, kind)]
        for index, name in enumerate(names):
            if not isinstance(name, str) or not _CAPABILITY.match(name):
                raise InvalidInput(f"{name!r} is not a capability name as libvirt spells them "
                                   "(lower case, digits, '-', '_', '.')", f"capabilities.{kind}[{index}]")
            node.append(_el(kind, capability=name))
    return node if len(node) else None


def _deprecation(option: dict, current, domain):
    behavior = option.get("behavior")
    if behavior is None:
        if current is None:
            raise InvalidInput("give behavior, one of " + ", ".join(DEPRECATION_BEHAVIORS), "deprecation.behavior")
        return current
    if behavior not in DEPRECATION_BEHAVIORS:
        raise InvalidInput(f"{behavior!r} is not one of {', '.join(DEPRECATION_BEHAVIORS)}", "deprecation.behavior")
    node = etree.Element(qname("deprecation"), nsmap=NS)
    node.set("behavior", behavior)
    return node


def _override(option: dict, current, domain):
    devices = option.get("devices")
    if devices is None:
        return current
    aliases = device_aliases(domain)
    node = etree.Element(qname("override"), nsmap=NS)
    seen: set[str] = set()
    for index, device in enumerate(devices):
        where = f"override.devices[{index}]"
        alias = device.get("alias") or ""
        _check_alias(alias, aliases, seen, where)
        seen.add(alias)
        entry = _el("device", alias=alias)
        frontend = etree.SubElement(entry, qname("frontend"))
        for number, prop in enumerate(device.get("properties") or []):
            frontend.append(_property(prop, f"{where}.properties[{number}]"))
        node.append(entry)
    return node if len(node) else None


def _check_alias(alias: str, aliases: set[str], seen: set[str], where: str) -> None:
    if not alias.startswith(USER_ALIAS_PREFIX):
        raise InvalidInput(f"{alias!r} is not a user alias; overrides name a device by the alias given "
                           f"in its <alias name='{USER_ALIAS_PREFIX}...'/>", f"{where}.alias")
    if alias not in aliases:
        known = ", ".join(sorted(a for a in aliases if a.startswith(USER_ALIAS_PREFIX))) or "none"
        raise InvalidInput(f"no device of the domain has alias {alias!r} (user aliases: {known})", f"{where}.alias")
    if alias in seen:
        raise InvalidInput(f"alias {alias!r} is given twice", f"{where}.alias")


def _property(prop: dict, where: str):
    name, ptype, value = prop.get("name"), prop.get("type"), prop.get("value")
    if not name:
        raise InvalidInput("a property needs a name", f"{where}.name")
    if ptype not in PROPERTY_TYPES:
        raise InvalidInput(f"{ptype!r} is not one of {', '.join(PROPERTY_TYPES)}", f"{where}.type")
    if ptype == "remove":
        if value is not None:
            raise InvalidInput("a property of type remove takes no value", f"{where}.value")
        return _el("property", name=name, type=ptype)
    if value is None:
        raise InvalidInput(f"property {name!r} of type {ptype} needs a value", f"{where}.value")
    return _el("property", name=name, type=ptype, value=property_value(ptype, value, f"{where}.value"))


def property_value(ptype: str, value, where: str) -> str:
    """The value as libvirt stores it, checked to parse as its type."""
    if ptype == "bool":
        text = {True: "true", False: "false"}.get(value, str(value)) if isinstance(value, bool) else str(value)
        if text not in ("true", "false"):
            raise InvalidInput(f"{value!r} is not a bool (true or false)", where)
        return text
    text = str(value)
    if ptype in ("signed", "unsigned"):
        if isinstance(value, bool) or not re.match(r"^[+-]?[0-9]+$", text.strip()):
            raise InvalidInput(f"{value!r} is not a {ptype} integer", where)
        number = int(text, 10)
        if ptype == "unsigned" and number < 0:
            raise InvalidInput(f"{value!r} is not an unsigned integer", where)
        low, high = INTEGER_RANGES[ptype]
        if not low <= number <= high:
            raise InvalidInput(f"{value!r} is out of range for type {ptype}, a {RANGE_NAMES[ptype]} "
                               f"({low} to {high}), as libvirt reads it", where)
        return str(number)
    return text


def device_aliases(domain) -> set[str]:
    return {a.get("name") for a in domain.iterfind("devices//alias") if a.get("name")}


_RENDER = {"commandline": _commandline, "capabilities": _capabilities, "override": _override,
           "deprecation": _deprecation}


def _el(tag: str, **attrib):
    node = element("x", **attrib)
    node.tag = qname(tag)
    return node


def _children(node, tag: str) -> list:
    return [] if node is None else node.findall(f"qemu:{tag}", NS)
