"""The snapshot manager's rules (what needs force, check mode, idempotence) on a recording fake driver."""

from __future__ import annotations

import os
import time

import pytest

from ansible_collections.virtops.qemu.plugins.module_utils.driver.base import DomainStatus
from ansible_collections.virtops.qemu.plugins.module_utils.errors import Conflict, InvalidInput, NotFound
from ansible_collections.virtops.qemu.plugins.module_utils.manager.snapshot import SnapshotManager
from ansible_collections.virtops.qemu.plugins.module_utils.model.snapshot import (
    SnapshotRequest,
    request_from_params,
)

SNAPSHOT = ("<domainsnapshot><name>{name}</name><state>shutoff</state><creationTime>{time}</creationTime>"
            "<memory snapshot='no'/></domainsnapshot>")
EXTERNAL = ("<domainsnapshot><name>{name}</name><state>disk-snapshot</state><creationTime>1</creationTime>"
            "{parent}<memory snapshot='no'/><disks><disk name='vda' snapshot='external' type='file'>"
            "<source file='/images/{name}.qcow2'/></disk></disks></domainsnapshot>")


class FakeDomains:
    def __init__(self, state: str, disk: str):
        self.state, self.disk = state, disk

    def exists(self, name):
        return name == "vm1"

    def status(self, name):
        return DomainStatus(self.state, "unknown")

    def xml(self, name, inactive=True):
        return (f"<domain type='qemu'><name>vm1</name><devices><disk type='file' device='disk'>"
                f"<source file='{self.disk}'/><target dev='vda'/></disk></devices></domain>")


class FakeSnapshots:
    def __init__(self, taken: dict[str, int], current: str | None):
        self.taken, self.current_name, self.calls = taken, current, []

    def names(self, domain):
        return sorted(self.taken)

    def xml(self, domain, name):
        taken = self.taken[name]
        return taken if isinstance(taken, str) else SNAPSHOT.format(name=name, time=taken)

    def current(self, domain):
        return self.current_name

    def create(self, domain, xml):
        self.calls.append(("create", xml))
        self.taken[xml.split("<name>")[1].split("</name>")[0]] = xml

    def revert(self, domain, name):
        self.calls.append(("revert", name))

    def delete(self, domain, name):
        self.calls.append(("delete", name))


@pytest.fixture
def disk(tmp_path):
    path = tmp_path / "vda.qcow2"
    path.write_bytes(b"")
    return path


def manager(state, disk, taken=None, current=None):
    snapshots = FakeSnapshots(taken or {}, current)
    return SnapshotManager(FakeDomains(state, str(disk)), snapshots), snapshots


def aged(path, seconds):
    when = time.time() - seconds
    os.utime(path, (when, when))


def test_check_mode_predicts_and_calls_nothing(disk):
    mgr, snaps = manager("shutoff", disk)
    result = mgr.ensure(SnapshotRequest("vm1", "s1"), check_mode=True)
    assert result["changed"] and result["action"] == "create" and snaps.calls == []
    assert "<name>s1</name>" in result["diff"]["after"] and result["diff"]["before"] == ""


def test_revert_of_a_running_domain_needs_force(disk):
    now = int(time.time())
    mgr, snaps = manager("running", disk, {"s1": now - 100, "s2": now - 50}, current="s2")
    with pytest.raises(Conflict, match="it is running.*force: true"):
        mgr.ensure(SnapshotRequest("vm1", "s1", state="current"), check_mode=False)
    assert snaps.calls == []
    assert mgr.ensure(SnapshotRequest("vm1", "s1", state="current", force=True), False)["changed"]
    assert snaps.calls == [("revert", "s1")]


def test_revert_needs_force_only_when_a_disk_was_written_since_the_current_snapshot(disk):
    now = int(time.time())
    aged(disk, 60)
    mgr, snaps = manager("shutoff", disk, {"s1": now - 100, "s2": now - 60}, current="s2")
    assert mgr.ensure(SnapshotRequest("vm1", "s1", state="current"), False)["changed"]
    aged(disk, 0)
    mgr, snaps = manager("shutoff", disk, {"s1": now - 100, "s2": now - 60}, current="s2")
    with pytest.raises(Conflict, match="disk vda .* was written after snapshot 's2'"):
        mgr.ensure(SnapshotRequest("vm1", "s1", state="current"), False)
    assert snaps.calls == []


def test_the_current_snapshot_is_reverted_to_again_only_with_force(disk):
    mgr, snaps = manager("running", disk, {"s1": int(time.time())}, current="s1")
    assert not mgr.ensure(SnapshotRequest("vm1", "s1", state="current"), False)["changed"]
    assert mgr.ensure(SnapshotRequest("vm1", "s1", state="current", force=True), False)["changed"]
    assert snaps.calls == [("revert", "s1")]


