"""A user-space iSCSI target (Debian's tgt) serving file-backed LUNs inside a network namespace.

tgtd listens on 127.0.0.1:3260 of the namespace it is started in, so the
target is reachable only from there: the test's own namespace for the
embedded driver, or the namespace of the libvirtd that serves the pool.
tgtd's control socket (/var/run/tgtd/socket.N) is shared by every
namespace: each target gets a random control port of its own.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from .netns import Netns

TARGET_IQN = "iqn.2024-01.org.example:vt-store"
INITIATOR_IQN = "iqn.2024-01.org.example:vt-host"
PORTAL = "127.0.0.1"
CONTROL_PORT_MAX = 32767            # tgtd -C refuses more (exit 34, "out of range")


@contextlib.contextmanager
def iscsi_target(netns: Netns, luns: list[Path], iqn: str = TARGET_IQN) -> Iterator[int]:
    """tgtd in ``netns`` serving ``luns`` (existing files) as LUN 1, 2, ... of ``iqn``; its control port."""
    control = secrets.randbelow(CONTROL_PORT_MAX - 1000) + 1000
    daemon = subprocess.Popen(netns.exec_argv(["tgtd", "-f", "--iscsi", f"portal={PORTAL}:3260", "-C", str(control)]),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        admin = ["tgtadm", "-C", str(control), "--lld", "iscsi", "--mode"]
        _wait_for_control(netns, admin, daemon)
        netns.run(admin + ["target", "--op", "new", "--tid", "1", "--targetname", iqn])
        for number, lun in enumerate(luns, start=1):
            netns.run(admin + ["logicalunit", "--op", "new", "--tid", "1", "--lun", str(number),
                               "--backing-store", str(lun)])
        netns.run(admin + ["target", "--op", "bind", "--tid", "1", "--initiator-address", "ALL"])
        yield control
    finally:
        daemon.kill()
        daemon.wait()


def _wait_for_control(netns: Netns, admin: list[str], daemon: subprocess.Popen) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise RuntimeError(f"tgtd exited ({daemon.returncode}) in netns {netns.name}")
        if netns.run(admin + ["sys", "--op", "show"], check=False).returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError(f"tgtd in netns {netns.name} did not answer on its control port")


def lun_file(path: Path, size: int) -> Path:
    """A sparse file of ``size`` bytes to serve as a LUN."""
    with open(path, "wb") as handle:
        handle.truncate(size)
    return path
