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
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from lxml import etree

from harness.ansible import run_module, run_module_calls, run_playbook
from harness.backends import netns_named_like
from harness.debian import debian_qemu_conf_text
from harness.imageserver import image_server, served_image, sha256
from harness.iscsi import INITIATOR_IQN, PORTAL, TARGET_IQN, iscsi_target, lun_file
from harness.libvirt_marker import BACKENDS
from harness.libvirtd import LIBVIRTD_PIDFILE, wait_for_line
from harness.netns import Netns
from harness.private_libvirtd import PrivateLibvirtd

MiB = 1024 * 1024


def module(backend, name: str, args: dict, check: bool = False) -> dict:
    return run_module(name, {"uri": backend.uri, **args}, check=check, diff=True)


def modules(backend, *calls: tuple[str, dict] | tuple[str, dict, bool]) -> list[dict]:
    """Module calls (name, args, check mode) as the tasks of one playbook, as ``module`` would make each."""
    return run_module_calls([(name, {"uri": backend.uri, **args}, {"check_mode": bool(check)})
                             for name, args, *check in calls], diff=True)


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
    # The calls run in four playbooks; the files are read between them, where the calls' effects show.
    target = workdir / "images"
    args = {"pool": pool_name, "name": "disk.qcow2", "capacity": "16MiB", "format": "qcow2"}
    _pool, predicted, result = modules(backend, ("pool", dir_pool(pool_name, target)),
                                       ("volume", args, True), ("volume", args))
    assert result["changed"] and predicted["changed"]
    assert predicted["diff"] == result["diff"], (predicted["diff"], result["diff"])
    assert qemu_img_info(target / "disk.qcow2")["virtual-size"] == 16 * MiB
    assert qemu_img_info(target / "disk.qcow2")["format"] == "qcow2"

    grow = {**args, "capacity": "32MiB"}
    again, predicted = modules(backend, ("volume", args), ("volume", grow, True))
    assert not again["changed"]
    assert qemu_img_info(target / "disk.qcow2")["virtual-size"] == 16 * MiB

    clone_args = {"pool": pool_name, "name": "copy.qcow2", "clone_from": "disk.qcow2", "capacity": "48MiB"}
    result, shrink, refused, clone, info = modules(
        backend, ("volume", grow), ("volume", {**args, "capacity": "8MiB"}),
        ("volume", {**args, "capacity": "32MiB", "format": "raw"}), ("volume", clone_args),
        ("pool_info", {"name": pool_name}))
    assert result["changed"] and predicted["diff"] == result["diff"]
    assert "16777216" in result["diff"]["before"] and "33554432" in result["diff"]["after"]
    assert shrink["failed"] and "allow_shrink" in shrink["msg"] and "capacity" in shrink["msg"]
    assert qemu_img_info(target / "disk.qcow2")["virtual-size"] == 32 * MiB, "grown, and not shrunk"
    assert refused["failed"] and refused["msg"].startswith("format:"), refused
    assert clone["changed"] and clone["capacity"] == 48 * MiB, clone
    assert qemu_img_info(target / "copy.qcow2")["virtual-size"] == 48 * MiB
    volumes = info["pool"]["volumes"]
    assert sorted((v["name"], v["format"], v["capacity"]) for v in volumes) == [
        ("copy.qcow2", "qcow2", 48 * MiB), ("disk.qcow2", "qcow2", 32 * MiB)]

    absent = {"pool": pool_name, "name": "copy.qcow2", "state": "absent"}
    gone, again = modules(backend, ("volume", absent), ("volume", absent))
    assert gone["changed"] and gone["diff"]["after"] == ""
    assert not (target / "copy.qcow2").exists() and (target / "disk.qcow2").exists()
    assert not again["changed"]


def test_backing_store_overlay(backend, workdir, pool_name):
    target = workdir / "images"
    overlay = {"pool": pool_name, "name": "top.qcow2", "backing_store": {"volume": "base.raw"}}
    *_made, predicted, result = modules(
        backend, ("pool", dir_pool(pool_name, target)),
        ("volume", {"pool": pool_name, "name": "base.raw", "capacity": "8MiB", "format": "raw"}),
        ("volume", overlay, True), ("volume", overlay))
    assert result["changed"] and predicted["diff"] == result["diff"], (predicted, result)
    info = qemu_img_info(target / "top.qcow2")
    assert info["backing-filename"] == str(target / "base.raw") and info["virtual-size"] == 8 * MiB
    assert not module(backend, "volume", overlay)["changed"]


