# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Status records of the embedded driver's active networks (``run/network/NAME.xml``).

A ``<networkstatus>`` record says what a network's start made on the host:
the bridge (and whether the driver created it), the nftables table, the
dnsmasq process with its /proc start time, and the live ``<network>``.  It
is written in state "starting" before anything is created, naming all of
that and the run doing the start, so that a later run can tear down what a
killed start left behind.  It names the network namespace it was made
in: links and tables of one namespace are invisible from another.
Private to the collection.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.state import StatusRecords
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import (
    XmlNode,
    element,
    etree,
    parse,
    sub,
    to_string,
)

STARTING = "starting"
ACTIVE = "active"


@dataclass
class NetworkRecord:
    state: str                          # STARTING or ACTIVE
    bridge: str
    bridge_created: bool                # the driver made the bridge (not forward mode 'bridge')
    table: str = ""                     # the nftables table, "" when the network has no rules
    dnsmasq: bool = False               # the network runs a dnsmasq
    pid: int | None = None              # ... this one
    starttime: int | None = None
    starter: int | None = None          # the run doing a start in progress, and its /proc start time
    starter_time: int | None = None
    live: XmlNode | None = None         # the live <network>
    netns: int | None = None            # inode of the network namespace the network was made in


def record_to_xml(record: NetworkRecord) -> str:
    root = element("networkstatus", state=record.state)
    if record.starter is not None:
        sub(root, "starter", pid=record.starter, starttime=record.starter_time)
    sub(root, "bridge", name=record.bridge, created="yes" if record.bridge_created else "no")
    if record.netns is not None:
        sub(root, "netns", inode=record.netns)
    if record.table:
        sub(root, "firewall", table=record.table)
    if record.dnsmasq:
        sub(root, "dnsmasq", pid=record.pid, starttime=record.starttime)
    if record.live is not None:
        root.append(etree.fromstring(etree.tostring(record.live)))
    return to_string(root)


def record_from_xml(text: str, source: str) -> NetworkRecord:
    root = parse(text, "networkstatus", source)
    bridge = root.find("bridge")
    dnsmasq = root.find("dnsmasq")
    starter = root.find("starter")
    firewall = root.find("firewall")
    netns = root.find("netns")
    return NetworkRecord(
        state=root.get("state", STARTING),
        bridge=bridge.get("name", "") if bridge is not None else "",
        bridge_created=bridge is not None and bridge.get("created") == "yes",
        table=firewall.get("table", "") if firewall is not None else "",
        dnsmasq=dnsmasq is not None,
        pid=_int(dnsmasq.get("pid")) if dnsmasq is not None else None,
        starttime=_int(dnsmasq.get("starttime")) if dnsmasq is not None else None,
        starter=_int(starter.get("pid")) if starter is not None else None,
        starter_time=_int(starter.get("starttime")) if starter is not None else None,
        live=root.find("network"),
        netns=_int(netns.get("inode")) if netns is not None else None,
    )


def current_netns() -> int | None:
    """The inode of the caller's network namespace."""
    try:
        return os.stat("/proc/self/ns/net").st_ino
    except OSError:
        return None


RECORDS: StatusRecords[NetworkRecord] = StatusRecords(
    record_to_xml, record_from_xml, "network status file",
    "remove it and the network's bridge, dnsmasq and nftables table by hand")
load_record = RECORDS.load
save_record = RECORDS.save


def _int(text) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None
