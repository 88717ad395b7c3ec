# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Failures part-way through a run, races with a guest that stops by itself, and what libvirt cannot tell."""

from __future__ import annotations

import errno

import libvirt
import pytest
from fakes import MemoryDriver
from test_domain_manager import ensure
from test_resource_manager import NAT
from test_resource_manager import ensure as ensure_network

from ansible_collections.virtops.qemu.plugins.module_utils.driver.libvirt_backend import (
    LibvirtResources,
    domain_taints,
)
from ansible_collections.virtops.qemu.plugins.module_utils.errors import (
    BackendError,
    Conflict,
    InvalidInput,
    UnreadableDefinition,
)
from ansible_collections.virtops.qemu.plugins.module_utils.manager import power
from ansible_collections.virtops.qemu.plugins.module_utils.manager.domain import DomainRequest
from ansible_collections.virtops.qemu.plugins.module_utils.uri import ConnectionURI


@pytest.fixture
def driver():
    d = MemoryDriver()
    ensure(d, name="vm", type="qemu", disks=[{"path": "/img/a"}, {"path": "/img/b"}], state="running")
    d.calls.clear()
    return d


# -- a removal that fails part-way -------------------------------------------------
def test_a_disk_that_cannot_be_deleted_after_the_removal_reports_the_change(driver):
    driver.fail("delete_disk_source", BackendError("cannot delete volume '/img/b': permission denied"), "/img/b")
    with pytest.raises(BackendError) as err:
        ensure(driver, name="vm", state="absent", remove_disks=["vda", "vdb"])
    assert str(err.value) == ("domain 'vm' was removed but not every disk of remove_disks could be deleted: "
                              "cannot delete volume '/img/b': permission denied")
    result = err.value.result
    assert result["changed"] is True and result["removed_disks"] == [{"path": "/img/a"}]
    assert result["diff"]["after"] == "" and "/img/b" in result["diff"]["before"]
    assert "vm" not in driver.xml


def test_an_undefine_that_fails_after_the_stop_reports_the_stop():
    networks = MemoryDriver().networks
    ensure_network(networks, name="n1", state="active", xml=NAT)
    networks.fail("undefine", BackendError("cannot undefine 'n1': busy"))
    with pytest.raises(BackendError, match="^network 'n1' was stopped but could not be undefined: cannot") as err:
        ensure_network(networks, name="n1", state="absent")
    assert err.value.result == {"changed": True, "name": "n1"}


def test_a_removal_that_fails_before_any_change_carries_nothing():
    networks = MemoryDriver().networks
    ensure_network(networks, name="n1", xml=NAT)
    networks.fail("undefine", BackendError("no"))
    with pytest.raises(BackendError, match="^no$") as err:
        ensure_network(networks, name="n1", state="absent")
    assert err.value.result == {}


# -- host errors after a first change ------------------------------------------------
@pytest.mark.parametrize("error, words", [
    (OSError(errno.EACCES, "Permission denied", "/run/n1.pid"), "cannot access /run/n1.pid: Permission denied"),
    (ValueError("bad pid"), "bad pid"),
])
def test_a_host_error_after_define_reports_the_change(error, words):
    networks = MemoryDriver().networks
    networks.fail("start", error)
    with pytest.raises(BackendError) as err:
        ensure_network(networks, name="n1", state="active", xml=NAT)
    assert str(err.value) == f"network 'n1' was defined but failed to start: {words}"
    assert err.value.__cause__ is error and err.value.result["changed"] is True
    assert "n1" in err.value.result["diff"]["after"]


def test_a_host_error_before_any_change_stays_as_it_is():
    networks = MemoryDriver().networks
    ensure_network(networks, name="n1", xml=NAT)
    networks.fail("start", OSError(errno.ENOENT, "No such file or directory", "/x"))
    with pytest.raises(OSError):
        ensure_network(networks, name="n1", state="active")


# -- a guest that powers off by itself -----------------------------------------------
def test_absent_accepts_a_guest_that_powered_off_before_the_destroy(driver):
    driver.stops_by_itself = True
    result = ensure(driver, name="vm", state="absent")
    assert result["changed"] and "vm" not in driver.xml and driver.calls == ["undefine"]


def test_destroyed_accepts_a_guest_that_powered_off_before_the_destroy(driver):
    driver.stops_by_itself = True
    assert ensure(driver, name="vm", state="destroyed")["state"] == "shutoff"


def test_a_forced_shutdown_accepts_a_guest_that_powered_off_before_the_destroy(driver, monkeypatch):
    monkeypatch.setattr(power, "POLL_SECONDS", 0.01)
    driver.guest_obeys_acpi, driver.stops_by_itself = False, True
    assert ensure(driver, name="vm", state="shutdown", force=True, shutdown_timeout=0)["state"] == "shutoff"


def test_a_destroy_conflict_of_a_guest_that_still_runs_is_raised(driver):
    driver.domains.fail("destroy", Conflict("cannot destroy: operation invalid"))
    with pytest.raises(Conflict):
        power.destroy(driver.domains, "vm")


def test_a_stop_conflict_of_an_object_that_still_runs_is_raised():
    networks = MemoryDriver().networks
    ensure_network(networks, name="n1", state="active", xml=NAT)
    networks.fail("stop", Conflict("cannot stop 'n1': busy"))
    with pytest.raises(Conflict, match="^cannot stop"):
        ensure_network(networks, name="n1", state="absent")


# -- check mode with an unreadable definition ------------------------------------------
def test_check_mode_keeps_the_autostart_of_a_domain_with_an_unreadable_definition(driver):
    driver.autostart["vm"] = True
    driver.domains.fail("xml", UnreadableDefinition("the definition of vm cannot be parsed"), "vm")
    predicted = ensure(driver, check=True, name="vm", state="destroyed")
    assert predicted["autostart"] is True and predicted["changed"] and driver.calls == []
    assert ensure(driver, name="vm", state="destroyed")["autostart"] is True


# -- libvirt backend -------------------------------------------------------------------
class OldDaemonDomain:
    def messages(self, flags):
        raise libvirt.libvirtError("this function is not supported by the connection driver")


class TaintedDomain:
    def messages(self, flags):
        return ["tainted: custom monitor control commands issued"]


def test_taints_of_a_domain_on_a_libvirtd_without_messages_are_empty():
    assert domain_taints(OldDaemonDomain()) == [] and domain_taints(object()) == []
    assert domain_taints(TaintedDomain()) == ["custom-monitor"]


def test_a_libvirt_kind_must_say_how_to_read_its_persistent_xml():
    class Networks(LibvirtResources):
        kind = "network"

    with pytest.raises(TypeError, match="_xml_flags"):
        Networks(None)  # pylint: disable=abstract-class-instantiated  # the refusal is what is tested


# -- requests and URIs -------------------------------------------------------------------
def test_a_domain_request_blames_the_xml_by_default():
    assert DomainRequest(name="vm").definition_option == "xml"


def test_an_embed_uri_without_root_has_no_qemu_conf():
    uri = ConnectionURI(raw="qemu:///embed", transport=None, user=None, host=None, port=None, instance="embed")
    with pytest.raises(InvalidInput, match="^uri: 'qemu:///embed': qemu:///embed needs a root directory"):
        uri.qemu_conf_path()
