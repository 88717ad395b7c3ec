# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Firmware auto-selection from QEMU's firmware descriptors, as libvirt 9.0 does it.

QEMU packages describe their firmware images in JSON files (QEMU's
``docs/interop/firmware.json``) under ``/usr/share/qemu/firmware`` and
``/etc/qemu/firmware``; an unprivileged user's
``$XDG_CONFIG_HOME/qemu/firmware`` comes last.  A file overrides the file of
the same name in an earlier directory, an empty file hides it, and the
descriptors are tried in the order of their file names.

libvirt 9.0 keeps ``<os firmware='efi'>`` as written when a domain is
defined and picks the firmware when the domain starts: ``fill`` does that
to the live definition (``<loader>``, ``<nvram>``, the SMM feature), so the
command builder only ever sees an explicit loader.
"""

from __future__ import annotations

import fnmatch
import json
import os
from dataclasses import dataclass

from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import etree

SYSTEM_DIRS = ("/usr/share/qemu/firmware", "/etc/qemu/firmware")
# the <os><firmware><feature> names libvirt knows, in the order it writes them
REQUESTABLE_FEATURES = ("enrolled-keys", "secure-boot")
_INTERFACES = {"efi": "uefi", "bios": "bios"}


@dataclass(frozen=True)
class Descriptor:
    """The parts of one firmware descriptor that selection uses."""

    path: str
    interfaces: tuple[str, ...]
    device: str                     # flash, memory or kernel
    executable: str
    nvram_template: str | None
    targets: tuple[tuple[str, tuple[str, ...]], ...]
    features: frozenset[str]
    mode: str = "split"
    formats: tuple[str, ...] = ()    # of the executable and the NVRAM template

    def supports(self, arch: str, machine: str) -> bool:
        return any(arch == target_arch and any(fnmatch.fnmatchcase(machine, glob) for glob in globs)
                   for target_arch, globs in self.targets)


def search_dirs(privileged: bool | None = None) -> list[str]:
    """Descriptor directories, lowest priority first."""
    dirs = list(SYSTEM_DIRS)
    if privileged is None:
        privileged = os.geteuid() == 0
    if not privileged:
        # as libvirt: a root process does not read root's home
        config_home = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
        dirs.append(os.path.join(config_home, "qemu", "firmware"))
    return dirs


def descriptor_paths(dirs: list[str] | tuple[str, ...]) -> list[str]:
    """The descriptor files in force, in selection order (by file name)."""
    chosen: dict[str, str] = {}
    for directory in dirs:
        try:
            names = os.listdir(directory)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in names:
            path = os.path.join(directory, name)
            if name.startswith(".") or not name.endswith(".json") or not os.path.isfile(path):
                continue
            chosen[name] = path
    return [chosen[name] for name in sorted(chosen) if os.path.getsize(chosen[name]) > 0]


def load(path: str) -> Descriptor:
    """Parse one descriptor; a malformed one is an error naming the file."""
    try:
        with open(path, encoding="utf-8") as handle:
            doc = json.load(handle)
        mapping = doc["mapping"]
        device = mapping["device"]
        executable, template = _mapping_files(mapping, device)
        formats = tuple(mapping[key].get("format", "raw") for key in ("executable", "nvram-template")
                        if device == "flash" and key in mapping)
        targets = tuple((t["architecture"], tuple(t.get("machines", ()))) for t in doc.get("targets", ()))
        return Descriptor(path=path, interfaces=tuple(doc.get("interface-types", ())), device=device,
                          executable=executable, nvram_template=template, targets=targets,
                          features=frozenset(doc.get("features", ())), mode=mapping.get("mode", "split"),
                          formats=formats)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(f"cannot read firmware descriptor {path}: {exc}", "os@firmware") from exc


def _mapping_files(mapping: dict, device: str) -> tuple[str, str | None]:
    if device == "flash":
        template = mapping.get("nvram-template")
        return mapping["executable"]["filename"], template["filename"] if template else None
    return mapping["filename"], None


def requested_features(domain) -> dict[str, bool]:
    """<os><firmware><feature enabled name/> as a name -> wanted map."""
    return {f.get("name"): f.get("enabled") == "yes" for f in domain.findall("os/firmware/feature")}


def matches(desc: Descriptor, domain) -> bool:
    """Whether ``desc`` satisfies the domain, by libvirt 9.0's rules."""
    os_elem = domain.find("os")
    ostype = os_elem.find("type")
    if _INTERFACES.get(os_elem.get("firmware", "")) not in desc.interfaces:
        return False
    if not desc.supports(ostype.get("arch"), ostype.get("machine")):
        return False
    if not _pm_supported(desc, domain):
        return False
    has = {"secure-boot": "secure-boot" in desc.features, "enrolled-keys": "enrolled-keys" in desc.features}
    if any(has[name] != wanted for name, wanted in requested_features(domain).items() if name in has):
        return False
    loader = os_elem.find("loader")
    if loader is not None and loader.get("secure") == "yes" and "requires-smm" not in desc.features:
        return False
    return desc.device != "flash" or desc.mode == "split"


