"""The test harness itself: guest image, bare QEMU, libvirtd, Ansible runner."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lxml import etree

from harness.ansible import AnsibleRunError, run_module, run_module_calls, run_playbook
from harness.fresh import fresh_host_argv, fresh_host_env
from harness.guest import MARKER, POWEROFF_MARKER, build_guest
from harness.host import DIRECTORIES
from harness.libvirtd import domain_xml, wait_for_line
from harness.qemu import BareQemu

SCHEMA = Path("/usr/share/libvirt/schemas/domain.rng")
MAC = "52:54:00:5e:00:53"


def _guest_report(log: str) -> tuple[dict, dict]:
    after = log.split(MARKER, 1)[1]
    disks = dict(re.findall(r"^VIRTOPS-DISK (\S+) (\d+)$", after, re.M))
    nics = dict(re.findall(r"^VIRTOPS-NIC (\S+) (\S+)$", after, re.M))
    return disks, nics


@pytest.mark.guest
def test_guest_build_is_cached(guest_build):
    again = build_guest()
    assert again == guest_build
    assert guest_build.kernel.stat().st_size > 1_000_000
    initrd = gzip.decompress(guest_build.initrd.read_bytes())
    assert initrd.startswith(b"070701")
    for member in (b"init\0", b"bin/busybox\0", b"lib/modules/virtio_net.ko\0",
                   b"etc/acpi/PWRF/00000080/poweroff\0"):
        assert member in initrd


@pytest.mark.guest
@pytest.mark.slow
def test_bare_qemu_boot_devices_and_powerdown(guest_build, workdir):
    disk = workdir / "disk.img"
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(disk), "3M"],
                   check=True)
    devices = [
        "-netdev", "user,id=net0",
        "-device", f"virtio-net-pci,netdev=net0,mac={MAC},romfile=",
        "-blockdev", f"driver=file,filename={disk},node-name=disk0",
        "-device", "virtio-blk-pci,drive=disk0",
    ]
    with BareQemu(guest_build, workdir, devices) as vm:
        start = time.monotonic()
        wait_for_line(vm.serial_log, MARKER, timeout=60)
        boot = time.monotonic() - start
        log = wait_for_line(vm.serial_log, "VIRTOPS-NIC", timeout=10)
        disks, nics = _guest_report(log)
        assert disks == {"vda": str(3 * 1024 * 1024 // 512)}
        assert nics == {"eth0": MAC}
        qmp = vm.qmp()
        qmp.execute("system_powerdown")
        assert vm.wait_exit(timeout=30) == 0
        qmp.close()
    assert POWEROFF_MARKER in vm.serial_log.read_text()
    print(f"bare QEMU boot to marker: {boot:.1f}s")


@pytest.mark.guest
def test_domain_xml_validates(guest, tmp_path):
    nic = f"<interface type='user'><mac address='{MAC}'/>" \
          "<model type='virtio'/></interface>"
    xml = domain_xml("virtops-x", guest, tmp_path / "serial.log",
                     extra_devices=nic)
    schema = etree.RelaxNG(etree.parse(str(SCHEMA)))
    doc = etree.fromstring(xml.encode())
    assert schema.validate(doc), schema.error_log


@pytest.mark.libvirt
@pytest.mark.guest
@pytest.mark.slow
def test_libvirt_boot_and_shutdown(libvirtd, guest, workdir, domain_name):
    serial = workdir / "serial.log"
    xml_file = workdir / "domain.xml"
    xml_file.write_text(domain_xml(domain_name, guest, serial))
    libvirtd.virsh("define", str(xml_file))
    start = time.monotonic()
    libvirtd.virsh("start", domain_name)
    wait_for_line(serial, MARKER, timeout=60)
    boot = time.monotonic() - start
    if libvirtd.netns:
        _assert_in_netns(domain_name, libvirtd.netns)
    libvirtd.virsh("shutdown", domain_name)
    deadline = time.monotonic() + 30
    while libvirtd.virsh("domstate", domain_name).strip() != "shut off":
        assert time.monotonic() < deadline, "guest did not power off"
        time.sleep(0.5)
    assert POWEROFF_MARKER in serial.read_text()
    print(f"libvirt boot to marker: {boot:.1f}s")


def _assert_in_netns(domain: str, netns: str) -> None:
    pid = Path(f"/run/libvirt/qemu/{domain}.pid").read_text().strip()
    qemu_ns = os.stat(f"/proc/{pid}/ns/net").st_ino
    assert qemu_ns == os.stat(f"/run/netns/{netns}").st_ino


@pytest.mark.libvirt
def test_libvirtd_fixture_shape(libvirtd):
    assert libvirtd.uri == "qemu:///system"
    assert libvirtd.netns is None or libvirtd.netns.startswith("virtops-test-")
    assert "QEMU" in libvirtd.virsh("version")


def test_wait_for_line_timeout_shows_tail(tmp_path):
    log = tmp_path / "serial.log"
    log.write_text("booting\nstill booting\n")
    with pytest.raises(TimeoutError, match="still booting"):
        wait_for_line(log, MARKER, timeout=0.5)


def test_run_module_ok_and_changed():
    assert run_module("ansible.builtin.ping", {})["ping"] == "pong"
    result = run_module("ansible.builtin.command", {"argv": ["echo", "hi"]})
    assert result["changed"] is True and result["failed"] is False
    assert result["stdout"] == "hi"


def test_run_module_failure_is_returned():
    result = run_module("ansible.builtin.command", {"argv": ["false"]})
    assert result["failed"] is True
    assert result["rc"] == 1


def test_run_module_check_and_diff(tmp_path):
    dest = tmp_path / "file.txt"
    args = {"content": "hello\n", "dest": str(dest)}
    result = run_module("ansible.builtin.copy", args, check=True, diff=True)
    assert result["changed"] is True
    assert not dest.exists()
    assert result["diff"][0]["after"] == "hello\n"
    skipped = run_module("ansible.builtin.command", {"argv": ["touch", str(dest)]},
                         check=True)
    assert skipped.get("skipped") or not skipped["changed"]
    assert not dest.exists()


def test_run_module_unknown_module_fails():
    result = run_module("nosuchmodule", {"a": 1})
    assert result["failed"] is True
    assert "virtops.qemu.nosuchmodule" in result["msg"]


def test_run_module_calls_return_what_each_call_alone_returns(tmp_path, root):
    dest = tmp_path / "file.txt"
    calls = [("ansible.builtin.command", {"argv": ["false"]}),
             ("ansible.builtin.copy", {"content": "a\u0001é\n", "dest": str(dest)}),
             ("ansible.builtin.copy", {"content": "a\u0001é\n", "dest": str(dest)}),
             ("domain_info", {"uri": f"qemu:///embed?root={root}", "name": "nosuch"})]
    predicted = run_module_calls(calls, check=True, diff=True)
    assert not dest.exists()
    assert predicted[1]["changed"] and predicted[1]["diff"][0]["after"] == "a\u0001é\n"
    together = run_module_calls(calls)
    alone = [run_module(module, args) for module, args in calls]
    assert [r["failed"] for r in together] == [r["failed"] for r in alone] == [True, False, False, False]
    assert [r["changed"] for r in together[1:3]] == [True, False], "the calls ran one after the other"
    assert together[0]["rc"] == alone[0]["rc"] == 1
    assert together[3]["exists"] is alone[3]["exists"] is False
    assert dest.read_text() == "a\u0001é\n"
    with pytest.raises(ValueError, match="would be templated"):
        run_module_calls([("ansible.builtin.debug", {"msg": "{{ 1 }}"})])


def test_run_playbook_parse_error_raises():
    plays = [{"hosts": "localhost", "tasks": [
        {"name": "bad", "ansible.builtin.ping": {}, "no_such_keyword": 1}]}]
    with pytest.raises(AnsibleRunError, match="without task results"):
        run_playbook(plays)


def test_run_playbook_results_in_order(tmp_path):
    dest = tmp_path / "out.txt"
    plays = [{
        "hosts": "localhost",
        "gather_facts": False,
        "tasks": [
            {"name": "write", "ansible.builtin.copy":
                {"content": "{{ text }}", "dest": str(dest)}},
            {"name": "write again", "ansible.builtin.copy":
                {"content": "{{ text }}", "dest": str(dest)}},
            {"name": "fail", "ansible.builtin.command": {"argv": ["false"]},
             "ignore_errors": True},
            {"name": "skip", "ansible.builtin.debug": {"msg": "x"},
             "when": False},
        ],
    }]
    results = run_playbook(plays, extra_vars={"text": "abc"}, diff=True)
    assert [r["task"] for r in results] == ["write", "write again", "fail",
                                            "skip"]
    assert [r["changed"] for r in results[:2]] == [True, False]
    assert results[0]["diff"]
    assert results[2]["failed"] and results[2]["ignored"]
    assert results[3]["skipped"]
    assert dest.read_text() == "abc"
    checked = run_playbook(plays, extra_vars={"text": "new"}, check=True)
    assert checked[0]["changed"] is True
    assert dest.read_text() == "abc"


# -- host preparation, on a throwaway view of a host that never had libvirt --

FRESH_HOST_SCRIPT = """
import grp, json, os, pwd, sys
from harness import host
seen = {"before": [os.path.isdir("/var/lib/libvirt"), host._group_exists("libvirt-qemu"),
                   host._group_exists("kvm"), host._user_exists("libvirt-qemu")]}