def test_absent_pool_keeps_volumes_and_target_unless_named(backend, workdir, pool_name):
    target = workdir / "images"
    absent = {"name": pool_name, "state": "absent"}
    *_made, predicted, result, info, again = modules(
        backend, ("pool", dir_pool(pool_name, target, autostart=True)),
        ("volume", {"pool": pool_name, "name": "keep.qcow2", "capacity": "4MiB", "format": "qcow2"}),
        ("pool", absent, True), ("pool", absent), ("pool_info", {"name": pool_name}), ("pool", absent))
    assert predicted["changed"] and result["changed"] and result["state"] == "absent"
    assert predicted["diff"] == result["diff"]
    assert (target / "keep.qcow2").is_file()
    assert not info["exists"]
    assert not again["changed"]

    # The target goes only when named, and only when it is empty.
    _made, wrong = modules(backend, ("pool", dir_pool(pool_name, target)),
                           ("pool", {**absent, "delete_target": str(workdir)}))
    assert wrong["failed"] and "delete_target" in wrong["msg"]
    (target / "keep.qcow2").unlink()
    result = module(backend, "pool", {"name": pool_name, "state": "absent", "delete_target": str(target)})
    assert result["changed"] and result["deleted_target"] == str(target), result
    assert not target.exists()


def test_absent_refuses_a_target_that_is_not_empty_before_stopping(backend, workdir, pool_name):
    target = workdir / "images"
    module(backend, "pool", dir_pool(pool_name, target))
    (target / "keep.raw").write_bytes(b"data")
    args = {"name": pool_name, "state": "absent", "delete_target": str(target)}
    predicted = module(backend, "pool", args, check=True)
    result = module(backend, "pool", args)
    for refused in (predicted, result):
        assert refused["failed"] and refused["msg"].startswith("delete_target:"), refused
        assert "not an empty directory" in refused["msg"] and not refused["changed"], refused
    info = module(backend, "pool_info", {"name": pool_name})
    assert info["exists"] and info["pool"]["state"] == "active", info
    assert (target / "keep.raw").read_bytes() == b"data"


def test_target_changed_to_a_missing_directory_while_active(backend, workdir, pool_name):
    """The new target waits for the next start, as in libvirt; stopping and going back work."""
    target, elsewhere = workdir / "images", workdir / "nowhere"
    # One playbook: the assertions read only the results (nothing creates ``elsewhere`` back).
    _made, moved, moved_info, stopped, back, back_info, gone = modules(
        backend, ("pool", dir_pool(pool_name, target)),
        ("pool", {"name": pool_name, "type": "dir", "target": {"path": str(elsewhere)}}),
        ("pool_info", {"name": pool_name}), ("pool", {"name": pool_name, "state": "inactive"}),
        ("pool", {"name": pool_name, "type": "dir", "target": {"path": str(target)}}),
        ("pool_info", {"name": pool_name}), ("pool", {"name": pool_name, "state": "absent"}))
    assert moved["changed"] and moved["state"] == "active" and moved["restart_required"], moved
    info = moved_info["pool"]
    assert info["active"] and info["target"] == str(elsewhere) and info["capacity"] > 0, info
    assert stopped["changed"] and stopped["state"] == "inactive", stopped
    assert back["changed"] and back["state"] == "active" and not back["restart_required"], back
    info = back_info["pool"]
    assert info["active"] and info["target"] == str(target), info
    assert not elsewhere.exists()
    assert gone["changed"] and gone["state"] == "absent", gone


def test_inactive_pool_and_state_survive_new_runs(backend, workdir, pool_name):
    target = workdir / "images"
    # Each call is a task of one playbook, a module run of its own as in separate runs.
    _made, stopped, info, refused, started = modules(
        backend, ("pool", dir_pool(pool_name, target)), ("pool", {"name": pool_name, "state": "inactive"}),
        ("pool_info", {"name": pool_name}), ("volume", {"pool": pool_name, "name": "x.raw", "capacity": "1MiB"}),
        ("pool", {"name": pool_name, "state": "active"}))
    assert stopped["changed"] and stopped["state"] == "inactive"
    assert info["pool"]["state"] == "inactive"
    assert refused["failed"] and "not active" in refused["msg"]
    assert started["changed"] and started["state"] == "active"


