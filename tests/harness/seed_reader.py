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
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import guest as base_guest
from .guest import GUEST_CACHE, Guest

READER = "seed-reader"
DONE = "SEED-DONE"
MODULES = base_guest.MODULES + ("isofs", "ata_piix", "sr_mod")

BODY = """mkdir -p /mnt
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


def reader_script(modules: list[str], devices: tuple[str, ...]) -> str:
    return base_guest.busybox_init(" ".join(modules), f"/lib/{READER}", "SEED-ERROR",
                                   BODY.format(devices=" ".join(devices), done=DONE))


def build_seed_reader(guest: Guest, directory: Path, devices: tuple[str, ...]) -> Guest:
    """The guest with the reader appended, reading ``devices`` (``vda``, ``sr0``) in that order."""
    modules = _modules()
    script = reader_script([name for name, _data in modules], devices)
    files = tuple((f"lib/{READER}/{name}.ko", data) for name, data in modules)
    return base_guest.with_init(guest, directory, READER, script, DONE, files)


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
