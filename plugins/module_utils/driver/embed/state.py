# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Durable state of the embedded driver: status XML.

``StatusRecords`` keeps the status records of any kind (domains here,
networks in netstate.py, storage pools in poolstate.py): one XML file per
active object, written atomically and privately, read back into the kind's
record dataclass, and an unreadable one reported with what to do about it.

Without a daemon every module run must find a running QEMU again from what
an earlier run wrote: the status XML under ``run/qemu`` in libvirt's
``<domstatus>`` shape (state, reason, pid, monitor socket, taints, taps and
the live domain XML).  While a start is under way the record is paused with
reason "starting up" and names the process doing the start, so that a later
run can tell a start in progress from one whose run died.  A shut-off domain
keeps a small status file that only remembers why it stopped.  Private to the
collection.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError, InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.fileio import atomic_write, read_text, remove_quietly
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import element, etree, parse, sub, to_string

PRIVATE = 0o600

Record = TypeVar("Record")


class StatusRecords(Generic[Record]):
    """Load and save one kind's status records, each a ``Record`` dataclass.

    ``to_xml`` and ``from_xml`` (text, path) give the on-disk document;
    ``remedy`` ends the message about an unreadable file, saying what the
    user must clean up by hand.
    """

    def __init__(self, to_xml: Callable[[Record], str], from_xml: Callable[[str, str], Record], what: str,
                 remedy: str):
        self.to_xml = to_xml
        self.from_xml = from_xml
        self.what = what
        self.remedy = remedy

    def load(self, path: str) -> Record | None:
        """The record at ``path``; None when there is none, BackendError when it cannot be read."""
        text = read_text(path)
        if text is None:
            return None
        try:
            return self.from_xml(text, path)
        except (InvalidInput, ValueError) as exc:     # ValueError: bytes that are not UTF-8
            raise BackendError(f"{self.what} {path} is unreadable ({exc}); {self.remedy}") from exc

    def save(self, path: str, record: Record, durable: bool = True) -> None:
        """Replace the record atomically, owner only.

        ``durable=False`` for a record whose loss in a host crash costs nothing (see atomic_write).
        """
        atomic_write(path, self.to_xml(record), mode=PRIVATE, durable=durable)

    @staticmethod
    def remove(path: str) -> None:
        remove_quietly(path)


# -- status XML -------------------------------------------------------------
@dataclass
class DomainRecord:
    """What run/qemu/<name>.xml says about a domain."""

    state: str                              # libvirt state word
    reason: str
    pid: int | None = None
    starttime: int | None = None            # /proc/<pid>/stat start time: guards against pid reuse
    started: str = ""                       # ISO 8601 wall-clock start
    domain_id: int | None = None
    monitor: str = ""
    domain_dir: str = ""
    taints: list[str] = field(default_factory=list)
    taps: list[str] = field(default_factory=list)
    live: etree._Element | None = None      # the live <domain> element
    starter: int | None = None              # pid of the run doing a start in progress ...
    starter_time: int | None = None         # ... and its /proc start time
    security: dict[str, str] = field(default_factory=dict)     # what security.release must undo

    @property
    def active(self) -> bool:
        """A QEMU process exists (or is being started); a panicked guest kept for inspection counts."""
        return self.state != "shutoff"


def record_to_xml(record: DomainRecord) -> str:
    root = element("domstatus", state=record.state, reason=record.reason, pid=record.pid)
    for flag in record.taints:
        sub(root, "taint", flag=flag)
    if record.monitor:
        sub(root, "monitor", path=record.monitor, type="unix")
    if record.domain_dir:
        sub(root, "libDir", path=record.domain_dir)
    if record.pid is not None:
        sub(root, "process", starttime=record.starttime, started=record.started)
    for tap in record.taps:
        sub(root, "tap", name=tap)
    if record.starter is not None:
        sub(root, "starter", pid=record.starter, starttime=record.starter_time)
    if record.security:
        sub(root, "security", **record.security)
    if record.live is not None:
        root.append(_copy(record.live))
    return to_string(root)


def record_from_xml(text: str, source: str) -> DomainRecord:
    root = parse(text, "domstatus", source)
    process = root.find("process")
    starter = root.find("starter")
    live = root.find("domain")
    security = root.find("security")
    return DomainRecord(
        state=root.get("state", "nostate"),
        reason=root.get("reason", "unknown"),
        pid=_int(root.get("pid")),
        starttime=_int(process.get("starttime")) if process is not None else None,
        started=process.get("started", "") if process is not None else "",
        domain_id=_int(live.get("id")) if live is not None else None,
        monitor=_attr(root, "monitor", "path"),
        domain_dir=_attr(root, "libDir", "path"),
        taints=[node.get("flag") for node in root.findall("taint") if node.get("flag")],
        taps=[node.get("name") for node in root.findall("tap") if node.get("name")],
        live=live,
        starter=_int(starter.get("pid")) if starter is not None else None,
        starter_time=_int(starter.get("starttime")) if starter is not None else None,
        security=dict(security.attrib) if security is not None else {},
    )


RECORDS: StatusRecords[DomainRecord] = StatusRecords(record_to_xml, record_from_xml, "status file",
                                                     "remove it if no QEMU runs")
load_record = RECORDS.load
save_record = RECORDS.save


def _attr(root, tag: str, name: str) -> str:
    node = root.find(tag)
    return node.get(name, "") if node is not None else ""


def _int(text) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def _copy(node):
    return etree.fromstring(etree.tostring(node))