# Written as YAML text: an unquoted 0750 reaches the module as the number 488, as in a user's playbook.
UNQUOTED_MODES = """
- hosts: localhost
  gather_facts: false
  module_defaults:
    group/virtops.qemu.qemu: {{uri: "{uri}"}}
  tasks:
    - name: pool
      virtops.qemu.pool: {{name: {pool}, type: dir, target: {{path: {path}, mode: 0750}}, build: true}}
    - name: volume
      virtops.qemu.volume: {{pool: {pool}, name: v.raw, capacity: 1MiB, format: raw, mode: 0640}}
    - name: pool again, symbolic
      virtops.qemu.pool: {{name: {pool}, type: dir, target: {{path: {path}, mode: "u=rwx,g=rx,o="}}}}
    - name: volume again, octal string
      virtops.qemu.volume: {{pool: {pool}, name: v.raw, mode: "640"}}
"""


def test_unquoted_yaml_modes_are_octal_as_for_ansible_builtin_file(backend, workdir, pool_name):
    target = workdir / "modes"
    playbook = workdir / "modes.yml"
    playbook.write_text(UNQUOTED_MODES.format(uri=backend.uri, pool=pool_name, path=target), encoding="utf-8")
    results = {r["task"]: r for r in run_playbook(playbook)}
    assert not [r for r in results.values() if r.get("failed")], results
    assert results["pool"]["changed"] and results["volume"]["changed"], results
    assert (target.stat().st_mode & 0o777) == 0o750
    assert ((target / "v.raw").stat().st_mode & 0o777) == 0o640
    assert "<mode>0750</mode>" in results["pool"]["xml"] and "<mode>0640</mode>" in results["volume"]["xml"]
    assert not results["pool again, symbolic"]["changed"], results["pool again, symbolic"]
    assert not results["volume again, octal string"]["changed"], results["volume again, octal string"]


POOL_BAD_INPUTS = [
    ({"type": "dir", "target": {"path": "relative/dir"}}, "target.path: the target path must be absolute"),
    ({"type": "fs", "target": {"path": "/var/tmp/vt-nowhere"}}, "source.devices: a fs pool needs a source device"),
    ({"type": "iscsi-direct", "source": {"hosts": [{"name": "192.0.2.1"}], "devices": ["iqn.2024-01.x:y"]}},
     "source.initiator"),
]


def test_pool_bad_input_changes_nothing(backend, pool_name):
    # one playbook: a task per bad input, then pool_info
    *results, info = run_module_calls([("pool", {"uri": backend.uri, "name": pool_name, **args})
                                       for args, _message in POOL_BAD_INPUTS]
                                      + [("pool_info", {"uri": backend.uri, "name": pool_name})], diff=True)
    for (args, message), result in zip(POOL_BAD_INPUTS, results, strict=True):
        assert result["failed"] and message in result["msg"], (args, result)
    assert not info["exists"], info


def test_pool_of_another_type_refused(backend, workdir, pool_name):
    _made, before, result, after = modules(
        backend, ("pool", dir_pool(pool_name, workdir / "images")), ("pool_info", {"name": pool_name}),
        ("pool", {"name": pool_name, "type": "fs", "source": {"devices": ["/dev/null"]},
                  "target": {"path": str(workdir / "images")}}), ("pool_info", {"name": pool_name}))
    assert result["failed"] and result["msg"].startswith("type:") and "'dir'" in result["msg"], result
    assert after["pool"]["xml"] == before["pool"]["xml"]


VOLUME_BAD_INPUTS = [
    ({"name": "a/b", "capacity": "1MiB"}, "name: 'a/b' is not a valid volume name"),
    ({"name": "x.raw", "capacity": "10QB"}, "capacity: unknown unit"),
    ({"name": "x.raw"}, "capacity: volume 'x.raw' does not exist; give its capacity"),
]


