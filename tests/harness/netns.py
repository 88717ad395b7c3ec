"""Throwaway network namespaces for tests that make bridges, taps, dnsmasq or firewall rules.

Everything such a test creates lives in a namespace of its own, never in
the host's: modules and driver calls run under ``ip netns exec``.  Closing
the namespace ends every process left in it (dnsmasq, QEMU) and deletes it,
which takes its links, addresses, routes and nftables tables with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

NETNS_DIR = Path("/run/netns")


class Netns:
    def __init__(self, name: str):
        self.name = name

    def exec_argv(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, argv: list[str], check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        proc = subprocess.run(self.exec_argv(argv), capture_output=True, text=True, check=False, **kwargs)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{argv!r} in netns {self.name} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def python(self, code: str, *args: str) -> str:
        """Run Python ``code`` (with this interpreter and sys.path) in the namespace; its stdout."""
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        return self.run([sys.executable, "-c", code, *args], env=env).stdout

    # -- observation ------------------------------------------------------
    def links(self) -> dict[str, dict]:
        """``ip -j -d link`` by interface name."""
        return {link["ifname"]: link for link in json.loads(self.run(["ip", "-j", "-d", "link"]).stdout)}

    def addresses(self, dev: str) -> list[str]:
        """The addresses of ``dev`` as "address/prefix"."""
        info = json.loads(self.run(["ip", "-j", "addr", "show", "dev", dev]).stdout)
        return [f"{a['local']}/{a['prefixlen']}" for entry in info for a in entry.get("addr_info", [])]

    def nft_tables(self) -> list[str]:
        """"family name" of every nftables table in the namespace."""
        out = self.run(["nft", "list", "tables"]).stdout
        return [line.split(None, 1)[1] for line in out.splitlines() if line.startswith("table ")]

    def ruleset(self) -> str:
        return self.run(["nft", "list", "ruleset"]).stdout

    def pids(self) -> list[int]:
        return [int(p) for p in self.run_host(["ip", "netns", "pids", self.name]).split()]

    @staticmethod
    def run_host(argv: list[str]) -> str:
        return subprocess.run(argv, capture_output=True, text=True, check=False).stdout

    def same_as_ours(self) -> bool:
        return os.stat(NETNS_DIR / self.name).st_ino == os.stat("/proc/self/ns/net").st_ino

    # -- life -----------------------------------------------------------------
    def close(self) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        subprocess.run(["ip", "netns", "delete", self.name], check=False, capture_output=True)


@contextlib.contextmanager
def private_netns(prefix: str = "vtn") -> Iterator[Netns]:
    """A new namespace with its loopback up; everything in it is gone afterwards."""
    netns = Netns(f"{prefix}-{secrets.token_hex(4)}")
    subprocess.run(["ip", "netns", "add", netns.name], check=True, capture_output=True)
    try:
        netns.run(["ip", "link", "set", "lo", "up"])
        yield netns
    finally:
        netns.close()


def netns_of_pid(pid: int) -> int:
    """The inode of a process's network namespace (compare with ``os.stat('/proc/self/ns/net')``)."""
    return os.stat(f"/proc/{pid}/ns/net").st_ino
