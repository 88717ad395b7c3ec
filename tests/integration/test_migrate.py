"""Migration between two hosts on one machine (harness.twohosts), through the migrate role.

The guest prints a tick with its uptime every half second on its serial console
(a file, one per host) and wrote a marker to the start of its qcow2 disk at
boot.  After the move its ticks go on on the destination without a new boot,
the destination's copy of the disk holds the marker, and the source has
neither QEMU nor definition left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from harness.ansible import run_module, run_playbook
from harness.embed import qemu_pids
from harness.examples import adapted, by_task
from harness.examples import play as examples_play
from harness.guest import DISK_MARKER, MARKER, parse_ticks
from harness.twohosts import (
    DISK,
    SERIAL,
    Host,
    domain_xml,
    libvirt_domain_xml,
    play,
    role_play,
    serial,
    start_guest,
    tasks,
    two_hosts,
    two_libvirtds,
    wait_for,
)


def disk_head(host: Host) -> bytes:
    with tempfile.NamedTemporaryFile(dir="/var/tmp") as raw:
        subprocess.run(["qemu-img", "convert", "-U", "-O", "raw", str(host.local(DISK)), raw.name], check=True)
        return Path(raw.name).read_bytes()[:512]


def domains_on(host: Host) -> list[str]:
    code = ("import json, sys\n"
            "from ansible_collections.virtops.qemu.plugins.module_utils.driver.connect import open_driver\n"
            f"with open_driver({host.uri!r}, read_only=True) as d: print(json.dumps(d.domains.names()))")
    return json.loads(host.python(code))


@pytest.fixture
def libvirt_hosts():
    with two_libvirtds() as pair:
        yield pair


@pytest.fixture
def hosts():
    with two_hosts() as pair:
        yield pair


@pytest.mark.embed
def test_live_migration_with_copied_storage(hosts, guest_build):
    src, dst = hosts
    name = "mig1"
    start_guest(src, name, guest_build)

    predicted = play([src, dst], role_play(src, dst, name, migrate_copy_storage="all"), check=True)
    assert not any(r["failed"] for r in predicted), predicted
    assert tasks(predicted)["Prepare the destination (an incoming QEMU and the disk exports)"]["changed"]
    assert domains_on(dst) == [] and not dst.local(DISK).exists()

    results = play([src, dst], role_play(src, dst, name, migrate_copy_storage="all"))
    assert not any(r["failed"] for r in results), json.dumps(results, indent=1)[:5000]
    moved = tasks(results)["Mirror the disks and migrate (source)"]
    stats = moved["stats"]
    assert stats["total_time_ms"] > 0 and stats["downtime_ms"] >= 0
    assert stats["disk_bytes"] > 0 and stats["transferred_bytes"] > stats["disk_bytes"]

    last_on_source = parse_ticks(serial(src))[-1][0]
    wait_for(lambda: len(parse_ticks(serial(dst))) >= 3, 30, "ticks on the destination")
    counts = [count for count, _uptime in parse_ticks(serial(dst))]
    assert counts[0] >= last_on_source and counts == sorted(counts), (last_on_source, counts)
    assert MARKER not in serial(dst), "the guest booted again on the destination"
    assert disk_head(dst).startswith(DISK_MARKER.encode())
    assert domains_on(dst) == [name] and domains_on(src) == []
    assert qemu_pids(src.root) == [] and len(qemu_pids(dst.root)) == 1

    again = play([src, dst], role_play(src, dst, name, migrate_copy_storage="all"))
    assert not any(r["failed"] or r["changed"] for r in again), again


@pytest.mark.embed
def test_refused_when_the_destination_lacks_the_network(hosts, guest_build):
    src, dst = hosts
    name = "mig2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(src.local(DISK)), "16M"], check=True)
    xml = domain_xml(name, guest_build).replace(
        "<devices>", "<devices><interface type='network'><source network='lab'/><model type='virtio'/></interface>")
    network = {"uri": src.uri, "name": "lab", "state": "active", "bridge": {"name": "virbr-lab"}}
    plays = [{"hosts": src.name, "gather_facts": False, "tasks": [
        {"name": "network", "virtops.qemu.network": network},
        {"name": "start", "virtops.qemu.domain": {"uri": src.uri, "name": name, "xml": xml, "state": "running"}}]}]
    assert not any(r["failed"] for r in play([src], plays))

    results = play([src, dst], role_play(src, dst, name, migrate_copy_storage="all"))
    failed = [r for r in results if r["failed"]]
    assert failed and "no active network 'lab'" in failed[0]["msg"], failed
    assert domains_on(dst) == [] and not dst.local(DISK).exists() and qemu_pids(dst.root) == []
    assert domains_on(src) == [name] and len(qemu_pids(src.root)) == 1


@pytest.mark.embed
def test_shared_storage_live_then_offline_back(hosts, guest_build, tmp_path):
    src, dst = hosts
    name = "mig5"
    shared = tmp_path / "shared.qcow2"
    tmp_path.chmod(0o755)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(shared), "16M"], check=True)
    start_guest(src, name, guest_build, xml=domain_xml(name, guest_build).replace(DISK, str(shared)))

    results = play([src, dst], role_play(src, dst, name))
    assert not any(r["failed"] for r in results), json.dumps(results, indent=1)[:5000]
    assert tasks(results)["Mirror the disks and migrate (source)"]["stats"]["disk_bytes"] == 0
    last_on_source = parse_ticks(serial(src))[-1][0]
    wait_for(lambda: len(parse_ticks(serial(dst))) >= 3, 30, "ticks on the destination")
    assert parse_ticks(serial(dst))[0][0] >= last_on_source and MARKER not in serial(dst)
    assert domains_on(dst) == [name] and domains_on(src) == [] and not dst.local(DISK).exists()

    stop = [{"hosts": dst.name, "gather_facts": False, "tasks": [
        {"name": "stop", "virtops.qemu.domain": {"uri": dst.uri, "name": name, "state": "destroyed"}}]}]
    assert not play([dst], stop)[0]["failed"]
    back = role_play(dst, src, name, migrate_live=False, migrate_destination_address="")
    predicted = play([src, dst], back, check=True)
    assert not any(r["failed"] for r in predicted) and domains_on(src) == [], predicted
    moved = play([src, dst], back)
    assert not any(r["failed"] for r in moved), json.dumps(moved, indent=1)[:5000]
    assert [r["changed"] for r in predicted] == [r["changed"] for r in moved]
    assert domains_on(src) == [name] and domains_on(dst) == [] and qemu_pids(src.root) == []
    again = play([src, dst], back)
    assert not any(r["failed"] or r["changed"] for r in again), again


@pytest.mark.embed
def test_offline_move_copies_the_disks(hosts, guest_build):
    src, dst = hosts
    name = "mig6"
    start_guest(src, name, guest_build)
    stop = [{"hosts": src.name, "gather_facts": False, "tasks": [
        {"name": "stop", "virtops.qemu.domain": {"uri": src.uri, "name": name, "state": "destroyed"}}]}]
    assert not play([src], stop)[0]["failed"]
    assert disk_head(src).startswith(DISK_MARKER.encode())
    offline = role_play(src, dst, name, migrate_live=False, migrate_copy_storage="all")

    predicted = play([src, dst], offline, check=True)
    assert not any(r["failed"] for r in predicted), predicted
    assert domains_on(dst) == [] and not dst.local(DISK).exists() and domains_on(src) == [name]

    moved = play([src, dst], offline)
    assert not any(r["failed"] for r in moved), json.dumps(moved, indent=1)[:5000]
    for task in ("Read the domain on the source", "Prepare the destination (an incoming QEMU and the disk exports)",
                 "Stop the source's QEMU and remove its definition"):
        assert tasks(predicted)[task]["changed"] == tasks(moved)[task]["changed"], task
    assert tasks(moved)["Resume the guest (destination)"]["changed"]
    stats = tasks(moved)["Mirror the disks and migrate (source)"]["stats"]
    assert stats["disk_bytes"] > 0 and stats["memory_bytes"] == 0, stats
    assert domains_on(dst) == [name] and domains_on(src) == []
    assert qemu_pids(src.root) == [] and qemu_pids(dst.root) == []
    assert disk_head(dst).startswith(DISK_MARKER.encode())
    assert src.local(DISK).exists(), "the source's disk is kept (only the definition is removed)"
    assert not nbd_listening(dst), "the NBD export was left listening"

    again = play([src, dst], offline)
    assert not any(r["failed"] or r["changed"] for r in again), again


def phases_until_switchover(src: Host, dst: Host, name: str) -> list[dict]:
    """source, prepare and perform of the role's handshake, then nothing: a controller gone after the switch-over."""
    def phase(host: Host, phase: str, **args) -> dict:
        return {"name": phase, "virtops.qemu.migrate": {"phase": phase, "name": name, "uri": host.uri,
                                                        "copy_storage": "all", **args},
                "delegate_to": host.name, "register": phase}
    return [{"hosts": src.name, "gather_facts": False, "tasks": [
        phase(src, "source"),
        phase(dst, "prepare", xml="{{ source.xml }}", disks="{{ source.disks }}", listen_address=dst.address),
        phase(src, "perform", incoming="{{ prepare.incoming }}")]}]


