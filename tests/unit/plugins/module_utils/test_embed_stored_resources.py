# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the embedded driver's kinds share: the status-record store and the define, read and undefine
skeletons of StoredResources, asked the same questions for domains, networks and storage pools.
Nothing here starts a QEMU or touches the host's network."""

from __future__ import annotations

import os
import signal

import pytest
from qemu72_caps import CAPS

from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import netstate, poolstate, state
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.backend import EmbedDriver
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.store import DefinitionStore, StoredResources
from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError, Conflict, InvalidInput, NotFound
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import parse, uuid_of
from ansible_collections.virtops.qemu.plugins.module_utils.uri import parse_uri

UUID = "0b3c2c59-5f4a-4d8a-9e4c-3c5d7b1c0a01"
OTHER_UUID = "5e1f6a52-8d4a-4c47-9d8e-2b1f3c4d5e6f"
KINDS = ["domain", "network", "pool"]


@pytest.fixture
def root(short_tmp_path):
    return short_tmp_path


@pytest.fixture
def driver(root):
    with EmbedDriver(parse_uri(f"qemu:///embed?root={root}")) as opened:
        opened.caps_for = lambda domain: CAPS       # post-parse without probing a QEMU
        yield opened


def objects_of(driver, kind: str) -> StoredResources:
    return {"domain": driver.domains, "network": driver.networks, "pool": driver.pools}[kind]


def definition(root, kind: str, name: str, uuid: str | None = UUID) -> str:
    """A definition of ``kind`` that the embedded driver accepts; each name gets its own pool target."""
    uuid_element = f"<uuid>{uuid}</uuid>" if uuid else ""
    if kind == "domain":
        return (f"<domain type='qemu'><name>{name}</name>{uuid_element}<memory unit='MiB'>64</memory>"
                "<os><type arch='x86_64'>hvm</type></os></domain>")
    if kind == "network":
        return f"<network><name>{name}</name>{uuid_element}<ip address='10.1.2.1' prefix='24'/></network>"
    return (f"<pool type='dir'><name>{name}</name>{uuid_element}"
            f"<target><path>{root}/pool-{name}</path></target></pool>")


# -- the status-record store ----------------------------------------------------------
def _records():
    live = {tag: parse(f"<{tag}><name>x</name><uuid>{UUID}</uuid></{tag}>", tag) for tag in KINDS}
    return [
        ("domstatus", state.RECORDS, state.DomainRecord("running", "booted", pid=10, starttime=20, domain_id=3,
                                                        monitor="/r/m.sock", taps=["vnet0"], live=live["domain"])),
        ("networkstatus", netstate.RECORDS, netstate.NetworkRecord(netstate.ACTIVE, "virbr3", True,
                                                                   table="virtops_virbr3", live=live["network"])),
        ("poolstatus", poolstate.RECORDS, poolstate.PoolRecord(mounted=True, live=live["pool"])),
    ]


@pytest.mark.parametrize("tag, records, record", _records(), ids=KINDS)
def test_a_record_round_trips_in_its_kinds_document(tmp_path, tag, records, record):
    path = str(tmp_path / "x.xml")
    records.save(path, record)
    assert parse((tmp_path / "x.xml").read_text(), tag) is not None
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o600)
    back = records.load(path)
    assert type(back) is type(record)
    assert uuid_of(back.live) == UUID
    assert {k: v for k, v in vars(back).items() if k not in ("live", "domain_id")} == \
        {k: v for k, v in vars(record).items() if k not in ("live", "domain_id")}
    assert records.load(str(tmp_path / "missing.xml")) is None
    records.remove(path)
    assert not os.path.exists(path)


@pytest.mark.parametrize("tag, records, record", _records(), ids=KINDS)
def test_an_unreadable_record_names_its_file_and_what_to_do(tmp_path, tag, records, record):
    path = tmp_path / "x.xml"
    path.write_text(f"<{tag} state='active'>")
    with pytest.raises(BackendError, match=f"{records.what} {path} is unreadable .*; remove it"):
        records.load(str(path))


