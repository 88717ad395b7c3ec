# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The embedded driver's definition store, for any kind of object (a network here)."""

from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.layout import Layout
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.store import DefinitionStore
from ansible_collections.virtops.qemu.plugins.module_utils.errors import (
    BackendError,
    Conflict,
    InvalidInput,
    NotFound,
    UnreadableDefinition,
)
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import parse

UUID = "0b3c2c59-5f4a-4d8a-9e4c-3c5d7b1c0a01"


def _network(name: str, uuid: str = UUID):
    return parse(f"<network><name>{name}</name><uuid>{uuid}</uuid></network>", "network")


def _store(root, read_only: bool = False) -> DefinitionStore:
    layout = Layout(str(root))

    def prepare():
        if read_only:
            raise BackendError("read-only")
        layout.ensure_tree()
    return DefinitionStore(layout.kinds["network"], f"qemu:///embed?root={root}", prepare, read_only)


def _define(store: DefinitionStore, tree) -> None:
    name = tree.findtext("name")
    with store.lock(name, store.defined, creating=True):
        store.check_identity(name, tree, store.read(name))
        store.write(name, tree)


def test_a_definition_is_written_privately_under_its_kind(tmp_path):
    store = _store(tmp_path / "r")
    _define(store, _network("net1"))
    path = tmp_path / "r" / "etc" / "network" / "net1.xml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert store.read("net1").findtext("uuid") == UUID
    assert store.names_on_disk() == {"net1"}
    assert (tmp_path / "r" / "run" / "network" / "locks" / "network" / "net1.lock").exists()


def test_an_unknown_name_is_not_found_and_creates_nothing(tmp_path):
    store = _store(tmp_path / "r")
    with pytest.raises(NotFound, match="^network 'ghost' is not defined in qemu:///embed"):
        with store.lock("ghost", store.defined):
            pass
    assert not (tmp_path / "r").exists()
    assert store.read("ghost") is None and store.names_on_disk() == set()


def test_a_bad_name_is_refused_with_the_kind(tmp_path):
    with pytest.raises(InvalidInput, match="is not a valid network name"):
        with _store(tmp_path).lock("../x", lambda _name: True, creating=True):
            pass


def test_a_read_only_store_locks_existing_objects_without_creating_the_tree(tmp_path):
    _define(_store(tmp_path / "r"), _network("net1"))
    reader = _store(tmp_path / "r", read_only=True)
    with reader.lock("net1", reader.defined):
        assert reader.read("net1") is not None
    with pytest.raises(BackendError, match="read-only"):
        with reader.lock("net2", reader.defined, creating=True):
            pass


def test_autostart_link_follows_the_definition_and_goes_with_it(tmp_path):
    store = _store(tmp_path / "r")
    _define(store, _network("net1"))
    with store.lock("net1", store.defined):
        store.set_autostart("net1", True)
    link = tmp_path / "r" / "etc" / "network" / "autostart" / "net1.xml"
    assert store.autostart("net1") and os.readlink(link) == str(tmp_path / "r" / "etc" / "network" / "net1.xml")
    with store.lock("net1", store.defined):
        store.remove("net1")
        store.remove_lock("net1")
    assert not store.autostart("net1") and not store.defined("net1")
    assert not (tmp_path / "r" / "run" / "network" / "locks" / "network" / "net1.lock").exists()
    with pytest.raises(NotFound, match="no persistent definition"):
        store.set_autostart("net1", True)


def test_uuid_conflicts_are_refused(tmp_path):
    store = _store(tmp_path / "r")
    _define(store, _network("net1"))
    with pytest.raises(Conflict, match="^network 'net1' already has uuid"):
        _define(store, _network("net2"))
    with pytest.raises(Conflict, match="^network 'net1' already exists with uuid"):
        _define(store, _network("net1", "0b3c2c59-5f4a-4d8a-9e4c-3c5d7b1c0a02"))
    assert store.names_on_disk() == {"net1"}


def test_a_failed_define_leaves_no_lock_file_for_a_new_name(tmp_path):
    store = _store(tmp_path / "r")
    _define(store, _network("net1"))
    locks = tmp_path / "r" / "run" / "network" / "locks" / "network"
    with pytest.raises(Conflict):
        _define(store, _network("net2"))
    with pytest.raises(Conflict):
        _define(store, _network("net1", "0b3c2c59-5f4a-4d8a-9e4c-3c5d7b1c0a02"))
    assert sorted(os.listdir(locks)) == ["net1.lock"]


def test_an_unreadable_definition_names_its_file(tmp_path):
    store = _store(tmp_path / "r")
    _define(store, _network("net1"))
    (tmp_path / "r" / "etc" / "network" / "net1.xml").write_text("<network><name>")
    with pytest.raises(UnreadableDefinition, match="^network 'net1': definition file .*net1.xml cannot be parsed"):
        store.read("net1")


def test_os_errors_leave_as_backend_errors_naming_the_path(tmp_path):
    store = _store(tmp_path / "r")
    _define(store, _network("net1"))
    autostart_dir = tmp_path / "r" / "etc" / "network" / "autostart"
    autostart_dir.rmdir()
    autostart_dir.write_text("")                 # a file where the directory should be
    with pytest.raises(BackendError, match=f"cannot create the autostart link {autostart_dir}/net1.xml"):
        store.set_autostart("net1", True)
    assert sorted(os.listdir(tmp_path / "r" / "etc" / "network")) == ["autostart", "net1.xml"]