@pytest.mark.embed
@pytest.mark.parametrize("destination_died", [False, True], ids=["destination-runs", "destination-died"])
def test_next_run_recovers_a_move_whose_controller_died_after_the_switchover(
        hosts, guest_build, destination_died):
    src, dst = hosts
    name = "mig7"
    start_guest(src, name, guest_build)
    left = play([src, dst], phases_until_switchover(src, dst, name))
    assert not any(r["failed"] for r in left), json.dumps(left, indent=1)[:5000]
    assert len(qemu_pids(src.root)) == 1 and len(qemu_pids(dst.root)) == 1
    last_on_source = parse_ticks(serial(src))[-1][0]
    if destination_died:
        for pid in qemu_pids(dst.root):
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: qemu_pids(dst.root) == [], 10, "the destination's QEMU to die")
        dst.local(SERIAL).unlink()

    recovered = play([src, dst], role_play(src, dst, name, migrate_copy_storage="all"))
    assert not any(r["failed"] for r in recovered), json.dumps(recovered, indent=1)[:5000]
    by_name = tasks(recovered)
    assert by_name["Read the domain on the source"]["unfinished"] == "completed"
    assert by_name["Prepare the destination (an incoming QEMU and the disk exports)"].get("recovered") is (
        None if destination_died else True)
    assert by_name["Stop the source's QEMU and remove its definition"]["changed"]
    if destination_died:
        # The source ran on from where it paused, then moved again.
        assert by_name["Mirror the disks and migrate (source)"]["changed"]
        last_on_source = parse_ticks(serial(src))[-1][0]
    assert domains_on(dst) == [name] and domains_on(src) == []
    assert qemu_pids(src.root) == [] and len(qemu_pids(dst.root)) == 1
    wait_for(lambda: len(parse_ticks(serial(dst))) >= 3, 30, "ticks on the destination")
    counts = [count for count, _uptime in parse_ticks(serial(dst))]
    assert counts[0] >= last_on_source and counts == sorted(counts), (last_on_source, counts)
    assert MARKER not in serial(dst), "the guest booted again on the destination"

    again = play([src, dst], role_play(src, dst, name, migrate_copy_storage="all"))
    assert not any(r["failed"] or r["changed"] for r in again), again


