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

import re
from pathlib import Path

from . import guest as base_guest
from .guest import Guest

SCRIPT_NAME = "disk-counter"
WROTE = "SNAP-WROTE"

BODY = """i=0
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


def counter_script() -> str:
    return base_guest.busybox_init(" ".join(base_guest.MODULES), "/lib/modules", "SNAP-ERROR",
                                   BODY.format(wrote=WROTE))


def build_disk_counter(guest: Guest, directory: Path) -> Guest:
    """The guest with the script appended; its marker is WROTE (the disk was read and written)."""
    return base_guest.with_init(guest, directory, SCRIPT_NAME, counter_script(), WROTE)


def reads(console: str) -> list[str]:
    """Every marker the guest found on its disk at boot, in order."""
    return re.findall(r"SNAP-READ ?(\S*)", console)


def counts(console: str) -> list[int]:
    """Every count the guest printed, in order."""
    return [int(n) for n in re.findall(r"SNAP-COUNT (\d+)", console)]