def test_absent_and_present_are_idempotent(disk):
    mgr, snaps = manager("shutoff", disk, {"s1": int(time.time())}, current="s1")
    assert not mgr.ensure(SnapshotRequest("vm1", "s1"), False)["changed"]
    assert not mgr.ensure(SnapshotRequest("vm1", "nope", state="absent"), False)["changed"]
    assert snaps.calls == []
    with pytest.raises(NotFound, match="no snapshot 'nope'"):
        mgr.ensure(SnapshotRequest("vm1", "nope", state="current"), False)


def test_disk_only_snapshot_of_a_running_domain_is_refused_by_option(disk):
    mgr, snaps = manager("running", disk)
    with pytest.raises(InvalidInput, match="^memory: "):
        mgr.ensure(SnapshotRequest("vm1", "s1", memory=False), False)
    assert snaps.calls == []


@pytest.mark.parametrize(("params", "option"), [
    ({"name": "vm1", "snapshot": "a/b"}, "snapshot"),
    ({"name": "vm/1", "snapshot": "s1"}, "name"),
    ({"name": "vm1", "snapshot": "s1", "description": "a\x00b"}, "description"),
    ({"name": "vm1", "snapshot": "s1", "disk_only": True, "memory": True,
      "disks": [{"target": "vda", "path": "/o.qcow2"}]}, "memory"),
    ({"name": "vm1", "snapshot": "s1", "disk_only": True}, "disks"),
    ({"name": "vm1", "snapshot": "s1", "disks": [{"target": "vda", "path": "/o.qcow2"}]}, "disks"),
    ({"name": "vm1", "snapshot": "s1", "disk_only": True, "disks": [{"target": "vda", "path": "o.qcow2"}]},
     "disks[0].path"),
    ({"name": "vm1", "snapshot": "s1", "disk_only": True,
      "disks": [{"target": "vda", "path": "/o.qcow2"}, {"target": "vda", "path": "/p.qcow2"}]}, "disks[1].target"),
])
def test_bad_input_names_the_option(params, option):
    with pytest.raises(InvalidInput) as caught:
        request_from_params(params)
    assert caught.value.option == option


def external(name, parent=None):
    return EXTERNAL.format(name=name, parent=f"<parent><name>{parent}</name></parent>" if parent else "")


def test_disk_only_snapshot_is_predicted_and_asks_for_the_overlays(disk, tmp_path):
    overlay = str(tmp_path / "new.qcow2")
    req = request_from_params({"name": "vm1", "snapshot": "e1", "disk_only": True,
                               "disks": [{"target": "vda", "path": overlay}]})
    mgr, snaps = manager("running", disk)
    predicted = mgr.ensure(req, check_mode=True)
    assert predicted["info"]["state"] == "disk-snapshot" and not predicted["info"]["memory"]
    assert predicted["info"]["disks"] == [{"target": "vda", "snapshot": "external", "path": overlay}]
    assert f'<source file="{overlay}"/>' in predicted["diff"]["after"] and snaps.calls == []
    assert mgr.ensure(req, check_mode=False)["changed"]
    (call, asked), = snaps.calls
    assert call == "create" and "".join(line.strip() for line in asked.splitlines()) == (
        f'<domainsnapshot><name>e1</name><memory snapshot="no"/><disks><disk name="vda" snapshot="external">'
        f'<source file="{overlay}"/></disk></disks></domainsnapshot>')
    mgr, snaps = manager("shutoff", disk)
    assert mgr.ensure(req, check_mode=True)["info"]["state"] == "shutoff"


@pytest.mark.parametrize(("disks", "option", "reason"), [
    ([{"target": "vdz", "path": "NEW"}], "disks[0].target", "no writable disk vdz"),
    ([{"target": "vda", "path": "DISK"}], "disks[0].path", "exists already"),
])
def test_disk_only_overlays_are_checked_against_the_domain(disk, tmp_path, disks, option, reason):
    paths = {"NEW": str(tmp_path / "new.qcow2"), "DISK": str(disk)}
    req = request_from_params({"name": "vm1", "snapshot": "e1", "disk_only": True,
                               "disks": [{**d, "path": paths[d["path"]]} for d in disks]})
    mgr, snaps = manager("running", disk)
    with pytest.raises(InvalidInput, match=reason) as caught:
        mgr.ensure(req, check_mode=True)
    assert caught.value.option == option and snaps.calls == []


def test_an_external_snapshot_is_not_reverted_to(disk):
    mgr, snaps = manager("shutoff", disk, {"e1": external("e1")}, current="e1")
    with pytest.raises(Conflict, match="external.*libvirt 9.9"):
        mgr.ensure(SnapshotRequest("vm1", "e1", state="current", force=True), False)
    assert snaps.calls == []


def test_an_external_snapshot_is_deleted_only_without_later_ones(disk):
    mgr, snaps = manager("running", disk, {"e1": external("e1"), "e2": external("e2", parent="e1")}, current="e2")
    with pytest.raises(Conflict, match="taken after it \\(e2\\); delete those first"):
        mgr.ensure(SnapshotRequest("vm1", "e1", state="absent"), False)
    assert mgr.ensure(SnapshotRequest("vm1", "e2", state="absent"), False)["changed"]
    assert snaps.calls == [("delete", "e2")]
