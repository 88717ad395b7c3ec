"""The embedded driver's security for real: QEMU user and group, DAC ownership, device cgroup, LSMs.

Every test has a private root under /tmp and its own copies of the guest's
kernel and initrd, whose owners the driver changes and gives back.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from lxml import etree

from ansible_collections.virtops.qemu.plugins.module_utils.driver.connect import open_driver
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.security import cgroup, dac
from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError, InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.model.capabilities import summarise
from ansible_collections.virtops.qemu.plugins.module_utils.qmp import QMPError
from harness.ansible import run_module
from harness.embed import qemu_pids
from harness.guest import MARKER
from harness.libvirtd import wait_for_line

QEMU_USER = pwd.getpwnam("libvirt-qemu")
QEMU_GROUPS = sorted(set(os.getgrouplist("libvirt-qemu", QEMU_USER.pw_gid)))
IMAGE_OWNER = (4321, 4322)

pytestmark = [pytest.mark.embed]


def _conf(root: Path, text: str) -> None:
    (root / "etc").mkdir(mode=0o700, exist_ok=True)
    (root / "etc" / "qemu.conf").write_text(text)


def _domain(files: dict, name: str, disk: str, extra: str = "") -> str:
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>256</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{files['kernel']}</kernel><initrd>{files['initrd']}</initrd><cmdline>{files['cmdline']}</cmdline></os>
  <features><acpi/></features>
  <devices>
    {disk}
    <serial type='file'><source path='{files['serial']}'/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
  {extra}
</domain>"""


@pytest.fixture
def files(guest, workdir: Path) -> dict:
    """Private kernel, initrd and a raw image owned by someone else, mode 0600."""
    kernel = Path(shutil.copy(guest.kernel, workdir / "vmlinuz"))
    initrd = Path(shutil.copy(guest.initrd, workdir / "initrd.img"))
    image = workdir / "disk.img"
    with open(image, "wb") as handle:
        handle.truncate(4 << 20)
    os.chown(image, *IMAGE_OWNER)
    image.chmod(0o600)
    return {"kernel": kernel, "initrd": initrd, "image": image, "cmdline": guest.cmdline,
            "serial": workdir / "serial.log"}


def _file_disk(path) -> str:
    return (f"<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{path}'/>"
            "<target dev='vda' bus='virtio'/></disk>")


def _owner(path) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_uid, info.st_gid


def _ids(pid: int) -> dict[str, list[int]]:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in status)
    return {key: [int(v) for v in fields[key].split()] for key in ("Uid", "Gid", "Groups")}


def _start(driver, xml: str, name: str) -> int:
    driver.domains.define(xml)
    driver.domains.start(name)
    return driver.domains.runtime(name).pid


DAC_CONF = 'user = "libvirt-qemu"\ndynamic_ownership = 1\nremember_owner = 1\n'


def test_qemu_runs_as_its_user_and_owns_the_files_while_running(root, driver, files):
    _conf(root, DAC_CONF)
    pid = _start(driver, _domain(files, "vt-dac", _file_disk(files["image"])), "vt-dac")
    ids = _ids(pid)
    assert ids["Uid"] == [QEMU_USER.pw_uid] * 4 and ids["Gid"] == [QEMU_USER.pw_gid] * 4
    assert sorted(ids["Groups"]) == QEMU_GROUPS
    wait_for_line(files["serial"], MARKER)      # the guest boots from files only QEMU's user may read
    qemu = (QEMU_USER.pw_uid, QEMU_USER.pw_gid)
    for path in (files["image"], files["kernel"], files["initrd"], files["serial"]):
        assert _owner(path) == qemu, path
    assert dac.remembered_owner(str(files["image"])) == dac.Owner(*IMAGE_OWNER)
    live = etree.fromstring(driver.domains.xml("vt-dac", inactive=False).encode())
    label = live.find("seclabel")
    assert dict(label.attrib) == {"type": "dynamic", "model": "dac", "relabel": "yes"}
    assert label.findtext("label") == label.findtext("imagelabel") == f"+{qemu[0]}:+{qemu[1]}"
    monitor_dir = root / "lib" / "qemu" / "domain-1-vt-dac"
    assert _owner(monitor_dir) == qemu and (monitor_dir / "monitor.sock").is_socket()

    driver.domains.destroy("vt-dac")
    assert _owner(files["image"]) == IMAGE_OWNER
    assert _owner(files["kernel"]) == (0, 0) and _owner(files["serial"]) == (0, 0)
    assert dac.remembered_owner(str(files["image"])) is None
    assert "trusted.libvirt.security.dac" not in os.listxattr(files["image"])