seen["changes"] = host.prepare_host()
seen["again"] = host.prepare_host()
user = pwd.getpwnam("libvirt-qemu")
seen["user"] = [grp.getgrgid(user.pw_gid).gr_name, user.pw_dir, user.pw_shell,
                sorted(g.gr_name for g in grp.getgrall() if "libvirt-qemu" in g.gr_mem)]
seen["dirs"] = {str(d.path): [pwd.getpwuid(os.stat(d.path).st_uid).pw_name,
                              grp.getgrgid(os.stat(d.path).st_gid).gr_name,
                              oct(os.stat(d.path).st_mode & 0o7777)] for d in host.DIRECTORIES}
kvm = os.stat(host.KVM_DEVICE)
seen["kvm"] = [grp.getgrgid(kvm.st_gid).gr_name, oct(kvm.st_mode & 0o777)]
print(json.dumps(seen))
"""

# What the harness did before it created the group libvirt-qemu.
OLD_HARNESS_ACCOUNTS = (["groupadd", "--system", "kvm"],
                        ["useradd", "--system", "--gid", "kvm", "--no-create-home", "libvirt-qemu"])

UPGRADE_SCRIPT = """
import json, subprocess, sys
from harness import host
for argv in json.loads(sys.argv[1]):
    subprocess.run(argv, check=True)
