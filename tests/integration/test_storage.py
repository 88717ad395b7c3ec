"""The pool, pool_info and volume modules on each backend, with the same assertions.

Pools live in the test's work directory; a guest boots from the test
kernel with a volume as vda and reports the disk's size on its serial
console.  Every pool is stopped and undefined afterwards; volume files are
removed with the work directory.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from harness.ansible import run_module
from harness.libvirtd import wait_for_line

MiB = 1024 * 1024


def module(backend, name: str, args: dict, check: bool = False) -> dict:
    return run_module(name, {"uri": backend.uri, **args}, check=check, diff=True)


def remove_pool(backend, name: str) -> None:
    if backend.name == "libvirt":
        backend.libvirtd.virsh("pool-destroy", name, check=False)
        backend.libvirtd.virsh("pool-undefine", name, check=False)
        return
    from ansible_collections.virtops.qemu.plugins.module_utils.driver.connect import open_driver
    with open_driver(backend.uri) as driver:
        if driver.pools.exists(name):
            if driver.pools.active(name):
                driver.pools.stop(name)
            driver.pools.undefine(name)


@pytest.fixture
def pool_name(backend):
    name = f"vt-{secrets.token_hex(4)}"
    yield name
    remove_pool(backend, name)


def dir_pool(name: str, path: Path, **extra) -> dict:
    return {"name": name, "type": "dir", "target": {"path": str(path)}, "build": True, **extra}


def qemu_img_info(path: Path) -> dict:
    import json
    return json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", str(path)], check=True,
                                     capture_output=True, text=True).stdout)


# -- dir pools and volumes -------------------------------------------------------------------
def test_dir_pool_check_then_build_then_no_change(backend, workdir, pool_name):
    target = workdir / "images"
    predicted = module(backend, "pool", dir_pool(pool_name, target), check=True)
    assert predicted["changed"] and predicted["state"] == "active", predicted
    assert not target.exists()
    result = module(backend, "pool", dir_pool(pool_name, target))
    assert result["changed"] and result["state"] == "active", result
    assert target.is_dir() and (target.stat().st_mode & 0o777) == 0o711
    assert predicted["diff"]["before"] == result["diff"]["before"] == ""
    again = module(backend, "pool", dir_pool(pool_name, target))
    assert not again["changed"], again
    assert again["diff"]["before"] == again["diff"]["after"]
    info = module(backend, "pool_info", {"name": pool_name})
    assert info["exists"] and info["pool"]["active"] and info["pool"]["type"] == "dir"
    assert info["pool"]["capacity"] > 0 and info["pool"]["available"] > 0
    assert info["pool"]["volumes"] == []


def test_qcow2_volume_created_grown_shrink_refused_cloned(backend, workdir, pool_name):
    target = workdir / "images"
    module(backend, "pool", dir_pool(pool_name, target))
    args = {"pool": pool_name, "name": "disk.qcow2", "capacity": "16MiB", "format": "qcow2"}
    predicted = module(backend, "volume", args, check=True)
    result = module(backend, "volume", args)
    assert result["changed"] and predicted["changed"]
    assert predicted["diff"] == result["diff"], (predicted["diff"], result["diff"])
    assert qemu_img_info(target / "disk.qcow2")["virtual-size"] == 16 * MiB
    assert qemu_img_info(target / "disk.qcow2")["format"] == "qcow2"
    assert not module(backend, "volume", args)["changed"]

    grow = {**args, "capacity": "32MiB"}
    predicted = module(backend, "volume", grow, check=True)
    assert qemu_img_info(target / "disk.qcow2")["virtual-size"] == 16 * MiB
    result = module(backend, "volume", grow)
    assert result["changed"] and predicted["diff"] == result["diff"]
    assert "16777216" in result["diff"]["before"] and "33554432" in result["diff"]["after"]
    assert qemu_img_info(target / "disk.qcow2")["virtual-size"] == 32 * MiB

    shrink = module(backend, "volume", {**args, "capacity": "8MiB"})
    assert shrink["failed"] and "allow_shrink" in shrink["msg"] and "capacity" in shrink["msg"]
    assert qemu_img_info(target / "disk.qcow2")["virtual-size"] == 32 * MiB
    refused = module(backend, "volume", {**args, "capacity": "32MiB", "format": "raw"})
    assert refused["failed"] and refused["msg"].startswith("format:"), refused

    clone = module(backend, "volume", {"pool": pool_name, "name": "copy.qcow2", "clone_from": "disk.qcow2",
                                       "capacity": "48MiB"})
    assert clone["changed"] and clone["capacity"] == 48 * MiB, clone
    assert qemu_img_info(target / "copy.qcow2")["virtual-size"] == 48 * MiB
    volumes = module(backend, "pool_info", {"name": pool_name})["pool"]["volumes"]
    assert sorted((v["name"], v["format"], v["capacity"]) for v in volumes) == [
        ("copy.qcow2", "qcow2", 48 * MiB), ("disk.qcow2", "qcow2", 32 * MiB)]

    gone = module(backend, "volume", {"pool": pool_name, "name": "copy.qcow2", "state": "absent"})
    assert gone["changed"] and gone["diff"]["after"] == ""
    assert not (target / "copy.qcow2").exists() and (target / "disk.qcow2").exists()
    assert not module(backend, "volume", {"pool": pool_name, "name": "copy.qcow2", "state": "absent"})["changed"]


def test_backing_store_overlay(backend, workdir, pool_name):
    target = workdir / "images"
    module(backend, "pool", dir_pool(pool_name, target))
    module(backend, "volume", {"pool": pool_name, "name": "base.raw", "capacity": "8MiB", "format": "raw"})
    overlay = {"pool": pool_name, "name": "top.qcow2", "backing_store": {"volume": "base.raw"}}
    predicted = module(backend, "volume", overlay, check=True)
    result = module(backend, "volume", overlay)
    assert result["changed"] and predicted["diff"] == result["diff"], (predicted, result)
    info = qemu_img_info(target / "top.qcow2")
    assert info["backing-filename"] == str(target / "base.raw") and info["virtual-size"] == 8 * MiB
    assert not module(backend, "volume", overlay)["changed"]


def test_absent_pool_keeps_volumes_and_target_unless_named(backend, workdir, pool_name):
    target = workdir / "images"
    module(backend, "pool", dir_pool(pool_name, target, autostart=True))
    module(backend, "volume", {"pool": pool_name, "name": "keep.qcow2", "capacity": "4MiB", "format": "qcow2"})
    predicted = module(backend, "pool", {"name": pool_name, "state": "absent"}, check=True)
    result = module(backend, "pool", {"name": pool_name, "state": "absent"})
    assert predicted["changed"] and result["changed"] and result["state"] == "absent"
    assert predicted["diff"] == result["diff"]
    assert (target / "keep.qcow2").is_file()
    assert not module(backend, "pool_info", {"name": pool_name})["exists"]
    assert not module(backend, "pool", {"name": pool_name, "state": "absent"})["changed"]

    # The target goes only when named, and only when it is empty.
    module(backend, "pool", dir_pool(pool_name, target))
    wrong = module(backend, "pool", {"name": pool_name, "state": "absent", "delete_target": str(workdir)})
    assert wrong["failed"] and "delete_target" in wrong["msg"]
    (target / "keep.qcow2").unlink()
    result = module(backend, "pool", {"name": pool_name, "state": "absent", "delete_target": str(target)})
    assert result["changed"] and result["deleted_target"] == str(target), result
    assert not target.exists()


def test_inactive_pool_and_state_survive_new_runs(backend, workdir, pool_name):
    target = workdir / "images"
    module(backend, "pool", dir_pool(pool_name, target))
    stopped = module(backend, "pool", {"name": pool_name, "state": "inactive"})
    assert stopped["changed"] and stopped["state"] == "inactive"
    assert module(backend, "pool_info", {"name": pool_name})["pool"]["state"] == "inactive"
    refused = module(backend, "volume", {"pool": pool_name, "name": "x.raw", "capacity": "1MiB"})
    assert refused["failed"] and "not active" in refused["msg"]
    started = module(backend, "pool", {"name": pool_name, "state": "active"})
    assert started["changed"] and started["state"] == "active"


@pytest.mark.parametrize(("args", "message"), [
    ({"type": "dir", "target": {"path": "relative/dir"}}, "target.path: the target path must be absolute"),
    ({"type": "fs", "target": {"path": "/var/tmp/vt-nowhere"}}, "source.devices: a fs pool needs a source device"),
    ({"type": "iscsi-direct", "source": {"hosts": [{"name": "192.0.2.1"}], "devices": ["iqn.2024-01.x:y"]}},
     "source.initiator"),
])
def test_pool_bad_input_changes_nothing(backend, pool_name, args, message):
    result = module(backend, "pool", {"name": pool_name, **args})
    assert result["failed"] and message in result["msg"], result
    assert not module(backend, "pool_info", {"name": pool_name})["exists"]


def test_pool_of_another_type_refused(backend, workdir, pool_name):
    module(backend, "pool", dir_pool(pool_name, workdir / "images"))
    before = module(backend, "pool_info", {"name": pool_name})["pool"]["xml"]
    result = module(backend, "pool", {"name": pool_name, "type": "fs", "source": {"devices": ["/dev/null"]},
                                      "target": {"path": str(workdir / "images")}})
    assert result["failed"] and result["msg"].startswith("type:") and "'dir'" in result["msg"], result
    assert module(backend, "pool_info", {"name": pool_name})["pool"]["xml"] == before


@pytest.mark.parametrize(("args", "message"), [
    ({"name": "a/b", "capacity": "1MiB"}, "name: 'a/b' is not a valid volume name"),
    ({"name": "x.raw", "capacity": "10QB"}, "capacity: unknown unit"),
    ({"name": "x.raw"}, "capacity: volume 'x.raw' does not exist; give its capacity"),
])
def test_volume_bad_input_changes_nothing(backend, workdir, pool_name, args, message):
    target = workdir / "images"
    module(backend, "pool", dir_pool(pool_name, target))
    result = module(backend, "volume", {"pool": pool_name, **args})
    assert result["failed"] and message in result["msg"], result
    assert os.listdir(target) == []


# -- a guest on a volume -------------------------------------------------------------------------
@pytest.mark.guest
def test_guest_boots_with_a_volume_as_vda(backend, guest, workdir, pool_name, vm):
    module(backend, "pool", dir_pool(pool_name, workdir / "images"))
    module(backend, "volume", {"pool": pool_name, "name": "data.qcow2", "capacity": "24MiB", "format": "qcow2"})
    serial = workdir / "serial.log"
    result = run_module("domain", {
        "uri": backend.uri, "name": vm, "type": "qemu", "memory": "256MiB", "vcpus": 1, "state": "running",
        "kernel": {"path": str(guest.kernel), "initrd": str(guest.initrd), "cmdline": guest.cmdline},
        "serials": [{"type": "file", "path": str(serial)}], "features": ["acpi"], "on_poweroff": "destroy",
        "disks": [{"pool": pool_name, "volume": "data.qcow2", "target": "vda", "format": "qcow2"}]})
    assert result["changed"] and result["state"] == "running", result
    log = wait_for_line(serial, "VIRTOPS-DISK vda", timeout=120)
    assert f"VIRTOPS-DISK vda {24 * MiB // 512}" in log
    assert "<source pool=" in backend.stored_xml(vm)


# -- fs pools on a loop device ----------------------------------------------------------------
@pytest.fixture
def loop_device(workdir):
    backing = workdir / "fs.img"
    with open(backing, "wb") as handle:
        handle.truncate(64 * MiB)
    device = subprocess.run(["losetup", "--find", "--show", str(backing)], check=True, capture_output=True,
                            text=True).stdout.strip()
    yield device
    subprocess.run(["losetup", "--detach", device], check=False)


def mounted_on(backend, path: Path) -> bool:
    """Whether something is mounted on ``path`` where the backend mounts (libvirtd has a mount namespace)."""
    pid = "self"
    if backend.name == "libvirt":
        pid = Path("/run/libvirtd.pid").read_text(encoding="ascii").strip()
    table = Path(f"/proc/{pid}/mountinfo").read_text(encoding="utf-8")
    return any(line.split()[4] == str(path) for line in table.splitlines())


def test_fs_pool_mounted_while_active(backend, workdir, pool_name, loop_device):
    target = workdir / "mnt"
    args = {"name": pool_name, "type": "fs", "source": {"devices": [loop_device], "format": "ext4"},
            "target": {"path": str(target)}, "build": True, "build_overwrite": True}
    try:
        result = module(backend, "pool", args)
        assert result["changed"] and result["state"] == "active", result
        assert mounted_on(backend, target)
        assert subprocess.run(["blkid", "-o", "value", "-s", "TYPE", loop_device], capture_output=True,
                              text=True, check=False).stdout.strip() == "ext4"
        again = module(backend, "pool", args)
        assert not again["changed"], again
        volume = module(backend, "volume", {"pool": pool_name, "name": "v.qcow2", "capacity": "8MiB",
                                            "format": "qcow2"})
        assert volume["changed"] and volume["volume_path"] == str(target / "v.qcow2")
        stopped = module(backend, "pool", {"name": pool_name, "state": "inactive"})
        assert stopped["changed"] and not mounted_on(backend, target)
        assert not (target / "v.qcow2").exists()        # it lives on the unmounted filesystem
        started = module(backend, "pool", {"name": pool_name, "state": "active"})
        assert started["changed"] and mounted_on(backend, target)
        info = module(backend, "pool_info", {"name": pool_name})["pool"]
        # libvirt lists the filesystem's lost+found directory as a volume too; the embedded driver lists files.
        assert [v["name"] for v in info["volumes"] if v["name"] != "lost+found"] == ["v.qcow2"]
        assert 0 < info["capacity"] < 64 * MiB
    finally:
        remove_pool(backend, pool_name)
    assert not mounted_on(backend, target)


# -- iscsi-direct against a real target (embedded driver) -------------------------------------
TARGET_IQN = "iqn.2024-01.org.example:vt-store"
INITIATOR_IQN = "iqn.2024-01.org.example:vt-host"


@pytest.fixture
def iscsi_target(netns, workdir):
    """tgtd (user space) in the private namespace serving one 16 MiB file-backed LUN on 127.0.0.1."""
    lun = workdir / "lun1.img"
    with open(lun, "wb") as handle:
        handle.truncate(16 * MiB)
    # tgtd's control socket (/var/run/tgtd/socket.N) is shared by every namespace: a port of our own
    # (tgtadm takes 0 to 32767).
    control = str(secrets.randbelow(31000) + 1000)
    daemon = subprocess.Popen(netns.exec_argv(["tgtd", "-f", "--iscsi", "portal=127.0.0.1:3260", "-C", control]),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        admin = ["tgtadm", "-C", control, "--lld", "iscsi", "--mode"]
        for _attempt in range(50):
            if netns.run(admin + ["sys", "--op", "show"], check=False).returncode == 0:
                break
            time.sleep(0.1)
        netns.run(admin + ["target", "--op", "new", "--tid", "1", "--targetname", TARGET_IQN])
        netns.run(admin + ["logicalunit", "--op", "new", "--tid", "1", "--lun", "1", "--backing-store", str(lun)])
        netns.run(admin + ["target", "--op", "bind", "--tid", "1", "--initiator-address", "ALL"])
        yield control
    finally:
        daemon.kill()
        daemon.wait()


def test_embedded_iscsi_direct_pool_and_guest(root, netns, iscsi_target, guest, workdir):
    uri = f"qemu:///embed?root={root}"
    source = {"hosts": [{"name": "127.0.0.1"}], "devices": [TARGET_IQN], "initiator": INITIATOR_IQN}
    args = {"uri": uri, "name": "san", "type": "iscsi-direct", "source": source}
    result = run_module("pool", args, netns=netns.name, diff=True)
    assert result["changed"] and result["state"] == "active", result
    assert not run_module("pool", args, netns=netns.name)["changed"]
    info = run_module("pool_info", {"uri": uri, "name": "san"}, netns=netns.name)["pool"]
    assert [(v["name"], v["capacity"]) for v in info["volumes"]] == [("unit:0:0:1", 16 * MiB)], info
    refused = run_module("volume", {"uri": uri, "pool": "san", "name": "new", "capacity": "1MiB"}, netns=netns.name)
    assert refused["failed"] and "cannot be created" in refused["msg"]
    serial = workdir / "serial.log"
    booted = run_module("domain", {
        "uri": uri, "name": "vt-iscsi", "type": "qemu", "memory": "256MiB", "vcpus": 1, "state": "running",
        "kernel": {"path": str(guest.kernel), "initrd": str(guest.initrd), "cmdline": guest.cmdline},
        "serials": [{"type": "file", "path": str(serial)}], "features": ["acpi"], "on_poweroff": "destroy",
        "disks": [{"pool": "san", "volume": "unit:0:0:1", "target": "vda"}]}, netns=netns.name)
    assert booted["changed"] and booted["state"] == "running", booted
    log = wait_for_line(serial, "VIRTOPS-DISK vda", timeout=120)
    assert f"VIRTOPS-DISK vda {16 * MiB // 512}" in log
    run_module("domain", {"uri": uri, "name": "vt-iscsi", "state": "absent"}, netns=netns.name)
