"""Logic of the security labels and of the embedded driver's security managers (no host changes)."""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import threading
from pathlib import Path

import pytest

from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import security
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.security import apparmor, cgroup, dac, selinux
from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError, InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.manager.security_label import blocked, request_from_params
from ansible_collections.virtops.qemu.plugins.module_utils.model import schema, seclabel
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import parse, to_string

DOMAIN = """<domain type='qemu'><name>d</name><memory>65536</memory><os><type>hvm</type></os>
<devices><disk type='file' device='disk'><source file='/img/a.raw'/><target dev='vda' bus='virtio'/></disk>
<disk type='file' device='cdrom'><target dev='sda' bus='sata'/><readonly/></disk></devices>
<seclabel type='dynamic' model='selinux' relabel='yes'><baselabel>system_u:system_r:svirt_t:s0</baselabel></seclabel>
</domain>"""


def _params(**kw):
    return {"name": "d", "state": "present", "labels": [], "disks": [], "check_access": True, **kw}


# -- labels of the definition --------------------------------------------------------
def test_switching_type_replaces_the_element_without_stale_children():
    req = request_from_params(_params(labels=[{"model": "selinux", "type": "none"}]))
    after = seclabel.apply(parse(DOMAIN, "domain"), req.labels, req.disks, True)
    labels = after.findall("seclabel")
    assert len(labels) == 1 and dict(labels[0].attrib) == {"type": "none", "model": "selinux"}
    assert len(labels[0]) == 0
    schema.validate(after, "domain")


def test_static_dac_label_and_disk_label_render_valid_xml():
    req = request_from_params(_params(
        labels=[{"model": "dac", "type": "static", "label": "+107:+107", "relabel": False}],
        disks=[{"target": "vda", "labels": [{"model": "dac", "relabel": False}]}]))
    after = seclabel.apply(parse(DOMAIN, "domain"), req.labels, req.disks, True)
    schema.validate(after, "domain")
    assert seclabel.summary(after) == {
        "labels": [{"model": "selinux", "type": "dynamic", "relabel": "yes",
                    "baselabel": "system_u:system_r:svirt_t:s0"},
                   {"model": "dac", "type": "static", "relabel": "no", "label": "+107:+107"}],
        "disks": {"vda": [{"model": "dac", "relabel": "no"}]}}
    again = seclabel.apply(after, req.labels, req.disks, True)
    assert to_string(again) == to_string(after)


def test_absent_removes_by_model_only():
    req = request_from_params(_params(labels=[{"model": "selinux", "type": "none"}, {"model": "dac",
                                                                                     "type": "none"}]))
    after = seclabel.apply(parse(DOMAIN, "domain"), req.labels, req.disks, False)
    assert after.find("seclabel") is None


@pytest.mark.parametrize(("params", "message"), [
    ({"labels": [{"model": "smack"}]}, "labels[0].model: 'smack' is not one of selinux, apparmor, dac"),
    ({"labels": [{"model": "dac", "type": "sticky"}]}, "labels[0].type: 'sticky' is not one of"),
    ({"labels": [{"model": "dac", "type": "static"}]}, "labels[0].label: a static label needs the label"),
    ({"labels": [{"model": "dac", "relabel": False}]}, "labels[0].relabel: a dynamic label always relabels"),
    ({"labels": [{"model": "dac", "type": "none", "relabel": True}]}, "labels[0].relabel: a label of type none"),
    ({"labels": [{"model": "dac", "type": "static", "label": "107"}]}, "labels[0].label: a DAC label is"),
    ({"labels": [{"model": "dac"}, {"model": "dac", "type": "none"}]}, "labels: model 'dac' is given twice"),
])
def test_bad_labels_name_the_option(params, message):
    with pytest.raises(InvalidInput) as error:
        request_from_params(_params(**params))
    assert message in str(error.value)


@pytest.mark.parametrize(("target", "message"), [
    ("vdz", "disks[0].target: the domain has no disk 'vdz' (its disks: vda, sda)"),
    ("sda", "disks[0].target: disk sda has no source to label"),
])
def test_label_for_a_missing_disk_is_refused(target, message):
    req = request_from_params(_params(disks=[{"target": target, "labels": [{"model": "dac", "relabel": False}]}]))
    with pytest.raises(InvalidInput) as error:
        seclabel.apply(parse(DOMAIN, "domain"), req.labels, req.disks, True)
    assert str(error.value).startswith(message)


