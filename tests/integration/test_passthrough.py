"""qemu_override, qmp and send_key against each backend, with a booted guest.

The guest prints every key press it reads from the AT keyboard's event
device (harness.guest: VIRTOPS-KEY <linux code>), so send_key is checked by
what the guest kernel saw.  Overridden device properties are read back over
QMP (qom-get) from the running QEMU.
"""

from __future__ import annotations

import os
import time

import pytest
from lxml import etree

from harness.ansible import run_module, run_module_calls, run_playbook
from harness.guest import KEYBOARD_PREFIX, parse_keys
from harness.libvirtd import domain_xml, wait_for_line

pytestmark = [pytest.mark.guest]

QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
DISK = """    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{path}'/>
      <target dev='vda' bus='virtio'/>
      <alias name='ua-disk0'/>
    </disk>"""
# (codeset, code, the Linux key the guest must see): one key of every code set,
# F7 in AT set 2 as libvirt 9.0 translates it (131; libvirt refuses 259), extended keys folded.
KEY_CASES = [
    ("linux", 30, 30), ("xt", 0x30, 48), ("atset1", 0x2E, 46), ("atset2", 131, 65),
    ("atset3", 0x23, 32), ("os_x", 0x0E, 18), ("xt_kbd", 0x21, 33), ("usb", 0x0A, 34),
    ("win32", 0x48, 35), ("qnum", 0x17, 23), ("rfb", 0x24, 36),
    ("qnum", 0x9D, 97), ("xt_kbd", 0x11D, 97),
    ("linux", "KEY_K", 37), ("os_x", "ANSI_L", 38), ("win32", "VK_M", 50), ("xt", "KEY_N", 49),
]


def module(name, backend, args, **kwargs) -> dict:
    return run_module(name, {"uri": backend.uri, **args}, **kwargs)


@pytest.fixture
def running(backend, guest, workdir, vm):
    """The test guest with a virtio disk aliased ua-disk0, booted up to its console marker."""
    disk = workdir / "disk.img"
    with open(disk, "wb") as handle:
        handle.truncate(8 << 20)
    os.chmod(disk, 0o666)
    xml = domain_xml(vm, guest, workdir / "serial.log", extra_devices=DISK.format(path=disk))
    result = module("domain", backend, {"name": vm, "xml": xml, "state": "running"})
    assert result["changed"] and result["state"] == "running", result
    console = wait_for_line(workdir / "serial.log", guest.marker, timeout=90)
    assert KEYBOARD_PREFIX in console
    return vm


def test_qmp_reads_without_change_acts_with_one_and_fails_with_qemus_class(backend, running):
    status = module("qmp", backend, {"name": running, "command": "query-status"})
    assert not status["changed"] and status["return"]["status"] == "running", status
    human = module("qmp", backend, {"name": running, "hmp": "info status"})
    assert not human["changed"] and "running" in human["return"]
    predicted = module("qmp", backend, {"name": running, "command": "stop"}, check=True)
    assert predicted["changed"] and predicted["return"] is None
    assert backend.qmp_status(running) == "running"
    stopped = module("qmp", backend, {"name": running, "command": "stop"})
    assert stopped["changed"] and backend.qmp_status(running) == "paused"
    module("qmp", backend, {"name": running, "command": "cont"})
    bad = module("qmp", backend, {"name": running, "command": "no-such-command"})
    assert bad.get("failed") and bad["error_class"] == "CommandNotFound", bad
    assert "no-such-command" in bad["msg"]
    info = module("domain_info", backend, {"name": running})["domain"]
    assert "custom-monitor" in info["taints"]


def test_send_key_in_every_code_set_reaches_the_guest(backend, running, workdir):
    tasks = [{"name": f"{codeset} {code}",
              "virtops.qemu.send_key": {"uri": backend.uri, "name": running, "codeset": codeset, "keys": [code]}}
             for codeset, code, _linux in KEY_CASES]
    results = run_playbook([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}])
    assert [r.get("changed") for r in results] == [True] * len(KEY_CASES), results
    expected = [linux for _codeset, _code, linux in KEY_CASES]
    assert _keys_seen(workdir, len(expected)) == expected


def test_send_key_several_at_once_with_holdtime_and_check_mode(backend, running, workdir):
    predicted = module("send_key", backend, {"name": running, "keys": ["KEY_Z"]}, check=True)
    assert predicted["changed"] and predicted["codes"] == [44]
    pressed = module("send_key", backend, {"name": running, "keys": ["KEY_LEFTSHIFT", "0x2c"], "holdtime": 50})
    assert pressed["changed"] and pressed["codes"] == [42, 44]
    assert _keys_seen(workdir, 2) == [42, 44]        # check mode sent nothing


