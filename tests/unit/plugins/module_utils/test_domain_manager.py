"""Planning logic of DomainManager against an in-memory driver.

The real backends are exercised by the integration tests; this checks that
check mode predicts exactly what a real run does, transition by transition.
"""

import pytest
from fakes import MemoryDriver

from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput, NotFound, OperationTimeout
from ansible_collections.virtops.qemu.plugins.module_utils.manager import power
from ansible_collections.virtops.qemu.plugins.module_utils.manager.domain import DomainManager, request_from_params

BASE = {"uri": "qemu:///system", "state": "present", "restart": False, "force": False,
        "shutdown_timeout": 1, "remove_disks": []}


def ensure(driver, check=False, **params):
    return DomainManager(driver).ensure(request_from_params({**BASE, **params}), check)


@pytest.fixture
def driver():
    d = MemoryDriver()
    ensure(d, name="vm", type="qemu", memory="128MiB", disks=[{"path": "/img/a"}, {"path": "/img/b"}])
    d.calls.clear()
    return d


@pytest.mark.parametrize("start", ["shutoff", "running", "paused"])
@pytest.mark.parametrize("target", ["present", "running", "paused", "shutdown", "destroyed"])
def test_check_mode_predicts_the_real_run(driver, start, target):
    driver.state["vm"] = start
    predicted = ensure(driver, check=True, name="vm", state=target)
    assert driver.calls == []
    real = ensure(driver, name="vm", state=target)
    assert (predicted["changed"], predicted["state"]) == (real["changed"], real["state"])
    again = ensure(driver, name="vm", state=target)
    assert not again["changed"]


def test_define_and_start_in_one_task():
    d = MemoryDriver()
    result = ensure(d, name="new", state="running", type="qemu", memory="64MiB")
    assert d.calls == ["define", "start"] and result["state"] == "running"


def test_changed_definition_of_running_domain_requires_restart(driver):
    ensure(driver, name="vm", state="running")
    driver.calls.clear()
    result = ensure(driver, name="vm", memory="256MiB")
    assert result["restart_required"] and driver.calls == ["define"]
    assert result["diff"]["before"] != result["diff"]["after"]


def test_restart_applies_it(driver):
    ensure(driver, name="vm", state="running")
    driver.calls.clear()
    result = ensure(driver, name="vm", state="running", memory="256MiB", restart=True)
    assert driver.calls == ["define", "shutdown", "start"]
    assert not result["restart_required"] and result["state"] == "running"


def test_pending_change_is_reported_until_a_restart(driver):
    ensure(driver, name="vm", state="running")
    assert ensure(driver, name="vm", memory="256MiB")["restart_required"]
    again = ensure(driver, name="vm", memory="256MiB")
    assert not again["changed"] and again["restart_required"]
    driver.calls.clear()
    applied = ensure(driver, name="vm", memory="256MiB", restart=True)
    assert applied["changed"] and driver.calls == ["shutdown", "start"]
    assert not ensure(driver, name="vm", memory="256MiB")["restart_required"]


def test_restart_alone_applies_what_the_stored_definition_has_pending(driver):
    ensure(driver, name="vm", state="running")
    ensure(driver, name="vm", memory="256MiB")       # another task changes the stored definition
    driver.calls.clear()
    assert ensure(driver, name="vm", state="running")["restart_required"] and driver.calls == []
    predicted = ensure(driver, check=True, name="vm", state="running", restart=True)
    applied = ensure(driver, name="vm", state="running", restart=True)
    assert predicted["changed"] and applied["changed"] and driver.calls == ["shutdown", "start"]
    assert not applied["restart_required"] and applied["state"] == "running"
    assert not ensure(driver, name="vm", state="running", restart=True)["changed"]


def test_shutdown_timeout_fails_without_force():
    d = MemoryDriver(guest_obeys_acpi=False)
    ensure(d, name="vm", state="running", type="qemu")
    with pytest.raises(OperationTimeout, match="force: true"):
        ensure(d, name="vm", state="shutdown")
    assert d.state["vm"] == "running"


def test_shutdown_timeout_destroys_with_force(monkeypatch):
    monkeypatch.setattr(power, "POLL_SECONDS", 0.01)
    d = MemoryDriver(guest_obeys_acpi=False)
    ensure(d, name="vm", state="running", type="qemu")
    assert ensure(d, name="vm", state="shutdown", force=True)["state"] == "shutoff"
    assert d.calls[-2:] == ["shutdown", "destroy"]


def test_absent_deletes_only_named_disks(driver):
    result = ensure(driver, name="vm", state="absent", remove_disks=["vdb"])
    assert driver.calls == ["undefine", ("delete", {"path": "/img/b"})]
    assert result["removed_disks"] == [{"path": "/img/b"}]


def test_absent_with_unknown_disk_changes_nothing(driver):
    with pytest.raises(InvalidInput, match="remove_disks: 'vdz' names no disk"):
        ensure(driver, name="vm", state="absent", remove_disks=["vdz"])
    assert driver.calls == [] and "vm" in driver.xml


@pytest.mark.parametrize("check", [True, False])
def test_absent_keeps_a_domain_with_snapshots_unless_remove_snapshots(driver, check):
    driver.snapshots.create("vm", "<domainsnapshot><name>s1</name></domainsnapshot>")
    driver.calls.clear()
    with pytest.raises(InvalidInput, match=r"^remove_snapshots: domain 'vm' has snapshots \(s1\)"):
        ensure(driver, check=check, name="vm", state="absent")
    assert driver.calls == [] and "vm" in driver.xml
    assert ensure(driver, check=check, name="vm", state="absent", remove_snapshots=True)["changed"]
    assert ("vm" in driver.xml) == check


def test_remove_snapshots_only_with_absent():
    with pytest.raises(InvalidInput, match="^remove_snapshots: only applies with state: absent"):
        request_from_params({**BASE, "name": "vm", "state": "running", "remove_snapshots": True})


def test_missing_domain_without_definition():
    with pytest.raises(NotFound, match="not defined"):
        ensure(MemoryDriver(), name="ghost", state="running")


def test_xml_name_must_match():
    with pytest.raises(InvalidInput, match="^xml: the XML names the domain 'other'"):
        request_from_params({**BASE, "name": "vm", "xml": "<domain><name>other</name></domain>"})


def test_autostart_is_predicted(driver):
    assert ensure(driver, check=True, name="vm", autostart=True)["changed"]
    assert driver.calls == []
    assert ensure(driver, name="vm", autostart=True)["autostart"] is True
    assert not ensure(driver, name="vm", autostart=True)["changed"]
