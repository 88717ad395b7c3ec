"""The security_label module on both backends: round trip, check mode, diff, live labels, pre-flight."""

from __future__ import annotations

import os

import pytest
from lxml import etree

from ansible_collections.virtops.qemu.plugins.module_utils.driver.connect import open_driver
from harness.ansible import run_module, run_module_calls

STATIC = {"model": "dac", "type": "static", "label": "+64055:+64055", "relabel": False}


def _xml(name: str, guest, image) -> str:
    return f"""<domain type='qemu'><name>{name}</name><memory unit='MiB'>128</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{guest.kernel}</kernel>
    <initrd>{guest.initrd}</initrd><cmdline>{guest.cmdline}</cmdline></os>
  <devices><disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{image}'/>
    <target dev='vda' bus='virtio'/></disk><memballoon model='none'/></devices></domain>"""


@pytest.fixture
def image(workdir):
    path = workdir / "disk.img"
    with open(path, "wb") as handle:
        handle.truncate(1 << 20)
    path.chmod(0o666)
    return path


@pytest.fixture
def defined(backend, vm, guest, image):
    with open_driver(backend.uri) as driver:
        driver.domains.define(_xml(vm, guest, image))
    return vm


def _labels(backend, vm: str) -> list:
    domain = etree.fromstring(backend.stored_xml(vm).encode())
    return [(dict(n.attrib), [(c.tag, c.text) for c in n]) for n in domain.findall("seclabel")]


def _run(backend, vm, check=False, **args):
    return run_module("security_label", {"name": vm, **args}, check=check, diff=True, uri=backend.uri)


def test_static_label_round_trip_then_none_then_absent(backend, defined):
    vm = defined
    predicted = _run(backend, vm, check=True, labels=[STATIC])
    assert predicted["changed"] and _labels(backend, vm) == []
    done = _run(backend, vm, labels=[STATIC])
    assert done["changed"] and done["diff"] == predicted["diff"]
    assert "+64055:+64055" in done["diff"]["after"] and "seclabel" not in done["diff"]["before"]
    assert _labels(backend, vm) == [({"type": "static", "model": "dac", "relabel": "no"},
                                     [("label", "+64055:+64055")])]
    assert done["labels"] == [{"model": "dac", "type": "static", "relabel": "no", "label": "+64055:+64055"}]
    again = _run(backend, vm, labels=[STATIC])
    assert not again["changed"] and again["diff"]["before"] == again["diff"]["after"]

    none = _run(backend, vm, labels=[{"model": "dac", "type": "none"}])
    assert none["changed"]
    assert _labels(backend, vm) == [({"type": "none", "model": "dac"}, [])]     # nothing stale left
    assert not _run(backend, vm, labels=[{"model": "dac", "type": "none"}])["changed"]

    gone = _run(backend, vm, state="absent", labels=[{"model": "dac"}])
    assert gone["changed"] and _labels(backend, vm) == []
    assert not _run(backend, vm, state="absent", labels=[{"model": "dac"}])["changed"]


def test_domain_is_the_old_name_of_the_name_option(backend, defined):
    vm = defined
    old = run_module("security_label", {"domain": vm, "labels": [STATIC]}, diff=True, uri=backend.uri)
    assert old["changed"] and old["name"] == vm and "+64055:+64055" in backend.stored_xml(vm), old
    assert not _run(backend, vm, labels=[STATIC])["changed"]


def test_disk_label(backend, defined):
    vm = defined
    disks = [{"target": "vda", "labels": [{"model": "dac", "relabel": False}]}]
    assert _run(backend, vm, check=True, disks=disks)["changed"]
    done = _run(backend, vm, disks=disks)
    assert done["changed"] and done["disks"] == {"vda": [{"model": "dac", "relabel": "no"}]}
    source = etree.fromstring(backend.stored_xml(vm).encode()).find("devices/disk/source")
    assert [dict(n.attrib) for n in source.findall("seclabel")] == [{"model": "dac", "relabel": "no"}]
    assert not _run(backend, vm, disks=disks)["changed"]


BAD_INPUTS = [
    ({"disks": [{"target": "vdz", "labels": [{"model": "dac", "relabel": False}]}]},
     "disks[0].target: the domain has no disk 'vdz' (its disks: vda)"),
    ({"labels": [{"model": "smack"}]}, "value of model must be one of: selinux, apparmor, dac, got: smack"),
    ({"labels": [{"model": "dac", "type": "sticky"}]}, "value of type must be one of: dynamic, static, none"),
    ({"labels": [{"model": "dac", "type": "static"}]}, "labels[0].label: a static label needs the label itself"),
]


def test_bad_input_fails_and_changes_nothing(backend, defined):
    before = backend.stored_xml(defined)
    # one playbook, a task per bad input
    results = run_module_calls([("security_label", {"uri": backend.uri, "name": defined, **args})
                                for args, _message in BAD_INPUTS], diff=True)
    for (args, message), result in zip(BAD_INPUTS, results, strict=True):
        assert result.get("failed") and message in result["msg"], (args, result)
    assert backend.stored_xml(defined) == before


def test_pre_flight_names_the_directory_qemu_cannot_search(backend, vm, guest, workdir):
    closed = workdir / "closed"
    closed.mkdir(mode=0o700)
    image = closed / "disk.img"
    image.write_bytes(b"\0" * 4096)
    with open_driver(backend.uri) as driver:
        driver.domains.define(_xml(vm, guest, image))
    before = backend.stored_xml(vm)
    result = _run(backend, vm, labels=[STATIC])
    assert result.get("failed")
    assert result["msg"] == (f"disks[vda]: QEMU runs as 64055:64055 and cannot reach {image}: no search permission "
                             f"on directory {closed} (mode 0700, owner 0:0); give it access (chmod o+x on the "
                             "directories) or set check_access: false")
    assert backend.stored_xml(vm) == before
    os.chmod(closed, 0o711)
    image.chmod(0o666)
    assert _run(backend, vm, labels=[STATIC])["changed"]


def test_running_domain_reports_live_labels_and_restart(backend, defined):
    vm = defined
    with open_driver(backend.uri) as driver:
        driver.domains.start(vm, paused=True)
    result = _run(backend, vm, labels=[{"model": "dac", "type": "none"}])
    assert result["changed"] and result["restart_required"]
    if backend.name == "libvirt":
        # The shared libvirtd runs QEMU as libvirt-qemu: DAC is in force.
        assert [x["model"] for x in result["live_labels"]][-1:] == ["dac"]
        assert result["live_labels"][-1]["label"].startswith("+")
    again = _run(backend, vm, labels=[{"model": "dac", "type": "none"}])
    assert not again["changed"] and again["restart_required"] == (backend.name == "libvirt")
