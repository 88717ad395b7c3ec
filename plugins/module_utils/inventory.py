# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the virtops.qemu.domains inventory plugin learns from each hypervisor.

``read_hypervisors`` connects to every URI read-only and returns plain data
(JSON-friendly, so that Ansible's inventory cache can keep it); the other
functions turn that data into host names, groups and host variables.  No
Ansible import: the plugin only hands the result to Ansible.  Private to the
collection.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field

from ansible_collections.virtops.qemu.plugins.module_utils.addresses import ADDRESS_SOURCES
from ansible_collections.virtops.qemu.plugins.module_utils.driver.base import Lease
from ansible_collections.virtops.qemu.plugins.module_utils.errors import NotFound, VirtError
from ansible_collections.virtops.qemu.plugins.module_utils.manager.domain import summary
from ansible_collections.virtops.qemu.plugins.module_utils.manager.guest_setup import is_agent_channel
from ansible_collections.virtops.qemu.plugins.module_utils.model import domain as model
from ansible_collections.virtops.qemu.plugins.module_utils.uri import parse_uri

VARIABLE_PREFIX = "virtops_"


@dataclass
class Reading:
    """What the URIs gave: domains per URI that answered, the reason per URI that did not, warnings."""
    domains: dict[str, list[dict]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def read_hypervisors(uris: list[str], opener, sources=ADDRESS_SOURCES) -> Reading:
    """Every domain of every URI; a URI that fails is recorded and the others still read.

    ``opener(uri, read_only=True)`` returns an open driver (driver.connect.open_driver);
    ``sources`` are the address sources to ask, in order (domain_info's address_source).
    """
    reading = Reading()
    for uri in uris:
        try:
            with _open(uri, opener) as driver:
                reading.domains[uri] = read_domains(driver, reading.warnings, sources)
                reading.warnings.extend(f"{uri}: {warning}" for warning in driver.warnings)
        except (VirtError, OSError) as e:
            reading.failures[uri] = str(e)
    return reading


def _open(uri: str, opener):
    """The driver of ``uri``; an embed root that does not exist is an error here, not an empty hypervisor."""
    root = parse_uri(uri).embed_root
    if root is not None and not os.path.isdir(root):
        raise NotFound(f"the embed root {root} does not exist")
    return opener(uri, read_only=True)


def read_domains(driver, warnings: list[str], sources=ADDRESS_SOURCES) -> list[dict]:
    """Every domain of one driver as a dict (see domain_facts); one that cannot be read is warned about."""
    networks = network_facts(driver.networks, warnings)
    found = []
    for name in driver.domains.names():
        try:
            found.append(domain_facts(driver, name, networks, sources))
        except NotFound:
            continue        # undefined while we were listing
        except VirtError as e:
            warnings.append(f"{driver.uri.raw}: domain {name!r} is left out: {e}")
    return found


@dataclass
class NetworkFacts:
    """The bridges of the active networks, and their DHCP leases by MAC, newest first."""
    bridges: dict[str, str | None] = field(default_factory=dict)
    leases: dict[str, list[tuple[str, Lease]]] = field(default_factory=dict)


def network_facts(networks, warnings: list[str]) -> NetworkFacts:
    facts = NetworkFacts()
    for name in networks.names():
        try:
            if not networks.active(name):
                continue
            facts.bridges[name] = networks.bridge(name)
            for lease in networks.leases(name):
                facts.leases.setdefault(lease.mac.lower(), []).append((name, lease))
        except NotFound:
            continue        # removed while we were listing
        except VirtError as e:
            warnings.append(f"network {name!r}: its DHCP leases cannot be read: {e}")
    for found in facts.leases.values():
        found.sort(key=lambda item: _newest_first(item[1]))
    return facts


def _newest_first(lease: Lease) -> tuple:
    return (lease.expiry != 0, -lease.expiry)      # 0 is an infinite lease


def domain_facts(driver, name: str, networks: NetworkFacts, sources=ADDRESS_SOURCES) -> dict:
    """State, uuid, autostart, sizing and NICs of one domain; a running one's NICs carry their leased addresses.

    The running definition is read for a running domain, as it has the NICs
    the guest really has; a domain that does not run has no address, even
    when its old lease has not expired yet.
    """
    info, tree = summary(driver, name)
    if info["active"]:
        tree = model.parse_domain(driver.domains.xml(name, inactive=False), "xml")
    nics = model.interfaces(tree)
    answers: dict = {}
    has_agent = any(is_agent_channel(node) for node in tree.iterfind("devices/channel"))
    for nic in nics:
        if nic["network"] and not nic["bridge"]:
            nic["bridge"] = networks.bridges.get(nic["network"])
        nic["ips"] = []
        for source in sources if info["active"] else ():
            nic["ips"] = _addresses_from(source, driver, name, nic, networks, answers, has_agent)
            if nic["ips"]:
                break
    return {**info, **model.sizing(tree), "interfaces": nics}


def _addresses_from(source: str, driver, name: str, nic: dict, networks: NetworkFacts, answers: dict,
                    has_agent: bool) -> list[str]:
    """One NIC's addresses from one source, IPv4 first; the agent and ARP are asked once per domain."""
    if source == "lease":
        return addresses_of(nic, networks)
    if source not in answers:
        wanted = source != "agent" or has_agent
        answers[source] = (driver.domains.interface_addresses(name, source) if wanted else None) or {}
    found = answers[source].get((nic["mac"] or "").lower(), [])
    ordered = [a["address"] for a in found if a["family"] == "ipv4"] + \
        [a["address"] for a in found if a["family"] != "ipv4"]
    return list(dict.fromkeys(ordered))


def addresses_of(nic: dict, networks: NetworkFacts) -> list[str]:
    """The leased addresses of one NIC, IPv4 first; only leases of its own network when it names one."""
    found = [lease for network, lease in networks.leases.get(nic["mac"] or "", [])
             if not nic["network"] or network == nic["network"]]
    ordered = [lease.ip for lease in found if lease.family == "ipv4"] + \
        [lease.ip for lease in found if lease.family != "ipv4"]
    return list(dict.fromkeys(ordered))


def preferred_address(domain: dict) -> str | None:
    """The address Ansible should reach the guest at: the first IPv4 address of its NICs, else the first one."""
    every = [ip for nic in domain["interfaces"] for ip in nic["ips"]]
    return next((ip for ip in every if _is_ipv4(ip)), every[0] if every else None)


def _is_ipv4(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).version == 4
    except ValueError:
        return False


# -- hosts, groups, variables -------------------------------------------------------
def safe_group_name(text: str) -> str:
    """``text`` as a group name Ansible accepts without rewriting: lower case letters, digits and underscores."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def hypervisor_group(uri: str, prefix: str) -> str:
    """The group of one URI's domains: qemu:///system -> virtops_qemu_system."""
    return prefix + safe_group_name(uri)


def state_group(state: str, prefix: str) -> str:
    return prefix + safe_group_name(state)


def host_variables(uri: str, domain: dict) -> dict:
    """The host variables of one domain; ansible_host only when an address is known."""
    found = {f"{VARIABLE_PREFIX}{key}": domain[key]
             for key in ("state", "reason", "active", "uuid", "autostart", "memory_mib", "current_memory_mib",
                         "vcpus", "interfaces")}
    found.update({f"{VARIABLE_PREFIX}uri": uri,
                  f"{VARIABLE_PREFIX}macs": [nic["mac"] for nic in domain["interfaces"] if nic["mac"]],
                  f"{VARIABLE_PREFIX}ips": [ip for nic in domain["interfaces"] for ip in nic["ips"]]})
    address = preferred_address(domain)
    if address is not None:
        found["ansible_host"] = address
    return found


def inventory_hosts(uris: list[str], domains: dict[str, list[dict]], prefix: str,
                    hostname: str = "name") -> tuple[list[dict], list[str]]:
    """Every host to add, in URI order, with its groups and variables; warnings for names taken twice.

    The host name is the domain's name (or its uuid, ``hostname="uuid"``), so
    the same name on a second hypervisor would merge two guests into one
    host: the later one is left out.
    """
    hosts: list[dict] = []
    owner: dict[str, str] = {}
    warnings = []
    for uri in uris:
        for domain in domains.get(uri, []):
            name = domain[hostname]
            if name in owner:
                warnings.append(f"{uri}: domain {name!r} is left out, as {owner[name]} has a domain of that name")
                continue
            owner[name] = uri
            hosts.append({"name": name, "groups": [hypervisor_group(uri, prefix), state_group(domain["state"], prefix)],
                          "variables": host_variables(uri, domain)})
    return hosts, warnings
