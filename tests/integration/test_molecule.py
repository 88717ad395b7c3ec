"""The molecule scenarios of extensions/molecule, run for real.

``molecule test`` runs each scenario's whole sequence inside a private network
namespace, on the embedded driver (the scenarios' only backend), under TCG:
create, converge over SSH, idempotence, verify, destroy.  The default
scenario boots one instance of the Debian 12 cloud image (systemd, cloud-init
from the seed, qemu-guest-agent) from its own boot loader under UEFI and
converges a role that installs a systemd service; the test looks into the
instance before destroy.  The guests-role scenario boots its fleet from the
busybox base image.  The test then checks that destroy left nothing: no QEMU,
no root, no bridge, no firewall table in the namespace.

The images are built (or found in tests/.cache/molecule) before, in the
host's namespace: mmdebstrap needs the Debian mirror, which the private
namespace cannot reach.  One cloud-guest boot under TCG takes one to two
minutes, so the default scenario has one instance.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness import CACHE, REPO
from harness.ansible import COLLECTIONS
from harness.cloud_image import CloudImage, build_cloud_image
from harness.embed import private_root, qemu_cmdlines, qemu_pids
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
        # The scenario's 600 s, doubled: the test machine's two cores run other guests' boots beside it.
        "VIRTOPS_MOLECULE_BOOT_TIMEOUT": "1200",
    })
    return env


@pytest.fixture(scope="module")
def base_image() -> dict:
    proc = subprocess.run([sys.executable, str(BUILDER), "--cache", str(MOLECULE_CACHE)],
                          capture_output=True, text=True, timeout=1800, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def cloud_image() -> CloudImage:
    return build_cloud_image()


def molecule_run(netns, root: Path, ephemeral: Path, *args: str, timeout: int = 3600) -> str:
    """molecule's output goes to a file beside the ephemeral directory, which a timeout leaves for a look."""
    log = ephemeral.parent / "molecule.log"
    with log.open("w") as out:
        try:
            proc = subprocess.run(netns.exec_argv(["molecule", *args]), cwd=REPO, env=molecule_env(root, ephemeral),
                                  stdout=out, stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"molecule {' '.join(args)} ran longer than {timeout} s:\n"
                                 + log.read_text()[-8000:]) from None
    output = log.read_text()
    assert proc.returncode == 0, output[-8000:]
    return output


def assert_sequence_ran(scenario: str, output: str, image_task: str) -> None:
    assert "Performing prerun" not in output, "the scenarios install nothing into ~/.ansible"
    assert re.search(rf"TASK \[{re.escape(image_task)}\] \**\nok: \[localhost\]", output), \
        "create finds the image the fixture built in the cache"
    details = output[output.rfind("DETAILS"):]
    for action in SEQUENCE:
        assert f"{scenario} > {action}: Executed: Successful" in details, details
    assert "failed=0" in details, details


def guest_ssh(netns, instance: dict, command: list[str]) -> str:
    proc = subprocess.run(netns.exec_argv([
        "ssh", "-i", instance["identity_file"], "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
        f"{instance['user']}@{instance['address']}", *command]),
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.strip()


def test_molecule_default_scenario_converges_a_systemd_service_on_the_cloud_image(cloud_image, tmp_path):
    ephemeral = tmp_path / "ephemeral"
    with private_netns() as netns, private_root("vo-mol-") as root:
        try:
            output = molecule_run(netns, root, ephemeral, "test", "-s", "default", "--destroy", "never")
            assert_sequence_ran("default", output, "Build the Debian 12 cloud image, or find it in the cache")
            boot = re.search(r'"msg": "boot to SSH: (\d+) s \(qemu\)"', output)
            assert boot, "create reports the time to the SSH login"
            print(f"\ndefault scenario: boot to SSH {boot.group(1)} s under TCG")
            assert re.search(r"TASK \[\S*hello_service : Enable and start the service\] \**\nchanged: \[instance-1\]",
                             output), "converge starts the service"
            assert re.search(r"TASK \[Ask systemd whether the service is active\] \**\nok: \[instance-1\]", output)

            [instance] = yaml.safe_load((ephemeral / "instance_config.yml").read_text())
            assert instance["user"] == "molecule" and instance["address"] == "192.168.123.10", instance
            [cmdline] = [c.split(b"\0") for c in qemu_cmdlines(root).values()]
            assert b"-kernel" not in cmdline and any(b"OVMF_CODE" in arg for arg in cmdline), \
                "the firmware boots the image's own boot loader"
            assert guest_ssh(netns, instance, ["systemctl", "is-active", "hello-service.service"]) == "active"
            assert guest_ssh(netns, instance, ["ps", "-o", "comm=", "-p", "1"]) == "systemd"
            assert guest_ssh(netns, instance, ["test", "-d", "/sys/firmware/efi", "&&", "echo", "efi"]) == "efi"
            assert "status: done" in guest_ssh(netns, instance, ["cloud-init", "status"])
        finally:
            destroyed = subprocess.run(netns.exec_argv(["molecule", "destroy", "-s", "default"]), cwd=REPO,
                                       env=molecule_env(root, ephemeral), capture_output=True, text=True,
                                       timeout=600, check=False)
        assert destroyed.returncode == 0, (destroyed.stdout + destroyed.stderr)[-4000:]
        assert_cleaned_up(netns, root)


def assert_cleaned_up(netns, root: Path) -> None:
    assert not qemu_pids(root), "destroy stops every instance"
    assert not root.exists(), "destroy removes the embedded root with the seeds and overlays"
    assert not [name for name in netns.links() if name.startswith("vmol-")], "destroy removes the bridge"
    assert not [t for t in netns.nft_tables() if "vmol" in t], "destroy removes the firewall table"


def test_molecule_guests_role_scenario(base_image, tmp_path):
    scenario = "guests-role"
    with private_netns() as netns, private_root("vo-mol-") as root:
        output = molecule_run(netns, root, tmp_path / "ephemeral", "test", "-s", scenario, timeout=1200)
        assert_sequence_ran(scenario, output, "Build the base image, or find it in the cache")
        details = output[output.rfind("DETAILS"):]
        assert f"{scenario} > destroy: Executed: Successful" in details, details
        assert_cleaned_up(netns, root)


def test_molecule_create_reports_an_instance_that_is_not_ready(cloud_image, tmp_path):
    """A boot that misses the deadline fails create with the instances' states; destroy still cleans up."""
    with private_netns() as netns, private_root("vo-mol-") as root:
        env = {**molecule_env(root, tmp_path / "ephemeral"), "VIRTOPS_MOLECULE_BOOT_TIMEOUT": "1"}

        def molecule(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run(netns.exec_argv(["molecule", *args, "-s", "default"]), cwd=REPO, env=env,
                                  capture_output=True, text=True, timeout=600, check=False)

        created = molecule("create")
        output = created.stdout + created.stderr
        assert created.returncode != 0, output[-4000:]
        assert "An instance did not become ready within 1 s (states: ['running']" in output, output[-4000:]
        assert len(qemu_pids(root)) == 1, "the instance stays for a look until destroy"
        destroyed = molecule("destroy")
        assert destroyed.returncode == 0, (destroyed.stdout + destroyed.stderr)[-4000:]
        assert not qemu_pids(root)
        assert not root.exists()
        assert not [name for name in netns.links() if name.startswith("vmol-")]
