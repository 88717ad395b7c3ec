# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""libvirt network XML: merge rules, structured options, bad-input checks, live-update classification.

The ``network`` module's options render to the same XML a user may give
verbatim; both are checked by ``validate`` before anything is touched.
``live_changes`` tells which differences between a running network and
its merged definition libvirt can apply with virNetworkUpdate, and which
need a restart.  Private to the collection.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.model import origins, schema
from ansible_collections.virtops.qemu.plugins.module_utils.model.merge import Rules, differs_in, first_key
from ansible_collections.virtops.qemu.plugins.module_utils.model.names import validate_name
from ansible_collections.virtops.qemu.plugins.module_utils.model.request import (
    ResourceRequest,
    checked_state,
    reconcile_name,
)
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import (
    XmlNode,
    check_option_text,
    element,
    etree,
    parse,
    sub,
    to_string,
)

Params = dict[str, Any]

FORWARD_MODES = ("nat", "route", "open", "bridge", "passthrough", "private", "vepa", "hostdev")
# Structured forward modes that mean "no <forward>": an isolated network.
ISOLATED_MODES = ("none", "isolated")
BRIDGE_NAME_MAX = 15            # IFNAMSIZ less the terminating NUL
# libvirt's schema (deviceName) allows these characters in a device name; "/" is refused for a bridge.
_BRIDGE_NAME = re.compile(r"^[A-Za-z0-9_.:-]+$")
MTU_MAX = 65535
DEFAULT_NAT_PORTS = ("1024", "65535")
LEASE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours"}
_LEASE = re.compile(r"^(\d+)\s*([smh]?)$")
_MAC = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")

# Where each virNetworkUpdate section lives; DHCP sections sit under one <ip> (their parent index).
DHCP_SECTIONS = {"ip-dhcp-host": "dhcp/host", "ip-dhcp-range": "dhcp/range"}
NETWORK_SECTIONS = {"dns-host": "dns/host", "dns-txt": "dns/txt", "dns-srv": "dns/srv", "portgroup": "portgroup"}


