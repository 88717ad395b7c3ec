"""The test guest, booted to keep a generation marker on its disk and count on its serial console.

For snapshot tests.  A second initramfs archive with a script is appended
to the guest's, and ``rdinit=/disk-counter`` runs it instead of /init: it
loads the virtio drivers, reads the marker at the start of /dev/vda
(``gen-<n>``, empty on a new disk), prints ``SNAP-READ <marker>``, writes
``gen-<n+1>`` back (synced) and prints ``SNAP-WROTE gen-<n+1>``, then prints
``SNAP-COUNT <i>`` twice a second, i = 1, 2, ...  A guest brought back with
its memory carries on counting from the saved value.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

from . import guest as base_guest
from .guest import CMDLINE, Guest

SCRIPT_NAME = "disk-counter"
WROTE = "SNAP-WROTE"

SCRIPT = """#!/bin/sh
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
for m in {modules}; do
    insmod /lib/modules/$m.ko || echo "SNAP-ERROR insmod $m"
done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.2; i=$((i+1)); done
old=$(dd if=/dev/vda bs=512 count=1 2>/dev/null | tr -d '\\000' | head -n 1)
echo "SNAP-READ $old"
n=${{old#gen-}}
case "$n" in ''|*[!0-9]*) n=0;; esac
n=$((n+1))
echo "gen-$n" | dd of=/dev/vda bs=512 count=1 conv=sync,fsync 2>/dev/null
sync
echo "{wrote} gen-$n"
c=0
while true; do c=$((c+1)); echo "SNAP-COUNT $c"; sleep 0.5; done
"""


def build_disk_counter(guest: Guest, directory: Path) -> Guest:
    """The guest with the script appended; its marker is WROTE (the disk was read and written)."""
    archive = base_guest.Cpio()
    script = SCRIPT.format(modules=" ".join(base_guest.MODULES), wrote=WROTE)
    archive.file(SCRIPT_NAME, script.encode(), 0o755)
    first = guest.initrd.read_bytes()
    initrd = directory / f"{SCRIPT_NAME}.img"
    # Each archive of an initramfs starts on a 4-byte boundary.
    initrd.write_bytes(first + bytes(-len(first) % 4) + gzip.compress(archive.finish(), mtime=0))
    initrd.chmod(0o644)
    return Guest(guest.kernel, initrd, f"{CMDLINE} rdinit=/{SCRIPT_NAME}", WROTE)


def reads(console: str) -> list[str]:
    """Every marker the guest found on its disk at boot, in order."""
    return re.findall(r"SNAP-READ ?(\S*)", console)


def counts(console: str) -> list[int]:
    """Every count the guest printed, in order."""
    return [int(n) for n in re.findall(r"SNAP-COUNT (\d+)", console)]
