"""Debian's shipped qemu.conf (package libvirt-daemon-system), cached in tests/.cache/debian-libvirt.

The package is fetched with ``apt-get download`` and unpacked with ``dpkg-deb -x``, never installed:
installing it would start a libvirtd in the host's network namespace.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile

from . import CACHE

DEBIAN_CACHE = CACHE / "debian-libvirt"
DEBIAN_QEMU_CONF = DEBIAN_CACHE / "etc" / "libvirt" / "qemu.conf"


class FetchError(RuntimeError):
    pass


def debian_qemu_conf_text() -> str:
    if not DEBIAN_QEMU_CONF.exists():
        _fetch_debian_package()
    with open(DEBIAN_QEMU_CONF, encoding="utf-8", newline="") as handle:
        return handle.read()


def _fetch_debian_package() -> None:
    with tempfile.TemporaryDirectory() as download:
        try:
            result = subprocess.run(["apt-get", "download", "libvirt-daemon-system"],
                                    cwd=download, capture_output=True, text=True, timeout=300, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise FetchError(f"cannot run apt-get download libvirt-daemon-system: {error}") from error
        packages = glob.glob(os.path.join(download, "*.deb"))
        if result.returncode != 0 or not packages:
            raise FetchError("apt-get download libvirt-daemon-system failed: "
                             + (result.stderr.strip().splitlines() or ["no .deb"])[-1])
        DEBIAN_CACHE.parent.mkdir(parents=True, exist_ok=True)
        staging = tempfile.mkdtemp(prefix="debian-libvirt.", dir=DEBIAN_CACHE.parent)
        subprocess.run(["dpkg-deb", "-x", packages[0], staging], check=True)
    if DEBIAN_CACHE.exists():
        shutil.rmtree(staging)
    else:
        shutil.move(staging, DEBIAN_CACHE)
