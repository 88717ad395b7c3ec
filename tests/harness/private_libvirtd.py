"""A libvirtd of the system instance that a test owns alone, to restart it at will.

It runs in a network namespace and a mount namespace of its own.  In the
mount namespace, directories under ``base`` are bind-mounted over
/etc/libvirt, /run/libvirt, /var/lib/libvirt, /var/cache/libvirt and
/var/log/libvirt: its qemu.conf, sockets, domains and logs are its own, and
the shared libvirtd is not touched.  Clients reach it from the host through
``qemu+unix:///system?socket=BASE/run/libvirt-sock``; the qemu.conf it reads
is ``BASE/etc/qemu.conf``.
"""

from __future__ import annotations

import secrets
import shutil
import sys
import uuid
from pathlib import Path

from .libvirtd import _alive, _pid_of, _run, _terminate, _wait, virsh

BIND_EXEC = Path(__file__).resolve().parent / "bind_exec.py"
MOUNTS = {"etc": "/etc/libvirt", "run": "/run/libvirt", "lib": "/var/lib/libvirt",
          "cache": "/var/cache/libvirt", "log": "/var/log/libvirt"}


class PrivateLibvirtd:
    def __init__(self, base: Path, qemu_conf_text: str):
        self.base = base
        self.netns = f"vtl-{secrets.token_hex(3)}"
        self.pid: int | None = None
        for part in MOUNTS:
            (base / part).mkdir(parents=True, exist_ok=True)
            (base / part).chmod(0o755)
        base.chmod(0o755)
        (base / "etc" / "qemu.conf").write_text(qemu_conf_text)
        _run(["ip", "netns", "add", self.netns])

    @property
    def qemu_conf(self) -> Path:
        return self.base / "etc" / "qemu.conf"

    @property
    def uri(self) -> str:
        return f"qemu+unix:///system?socket={self.base / 'run' / 'libvirt-sock'}"

    @property
    def pidfile(self) -> Path:
        return self.base / "libvirtd.pid"

    def virsh(self, *args: str, check: bool = True) -> str:
        return virsh(*args, uri=self.uri, check=check)

    def start(self, listen_address: str | None = None) -> None:
        """Start it; with ``listen_address`` it also serves qemu+tcp:// there, unauthenticated (tests only),
        under a host UUID of its own, so that two of them are two hosts to libvirt's migration."""
        binds = [f"{self.base / part}={target}" for part, target in MOUNTS.items()]
        listen = []
        if listen_address:
            (self.base / "etc" / "libvirtd.conf").write_text(
                f'listen_tls = 0\nlisten_tcp = 1\nauth_tcp = "none"\nlisten_addr = "{listen_address}"\n'
                f'host_uuid = "{uuid.uuid4()}"\n')
            listen = ["--listen"]
        _run(["ip", "netns", "exec", self.netns, "unshare", "--mount", "--propagation", "private",
              sys.executable, str(BIND_EXEC), *binds, "--",
              "libvirtd", "--daemon", *listen, "--pid-file", str(self.pidfile)])
        self.pid = _wait(lambda: _pid_of(self.pidfile, "libvirtd"), 30, "the private libvirtd's pidfile")
        _wait(self._answers, 60, "the private libvirtd to answer")

    def _answers(self) -> bool:
        if self.pid is None or not _alive(self.pid):
            raise RuntimeError(f"the private libvirtd exited; see {self.base / 'log'}")
        return bool(self.virsh("uri", check=False).strip())

    def stop(self) -> None:
        if self.pid is not None:
            for name in self.virsh("list", "--name", check=False).split():
                self.virsh("destroy", name, check=False)
            _terminate(self.pid)
            self.pid = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        out = _run(["ip", "netns", "pids", self.netns], check=False).stdout
        for pid in (int(p) for p in out.split()):
            _terminate(pid, timeout=10)
        _run(["ip", "netns", "delete", self.netns], check=False)
        shutil.rmtree(self.base, ignore_errors=True)
