"""The test guest, booted to read ISO 9660 images with the Linux kernel's own isofs driver.

Tests use it to prove that a seed image mounts, in the kernel cloud images
run (Debian's cloud kernel) rather than the host's, which may have no
iso9660 driver at all.  A second initramfs archive is appended to the
guest's: the kernel unpacks both, and ``rdinit=/seed-reader`` runs its
script instead of the guest's /init.  The script loads the virtio, IDE
(ata_piix) and CD-ROM (sr_mod) drivers and isofs, mounts each device twice,
with Rock Ridge (``ro``) and with Joliet (``ro,norock``), prints one line per
file::

    SEED-FILE <device> <mount options> <octal mode> <name> <base64 content>

then ``SEED-DONE``, and powers the guest off.  Failures print ``SEED-ERROR``.
"""

from __future__ import annotations

import base64
import fcntl
import gzip
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import guest as base_guest
from .guest import CMDLINE, GUEST_CACHE, Guest

READER = "seed-reader"
DONE = "SEED-DONE"
MODULES = base_guest.MODULES + ("isofs", "ata_piix", "sr_mod")

SCRIPT = """#!/bin/sh
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
for m in {modules}; do
    insmod /lib/{reader}/$m.ko || echo "SEED-ERROR insmod $m"
done
mkdir -p /mnt
for dev in {devices}; do
    i=0
    while [ ! -b /dev/$dev ] && [ $i -lt 100 ]; do sleep 0.2; i=$((i+1)); done
    for options in ro ro,norock; do
        if ! mount -t iso9660 -o $options /dev/$dev /mnt; then
            echo "SEED-ERROR mount $dev $options"
            continue
        fi
        for f in /mnt/* /mnt/.*; do
            [ -f "$f" ] && echo "SEED-FILE $dev $options $(stat -c %a "$f") ${{f##*/}} $(base64 -w 0 "$f")"
        done
        umount /mnt || echo "SEED-ERROR umount $dev $options"
    done
done
echo {done}
poweroff -f
"""


@dataclass(frozen=True)
class SeenFile:
    """One file as the guest's kernel showed it."""

    mode: str
    content: bytes


def build_seed_reader(guest: Guest, directory: Path, devices: tuple[str, ...]) -> Guest:
    """The guest with the reader appended, reading ``devices`` (``vda``, ``sr0``) in that order."""
    archive = base_guest.Cpio()
    modules = _modules()
    for name, data in modules:
        archive.file(f"lib/{READER}/{name}.ko", data, 0o644)
    script = SCRIPT.format(modules=" ".join(name for name, _data in modules), reader=READER,
                           devices=" ".join(devices), done=DONE)
    archive.file(READER, script.encode(), 0o755)
    first = guest.initrd.read_bytes()
    initrd = directory / f"{READER}.img"
    # Each archive of an initramfs starts on a 4-byte boundary.
    initrd.write_bytes(first + bytes(-len(first) % 4) + gzip.compress(archive.finish(), mtime=0))
    initrd.chmod(0o644)
    return Guest(guest.kernel, initrd, f"{CMDLINE} rdinit=/{READER}", DONE)


def parse_files(console: str) -> dict[tuple[str, str], dict[str, SeenFile]]:
    """What the reader printed: per (device, mount options), each file's mode and content."""
    seen: dict[tuple[str, str], dict[str, SeenFile]] = {}
    for line in console.splitlines():
        # The firmware's terminal escapes may precede the first line on the same line.
        start = line.find("SEED-FILE ")
        fields = line[start:].rstrip("\r").split(" ", 5)
        if start < 0 or len(fields) < 5:
            continue
        device, options, mode, name = fields[1:5]
        content = base64.b64decode(fields[5] if len(fields) > 5 else "")
        seen.setdefault((device, options), {})[name] = SeenFile(mode, content)
    return seen


def _modules() -> list[tuple[str, bytes]]:
    """The reader's kernel modules in load order, from the kernel package the guest was built from."""
    with open(GUEST_CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        deb = _kernel_deb()
        with tempfile.TemporaryDirectory(dir=GUEST_CACHE) as tmp:
            base_guest._run(["dpkg-deb", "-x", str(deb), tmp])
            return base_guest._collect_modules(Path(tmp), MODULES)


def _kernel_deb() -> Path:
    package, version = base_guest._inputs()["kernel"]
    debs = GUEST_CACHE / "debs"
    cached = sorted(debs.glob(f"{package}_*{version.split(':', 1)[-1]}_*.deb"))
    return cached[-1] if cached else base_guest._download(package, version, debs)
