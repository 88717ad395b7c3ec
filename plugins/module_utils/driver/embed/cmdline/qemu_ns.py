# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The domain's ``qemu:`` namespace on the command line: extra arguments and environment, capabilities,
deprecation behaviour and device property overrides; and the taints they bring."""

from __future__ import annotations

from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.cmdline.base import CommandLine, to_json
from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.model.qemu_ns import NS
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import etree

_DEPRECATION = {
    "none": None,
    "omit": {"deprecated-output": "hide"},
    "reject": {"deprecated-output": "hide", "deprecated-input": "reject"},
    "crash": {"deprecated-output": "hide", "deprecated-input": "crash"},
}
# Capabilities (libvirt's names) whose removal by <qemu:capabilities> changes this builder's output:
# compat-deprecated -> no -compat (libvirt ignores the deprecation setting without it), seccomp-sandbox ->
# no -sandbox.
MODELLED_CAPABILITIES = ("compat-deprecated", "seccomp-sandbox")
SANDBOX = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"


def taints(domain: etree._Element) -> list[str]:
    """libvirt's taint reasons that apply to this definition, in the order libvirt 9 notes them."""
    reasons = []
    if domain.find("qemu:commandline/qemu:arg", NS) is not None or \
            domain.find("qemu:commandline/qemu:env", NS) is not None:
        reasons.append("custom-argv")
    if domain.find("qemu:capabilities/*", NS) is not None:
        reasons.append("custom-hypervisor-feature")
    if domain.find("qemu:override/qemu:device", NS) is not None:
        reasons.append("custom-device")
    if domain.findtext("os/dtb"):
        reasons.append("custom-dtb")
    cpu = domain.find("cpu")
    if cpu is not None and cpu.get("mode") == "host-passthrough":
        reasons.append("host-cpu")
    return reasons


def namespace_capabilities(domain: etree._Element) -> dict[str, list[str]]:
    """The capability bits added/removed by <qemu:capabilities>."""
    caps = domain.find("qemu:capabilities", NS)
    found: dict[str, list[str]] = {"add": [], "del": []}
    if caps is None:
        return found
    for kind in ("add", "del"):
        for elem in caps.findall(f"qemu:{kind}", NS):
            name = elem.get("capability")
            if not name:
                raise InvalidInput(f"<qemu:{kind}> needs a capability attribute", "qemu:capabilities")
            found[kind].append(name)
    return found


def removed_capabilities(domain: etree._Element) -> set[str]:
    """The modelled capabilities <qemu:capabilities> removes; any capability not modelled is refused.

    QEMU 7.2 has both modelled ones, so adding them changes nothing.
    """
    found = namespace_capabilities(domain)
    for kind in ("add", "del"):
        unknown = [name for name in found[kind] if name not in MODELLED_CAPABILITIES]
        if unknown:
            raise InvalidInput(f"the embedded driver does not model capabilit{'y' if len(unknown) == 1 else 'ies'} "
                               f"{', '.join(unknown)}; it can add or remove only "
                               f"{', '.join(MODELLED_CAPABILITIES)}", f"qemu:capabilities/qemu:{kind}")
    return set(found["del"])


def compat(cmd: CommandLine, removed: set[str]) -> None:
    """-compat for <qemu:deprecation>, unless the compat-deprecated capability is removed."""
    deprecation = cmd.dom.find("qemu:deprecation", NS)
    if deprecation is None:
        return
    behavior = deprecation.get("behavior")
    if behavior not in _DEPRECATION:
        raise InvalidInput(f"unknown behavior {behavior!r}", "qemu:deprecation")
    policy = _DEPRECATION[behavior]
    if policy and "compat-deprecated" not in removed:
        cmd.add("-compat", to_json(policy))


def sandbox(conf: dict, removed: set[str]) -> list[str]:
    """-sandbox as qemu.conf's seccomp_sandbox asks, unless the seccomp-sandbox capability is removed."""
    if str(conf.get("seccomp_sandbox", 1)) != "0" and "seccomp-sandbox" not in removed:
        return ["-sandbox", SANDBOX]
    return []


def custom_args(domain: etree._Element) -> list[str]:
    """The <qemu:arg> values, appended after everything the driver emits."""
    args = []
    for arg in domain.findall("qemu:commandline/qemu:arg", NS):
        if arg.get("value") is None:
            raise InvalidInput("<qemu:arg> needs a value attribute", "qemu:commandline/qemu:arg")
        args.append(arg.get("value"))
    return args


def custom_env(domain: etree._Element) -> dict[str, str]:
    """The <qemu:env> variables, which may replace the driver's own."""
    env = {}
    for var in domain.findall("qemu:commandline/qemu:env", NS):
        name = var.get("name")
        if not name or not (name[0].isalpha() or name[0] == "_") or not all(
                c.isalnum() or c == "_" for c in name):
            raise InvalidInput(f"invalid environment variable name {name!r}", "qemu:commandline/qemu:env")
        env[name] = var.get("value", "")
    return env


def apply_overrides(cmd: CommandLine) -> None:
    """<qemu:override> frontend properties, applied to the -device props before they are serialised."""
    for device in cmd.dom.findall("qemu:override/qemu:device", NS):
        alias = device.get("alias")
        props = cmd.device_args.get(alias)
        if props is None:
            raise InvalidInput(f"no device with alias {alias!r} to override", "qemu:override/qemu:device@alias")
        for prop in device.findall("qemu:frontend/qemu:property", NS):
            _override_property(props, prop, alias)


def _override_property(props: dict, prop: etree._Element, alias: str) -> None:
    name, ptype, value = prop.get("name"), prop.get("type"), prop.get("value")
    where = "qemu:override/qemu:device/qemu:frontend/qemu:property"
    if not name:
        raise InvalidInput("a property needs a name", where)
    if ptype == "remove":
        if name not in props:
            raise InvalidInput(f"device {alias!r} has no property {name!r} to remove", where)
        del props[name]
        return
    if value is None:
        raise InvalidInput(f"property {name!r} needs a value", where)
    if ptype == "string":
        props[name] = value
    elif ptype in ("signed", "unsigned"):
        props[name] = _integer(name, value, ptype, where)
    elif ptype == "bool":
        if value not in ("true", "false"):
            raise InvalidInput(f"property {name!r}: bool must be 'true' or 'false', not {value!r}", where)
        props[name] = value == "true"
    else:
        raise InvalidInput(f"property {name!r}: unknown type {ptype!r}", where)


def _integer(name: str, value: str, ptype: str, where: str) -> int:
    try:
        number = int(value, 10)
    except ValueError:
        raise InvalidInput(f"property {name!r}: {value!r} is not an integer", where) from None
    if ptype == "unsigned" and number < 0:
        raise InvalidInput(f"property {name!r}: {value!r} is not unsigned", where)
    return number