print(json.dumps(host.prepare_host()))
"""

FAILED_START_SCRIPT = """
import json, os, subprocess, sys
from harness import libvirtd
for argv in json.loads(sys.argv[1]):
    subprocess.run(argv, check=True)
for path in ("/var/log/libvirt", "/var/run/libvirt"):
    os.makedirs(path)
libvirtd.prepare_host = lambda: []
try:
    libvirtd.Libvirtd.start()
except libvirtd.DaemonStartError as error:
    print(json.dumps(str(error)))
"""

FRESH_LIBVIRTD_SCRIPT = """
import json, sys, time
from pathlib import Path
from harness.guest import Guest, MARKER
from harness.libvirtd import Libvirtd, domain_xml, wait_for_line
kernel, initrd, cmdline, workdir = sys.argv[1:5]
daemon = Libvirtd.start()
try:
    serial = Path(workdir) / "serial.log"
    xml = Path(workdir) / "domain.xml"
    xml.write_text(domain_xml("virtops-fresh", Guest(Path(kernel), Path(initrd), cmdline), serial))
    daemon.virsh("define", str(xml))
    daemon.virsh("start", "virtops-fresh")
    wait_for_line(serial, MARKER, timeout=120)
    daemon.virsh("destroy", "virtops-fresh")
    daemon.virsh("undefine", "virtops-fresh")
    print(json.dumps({"netns": daemon.netns, "started": sorted(daemon.started), "booted": True}))
finally:
    daemon.stop()