def nbd_listening(host: Host) -> bool:
    out = host.run(["ss", "-Htln"]).stdout
    ports = {int(line.split()[3].rpartition(":")[2]) for line in out.splitlines() if len(line.split()) >= 4}
    return any(10809 <= port <= 10872 for port in ports)


def nbd_connected(host: Host) -> bool:
    """A TCP connection to the host's NBD server (ports 10809-10872) is established."""
    out = host.run(["ss", "-Htn", "state", "established"]).stdout
    ports = {int(line.split()[2].rpartition(":")[2]) for line in out.splitlines() if len(line.split()) >= 4}
    return any(10809 <= port <= 10872 for port in ports)


def migrate_module_pids(host: Host) -> list[int]:
    """Ansible's migrate module processes running in the host's network namespace."""
    inode = os.stat(f"/run/netns/{host.netns.name}").st_ino
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            in_host = os.stat(f"/proc/{entry}/ns/net").st_ino == inode
        except OSError:
            continue
        if in_host and b"AnsiballZ_migrate.py" in cmdline:
            found.append(int(entry))
    return found


@pytest.mark.embed
def test_kill_9_of_the_source_task_leaves_the_guest_on_the_source(hosts, guest_build):
    src, dst = hosts
    name = "mig4"
    start_guest(src, name, guest_build)
    killed: list[int] = []

    def kill_perform() -> None:
        # Once the source's disk copy has connected to the destination's NBD server, perform runs.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            pids = migrate_module_pids(src) if nbd_connected(dst) else []
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.05)

    killer = threading.Thread(target=kill_perform)
    killer.start()
    results = play([src, dst], role_play(src, dst, name, migrate_copy_storage="all", migrate_bandwidth=1))
    killer.join()
    assert killed, "the source's perform task was never seen running"
    by_name = tasks(results)
    assert by_name["Mirror the disks and migrate (source)"]["failed"]
    assert by_name["Cancel on the destination (its incoming QEMU and the disks it created)"]["changed"]
    assert by_name["Cancel on the source (the guest runs on there)"]["changed"]
    assert by_name["Report the failed migration"]["failed"]

    assert domains_on(dst) == [] and not dst.local(DISK).exists() and qemu_pids(dst.root) == []
    assert domains_on(src) == [name] and len(qemu_pids(src.root)) == 1
    ticks = len(parse_ticks(serial(src)))
    wait_for(lambda: len(parse_ticks(serial(src))) > ticks + 2, 10, "the guest ticking on the source")

    retried = play([src, dst], role_play(src, dst, name, migrate_copy_storage="all"))
    assert not any(r["failed"] for r in retried), json.dumps(retried, indent=1)[:5000]
    assert domains_on(dst) == [name] and domains_on(src) == []