def _pm_supported(desc: Descriptor, domain) -> bool:
    for tag, feature in (("suspend-to-mem", "acpi-s3"), ("suspend-to-disk", "acpi-s4")):
        elem = domain.find(f"pm/{tag}")
        if elem is not None and elem.get("enabled") == "yes" and feature not in desc.features:
            return False
    return True


def select(domain, dirs: list[str] | tuple[str, ...] | None = None) -> Descriptor | None:
    """The first descriptor that satisfies the domain's <os firmware>, or None."""
    for path in descriptor_paths(search_dirs() if dirs is None else dirs):
        desc = load(path)
        if matches(desc, domain):
            return desc
    return None


def fill(domain, nvram_path: str, dirs: list[str] | tuple[str, ...] | None = None) -> None:
    """Resolve <os firmware> in a live definition the way libvirt 9.0 does at start.

    ``nvram_path`` is the vars file used when the definition names none.
    An old-style read-only pflash loader without a vars template and without
    an existing vars file gets its template from the descriptor of that
    loader, when one exists.
    """
    os_elem = domain.find("os")
    kind = os_elem.get("firmware")
    if kind is None:
        _fill_old_style(domain, nvram_path, dirs)
        return
    desc = select(domain, dirs)
    if desc is None:
        ostype = os_elem.find("type")
        raise InvalidInput(f"no firmware descriptor satisfies {kind!r} for {ostype.get('arch')} machine "
                           f"{ostype.get('machine')} (searched {', '.join(search_dirs() if dirs is None else dirs)})",
                           "os@firmware")
    _apply(domain, desc, nvram_path)
    del os_elem.attrib["firmware"]
    for features in os_elem.findall("firmware"):
        os_elem.remove(features)


def _fill_old_style(domain, nvram_path: str, dirs) -> None:
    loader = domain.find("os/loader")
    if loader is None or loader.get("type") != "pflash" or loader.get("readonly") != "yes":
        return
    nvram = domain.find("os/nvram")
    if nvram is not None and nvram.get("template"):
        return
    path = (nvram.text or "").strip() if nvram is not None else ""
    if os.path.exists(path or nvram_path):
        return
    wanted = (loader.text or "").strip()
    for descriptor_path in descriptor_paths(search_dirs() if dirs is None else dirs):
        desc = load(descriptor_path)
        if desc.device == "flash" and desc.executable == wanted and desc.nvram_template:
            _set_nvram(domain, desc.nvram_template, nvram_path)
            return


def _apply(domain, desc: Descriptor, nvram_path: str) -> None:
    os_elem = domain.find("os")
    loader = os_elem.find("loader")
    if loader is None:
        loader = etree.Element("loader")
        os_elem.find("type").addnext(loader)
    if desc.device == "kernel":
        os_elem.remove(loader)
        _os_child(os_elem, "kernel").text = desc.executable
        return
    if desc.device == "memory":
        loader.set("type", "rom")
        loader.text = desc.executable
        return
    if any(fmt != "raw" for fmt in desc.formats):
        raise InvalidInput(f"firmware {desc.executable} from {desc.path} is not in raw format, which is the only "
                           "pflash format supported", "os@firmware")
    loader.set("readonly", "yes")
    if "requires-smm" in desc.features:
        _require_smm(domain)
        loader.set("secure", "yes")
    loader.set("type", "pflash")
    loader.text = desc.executable
    _set_nvram(domain, desc.nvram_template, nvram_path)


