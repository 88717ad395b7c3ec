"""The Debian 12 cloud image, the "distribution's cloud image" of the tests.

Built by extensions/molecule/resources/image/build_image.py --kind cloud
(mmdebstrap, needs the Debian mirror) and cached in tests/.cache/molecule/
next to the Molecule base image: built once per package versions and
builder source.  Boot it through a qcow2 overlay with UEFI firmware (OVMF);
it reads a NoCloud seed and answers the guest agent.

What a test that boots it needs, in one place: ``instance`` makes the
overlay and an SSH key pair, ``nat_network`` the network module's options
for a NAT network that leases the guest a fixed address, and ``CloudGuest``
logs in over SSH from the namespace of that network.
"""

from __future__ import annotations

import json
import random
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import CACHE, REPO

BUILDER = REPO / "extensions" / "molecule" / "resources" / "image" / "build_image.py"
IMAGE_CACHE = CACHE / "molecule"
OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"
DEFAULT_USER = "debian"     # cloud-init's default user in Debian's cloud.cfg
# User-data for a quicker first boot: only an ed25519 host key (under TCG cloud-init spends
# about 20 s making the RSA and ECDSA ones; the tests' SSH client takes ed25519).
FAST_HOST_KEYS = {"ssh_genkeytypes": ["ed25519"]}
# Under TCG on a busy machine a first boot to sshd has taken up to 10 minutes.
SSH_TIMEOUT = 900


@dataclass(frozen=True)
class CloudImage:
    path: str           # the qcow2 file
    checksum: str       # "sha256:<hex>" of that file
    key: str


def build_cloud_image() -> CloudImage:
    """The cached image, built first when the cache has none for today's packages."""
    proc = subprocess.run([sys.executable, str(BUILDER), "--cache", str(IMAGE_CACHE), "--kind", "cloud"],
                          capture_output=True, text=True, timeout=1800, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"building the cloud image failed: {proc.stderr.strip()[-4000:]}")
    result = json.loads(proc.stdout)
    return CloudImage(path=result["image"], checksum=result["checksum"], key=result["key"])


@dataclass(frozen=True)
class Instance:
    disk: Path          # a qcow2 overlay of a copy of the image, in the test's directory
    key: Path           # the private half of a fresh SSH key pair
    public_key: str
    mac: str
    address: str        # what the network's DHCP hands out to ``mac`` (nat_network)
    prefix: str         # the network's first three octets


def instance(image: CloudImage, workdir: Path) -> Instance:
    """An overlay disk and key pair in ``workdir`` (which QEMU run by libvirtd can read), a MAC and an address."""
    base, disk = workdir / "base.qcow2", workdir / "disk.qcow2"
    shutil.copyfile(image.path, base)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base), str(disk)],
                   check=True)
    key = workdir / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(key)], check=True)
    mac = "52:54:00:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(3))
    prefix = f"10.{random.randint(16, 250)}.{random.randint(1, 250)}"
    return Instance(disk, key, (workdir / "id_ed25519.pub").read_text().strip(), mac, f"{prefix}.20", prefix)


def nat_network(name: str, bridge: str, guest: Instance) -> dict:
    """The network module's options: NAT, DHCP, the guest's MAC leased its address."""
    prefix = guest.prefix
    return {"name": name, "forward": {"mode": "nat"}, "bridge": {"name": bridge},
            "ips": [{"address": f"{prefix}.1", "prefix": 24,
                     "dhcp": {"ranges": [{"start": f"{prefix}.100", "end": f"{prefix}.199"}],
                              "hosts": [{"mac": guest.mac, "ip": guest.address}]}}]}


class CloudGuest:
    """The booted guest, reached over SSH as DEFAULT_USER from the network namespace ``netns`` (harness.netns)."""

    def __init__(self, netns, address: str, key: Path):
        self.netns, self.address, self.key = netns, address, key

    def ssh(self, command: str, timeout: float = 300) -> subprocess.CompletedProcess:
        # ConnectTimeout covers sshd's banner too, which a guest under TCG on a busy host sends late.
        argv = self.netns.exec_argv([
            "ssh", "-i", str(self.key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=30", "-o", "LogLevel=ERROR",
            f"{DEFAULT_USER}@{self.address}", command])
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)

    def wait_for_ssh(self, console: Path) -> float:
        """Seconds until the first login; fails after SSH_TIMEOUT with the end of the console."""
        start = time.monotonic()
        while time.monotonic() - start < SSH_TIMEOUT:
            try:
                if self.ssh("true", timeout=60).returncode == 0:
                    return time.monotonic() - start
            except subprocess.TimeoutExpired:
                pass    # sshd accepted the connection but is too slow yet: the guest is still booting
            time.sleep(2)
        tail = "\n".join(console.read_text(errors="replace").splitlines()[-40:]) if console.exists() else ""
        raise AssertionError(f"no SSH login to {self.address} within {SSH_TIMEOUT} s; console tail:\n{tail}")
