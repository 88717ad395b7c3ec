"""Every module's EXAMPLES, run for real as playbooks (domain's are in test_playbooks.py).

The examples are user documentation: each test runs them as written, with
only what names this host put in place (paths, devices, addresses, names
other tests could hold) and the objects an example assumes to exist
(a VM to connect, a golden image) made first.  Networks are made where a
test may make them: on the embedded driver every module runs in the test's
own network namespace; on libvirtd (which lives in a namespace of its own)
names, bridge and subnets are made unique.
"""

from __future__ import annotations

import json
import random
import secrets
import subprocess
from pathlib import Path

import pytest
from lxml import etree

from ansible_collections.virtops.qemu.plugins.module_utils.driver.connect import open_driver
from harness.ansible import run_playbook
from harness.backends import EmbedNetworkSide, LibvirtNetworkSide, NetworkSide
from harness.examples import adapted, by_task, play
from harness.imageserver import image_server, served_image, sha256
from harness.iscsi import PORTAL, iscsi_target, lun_file
from harness.libvirt_marker import BACKENDS
from harness.libvirtd import wait_for_line

GiB = 1024 ** 3
MiB = 1024 ** 2


def no_failures(results: list[dict]) -> None:
    failed = [r for r in results if r["failed"]]
    assert not failed, json.dumps(failed, indent=1)[:6000]


# -- network and network_info --------------------------------------------------------------------
@pytest.fixture(params=BACKENDS)
def side(request, netns) -> NetworkSide:
    if request.param == "libvirt":
        return LibvirtNetworkSide(request.getfixturevalue("libvirtd"))
    return EmbedNetworkSide(request.getfixturevalue("root"), netns)


def unique_network_names(side: NetworkSide) -> dict[str, str]:
    """What makes the examples' networks unique in libvirtd's shared namespace; nothing for the embedded one."""
    if side.name != "libvirt":
        return {}
    tag = secrets.token_hex(3)
    first, second = random.sample(range(16, 250), 2)
    return {
        "name: lab": f"name: vt-{tag}-lab", "source: lab": f"source: vt-{tag}-lab",
        "name: backplane": f"name: vt-{tag}-backplane",
        "name: legacy": f"name: vt-{tag}-legacy", "<name>legacy</name>": f"<name>vt-{tag}-legacy</name>",
        "virbr-lab": f"vtb-{tag}",
        "192.168.150.": f"10.{first}.{random.randint(1, 250)}.",
        "192.168.151.": f"10.{second}.{random.randint(1, 250)}.",
        "fd00:150::": f"fd00:{tag[:4]}::",
        "name: web01\n    interfaces:": f"name: vt-{tag}-web01\n    interfaces:",
    }


def renamed(names: dict[str, str], key: str) -> str:
    return names.get(f"name: {key}", f"name: {key}").split(": ", 1)[1]


def test_network_examples(side, workdir):
    names = unique_network_names(side)
    web01 = names.get("name: web01\n    interfaces:", "name: web01").split("\n")[0].split(": ", 1)[1]
    lab, backplane, legacy = (renamed(names, key) for key in ("lab", "backplane", "legacy"))
    bridge = names.get("virbr-lab", "virbr-lab")
    # The VM the examples connect exists already, as on a real host.
    vm = {"name": "a VM to connect", "virtops.qemu.domain": {"name": web01, "type": "qemu", "memory": "64MiB"}}
    tasks = [vm, *adapted(("network", "network_info"), names)]
    try:
        results = run_playbook(play(tasks, side.uri), netns=side.module_netns)
        no_failures(results)
        task = by_task(results)
        assert task["A NAT network with DHCP and a static host, started at boot"]["changed"]
        live = task["Add a static host while the network runs; it is applied live"]
        assert live["changed"] and not live["restart_required"], live
        assert any("52:54:00:00:15:02" in update for update in live["live_updates"]), live
        assert task["Route instead of NAT; restart the network to apply it"]["changed"]
        assert task["An isolated network with IPv6 router advertisements only"]["state"] == "active"
        assert task["Define a network from libvirt XML without starting it"]["state"] == "inactive"
        assert task["Connect a VM to it"]["changed"]
        assert task["Remove a network"]["state"] == "absent"

        read = task["Read one network"]
        assert read["exists"] and read["network"]["autostart"] and read["network"]["bridge"] == bridge
        assert "<forward mode='route'" in read["network"]["xml"].replace('"', "'")
        assert "52:54:00:00:15:02" in read["network"]["xml"]
        assert task["Show the addresses its guests got"]["msg"] == []
        assert task["Find the address of one guest by its MAC"].get("skipped")
        assert task["Name the active ones and their bridges"]["msg"][lab] == bridge
        assert side.bridge_exists(bridge) and side.dnsmasq_pid(backplane) is not None
        assert legacy not in side.names() and {lab, backplane} <= set(side.names())
    finally:
        side.remove_domain(web01)
        for name in (lab, backplane, legacy):
            side.remove(name)