@pytest.mark.parametrize("tag, records, record", _records(), ids=KINDS)
def test_a_write_killed_half_way_leaves_the_old_record(root, tag, records, record):
    """Killed after the new record is on disk under its temporary name, before the rename."""
    kind = KINDS[[t for t, _r, _x in _records()].index(tag)]
    with EmbedDriver(parse_uri(f"qemu:///embed?root={root}")) as driver:
        driver.ensure_tree()
    paths = driver.layout.kinds[kind]
    path = paths.status_file("x")
    records.save(path, record)
    before = open(path, encoding="utf-8").read()
    changed = records.from_xml(before, path)
    changed.live = parse(f"<{kind}><name>x</name><uuid>{OTHER_UUID}</uuid></{kind}>", kind)
    child = os.fork()
    if child == 0:      # pragma: no cover - runs in the child, which never returns
        os.replace = lambda *args: os.kill(os.getpid(), signal.SIGKILL)
        records.save(path, changed)
        os._exit(0)
    _pid, status = os.waitpid(child, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert open(path, encoding="utf-8").read() == before
    assert uuid_of(records.load(path).live) == UUID
    leftovers = [f for f in os.listdir(paths.run_dir) if f.startswith(".x.xml.")]
    assert len(leftovers) == 1
    DefinitionStore(paths, "qemu:///embed", lambda: None).remove_stale_temporaries()
    assert [f for f in os.listdir(paths.run_dir) if f.startswith(".x.xml.")] == []
    assert records.load(path) is not None


# -- the define skeleton, the same for each kind ---------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_a_bad_name_is_refused_before_anything_is_written(driver, root, kind):
    objects = objects_of(driver, kind)
    with pytest.raises(InvalidInput, match=f"'a/b' is not a valid {kind} name") as raised:
        objects.define(definition(root, kind, "a/b"))
    assert raised.value.option == "name"
    with pytest.raises(InvalidInput, match=f"a {kind} name is required"):
        objects.define(definition(root, kind, ""))
    assert objects.names() == []
    assert not os.path.exists(os.path.join(root, "etc"))


@pytest.mark.parametrize("kind", KINDS)
def test_a_uuid_another_object_has_is_refused(driver, root, kind):
    objects = objects_of(driver, kind)
    objects.define(definition(root, kind, "first"))
    with pytest.raises(Conflict, match=f"^{kind} 'first' already has uuid {UUID}; a {kind} cannot be renamed"):
        objects.define(definition(root, kind, "second", UUID.upper()))
    assert objects.names() == ["first"]
    assert not os.path.exists(objects.paths.lock_file("second"))


@pytest.mark.parametrize("kind", KINDS)
def test_a_redefinition_keeps_the_uuid_and_refuses_another(driver, root, kind):
    objects = objects_of(driver, kind)
    objects.define(definition(root, kind, "one", uuid=None))
    made = uuid_of(parse(objects.xml("one"), kind))
    assert made
    objects.define(definition(root, kind, "one", uuid=None))
    assert uuid_of(parse(objects.xml("one"), kind)) == made
    objects.define(definition(root, kind, "one", uuid=made.upper()))     # the same uuid, spelt otherwise
    with pytest.raises(Conflict, match=f"^{kind} 'one' already exists with uuid {made}"):
        objects.define(definition(root, kind, "one", uuid=OTHER_UUID))


@pytest.mark.parametrize("kind", KINDS)
def test_an_unknown_name_is_not_found_by_read_and_undefine(driver, root, kind):
    objects = objects_of(driver, kind)
    with pytest.raises(NotFound, match=f"^{kind} 'ghost' is not defined"):
        objects.xml("ghost")
    with pytest.raises(NotFound, match=f"^{kind} 'ghost' is not defined"):
        objects.undefine("ghost")
    assert not os.path.exists(objects.paths.lock_file("ghost"))


@pytest.mark.parametrize("kind", KINDS)
def test_undefining_an_inactive_object_removes_its_definition_and_lock(driver, root, kind):
    objects = objects_of(driver, kind)
    objects.define(definition(root, kind, "gone"))
    assert os.path.exists(objects.paths.lock_file("gone"))
    objects.undefine("gone")
    assert objects.names() == [] and not objects.exists("gone")
    assert not os.path.exists(objects.paths.config_file("gone"))
    assert not os.path.exists(objects.paths.lock_file("gone"))


@pytest.mark.parametrize("kind", ["network", "pool"])
def test_the_inactive_xml_of_a_transient_object_is_its_live_xml(driver, root, kind):
    """An active network or pool whose definition was removed; a network made in another namespace,
    so that nothing looks at the host's links."""
    objects = objects_of(driver, kind)
    driver.ensure_tree()
    live = parse(definition(root, kind, "t"), kind)
    if kind == "network":
        record = netstate.NetworkRecord(netstate.ACTIVE, "virbr9", True, live=live, netns=1)
    else:
        os.mkdir(os.path.join(root, "pool-t"))
        record = poolstate.PoolRecord(live=live)
    objects.records.save(objects.paths.status_file("t"), record)
    assert objects.names() == ["t"]
    assert uuid_of(parse(objects.xml("t"), kind)) == UUID
    assert uuid_of(parse(objects.xml("t", inactive=False), kind)) == UUID


def test_a_domain_check_definition_refuses_what_define_refuses_and_writes_nothing(driver, root):
    driver.domains.define(definition(root, "domain", "first"))
    with pytest.raises(Conflict, match="already has uuid"):
        driver.domains.check_definition(definition(root, "domain", "second"))
    driver.domains.check_definition(definition(root, "domain", "second", OTHER_UUID))
    assert driver.domains.names() == ["first"]