def test_volume_bad_input_changes_nothing(backend, workdir, pool_name):
    target = workdir / "images"
    # one playbook: the pool, then a task per bad input
    pool, *results = run_module_calls([("pool", {"uri": backend.uri, **dir_pool(pool_name, target)})]
                                      + [("volume", {"uri": backend.uri, "pool": pool_name, **args})
                                         for args, _message in VOLUME_BAD_INPUTS], diff=True)
    assert pool["changed"] and not pool["failed"], pool
    for (args, message), result in zip(VOLUME_BAD_INPUTS, results, strict=True):
        assert result["failed"] and message in result["msg"], (args, result)
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
        assert volume["changed"] and volume["path"] == str(target / "v.qcow2")
        assert "volume_path" not in volume, "removed in 0.5.0"
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


@pytest.fixture
def image_file(workdir):
    """An ext4 filesystem in a regular file: what an fs pool must not mount."""
    path = workdir / "fs.img"
    with open(path, "wb") as handle:
        handle.truncate(64 * MiB)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(path)], check=True)
    yield path
    release_loops(path)


def release_loops(path: Path) -> None:
    """Unmount (here and in libvirtd's mount namespace) and detach what a failed run left on ``path``."""
    for loop in loops_of(path):
        number = os.stat(loop).st_rdev
        device = f"{os.major(number)}:{os.minor(number)}"
        libvirtd = Path(LIBVIRTD_PIDFILE).read_text(encoding="ascii").split()[0]
        for pid in ("self", libvirtd):
            for line in Path(f"/proc/{pid}/mountinfo").read_text(encoding="utf-8").splitlines():
                if line.split()[2] == device:
                    prefix = [] if pid == "self" else ["nsenter", "-t", pid, "-m"]
                    subprocess.run([*prefix, "umount", line.split()[4]], check=False)
        subprocess.run(["losetup", "--detach", loop], check=False)


def loops_of(path: Path) -> list[str]:
    found = subprocess.run(["losetup", "--noheadings", "--output", "NAME", "--associated", str(path)],
                           capture_output=True, text=True, check=True).stdout
    return found.split()


@pytest.mark.parametrize("how", ["options", "xml"])
def test_fs_pool_on_a_regular_file_refused_before_anything_changes(backend, workdir, pool_name, image_file, how):
    target = workdir / "mnt"
    if how == "options":
        args = {"name": pool_name, "type": "fs", "source": {"devices": [str(image_file)], "format": "ext4"},
                "target": {"path": str(target)}, "build": True}
    else:
        args = {"name": pool_name, "build": True, "xml": (
            f"<pool type='fs'><name>{pool_name}</name><source><device path='{image_file}'/>"
            f"<format type='ext4'/></source><target><path>{target}</path></target></pool>")}
    predicted = module(backend, "pool", args, check=True)
    result = module(backend, "pool", args)
    option = "source.devices[0]:" if how == "options" else "xml:"
    for refused in (predicted, result):
        assert refused["failed"] and refused["msg"].startswith(option), refused
        assert f"{image_file} of fs pool" in refused["msg"] and "not a block device" in refused["msg"], refused
    assert not module(backend, "pool_info", {"name": pool_name})["exists"]
    assert not target.exists() and not mounted_on(backend, target)
    assert loops_of(image_file) == []


def test_unreadable_definition_of_an_active_fs_pool_stops_and_goes(embed_backend, workdir, loop_device):
    """As for domains: the status record tears the pool down, a warning names the file, absent removes it."""
    backend, target, pool_name = embed_backend, workdir / "mnt", f"vt-{secrets.token_hex(4)}"
    try:
        _unreadable_definition_scenario(backend, target, pool_name, loop_device)
    finally:
        remove_pool(backend, pool_name)
        if mounted_on(backend, target):
            subprocess.run(["umount", str(target)], check=False)