# -- pool, volume and pool_info --------------------------------------------------------------------
STORE_IQN = "iqn.2024-01.org.example:store"


@pytest.fixture
def loop_device(workdir):
    backing = workdir / "vdb.img"
    with open(backing, "wb") as handle:
        handle.truncate(64 * MiB)
    device = subprocess.run(["losetup", "--find", "--show", str(backing)], check=True, capture_output=True,
                            text=True).stdout.strip()
    yield device
    subprocess.run(["losetup", "--detach", device], check=False)


def stop_pools(uri: str) -> None:
    """Stop (unmount) and undefine every pool of an embedded root."""
    with open_driver(uri) as driver:
        for name in driver.pools.names():
            if driver.pools.active(name):
                driver.pools.stop(name)
            driver.pools.undefine(name)


def is_mount_point(path: Path) -> bool:
    table = Path("/proc/self/mountinfo").read_text(encoding="utf-8")
    return any(line.split()[4] == str(path) for line in table.splitlines())


def test_storage_examples(root, netns, workdir, loop_device):
    """pool, then volume, then pool_info EXAMPLES on one embedded root; the iSCSI target in the test's namespace."""
    uri = f"qemu:///embed?root={root}"
    pool_tasks = adapted("pool", {
        "/srv/images": str(workdir / "images"), "/srv/fast": str(workdir / "fast"), "/dev/vdb": loop_device,
        "192.0.2.10": PORTAL, "/var/lib/virtops": str(root)})
    # A golden image is what a user clones from; it exists before the volume examples run.
    golden = {"name": "a golden image", "virtops.qemu.volume": {
        "pool": "images", "name": "golden.qcow2", "capacity": "64MiB", "format": "qcow2"}}
    cloud = served_image(workdir, "cloud.qcow2")
    with iscsi_target(netns, [lun_file(workdir / "lun1.img", 16 * MiB)], iqn=STORE_IQN), \
            image_server(netns, cloud.parent) as base:
        tasks = [*pool_tasks, golden, *adapted(("volume", "pool_info"), {
            "https://cloud.example.org/images/debian-12-genericcloud-amd64.qcow2": f"{base}/cloud.qcow2",
            "sha256:5d1c0e3f0b6b6f9a2e8f4b7f37c3f0a2d0e4f2c1b9e6a8d7c5b3a1f0e9d8c7b6": sha256(cloud),
            "/srv/golden/web.qcow2": str(cloud)})]
        try:
            results = run_playbook(play(tasks, uri), netns=netns.name, host_mounts=True)
            no_failures(results)
            task = by_task(results)
            assert is_mount_point(workdir / "fast")
            removed = task["Remove a pool, its empty directory too (volumes would make this fail)"]
            assert removed["deleted_target"] == str(workdir / "images") and not (workdir / "images").exists()
            assert task["An iSCSI target reached without the kernel initiator"]["state"] == "active"
            assert task["A pool on the embedded driver"]["changed"]
            assert task["Show files copied into the pool's directory by other tools as volumes"]["refreshed"]
            grown = task["Grow it"]
            assert grown["changed"] and grown["capacity"] == 20 * GiB, grown
            assert task["A copy of a golden image"]["capacity"] == 64 * MiB
            assert task["Delete one volume"]["changed"]
            imported = task["A raw disk imported from a qcow2 cloud image, checked and grown to 20 GiB"]
            assert imported["changed"] and imported["format"] == "raw" and imported["checksum"] == sha256(cloud)
            assert task["A qcow2 volume from an image already on the host"]["format"] == "qcow2"
            assert task["Show its free space in GiB"]["msg"] > 0
            pools = {pool["name"]: pool for pool in task["List every pool"]["pools"]}
            assert sorted(pools) == ["fast", "images", "san"]
            assert [(v["name"], v["capacity"]) for v in pools["san"]["volumes"]] == [("unit:0:0:1", 16 * MiB)]
            volumes = {v["name"]: v["capacity"] for v in pools["images"]["volumes"]}
            assert volumes == {"golden.qcow2": 64 * MiB, "web01.qcow2": 20 * GiB, "web02.qcow2": 64 * MiB,
                               "web04.raw": 20 * GiB, "web05.qcow2": 16 * MiB}
        finally:
            stop_pools(uri)
    assert not is_mount_point(workdir / "fast")