# -- identity and equivalence ------------------------------------------------------
def _canonical_ip(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return value


def ip_family(node: XmlNode) -> str:
    """An <ip>'s family: its attribute, else guessed from the address as libvirt does."""
    return node.get("family") or ("ipv6" if ":" in (node.get("address") or "") else "ipv4")


def ip_interface(node: XmlNode) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    """An <ip>'s address with its prefix (from ``prefix`` or ``netmask``; /24 or /64 when it has neither)."""
    address = node.get("address") or ""
    if node.get("netmask"):
        return ipaddress.ip_interface(f"{address}/{node.get('netmask')}")
    default = "64" if ip_family(node) == "ipv6" else "24"
    return ipaddress.ip_interface(f"{address}/{node.get('prefix') or default}")


def subnets(network: XmlNode | None) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The subnets of a network's <ip> elements."""
    if network is None:
        return []
    return [ip_interface(ip).network for ip in network.findall("ip") if ip.get("address")]


def _ip_key(node: XmlNode) -> Hashable | None:
    address = node.get("address")
    return None if address is None else (ip_family(node), _canonical_ip(address))


def _attr_key(attr: str, canon=lambda v: v):
    def key(node: XmlNode) -> Hashable | None:
        value = node.get(attr)
        return None if value is None else canon(value)
    return key


def _range_key(node: XmlNode) -> Hashable | None:
    start, end = node.get("start"), node.get("end")
    return None if start is None or end is None else (_canonical_ip(start), _canonical_ip(end))


def _tuple_key(*attrs: str):
    """Identity from several attributes, any of which may be unset (a forwarder with only a domain)."""
    def key(node: XmlNode) -> Hashable | None:
        values = tuple(node.get(a) for a in attrs)
        return None if all(v is None for v in values) else values
    return key


def _same_ip(current: str, desired: str) -> bool:
    return _canonical_ip(current) == _canonical_ip(desired)


def _same_mac(current: str, desired: str) -> bool:
    return current.lower() == desired.lower()


OWNED_LISTS = frozenset({
    "network/ip", "network/ip/dhcp/host", "network/ip/dhcp/range", "network/dns/host", "network/dns/txt",
    "network/dns/srv", "network/dns/forwarder", "network/portgroup", "network/forward",
})

NETWORK_RULES = Rules(
    identity={
        "network/ip": _ip_key,
        "network/ip/dhcp/host": first_key(_attr_key("mac", str.lower), _attr_key("name"),
                                          _attr_key("ip", _canonical_ip)),
        "network/ip/dhcp/range": _range_key,
        "network/dns/host": _attr_key("ip", _canonical_ip),
        "network/dns/txt": _attr_key("name"),
        "network/dns/srv": _tuple_key("service", "protocol", "domain", "target"),
        "network/dns/forwarder": _tuple_key("addr", "domain"),
        "network/portgroup": _attr_key("name"),
    },
    owned=OWNED_LISTS,
    equivalent={
        "network/ip@address": _same_ip,
        "network/ip/dhcp/range@start": _same_ip,
        "network/ip/dhcp/range@end": _same_ip,
        "network/ip/dhcp/host@ip": _same_ip,
        "network/ip/dhcp/host@mac": _same_mac,
        "network/dns/host@ip": _same_ip,
        "network/mac@address": _same_mac,
    },
    replace={"network/forward": differs_in("mode")},
)


def owned_lists_in(network: XmlNode) -> set[str]:
    """The user-owned lists a verbatim XML speaks about: those with at least one member in it."""
    owned = set()
    for path in OWNED_LISTS:
        relative = path.split("/", 1)[1]
        if network.find(relative) is not None:
            owned.add(path)
    return owned


# -- settling what libvirt fills in ---------------------------------------------------
def settle(network: XmlNode) -> XmlNode:
    """Add what libvirt adds to a definition it stores: the default NAT port range."""
    forward = network.find("forward")
    if forward is not None and forward.get("mode") == "nat" and forward.find("nat/port") is None:
        nat = forward.find("nat")
        if nat is None:
            nat = sub(forward, "nat")
        sub(nat, "port", start=DEFAULT_NAT_PORTS[0], end=DEFAULT_NAT_PORTS[1])
    return network


# -- structured options ---------------------------------------------------------------
STRUCTURED_OPTIONS = ("forward", "bridge", "mac", "domain", "ips", "dns", "portgroups")


def has_definition(params: Params) -> bool:
    return any(params.get(option) is not None for option in STRUCTURED_OPTIONS)


def render(params: Params) -> tuple[XmlNode, set[str]]:
    """The desired network (subset) from the module's structured options, and the lists it owns."""
    refuse_control_characters(params)
    network = element("network")
    sub(network, "name", params["name"])
    owned: set[str] = set()
    _forward(network, params.get("forward"), owned)
    _bridge(network, params.get("bridge"))
    if params.get("mac"):
        sub(network, "mac", address=params["mac"].lower())
    _domain(network, params.get("domain"))
    _dns(network, params.get("dns"), owned)
    if params.get("ips") is not None:
        owned.add("network/ip")
        for index, ip in enumerate(params["ips"]):
            network.append(_ip(ip, f"ips[{index}]", owned))
    if params.get("portgroups") is not None:
        owned.add("network/portgroup")
        for group in params["portgroups"]:
            network.append(_portgroup(group))
    return network, owned


def _forward(network: XmlNode, forward: Params | None, owned: set[str]) -> None:
    if forward is None:
        return
    owned.add("network/forward")
    mode = forward.get("mode") or "nat"
    if mode in ISOLATED_MODES:
        if forward.get("dev") or forward.get("nat_ports"):
            raise InvalidInput(f"dev and nat_ports mean nothing for mode {mode}", "forward")
        return
    node = sub(network, "forward", mode=mode, dev=forward.get("dev"))
    ports = forward.get("nat_ports")
    if ports:
        if mode != "nat":
            raise InvalidInput(f"only applies with mode nat, not {mode}", "forward.nat_ports")
        sub(sub(node, "nat"), "port", start=ports.get("start"), end=ports.get("end"))


def _bridge(network: XmlNode, bridge: Params | None) -> None:
    if not bridge:
        return
    stp = bridge.get("stp")
    sub(network, "bridge", name=bridge.get("name"), stp=None if stp is None else ("on" if stp else "off"),
        delay=bridge.get("delay"), macTableManager=bridge.get("mac_table_manager"))
    if bridge.get("mtu") is not None:
        sub(network, "mtu", size=bridge["mtu"])


def _domain(network: XmlNode, domain: Params | None) -> None:
    if not domain:
        return
    local = domain.get("local_only")
    sub(network, "domain", name=domain.get("name"), localOnly=None if local is None else ("yes" if local else "no"))


def _dns(network: XmlNode, dns: Params | None, owned: set[str]) -> None:
    if not dns:
        return
    node = sub(network, "dns")
    for option, tag in (("forwarders", "forwarder"), ("txt", "txt"), ("hosts", "host"), ("srv", "srv")):
        entries = dns.get(option)
        if entries is None:
            continue
        owned.add(f"network/dns/{tag}")
        for entry in entries:
            node.append(_dns_entry(tag, entry))


def _dns_entry(tag: str, entry: Params) -> XmlNode:
    if tag == "host":
        host = element("host", ip=entry.get("ip"))
        for hostname in entry.get("hostnames") or []:
            sub(host, "hostname", hostname)
        return host
    fields = {"forwarder": ("addr", "domain"), "txt": ("name", "value"),
              "srv": ("service", "protocol", "domain", "target", "port", "priority", "weight")}[tag]
    return element(tag, **{name: entry.get(name) for name in fields})


def _ip(ip: Params, where: str, owned: set[str]) -> XmlNode:
    address = ip.get("address")
    family = ip.get("family") or ("ipv6" if ":" in (address or "") else None)
    node = element("ip", family=family, address=address, prefix=ip.get("prefix"))
    dhcp = ip.get("dhcp")
    if dhcp is not None:
        _dhcp(sub(node, "dhcp"), dhcp, where, owned)
    return node


def _dhcp(node: XmlNode, dhcp: Params, where: str, owned: set[str]) -> None:
    if dhcp.get("ranges") is not None:
        owned.add("network/ip/dhcp/range")
        for index, entry in enumerate(dhcp["ranges"]):
            child = sub(node, "range", start=entry.get("start"), end=entry.get("end"))
            _lease(child, entry.get("lease_time"), f"{where}.dhcp.ranges[{index}].lease_time")
    if dhcp.get("hosts") is not None:
        owned.add("network/ip/dhcp/host")
        for index, entry in enumerate(dhcp["hosts"]):
            mac = entry.get("mac")
            child = sub(node, "host", mac=mac.lower() if mac else None, name=entry.get("name"), ip=entry.get("ip"))
            _lease(child, entry.get("lease_time"), f"{where}.dhcp.hosts[{index}].lease_time")


def _lease(parent: XmlNode, lease_time: object, option: str) -> None:
    if lease_time is not None and str(lease_time).strip() != "":
        expiry, unit = parse_lease_time(lease_time, option)
        sub(parent, "lease", expiry=expiry, unit=unit)


def parse_lease_time(value: object, option: str = "lease_time") -> tuple[str, str | None]:
    """"infinite", or a number with an optional s/m/h suffix (default minutes, as libvirt's), as (expiry, unit)."""
    text = str(value).strip().lower()
    if text == "infinite":
        return "0", None
    found = _LEASE.fullmatch(text)
    if found is None or int(found.group(1)) == 0:
        raise InvalidInput(f"expected 'infinite' or a positive number with an optional s, m or h suffix, "
                           f"got {value!r}", option)
    return str(int(found.group(1))), LEASE_UNITS[found.group(2) or "m"]


def _portgroup(group: Params) -> XmlNode:
    default = group.get("default")
    node = element("portgroup", name=group.get("name"), default=None if default is None else
                   ("yes" if default else "no"))
    if group.get("vlan_tag") is not None:
        sub(sub(node, "vlan"), "tag", id=group["vlan_tag"])
    return node


# -- bad input -------------------------------------------------------------------------
class _Places:
    """Names the culprit: the structured option (ips[0].dhcp.ranges[1]) or, for xml, the element."""

    def __init__(self, option: str | None):
        self.option = option

    def fail(self, message: str, structured: str, described: str) -> InvalidInput:
        if self.option is None:
            return InvalidInput(message, structured)
        return InvalidInput(f"{described}: {message}", self.option)


def validate(network: XmlNode, option: str | None = None) -> None:
    """Refuse bad input before anything is touched.

    ``option`` None means the tree was rendered from structured options, whose
    paths the errors name; otherwise errors name ``option`` and the element.
    """
    places = _Places(option)
    _check_forward(network, places)
    _check_bridge(network, places)
    _check_mac(network.find("mac"), "mac", "<mac>", places)
    for index, ip in enumerate(network.findall("ip")):
        _check_ip(ip, f"ips[{index}]", places)
    for index, group in enumerate(network.findall("portgroup")):
        _check_vlan(group, f"portgroups[{index}]", places)
    _check_control_characters(network, places)
    _check_ips_apart(network, places)
    for index, ip in enumerate(network.findall("ip")):
        _check_dhcp_spares(ip, f"ips[{index}]", places)


def _check_forward(network: XmlNode, places: _Places) -> None:
    forward = network.find("forward")
    mode = None if forward is None else forward.get("mode")
    if mode is not None and mode not in FORWARD_MODES:
        raise places.fail(f"unknown forward mode {mode!r}; known: {', '.join(FORWARD_MODES)}",
                          "forward.mode", "<forward mode>")
    port = None if forward is None else forward.find("nat/port")
    if port is not None:
        _check_nat_ports(port, places)


def _check_nat_ports(port: XmlNode, places: _Places) -> None:
    numbers = []
    for end in ("start", "end"):
        value = port.get(end) or ""
        if not value.isdigit() or not 1 <= int(value) <= 65535:
            raise places.fail(f"{end} port {value!r} is not a number from 1 to 65535", f"forward.nat_ports.{end}",
                              "<forward><nat><port>")
        numbers.append(int(value))
    if numbers[0] > numbers[1]:
        raise places.fail(f"start port {numbers[0]} comes after end port {numbers[1]}", "forward.nat_ports",
                          "<forward><nat><port>")


def _check_bridge(network: XmlNode, places: _Places) -> None:
    mtu = network.find("mtu")
    size = None if mtu is None else mtu.get("size") or ""
    if size is not None and not (size.isdigit() and 1 <= int(size) <= MTU_MAX):
        raise places.fail(f"MTU {size!r} is not a number from 1 to {MTU_MAX}", "bridge.mtu", "<mtu size>")
    bridge = network.find("bridge")
    name = None if bridge is None else bridge.get("name")
    if name is None:
        return
    if len(name.encode("utf-8")) > BRIDGE_NAME_MAX:
        raise places.fail(f"bridge name {name!r} is longer than {BRIDGE_NAME_MAX} bytes (the kernel's limit)",
                          "bridge.name", "<bridge name>")
    if not name or "/" in name or any(c.isspace() for c in name):
        raise places.fail(f"{name!r} is not a valid interface name", "bridge.name", "<bridge name>")
    if not _BRIDGE_NAME.match(name):
        raise places.fail(f"{name!r} is not a valid bridge name: libvirt allows only ASCII letters, digits "
                          "and _ . : - in it", "bridge.name", "<bridge name>")


def _check_mac(node: XmlNode | None, structured: str, described: str, places: _Places) -> None:
    address = None if node is None else node.get("address", node.get("mac"))
    if address is not None and not _MAC.fullmatch(address.lower()):
        raise places.fail(f"{address!r} is not a MAC address (xx:xx:xx:xx:xx:xx)", structured, described)


def _check_ip(ip: XmlNode, where: str, places: _Places) -> None:
    described = f"<ip address={ip.get('address')!r}>"
    subnet = _subnet(ip, where, described, places)
    for index, span in enumerate(ip.findall("dhcp/range")):
        _check_range(span, subnet, f"{where}.dhcp.ranges[{index}]", places)
    macs: set[str] = set()
    for index, host in enumerate(ip.findall("dhcp/host")):
        _check_host(host, subnet, ip_family(ip), f"{where}.dhcp.hosts[{index}]", places, macs)


def _subnet(ip: XmlNode, where: str, described: str, places: _Places):
    address, family = ip.get("address"), ip_family(ip)
    try:
        parsed = ipaddress.ip_address(address or "")
    except ValueError:
        raise places.fail(f"{address!r} is not an IP address", f"{where}.address", described) from None
    if (parsed.version == 6) != (family == "ipv6"):
        raise places.fail(f"{address} is not an {family} address", f"{where}.family", described)
    prefix = _prefix(ip, parsed.max_prefixlen, where, described, places)
    return None if prefix is None else ipaddress.ip_network(f"{parsed}/{prefix}", strict=False)


def _prefix(ip: XmlNode, most: int, where: str, described: str, places: _Places) -> int | None:
    prefix, netmask = ip.get("prefix"), ip.get("netmask")
    if netmask is not None:
        try:
            return ipaddress.ip_network(f"0.0.0.0/{netmask}").prefixlen
        except ValueError:
            raise places.fail(f"{netmask!r} is not a netmask", f"{where}.prefix", described) from None
    if prefix is None:
        return None
    if not prefix.isdigit() or int(prefix) > most:
        raise places.fail(f"prefix {prefix!r} is not a number from 0 to {most}", f"{where}.prefix", described)
    return int(prefix)


def _address_in(value: str | None, subnet, what: str, where: str, described: str, places: _Places):
    try:
        address = ipaddress.ip_address(value or "")
    except ValueError:
        raise places.fail(f"{what} {value!r} is not an IP address", where, described) from None
    if subnet is not None and address not in subnet:
        raise places.fail(f"{what} {address} is outside the subnet {subnet}", where, described)
    return address


def _check_range(span: XmlNode, subnet, where: str, places: _Places) -> None:
    described = f"<range start={span.get('start')!r} end={span.get('end')!r}>"
    start = _address_in(span.get("start"), subnet, "DHCP range start", where, described, places)
    end = _address_in(span.get("end"), subnet, "DHCP range end", where, described, places)
    if start.version != end.version or start > end:
        raise places.fail(f"DHCP range start {start} comes after its end {end}", where, described)


def _check_host(host: XmlNode, subnet, family: str, where: str, places: _Places, macs: set[str]) -> None:
    described = f"<host mac={host.get('mac')!r} name={host.get('name')!r} ip={host.get('ip')!r}>"
    if family == "ipv4" and not (host.get("mac") or host.get("name")):
        raise places.fail("a static DHCP host needs a mac or a name", where, described)
    if family == "ipv6" and not (host.get("id") or host.get("name")):
        raise places.fail("a static DHCPv6 host needs a name or an id", where, described)
    _check_mac(host, f"{where}.mac", described, places)
    if host.get("ip") is None:
        raise places.fail("a static DHCP host needs the ip it gets", f"{where}.ip", described)
    _address_in(host.get("ip"), subnet, "host address", f"{where}.ip", described, places)
    mac = (host.get("mac") or "").lower()
    if mac and mac in macs:
        raise places.fail(f"MAC {mac} is given to more than one host", f"{where}.mac", described)
    macs.add(mac)


def _check_vlan(group: XmlNode, where: str, places: _Places) -> None:
    for tag in group.findall("vlan/tag"):
        value = tag.get("id") or ""
        if not value.isdigit() or int(value) > 4095:
            raise places.fail(f"VLAN tag {value!r} is not a number from 0 to 4095", f"{where}.vlan_tag",
                              f"<portgroup name={group.get('name')!r}>")


# -- values that reach a helper's configuration -------------------------------------------
# dnsmasq reads one option per line and runs as root: a line break in a value would add options.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Free text that no helper reads.
_FREE_TEXT = frozenset({"title", "description", "metadata"})


def refuse_control_characters(params: object, option: str = "") -> None:
    """Refuse a control character (a line break, a tab, NUL, ...) in any structured option's text."""
    if isinstance(params, dict):
        for key, value in params.items():
            if key in STRUCTURED_OPTIONS or option:
                refuse_control_characters(value, f"{option}.{key}" if option else key)
    elif isinstance(params, list):
        for index, value in enumerate(params):
            refuse_control_characters(value, f"{option}[{index}]")
    elif isinstance(params, str) and _CONTROL.search(params):
        raise InvalidInput(f"{params!r} contains a control character (a line break, a tab, ...), which "
                           "no value written to dnsmasq, nft or ip may hold", option)


def _check_control_characters(network: XmlNode, places: _Places) -> None:
    """The same for a verbatim definition: every attribute and element text but free text."""
    for node in network.iter():
        if not isinstance(node.tag, str) or _FREE_TEXT & {node.tag, *(a.tag for a in node.iterancestors())}:
            continue
        values = [(f"attribute {name}", value) for name, value in node.attrib.items()]
        values.append(("text", (node.text or "").strip()))
        for what, value in values:
            if _CONTROL.search(value):
                raise places.fail(f"{what} {value!r} contains a control character (a line break, a tab, ...), "
                                  "which no value written to dnsmasq, nft or ip may hold",
                                  network.getroottree().getpath(node), f"<{node.tag}>")


def _check_ips_apart(network: XmlNode, places: _Places) -> None:
    """Two <ip> elements of one network may not share addresses: the bridge would get both routes."""
    seen: list[tuple[int, Any]] = []
    for index, ip in enumerate(network.findall("ip")):
        subnet = _interface_or_none(ip)
        if subnet is None:
            continue
        subnet = subnet.network
        for other, earlier in seen:
            if subnet.version == earlier.version and subnet.overlaps(earlier):
                raise places.fail(f"subnet {subnet} overlaps subnet {earlier} of ips[{other}]", f"ips[{index}]",
                                  f"<ip address={ip.get('address')!r}>")
        seen.append((index, subnet))


def _interface_or_none(ip: XmlNode):
    """The <ip>'s interface; None without a prefix (a subset of a stored <ip>) or for one the schema refuses."""
    if ip.get("prefix") is None and ip.get("netmask") is None:
        return None
    try:
        return ip_interface(ip)
    except ValueError:
        return None


def _check_dhcp_spares(ip: XmlNode, where: str, places: _Places) -> None:
    """DHCPv6 only on a /64 (dnsmasq refuses others); no range hands out the gateway, network or broadcast."""
    interface = _interface_or_none(ip)
    serves = ip.find("dhcp/range") is not None or ip.find("dhcp/host") is not None
    if interface is not None and interface.version == 6 and serves and interface.network.prefixlen != 64:
        raise places.fail(f"DHCPv6 needs a prefix of 64, not {interface.network.prefixlen}", f"{where}.prefix",
                          f"<ip address={ip.get('address')!r}>")
    for index, span in enumerate(ip.findall("dhcp/range")):
        start, end = ipaddress.ip_address(span.get("start")), ipaddress.ip_address(span.get("end"))
        for address, what in _spares(ip, interface).items():
            if start.version == address.version and start <= address <= end:
                raise places.fail(f"DHCP range {start} - {end} covers {address}, {what}",
                                  f"{where}.dhcp.ranges[{index}]",
                                  f"<range start={span.get('start')!r} end={span.get('end')!r}>")


def _spares(ip: XmlNode, interface) -> dict:
    """Addresses of an <ip> that no lease may get; network and broadcast only where the prefix is known."""
    spares = {ipaddress.ip_address(ip.get("address")): "the network's own address (its gateway)"}
    if interface is not None:
        spares[interface.network.network_address] = "the network address"
        if interface.version == 4 and interface.network.prefixlen < 31:
            spares[interface.network.broadcast_address] = "the broadcast address"
    return spares


# -- live changes ------------------------------------------------------------------------
def live_changes(live: XmlNode, merged: XmlNode) -> tuple[list[tuple[str, str, str, int]], bool]:
    """The virNetworkUpdate commands that take ``live`` to ``merged``, and whether anything else differs.

    Commands are (command, section, element XML, parent index); a changed
    element is deleted and added again, since libvirt cannot modify ranges or
    DNS entries in place.  Everything outside the update sections (the <ip>
    elements themselves, forward, bridge, an added or dropped <dhcp> or <dns>)
    is an "other" change that needs a restart.
    """
    updates = []
    for section, path in NETWORK_SECTIONS.items():
        updates += _section_updates(live.findall(path), merged.findall(path), section, -1)
    live_ips, merged_ips = live.findall("ip"), merged.findall("ip")
    # Differing <ip> lists are a restart anyway; otherwise the lists pair up by position.
    for index in range(min(len(live_ips), len(merged_ips))):
        for section, path in DHCP_SECTIONS.items():
            updates += _section_updates(live_ips[index].findall(path), merged_ips[index].findall(path),
                                        section, index)
    other = _without_sections(live) != _without_sections(merged)
    return _deletes_first(updates), other


def _section_updates(before: list[XmlNode], after: list[XmlNode], section: str,
                     parent_index: int) -> list[tuple[str, str, str, int]]:
    old = [_element_xml(node) for node in before]
    new = [_element_xml(node) for node in after]
    return [("delete", section, text, parent_index) for text in old if text not in new] + \
           [("add-last", section, text, parent_index) for text in new if text not in old]


def _deletes_first(updates: list[tuple[str, str, str, int]]) -> list[tuple[str, str, str, int]]:
    return [u for u in updates if u[0] == "delete"] + [u for u in updates if u[0] != "delete"]


def _element_xml(node: XmlNode) -> str:
    """One element on one line, as virNetworkUpdate takes it."""
    twin = copy.deepcopy(node)
    for part in twin.iter():
        part.tail = None
        if len(part) and part.text is not None and not part.text.strip():
            part.text = None
    return etree.tostring(twin, encoding="unicode")


def _without_sections(network: XmlNode) -> str:
    twin = copy.deepcopy(network)
    paths = list(NETWORK_SECTIONS.values()) + [f"ip/{path}" for path in DHCP_SECTIONS.values()]
    for path in paths:
        for node in twin.findall(path):
            node.getparent().remove(node)
    return to_string(twin)


def describe_update(update: tuple[str, str, str, int]) -> str:
    """An update as results list it: "add ip-dhcp-host <host mac='...' .../>"."""
    command, section, xml, _parent = update
    return f"{'add' if command == 'add-last' else command} {section} {xml}"


# -- the module's request ---------------------------------------------------------
STATES = ("present", "active", "inactive", "absent")


@dataclass
class NetworkRequest(ResourceRequest):
    definition_option: str = "ips"     # the option an overlapping subnet is blamed on


def request_from_params(params: dict) -> NetworkRequest:
    """Validate the module's options and build the request; connects to nothing."""
    name = validate_name(params["name"], "network")
    state = checked_state(params.get("state") or "active", STATES)
    desired, owned, option = None, set(), None
    if params.get("xml"):
        desired, option = parse(params["xml"], "network", "xml"), "xml"
        reconcile_name(desired, name, "network")
        owned = owned_lists_in(desired)
    elif has_definition(params):
        check_option_text(params, STRUCTURED_OPTIONS)
        desired, owned = render(params)
    if desired is not None:
        validate(desired, option)
        schema.validate(desired, "network", "the network definition", option or "options",
                        None if option else origins.locator(origins.NETWORK, desired))
    return NetworkRequest(name=name, state=state, desired=desired, owned_lists=owned,
                          autostart=params.get("autostart"), restart=bool(params.get("restart")),
                          definition_option=option or "ips", verbatim=option is not None)