def _set_nvram(domain, template: str | None, nvram_path: str) -> None:
    os_elem = domain.find("os")
    nvram = os_elem.find("nvram")
    if nvram is None:
        nvram = etree.Element("nvram")
        os_elem.find("loader").addnext(nvram)
    if template:
        nvram.set("template", template)
    if not (nvram.text or "").strip():
        nvram.text = nvram_path


def _os_child(os_elem, tag: str):
    found = os_elem.find(tag)
    if found is None:
        found = etree.SubElement(os_elem, tag)
    return found


def _require_smm(domain) -> None:
    features = domain.find("features")
    if features is None:
        features = etree.Element("features")
        domain.find("os").addnext(features)
    smm = features.find("smm")
    if smm is None:
        etree.SubElement(features, "smm", state="on")
    elif smm.get("state", "on") == "off":
        raise InvalidInput("the domain turns SMM off but the selected firmware requires it", "features/smm")


def validate(domain) -> None:
    """Define-time checks of <os firmware>, <loader> and <nvram> that libvirt 9.0 makes."""
    os_elem = domain.find("os")
    loader, nvram = os_elem.find("loader"), os_elem.find("nvram")
    firmware = os_elem.get("firmware")
    if firmware is not None and firmware not in _INTERFACES:
        raise InvalidInput(f"unknown firmware {firmware!r}, use 'efi' or 'bios'", "os@firmware")
    if firmware is None and os_elem.find("firmware/feature") is not None:
        raise InvalidInput("firmware features need firmware auto-selection (<os firmware='efi'>)",
                           "os/firmware/feature")
    if firmware is not None:
        _validate_autoselection(loader, nvram)
    _normalise_requested_features(os_elem)
    _validate_secure_loader(domain, loader, explicit=firmware is None)


def _validate_autoselection(loader, nvram) -> None:
    if loader is not None:
        for attr in ("readonly", "type"):
            if loader.get(attr) is not None:
                raise InvalidInput(f"loader attribute {attr!r} cannot be given with firmware auto-selection",
                                   f"os/loader@{attr}")
        if loader.get("secure", "yes") != "yes":
            raise InvalidInput("loader attribute 'secure' can only be 'yes' with firmware auto-selection",
                               "os/loader@secure")
        if (loader.text or "").strip():
            raise InvalidInput("a loader path cannot be given with firmware auto-selection", "os/loader")
    if nvram is not None and nvram.get("template"):
        raise InvalidInput("nvram attribute 'template' cannot be given with firmware auto-selection",
                           "os/nvram@template")


def _normalise_requested_features(os_elem) -> None:
    block = os_elem.find("firmware")
    if block is None:
        return
    wanted: dict[str, str] = {}
    for feature in block.findall("feature"):
        name = feature.get("name")
        if name not in REQUESTABLE_FEATURES or feature.get("enabled") not in ("yes", "no"):
            raise InvalidInput(f"unknown firmware feature {name!r} or enabled value {feature.get('enabled')!r}",
                               "os/firmware/feature")
        wanted[name] = feature.get("enabled")
    if wanted.get("enrolled-keys") == "yes":
        if wanted.get("secure-boot") == "no":
            raise InvalidInput("firmware feature 'enrolled-keys' cannot be enabled while 'secure-boot' is "
                               "disabled", "os/firmware/feature")
        wanted["secure-boot"] = "yes"
    for feature in list(block):
        block.remove(feature)
    for name in REQUESTABLE_FEATURES:
        if name in wanted:
            etree.SubElement(block, "feature", enabled=wanted[name], name=name)


def _validate_secure_loader(domain, loader, explicit: bool) -> None:
    if loader is None or loader.get("secure") != "yes":
        return
    machine = domain.find("os/type").get("machine", "")
    if not (machine == "q35" or machine.startswith("pc-q35-")):
        raise InvalidInput("secure boot is supported with q35 machine types only", "os/loader@secure")
    smm = domain.find("features/smm")
    if explicit and (smm is None or smm.get("state", "on") != "on"):
        raise InvalidInput("secure boot needs the SMM feature: add <smm state='on'/> to <features>",
                           "features/smm")
