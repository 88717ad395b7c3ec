"""The snapshot module on each backend, with a guest that keeps a marker on its disk and counts on serial.

One domain per backend goes through the whole life of its snapshots (a
guest boot costs seconds under TCG): snapshots of the shut-off domain, a
revert that brings the disk's old marker back and is refused without force
while the disk was written since, a snapshot with memory whose revert makes
the guest count on from the saved value, check mode that writes nothing,
deletion that keeps the disk, and domain removal that refuses to drop
snapshots silently.  A disk-only (external) snapshot of the running guest
moves its writes to a new overlay (a reset makes the guest write its next
marker there) and is merged back into the image when deleted.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.ansible import run_module
from harness.disk_counter import WROTE, build_disk_counter, counts, reads
from harness.libvirtd import wait_for_line

pytestmark = [pytest.mark.guest]


def snap(backend, args: dict, check: bool = False) -> dict:
    return run_module("snapshot", {"uri": backend.uri, **args}, check=check, diff=True)


def domain(backend, args: dict) -> dict:
    return run_module("domain", {"uri": backend.uri, **args})


def snapshots(backend, name: str) -> dict[str, dict]:
    info = run_module("domain_info", {"uri": backend.uri, "name": name})
    return {s["name"]: s for s in info["domain"]["snapshots"]}


def image_tags(disk: Path) -> list[str]:
    out = subprocess.run(["qemu-img", "snapshot", "-U", "-l", str(disk)], capture_output=True, text=True,
                         check=True).stdout
    return [line.split()[1] for line in out.splitlines()[2:] if len(line.split()) > 1]


def marker(image: Path) -> str:
    """The marker at the start of the disk as an image (and its backing chain) holds it."""
    out = subprocess.run(["qemu-io", "-r", "-U", "-f", "qcow2", "-c", "read -v 0 16", str(image)],
                         capture_output=True, text=True, check=True).stdout
    line = next(line for line in out.splitlines() if line.startswith("00000000:"))
    data = bytes(int(byte, 16) for byte in line.split()[1:17])
    return data.split(b"\n")[0].rstrip(b"\0").decode()


def backing_chain(image: Path) -> list[str]:
    out = subprocess.run(["qemu-img", "info", "-U", "--backing-chain", "--output=json", str(image)],
                         capture_output=True, text=True, check=True).stdout
    return [entry["filename"] for entry in json.loads(out)]


def without_time(xml: str) -> str:
    return "\n".join(line for line in xml.splitlines() if "creationTime" not in line)


@pytest.fixture
def counter_vm(backend, guest, workdir, vm):
    """A shut-off domain of the counting guest on a new qcow2 disk; removed with its snapshots afterwards."""
    counter = build_disk_counter(guest, workdir)
    disk = workdir / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True)
    disk.chmod(0o644)
    options = {
        "name": vm, "type": "qemu", "memory": "256MiB", "vcpus": 1,
        "kernel": {"path": str(counter.kernel), "initrd": str(counter.initrd), "cmdline": counter.cmdline},
        "serials": [{"type": "file", "path": str(workdir / "serial.log")}],
        "disks": [{"path": str(disk), "target": "vda", "format": "qcow2"}],
        "features": ["acpi"], "on_poweroff": "destroy",
    }
    assert domain(backend, options)["changed"]
    yield vm, disk
    if backend.name == "libvirt":
        backend.libvirtd.virsh("destroy", vm, check=False)
        backend.libvirtd.virsh("undefine", vm, "--nvram", "--snapshots-metadata", check=False)


def boot(backend, vm: str, workdir: Path) -> str:
    """Start the domain, wait for the guest to have written its disk, power it off; its console."""
    serial = workdir / "serial.log"
    serial.unlink(missing_ok=True)
    assert domain(backend, {"name": vm, "state": "running"})["changed"]
    log = wait_for_line(serial, WROTE, timeout=120)
    return log


def power_off(backend, vm: str) -> None:
    assert domain(backend, {"name": vm, "state": "destroyed"})["changed"]


def wait_count(serial: Path, at_least: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = counts(serial.read_text(errors="replace"))
        if seen and seen[-1] >= at_least:
            return seen[-1]
        time.sleep(0.2)
    raise TimeoutError(f"the guest did not count to {at_least}: {serial.read_text(errors='replace')[-400:]}")


def resumed_counts(seen: list[int], peak: int) -> list[int]:
    """The counts after the guest went back from ``peak`` to an earlier value (all when the log started anew)."""
    if peak not in seen:
        return seen
    start = seen.index(peak)
    for index in range(start + 1, len(seen)):
        if seen[index] < seen[index - 1]:
            return seen[index:]
    return []


def test_snapshot_revert_and_delete(backend, workdir, counter_vm):
    vm, disk = counter_vm
    serial = workdir / "serial.log"
    assert reads(boot(backend, vm, workdir)) == [""]
    power_off(backend, vm)

    # Check mode predicts the snapshot and writes nothing.
    predicted = snap(backend, {"name": vm, "snapshot": "s1", "description": "first"}, check=True)
    assert predicted["changed"] and predicted["action"] == "create", predicted
    assert image_tags(disk) == [] and snapshots(backend, vm) == {}
    first = snap(backend, {"name": vm, "snapshot": "s1", "description": "first"})
    assert first["changed"] and first["info"]["state"] == "shutoff" and first["info"]["current"], first
    assert without_time(first["diff"]["after"]) == without_time(predicted["diff"]["after"])
    assert "<name>s1</name>" in first["diff"]["after"] and first["diff"]["before"] == ""
    assert image_tags(disk) == ["s1"]
    assert not snap(backend, {"name": vm, "snapshot": "s1"})["changed"]

    # The guest writes gen-2 after s1; s2 holds it; then it writes gen-3.
    assert reads(boot(backend, vm, workdir)) == ["gen-1"]
    power_off(backend, vm)
    second = snap(backend, {"name": vm, "snapshot": "s2"})
    assert second["changed"] and second["info"]["parent"] == "s1"
    assert reads(boot(backend, vm, workdir)) == ["gen-2"]
    power_off(backend, vm)

    # The disk was written since s2, the current snapshot: a revert needs force.
    refused = snap(backend, {"name": vm, "snapshot": "s1", "state": "current"})
    assert refused["failed"] and "would discard" in refused["msg"] and "force" in refused["msg"], refused
    check = snap(backend, {"name": vm, "snapshot": "s1", "state": "current", "force": True}, check=True)
    assert check["changed"] and check["action"] == "revert"
    assert snapshots(backend, vm)["s2"]["current"]
    reverted = snap(backend, {"name": vm, "snapshot": "s1", "state": "current", "force": True})
    assert reverted["changed"] and reverted["info"]["current"], reverted
    assert "<active>1</active>" in reverted["diff"]["after"] and "<active>0</active>" in reverted["diff"]["before"]
    assert not snap(backend, {"name": vm, "snapshot": "s1", "state": "current"})["changed"]
    listed = snapshots(backend, vm)
    assert listed["s1"]["current"] and not listed["s2"]["current"] and listed["s2"]["parent"] == "s1"
    assert listed["s1"]["description"] == "first" and listed["s1"]["state"] == "shutoff"
    assert reads(boot(backend, vm, workdir)) == ["gen-1"]       # the revert brought the old marker back

    # With memory: the guest counts on from the value it had when the snapshot was taken.
    wait_count(serial, 3)
    memory = snap(backend, {"name": vm, "snapshot": "m1"})
    assert memory["changed"] and memory["info"]["state"] == "running" and memory["info"]["memory"], memory
    saved = counts(serial.read_text(errors="replace"))[-1]
    wait_count(serial, saved + 8)
    refused = snap(backend, {"name": vm, "snapshot": "s1", "state": "current"})
    assert refused["failed"] and "it is running" in refused["msg"], refused
    assert not snap(backend, {"name": vm, "snapshot": "m1", "state": "current"})["changed"]     # current already
    peak = counts(serial.read_text(errors="replace"))[-1]
    back = snap(backend, {"name": vm, "snapshot": "m1", "state": "current", "force": True})
    assert back["changed"], back
    time.sleep(3)
    # libvirt may start a new QEMU for the revert, which starts the serial file anew.
    log = serial.read_text(errors="replace")
    after = resumed_counts(counts(log), peak)
    assert after and after[0] <= saved + 2 and after[-1] > after[0], (saved, peak, after)
    assert reads(log) in ([], ["gen-1"])           # carried on: no new boot read the disk
    assert backend.qmp_status(vm) == "running"

    # Deleting a snapshot keeps the disk; a second run changes nothing.
    gone = snap(backend, {"name": vm, "snapshot": "s2", "state": "absent"})
    assert gone["changed"] and gone["diff"]["after"] == ""
    assert not snap(backend, {"name": vm, "snapshot": "s2", "state": "absent"})["changed"]
    assert disk.exists() and "s2" not in image_tags(disk) and "s1" in image_tags(disk)
    assert set(snapshots(backend, vm)) == {"s1", "m1"}


@pytest.mark.parametrize(("args", "message"), [
    ({"snapshot": "a/b"}, "snapshot: 'a/b' is not a valid snapshot name"),
    ({"snapshot": ""}, "snapshot: a snapshot name is required"),
    ({"snapshot": "nope", "state": "current"}, "has no snapshot 'nope'"),
])
def test_bad_input_is_named_and_changes_nothing(backend, workdir, counter_vm, args, message):
    vm, disk = counter_vm
    result = snap(backend, {"name": vm, **args})
    assert result["failed"] and message in result["msg"], result
    assert image_tags(disk) == []


def test_killed_during_a_snapshot_leaves_a_usable_domain(backend, workdir, counter_vm):
    vm, disk = counter_vm
    serial = workdir / "serial.log"
    boot(backend, vm, workdir)
    code = ("import sys; sys.path[:0] = sys.argv[3:]\n"
            "from ansible_collections.virtops.qemu.plugins.module_utils.driver.connect import open_driver\n"
            "from ansible_collections.virtops.qemu.plugins.module_utils.model.snapshot import creation_xml\n"
            "with open_driver(sys.argv[1]) as d: d.snapshots.create(sys.argv[2], creation_xml('k1', None, True))\n")
    child = subprocess.Popen([sys.executable, "-c", code, backend.uri, vm, *sys.path])
    time.sleep(1.5)
    child.kill()
    child.wait()
    time.sleep(2)
    seen = counts(serial.read_text(errors="replace"))[-1]
    wait_count(serial, seen + 2)             # the guest runs on
    again = snap(backend, {"name": vm, "snapshot": "k1"})
    assert not again.get("failed"), again
    assert "k1" in snapshots(backend, vm)
    assert image_tags(disk).count("k1") == 1

    # A disk-only one: wherever the kill lands, the guest runs on and the disk it is defined with is there.
    first, second = workdir / "k2-first.qcow2", workdir / "k2-second.qcow2"
    child = subprocess.Popen([sys.executable, "-c", code.replace("creation_xml('k1', None, True)",
                              f"creation_xml('k2', None, False, (('vda', '{first}'),))"), backend.uri, vm, *sys.path])
    time.sleep(1.5)
    child.kill()
    child.wait()
    time.sleep(2)
    seen = counts(serial.read_text(errors="replace"))[-1]
    wait_count(serial, seen + 2)
    # An overlay made before the metadata was written is left; a second name takes the snapshot.
    again = snap(backend, {"name": vm, "snapshot": "k2", "disk_only": True,
                           "disks": [{"target": "vda", "path": str(second)}]})
    assert not again.get("failed"), again
    assert "k2" in snapshots(backend, vm)
    defined = re.search(r"<source file=['\"]([^'\"]+)['\"]", backend.stored_xml(vm)).group(1)
    assert defined in (str(first), str(second)) and Path(defined).exists(), defined


def test_domain_with_snapshots_removed_only_when_asked(backend, workdir, counter_vm):
    vm, disk = counter_vm
    assert snap(backend, {"name": vm, "snapshot": "s1"})["changed"]
    refused = domain(backend, {"name": vm, "state": "absent"})
    assert refused["failed"] and "remove_snapshots" in refused["msg"] and "s1" in refused["msg"], refused
    assert vm in backend.names()
    removed = domain(backend, {"name": vm, "state": "absent", "remove_snapshots": True})
    assert removed["changed"] and vm not in backend.names(), removed
    assert disk.exists()


def test_disk_only_snapshot_of_a_running_guest(backend, workdir, counter_vm):
    vm, disk = counter_vm
    serial, overlay = workdir / "serial.log", workdir / "overlay.qcow2"
    assert reads(boot(backend, vm, workdir)) == [""]         # the guest runs; gen-1 is in the image
    args = {"name": vm, "snapshot": "e1", "disk_only": True, "disks": [{"target": "vda", "path": str(overlay)}]}

    # (The other refusals of bad input are unit tests of the manager.)
    refused = snap(backend, {**args, "disks": [{"target": "vda", "path": str(disk)}]})
    assert refused["failed"] and refused["msg"].startswith("disks[0].path: ") and "exists" in refused["msg"], refused

    predicted = snap(backend, args, check=True)
    assert predicted["changed"] and predicted["info"]["state"] == "disk-snapshot", predicted
    assert not overlay.exists() and snapshots(backend, vm) == {}
    taken = snap(backend, args)
    assert taken["changed"] and not taken["info"]["memory"], taken
    assert taken["info"]["disks"] == [{"target": "vda", "snapshot": "external", "path": str(overlay)}]
    assert without_time(taken["diff"]["after"]) == without_time(predicted["diff"]["after"])
    assert f"<source file=\"{overlay}\"/>" in taken["diff"]["after"], taken["diff"]
    assert not snap(backend, args)["changed"]
    assert backing_chain(overlay) == [str(overlay), str(disk)]
    listed = snapshots(backend, vm)["e1"]
    assert listed["state"] == "disk-snapshot" and listed["current"], listed
    assert f"<source file='{overlay}'" in backend.stored_xml(vm).replace('"', "'")

    # The guest goes on writing, to the overlay: after a reset it writes gen-2; the image keeps gen-1.
    assert run_module("qmp", {"uri": backend.uri, "name": vm, "command": "system_reset"})["changed"]
    wait_for_line(serial, f"{WROTE} gen-2", timeout=120)
    assert marker(disk) == "gen-1" and marker(overlay) == "gen-2"

    refused = snap(backend, {"name": vm, "snapshot": "e1", "state": "current", "force": True})
    assert refused["failed"] and "external" in refused["msg"] and "9.9" in refused["msg"], refused

    # Deleting it merges the overlay into the image, which the disk is again, and removes the overlay.
    check = snap(backend, {"name": vm, "snapshot": "e1", "state": "absent"}, check=True)
    assert check["changed"] and overlay.exists() and "e1" in snapshots(backend, vm)
    gone = snap(backend, {"name": vm, "snapshot": "e1", "state": "absent"})
    assert gone["changed"] and gone["diff"]["after"] == "", gone
    assert not overlay.exists() and marker(disk) == "gen-2"
    assert not snap(backend, {"name": vm, "snapshot": "e1", "state": "absent"})["changed"]
    assert snapshots(backend, vm) == {} and str(overlay) not in backend.stored_xml(vm)
    seen = counts(serial.read_text(errors="replace"))[-1]
    wait_count(serial, seen + 2)             # the guest runs on, on its image

    # Of the shut-off domain: what is written to the overlay is merged by qemu-img commit.
    power_off(backend, vm)
    assert snap(backend, args)["info"]["state"] == "shutoff"
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x67 0 512", str(overlay)], check=True,
                   capture_output=True)
    assert marker(disk) == "gen-2" and snap(backend, {"name": vm, "snapshot": "e1", "state": "absent"})["changed"]
    assert not overlay.exists() and marker(disk) == "g" * 16
    assert f"<source file='{disk}'" in backend.stored_xml(vm).replace('"', "'")
