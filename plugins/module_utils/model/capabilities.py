# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""libvirt's host <capabilities> XML as plain data.  Private to the collection."""

from __future__ import annotations

from ansible_collections.virtops.qemu.plugins.module_utils.model import xmltree


def summarise(text: str) -> dict:
    root = xmltree.parse(text, "capabilities", "capabilities")
    guests = [_guest(node) for node in root.iterfind("guest")]
    return {
        "arch": root.findtext("host/cpu/arch"),
        "uuid": root.findtext("host/uuid"),
        "guests": guests,
        "kvm": any("kvm" in guest["domain_types"] for guest in guests),
        "security_models": [_secmodel(node) for node in root.iterfind("host/secmodel")],
    }


def _secmodel(node) -> dict:
    return {"model": node.findtext("model"), "doi": node.findtext("doi"),
            "baselabels": {b.get("type"): b.text for b in node.iterfind("baselabel")}}


def _guest(node) -> dict:
    arch = node.find("arch")
    return {
        "os_type": node.findtext("os_type"),
        "arch": arch.get("name"),
        "wordsize": int(arch.findtext("wordsize") or 0),
        "emulator": arch.findtext("emulator"),
        "machines": [{"name": m.text, "canonical": m.get("canonical") or m.text,
                      "max_cpus": int(m.get("maxCpus") or 0)} for m in arch.iterfind("machine")],
        "domain_types": [d.get("type") for d in arch.iterfind("domain")],
    }
