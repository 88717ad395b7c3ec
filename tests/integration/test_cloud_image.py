"""The Debian 12 cloud image (build_image.py --kind cloud), booted for real.

The image is the "distribution's cloud image" of the cloud-image tests: a
qcow2 disk that UEFI (OVMF) boots through its own GRUB, with systemd,
cloud-init and qemu-guest-agent, and no key or password of its own.  The
test boots a qcow2 overlay of it on the embedded driver under TCG, with a
NoCloud seed (the collection's seed library) on a read-only virtio disk and
one NIC on a NAT network of the test's namespace, where cloud-init's
fallback configuration gets a DHCP lease.  It then logs in over SSH with the
key the seed carries and reads the guest's state: systemd is up, the seed's
runcmd ran, the hostname is the seed's, nobody has a password, and the
guest agent answers on its virtio-serial channel.

The time from the domain's start to the first SSH login is printed (run
pytest with -s to see it); the README quotes it.
"""

from __future__ import annotations

import json
import random
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lxml import etree

from ansible_collections.virtops.qemu.plugins.module_utils.seed.nocloud import build_seed, write_seed
from harness import CACHE, REPO
from harness.ansible import run_module

pytestmark = [pytest.mark.embed, pytest.mark.guest, pytest.mark.slow]

BUILDER = REPO / "extensions" / "molecule" / "resources" / "image" / "build_image.py"
IMAGE_CACHE = CACHE / "molecule"
OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"
AGENT_CHANNEL = "org.qemu.guest_agent.0"
SSH_TIMEOUT = 600
USER = "debian"      # cloud-init's default user in Debian's cloud.cfg


@pytest.fixture(scope="module")
def cloud_image() -> dict:
    proc = subprocess.run([sys.executable, str(BUILDER), "--cache", str(IMAGE_CACHE), "--kind", "cloud"],
                          capture_output=True, text=True, timeout=1800, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def domain_xml(name: str, disk: Path, seed: Path, network: str, mac: str, log: Path) -> str:
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>768</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <loader readonly='yes' type='pflash'>{OVMF_CODE}</loader>
    <nvram template='{OVMF_VARS}'/>
  </os>
  <features><acpi/></features>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/><source file='{disk}'/><target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/><source file='{seed}'/><target dev='vdb' bus='virtio'/><readonly/>
    </disk>
    <interface type='network'>
      <source network='{network}'/><mac address='{mac}'/><model type='virtio'/>
    </interface>
    <serial type='file'><source path='{log}'/><target port='0'/></serial>
    <channel type='unix'><target type='virtio' name='{AGENT_CHANNEL}'/></channel>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
  </devices>
</domain>"""


class Guest:
    """The booted cloud guest, reached over SSH from the test's namespace."""

    def __init__(self, netns, address: str, key: Path):
        self.netns, self.address, self.key = netns, address, key

    def ssh_argv(self, command: str) -> list[str]:
        return self.netns.exec_argv([
            "ssh", "-i", str(self.key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR",
            f"{USER}@{self.address}", command])

    def run(self, command: str, timeout: int = 300) -> subprocess.CompletedProcess:
        return subprocess.run(self.ssh_argv(command), capture_output=True, text=True, timeout=timeout, check=False)

    def wait_for_ssh(self, log: Path) -> float:
        """Seconds until the first login; fails after SSH_TIMEOUT with the end of the console."""
        start = time.monotonic()
        while time.monotonic() - start < SSH_TIMEOUT:
            if self.run("true", timeout=30).returncode == 0:
                return time.monotonic() - start
            time.sleep(2)
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:]) if log.exists() else ""
        raise AssertionError(f"no SSH login to {self.address} within {SSH_TIMEOUT} s; console tail:\n{tail}")


