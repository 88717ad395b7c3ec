# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The embedded driver (qemu:///embed) against the real QEMU and the TCG test guest.

No libvirtd: the driver is the QEMU driver.  Every test gets a short private
root under /tmp (UNIX socket paths stay under 108 bytes) and kills whatever
QEMU it started, whatever happens.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import threading
import time
from pathlib import Path

import pytest
from lxml import etree

from ansible_collections.virtops.qemu.plugins.module_utils.driver.connect import open_driver
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import autostart, process
from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError, Conflict, InvalidInput, NotFound
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import parse
from harness.embed import qemu_pids  # noqa: E402
from harness.guest import MARKER, POWEROFF_MARKER  # noqa: E402  (tests/ is on sys.path via conftest)
from harness.libvirtd import wait_for_line  # noqa: E402

QEMU = shutil.which("qemu-system-x86_64") or "/usr/bin/qemu-system-x86_64"
SCHEMA = "/usr/share/libvirt/schemas/domain.rng"

pytestmark = [
    pytest.mark.embed,
]


# -- fixtures ---------------------------------------------------------------
def domain_xml(guest, root: Path, name: str = "vm1", extra_devices: str = "",
               kernel: str | None = None) -> str:
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>256</memory>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{kernel or guest.kernel}</kernel>
    <initrd>{guest.initrd}</initrd>
    <cmdline>{guest.cmdline}</cmdline>
  </os>
  <features><acpi/></features>
  <devices>
    <interface type='user'><model type='virtio'/></interface>
    <serial type='file'><source path='{root}/{name}-serial.log'/><target port='0'/></serial>
    {extra_devices}
  </devices>
