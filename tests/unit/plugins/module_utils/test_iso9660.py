"""The ISO 9660 writer's structures, read back by a small independent reader of ECMA-119, Joliet and SUSP."""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

import pytest

from ansible_collections.virtops.qemu.plugins.module_utils.seed.iso9660 import SECTOR, build_image

SEED = {
    "user-data": b"#cloud-config\n{}\n",
    "meta-data": b'{"instance-id": "iid-1"}\n',
    "network-config": b'{"version": 2}\n',
}


@dataclass
class Record:
    identifier: bytes
    extent: int
    size: int
    flags: int
    date: bytes
    system_use: dict[bytes, list[bytes]] = field(default_factory=dict)


def sector(image: bytes, number: int) -> bytes:
    return image[number * SECTOR:(number + 1) * SECTOR]


def both32(data: bytes, offset: int) -> int:
    little, big = struct.unpack_from("<I", data, offset)[0], struct.unpack_from(">I", data, offset + 4)[0]
    assert little == big, f"both-endian field at {offset} disagrees: {little} != {big}"
    return little


def both16(data: bytes, offset: int) -> int:
    little, big = struct.unpack_from("<H", data, offset)[0], struct.unpack_from(">H", data, offset + 2)[0]
    assert little == big
    return little


def susp_entries(area: bytes) -> dict[bytes, list[bytes]]:
    entries: dict[bytes, list[bytes]] = {}
    offset = 0
    while offset + 4 <= len(area) and area[offset + 2] >= 4:
        length = area[offset + 2]
        assert area[offset + 3] == 1, "every SUSP entry is version 1"
        entries.setdefault(area[offset:offset + 2], []).append(area[offset:offset + length])
        offset += length
    return entries


def parse_record(data: bytes, offset: int) -> Record:
    length = data[offset]
    record = data[offset:offset + length]
    assert length % 2 == 0, "directory records have an even length"
    name_length = record[32]
    identifier = record[33:33 + name_length]
    system_use = record[33 + name_length + (1 - name_length % 2):]
    return Record(identifier, both32(record, 2), both32(record, 10), record[25], record[18:25],
                  susp_entries(system_use))


