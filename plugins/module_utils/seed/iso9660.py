# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small ISO 9660 image writer: one flat directory of small files, with exact names.

ECMA-119 level 1 names are 8.3, upper case and without hyphens, so every file
is also named in two extensions that readers prefer: Rock Ridge (the POSIX
name in an NM entry; Linux, the BSDs) and Joliet (a second directory tree in
UCS-2; Windows, and Linux with ``norock``).  The image is built in memory and
is the same bytes for the same volume identifier, files and timestamp.

Layout, in 2048-byte sectors::

    0-15   system area (zeros)
    16     primary volume descriptor
    17     Joliet supplementary volume descriptor
    18     volume descriptor set terminator
    19-22  path tables: primary L and M, Joliet L and M
    23     Rock Ridge continuation area (the ER entry)
    24...  primary root directory, Joliet root directory, file data

Private to the collection.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

SECTOR = 2048
FIXED_TIME = datetime(2000, 1, 1, tzinfo=timezone.utc)
MAX_NAME = 64  # Joliet's limit, in characters

_FIRST_DESCRIPTOR = 16
_PATH_TABLES = 19
_CONTINUATION = 23
_FIRST_DIRECTORY = 24
_PATH_TABLE_SIZE = 10  # the root alone
_DIRECTORY = 0x02
_FILE_MODE = 0o100444
_DIRECTORY_MODE = 0o040555
_JOLIET_UCS2_LEVEL3 = b"%/E"
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")

# Rock Ridge 1.09 (RRIP_1991A): its ER entry names the extension; readers
# (Linux among them) use Rock Ridge only when they find it in the root's "." record.
_RRIP_ID = b"RRIP_1991A"
_RRIP_DESCRIPTOR = b"THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS"
_RRIP_SOURCE = (b"PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE PUBLISHER IDENTIFIER IN "
                b"PRIMARY VOLUME DESCRIPTOR FOR CONTACT INFORMATION.")
_RR_PX, _RR_NM = 0x01, 0x08


@dataclass(frozen=True)
class _File:
    name: str
    iso_name: str
    data: bytes
    extent: int


def build_image(volume_id: str, files: Mapping[str, bytes], when: datetime = FIXED_TIME) -> bytes:
    """An ISO 9660 image labelled ``volume_id`` holding ``files`` (name to content) in its root.

    Names are 1 to 64 characters of letters, digits, ``_``, ``-`` and ``.``,
    not starting with ``.`` or ``-``; ``volume_id`` is 1 to 32 such
    characters.  ``when`` (a UTC time) dates the volume and every record.
    Raises ValueError for a name or label it cannot write.
    """
    _check_label(volume_id)
    for name in files:
        _check_name(name)
    names = _level1_names(sorted(files))
    unplaced = _place(files, names, 0)
    primary_sectors = _sectors(_primary_records(unplaced, 0, 0, when))
    joliet_sectors = _sectors(_joliet_records(unplaced, 0, 0, when))
    primary_root = _FIRST_DIRECTORY
    joliet_root = primary_root + primary_sectors
    placed = _place(files, names, joliet_root + joliet_sectors)
    total = max([joliet_root + joliet_sectors] + [f.extent + _count(len(f.data)) for f in placed])
    image = [
        bytes(SECTOR * _FIRST_DESCRIPTOR),
        _volume_descriptor(volume_id, total, primary_root, primary_sectors, when, joliet=False),
        _volume_descriptor(volume_id, total, joliet_root, joliet_sectors, when, joliet=True),
        _terminator(),
        _sector(_path_table(primary_root, "<")), _sector(_path_table(primary_root, ">")),
        _sector(_path_table(joliet_root, "<")), _sector(_path_table(joliet_root, ">")),
        _sector(_extension_reference()),
        _directory(_primary_records(placed, primary_root, primary_sectors * SECTOR, when)),
        _directory(_joliet_records(placed, joliet_root, joliet_sectors * SECTOR, when)),
    ]
    image += [_sector(f.data) for f in placed if f.data]
    return b"".join(image)


# -- names -------------------------------------------------------------------

def _check_label(volume_id: str) -> None:
    if not 0 < len(volume_id) <= 32 or not _NAME.fullmatch(volume_id):
        raise ValueError(f"volume identifier {volume_id!r}: 1 to 32 letters, digits, '_', '-' or '.'")


def _check_name(name: str) -> None:
    if not 0 < len(name) <= MAX_NAME or not _NAME.fullmatch(name):
        raise ValueError(f"file name {name!r}: 1 to {MAX_NAME} letters, digits, '_', '-' or '.', "
                         "not starting with '.' or '-'")


