"""``ansible-inventory --list`` with the virtops.qemu.domains plugin, read back as hosts, groups and variables."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .ansible import ansible_env

BIN = Path(sys.executable).parent


def plain(value):
    """ansible-inventory's JSON with the ``__ansible_unsafe`` wrappers of untrusted values removed."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


class Inventory:
    """``ansible-inventory --list`` on one config file: hosts, groups and host variables, stderr."""

    def __init__(self, proc: subprocess.CompletedProcess):
        self.rc, self.stderr = proc.returncode, proc.stderr
        self.data = plain(json.loads(proc.stdout)) if proc.returncode == 0 else {}
        self.hostvars = self.data.get("_meta", {}).get("hostvars", {})

    def members(self, group: str) -> list[str]:
        return sorted(self.data.get(group, {}).get("hosts", []))

    def warnings(self) -> str:
        return " ".join(self.stderr.split())       # Ansible wraps long warnings


def ansible_inventory(path: Path, config: dict, netns: str | None = None, *args: str,
                      env: dict | None = None) -> Inventory:
    path.write_text(json.dumps({"plugin": "virtops.qemu.domains", **config}))
    argv = [str(BIN / "ansible-inventory"), "-i", str(path), "--list", *args]
    prefix = ["ip", "netns", "exec", netns] if netns else []
    proc = subprocess.run(prefix + argv, env=ansible_env(str(path.parent / "unused.json"), env), cwd=path.parent,
                          capture_output=True, text=True, check=False, timeout=300)
    return Inventory(proc)