def read_directory(image: bytes, extent: int, size: int) -> list[Record]:
    """Every record of a directory; a record never crosses a sector boundary, zeros pad a sector's end."""
    data = image[extent * SECTOR:extent * SECTOR + size]
    records, offset = [], 0
    while offset < len(data):
        if data[offset] == 0:
            offset = (offset // SECTOR + 1) * SECTOR
            continue
        assert offset // SECTOR == (offset + data[offset] - 1) // SECTOR, "a record crosses a sector"
        records.append(parse_record(data, offset))
        offset += data[offset]
    return records


def root_of(image: bytes, descriptor_sector: int) -> Record:
    return parse_record(sector(image, descriptor_sector), 156)


def content(image: bytes, record: Record) -> bytes:
    return image[record.extent * SECTOR:record.extent * SECTOR + record.size]


def files_of(records: list[Record]) -> list[Record]:
    return [r for r in records if r.identifier not in (b"\0", b"\1")]


@pytest.fixture(scope="module")
def image() -> bytes:
    return build_image("cidata", SEED)


def test_volume_descriptors(image):
    assert len(image) % SECTOR == 0
    assert image[:16 * SECTOR] == bytes(16 * SECTOR)
    primary, joliet, terminator = sector(image, 16), sector(image, 17), sector(image, 18)
    assert primary[:7] == b"\x01CD001\x01"
    assert primary[40:72] == b"cidata".ljust(32)
    assert both32(primary, 80) * SECTOR == len(image)
    assert both16(primary, 128) == SECTOR
    assert primary[881] == 1
    assert joliet[:7] == b"\x02CD001\x01"
    assert joliet[88:91] == b"%/E"
    assert joliet[40:72] == "cidata".encode("utf-16-be") + b"\0 " * 10
    assert both32(joliet, 80) == both32(primary, 80)
    assert terminator[:7] == b"\xffCD001\x01"


def test_volume_dates_are_fixed_and_well_formed(image):
    for number in (16, 17):
        descriptor = sector(image, number)
        assert descriptor[813:830] == b"2000010100000000\0"  # creation
        assert descriptor[830:847] == b"2000010100000000\0"  # modification
        assert descriptor[847:864] == b"0" * 16 + b"\0"  # expiration: not specified


@pytest.mark.parametrize(("descriptor", "order"), [(16, "primary"), (17, "joliet")])
def test_path_tables_point_at_the_root(image, descriptor, order):
    volume = sector(image, descriptor)
    assert both32(volume, 132) == 10
    little = sector(image, struct.unpack_from("<I", volume, 140)[0])
    big = sector(image, struct.unpack_from(">I", volume, 148)[0])
    root = root_of(image, descriptor)
    assert struct.unpack_from("<BBIH", little) == (1, 0, root.extent, 1)
    assert struct.unpack_from(">BBIH", big) == (1, 0, root.extent, 1)
    assert little[8] == 0 and big[8] == 0


def test_primary_names_are_level_1(image):
    root = root_of(image, 16)
    names = [r.identifier.decode("ascii") for r in files_of(read_directory(image, root.extent, root.size))]
    assert names == ["META_DAT.;1", "NETWORK_.;1", "USER_DAT.;1"]
    for name in names:
        assert re.fullmatch(r"[A-Z0-9_]{1,8}\.[A-Z0-9_]{0,3};1", name)


def test_rock_ridge_gives_the_exact_names_and_modes(image):
    root = root_of(image, 16)
    records = read_directory(image, root.extent, root.size)
    dot = records[0]
    assert dot.identifier == b"\0"
    assert dot.system_use[b"SP"] == [b"SP\x07\x01\xbe\xef\x00"]
    continuation = dot.system_use[b"CE"][0]
    block, offset, length = both32(continuation, 4), both32(continuation, 12), both32(continuation, 20)
    extension = susp_entries(image[block * SECTOR + offset:block * SECTOR + offset + length])[b"ER"][0]
    assert extension[8:8 + extension[4]] == b"RRIP_1991A"
    assert both32(dot.system_use[b"PX"][0], 4) == 0o040555
    by_name = {r.system_use[b"NM"][0][5:].decode(): r for r in files_of(records)}
    assert sorted(by_name) == sorted(SEED)
    for name, record in by_name.items():
        assert both32(record.system_use[b"PX"][0], 4) == 0o100444
        assert content(image, record) == SEED[name]


def test_joliet_gives_the_exact_names(image):
    root = root_of(image, 17)
    records = files_of(read_directory(image, root.extent, root.size))
    names = [r.identifier.decode("utf-16-be") for r in records]
    assert names == ["meta-data;1", "network-config;1", "user-data;1"]
    for record in records:
        assert content(image, record) == SEED[record.identifier.decode("utf-16-be")[:-2]]


def test_both_trees_share_the_file_data(image):
    primary, joliet = root_of(image, 16), root_of(image, 17)
    assert primary.extent != joliet.extent
    extents = {(r.extent, r.size) for r in files_of(read_directory(image, primary.extent, primary.size))}
    assert extents == {(r.extent, r.size) for r in files_of(read_directory(image, joliet.extent, joliet.size))}


def test_records_carry_the_fixed_date(image):
    root = root_of(image, 16)
    for record in read_directory(image, root.extent, root.size):
        assert record.date == bytes([100, 1, 1, 0, 0, 0, 0])


def test_same_content_same_bytes():
    again = build_image("cidata", dict(reversed(list(SEED.items()))))
    assert again == build_image("cidata", SEED)
    assert build_image("cidata", {**SEED, "user-data": b"#cloud-config\n{} \n"}) != again


def test_a_directory_larger_than_a_sector_keeps_every_record_whole():
    files = {f"file-number-{i:03d}-with-a-long-name.txt": f"{i}\n".encode() for i in range(80)}
    image = build_image("cidata", files)
    for descriptor in (16, 17):
        root = root_of(image, descriptor)
        assert root.size > SECTOR
        records = files_of(read_directory(image, root.extent, root.size))
        assert len(records) == len(files)
    primary = root_of(image, 16)
    for record in files_of(read_directory(image, primary.extent, primary.size)):
        assert content(image, record) == files[record.system_use[b"NM"][0][5:].decode()]


def test_level_1_names_stay_unique():
    image = build_image("cidata", {"network-config": b"a", "network-config2": b"b", "network.cfg": b"c"})
    root = root_of(image, 16)
    records = files_of(read_directory(image, root.extent, root.size))
    identifiers = [r.identifier for r in records]
    assert len(set(identifiers)) == 3
    assert sorted(identifiers) == identifiers
    assert {r.system_use[b"NM"][0][5:] for r in records} == {b"network-config", b"network-config2", b"network.cfg"}


def test_files_start_on_a_sector_and_an_empty_file_has_no_data():
    image = build_image("cidata", {"big": bytes(range(256)) * 20, "empty": b"", "small": b"x"})
    root = root_of(image, 17)
    records = {r.identifier.decode("utf-16-be"): r for r in files_of(read_directory(image, root.extent, root.size))}
    assert content(image, records["big;1"]) == bytes(range(256)) * 20
    assert records["empty;1"].size == 0 and records["empty;1"].extent == 0
    assert records["small;1"].extent == records["big;1"].extent + 3
    assert both32(sector(image, 16), 80) == records["small;1"].extent + 1


@pytest.mark.parametrize("name", ["", "a/b", ".hidden", "-x", "n\u00e4me", "with space", "x" * 65])
def test_names_it_cannot_write(name):
    with pytest.raises(ValueError, match="file name"):
        build_image("cidata", {name: b""})


@pytest.mark.parametrize("label", ["", "c" * 33, "ci data"])
def test_labels_it_cannot_write(label):
    with pytest.raises(ValueError, match="volume identifier"):
        build_image(label, SEED)
