"""ansible-doc renders every module of the installed collection."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness import REPO
from harness.ansible import ansible_env

MODULES = sorted(p.stem for p in (Path(REPO) / "plugins" / "modules").glob("*.py"))


@pytest.mark.parametrize("module", MODULES)
def test_ansible_doc_renders(module, tmp_path):
    ansible_doc = str(Path(sys.executable).parent / "ansible-doc")
    env = ansible_env(str(tmp_path / "unused.json"))
    text = subprocess.run([ansible_doc, f"virtops.qemu.{module}"], env=env, capture_output=True,
                          text=True, check=True).stdout
    assert "EXAMPLES:" in text and "RETURN VALUES:" in text
    data = json.loads(subprocess.run([ansible_doc, "--json", f"virtops.qemu.{module}"], env=env,
                                     capture_output=True, text=True, check=True).stdout)
    doc = data[f"virtops.qemu.{module}"]["doc"]
    assert doc["options"]["uri"]["default"] == "qemu:///system"
    assert doc["attributes"]["action_group"]["membership"] == ["virtops.qemu.qemu"]
