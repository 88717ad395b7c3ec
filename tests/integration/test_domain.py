"""The domain and domain_info modules against a real libvirtd and a booted guest.

Every scenario runs the modules through Ansible, as users do, and checks the
result against what the hypervisor reports (virsh, QMP, the serial console).
"""

from __future__ import annotations

import difflib
import json
import subprocess

import pytest
from harness.ansible import run_module
from harness.libvirtd import wait_for_line

pytestmark = [pytest.mark.libvirt, pytest.mark.guest]

URI = "qemu:///system"


def domain(args: dict, **kwargs) -> dict:
    return run_module("domain", {"uri": URI, **args}, **kwargs)


def guest_options(name, guest, workdir, **extra) -> dict:
    return {
        "name": name, "type": "qemu", "memory": "256MiB", "vcpus": 1,
        "kernel": {"path": str(guest.kernel), "initrd": str(guest.initrd), "cmdline": guest.cmdline},
        "serials": [{"type": "file", "path": str(workdir / "serial.log")}],
        "interfaces": [{"type": "user"}],
        "features": ["acpi"],
        "on_poweroff": "destroy",
        **extra,
    }


def dumpxml(libvirtd, name) -> str:
    return libvirtd.virsh("dumpxml", "--inactive", "--security-info", name)


def domstate(libvirtd, name) -> str:
    return libvirtd.virsh("domstate", "--reason", name).strip()


def qmp_status(libvirtd, name) -> str:
    reply = libvirtd.virsh("qemu-monitor-command", name, json.dumps({"execute": "query-status"}))
    return json.loads(reply)["return"]["status"]


def changed_lines(diff: dict) -> list[str]:
    lines = difflib.unified_diff(diff["before"].splitlines(), diff["after"].splitlines(), lineterm="", n=0)
    return [line for line in lines if line[:1] in "+-" and line[:3] not in ("+++", "---")]


@pytest.fixture
def booted(libvirtd, guest, workdir, domain_name):
    """A test guest defined and started in one task, up to its console marker."""
    result = domain({**guest_options(domain_name, guest, workdir), "state": "running"})
    assert result["changed"] and result["state"] == "running", result
    wait_for_line(workdir / "serial.log", guest.marker, timeout=90)
    return domain_name


def test_define_and_start_in_one_task_then_no_change(libvirtd, guest, workdir, booted):
    assert domstate(libvirtd, booted) == "running (booted)"
    assert qmp_status(libvirtd, booted) == "running"
    again = domain({**guest_options(booted, guest, workdir), "state": "running"})
    assert not again["changed"], again
    assert not again["restart_required"]


def test_check_mode_predicts_and_touches_nothing(libvirtd, guest, workdir, domain_name):
    options = guest_options(domain_name, guest, workdir)
    predicted = domain({**options, "state": "running"}, check=True)
    assert predicted["changed"] and predicted["state"] == "running"
    assert libvirtd.virsh("list", "--all", "--name").split().count(domain_name) == 0
    domain(options)
    before = dumpxml(libvirtd, domain_name)
    predicted = domain({"name": domain_name, "vcpus": 2}, check=True, diff=True)
    assert predicted["changed"]
    assert dumpxml(libvirtd, domain_name) == before
    real = domain({"name": domain_name, "vcpus": 2}, diff=True)
    assert real["changed"] and real["diff"]["after"] == predicted["diff"]["after"]
    assert "<vcpu placement='static'>2</vcpu>" in dumpxml(libvirtd, domain_name)


def test_memory_diff_shows_only_memory_lines(libvirtd, guest, workdir, domain_name):
    domain(guest_options(domain_name, guest, workdir))
    result = domain({"name": domain_name, "memory": "384MiB"}, diff=True)
    assert result["changed"]
    assert changed_lines(result["diff"]) == [
        '-  <memory unit="KiB">262144</memory>',
        '-  <currentMemory unit="KiB">262144</currentMemory>',
        '+  <memory unit="KiB">393216</memory>',
        '+  <currentMemory unit="KiB">393216</currentMemory>',
    ]
    repeat = domain({"name": domain_name, "memory": "384MiB"}, diff=True)
    assert not repeat["changed"] and repeat["diff"]["before"] == repeat["diff"]["after"]


def test_redefine_keeps_mac_and_pci_addresses(libvirtd, guest, workdir, domain_name):
    from lxml import etree

    def hardware():
        tree = etree.fromstring(dumpxml(libvirtd, domain_name).encode())
        return (tree.findtext("uuid"), tree.find("devices/interface/mac").get("address"),
                [etree.tostring(a) for a in tree.iterfind("devices//address")])

    domain(guest_options(domain_name, guest, workdir))
    before = hardware()
    result = domain({**guest_options(domain_name, guest, workdir, vcpus=2),
                     "interfaces": [{"type": "user", "model": "e1000"}]})
    assert result["changed"]
    assert hardware() == before
    assert "<model type='e1000'/>" in dumpxml(libvirtd, domain_name)


