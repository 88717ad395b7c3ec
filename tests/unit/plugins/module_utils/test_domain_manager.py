"""Planning logic of DomainManager against an in-memory driver.

The real backends are exercised by the integration tests; this checks that
check mode predicts exactly what a real run does, transition by transition.
"""

import pytest

from ansible_collections.virtops.qemu.plugins.module_utils.driver.base import DomainStatus
from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput, NotFound, OperationTimeout
from ansible_collections.virtops.qemu.plugins.module_utils.manager import power
from ansible_collections.virtops.qemu.plugins.module_utils.manager.domain import DomainManager, request_from_params

BASE = {"uri": "qemu:///system", "state": "present", "restart": False, "force": False,
        "shutdown_timeout": 1, "remove_disks": []}


class MemoryDomains:
    """Stores XML as given, like a hypervisor that adds nothing; the state lives in the driver."""

    kind = "domain"

    def __init__(self, driver):
        self.d = driver

    def exists(self, name):
        return name in self.d.xml

    def xml(self, name, inactive=True):
        if name not in self.d.xml:
            raise NotFound(name)
        return self.d.xml[name] if inactive or name not in self.d.live else self.d.live[name]

    def check_definition(self, xml):
        """Nothing beyond the schema, which the manager checks."""

    def define(self, xml):
        from lxml import etree
        name = etree.fromstring(xml).findtext("name")
        self.d.calls.append("define")
        self.d.xml[name] = xml
        self.d.state.setdefault(name, "shutoff")
        self.d.autostart.setdefault(name, False)

    def undefine(self, name):
        self.d.calls.append("undefine")
        del self.d.xml[name], self.d.state[name]

    def status(self, name):
        return DomainStatus(self.d.state[name], "unknown")

    def active(self, name):
        return self.status(name).active

    def autostart(self, name):
        return self.d.autostart[name]

    def set_autostart(self, name, enabled):
        self.d.calls.append("autostart")
        self.d.autostart[name] = enabled

    def start(self, name, paused=False):
        self.d.calls.append("start_paused" if paused else "start")
        self.d.state[name] = "paused" if paused else "running"
        self.d.live[name] = self.d.xml[name]

    def shutdown(self, name):
        self.d.calls.append("shutdown")
        if self.d.guest_obeys_acpi:
            self.d.state[name] = "shutoff"
            self.d.live.pop(name, None)

    def destroy(self, name):
        self.d.calls.append("destroy")
        self.d.state[name] = "shutoff"
        self.d.live.pop(name, None)

    stop = destroy

    def suspend(self, name):
        self.d.calls.append("suspend")
        self.d.state[name] = "paused"

    def resume(self, name):
        self.d.calls.append("resume")
        self.d.state[name] = "running"


class MemoryDriver:
    domains_class = MemoryDomains

    def __init__(self, guest_obeys_acpi=True):
        self.xml, self.live, self.state, self.autostart, self.calls = {}, {}, {}, {}, []
        self.guest_obeys_acpi = guest_obeys_acpi
        self.warnings = []
        self.domains = self.domains_class(self)

    def delete_disk_source(self, source):
        self.calls.append(("delete", source))


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