def agent_command(path: str, command: dict) -> dict:
    """One guest agent command over the channel socket, after a guest-sync that skips stale replies."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(60)
        sock.connect(path)
        stream = sock.makefile("rwb")
        token = random.randint(1, 1 << 30)
        for request in ({"execute": "guest-sync", "arguments": {"id": token}}, command):
            stream.write(json.dumps(request).encode() + b"\n")
            stream.flush()
            while True:
                reply = json.loads(stream.readline())
                if request is command or reply.get("return") == token:
                    break
        return reply


def agent_socket(uri: str, name: str, netns) -> str:
    info = run_module("domain_info", {"uri": uri, "name": name}, netns=netns.name)
    live = etree.fromstring(info["live_xml"].encode())
    return live.find(f"devices/channel/target[@name='{AGENT_CHANNEL}']/../source").get("path")


def test_cloud_image_boots_to_ssh_with_cloud_init_and_the_guest_agent(cloud_image, root, netns, workdir):
    assert cloud_image["format"] == "qcow2" and cloud_image["firmware"] == "efi"
    uri = f"qemu:///embed?root={root}"
    name, mac = f"vt-cloud-{secrets.token_hex(3)}", "52:54:00:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(3))
    prefix = f"10.{random.randint(16, 250)}.{random.randint(1, 250)}"
    address, marker = f"{prefix}.20", secrets.token_hex(8)

    network = run_module("network", {
        "uri": uri, "name": "vt-cloud", "forward": {"mode": "nat"}, "bridge": {"name": f"vtc{secrets.token_hex(3)}"},
        "ips": [{"address": f"{prefix}.1", "prefix": 24,
                 "dhcp": {"ranges": [{"start": f"{prefix}.100", "end": f"{prefix}.199"}],
                          "hosts": [{"mac": mac, "ip": address}]}}]}, netns=netns.name)
    assert network["changed"], network

    disk = workdir / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", cloud_image["image"], str(disk)],
                   check=True)
    key = workdir / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(key)], check=True)
    seed = build_seed(name, {
        "ssh_authorized_keys": [(workdir / "id_ed25519.pub").read_text().strip()],
        "runcmd": [["sh", "-c", f"echo {marker} > /var/tmp/virtops-seeded"]],
    })
    write_seed(str(workdir / "seed.iso"), seed.image())

    log = workdir / "console.log"
    started = run_module("domain", {"uri": uri, "name": name, "state": "running",
                                    "xml": domain_xml(name, disk, workdir / "seed.iso", "vt-cloud", mac, log)},
                         netns=netns.name)
    assert started["changed"] and started["state"] == "running", started

    guest = Guest(netns, address, key)
    boot_to_ssh = guest.wait_for_ssh(log)
    print(f"\ncloud image: first SSH login {boot_to_ssh:.0f} s after the domain started (TCG)")

    finished = guest.run("cloud-init status --wait --long")
    assert "status: done" in finished.stdout, finished.stdout + finished.stderr
    system = guest.run("systemctl is-system-running --wait")
    assert system.stdout.strip() in ("running", "degraded"), system.stdout + guest.run("systemctl --failed").stdout
    assert guest.run("cat /var/tmp/virtops-seeded").stdout.strip() == marker, "the seed's runcmd ran"
    assert guest.run("hostname").stdout.strip() == name, "the hostname comes from the seed's meta-data"
    assert guest.run("systemctl is-active ssh qemu-guest-agent").stdout.split() == ["active", "active"]
    passwords = guest.run("sudo -n awk -F: '$2 !~ /^[!*]/ {print $1}' /etc/shadow")
    assert passwords.returncode == 0 and passwords.stdout == "", "no account has a password"
    print(guest.run("systemd-analyze time").stdout)

    channel = agent_socket(uri, name, netns)
    assert agent_command(channel, {"execute": "guest-ping"}) == {"return": {}}
    osinfo = agent_command(channel, {"execute": "guest-get-osinfo"})["return"]
    assert (osinfo["id"], osinfo["version-id"]) == ("debian", "12"), osinfo
