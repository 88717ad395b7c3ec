# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A running guest's interfaces and their addresses, from the sources libvirt reads them from.

``lease``: the DHCP leases of the virtual network an interface is on;
``agent``: the guest agent's guest-network-get-interfaces; ``arp``: the
host's neighbour table on the interface's bridge.  Addresses are kept by
MAC address (lower case): the one thing the host and the guest both see.
Private to the collection.
"""

from __future__ import annotations

import json
import subprocess

from ansible_collections.virtops.qemu.plugins.module_utils.errors import VirtError

ADDRESS_SOURCES = ("lease", "agent", "arp")
IP_TIMEOUT = 10

ByMac = dict[str, list[dict]]


def interfaces_of(live) -> list[dict]:
    """Each interface of the live definition: host-side name, MAC, network, bridge."""
    found = []
    for nic in live.iterfind("devices/interface"):
        mac = nic.find("mac")
        source = nic.find("source")
        target = nic.find("target")
        alias = nic.find("alias")
        found.append({
            "name": (target.get("dev") if target is not None else None)
            or (alias.get("name") if alias is not None else None),
            "mac": (mac.get("address") or "").lower() if mac is not None else "",
            "network": source.get("network") if source is not None else None,
            "bridge": source.get("bridge") if source is not None else None,
        })
    return found


def with_addresses(nics: list[dict], sources: list[str], answer) -> list[dict]:
    """Each interface with the addresses of the first source (in ``sources`` order) that knows it.

    ``answer(source)`` gives a source's addresses by MAC, or None when the
    source cannot answer; each source is asked at most once.
    """
    answers: dict[str, ByMac | None] = {}
    result = []
    for nic in nics:
        entry = {"name": nic["name"], "mac": nic["mac"], "addresses": [], "source": None}
        for source in sources:
            if source not in answers:
                answers[source] = answer(source)
            found = (answers[source] or {}).get(nic["mac"])
            if found:
                entry.update(addresses=found, source=source)
                break
        result.append(entry)
    return result


def lease_addresses(networks, nics: list[dict]) -> ByMac:
    """Addresses from the DHCP leases of the networks the interfaces are on."""
    found: ByMac = {}
    for network in sorted({nic["network"] for nic in nics if nic["network"]}):
        try:
            leases = networks.leases(network)
        except VirtError:
            continue
        for lease in leases:
            found.setdefault(lease.mac.lower(), []).append(
                {"address": lease.ip, "prefix": lease.prefix, "family": lease.family})
    return found


def arp_addresses(networks, nics: list[dict]) -> ByMac:
    """Addresses the host's neighbour table has for the MACs, on each interface's bridge."""
    found: ByMac = {}
    for bridge in sorted({b for b in (_bridge_of(networks, nic) for nic in nics) if b}):
        for entry in _neighbours(bridge):
            mac = (entry.get("lladdr") or "").lower()
            if mac and entry.get("dst") and "FAILED" not in (entry.get("state") or []):
                family = "ipv6" if ":" in entry["dst"] else "ipv4"
                found.setdefault(mac, []).append({"address": entry["dst"], "prefix": 0, "family": family})
    return found


def _bridge_of(networks, nic: dict) -> str | None:
    if nic["bridge"]:
        return nic["bridge"]
    if nic["network"]:
        try:
            return networks.bridge(nic["network"])
        except VirtError:
            return None
    return None


def _neighbours(bridge: str) -> list[dict]:
    try:
        proc = subprocess.run(["ip", "-j", "neigh", "show", "dev", bridge], capture_output=True, text=True,
                              timeout=IP_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if proc.returncode != 0:
        return []
    try:
        entries = json.loads(proc.stdout or "[]")
    except ValueError:
        return []
    return [e for e in entries if isinstance(e, dict)]