def _unreadable_definition_scenario(backend, target: Path, pool_name: str, loop_device: str) -> None:
    started = module(backend, "pool", {"name": pool_name, "type": "fs", "target": {"path": str(target)},
                                       "source": {"devices": [loop_device], "format": "ext4"},
                                       "build": True, "build_overwrite": True})
    assert started["changed"] and mounted_on(backend, target), started
    definition = Path(backend.root, "etc", "storage", f"{pool_name}.xml")
    definition.write_text("<pool><x\n")
    listed = module(backend, "pool_info", {})["pools"]
    entry = next(p for p in listed if p["name"] == pool_name)
    assert set(entry) == {"name", "error"} and str(definition) in entry["error"], entry
    kept = module(backend, "pool", {"name": pool_name, "state": "active"})
    assert not kept["failed"] and not kept["changed"] and kept["state"] == "active", kept
    stopped = module(backend, "pool", {"name": pool_name, "state": "inactive"})
    assert stopped["changed"] and stopped["state"] == "inactive", stopped
    assert any(str(definition) in warning for warning in stopped["warnings"]), stopped
    assert not mounted_on(backend, target)
    gone = module(backend, "pool", {"name": pool_name, "state": "absent"})
    assert gone["changed"] and gone["state"] == "absent", gone
    assert any(str(definition) in warning for warning in gone["warnings"]), gone
    assert not definition.exists()
    assert not module(backend, "pool_info", {"name": pool_name})["exists"]


# -- iscsi-direct against a real target, on each backend ----------------------------------------
@dataclass
class IscsiSide:
    """Where the iSCSI target must listen for one backend, and where modules run."""

    name: str
    uri: str
    target_netns: Netns                 # tgtd listens on 127.0.0.1 there
    module_netns: str | None            # None: modules only talk to a daemon

    def run(self, module_name: str, args: dict, **kwargs) -> dict:
        return run_module(module_name, {"uri": self.uri, **args}, netns=self.module_netns, **kwargs)


def iscsi_direct_supported(virsh) -> bool:
    caps = etree.fromstring(virsh("pool-capabilities").encode())
    return caps.find("pool[@type='iscsi-direct']").get("supported") == "yes"


@pytest.fixture
def libvirtd_with_iscsi_direct(libvirtd):
    """The harness libvirtd when it serves iscsi-direct pools; else a private one started now.

    A libvirtd started before libvirt-daemon-driver-storage-iscsi-direct was
    installed lacks the driver until it restarts; the private daemon (own
    network and mount namespaces) loads it.
    """
    if iscsi_direct_supported(libvirtd.virsh):
        pid = int(Path(LIBVIRTD_PIDFILE).read_text(encoding="ascii").split()[0])
        yield libvirtd.uri, Netns(libvirtd.netns) if libvirtd.netns else netns_named_like(pid)
        return
    base = Path(tempfile.mkdtemp(prefix="vtl-", dir="/var/tmp"))
    # No virtlogd serves the private daemon's /run/libvirt: QEMU writes its log itself.
    daemon = PrivateLibvirtd(base, debian_qemu_conf_text() + '\nstdio_handler = "file"\n')
    try:
        daemon.start()
        assert iscsi_direct_supported(daemon.virsh), "a new libvirtd has no iscsi-direct storage driver"
        namespace = Netns(daemon.netns)
        namespace.run(["ip", "link", "set", "lo", "up"])
        yield daemon.uri, namespace
    finally:
        daemon.close()


@pytest.fixture(params=BACKENDS)
def iscsi_side(request, netns) -> IscsiSide:
    if request.param == "libvirt":
        uri, target_netns = request.getfixturevalue("libvirtd_with_iscsi_direct")
        return IscsiSide("libvirt", uri, target_netns, None)
    return IscsiSide("embed", f"qemu:///embed?root={request.getfixturevalue('root')}", netns, netns.name)