# -- libvirt: two private libvirtds joined by a veth pair, reached over qemu+tcp --------------------
@pytest.mark.libvirt
def test_libvirt_managed_live_migration_with_copied_storage(libvirt_hosts, guest):
    (src, src_uri), (dst, dst_uri) = libvirt_hosts
    name = "mig3"
    src.virsh("vol-create-as", "default", f"{name}.qcow2", "16M", "--format", "qcow2")
    xml_file = src.base / "domain.xml"
    xml_file.write_text(libvirt_domain_xml(name, guest))
    src.virsh("define", str(xml_file))
    src.virsh("start", name)
    src_serial = src.base / "log" / "qemu" / f"{name}-serial.log"
    dst_serial = dst.base / "log" / "qemu" / f"{name}-serial.log"
    wait_for(lambda: src_serial.exists() and f"{DISK_MARKER} written" in src_serial.read_text(errors="replace"),
             60, "the guest's disk marker")
    args = {"name": name, "destination": dst_uri, "copy_storage": "all"}

    predicted = run_module("migrate", args, check=True, uri=src_uri, netns=src.netns)
    assert predicted["changed"] and not predicted["failed"], predicted
    assert dst.virsh("list", "--all", "--name").split() == []

    # The move is the module's EXAMPLES, run as written but for the names of this test.
    example = run_playbook(examples_play(adapted("migrate", {"qemu+tcp://kvm02/system": dst_uri, "demo01": name}),
                                         src_uri), netns=src.netns)
    moved, shown = by_task(example)[f"Move {name} to kvm02 with its disks, through libvirt"], example[-1]
    assert moved["changed"] and not moved["failed"], moved
    assert moved["stats"]["total_time_ms"] > 0 and moved["stats"]["disk_bytes"] > 0, moved["stats"]
    assert shown["msg"] == (f"{moved['stats']['downtime_ms']} ms of downtime, "
                            f"{moved['stats']['transferred_bytes']} bytes sent")
    last_on_source = parse_ticks(src_serial.read_text(errors="replace"))[-1][0]
    wait_for(lambda: dst_serial.exists() and len(parse_ticks(dst_serial.read_text(errors="replace"))) >= 3, 30,
             "ticks on the destination")
    counts = [count for count, _uptime in parse_ticks(dst_serial.read_text(errors="replace"))]
    assert counts[0] >= last_on_source and counts == sorted(counts), (last_on_source, counts)
    assert dst.virsh("domstate", name).strip() == "running"
    assert src.virsh("list", "--all", "--name").split() == []
    dst_disk = dst.base / "lib" / "images" / f"{name}.qcow2"
    with tempfile.NamedTemporaryFile(dir="/var/tmp") as raw:
        subprocess.run(["qemu-img", "convert", "-U", "-O", "raw", str(dst_disk), raw.name], check=True)
        assert Path(raw.name).read_bytes().startswith(DISK_MARKER.encode())

    again = run_module("migrate", args, uri=src_uri, netns=src.netns)
    assert not again["changed"] and not again["failed"], again


@pytest.mark.libvirt
def test_libvirt_offline_migration_of_a_shut_off_domain(libvirt_hosts, guest, tmp_path):
    (src, src_uri), (dst, dst_uri) = libvirt_hosts
    name = "mig8"
    tmp_path.chmod(0o755)
    shared = tmp_path / "shared.qcow2"     # outside both daemons' private /var/lib/libvirt: shared storage
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(shared), "16M"], check=True)
    xml_file = src.base / "domain.xml"
    xml_file.write_text(libvirt_domain_xml(name, guest).replace(f"/var/lib/libvirt/images/{name}.qcow2", str(shared)))
    src.virsh("define", str(xml_file))
    args = {"name": name, "destination": dst_uri, "live": False}

    predicted = run_module("migrate", args, check=True, uri=src_uri, netns=src.netns)
    assert predicted["changed"] and not predicted["failed"], predicted
    assert dst.virsh("list", "--all", "--name").split() == [] and src.virsh("list", "--all", "--name").split() == [name]

    moved = run_module("migrate", args, uri=src_uri, netns=src.netns)
    assert moved["changed"] and not moved["failed"], moved
    assert dst.virsh("list", "--all", "--name").split() == [name]
    assert dst.virsh("domstate", name).strip() == "shut off"
    assert f"<source file='{shared}'" in dst.virsh("dumpxml", name)
    assert src.virsh("list", "--all", "--name").split() == []

    again = run_module("migrate", args, uri=src_uri, netns=src.netns)
    assert not again["changed"] and not again["failed"], again


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
