# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""nftables rules of the embedded driver's networks.

Each network that needs rules (forward modes nat, route, and the isolated
network without <forward>) gets one table of its own, ``inet
virtops_<bridge>``, loaded in one transaction with ``nft -f -`` and removed
with ``nft delete table``: the teardown removes exactly what the start
added and never touches another tool's chains.  The rules are the ones
libvirt's bridge driver installs: traffic between guests of the bridge
passes, replies reach the subnet, the subnet may go out (nat, route),
routed traffic may come in (route), everything else in or out of the
bridge is rejected; nat masquerades the IPv4 subnet except to multicast
and broadcast, source ports mapped into the <nat><port> range.  IPv6 in a
nat network is routed, as libvirt does it.  Private to the collection.
"""

from __future__ import annotations

import re
import subprocess

from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError
from ansible_collections.virtops.qemu.plugins.module_utils.model.network import ip_family, ip_interface

NFT = "nft"
FAMILY = "inet"
TABLE_PREFIX = "virtops_"
# Forward modes whose networks get a table.
MODES_WITH_RULES = ("nat", "route", "none")


def forward_mode(network) -> str:
    """The network's forward mode; "none" when it has no <forward> (an isolated network)."""
    forward = network.find("forward")
    if forward is None:
        return "none"
    return forward.get("mode") or "nat"


def needs_rules(network) -> bool:
    return forward_mode(network) in MODES_WITH_RULES


def table_name(bridge: str) -> str:
    return TABLE_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", bridge)


def ruleset(network, bridge: str) -> str:
    """The whole table of a network, as ``nft -f`` reads it."""
    mode = forward_mode(network)
    forward = network.find("forward")
    dev = forward.get("dev") if forward is not None else None
    subnets = [(ip_interface(ip).network, ip_family(ip)) for ip in network.findall("ip") if ip.get("address")]
    lines = [f'iifname "{bridge}" oifname "{bridge}" accept']
    for subnet, family in subnets:
        lines += _forward_rules(mode, bridge, dev, subnet, _nft_family(family))
    lines += [f'iifname "{bridge}" reject', f'oifname "{bridge}" reject']
    text = [f"table {FAMILY} {table_name(bridge)} {{",
            "  chain forward {",
            "    type filter hook forward priority filter; policy accept;",
            *(f"    {line}" for line in lines),
            "  }"]
    if mode == "nat":
        text += ["  chain postrouting {",
                 "    type nat hook postrouting priority srcnat; policy accept;",
                 *(f"    {line}" for line in _nat_rules(network, dev, subnets)),
                 "  }"]
    text.append("}")
    return "\n".join(text) + "\n"


def _nft_family(family: str) -> str:
    return "ip6" if family == "ipv6" else "ip"


def _forward_rules(mode: str, bridge: str, dev: str | None, subnet, family: str) -> list[str]:
    """Out of the subnet, and into it: only replies for IPv4 behind NAT, anything for a routed subnet."""
    if mode == "none":
        return []
    out_dev = f' oifname "{dev}"' if dev else ""
    in_dev = f'iifname "{dev}" ' if dev else ""
    replies_only = " ct state established,related" if mode == "nat" and family == "ip" else ""
    return [f'iifname "{bridge}"{out_dev} {family} saddr {subnet} accept',
            f'{in_dev}oifname "{bridge}" {family} daddr {subnet}{replies_only} accept']


def _nat_rules(network, dev: str | None, subnets) -> list[str]:
    port = network.find("forward/nat/port")
    ports = f" to :{port.get('start')}-{port.get('end')}" if port is not None else ""
    out_dev = f'oifname "{dev}" ' if dev else ""
    rules = []
    for subnet, family in subnets:
        if family == "ipv6":
            continue
        match = f"{out_dev}ip saddr {subnet}"
        rules += [f"{match} ip daddr 224.0.0.0/24 return",
                  f"{match} ip daddr 255.255.255.255 return",
                  f"{match} ip daddr != {subnet} meta l4proto tcp masquerade{ports}",
                  f"{match} ip daddr != {subnet} meta l4proto udp masquerade{ports}",
                  f"{match} ip daddr != {subnet} masquerade"]
    return rules


# -- nft ------------------------------------------------------------------------------
def _nft(args: list[str], script: str | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([NFT, *args], input=script, capture_output=True, text=True, timeout=30, check=False)
    except FileNotFoundError as exc:
        raise BackendError("the 'nft' command (nftables) is needed for nat, route and isolated networks") from exc
    except subprocess.TimeoutExpired as exc:
        raise BackendError(f"nft {' '.join(args)} did not finish: {exc}") from exc


def load(script: str) -> None:
    """Add a table in one transaction: all of its rules or none."""
    done = _nft(["-f", "-"], script)
    if done.returncode != 0:
        raise BackendError(f"nft could not load the network's rules: {done.stderr.strip()}")


def exists(table: str) -> bool:
    return _nft(["list", "table", FAMILY, table]).returncode == 0


def delete(table: str) -> None:
    """Remove the table with every chain and rule in it; a table already gone is fine."""
    if not exists(table):
        return
    done = _nft(["delete", "table", FAMILY, table])
    if done.returncode != 0 and exists(table):
        raise BackendError(f"nft could not delete table {FAMILY} {table}: {done.stderr.strip()}")
