"""A NoCloud seed written by the collection, read back by the tools and the kernel cloud images use.

The host's tools (util-linux ``blkid``, genisoimage's ``isoinfo``) read the
image file; the Linux kernel's isofs driver mounts it in the TCG test guest,
attached once as a virtio disk and once as an IDE CD-ROM, with Rock Ridge and
with Joliet names.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from ansible_collections.virtops.qemu.plugins.module_utils.seed.nocloud import build_seed, write_seed
from harness.qemu import BareQemu
from harness.seed_reader import build_seed_reader, parse_files

USER_DATA = {
    "users": [{"name": "ansible", "sudo": "ALL=(ALL) NOPASSWD:ALL",
               "ssh_authorized_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB7 ansible@control"]}],
    "write_files": [{"path": "/etc/motd", "content": "caf\u00e9 \u2013 seeded\n" * 400}],
}
NETWORK_CONFIG = {"version": 2,
                  "ethernets": {"nic0": {"match": {"macaddress": "52:54:00:5e:00:53"}, "dhcp4": True}}}
NAMES = ["meta-data", "network-config", "user-data"]


@pytest.fixture
def seed_path(workdir):
    """A seed written with write_seed, as the core will write it on a managed host."""
    seed = build_seed("vm-seeded", USER_DATA, {"public-keys": ["k1"]}, NETWORK_CONFIG)
    path = workdir / "seed.iso"
    assert write_seed(str(path), seed.image()) is True
    assert os.listdir(workdir) == ["seed.iso"]
    return path, seed


def _run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def _isoinfo_names(path, extension: str) -> list[str]:
    listing = _run("isoinfo", extension, "-l", "-i", str(path))
    return sorted(line.split()[-1] for line in listing.splitlines()
                  if line.startswith("-"))


def test_blkid_finds_the_cidata_label(seed_path):
    path, _seed = seed_path
    probe = dict(line.split("=", 1) for line in _run("blkid", "-p", "-o", "export", str(path)).splitlines())
    assert probe["TYPE"] == "iso9660"
    assert probe["LABEL"] == "cidata"


def test_isoinfo_sees_the_volume_and_both_extensions(seed_path):
    path, _seed = seed_path
    summary = _run("isoinfo", "-d", "-i", str(path))
    assert re.search(r"^Volume id: cidata$", summary, re.M)
    assert "Joliet with UCS level 3 found" in summary
    assert "Rock Ridge signatures version 1 found" in summary
    assert f"Volume size is: {path.stat().st_size // 2048}" in summary


def test_isoinfo_lists_and_extracts_the_exact_names(seed_path):
    path, seed = seed_path
    assert _isoinfo_names(path, "-R") == NAMES
    assert _isoinfo_names(path, "-J") == [f"{name};1" for name in NAMES]
    for name in NAMES:
        rock = subprocess.run(["isoinfo", "-R", "-x", f"/{name}", "-i", str(path)],
                              check=True, capture_output=True).stdout
        joliet = subprocess.run(["isoinfo", "-J", "-x", f"/{name};1", "-i", str(path)],
                                check=True, capture_output=True).stdout
        assert rock == joliet == seed.files[name]


@pytest.mark.guest
@pytest.mark.slow
def test_the_guest_kernel_mounts_the_seed(guest_build, workdir, seed_path):
    path, seed = seed_path
    devices = [
        "-blockdev", f"driver=file,filename={path},node-name=seed-disk,read-only=on",
        "-device", "virtio-blk-pci,drive=seed-disk",
        "-blockdev", f"driver=file,filename={path},node-name=seed-cd,read-only=on",
        "-device", "ide-cd,drive=seed-cd,bus=ide.1",
    ]
    reader = build_seed_reader(guest_build, workdir, ("vda", "sr0"))
    with BareQemu(reader, workdir, devices) as vm:
        status = vm.wait_exit(timeout=300)
    console = vm.serial_log.read_text(errors="replace")
    assert status == 0 and reader.marker in console, console[-3000:]
    assert "SEED-ERROR" not in console, console[-3000:]
    seen = parse_files(console)
    assert sorted(seen) == [("sr0", "ro"), ("sr0", "ro,norock"), ("vda", "ro"), ("vda", "ro,norock")]
    for (_device, options), files in seen.items():
        assert {name: file.content for name, file in files.items()} == seed.files
        if options == "ro":  # Rock Ridge also carries the mode
            assert {file.mode for file in files.values()} == {"444"}