</domain>"""


def serial_log(root: Path, name: str = "vm1") -> Path:
    return root / f"{name}-serial.log"


def powerdown_until_off(driver, name: str, timeout: float = 60) -> None:
    """Press the power button until the guest is off; acpid may miss a press made while it starts."""
    deadline = time.monotonic() + timeout
    while driver.domains.status(name).active:
        assert time.monotonic() < deadline, "guest did not power off"
        driver.domains.shutdown(name)
        pressed = time.monotonic()
        while driver.domains.status(name).active and time.monotonic() - pressed < 5:
            time.sleep(0.2)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# -- root and connection ----------------------------------------------------
def test_root_tree_created_private_by_the_first_write(root, guest_build):
    target = root / "tree"
    with open_driver(f"qemu:///embed?root={target}") as driver:
        assert not target.exists()
        driver.domains.define(domain_xml(guest_build, root))
    assert _mode(target) == 0o700
    for relative in ("log/qemu", "etc/qemu", "etc/pki/qemu", "run/qemu", "cache/qemu", "lib/qemu",
                     "log/swtpm", "run/swtpm", "lib/swtpm"):
        assert (target / relative).is_dir(), relative
        assert _mode(target / relative) == 0o700, relative


def test_relative_root_refused():
    with pytest.raises(InvalidInput) as info:
        open_driver("qemu:///embed?root=vm/root")
    assert info.value.option == "uri"


def test_too_long_socket_path_refused_before_creating_anything(root):
    target = root / ("d" * 80)
    with pytest.raises(InvalidInput) as info:
        open_driver(f"qemu:///embed?root={target}")
    assert info.value.option == "uri" and "107" in str(info.value)
    assert not target.exists()


def test_capabilities(driver):
    caps = etree.fromstring(driver.capabilities().encode())
    assert caps.find("guest/arch[@name='x86_64']/domain[@type='qemu']") is not None
    assert driver.layout.qemu_conf == driver.uri.qemu_conf_path()


# -- definition ---------------------------------------------------------------
def test_define_post_parses_validates_and_keeps_generated_values(driver, guest_build, root):
    xml = domain_xml(guest_build, root)
    driver.domains.define(xml)
    stored = parse(driver.domains.xml("vm1"), "domain")
    assert etree.RelaxNG(etree.parse(SCHEMA)).validate(stored)
    uuid = stored.findtext("uuid")
    mac = stored.find("devices/interface/mac").get("address")
    assert uuid and mac.startswith("52:54:00:")
    assert stored.find("os/type").get("machine").startswith("pc-i440fx-")
    assert os.path.basename(stored.findtext("devices/emulator")) == "qemu-system-x86_64"
    assert stored.find("devices/controller[@type='pci']") is not None
    assert stored.find("devices/interface/address[@type='pci']") is not None
    config = root / "etc" / "qemu" / "vm1.xml"
    assert _mode(config) == 0o600
    assert driver.domains.names() == ["vm1"]
    assert driver.domains.status("vm1").state == "shutoff"

    first = driver.domains.xml("vm1")
    driver.domains.define(first)                         # as the manager redefines
    assert driver.domains.xml("vm1") == first
    driver.domains.define(xml)                           # the sparse XML again
    again = parse(driver.domains.xml("vm1"), "domain")
    assert again.findtext("uuid") == uuid
    assert again.find("devices/interface/mac").get("address") == mac
    assert etree.tostring(again.find("devices/interface/address")) == \
        etree.tostring(stored.find("devices/interface/address"))


def test_define_rejects_bad_input(driver, guest_build, root):
    with pytest.raises(InvalidInput):
        driver.domains.define(domain_xml(guest_build, root, name="bad/name"))
    with pytest.raises(InvalidInput):
        driver.domains.define(domain_xml(guest_build, root).replace("type='qemu'", "type='xen'", 1))
    driver.domains.define(domain_xml(guest_build, root))
    other = domain_xml(guest_build, root).replace(
        "<name>vm1</name>", "<name>vm1</name><uuid>00000000-0000-4000-8000-000000000001</uuid>")
    with pytest.raises(Conflict):
        driver.domains.define(other)
    with pytest.raises(NotFound):
        driver.domains.xml("nope")


def test_autostart_link_and_entry_point(driver, guest_build, root):
    driver.domains.define(domain_xml(guest_build, root))
    assert driver.domains.autostart("vm1") is False
    driver.domains.set_autostart("vm1", True)
    link = root / "etc" / "qemu" / "autostart" / "vm1.xml"
    assert link.is_symlink() and os.readlink(link) == str(root / "etc" / "qemu" / "vm1.xml")
    assert driver.domains.autostart("vm1") is True
    try:
        assert autostart.autostart_all(str(root)) == {"domain vm1": None}
        assert driver.domains.status("vm1").state == "running"
        assert autostart.autostart_all(str(root)) == {}       # already running
    finally:
        driver.domains.destroy("vm1")
    driver.domains.set_autostart("vm1", False)
    assert not link.exists()


# -- life cycle ---------------------------------------------------------------
def test_lifecycle_start_pause_shutdown_destroy(driver, guest_build, root):
    driver.domains.define(domain_xml(guest_build, root))
    started = time.monotonic()
    driver.domains.start("vm1")
    assert driver.domains.status("vm1") == _status("running", "booted")
    assert driver.domains.monitor("vm1", {"execute": "query-status"})["status"] == "running"
    wait_for_line(serial_log(root), MARKER, timeout=90)
    boot = time.monotonic() - started

    status_xml = etree.parse(str(root / "run" / "qemu" / "vm1.xml")).getroot()
    assert status_xml.tag == "domstatus" and status_xml.get("state") == "running"
    pid = int(status_xml.get("pid"))
    assert (root / "run" / "qemu" / "vm1.pid").read_text().strip() == str(pid)
    monitor = status_xml.find("monitor").get("path")
    assert monitor == str(root / "lib" / "qemu" / "domain-1-vm1" / "monitor.sock")
    assert _mode(os.path.dirname(monitor)) == 0o700
    live = parse(driver.domains.xml("vm1", inactive=False), "domain")
    assert live.get("id") == "1"
    assert parse(driver.domains.xml("vm1"), "domain").get("id") is None
    assert "starting up" in (root / "log" / "qemu" / "vm1.log").read_text()

    with open_driver(f"qemu:///embed?root={root}") as later:     # a later module run
        assert later.domains.status("vm1") == _status("running", "booted")
        later.domains.suspend("vm1")
        assert later.domains.status("vm1") == _status("paused", "user")
        assert driver.domains.monitor("vm1", {"execute": "query-status"})["status"] == "paused"
        later.domains.resume("vm1")
        assert later.domains.status("vm1") == _status("running", "unpaused")
        with pytest.raises(Conflict):
            later.domains.start("vm1")

    powerdown_until_off(driver, "vm1")
    assert driver.domains.status("vm1") == _status("shutoff", "shutdown")
    assert POWEROFF_MARKER in serial_log(root).read_text()
    assert qemu_pids(root) == []
    assert not os.path.exists(monitor) and not (root / "run" / "qemu" / "vm1.pid").exists()

    driver.domains.start("vm1", paused=True)
    assert driver.domains.status("vm1") == _status("paused", "user")
    assert driver.domains.monitor("vm1", {"execute": "query-status"})["status"] == "prelaunch"
    driver.domains.destroy("vm1")
    assert driver.domains.status("vm1") == _status("shutoff", "destroyed")
    assert qemu_pids(root) == []
    with pytest.raises(Conflict):
        driver.domains.destroy("vm1")
    print(f"embedded boot to marker: {boot:.1f}s")


def test_kill_9_is_crashed_cleaned_and_restartable(driver, guest_build, root):
    driver.domains.define(domain_xml(guest_build, root))
    driver.domains.start("vm1")
    pid = int((root / "run" / "qemu" / "vm1.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while process.start_time(pid) is not None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert (root / "lib" / "qemu" / "domain-1-vm1" / "monitor.sock").exists()     # left behind

    with open_driver(f"qemu:///embed?root={root}") as later:
        assert later.domains.status("vm1") == _status("shutoff", "crashed")
        assert not (root / "lib" / "qemu" / "domain-1-vm1").exists()
        assert not (root / "run" / "qemu" / "vm1.pid").exists()
        assert later.domains.status("vm1") == _status("shutoff", "crashed")    # remembered
        later.domains.start("vm1")
        assert later.domains.status("vm1") == _status("running", "booted")
        wait_for_line(serial_log(root), MARKER, timeout=90)
        later.domains.destroy("vm1")
    assert qemu_pids(root) == []


def test_concurrent_starts_run_one_qemu(root, guest_build):
    uri = f"qemu:///embed?root={root}"
    with open_driver(uri) as drv:
        drv.domains.define(domain_xml(guest_build, root))
    outcomes, barrier = [], threading.Barrier(3)

    def start():
        with open_driver(uri) as drv:
            barrier.wait()
            try:
                drv.domains.start("vm1")
                outcomes.append("started")
            except Conflict:
                outcomes.append("conflict")

    threads = [threading.Thread(target=start) for _attempt in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sorted(outcomes) == ["conflict", "conflict", "started"]
    assert len(qemu_pids(root)) == 1
    with open_driver(uri) as drv:
        drv.domains.destroy("vm1")


def test_failed_start_reports_log_tail(driver, guest_build, root):
    driver.domains.define(domain_xml(guest_build, root, kernel=f"{root}/no-such-kernel"))
    with pytest.raises(BackendError) as info:
        driver.domains.start("vm1")
    assert "no-such-kernel" in str(info.value)
    assert "QEMU log" in str(info.value)
    assert driver.domains.status("vm1") == _status("shutoff", "failed")
    assert qemu_pids(root) == []
    assert not (root / "lib" / "qemu" / "domain-1-vm1").exists()


def test_an_interface_on_an_undefined_network_is_refused_at_start(driver, guest_build, root):
    extra = "<interface type='network'><source network='default'/><model type='virtio'/></interface>"
    driver.domains.define(domain_xml(guest_build, root, extra_devices=extra))
    with pytest.raises(NotFound, match="^network 'default' is not defined in qemu:///embed"):
        driver.domains.start("vm1")
    assert driver.domains.status("vm1").state == "shutoff"
    assert qemu_pids(root) == []


def test_undefine_removes_definition_autostart_nvram_tpm(driver, guest_build, root):
    driver.domains.define(domain_xml(guest_build, root))
    driver.domains.set_autostart("vm1", True)
    uuid = parse(driver.domains.xml("vm1"), "domain").findtext("uuid")
    nvram = root / "lib" / "qemu" / "nvram" / "vm1_VARS.fd"
    nvram.write_bytes(b"vars")
    tpm = root / "lib" / "swtpm" / uuid
    tpm.mkdir()
    (tpm / "tpm2-00.permall").write_bytes(b"state")
    driver.domains.undefine("vm1")
    assert not driver.domains.exists("vm1")
    assert not (root / "etc" / "qemu" / "vm1.xml").exists()
    assert not (root / "etc" / "qemu" / "autostart" / "vm1.xml").is_symlink()
    assert not nvram.exists() and not tpm.exists()
    with pytest.raises(NotFound):
        driver.domains.status("vm1")
    with pytest.raises(NotFound):
        driver.domains.undefine("vm1")


def test_delete_disk_source(driver, root):
    image = root / "disk.img"
    image.write_bytes(b"x")
    driver.delete_disk_source({"path": str(image)})
    assert not image.exists()
    driver.delete_disk_source({"path": str(image)})     # already gone
    with pytest.raises(NotFound, match="pool 'default' is not defined"):
        driver.delete_disk_source({"pool": "default", "volume": "a.qcow2"})


def _status(state, reason):
    from ansible_collections.virtops.qemu.plugins.module_utils.driver.base import DomainStatus
    return DomainStatus(state, reason)


# -- bridge interfaces (in a private network namespace) -------------------------
TAP_SCRIPT = r"""
import json, os, signal, subprocess, sys, time
from ansible_collections.virtops.qemu.plugins.module_utils.driver.connect import open_driver
root, xml = sys.argv[1], sys.stdin.read()
subprocess.run(["ip", "link", "add", "vobr0", "type", "bridge"], check=True)
subprocess.run(["ip", "link", "set", "vobr0", "up"], check=True)
seen = {}
def link(name):
    out = subprocess.run(["ip", "-o", "link", "show", "dev", name], capture_output=True, text=True, check=False)
    return out.stdout if out.returncode == 0 else ""