def test_live_labels_are_compared_by_model():
    config = parse(DOMAIN, "domain")
    live = parse(DOMAIN.replace("<baselabel>", "<label>system_u:system_r:svirt_t:s0:c1,c2</label><baselabel>"),
                 "domain")
    assert not seclabel.differs_from_live(config, live)
    none = seclabel.apply(config, [seclabel.Label("selinux", "none")], [], True)
    assert seclabel.differs_from_live(none, live)


# -- pre-flight access check ---------------------------------------------------------------
@pytest.fixture
def open_dir():
    """A directory under /var/tmp that every user can search (pytest's own is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="vt-access-", dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def test_blocked_names_the_directory_without_search_permission(open_dir):
    closed = open_dir / "closed"
    closed.mkdir(mode=0o700)
    image = closed / "disk.img"
    image.write_text("")
    assert blocked(str(image), 64055, {64055}, "") == \
        f"no search permission on directory {closed} (mode 0700, owner {os.getuid()}:{os.getgid()})"
    closed.chmod(0o711)
    assert blocked(str(image), 64055, {64055}, "") == ""
    image.chmod(0o600)
    assert "no read and write permission on file" in blocked(str(image), 64055, {64055}, "rw")
    os.chown(closed, -1, 64055)
    closed.chmod(0o710)
    assert blocked(str(image), 64055, {64055}, "") == ""
    assert blocked(str(closed / "missing.img"), 64055, {64055}, "") == f"{closed}/missing.img does not exist"


# -- the managers' choice ----------------------------------------------------------------
def test_policy_stacks_dac_after_the_first_lsm_of_the_host():
    assert security.policy({}, privileged=True, lsms=[]).models == ["none", "dac"]
    assert security.policy({}, privileged=True, lsms=["selinux", "apparmor"]).models == ["selinux", "dac"]
    assert security.policy({"security_driver": "none"}, True, ["apparmor"]).models == ["none", "dac"]
    assert security.policy({}, privileged=False, lsms=["apparmor"]).models == ["apparmor"]


def test_configured_lsm_the_host_lacks_is_refused_at_start():
    pol = security.policy({"security_driver": "apparmor"}, privileged=True, lsms=[])
    with pytest.raises(BackendError, match="security_driver 'apparmor' is set in qemu.conf but AppArmor is not"):
        security.check_domain(pol, parse(DOMAIN, "domain"))
    with pytest.raises(InvalidInput, match="unknown security driver 'smack'"):
        security.policy({"security_driver": "smack"}, True, [])


def test_identity_from_qemu_conf():
    pol = security.policy({"user": "libvirt-qemu"}, privileged=True, lsms=[])
    import pwd
    entry = pwd.getpwnam("libvirt-qemu")
    assert pol.owner == dac.Owner(entry.pw_uid, entry.pw_gid)
    assert set(pol.groups) == set(os.getgrouplist("libvirt-qemu", entry.pw_gid))
    with pytest.raises(InvalidInput, match="qemu.conf user: no user 'nobody-here'"):
        security.policy({"user": "nobody-here"}, True, [])


# -- SELinux and AppArmor logic ------------------------------------------------------------
def test_mcs_pairs_are_unique_and_ordered():
    rng = random.Random(7)
    used: set[str] = set()
    for _round in range(500):
        pair = selinux.allocate_mcs(used, rng)
        low, high = (int(c[1:]) for c in pair.split(","))
        assert 0 <= low < high < selinux.CATEGORIES and pair not in used
        used.add(pair)


def test_mcs_allocation_skips_pairs_in_use():
    rng = random.Random(1)
    first = selinux.allocate_mcs(set(), random.Random(1))
    assert selinux.allocate_mcs({first}, rng) != first


def test_dynamic_labels_share_the_level():
    process, image = selinux.dynamic_labels(set(), rng=random.Random(3))
    assert process.startswith("system_u:system_r:svirt_t:s0:c")
    assert image.startswith("system_u:object_r:svirt_image_t:s0:c")
    assert selinux.mcs_of(process) == selinux.mcs_of(image)
    assert selinux.disk_label(image, readonly=True, shareable=False) == selinux.READONLY_IMAGE
    assert selinux.disk_label(image, readonly=False, shareable=True) == selinux.SHARED_IMAGE


def test_apparmor_profile_names_exactly_the_domain_files():
    text = apparmor.profile_text("1234", "/usr/bin/qemu-system-x86_64",
                                 [("/img/a.raw", "rw"), ("/boot/vmlinuz", "r")])
    assert "profile libvirt-1234 flags=(attach_disconnected) {" in text
    assert '  "/img/a.raw" rwk,\n' in text and '  "/boot/vmlinuz" rk,\n' in text
    assert '"/usr/bin/qemu-system-x86_64" rmix,' in text
    with pytest.raises(BackendError):
        apparmor.profile_text("1", "/q", [('/bad"path', "r")])


def test_lsm_detection_on_this_host_finds_none():
    assert not selinux.available() and not apparmor.available()
    assert security.host_lsms() == []


# -- device cgroup rules -------------------------------------------------------------------
def test_device_rules_of_a_domain(tmp_path):
    live = parse("""<domain type='qemu'><name>d</name><devices>
        <disk type='block' device='disk'><source dev='/dev/null'/><target dev='vda'/><readonly/></disk>
        <serial type='pty'><target port='0'/></serial>
        <interface type='bridge'><source bridge='br0'/></interface></devices></domain>""", "domain")
    lines = [rule.line() for rule in cgroup.domain_rules(live, ["/dev/zero", "/dev/nonexistent"])]
    assert lines == ["c 1:5 rw", "c 1:3 r", "c 136:* rw", "c 10:200 rw"]


def test_cgroup_v1_devices_mount_is_found(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text("cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n"
                      "cgroup /sys/fs/cgroup/devices cgroup rw,relatime,devices 0 0\n")
    assert cgroup.controller_mount(str(mounts)) == "/sys/fs/cgroup/devices"
    mounts.write_text("cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n")
    assert cgroup.controller_mount(str(mounts)) is None


def test_devices_controller_on_a_v1_hierarchy_is_known_from_proc_cgroups(tmp_path):
    table = tmp_path / "cgroups"
    table.write_text("#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t1\t1\t1\ndevices\t5\t4\t1\n")
    assert cgroup.host_has_controller(str(table))
    table.write_text("#subsys_name\thierarchy\tnum_cgroups\tenabled\ndevices\t0\t90\t1\n")   # cgroup v2 only
    assert not cgroup.host_has_controller(str(table))


@pytest.mark.parametrize("recorded", ["/virtops/embed-0123456789ab/vm1",
                                      "/sys/fs/cgroup/devices/virtops/embed-0123456789ab/vm1"])
def test_a_recorded_device_cgroup_is_found_within_the_hierarchy(recorded):
    assert cgroup.DomainCgroup.recorded(-1, recorded).path == "virtops/embed-0123456789ab/vm1"
    assert cgroup.DomainCgroup.of(-1, "/r", "vm1").name.startswith("/virtops/embed-")


# -- DAC owner memory ----------------------------------------------------------------------
def test_remember_owner_counts_users_and_gives_back_once(tmp_path):
    image = tmp_path / "a.img"
    image.write_text("")
    os.chown(image, 4321, 4322)
    item = dac.LabelledFile(str(image), dac.Owner(64055, 64055), True)
    dac.set_owner(item, remember=True)
    dac.set_owner(item, remember=True)      # a second domain uses it too
    assert os.getxattr(image, dac.XATTR_REFS) == b"2"
    dac.restore_owner(item, remember=True)
    assert (os.stat(image).st_uid, os.stat(image).st_gid) == (64055, 64055)
    dac.restore_owner(item, remember=True)
    assert (os.stat(image).st_uid, os.stat(image).st_gid) == (4321, 4322)
    assert not [n for n in os.listxattr(image) if n.startswith("trusted.libvirt")]


def test_without_remember_owner_files_go_back_to_root(tmp_path):
    image = tmp_path / "a.img"
    image.write_text("")
    os.chown(image, 4321, 4322)
    item = dac.LabelledFile(str(image), dac.Owner(64055, 64055), True)
    dac.set_owner(item, remember=False)
    dac.restore_owner(item, remember=False)
    assert (os.stat(image).st_uid, os.stat(image).st_gid) == (0, 0)


def test_attributes_of_an_earlier_boot_are_stale(tmp_path):
    image = tmp_path / "a.img"
    image.write_text("")
    os.setxattr(image, dac.XATTR_OWNER, b"+1:+1")
    os.setxattr(image, dac.XATTR_STAMP, b"another-boot")
    assert dac.remembered_owner(str(image)) is None


def test_qemu_is_run_through_setpriv_only_when_something_must_change():
    assert security.exec_prefix(security.Launch()) == []
    launch = security.Launch(owner=dac.Owner(64055, 994), groups=[994, 36],
                             selinux_label="system_u:system_r:svirt_t:s0:c1,c2")
    assert security.exec_prefix(launch) == [
        "setpriv", "--selinux-label", "system_u:system_r:svirt_t:s0:c1,c2",
        "--reuid", "64055", "--regid", "994", "--groups", "994,36", "--"]
    alone = security.Launch(owner=dac.Owner(0, 0), apparmor_profile="libvirt-1234")
    assert security.exec_prefix(alone) == [
        "setpriv", "--apparmor-profile", "libvirt-1234", "--reuid", "0", "--regid", "0", "--clear-groups", "--"]


class FileCgroup(cgroup.DomainCgroup):
    """A cgroup whose ``tasks`` is a plain file in a directory (the kernel's checks are not the point here)."""

    def __init__(self, directory: Path, fail: str = ""):
        super().__init__(os.open(directory, os.O_RDONLY | os.O_DIRECTORY), "virtops/embed-x/d")
        self.directory, self.fail, self.made, self.removed = directory, fail, [], 0

    def create(self, rules):
        if self.fail == "create":
            raise BackendError("cannot set up the device cgroup d: Permission denied")
        self.made = [rule.line() for rule in rules]
        (self.directory / "tasks").write_text("")

    def open_tasks(self):
        return os.open(self.directory / "tasks", os.O_RDONLY if self.fail == "enter" else os.O_WRONLY)

    def remove(self, timeout=5.0):
        self.removed += 1


RULES = [cgroup.DeviceRule("c", 1, 3, "rw")]


def test_the_spawner_makes_and_enters_the_cgroup_from_its_own_thread_and_forks_there(tmp_path):
    group = FileCgroup(tmp_path)
    spawner = cgroup.Spawner(group, RULES)
    ran_in = spawner.run(threading.get_native_id)
    assert ran_in != threading.get_native_id()
    assert (tmp_path / "tasks").read_text() == "0", "the thread entered itself: the move without the global lock"
    assert group.made == ["c 1:3 rw"] and group.hierarchy == -1, "the hierarchy descriptor is closed"
    spawner.cancel()
    assert group.removed == 0, "after a spawn the cgroup is QEMU's"


@pytest.mark.parametrize("fail, message", [("create", "cannot set up the device cgroup"),
                                           ("enter", "cannot enter the device cgroup to start QEMU")])
def test_a_cgroup_that_cannot_be_made_or_entered_fails_the_spawn(tmp_path, fail, message):
    spawner = cgroup.Spawner(FileCgroup(tmp_path, fail), RULES)
    with pytest.raises(BackendError, match=message):
        spawner.run(lambda: pytest.fail("the job must not run outside the cgroup"))


def test_a_spawner_not_used_ends_and_removes_its_cgroup_and_a_failing_job_is_raised(tmp_path):
    unused = cgroup.Spawner(FileCgroup(tmp_path), RULES)
    unused.cancel()
    assert not unused._thread.is_alive() and unused.group.removed == 1 and unused.group.hierarchy == -1

    def fork():
        raise OSError("no such binary")
    failing = cgroup.Spawner(FileCgroup(tmp_path), RULES)
    with pytest.raises(OSError, match="no such binary"):
        failing.run(fork)
