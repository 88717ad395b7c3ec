"""Storage model and volume manager logic: options to XML, bad input, the volume rules."""

from __future__ import annotations

import pytest
from fakes import MemoryDriver, MemoryVolumes

from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.manager.pool import request_from_params as pool_request
from ansible_collections.virtops.qemu.plugins.module_utils.manager.volume import VolumeManager
from ansible_collections.virtops.qemu.plugins.module_utils.model import pool as pool_model
from ansible_collections.virtops.qemu.plugins.module_utils.model.volume import (
    VolumeFacts,
    request_from_params,
    shown_xml,
)
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import parse

MiB = 1024 * 1024


def test_structured_pool_renders_libvirt_xml():
    req = pool_request({"name": "p", "type": "iscsi-direct",
                        "source": {"hosts": [{"name": "10.0.0.1", "port": 3260}],
                                   "devices": ["iqn.2024-01.org.example:t"], "initiator": "iqn.2024-01.org.example:i"}})
    xml = req.desired
    assert xml.get("type") == "iscsi-direct"
    assert xml.find("source/host").get("name") == "10.0.0.1"
    assert xml.find("source/initiator/iqn").get("name") == "iqn.2024-01.org.example:i"
    assert req.owned_lists == {"pool/source/host", "pool/source/device"}


@pytest.mark.parametrize(("params", "option"), [
    ({"type": "dir", "target": {"path": "rel"}}, "target.path"),
    ({"type": "fs", "target": {"path": "/x"}}, "source.devices"),
    ({"type": "dir", "target": {"path": "/x", "mode": "999"}}, "target.mode"),
    ({"type": "dir", "target": {"path": "/x"}, "delete_target": "/x"}, "delete_target"),
    ({"type": "dir", "target": {"path": "/x"}, "build_overwrite": True}, "build_overwrite"),
])
def test_pool_bad_input_names_the_option(params, option):
    with pytest.raises(InvalidInput) as caught:
        pool_request({"name": "p", **params})
    assert caught.value.option == option


def test_measured_sizes_are_not_part_of_a_definition():
    tree = parse("<pool type='dir'><name>p</name><capacity unit='bytes'>5</capacity>"
                 "<target><path>/x</path></target></pool>", "pool")
    assert pool_model.settle(tree).find("capacity") is None


def test_pool_type_cannot_change():
    current = parse("<pool type='dir'><name>p</name></pool>", "pool")
    with pytest.raises(InvalidInput, match="already exists with type 'dir'"):
        pool_model.definition_for_type_check(current, parse("<pool type='fs'><name>p</name></pool>", "pool"))


@pytest.mark.parametrize(("params", "option"), [
    ({"name": "a/b", "capacity": "1MiB"}, "name"),
    ({"name": "v", "capacity": "1 parsec"}, "capacity"),
    ({"name": "v", "capacity": "0"}, "capacity"),
    ({"name": "v", "mode": "rwx"}, "mode"),
    ({"name": "v", "clone_from": "a/b/c"}, "clone_from"),
    ({"name": "v", "format": "raw", "backing_store": {"path": "/b", "format": "raw"}}, "format"),
    ({"name": "v", "backing_store": {"path": "b"}}, "backing_store.path"),
    ({"name": "v", "source": {"path": "img.qcow2"}}, "source.path"),
    ({"name": "v", "source": {"url": "ftp://host/img"}}, "source.url"),
    ({"name": "v", "source": {"path": "/i", "url": "http://h/i"}}, "source"),
    ({"name": "v", "source": {"url": "http://h/i", "checksum": "md5:" + "0" * 32}}, "source.checksum"),
    ({"name": "v", "source": {"url": "http://h/i", "checksum": "sha256:abc"}}, "source.checksum"),
    ({"name": "v", "source": {"url": "http://h/i", "checksum": "0" * 64}}, "source.checksum"),
    ({"name": "v", "source": {"path": "/i"}, "clone_from": "w"}, "source"),
])
def test_volume_bad_input_names_the_option(params, option):
    with pytest.raises(InvalidInput) as caught:
        request_from_params({"pool": "p", **params})
    assert caught.value.option == option


