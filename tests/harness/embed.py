"""Private embedded-driver roots for tests, and the QEMUs started under them.

A QEMU belongs to a test when its command line mentions the test's root
(monitor socket, pidfile, log): killing those never touches anything else.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


def qemu_cmdlines(root: str | os.PathLike) -> dict[int, bytes]:
    """Live QEMU processes whose command line mentions ``root``, with that command line."""
    needle = os.fsencode(root)
    found = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        exited = stat[stat.rfind(")") + 2] in "ZX"
        if not exited and needle in cmdline and b"qemu-system" in cmdline:
            found[int(entry)] = cmdline
    return found


def qemu_pids(root: str | os.PathLike) -> list[int]:
    return sorted(qemu_cmdlines(root))


def kill_qemus(root: str | os.PathLike) -> None:
    """SIGKILL, which also ends a stopped QEMU."""
    for pid in qemu_pids(root):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def private_root(prefix: str = "vo-") -> Iterator[Path]:
    """A fresh directory under /tmp (short, for socket paths); its QEMUs and files go afterwards."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield path
    finally:
        kill_qemus(path)
        remove_cgroups(path)
        shutil.rmtree(path, ignore_errors=True)


def remove_cgroups(root: str | os.PathLike) -> None:
    """The device cgroups of a root's domains whose QEMUs were killed without the driver."""
    tag = hashlib.sha256(os.path.normpath(str(root)).encode()).hexdigest()[:12]
    parent = Path("/sys/fs/cgroup/devices/virtops") / f"embed-{tag}"
    if not parent.is_dir():
        return
    for child in parent.iterdir():
        if child.is_dir():
            for _attempt in range(100):
                with contextlib.suppress(OSError):
                    child.rmdir()
                if not child.exists():
                    break
                time.sleep(0.05)
    with contextlib.suppress(OSError):
        parent.rmdir()