def test_qemu_override_commandline_deprecation_and_disk_serial(backend, running):
    options = {"name": running,
               "commandline": {"args": ["-device", "isa-debug-exit", "-no-user-config"], "env": {"VT_X": "1"}},
               "deprecation": {"behavior": "reject"},
               "override": {"devices": [{"alias": "ua-disk0",
                                         "properties": [{"name": "serial", "type": "string", "value": "VTSER01"}]}]}}
    predicted = module("qemu_override", backend, options, check=True, diff=True)
    assert predicted["changed"] and predicted["restart_required"], predicted
    assert _sections(backend.stored_xml(running)) == {}
    applied = module("qemu_override", backend, {**options, "restart": True}, diff=True)
    assert applied["changed"] and not applied["restart_required"], applied
    assert applied["diff"]["after"] == predicted["diff"]["after"]
    assert set(_sections(backend.stored_xml(running))) == {"commandline", "deprecation", "override"}
    again = module("qemu_override", backend, options, diff=True)
    assert not again["changed"] and again["diff"]["before"] == again["diff"]["after"]

    serial = module("qmp", backend, {"name": running, "command": "qom-get",
                                     "arguments": {"path": "/machine/peripheral/ua-disk0", "property": "serial"}})
    assert serial["return"] == "VTSER01"
    info = module("domain_info", backend, {"name": running})["domain"]
    argv = info["qemu_argv"]
    assert argv[argv.index("isa-debug-exit") - 1] == "-device" and info["qemu_env"]["VT_X"] == "1"
    assert '"deprecated-input":"reject"' in argv[argv.index("-compat") + 1]
    assert {"custom-argv", "custom-device"} <= set(info["taints"]), info["taints"]

    shorter = module("qemu_override", backend,
                     {"name": running, "commandline": {"args": ["-device", "isa-debug-exit"]}}, diff=True)
    assert shorter["changed"] and shorter["restart_required"]
    stored = etree.fromstring(backend.stored_xml(running).encode())
    assert [a.get("value") for a in stored.iterfind(f"{{{QEMU_NS}}}commandline/{{{QEMU_NS}}}arg")] == \
        ["-device", "isa-debug-exit"]
    assert stored.find(f"{{{QEMU_NS}}}commandline/{{{QEMU_NS}}}env").get("name") == "VT_X"    # env kept

    removed = module("qemu_override", backend, {"name": running, "commandline": {"state": "absent"},
                                                "deprecation": {"state": "absent"}, "override": {"state": "absent"}})
    assert removed["changed"] and _sections(backend.stored_xml(running)) == {}


SEND_KEY_BAD_INPUTS = [
    ({"keys": ["KEY_NO_SUCH"], "codeset": "linux"}, "keys[0]: no key is named 'KEY_NO_SUCH'"),
    ({"keys": ["KEY_A"] * 17, "codeset": "linux"}, "17 keys given; at most 16"),
    ({"keys": [3200], "codeset": "os_x"}, "keys[0]: code 3200 of code set os_x has no mapping"),
]
OVERRIDE_BAD_INPUTS = [
    ({"devices": [{"alias": "ua-nothere", "properties": [{"name": "serial", "type": "string", "value": "x"}]}]},
     "override.devices[0].alias: no device of the domain has alias 'ua-nothere'"),
    ({"devices": [{"alias": "ua-disk0", "properties": [{"name": "x", "type": "signed", "value": "twelve"}]}]},
     "override.devices[0].properties[0].value: 'twelve' is not a signed integer"),
]


def test_bad_input_sends_no_key_and_changes_nothing(backend, running, workdir):
    """One guest and one playbook for all the bad inputs of send_key and qemu_override."""
    before = backend.stored_xml(running)
    calls = [("send_key", {"uri": backend.uri, "name": running, **args}) for args, _message in SEND_KEY_BAD_INPUTS]
    calls += [("qemu_override", {"uri": backend.uri, "name": running, "override": override})
              for override, _message in OVERRIDE_BAD_INPUTS]
    results = run_module_calls(calls)
    for (_module, args), (_input, message), result in zip(calls, SEND_KEY_BAD_INPUTS + OVERRIDE_BAD_INPUTS, results,
                                                          strict=True):
        assert result.get("failed") and message in result["msg"], (args, result)
    time.sleep(1)
    assert parse_keys((workdir / "serial.log").read_text(errors="replace")) == []
    assert backend.stored_xml(running) == before


def _keys_seen(workdir, count: int, timeout: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        keys = parse_keys((workdir / "serial.log").read_text(errors="replace"))
        if len(keys) >= count or time.monotonic() > deadline:
            return keys
        time.sleep(0.3)


def _sections(xml: str) -> dict:
    root = etree.fromstring(xml.encode())
    return {child.tag.split("}", 1)[1]: child for child in root if child.tag.startswith(f"{{{QEMU_NS}}}")}
