# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Status records of the embedded driver's active storage pools (``run/storage/NAME.xml``).

A ``<poolstatus>`` record says that the pool is active, whether its start
mounted a filesystem, and the ``<pool>`` it was started with; it is
written once the start has done its work, so a pool is never recorded
active before it is.  Private to the collection.
"""

from __future__ import annotations

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


@dataclass
class PoolRecord:
    mounted: bool = False               # the start mounted the pool's filesystem on its target
    live: XmlNode | None = None         # the <pool> the pool was started with


def record_to_xml(record: PoolRecord) -> str:
    root = element("poolstatus", state="active")
    if record.mounted:
        sub(root, "mounted")
    if record.live is not None:
        root.append(etree.fromstring(etree.tostring(record.live)))
    return to_string(root)


def record_from_xml(text: str, source: str) -> PoolRecord:
    root = parse(text, "poolstatus", source)
    return PoolRecord(mounted=root.find("mounted") is not None, live=root.find("pool"))


RECORDS: StatusRecords[PoolRecord] = StatusRecords(
    record_to_xml, record_from_xml, "storage pool status file",
    "remove it (and unmount the pool's filesystem if it has one)")
load_record = RECORDS.load
save_record = RECORDS.save