@pytest.mark.guest
def test_iscsi_direct_pool_and_guest(iscsi_side, guest, workdir):
    side = iscsi_side
    pool, domain = f"vt-{secrets.token_hex(4)}", f"vt-iscsi-{secrets.token_hex(3)}"
    source = {"hosts": [{"name": PORTAL}], "devices": [TARGET_IQN], "initiator": INITIATOR_IQN}
    args = {"name": pool, "type": "iscsi-direct", "source": source}
    with iscsi_target(side.target_netns, [lun_file(workdir / "lun1.img", 16 * MiB)]):
        try:
            result = side.run("pool", args, diff=True)
            assert result["changed"] and result["state"] == "active", result
            assert not side.run("pool", args)["changed"]
            info = side.run("pool_info", {"name": pool})["pool"]
            volumes = {v["name"]: v["capacity"] for v in info["volumes"]}
            # libvirt 9 also lists tgt's controller LUN 0 (capacity 0) and counts the disk LUN's
            # capacity from its last block address, one block short; the embedded driver lists disk LUNs.
            assert volumes.pop("unit:0:0:1") in (16 * MiB, 16 * MiB - 512), info
            assert volumes == ({"unit:0:0:0": 0} if side.name == "libvirt" else {}), info
            refused = side.run("volume", {"pool": pool, "name": "new", "capacity": "1MiB"})
            assert refused["failed"] and "cannot be created" in refused["msg"], refused
            serial = workdir / "serial.log"
            booted = side.run("domain", {
                "name": domain, "type": "qemu", "memory": "256MiB", "vcpus": 1, "state": "running",
                "kernel": {"path": str(guest.kernel), "initrd": str(guest.initrd), "cmdline": guest.cmdline},
                "serials": [{"type": "file", "path": str(serial)}], "features": ["acpi"], "on_poweroff": "destroy",
                "disks": [{"pool": pool, "volume": "unit:0:0:1", "target": "vda"}]})
            assert booted["changed"] and booted["state"] == "running", booted
            log = wait_for_line(serial, "VIRTOPS-DISK vda", timeout=120)
            assert f"VIRTOPS-DISK vda {16 * MiB // 512}" in log
        finally:
            side.run("domain", {"name": domain, "state": "absent"})
            side.run("pool", {"name": pool, "state": "absent"})


# -- importing images ---------------------------------------------------------------------------
def import_run(backend, netns, workdir: Path, args: dict, check: bool = False) -> dict:
    """The volume module in the server's namespace; through libvirt it stages in workdir/tmp."""
    tmp = workdir / "tmp"
    tmp.mkdir(exist_ok=True)
    return run_module("volume", {"uri": backend.uri, **args}, check=check, diff=True, netns=netns.name,
                      env={"TMPDIR": str(tmp)})


def leftovers(workdir: Path) -> list[str]:
    """Temporaries of an import: in the pool's directory (embedded, libvirt's hidden volume) or staged locally."""
    return sorted(p.name for d in (workdir / "images", workdir / "tmp") if d.is_dir()
                  for p in d.iterdir() if ".import-" in p.name)


def same_content(image: Path, volume: Path, fmt: str) -> bool:
    return subprocess.run(["qemu-img", "compare", "-f", "qcow2", "-F", fmt, str(image), str(volume)],
                          capture_output=True, check=False).returncode == 0


def test_import_from_url_converted_grown_and_not_again(backend, workdir, pool_name, netns):
    target = workdir / "images"
    module(backend, "pool", dir_pool(pool_name, target))
    image = served_image(workdir)
    with image_server(netns, image.parent) as base:
        args = {"pool": pool_name, "name": "disk.raw", "format": "raw", "capacity": "32MiB",
                "source": {"url": f"{base}/disk.qcow2", "checksum": sha256(image)}}
        predicted = import_run(backend, netns, workdir, args, check=True)
        assert predicted["changed"] and predicted["capacity"] == 32 * MiB, predicted
        assert list(target.iterdir()) == [] and leftovers(workdir) == []
        result = import_run(backend, netns, workdir, args)
        assert result["changed"] and result["checksum"] == sha256(image), result
        assert predicted["diff"] == result["diff"], (predicted["diff"], result["diff"])
        info = qemu_img_info(target / "disk.raw")
        assert info["format"] == "raw" and info["virtual-size"] == 32 * MiB, info
        assert same_content(image, target / "disk.raw", "raw")
        again = import_run(backend, netns, workdir, args)
        assert not again["changed"] and again["checksum"] is None, again
        assert sorted(p.name for p in target.iterdir()) == ["disk.raw"] and leftovers(workdir) == []


