"""The molecule scenarios of extensions/molecule, run for real.

``molecule test`` runs each scenario's whole sequence inside a private network
namespace: create (base image from the cache, NAT network, overlays, two
Debian VMs under TCG, readiness from the serial console), converge over SSH,
idempotence, verify (the instances reach each other), destroy.  The test then
checks that destroy left nothing: no QEMU, no root, no bridge, no firewall
table in the namespace.

The base image is built (or found in tests/.cache/molecule) before, in the
host's namespace: mmdebstrap needs the Debian mirror, which the private
namespace cannot reach.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness import CACHE, REPO
from harness.ansible import COLLECTIONS
from harness.embed import private_root, qemu_pids
from harness.netns import private_netns

pytestmark = [pytest.mark.embed, pytest.mark.guest, pytest.mark.slow]

VENV_BIN = Path(sys.executable).parent
MOLECULE_CACHE = CACHE / "molecule"
BUILDER = REPO / "extensions" / "molecule" / "resources" / "image" / "build_image.py"
# Every action of the scenarios' test sequence must report success.
SEQUENCE = ("destroy", "syntax", "create", "converge", "idempotence", "verify")


def molecule_env(root: Path, ephemeral: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
        "ANSIBLE_NOCOLOR": "1",
        "NO_COLOR": "1",
        "MOLECULE_EPHEMERAL_DIRECTORY": str(ephemeral),
        "VIRTOPS_MOLECULE_ROOT": str(root),
        "VIRTOPS_MOLECULE_CACHE": str(MOLECULE_CACHE),
        "VIRTOPS_MOLECULE_VIRT_TYPE": "qemu",
    })
    return env


@pytest.fixture(scope="module")
def base_image() -> dict:
    proc = subprocess.run([sys.executable, str(BUILDER), "--cache", str(MOLECULE_CACHE)],
                          capture_output=True, text=True, timeout=1800, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("scenario", ["default", "guests-role"])
def test_molecule_scenario(scenario, base_image, tmp_path):
    with private_netns() as netns, private_root("vo-mol-") as root:
        proc = subprocess.run(
            netns.exec_argv(["molecule", "test", "-s", scenario]),
            cwd=REPO, env=molecule_env(root, tmp_path / "ephemeral"),
            capture_output=True, text=True, timeout=1200, check=False)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, output[-8000:]
        assert "Performing prerun" not in output, "the scenarios install nothing into ~/.ansible"
        assert re.search(r"TASK \[Build the base image, or find it in the cache\] \**\nok: \[localhost\]", output), \
            "create finds the image the fixture built in the cache"
        details = output[output.rfind("DETAILS"):]
        for action in SEQUENCE:
            assert f"{scenario} > {action}: Executed: Successful" in details, details
        assert f"{scenario} > destroy: Executed: Successful" in details, details
        assert "failed=0" in details, details
        assert not qemu_pids(root), "destroy stops every instance"
        assert not root.exists(), "destroy removes the embedded root"
        assert not [name for name in netns.links() if name.startswith("vmol-")], "destroy removes the bridge"
        assert not [t for t in netns.nft_tables() if "vmol" in t], "destroy removes the firewall table"


def test_molecule_create_reports_an_instance_that_is_not_ready(base_image, tmp_path):
    """A boot that misses the deadline fails create with the instances' states; destroy still cleans up."""
    with private_netns() as netns, private_root("vo-mol-") as root:
        env = {**molecule_env(root, tmp_path / "ephemeral"), "VIRTOPS_MOLECULE_BOOT_TIMEOUT": "1"}

        def molecule(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run(netns.exec_argv(["molecule", *args, "-s", "default"]), cwd=REPO, env=env,
                                  capture_output=True, text=True, timeout=600, check=False)

        created = molecule("create")
        output = created.stdout + created.stderr
        assert created.returncode != 0, output[-4000:]
        assert "An instance did not become ready within 1 s (states: ['running', 'running'])" in output, \
            output[-4000:]
        assert len(qemu_pids(root)) == 2, "the instances stay for a look until destroy"
        destroyed = molecule("destroy")
        assert destroyed.returncode == 0, (destroyed.stdout + destroyed.stderr)[-4000:]
        assert not qemu_pids(root)
        assert not root.exists()
        assert not [name for name in netns.links() if name.startswith("vmol-")]
