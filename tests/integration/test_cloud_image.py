"""The Debian 12 cloud image (build_image.py --kind cloud), booted for real.

The image is the "distribution's cloud image" of the cloud-image tests: a
qcow2 disk that UEFI (OVMF) boots through its own GRUB, with systemd,
cloud-init and qemu-guest-agent, and no key or password of its own.  The
test boots a qcow2 overlay of it under TCG, on the embedded driver and on
libvirtd, with a NoCloud seed (the collection's seed library) on a
read-only virtio disk (q35) or an IDE CD-ROM (pc), and one NIC on a NAT
network (in the test's namespace, or libvirtd's), where cloud-init's
fallback configuration gets a DHCP lease.  It then logs in over SSH with
the key the seed carries and reads the guest's state: systemd is up, the
seed's runcmd ran, the hostname is the seed's, nobody has a password, and
the guest agent answers on its virtio-serial channel (on libvirtd through
``virsh qemu-agent-command``: libvirtd holds the channel itself).

The time from the domain's start to the first SSH login is printed (run
pytest with -s to see it); the README quotes it.
"""

from __future__ import annotations

import hashlib
import json
import random
import secrets
import socket
import subprocess
from pathlib import Path

import pytest
from lxml import etree

from ansible_collections.virtops.qemu.plugins.module_utils.seed.nocloud import build_seed, write_seed
from harness.ansible import run_module
from harness.backends import EmbedNetworkSide, LibvirtNetworkSide
from harness.cloud_image import FAST_HOST_KEYS, OVMF_CODE, OVMF_VARS, CloudGuest, CloudImage, instance, nat_network

pytestmark = [pytest.mark.embed, pytest.mark.guest, pytest.mark.slow]

AGENT_CHANNEL = "org.qemu.guest_agent.0"
# Where the seed can be: Debian's cloud kernel has no AHCI driver, so not on SATA (q35's CD-ROM bus).
# The IDE CD-ROM has a boot order: OVMF leaves an IDE controller without a boot device
# unconnected when another device has one, and Linux then finds no drive on it.
SEEDS = {
    "virtio-disk": ("q35", "<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
                           "<source file='{seed}'/><target dev='vdb' bus='virtio'/><readonly/></disk>"),
    "ide-cdrom": ("pc", "<disk type='file' device='cdrom'><driver name='qemu' type='raw'/>"
                        "<source file='{seed}'/><target dev='hdc' bus='ide'/><readonly/><boot order='2'/></disk>"),
}


def domain_xml(name: str, disk: Path, seed: Path, seed_kind: str, network: str, mac: str, log: Path) -> str:
    machine, seed_disk = SEEDS[seed_kind]
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>768</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='{machine}'>hvm</type>
    <loader readonly='yes' type='pflash'>{OVMF_CODE}</loader>
    <nvram template='{OVMF_VARS}'/>
  </os>
  <features><acpi/></features>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/><source file='{disk}'/><target dev='vda' bus='virtio'/><boot order='1'/>
    </disk>
    {seed_disk.format(seed=seed)}
    <interface type='network'>
      <source network='{network}'/><mac address='{mac}'/><model type='virtio'/>
    </interface>
    <serial type='file'><source path='{log}'/><target port='0'/></serial>
    <channel type='unix'><target type='virtio' name='{AGENT_CHANNEL}'/></channel>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
  </devices>
</domain>"""


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


def ask_agent(side, name: str, command: dict) -> dict:
    """libvirtd holds the agent's channel itself: ask through it; on the embedded driver, use the socket."""
    if side.name == "libvirt":
        return json.loads(side.libvirtd.virsh("qemu-agent-command", name, json.dumps(command)))
    info = run_module("domain_info", {"uri": side.uri, "name": name}, netns=side.module_netns)
    live = etree.fromstring(info["domain"]["live_xml"].encode())
    channel = live.find(f"devices/channel/target[@name='{AGENT_CHANNEL}']/../source").get("path")
    return agent_command(channel, command)


@pytest.fixture
def side(request):
    if request.param == "libvirt":
        return LibvirtNetworkSide(request.getfixturevalue("libvirtd"))
    return EmbedNetworkSide(request.getfixturevalue("root"), request.getfixturevalue("netns"))


# The seed on a virtio disk, on both backends, is booted by test_cloud_init.py through the
# domain module; here the one layout that module does not make: an IDE CD-ROM under OVMF.
@pytest.mark.parametrize(("side", "seed_kind"), [("embed", "ide-cdrom")], indirect=["side"])
def test_cloud_image_boots_to_ssh_with_cloud_init_and_the_guest_agent(side, seed_kind, cloud_image, workdir):
    assert cloud_image.checksum == "sha256:" + hashlib.sha256(Path(cloud_image.path).read_bytes()).hexdigest()
    name, network = f"vt-cloud-{secrets.token_hex(3)}", f"vt-{secrets.token_hex(4)}"
    try:
        boot_and_check(side, seed_kind, cloud_image, workdir, name, network)
    finally:
        side.remove_domain(name)
        side.remove(network)