def test_import_wrong_checksum_or_missing_image_leaves_nothing(backend, workdir, pool_name, netns):
    target = workdir / "images"
    module(backend, "pool", dir_pool(pool_name, target))
    image = served_image(workdir)
    with image_server(netns, image.parent) as base:
        wrong = import_run(backend, netns, workdir, {"pool": pool_name, "name": "disk.qcow2", "format": "qcow2",
                                                     "source": {"url": f"{base}/disk.qcow2",
                                                                "checksum": "sha256:" + "0" * 64}})
        assert wrong["failed"] and wrong["msg"].startswith("source.checksum:"), wrong
        assert sha256(image)[7:] in wrong["msg"]
        missing = import_run(backend, netns, workdir, {"pool": pool_name, "name": "disk.qcow2",
                                                       "source": {"url": f"{base}/nothing.qcow2"}})
        assert missing["failed"] and "HTTP error 404" in missing["msg"], missing
    assert list(target.iterdir()) == [] and leftovers(workdir) == []
    volumes = module(backend, "pool_info", {"name": pool_name})["pool"]["volumes"]
    assert volumes == [], volumes


def test_import_over_https_validates_certificates_unless_told(backend, workdir, pool_name, netns):
    target = workdir / "images"
    module(backend, "pool", dir_pool(pool_name, target))
    image = served_image(workdir)
    with image_server(netns, image.parent, https=True) as base:
        args = {"pool": pool_name, "name": "disk.qcow2", "format": "qcow2",
                "source": {"url": f"{base}/disk.qcow2", "checksum": sha256(image)}}
        refused = import_run(backend, netns, workdir, args)
        assert refused["failed"] and "certificate" in refused["msg"], refused
        assert "validate_certs" in refused["msg"], refused
        assert list(target.iterdir()) == [] and leftovers(workdir) == []
        args["source"]["validate_certs"] = False
        result = import_run(backend, netns, workdir, args)
    assert result["changed"] and qemu_img_info(target / "disk.qcow2")["format"] == "qcow2", result
    assert same_content(image, target / "disk.qcow2", "qcow2")


def test_import_killed_mid_download_is_cleaned_and_completed_by_the_next_run(backend, workdir, pool_name, netns):
    import re
    import signal
    import threading
    import time
    target = workdir / "images"
    module(backend, "pool", dir_pool(pool_name, target))
    image = served_image(workdir)
    with image_server(netns, image.parent) as base:
        args = {"pool": pool_name, "name": "disk.raw", "format": "raw",
                "source": {"url": f"{base}/disk.qcow2", "checksum": sha256(image)}}
        slow = {**args, "source": {**args["source"], "url": f"{base}/disk.qcow2?slow"}}
        killed: list[dict] = []
        runner = threading.Thread(target=lambda: killed.append(import_run(backend, netns, workdir, slow)))
        runner.start()
        deadline = time.monotonic() + 120
        while not leftovers(workdir) and time.monotonic() < deadline:
            time.sleep(0.1)
        temporary = leftovers(workdir)
        assert temporary, "no temporary file appeared"
        pid = int(re.search(r"\.import-(\d+)", temporary[0]).group(1))
        os.kill(pid, signal.SIGKILL)
        runner.join(120)
        assert killed and killed[0]["failed"], killed
        assert leftovers(workdir) == temporary and not (target / "disk.raw").exists()
        result = import_run(backend, netns, workdir, args)
    assert result["changed"] and same_content(image, target / "disk.raw", "raw"), result
    assert leftovers(workdir) == []


def test_import_from_a_file_refuses_a_smaller_capacity(backend, workdir, pool_name):
    target = workdir / "images"
    module(backend, "pool", dir_pool(pool_name, target))
    image = served_image(workdir)
    args = {"pool": pool_name, "name": "copy.qcow2", "format": "qcow2",
            "source": {"path": str(image), "checksum": sha256(image)}}
    small = module(backend, "volume", {**args, "capacity": "8MiB"})
    assert small["failed"] and small["msg"].startswith("capacity:"), small
    predicted = module(backend, "volume", args, check=True)
    assert predicted["changed"] and predicted["capacity"] == 16 * MiB, predicted
    result = module(backend, "volume", args)
    assert result["changed"] and predicted["diff"] == result["diff"], (predicted, result)
    assert same_content(image, target / "copy.qcow2", "qcow2") and image.exists()
    assert sorted(p.name for p in target.iterdir()) == ["copy.qcow2"]