# -- security_label --------------------------------------------------------------------------------
@pytest.mark.guest
def test_security_label_examples(backend, vm, guest, workdir):
    names = {short: f"{vm}-{short}" for short in ("web01", "web02", "legacy01")}
    data, serial = workdir / "web02-data.img", workdir / "legacy01.log"
    with open(data, "wb") as handle:
        handle.truncate(MiB)
    data.chmod(0o666)
    kernel = {"path": str(guest.kernel), "initrd": str(guest.initrd), "cmdline": guest.cmdline}
    # The domains the examples label exist already: web02 with a data disk, legacy01 running.
    setup = [{"name": short, "virtops.qemu.domain": {
        "name": name, "type": "qemu", "memory": "128MiB", "kernel": kernel,
        **({"disks": [{"path": str(data), "target": "vdb", "format": "raw"}]} if short == "web02" else {}),
        **({"state": "running", "serials": [{"type": "file", "path": str(serial)}]} if short == "legacy01" else {}),
    }} for short, name in names.items()]
    replacements = {f"name: {short}": f"name: {name}" for short, name in names.items()}
    # This Debian host has no SELinux (libvirtd's models: none, dac): the example's unconfined
    # SELinux label becomes the DAC one, as host-passthrough becomes maximum in the domain examples.
    tasks = adapted("security_label", {**replacements,
                                       "- model: selinux\n        type: none": "- model: dac\n        type: none"})
    try:
        no_failures(run_playbook(play(setup, backend.uri)))
        wait_for_line(serial, guest.marker, timeout=120)     # its ACPI daemon answers the restart's shutdown
        results = run_playbook(play(tasks, backend.uri))
        no_failures(results)
        task = by_task(results)
        fixed = task["Run web01 as a fixed user and group, and let the driver leave its files alone"]
        assert fixed["changed"] and fixed["labels"][0]["label"] == "+1000:+1000", fixed
        shared = task["Keep the driver's hands off a shared data disk of web02 (its other files are still labelled)"]
        assert shared["changed"] and shared["disks"] == {"vdb": [{"model": "dac", "relabel": "no"}]}, shared
        unconfined = task["No confinement by SELinux for a domain, then restart it to apply that"]
        assert unconfined["changed"] and unconfined["restart_required"], unconfined
        restarted = task["Restart it when needed"]
        assert restarted["changed"] and not restarted["restart_required"], restarted
        restart_again = {"virtops.qemu.domain": {"name": names["legacy01"], "state": "running", "restart": True}}
        again = run_playbook(play([restart_again], backend.uri))
        assert not again[0]["changed"] and not again[0]["restart_required"], again
        live = etree.fromstring(backend.live_xml(names["legacy01"]).encode())
        assert [label.get("type") for label in live.iterfind("seclabel[@model='dac']")] == ["none"]
        assert task["Back to the driver's default label for web01"]["labels"] == []
        assert task["Let the driver relabel the data disk of web02 again"]["disks"] == {}
        assert "seclabel" not in backend.stored_xml(names["web01"]) + backend.stored_xml(names["web02"])
    finally:
        for name in names.values():
            backend.remove(name)


# -- snapshot -----------------------------------------------------------------------------------
def test_snapshot_examples(backend, vm, guest, workdir):
    disk, serial = workdir / "demo01.qcow2", workdir / "demo01.log"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True)
    disk.chmod(0o644)
    # demo01 runs, on a qcow2 disk.
    setup = [{"virtops.qemu.domain": {
        "name": vm, "type": "qemu", "memory": "128MiB", "state": "running",
        "kernel": {"path": str(guest.kernel), "initrd": str(guest.initrd), "cmdline": guest.cmdline},
        "disks": [{"path": str(disk), "target": "vda", "format": "qcow2"}],
        "serials": [{"type": "file", "path": str(serial)}]}}]
    overlay = workdir / "demo01-before-backup.qcow2"
    tasks = adapted("snapshot", {"name: demo01": f"name: {vm}",
                                 "/var/lib/libvirt/images/demo01-before-backup.qcow2": str(overlay)})
    try:
        no_failures(run_playbook(play(setup, backend.uri)))
        wait_for_line(serial, guest.marker, timeout=120)
        results = run_playbook(play(tasks, backend.uri))
        no_failures(results)
        task = by_task(results)
        taken = task["A snapshot of the running VM, with its memory"]
        assert taken["changed"] and taken["info"]["memory"] and taken["info"]["state"] == "running", taken
        assert task["Back to it, throwing away what happened since"]["changed"]
        assert task["Delete the snapshot (the disks stay)"]["changed"]
        external = task["A disk-only snapshot - the running guest writes to a new overlay from now on"]
        assert external["changed"] and external["info"]["state"] == "disk-snapshot", external
        assert task["Delete it - the overlay is merged into the image below and removed"]["changed"]
        assert disk.exists() and not overlay.exists()
    finally:
        backend.remove(vm)