"""


def _in_fresh_host(workdir: Path, script: str, *args: str, timeout: float = 120):
    argv = fresh_host_argv(workdir, [sys.executable, "-c", script, *args])
    proc = subprocess.run(argv, env=fresh_host_env(), capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_prepare_host_creates_what_debian_libvirt_has_and_is_idempotent(workdir):
    seen = _in_fresh_host(workdir, FRESH_HOST_SCRIPT)
    assert seen["before"] == [False, False, False, False]
    assert "created group kvm" in seen["changes"]
    assert "created group libvirt-qemu" in seen["changes"]
    assert "created user libvirt-qemu" in seen["changes"]
    assert seen["again"] == []
    assert seen["user"] == ["kvm", "/var/lib/libvirt", "/usr/sbin/nologin", ["libvirt-qemu"]]
    assert seen["dirs"]["/var/lib/libvirt/qemu"] == ["libvirt-qemu", "libvirt-qemu", "0o750"]
    assert seen["dirs"]["/var/cache/libvirt"] == ["root", "root", "0o711"]
    assert seen["dirs"]["/var/log/libvirt"] == ["root", "root", "0o755"]
    assert set(seen["dirs"]) == {str(d.path) for d in DIRECTORIES}
    assert seen["kvm"] == ["kvm", "0o660"]


def test_prepare_host_completes_the_accounts_of_an_older_harness(workdir):
    changes = _in_fresh_host(workdir, UPGRADE_SCRIPT, json.dumps(OLD_HARNESS_ACCOUNTS))
    accounts = [c for c in changes if c.startswith(("created group", "created user", "added user"))]
    assert accounts == ["created group libvirt-qemu", "added user libvirt-qemu to group libvirt-qemu"]


@pytest.mark.libvirt
def test_a_libvirtd_that_does_not_come_up_is_explained_by_its_log(workdir):
    message = _in_fresh_host(workdir, FAILED_START_SCRIPT, json.dumps(OLD_HARNESS_ACCOUNTS))
    assert message.startswith("libvirtd did not start: ")
    assert "last 20 lines of /var/log/libvirt/libvirtd.log" in message
    assert "Failed to parse group 'libvirt-qemu'" in message


@pytest.mark.libvirt
@pytest.mark.guest
@pytest.mark.slow
def test_harness_libvirtd_boots_a_guest_on_a_fresh_host(guest, workdir):
    seen = _in_fresh_host(workdir, FRESH_LIBVIRTD_SCRIPT, str(guest.kernel), str(guest.initrd),
                          guest.cmdline, str(workdir), timeout=400)
    assert seen["booted"] is True
    assert seen["started"] == ["libvirtd", "virtlogd"]
    assert seen["netns"].startswith("virtops-test-")


SHARED_LIBVIRTD_SCRIPT = """
import json, subprocess, sys
from harness.libvirtd import SHARED_RECORD, Libvirtd, answers
JOIN = "import json; from harness.libvirtd import Libvirtd; d = Libvirtd.start(); " \\
       "print(json.dumps([d.netns, d.started])); d.stop()"
daemon = Libvirtd.start()
daemon_netns, started = daemon.netns, dict(daemon.started)
try:
    joined = json.loads(subprocess.run([sys.executable, "-c", JOIN], capture_output=True, text=True,
                                       check=True).stdout)
    after_other = answers()
    users = json.loads(SHARED_RECORD.read_text())["users"]
finally:
    daemon.stop()
netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
print(json.dumps({"ours": [daemon_netns, started], "joined": joined, "after_other": after_other,
                  "users": users, "after_last": answers(), "record": SHARED_RECORD.exists(),
                  "netns_left": daemon_netns in netns}))
"""


@pytest.mark.libvirt
@pytest.mark.slow
def test_test_processes_share_the_harness_libvirtd_and_the_last_one_stops_it(workdir):
    seen = _in_fresh_host(workdir, SHARED_LIBVIRTD_SCRIPT, timeout=300)
    assert seen["ours"][0].startswith("virtops-test-") and sorted(seen["ours"][1]) == ["libvirtd", "virtlogd"]
    assert seen["joined"] == seen["ours"], "the second process joins the daemons the first one started"
    assert seen["after_other"] is True, "the second process leaving does not stop them"
    assert seen["users"] == [seen["users"][0]], "only the first process still uses them"
    assert (seen["after_last"], seen["record"], seen["netns_left"]) == (False, False, False)