def test_pool_refresh_shows_files_copied_in_by_hand(backend, workdir, pool_name):
    import shutil
    target = workdir / "images"
    module(backend, "pool", dir_pool(pool_name, target))
    shutil.copyfile(served_image(workdir), target / "byhand.qcow2")
    listed = module(backend, "pool_info", {"name": pool_name})["pool"]["volumes"]
    # libvirt lists what it scanned; the embedded driver reads the directory each time.
    assert [v["name"] for v in listed] == ([] if backend.name == "libvirt" else ["byhand.qcow2"]), listed
    predicted = module(backend, "pool", {"name": pool_name, "refresh": True}, check=True)
    assert not predicted["changed"] and not predicted["refreshed"], predicted
    result = module(backend, "pool", {"name": pool_name, "refresh": True})
    assert not result["changed"] and result["refreshed"], result
    listed = module(backend, "pool_info", {"name": pool_name})["pool"]["volumes"]
    assert [(v["name"], v["format"], v["capacity"]) for v in listed] == [("byhand.qcow2", "qcow2", 16 * MiB)]
    refused = module(backend, "pool", {"name": pool_name, "state": "inactive", "refresh": True})
    assert refused["failed"] and refused["msg"].startswith("refresh:"), refused


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_import_removes_what_killed_runs_left_and_keeps_a_live_ones(backend, workdir, pool_name):
    target = workdir / "images"
    module(backend, "pool", dir_pool(pool_name, target))
    stale, live = target / f".disk.raw.import-{dead_pid()}.part", target / f".disk.raw.import-{os.getpid()}.part"
    stale.write_bytes(b"half an image")
    live.write_bytes(b"being written")
    module(backend, "pool", {"name": pool_name, "refresh": True})
    image = served_image(workdir)
    result = module(backend, "volume", {"pool": pool_name, "name": "disk.raw", "source": {"path": str(image)}})
    assert result["changed"] and same_content(image, target / "disk.raw", "raw"), result
    assert not stale.exists() and live.read_bytes() == b"being written"


def test_import_into_a_full_pool_fails_and_leaves_nothing(backend, workdir, pool_name, netns):
    """A 1 MiB tmpfs as the pool (mounted where the pool's files are written: in libvirtd's mount namespace)."""
    target = workdir / "images"
    target.mkdir()
    libvirtd = Path(LIBVIRTD_PIDFILE).read_text(encoding="ascii").split()[0] if backend.name == "libvirt" else None
    prefix = ["nsenter", "-t", libvirtd, "-m"] if libvirtd else []
    subprocess.run([*prefix, "mount", "-t", "tmpfs", "-o", "size=1m,mode=0711", "tmpfs", str(target)], check=True)
    try:
        module(backend, "pool", dir_pool(pool_name, target))
        image = served_image(workdir)
        with image_server(netns, image.parent) as base:
            full = import_run(backend, netns, workdir, {"pool": pool_name, "name": "disk.qcow2", "format": "qcow2",
                                                        "source": {"url": f"{base}/disk.qcow2"}})
        assert full["failed"] and "No space left on device" in full["msg"], full
        module(backend, "pool", {"name": pool_name, "refresh": True})
        assert module(backend, "pool_info", {"name": pool_name})["pool"]["volumes"] == []
        in_pool = subprocess.run([*prefix, "ls", "-A", str(target)], capture_output=True, text=True, check=True)
        assert in_pool.stdout == "" and leftovers(workdir) == []
    finally:
        remove_pool(backend, pool_name)
        subprocess.run([*prefix, "umount", str(target)], check=False)


def test_import_refuses_an_image_that_reads_another_file(backend, workdir, pool_name):
    target = workdir / "images"
    module(backend, "pool", dir_pool(pool_name, target))
    secret = workdir / "secret.raw"
    secret.write_bytes(b"not for a guest" * 1000)
    overlay = workdir / "overlay.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(secret), "-F", "raw", str(overlay)],
                   check=True)
    refused = module(backend, "volume", {"pool": pool_name, "name": "disk.raw", "source": {"path": str(overlay)}})
    assert refused["failed"] and refused["msg"].startswith("source:") and "another file" in refused["msg"], refused
    assert list(target.iterdir()) == []
