"""Two hypervisor hosts on one machine, for migration tests.

Each host is a network namespace (the two joined by a veth pair) and a
mount namespace of its own, in which a private directory is bind-mounted
over HOST_DIR: a disk at ``HOST_DIR/images/disk.qcow2`` is a different file
on each host, as on two machines without shared storage.  A holder process
keeps the mount namespace alive; Ansible reaches a host through an
interpreter that enters both namespaces (``nsenter``), and QEMUs started
there stay there.  Closing a host kills every process in its network
namespace and deletes it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .embed import remove_cgroups
from .netns import Netns

BIND_EXEC = Path(__file__).resolve().parent / "bind_exec.py"
HOST_DIR = "/run/virtops-host"


@dataclass
class Host:
    name: str               # inventory name
    netns: Netns
    address: str
    base: Path              # HOST_DIR of this host, seen from the test
    holder: subprocess.Popen

    @property
    def root(self) -> str:
        """This host's embed root, as its modules see it."""
        return f"{HOST_DIR}/embed-{self.name}"

    @property
    def uri(self) -> str:
        return f"qemu:///embed?root={self.root}"

    def local(self, path: str) -> Path:
        """Where a path of this host (under HOST_DIR) is seen from the test."""
        return self.base / os.path.relpath(path, HOST_DIR)

    def argv(self, argv: list[str]) -> list[str]:
        return ["nsenter", "-t", str(self.holder.pid), "-m", "-n", "--", *argv]

    def run(self, argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(self.argv(argv), capture_output=True, text=True, check=False)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{argv!r} on {self.name} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def python(self, code: str) -> str:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        return subprocess.run(self.argv([sys.executable, "-c", code]), capture_output=True, text=True,
                              check=True, env=env).stdout

    def inventory_vars(self) -> dict:
        return {"ansible_connection": "local", "ansible_python_interpreter": str(self.interpreter())}

    def interpreter(self) -> Path:
        """An executable that runs this venv's Python inside the host (Ansible takes a path, not argv)."""
        path = self.base / "python"
        if not path.exists():
            argv = self.argv([sys.executable])
            path.write_text(f"#!{sys.executable}\nimport os, sys\nos.execvp({argv[0]!r}, {argv!r} + sys.argv[1:])\n")
            path.chmod(0o755)
        return path

    def close(self) -> None:
        remove_cgroups(self.root)
        self.netns.close()
        with contextlib.suppress(ProcessLookupError):
            self.holder.send_signal(signal.SIGKILL)
        self.holder.wait(timeout=10)
        shutil.rmtree(self.base, ignore_errors=True)


def _host(name: str, netns: Netns, address: str) -> Host:
    base = Path(tempfile.mkdtemp(prefix=f"vo-{name}-", dir="/var/tmp"))
    (base / "images").mkdir()
    base.chmod(0o755)
    os.makedirs(HOST_DIR, exist_ok=True)
    holder = subprocess.Popen(netns.exec_argv(["unshare", "--mount", "--propagation", "private", sys.executable,
                                               str(BIND_EXEC), f"{base}={HOST_DIR}", "--", "sleep", "infinity"]))
    host = Host(name, netns, address, base, holder)
    deadline = time.monotonic() + 10
    while host.run(["findmnt", "-n", HOST_DIR], check=False).returncode != 0:
        if time.monotonic() > deadline or holder.poll() is not None:
            host.close()
            raise RuntimeError(f"host {name}: {HOST_DIR} was not mounted")
        time.sleep(0.05)
    return host


@contextlib.contextmanager
def two_hosts() -> Iterator[tuple[Host, Host]]:
    """Hosts ``src`` (10.x.y.1) and ``dst`` (10.x.y.2) joined by a veth pair; everything goes afterwards."""
    tag = secrets.token_hex(3)
    subnet = f"10.{secrets.randbelow(200) + 20}.{secrets.randbelow(250) + 1}"
    made: list[Host] = []
    try:
        for index, name in enumerate(("src", "dst"), start=1):
            netns = Netns(f"vtm{index}-{tag}")
            subprocess.run(["ip", "netns", "add", netns.name], check=True, capture_output=True)
            netns.run(["ip", "link", "set", "lo", "up"])
            made.append(_host(name, netns, f"{subnet}.{index}"))
        src, dst = made
        subprocess.run(["ip", "link", "add", f"vtm-{tag}", "netns", src.netns.name, "type", "veth",
                        "peer", "name", f"vtm-{tag}", "netns", dst.netns.name], check=True, capture_output=True)
        for host in made:
            host.netns.run(["ip", "addr", "add", f"{host.address}/24", "dev", f"vtm-{tag}"])
            host.netns.run(["ip", "link", "set", f"vtm-{tag}", "up"])
        yield src, dst
    finally:
        for host in made:
            host.close()


def inventory(*hosts: Host) -> str:
    """An inventory file's text (JSON is YAML) with the hosts."""
    return json.dumps({"all": {"hosts": {h.name: h.inventory_vars() for h in hosts}}})
