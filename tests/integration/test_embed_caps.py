# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The QMP client and the capabilities probe against the installed QEMU."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest
from lxml import etree

from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import caps as capsmod
from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError
from ansible_collections.virtops.qemu.plugins.module_utils.qmp import QMPClient, QMPError

QEMU = shutil.which("qemu-system-x86_64") or "/usr/bin/qemu-system-x86_64"
CAPABILITY_RNG = "/usr/share/libvirt/schemas/capability.rng"

pytestmark = [
    pytest.mark.embed,
]


# -- a real QEMU over QMP ---------------------------------------------------
@pytest.fixture
def paused_qemu(tmp_path):
    socket_path = str(tmp_path / "monitor.sock")
    process = subprocess.Popen(
        [QEMU, "-S", "-accel", "tcg", "-machine", "pc", "-nodefaults", "-nographic",
         "-m", "64", "-qmp", f"unix:{socket_path},server=on,wait=off"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield process, socket_path
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stderr.close()


def test_real_qemu_prelaunch_cont_quit(paused_qemu):
    process, socket_path = paused_qemu
    with QMPClient.connect(socket_path, timeout=20, alive=lambda: process.poll() is None) as qmp:
        assert qmp.version[:2] == (7, 2)
        assert qmp.execute("query-status")["status"] == "prelaunch"

        qmp.execute("cont")
        qmp.wait_event("RESUME", timeout=10)
        assert qmp.execute("query-status") == {"status": "running", "singlestep": False,
                                               "running": True}

        qmp.execute("stop")
        assert qmp.wait_event("STOP", timeout=10)["event"] == "STOP"
        assert qmp.execute("query-status")["status"] == "paused"

        qmp.execute("quit")
        assert process.wait(timeout=15) == 0
        shutdown = qmp.wait_event("SHUTDOWN", timeout=5)
        assert shutdown["data"]["reason"] == "host-qmp-quit"
        with pytest.raises(BackendError, match="query-status"):   # EPIPE or EOF
            qmp.execute("query-status", timeout=5)


def test_real_qemu_error_reply(paused_qemu):
    process, socket_path = paused_qemu
    with QMPClient.connect(socket_path, timeout=20, alive=lambda: process.poll() is None) as qmp:
        with pytest.raises(QMPError) as caught:
            qmp.execute("device_del", {"id": "no-such-device"})
        assert caught.value.error_class == "DeviceNotFound"
        assert "no-such-device" in caught.value.desc
        with pytest.raises(QMPError) as caught:
            qmp.execute("no-such-command")
        assert caught.value.error_class == "CommandNotFound"
        # the session is still usable after errors
        assert qmp.execute("query-status")["status"] == "prelaunch"


def test_real_qemu_receives_file_descriptors(paused_qemu, tmp_path):
    process, socket_path = paused_qemu
    with QMPClient.connect(socket_path, timeout=20, alive=lambda: process.poll() is None) as qmp:
        with open(tmp_path / "passed", "w") as handle:
            qmp.execute("getfd", {"fdname": "passed"}, fds=[handle.fileno()])
            added = qmp.execute("add-fd", {"opaque": "virtops-test"}, fds=[handle.fileno()])
        qmp.execute("closefd", {"fdname": "passed"})
        with pytest.raises(QMPError, match="passed"):
            qmp.execute("closefd", {"fdname": "passed"})
        fdsets = qmp.execute("query-fdsets")
        assert [fdset["fdset-id"] for fdset in fdsets] == [added["fdset-id"]]
        assert fdsets[0]["fds"][0]["opaque"] == "virtops-test"


# -- capabilities probe -----------------------------------------------------
@pytest.fixture
def count_probes(monkeypatch):
    """Counts QEMU processes the probe starts (and still lets them run)."""
    started = []
    real_popen = subprocess.Popen

    def counting_popen(argv, *args, **kwargs):
        started.append(argv)
        return real_popen(argv, *args, **kwargs)

    monkeypatch.setattr(capsmod.subprocess, "Popen", counting_popen)
    return started


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    cache_dir = str(tmp_path_factory.mktemp("cache"))
    started = time.monotonic()
    caps = capsmod.probe(QEMU, cache_dir)
    print(f"\nfirst probe of {QEMU}: {time.monotonic() - started:.3f}s")
    return caps, cache_dir


def test_probe_reports_version_arch_and_machines(probed):
    caps = probed[0]
    assert caps.binary == os.path.realpath(QEMU) or caps.binary == QEMU
    assert caps.version[:2] == (7, 2)
    assert caps.version_string.startswith("7.2.")
    assert caps.arch == "x86_64" and caps.target_arch == "x86_64"
    assert caps.default_machine == "pc-i440fx-7.2"
    assert next(iter(caps.machines)) == "pc-i440fx-7.2"
    assert caps.machine_aliases["pc"] == "pc-i440fx-7.2"
    assert caps.machine_aliases["q35"] == "pc-q35-7.2"
    assert caps.canonical_machine("pc") == "pc-i440fx-7.2"
    assert caps.canonical_machine("q35") == "pc-q35-7.2"
    assert caps.canonical_machine("pc-q35-6.2") == "pc-q35-6.2"
    assert caps.canonical_machine("no-such-machine") is None
    assert "none" not in caps.machines
    assert caps.machines["pc-q35-7.2"] == {"alias": "q35", "default": False,
                                           "cpu_max": 288, "deprecated": False}
    assert caps.machines["pc-i440fx-1.4"]["deprecated"] is True


def test_probe_reports_devices_cpus_commands_and_options(probed):
    caps = probed[0]
    assert {"virtio-net-pci", "virtio-blk-pci", "pcie-root-port", "isa-serial"} <= caps.devices
    assert "pci-device" not in caps.devices           # abstract types are left out
    assert {"memory-backend-ram", "memory-backend-memfd", "rng-random", "iothread"} <= caps.objects
    assert {"qemu64", "max", "host"} <= set(caps.cpu_models)
    assert caps.cpu_definitions["host"]["usable_tcg"] is False
    assert {"query-status", "blockdev-add", "device_add", "qmp_capabilities"} <= caps.commands
    assert caps.has_option("sandbox") and caps.has_option("action") and caps.has_option("compat")
    assert not caps.has_option("no-such-option")
    assert caps.kvm_present is True
    assert caps.accels[0] == "tcg"
    assert ("kvm" in caps.accels) == capsmod.kvm_usable()


def test_cache_file_is_json_keyed_by_the_binary(probed):
    caps, cache_dir = probed
    path = capsmod.cache_path(cache_dir, QEMU)
    assert os.path.dirname(path) == os.path.join(cache_dir, "capabilities")
    with open(path, encoding="utf-8") as cache:
        document = json.load(cache)
    info = os.stat(QEMU)
    assert document["key"]["binary"] == caps.binary
    assert (document["key"]["mtime_ns"], document["key"]["size"], document["key"]["ino"]) == \
        (info.st_mtime_ns, info.st_size, info.st_ino)
    assert capsmod.QemuCaps.from_dict(document["caps"]).machines == caps.machines
    assert [name for name in os.listdir(os.path.dirname(path)) if name.startswith(".")] == []


def test_second_probe_starts_no_qemu(probed, monkeypatch):
    caps, cache_dir = probed

    def refuse(*args, **kwargs):
        raise AssertionError("the cached probe started a process")

    monkeypatch.setattr(capsmod.subprocess, "Popen", refuse)
    started = time.monotonic()
    cached = capsmod.probe(QEMU, cache_dir)
    elapsed = time.monotonic() - started
    print(f"\ncached probe: {elapsed:.4f}s")
    assert cached == caps
    assert elapsed < 0.5


def copy_of_qemu(prefix) -> str:
    """A private copy of the QEMU binary that still finds its modules.

    QEMU locates its module directory relative to its own executable.
    """
    real = os.path.realpath(QEMU)
    binary = prefix / "usr" / "bin" / "qemu-system-x86_64"
    binary.parent.mkdir(parents=True)
    shutil.copy2(real, binary)
    for moddir in ("/usr/lib/x86_64-linux-gnu/qemu", "/usr/lib64/qemu"):
        if os.path.isdir(moddir):
            link = prefix / moddir.lstrip("/")
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(moddir)
    return binary


def test_changed_binary_is_probed_again(tmp_path, count_probes):
    binary = copy_of_qemu(tmp_path / "prefix")
    cache_dir = str(tmp_path / "cache")

    first = capsmod.probe(str(binary), cache_dir)
    assert first.binary == str(binary)
    assert capsmod.probe(str(binary), cache_dir) == first
    assert len(count_probes) == 1

    info = os.stat(binary)
    os.utime(binary, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000_000))
    reprobed = capsmod.probe(str(binary), cache_dir)
    assert len(count_probes) == 2
    assert reprobed.machines == first.machines
    with open(capsmod.cache_path(cache_dir, str(binary)), encoding="utf-8") as cache:
        assert json.load(cache)["key"]["mtime_ns"] == info.st_mtime_ns + 1_000_000_000

    capsmod.probe(str(binary), cache_dir)
    assert len(count_probes) == 2


def test_corrupt_cache_is_probed_again(tmp_path, count_probes):
    cache_dir = str(tmp_path)
    capsmod.probe(QEMU, cache_dir)
    with open(capsmod.cache_path(cache_dir, QEMU), "w", encoding="utf-8") as cache:
        cache.write('{"key": ')
    assert capsmod.probe(QEMU, cache_dir).default_machine == "pc-i440fx-7.2"
    assert len(count_probes) == 2


def test_probe_leaves_no_process(tmp_path, count_probes):
    capsmod.probe(QEMU, str(tmp_path))
    assert len(count_probes) == 1
    socket_dir = os.path.dirname(count_probes[0][-1].split(",")[0].removeprefix("unix:"))
    assert not os.path.exists(socket_dir)
    assert _processes_using(socket_dir) == []


def _processes_using(marker: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if marker.encode() in cmdline.read():
                    found.append(pid)
        except OSError:
            continue
    return found


def test_probe_of_a_failing_binary_reports_its_output(tmp_path):
    fake = tmp_path / "qemu-system-x86_64"
    fake.write_text("#!/bin/sh\necho 'qemu: unsupported accelerator' >&2\nexit 1\n")
    fake.chmod(0o755)
    started = time.monotonic()
    with pytest.raises(BackendError, match="unsupported accelerator"):
        capsmod.probe(str(fake), str(tmp_path / "cache"), timeout=10)
    assert time.monotonic() - started < 5
    assert not os.path.exists(capsmod.cache_path(str(tmp_path / "cache"), str(fake)))


def test_find_emulators(tmp_path):
    for name in ("qemu-system-aarch64", "qemu-system-x86_64-microvm", "qemu-kvm", "qemu-img"):
        (tmp_path / name).write_text("")
        (tmp_path / name).chmod(0o755)
    (tmp_path / "qemu-system-riscv64").write_text("")      # not executable
    found = capsmod.find_emulators(str(tmp_path))
    assert str(tmp_path / "qemu-system-aarch64") in found
    assert str(tmp_path / "qemu-kvm") in found
    assert not any(path.endswith(("-microvm", "qemu-img", "riscv64")) for path in found)
    assert os.path.realpath(QEMU) in map(os.path.realpath, capsmod.find_emulators(""))


def test_a_directory_on_the_path_twice_is_listed_once_under_its_first_name(tmp_path):
    first, alias, later = tmp_path / "first", tmp_path / "alias", tmp_path / "later"
    first.mkdir()
    later.mkdir()
    alias.symlink_to(first)
    for directory in (first, later):
        (directory / "qemu-system-m68k").write_text("")
        (directory / "qemu-system-m68k").chmod(0o755)
    (later / "qemu-system-sparc").write_text("")
    (later / "qemu-system-sparc").chmod(0o755)

    found = capsmod.find_emulators(os.pathsep.join([str(alias), str(first), str(later)]))

    assert str(alias / "qemu-system-m68k") in found
    assert str(first / "qemu-system-m68k") not in found and str(later / "qemu-system-m68k") not in found
    assert str(later / "qemu-system-sparc") in found


# -- host <capabilities> ----------------------------------------------------
@pytest.fixture(scope="module")
def host_caps(tmp_path_factory):
    cache_dir = str(tmp_path_factory.mktemp("hostcache"))
    caps_list = capsmod.probe_all(cache_dir)
    xml = capsmod.host_capabilities_xml(caps_list, capsmod.kvm_usable())
    return caps_list, etree.fromstring(xml)


def test_capabilities_xml_validates_against_libvirt_schema(host_caps):
    document = host_caps[1]
    schema = etree.RelaxNG(etree.parse(CAPABILITY_RNG))
    assert schema.validate(document), schema.error_log


def test_capabilities_xml_kvm_domain_follows_kvm_usable(probed):
    caps = probed[0]
    without = etree.fromstring(capsmod.host_capabilities_xml([caps], kvm_usable=False))
    with_kvm = etree.fromstring(capsmod.host_capabilities_xml([caps], kvm_usable=True))
    assert without.xpath("guest/arch/domain/@type") == ["qemu"]
    assert with_kvm.xpath("guest/arch/domain/@type") == ["qemu", "kvm"]
    assert with_kvm.xpath("guest/arch/emulator/text()") == [caps.binary]
    assert with_kvm.xpath("guest/arch/machine[text()='q35']/@canonical") == ["pc-q35-7.2"]


def _guests(document) -> dict[str, etree._Element]:
    return {guest.find("arch").get("name"): guest for guest in document.findall("guest")}


def _machine_pairs(guest) -> list[tuple]:
    return [(machine.text, machine.get("canonical"), machine.get("maxCpus"),
             machine.get("deprecated")) for machine in guest.iter("machine")]


@pytest.fixture(scope="module")
def libvirt_caps(libvirtd):
    return etree.fromstring(libvirtd.virsh("capabilities").encode())


@pytest.mark.libvirt
def test_guest_capabilities_match_libvirt(host_caps, libvirt_caps):
    ours = host_caps[1]
    ours_guests, libvirt_guests = _guests(ours), _guests(libvirt_caps)
    assert "x86_64" in ours_guests
    for arch, libvirt_guest in libvirt_guests.items():
        ours_guest = ours_guests[arch]
        assert ours_guest.findtext("arch/emulator") == libvirt_guest.findtext("arch/emulator")
        assert ours_guest.findtext("arch/wordsize") == libvirt_guest.findtext("arch/wordsize")
        assert sorted(_machine_pairs(ours_guest), key=str) == \
            sorted(_machine_pairs(libvirt_guest), key=str)
        assert ours_guest.xpath("arch/domain/@type") == libvirt_guest.xpath("arch/domain/@type")
        assert etree.tostring(ours_guest.find("features"), method="c14n") == \
            etree.tostring(libvirt_guest.find("features"), method="c14n")
    assert set(ours_guests) == set(libvirt_guests)


@pytest.mark.libvirt
def test_guest_capabilities_are_in_libvirts_order(host_caps, libvirt_caps):
    ours = host_caps[1]
    ours_x86 = _guests(ours)["x86_64"]
    libvirt_x86 = _guests(libvirt_caps)["x86_64"]
    assert _machine_pairs(ours_x86) == _machine_pairs(libvirt_x86)
