"""ansible-doc renders every module of the installed collection.

All modules in one ansible-doc run (and one more for --json): an Ansible
start-up costs seconds, a module's page does not.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from harness import REPO
from harness.ansible import ansible_env

MODULES = sorted(f"virtops.qemu.{p.stem}" for p in (Path(REPO) / "plugins" / "modules").glob("*.py"))
HEADER = re.compile(r"^> MODULE (\S+) .*$", re.M)


def ansible_doc(tmp_path: Path, *args: str) -> str:
    env = ansible_env(str(tmp_path / "unused.json"))
    return subprocess.run([str(Path(sys.executable).parent / "ansible-doc"), *args], env=env, capture_output=True,
                          text=True, check=True).stdout


def test_ansible_doc_renders_every_module(tmp_path):
    text = ansible_doc(tmp_path, *MODULES)
    pages = dict(zip(HEADER.findall(text), HEADER.split(text)[2::2], strict=True))
    assert sorted(pages) == MODULES
    for module, page in pages.items():
        assert "EXAMPLES:" in page and "RETURN VALUES:" in page, module
    data = json.loads(ansible_doc(tmp_path, "--json", *MODULES))
    assert sorted(data) == MODULES
    for module in MODULES:
        doc = data[module]["doc"]
        assert doc["options"]["uri"]["default"] == "qemu:///system", module
        assert doc["attributes"]["action_group"]["membership"] == ["virtops.qemu.qemu"], module
