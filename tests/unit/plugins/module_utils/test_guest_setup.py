"""The seed disk and the agent channel in DomainManager's plans, against an in-memory driver.

The real backends boot a cloud guest with them in tests/integration/test_cloud_init.py.
"""

import os

import pytest
from fakes import MemoryDriver
from lxml import etree

from ansible_collections.virtops.qemu.plugins.module_utils.manager.domain import DomainManager, request_from_params

BASE = {"uri": "qemu:///system", "state": "present", "restart": False, "force": False,
        "shutdown_timeout": 1, "remove_disks": []}
AGENT = "devices/channel/target[@name='org.qemu.guest_agent.0']"


class SeedDriver(MemoryDriver):
    def __init__(self, directory):
        super().__init__()
        self.directory = str(directory)
        self.deleted = []

    def default_seed_directory(self):
        return self.directory

    def delete_disk_source(self, source):
        self.deleted.append(source["path"])
        os.remove(source["path"])


def ensure(driver, check=False, **params):
    return DomainManager(driver).ensure(request_from_params({**BASE, **params}), check)


@pytest.fixture
def driver(tmp_path):
    d = SeedDriver(tmp_path)
    ensure(d, name="vm", type="qemu", memory="128MiB", disks=[{"path": "/img/a"}])
    return d


def seed_disks(driver):
    tree = etree.fromstring(driver.xml["vm"].encode())
    return tree.findall("devices/disk[readonly]")


def test_seed_is_written_and_attached_read_only_after_the_other_disks(driver, tmp_path):
    predicted = ensure(driver, check=True, name="vm", cloud_init={"user_data": {"runcmd": ["true"]}})
    assert predicted["changed"] and not (tmp_path / "vm.cidata.iso").exists()
    result = ensure(driver, name="vm", cloud_init={"user_data": {"runcmd": ["true"]}})
    assert result["changed"] and result["seed"] == str(tmp_path / "vm.cidata.iso")
    assert predicted["diff"] == result["diff"]
    assert (tmp_path / "vm.cidata.iso").read_bytes()[0x8001:0x8006] == b"CD001"
    [disk] = seed_disks(driver)
    assert disk.find("target").attrib == {"dev": "vdb", "bus": "virtio"}
    assert disk.findtext("serial").startswith("cidata-")
    assert "runcmd" not in result["diff"]["after"], "the user-data stays out of the definition"
    again = ensure(driver, name="vm", cloud_init={"user_data": {"runcmd": ["true"]}})
    assert not again["changed"] and again["diff"]["before"] == again["diff"]["after"]


def test_new_content_changes_the_serial_and_requires_a_restart_of_a_running_guest(driver, tmp_path):
    ensure(driver, name="vm", state="running", cloud_init={"user_data": {"runcmd": ["true"]}})
    first = (tmp_path / "vm.cidata.iso").read_bytes()
    result = ensure(driver, name="vm", cloud_init={"user_data": {"runcmd": ["false"]}})
    assert result["changed"] and result["restart_required"]
    assert (tmp_path / "vm.cidata.iso").read_bytes() != first
    assert len(seed_disks(driver)) == 1


def test_a_missing_seed_file_is_written_again(driver, tmp_path):
    ensure(driver, name="vm", cloud_init={"user_data": "#cloud-config\n"})
    (tmp_path / "vm.cidata.iso").unlink()
    result = ensure(driver, name="vm", cloud_init={"user_data": "#cloud-config\n"})
    assert result["changed"] and (tmp_path / "vm.cidata.iso").exists()


def test_absent_detaches_and_deletes_the_seed_and_keeps_the_other_disks(driver, tmp_path):
    ensure(driver, name="vm", cloud_init={"user_data": {}})
    result = ensure(driver, name="vm", cloud_init={"state": "absent"})
    assert result["changed"] and seed_disks(driver) == [] and not (tmp_path / "vm.cidata.iso").exists()
    assert "/img/a" in driver.xml["vm"]
    assert not ensure(driver, name="vm", cloud_init={"state": "absent"})["changed"]


def test_removing_the_domain_removes_its_seed(driver, tmp_path):
    ensure(driver, name="vm", cloud_init={"user_data": {}})
    ensure(driver, name="vm", state="absent")
    assert driver.deleted == [str(tmp_path / "vm.cidata.iso")]


def test_seed_beside_disks_the_task_lists(tmp_path):
    d = SeedDriver(tmp_path)
    ensure(d, name="vm", type="qemu", memory="128MiB", disks=[{"path": "/img/a"}, {"path": "/img/b"}],
           cloud_init={"user_data": {}})
    again = ensure(d, name="vm", type="qemu", memory="128MiB", disks=[{"path": "/img/a"}, {"path": "/img/b"}],
                   cloud_init={"user_data": {}})
    assert not again["changed"]
    assert [disk.find("target").get("dev") for disk in seed_disks(d)] == ["vdc"]


def test_guest_agent_channel_is_added_and_removed_keeping_other_channels(driver):
    xml = etree.fromstring(driver.xml["vm"].encode())
    channel = etree.SubElement(xml.find("devices"), "channel", type="spicevmc")
    etree.SubElement(channel, "target", type="virtio", name="com.redhat.spice.0")
    driver.xml["vm"] = etree.tostring(xml, encoding="unicode")
    assert ensure(driver, name="vm", guest_agent=True)["changed"]
    tree = etree.fromstring(driver.xml["vm"].encode())
    assert tree.find(AGENT) is not None and len(tree.findall("devices/channel")) == 2
    assert not ensure(driver, name="vm", guest_agent=True)["changed"]
    assert ensure(driver, name="vm", guest_agent=False)["changed"]
    tree = etree.fromstring(driver.xml["vm"].encode())
    assert tree.find(AGENT) is None and len(tree.findall("devices/channel")) == 1


def test_bad_user_data_names_the_option(driver):
    with pytest.raises(Exception, match="cloud_init.user_data"):
        ensure(driver, name="vm", cloud_init={"user_data": "hello"})


def test_shutdown_mode_tries_the_modes_in_order(driver):
    ensure(driver, name="vm", state="running")
    with pytest.raises(Exception, match="agent: .*cannot shut a guest down through its agent"):
        ensure(driver, name="vm", state="shutdown", shutdown_mode=["agent"])
    assert driver.state["vm"] == "running"
    assert ensure(driver, name="vm", state="shutdown", shutdown_mode=["agent", "acpi"])["state"] == "shutoff"


def test_the_seed_lives_in_the_directory_of_the_named_pool(driver, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    driver.pools.define(f"<pool type='dir'><name>images</name><target><path>{images}</path></target></pool>")
    driver.pools.define("<pool type='logical'><name>vg</name><target><path>/dev/vg</path></target></pool>")
    result = ensure(driver, name="vm", cloud_init={"user_data": {}, "pool": "images"})
    assert result["seed"] == str(images / "vm.cidata.iso") and (images / "vm.cidata.iso").exists()
    with pytest.raises(Exception, match="not a directory pool") as failed:
        ensure(driver, name="vm", cloud_init={"user_data": {}, "pool": "vg"})
    assert failed.value.option == "cloud_init.pool"