def test_running_domain_reports_restart_required_then_restart_applies(libvirtd, guest, workdir, booted):
    result = domain({"name": booted, "memory": "320MiB"})
    assert result["changed"] and result["restart_required"]
    live = libvirtd.virsh("dumpxml", booted)
    assert "<memory unit='KiB'>262144</memory>" in live
    result = domain({"name": booted, "memory": "320MiB", "state": "running", "restart": True,
                     "shutdown_timeout": 60})
    assert result["changed"] and not result["restart_required"] and result["state"] == "running"
    assert "<memory unit='KiB'>327680</memory>" in libvirtd.virsh("dumpxml", booted)


def test_graceful_shutdown_powers_the_guest_off(libvirtd, workdir, booted):
    result = domain({"name": booted, "state": "shutdown", "shutdown_timeout": 60})
    assert result["changed"] and result["state"] == "shutoff"
    assert domstate(libvirtd, booted) == "shut off (shutdown)"
    wait_for_line(workdir / "serial.log", "VIRTOPS-GUEST-POWEROFF", timeout=5)
    assert not domain({"name": booted, "state": "shutdown"})["changed"]


def test_pause_and_resume(libvirtd, booted):
    result = domain({"name": booted, "state": "paused"})
    assert result["changed"] and result["state"] == "paused"
    assert qmp_status(libvirtd, booted) == "paused"
    assert not domain({"name": booted, "state": "paused"})["changed"]
    result = domain({"name": booted, "state": "running"})
    assert result["changed"] and qmp_status(libvirtd, booted) == "running"


def test_destroyed_then_absent_with_named_disk(libvirtd, guest, workdir, domain_name):
    keep, doomed = workdir / "keep.raw", workdir / "doomed.raw"
    for path in (keep, doomed):
        subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(path), "8M"], check=True)
    domain({**guest_options(domain_name, guest, workdir), "state": "running",
            "disks": [{"path": str(keep), "format": "raw"}, {"path": str(doomed), "format": "raw"}]})
    wait_for_line(workdir / "serial.log", "VIRTOPS-DISK vdb 16384", timeout=90)
    result = domain({"name": domain_name, "state": "destroyed"})
    assert result["changed"] and domstate(libvirtd, domain_name) == "shut off (destroyed)"
    predicted = domain({"name": domain_name, "state": "absent", "remove_disks": ["vdb"]}, check=True)
    assert predicted["changed"] and doomed.exists()
    result = domain({"name": domain_name, "state": "absent", "remove_disks": ["vdb"]})
    assert result["changed"] and result["removed_disks"] == [{"path": str(doomed)}]
    assert domain_name not in libvirtd.virsh("list", "--all", "--name").split()
    assert keep.exists() and not doomed.exists()
    assert not domain({"name": domain_name, "state": "absent"})["changed"]


def test_domain_info(libvirtd, booted):
    one = run_module("domain_info", {"uri": URI, "name": booted})
    assert not one["changed"]
    assert (one["state"], one["reason"], one["active"]) == ("running", "booted", True)
    assert one["uuid"] in one["xml"]
    listed = run_module("domain_info", {"uri": URI})
    assert booted in [d["name"] for d in listed["domains"]]


@pytest.mark.parametrize("args, words", [
    ({"xml": "<domain><name>x</name>"}, "xml: malformed XML"),
    ({"xml": "<network><name>x</name></network>"}, "root element must be <domain>"),
    ({"name": "bad/name"}, "name: 'bad/name' is not a valid domain name"),
    ({"memory": "plenty"}, "memory: expected a size"),
    ({"no_such_option": 1}, "Unsupported parameters"),
    ({"uri": "qemu+tcp://127.0.0.1:1/system"}, "cannot connect to qemu+tcp://127.0.0.1:1/system"),
    ({"uri": "xen:///system"}, "uri: unknown scheme"),
    ({"state": "absent", "remove_disks": ["vdz"]}, "remove_disks: 'vdz' names no disk"),
])
def test_bad_input_fails_clearly_and_changes_nothing(libvirtd, guest, workdir, domain_name, args, words):
    domain(guest_options(domain_name, guest, workdir))
    before = dumpxml(libvirtd, domain_name)
    result = domain({"name": domain_name, **args})
    assert result["failed"] and words in result["msg"], result["msg"]
    assert dumpxml(libvirtd, domain_name) == before


def test_unknown_domain_without_definition(libvirtd, domain_name):
    result = domain({"name": domain_name, "state": "running"})
    assert result["failed"] and "is not defined" in result["msg"]
    info = run_module("domain_info", {"uri": URI, "name": domain_name})
    assert info["failed"] and "cannot find domain" in info["msg"]