with open_driver(f"qemu:///embed?root={root}") as drv:
    drv.domains.define(xml)
    drv.domains.start("vm1")
    live = drv.domains.xml("vm1", inactive=False)
    seen["live_has_target"] = "<target dev=\"vnet0\"/>" in live
    seen["master"] = "master vobr0" in link("vnet0")
    seen["tap_mac"] = "link/ether fe:54:00:12:34:56" in link("vnet0")
    drv.domains.destroy("vm1")
    seen["after_destroy"] = bool(link("vnet0"))
    drv.domains.start("vm1")
    os.kill(int(open(f"{root}/run/qemu/vm1.pid").read()), signal.SIGKILL)
    time.sleep(0.5)
with open_driver(f"qemu:///embed?root={root}") as drv:
    seen["after_kill"] = [drv.domains.status("vm1").state, drv.domains.status("vm1").reason]
    seen["tap_after_kill"] = bool(link("vnet0"))
print(json.dumps(seen))
"""


def test_bridge_interface_gets_a_tap_removed_on_stop(guest_build, root):
    import json
    import subprocess
    import sys
    extra = ("<interface type='bridge'><mac address='52:54:00:12:34:56'/><source bridge='vobr0'/>"
             "<model type='virtio'/></interface>")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p.endswith("collections")))
    # unshare -n: the bridge and taps live and die with a namespace of this test's own.
    result = subprocess.run(["unshare", "--net", sys.executable, "-c", TAP_SCRIPT, str(root)],
                            input=domain_xml(guest_build, root, extra_devices=extra),
                            capture_output=True, text=True, timeout=120, env=env, check=False)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen == {"live_has_target": True, "master": True, "tap_mac": True,
                    "after_destroy": False, "after_kill": ["shutoff", "crashed"], "tap_after_kill": False}
