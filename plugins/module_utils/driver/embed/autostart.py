# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Start the autostart networks, storage pools and domains of an embed root, as libvirtd does when it starts.

There is no daemon to do it at boot, so run this once per root from a boot
unit::

    PYTHONPATH=/path/to/collections \\
        python3 -m ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.autostart --root /var/lib/virtops

``systemd_unit`` renders such a unit.  Private to the collection.
"""

from __future__ import annotations

import argparse
import os
import sys

from ansible_collections.virtops.qemu.plugins.module_utils.driver.base import Resources
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.backend import EmbedDriver
from ansible_collections.virtops.qemu.plugins.module_utils.errors import VirtError
from ansible_collections.virtops.qemu.plugins.module_utils.uri import parse_uri

MODULE = "ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.autostart"


def autostart_all(root: str) -> dict[str, str | None]:
    """Start every inactive autostart object of ``root``: "kind name" -> None or the error.

    Networks come first, then storage pools, so that the domains attached to them can start.
    """
    results: dict[str, str | None] = {}
    with EmbedDriver(parse_uri(f"qemu:///embed?root={root}")) as driver:
        for objects in (driver.networks, driver.pools, driver.domains):
            results.update(_autostart(objects))
    return results


def _autostart(objects: Resources) -> dict[str, str | None]:
    results: dict[str, str | None] = {}
    for name in objects.names():
        try:
            if objects.autostart(name) and not objects.active(name):
                objects.start(name)
                results[f"{objects.kind} {name}"] = None
        except VirtError as exc:
            results[f"{objects.kind} {name}"] = str(exc)
    return results


def systemd_unit(root: str, collections_path: str, python: str = "/usr/bin/python3") -> str:
    """A oneshot unit that starts the autostart networks and domains of ``root`` at boot."""
    # KillMode=process: QEMU stays in the unit's cgroup; the default would kill
    # every guest when the oneshot finishes or the unit is stopped.
    return f"""[Unit]
Description=Autostart virtops.qemu embedded networks and domains in {root}
Wants=network-online.target
After=network-online.target local-fs.target

[Service]
Type=oneshot
RemainAfterExit=yes
KillMode=process
Environment=PYTHONPATH={collections_path}
ExecStart={python} -m {MODULE} --root {root}

[Install]
WantedBy=multi-user.target
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Start the autostart networks and domains of a virtops.qemu embed root.")
    parser.add_argument("--root", required=True, help="the root of qemu:///embed?root=DIR")
    parser.add_argument("--systemd-unit", action="store_true",
                        help="print a systemd unit that runs this at boot instead")
    args = parser.parse_args(argv)
    if args.systemd_unit:
        collections = os.path.abspath(os.path.join(os.path.dirname(__file__), *[".."] * 7))
        sys.stdout.write(systemd_unit(args.root, collections, sys.executable))
        return 0
    try:
        results = autostart_all(args.root)
    except VirtError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    for name, error in sorted(results.items()):
        sys.stdout.write(f"{name}: {'started' if error is None else 'failed: ' + error}\n")
    return 1 if any(results.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