def boot_and_check(side, seed_kind: str, cloud_image: CloudImage, workdir: Path, name: str, network: str) -> None:
    booted, marker = instance(cloud_image, workdir), secrets.token_hex(8)
    created = run_module("network", {"uri": side.uri, **nat_network(network, f"vtc{secrets.token_hex(3)}", booted)},
                         netns=side.module_netns)
    assert created["changed"], created

    seed = build_seed(name, {
        "ssh_authorized_keys": [booted.public_key], **FAST_HOST_KEYS,
        "runcmd": [["sh", "-c", f"echo {marker} > /var/tmp/virtops-seeded"]],
    })
    write_seed(str(workdir / "seed.iso"), seed.image())

    log = workdir / "console.log"
    started = run_module("domain", {"uri": side.uri, "name": name, "state": "running",
                                    "xml": domain_xml(name, booted.disk, workdir / "seed.iso", seed_kind, network,
                                                      booted.mac, log)},
                         netns=side.module_netns)
    assert started["changed"] and started["state"] == "running", started

    guest = CloudGuest(side.netns, booted.address, booted.key)
    boot_to_ssh = guest.wait_for_ssh(log)
    print(f"\ncloud image on {side.name}, seed on {seed_kind}: first SSH login {boot_to_ssh:.0f} s "
          "after the domain started (TCG)")

    finished = guest.ssh("cloud-init status --wait --long")
    assert "status: done" in finished.stdout, finished.stdout + finished.stderr
    system = guest.ssh("systemctl is-system-running --wait")
    assert system.stdout.strip() in ("running", "degraded"), system.stdout + guest.ssh("systemctl --failed").stdout
    assert guest.ssh("cat /var/tmp/virtops-seeded").stdout.strip() == marker, "the seed's runcmd ran"
    assert guest.ssh("hostname").stdout.strip() == name, "the hostname comes from the seed's meta-data"
    assert guest.ssh("systemctl is-active ssh qemu-guest-agent").stdout.split() == ["active", "active"]
    passwords = guest.ssh("sudo -n awk -F: '$2 !~ /^[!*]/ {print $1}' /etc/shadow")
    assert passwords.returncode == 0 and passwords.stdout == "", "no account has a password"
    print(guest.ssh("systemd-analyze time").stdout)

    assert ask_agent(side, name, {"execute": "guest-ping"}) == {"return": {}}
    osinfo = ask_agent(side, name, {"execute": "guest-get-osinfo"})["return"]
    assert (osinfo["id"], osinfo["version-id"]) == ("debian", "12"), osinfo


def debugfs(filesystem: str, request: str) -> str:
    return subprocess.run(["debugfs", "-R", request, filesystem], capture_output=True, text=True,
                          check=True).stdout


def test_cloud_image_holds_no_key_password_or_identity(cloud_image, tmp_path):
    """Read offline (no mount, no guest): what a genericcloud image must not carry, and its boot partition."""
    raw = tmp_path / "disk.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", cloud_image.path, str(raw)], check=True)
    table = json.loads(subprocess.run(["sfdisk", "--json", str(raw)], capture_output=True, text=True,
                                      check=True).stdout)["partitiontable"]
    esp, root = table["partitions"]
    assert (table["label"], esp["type"]) == ("gpt", "C12A7328-F81F-11D2-BA4B-00A0C93EC93B")
    boot = subprocess.run(["mdir", "-b", "-i", f"{raw}@@{esp['start'] * 512}", "::/EFI/BOOT"],
                          capture_output=True, text=True, check=True).stdout.split()
    assert boot == ["::/EFI/BOOT/BOOTX64.EFI"], "the firmware's default boot file, and nothing else"

    rootfs = f"{raw}?offset={root['start'] * 512}"

    def names(directory: str) -> list[str]:
        return [line.split("/")[5] for line in debugfs(rootfs, f"ls -p {directory}").splitlines() if line]

    assert [n for n in names("/etc/ssh") if n.startswith("ssh_host_")] == [], "no host keys"
    assert set(names("/root/.ssh")) <= {".", ".."}, "no authorized keys for root"
    assert names("/home") == [".", ".."], "no user yet: cloud-init makes the default user"
    shadow = [line.split(":") for line in debugfs(rootfs, "cat /etc/shadow").splitlines()]
    assert shadow and [fields[0] for fields in shadow if fields[1][:1] not in ("!", "*")] == [], "no passwords"
    assert debugfs(rootfs, "cat /etc/machine-id") == "", "each instance makes its own machine id"
    assert "datasource_list: [NoCloud, None]" in debugfs(rootfs, "cat /etc/cloud/cloud.cfg.d/99_virtops.cfg")
    assert 'Fast link dest: "../run/systemd/resolve/stub-resolv.conf"' in debugfs(rootfs, "stat /etc/resolv.conf"), \
        "systemd-resolved's stub, not the build host's resolver"