def _level1_names(names: list[str]) -> dict[str, str]:
    """Each name's unique ECMA-119 level 1 identifier: ``user-data`` is ``USER_DAT.;1``."""
    chosen: dict[str, str] = {}
    for name in names:
        stem, _dot, extension = name.rpartition(".") if "." in name else (name, "", "")
        stem, extension = _d_characters(stem)[:8] or "_", _d_characters(extension)[:3]
        candidate, number = stem, 0
        while f"{candidate}.{extension};1" in chosen.values():
            number += 1
            candidate = stem[:8 - len(str(number))] + str(number)
        chosen[name] = f"{candidate}.{extension};1"
    return chosen


def _d_characters(text: str) -> str:
    return re.sub(r"[^A-Z0-9_]", "_", text.upper())


def _sort_key(identifier: str) -> tuple[str, str]:
    """ECMA-119 9.3 order: by name, then extension, the shorter padded with spaces."""
    name = identifier.partition(";")[0]
    stem, _dot, extension = name.rpartition(".") if "." in name else (name, "", "")
    return stem.ljust(MAX_NAME), extension.ljust(MAX_NAME)


# -- layout ------------------------------------------------------------------

def _count(size: int) -> int:
    return -(-size // SECTOR)


def _place(files: Mapping[str, bytes], names: dict[str, str], first: int) -> list[_File]:
    """Each file with its first sector, in name order; an empty file takes no sector."""
    placed, cursor = [], first
    for name in sorted(files):
        data = bytes(files[name])
        placed.append(_File(name, names[name], data, cursor if data else 0))
        cursor += _count(len(data))
    return placed


def _sector(data: bytes) -> bytes:
    return data + bytes(-len(data) % SECTOR)


def _sectors(records: list[bytes]) -> int:
    return _count(len(_directory(records)))


def _directory(records: list[bytes]) -> bytes:
    """The records packed into sectors; a record never crosses a sector boundary (ECMA-119 6.8.1.1)."""
    out = bytearray()
    for record in records:
        if len(out) % SECTOR + len(record) > SECTOR:
            out += bytes(-len(out) % SECTOR)
        out += record
    return _sector(bytes(out))


# -- directory records -------------------------------------------------------

def _both16(value: int) -> bytes:
    return struct.pack("<H", value) + struct.pack(">H", value)


def _both32(value: int) -> bytes:
    return struct.pack("<I", value) + struct.pack(">I", value)


def _record_date(when: datetime) -> bytes:
    when = when.astimezone(timezone.utc)
    return bytes([when.year - 1900, when.month, when.day, when.hour, when.minute, when.second, 0])


def _record(identifier: bytes, extent: int, size: int, when: datetime, flags: int = 0,
            system_use: bytes = b"") -> bytes:
    """One directory record (ECMA-119 9.1), ``system_use`` holding Rock Ridge entries."""
    padding = b"\0" if len(identifier) % 2 == 0 else b""
    if (33 + len(identifier) + len(padding) + len(system_use)) % 2:
        system_use += b"\0"
    length = 33 + len(identifier) + len(padding) + len(system_use)
    if length > 255:
        raise ValueError(f"directory record of {identifier!r} is too long")
    return (bytes([length, 0]) + _both32(extent) + _both32(size) + _record_date(when)
            + bytes([flags, 0, 0]) + _both16(1) + bytes([len(identifier)]) + identifier + padding
            + system_use)


def _self_and_parent(extent: int, size: int, when: datetime, dot_use: bytes = b"",
                     dotdot_use: bytes = b"") -> list[bytes]:
    # The root is its own parent.
    return [_record(b"\0", extent, size, when, _DIRECTORY, dot_use),
            _record(b"\1", extent, size, when, _DIRECTORY, dotdot_use)]


def _primary_records(files: list[_File], extent: int, size: int, when: datetime) -> list[bytes]:
    """The primary root: level 1 identifiers, with the Rock Ridge entries that carry the real names."""
    directory = _rr(_RR_PX) + _px(_DIRECTORY_MODE, 2)
    records = _self_and_parent(extent, size, when, _sp() + directory + _ce(), directory)
    for file in sorted(files, key=lambda f: _sort_key(f.iso_name)):
        rock = _rr(_RR_PX | _RR_NM) + _px(_FILE_MODE, 1) + _nm(file.name)
        records.append(_record(file.iso_name.encode("ascii"), file.extent, len(file.data), when,
                               system_use=rock))
    return records


def _joliet_records(files: list[_File], extent: int, size: int, when: datetime) -> list[bytes]:
    """The Joliet root: the same files under their names in UCS-2 (big endian)."""
    records = _self_and_parent(extent, size, when)
    for file in sorted(files, key=lambda f: _sort_key(f.name + ";1")):
        records.append(_record(f"{file.name};1".encode("utf-16-be"), file.extent, len(file.data), when))
    return records


# -- Rock Ridge (SUSP entries) -----------------------------------------------

def _sp() -> bytes:
    """SUSP indicator: its check bytes tell readers that system use entries follow."""
    return b"SP" + bytes([7, 1, 0xBE, 0xEF, 0])


def _ce() -> bytes:
    """Continuation: the ER entry is too long for the root's "." record and lives in its own sector."""
    return b"CE" + bytes([28, 1]) + _both32(_CONTINUATION) + _both32(0) + _both32(len(_extension_reference()))


def _extension_reference() -> bytes:
    body = _RRIP_ID + _RRIP_DESCRIPTOR + _RRIP_SOURCE
    return (b"ER" + bytes([8 + len(body), 1, len(_RRIP_ID), len(_RRIP_DESCRIPTOR), len(_RRIP_SOURCE), 1])
            + body)


def _rr(flags: int) -> bytes:
    """Rock Ridge 1.09's list of the entries present in this record."""
    return b"RR" + bytes([5, 1, flags])


def _px(mode: int, links: int) -> bytes:
    """POSIX attributes: mode, link count, owner and group root."""
    return b"PX" + bytes([36, 1]) + _both32(mode) + _both32(links) + _both32(0) + _both32(0)


def _nm(name: str) -> bytes:
    encoded = name.encode("ascii")
    return b"NM" + bytes([5 + len(encoded), 1, 0]) + encoded


# -- volume descriptors and path tables --------------------------------------

def _volume_descriptor(volume_id: str, total: int, root: int, root_sectors: int, when: datetime,
                       joliet: bool) -> bytes:
    """The primary (ECMA-119 8.4) or Joliet supplementary (8.5) volume descriptor."""
    text = _ucs2_field if joliet else _ascii_field
    path_tables = _PATH_TABLES + (2 if joliet else 0)
    descriptor = bytearray(SECTOR)
    descriptor[0:7] = bytes([2 if joliet else 1]) + b"CD001" + b"\1"
    descriptor[8:40] = text("", 32)
    # ECMA-119 wants upper case here, but cloud-init's own tools write "cidata" and readers take it;
    # Joliet's 32 bytes hold 16 UCS-2 characters, so a longer label is cut there.
    descriptor[40:72] = text(volume_id, 32)
    descriptor[80:88] = _both32(total)
    if joliet:
        descriptor[88:91] = _JOLIET_UCS2_LEVEL3
    descriptor[120:128] = _both16(1) + _both16(1)
    descriptor[128:132] = _both16(SECTOR)
    descriptor[132:140] = _both32(_PATH_TABLE_SIZE)
    descriptor[140:144] = struct.pack("<I", path_tables)
    descriptor[148:152] = struct.pack(">I", path_tables + 1)
    descriptor[156:190] = _record(b"\0", root, root_sectors * SECTOR, when, _DIRECTORY)
    descriptor[190:702] = text("", 128) * 4
    descriptor[702:813] = text("", 37) * 3
    descriptor[813:881] = _volume_date(when) * 2 + _volume_date(None) * 2
    descriptor[881] = 1
    return bytes(descriptor)


def _ascii_field(text: str, size: int) -> bytes:
    return text.encode("ascii").ljust(size, b" ")


def _ucs2_field(text: str, size: int) -> bytes:
    return (text.encode("utf-16-be") + b"\0 " * size)[:size]


def _volume_date(when: datetime | None) -> bytes:
    """ECMA-119 8.4.26.1: sixteen digits and an offset from GMT; all zeros for "not specified"."""
    if when is None:
        return b"0" * 16 + b"\0"
    return when.astimezone(timezone.utc).strftime("%Y%m%d%H%M%S00").encode("ascii") + b"\0"


def _path_table(root: int, order: str) -> bytes:
    """A path table holding the root alone (ECMA-119 9.4); ``order`` "<" for type L, ">" for type M."""
    return struct.pack(f"{order}BBIH", 1, 0, root, 1) + b"\0\0"


def _terminator() -> bytes:
    return _sector(b"\xffCD001\1")