POOL = "<pool type='dir'><name>p</name><target><path>/pool</path></target></pool>"


def volumes_of(*existing: VolumeFacts) -> MemoryVolumes:
    """The volumes of the active dir pool p (at /pool) of an in-memory driver, holding ``existing``."""
    driver = MemoryDriver()
    driver.pools.define(POOL)
    driver.pools.start("p")
    for facts in existing:
        driver.volumes.create("p", shown_xml(facts))
    driver.calls.clear()
    return driver.volumes


def manager_of(volumes: MemoryVolumes) -> VolumeManager:
    return VolumeManager(volumes.driver.pools, volumes)


def _existing(**extra) -> VolumeFacts:
    return VolumeFacts(name="v", path="/pool/v", format="qcow2", capacity=16 * MiB, mode="0600", owner=0, group=0,
                       **extra)


def test_check_mode_touches_nothing_and_predicts_growth():
    volumes = volumes_of(_existing())
    result = manager_of(volumes).ensure(request_from_params({"pool": "p", "name": "v", "capacity": "32MiB"}), True)
    assert result["changed"] and result["capacity"] == 32 * MiB and volumes.calls == []
    assert "33554432" in result["diff"]["after"] and "16777216" in result["diff"]["before"]


def test_shrink_needs_allow_shrink_and_format_never_changes():
    manager = manager_of(volumes_of(_existing()))
    with pytest.raises(InvalidInput, match="allow_shrink"):
        manager.ensure(request_from_params({"pool": "p", "name": "v", "capacity": "8MiB"}), False)
    with pytest.raises(InvalidInput, match="format of an existing volume"):
        manager.ensure(request_from_params({"pool": "p", "name": "v", "format": "raw"}), False)
    volumes = volumes_of(_existing())
    manager_of(volumes).ensure(
        request_from_params({"pool": "p", "name": "v", "capacity": "8MiB", "allow_shrink": True}), False)
    assert volumes.calls == [("resize", 8 * MiB, True)]


def test_clone_that_grows_is_created_then_resized():
    volumes = volumes_of(_existing())
    result = manager_of(volumes).ensure(
        request_from_params({"pool": "p", "name": "copy", "clone_from": "v", "capacity": "20MiB"}), True)
    assert result["changed"] and result["format"] == "qcow2" and result["path"] == "/pool/copy"
    assert "volume_path" not in result
    with pytest.raises(InvalidInput, match="smaller than"):
        manager_of(volumes).ensure(
            request_from_params({"pool": "p", "name": "copy", "clone_from": "v", "capacity": "1MiB"}), True)


def test_permissions_change_alone():
    volumes = volumes_of(_existing())
    result = manager_of(volumes).ensure(
        request_from_params({"pool": "p", "name": "v", "mode": "0640"}), False)
    assert result["changed"] and volumes.calls == [("permissions", "0640", None, None)]


def test_checksum_is_read_as_get_url_writes_it():
    req = request_from_params({"pool": "p", "name": "v",
                               "source": {"url": "https://h/i", "checksum": "SHA512:" + "AB" * 64}})
    assert req.source is not None and req.source.checksum == ("sha512", "ab" * 64)
    assert req.source.validate_certs


def test_existing_volume_is_not_imported_again():
    volumes = volumes_of(_existing())
    req = request_from_params({"pool": "p", "name": "v", "source": {"url": "http://h/other.qcow2"}})
    for check_mode in (True, False):
        result = manager_of(volumes).ensure(req, check_mode)
        assert not result["changed"] and result["checksum"] is None and volumes.calls == []


def test_url_import_is_predicted_without_reading_the_url():
    volumes = volumes_of()
    req = request_from_params({"pool": "p", "name": "new", "format": "qcow2", "capacity": "1GiB",
                               "source": {"url": "http://h/img.qcow2"}})
    predicted = manager_of(volumes).ensure(req, True)
    assert predicted["changed"] and predicted["capacity"] == 1024 * MiB and volumes.calls == []
    result = manager_of(volumes).ensure(req, False)
    assert [call[0] for call in volumes.calls] == ["import", "create"] and result["checksum"].startswith("sha256:")