def test_a_crash_cleaned_up_later_gives_the_files_back(root, files):
    _conf(root, DAC_CONF)
    uri = f"qemu:///embed?root={root}"
    with open_driver(uri) as driver:
        pid = _start(driver, _domain(files, "vt-crash", _file_disk(files["image"])), "vt-crash")
    assert _owner(files["image"]) == (QEMU_USER.pw_uid, QEMU_USER.pw_gid)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    with open_driver(uri) as later:      # a later run finds QEMU gone and cleans up
        status = later.domains.status("vt-crash")
    assert (status.state, status.reason) == ("shutoff", "crashed")
    assert _owner(files["image"]) == IMAGE_OWNER and _owner(files["kernel"]) == (0, 0)


def test_read_only_disk_and_relabel_no_are_left_alone(root, driver, files, workdir):
    _conf(root, DAC_CONF)
    shared = workdir / "shared.img"
    shared.write_bytes(b"\0" * 65536)
    kept = workdir / "kept.img"
    kept.write_bytes(b"\0" * 65536)
    os.chown(kept, *IMAGE_OWNER)
    kept.chmod(0o666)
    disks = (f"<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{shared}'/>"
             "<target dev='vda' bus='virtio'/><readonly/></disk>"
             f"<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{kept}'>"
             "<seclabel model='dac' relabel='no'/></source><target dev='vdb' bus='virtio'/></disk>")
    _start(driver, _domain(files, "vt-ro", disks), "vt-ro")
    qemu = (QEMU_USER.pw_uid, QEMU_USER.pw_gid)
    assert _owner(shared) == qemu and _owner(kept) == IMAGE_OWNER
    driver.domains.destroy("vt-ro")
    # A read-only disk may be in use by other domains: libvirt never takes it back, nor does this driver.
    assert _owner(shared) == qemu and _owner(kept) == IMAGE_OWNER


@pytest.fixture
def loops(workdir: Path):
    devices = []
    for index in range(2):
        backing = workdir / f"loop{index}.img"
        with open(backing, "wb") as handle:
            handle.truncate(8 << 20)
        devices.append(subprocess.run(["losetup", "-f", "--show", str(backing)], check=True,
                                      capture_output=True, text=True).stdout.strip())
    try:
        yield devices
    finally:
        for device in devices:
            subprocess.run(["losetup", "-d", device], check=False)


def test_block_disk_works_inside_the_device_cgroup_and_other_devices_are_denied(root, driver, files, loops):
    allowed, other = loops
    disk = (f"<disk type='block' device='disk'><driver name='qemu' type='raw'/><source dev='{allowed}'/>"
            "<target dev='vda' bus='virtio'/></disk>")
    home = _device_cgroup_of(os.getpid())
    pid = _start(driver, _domain(files, "vt-cg", disk), "vt-cg")
    assert _device_cgroup_of(os.getpid()) == home != _device_cgroup_of(pid)   # QEMU was forked from inside it
    mount = cgroup.controller_mount()
    assert mount == "/sys/fs/cgroup/devices"
    own = [line.split(":", 2) for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()]
    path = mount + next(entry[2] for entry in own if "devices" in entry[1].split(","))
    expected = [rule.line() for rule in (cgroup.rule_for(p) for p in cgroup.DEFAULT_ACL) if rule]
    device = os.stat(allowed).st_rdev
    expected.append(f"b {os.major(device)}:{os.minor(device)} rw")
    assert Path(path, "devices.list").read_text().split("\n")[:-1] == expected
    in_group = set(Path(path, "tasks").read_text().split())
    assert in_group and in_group <= {t.name for t in Path(f"/proc/{pid}/task").iterdir()}, \
        "only QEMU's threads are in its cgroup: the thread that forked it is gone"
    blocks = driver.domains.monitor("vt-cg", {"execute": "query-named-block-nodes"})
    assert allowed in {node["file"] for node in blocks}
    with pytest.raises(QMPError, match="Operation not permitted"):
        driver.domains.monitor("vt-cg", {"execute": "blockdev-add", "arguments": {
            "driver": "host_device", "filename": other, "node-name": "denied"}})
    driver.domains.destroy("vt-cg")
    assert not os.path.exists(path)


def _device_cgroup_of(pid: int) -> str:
    own = [line.split(":", 2) for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()]
    return next(entry[2] for entry in own if "devices" in entry[1].split(","))


def _cgroup_mounts() -> list[str]:
    return [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if " - cgroup " in line]


def test_device_cgroup_under_ip_netns_exec_is_applied_and_removed(root, files, netns):
    """ip netns exec mounts a /sys of its own, without cgroups: the ACL must still be applied and go again."""
    uri, mounts = f"qemu:///embed?root={root}", _cgroup_mounts()
    hierarchy = Path(cgroup.controller_mount() or "/sys/fs/cgroup/devices")
    group_of_root = hierarchy / "virtops" / f"embed-{hashlib.sha256(str(root).encode()).hexdigest()[:12]}"
    expected = [rule.line() for rule in (cgroup.rule_for(p) for p in cgroup.DEFAULT_ACL) if rule]
    for started_in, removed_in in ((netns.name, netns.name), (None, netns.name)):
        domain = {"uri": uri, "name": "vt-ns", "state": "running",
                  "xml": _domain(files, "vt-ns", _file_disk(files["image"]))}
        started = run_module("domain", domain, netns=started_in)
        assert started["changed"] and started["state"] == "running", started
        assert not started.get("warnings"), started
        pid = qemu_pids(root)[0]
        assert _device_cgroup_of(pid) == "/virtops/" + group_of_root.name + "/vt-ns"
        assert (group_of_root / "vt-ns" / "devices.list").read_text().split("\n")[:-1] == expected
        removed = run_module("domain", {"uri": uri, "name": "vt-ns", "state": "absent"}, netns=removed_in)
        assert removed["changed"] and not removed.get("warnings"), removed
        assert qemu_pids(root) == []
        assert not group_of_root.exists(), list(group_of_root.iterdir())
    assert _cgroup_mounts() == mounts


def test_lsm_the_host_lacks_is_refused_and_none_works(root, driver, files):
    assert not os.path.exists("/sys/fs/selinux/enforce")
    assert not os.path.exists("/sys/module/apparmor/parameters/enabled")
    _conf(root, 'security_driver = "selinux"\n')
    driver.domains.define(_domain(files, "vt-lsm", ""))
    with pytest.raises(BackendError, match=r"security_driver 'selinux' is set in qemu.conf but SELinux is not "
                                           r"enabled \(/sys/fs/selinux/enforce does not exist\)"):
        driver.domains.start("vt-lsm")
    assert driver.domains.status("vt-lsm").state == "shutoff"

    _conf(root, 'security_driver = "none"\n')
    driver.domains.define(_domain(files, "vt-lsm", "", "<seclabel type='dynamic' model='apparmor'/>"))
    with pytest.raises(InvalidInput, match=r"^seclabel\[@model='apparmor'\]: the domain asks for the apparmor "
                                           r"security model, which is not in force"):
        driver.domains.start("vt-lsm")
    driver.domains.define(_domain(files, "vt-lsm", ""))
    driver.domains.start("vt-lsm")
    assert driver.domains.status("vt-lsm").state == "running"
    driver.domains.destroy("vt-lsm")


def test_capabilities_list_the_models_in_force(root, driver):
    _conf(root, 'user = "libvirt-qemu"\nsecurity_driver = "none"\n')
    label = f"+{QEMU_USER.pw_uid}:+{QEMU_USER.pw_gid}"
    assert summarise(driver.capabilities())["security_models"] == [
        {"model": "none", "doi": "0", "baselabels": {}},
        {"model": "dac", "doi": "0", "baselabels": {"kvm": label, "qemu": label}},
    ]
