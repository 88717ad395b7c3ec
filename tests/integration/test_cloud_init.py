"""The domain module's cloud_init and guest_agent, and domain_info's addresses, on both backends.

First the seed alone: the busybox test guest's kernel (Debian's cloud kernel)
reads the seed the module wrote and attached, on each backend.  Then the
whole path on the Debian cloud image (build_image.py --kind cloud): an
overlay of it boots with a seed that carries an SSH key and a runcmd marker
and with the guest agent channel, on a NAT network with DHCP; the guest is
reached over SSH, domain_info reports its address from the lease and from
the agent and the agent's OS, ``ansible -m ping`` reaches it, and the seed
follows the definition (restart_required, check mode, removal).  Booting
systemd under TCG takes minutes, so one guest per backend serves the
read-only tests (module-scoped fixture) and the tests that change it run last.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
from lxml import etree

from ansible_collections.virtops.qemu.plugins.module_utils.seed.nocloud import build_seed
from harness.ansible import BIN, run_module
from harness.backends import EmbedNetworkSide, LibvirtNetworkSide
from harness.cloud_image import DEFAULT_USER, FAST_HOST_KEYS, OVMF_CODE, OVMF_VARS, CloudGuest, instance, nat_network
from harness.embed import private_root
from harness.inventory import ansible_inventory
from harness.libvirt_marker import BACKENDS
from harness.netns import private_netns
from harness.seed_reader import DONE, build_seed_reader, parse_files

USER = DEFAULT_USER
USER_DATA = {"write_files": [{"path": "/etc/virtops-seeded", "content": "seeded\n"}]}


def seed_of(result: dict) -> Path:
    return Path(result["seed"])


def disks_of(xml: str) -> list:
    return etree.fromstring(xml.encode()).findall("devices/disk")


def wait_for(path: Path, text: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        console = path.read_text(errors="replace") if path.exists() else ""
        if text in console:
            return console
        time.sleep(1)
    raise AssertionError(f"{text!r} not on the console within {timeout} s:\n{console[-3000:]}")


# -- the seed alone, read by the cloud kernel ------------------------------------

@pytest.mark.guest
def test_the_cloud_kernel_reads_the_seed_the_module_attached(backend, guest, workdir, vm):
    reader = build_seed_reader(guest, workdir, ("vda",))
    log = workdir / "serial.log"
    options = {
        "uri": backend.uri, "name": vm, "type": "qemu", "memory": "256MiB", "vcpus": 1,
        "kernel": {"path": str(reader.kernel), "initrd": str(reader.initrd), "cmdline": reader.cmdline},
        "serials": [{"type": "file", "path": str(log)}], "features": ["acpi"], "on_poweroff": "destroy",
        "cloud_init": {"user_data": USER_DATA, "meta_data": {"public-keys": ["k1"]}}, "guest_agent": True,
    }
    try:
        result = run_module("domain", {**options, "state": "running"}, diff=True)
        assert result["changed"] and result["state"] == "running", result
        seed = seed_of(result)
        expected = build_seed(vm, USER_DATA, {"public-keys": ["k1"]})
        assert seed.read_bytes() == expected.image()
        [disk] = disks_of(result["xml"])
        assert disk.find("readonly") is not None and disk.find("target").attrib == {"dev": "vda", "bus": "virtio"}
        assert disk.findtext("serial") == "cidata-" + hashlib.sha256(expected.image()).hexdigest()[:12]
        assert "virtops-seeded" not in json.dumps([result["diff"], result["xml"]]), "no user-data in diff or xml"
        console = wait_for(log, DONE, 300)
        assert "SEED-ERROR" not in console, console[-3000:]
        seen = parse_files(console)[("vda", "ro")]
        assert {name: file.content for name, file in seen.items()} == expected.files

        removed = run_module("domain", {"uri": backend.uri, "name": vm, "state": "absent"})
        assert removed["changed"] and not seed.exists(), "the seed goes with the domain"
    finally:
        Path(backend_seed_dir(backend), f"{vm}.cidata.iso").unlink(missing_ok=True)


def backend_seed_dir(backend) -> str:
    if backend.name == "libvirt":
        return "/var/lib/libvirt/images"
    return os.path.join(backend.root, "lib", "qemu", "seeds")


# -- the Debian cloud image, booted once per backend -------------------------------

class Cloud(CloudGuest):
    """One booted cloud guest: its backend side, options, work dir and seed."""

    def __init__(self, side, name: str, workdir: Path, address: str, key: Path):
        super().__init__(side.netns, address, key)
        self.side, self.name, self.workdir = side, name, workdir
        self.options: dict = {}
        self.seed: Path | None = None
        self.marker = ""

    def module(self, module: str, args: dict, **kwargs) -> dict:
        return run_module(module, {"uri": self.side.uri, **args}, netns=self.side.module_netns, **kwargs)


def cloud_xml(name: str, disk: Path, network: str, mac: str, log: Path) -> str:
    """The guest without seed and agent channel: the module's cloud_init and guest_agent add them."""
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
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/><source file='{disk}'/><target dev='vda' bus='virtio'/>
    </disk>
    <interface type='network'>
      <source network='{network}'/><mac address='{mac}'/><model type='virtio'/>
    </interface>
    <serial type='file'><source path='{log}'/><target port='0'/></serial>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
  </devices>
</domain>"""


def backend_side(request, stack: ExitStack):
    if request.param == "libvirt":
        return LibvirtNetworkSide(request.getfixturevalue("libvirtd"))
    root = stack.enter_context(private_root())
    return EmbedNetworkSide(root, stack.enter_context(private_netns()))


@pytest.fixture(scope="module", params=BACKENDS)
def cloud(request, cloud_image, run_dir):
    token = secrets.token_hex(3)
    name, network = f"vt-ci-{token}", f"vtci{token}"
    workdir = run_dir / f"cloud-{request.param}-{token}"
    workdir.mkdir(mode=0o755)
    with ExitStack() as stack:
        side = backend_side(request, stack)
        booted = instance(cloud_image, workdir)
        cloud = Cloud(side, name, workdir, booted.address, booted.key)
        stack.callback(lambda: cloud.module("network", {"name": network, "state": "absent"}))
        stack.callback(lambda: cloud.module("domain", {"name": name, "state": "absent"}))
        created = cloud.module("network", {**nat_network(network, f"vtb{token}", booted), "state": "active"})
        assert created["changed"], created
        cloud.marker = secrets.token_hex(8)
        log = workdir / "console.log"
        cloud.options = {
            "name": name, "xml": cloud_xml(name, booted.disk, network, booted.mac, log), "guest_agent": True,
            "cloud_init": {"user_data": {
                "ssh_authorized_keys": [booted.public_key], **FAST_HOST_KEYS,
                "runcmd": [["sh", "-c", f"echo {cloud.marker} > /var/tmp/virtops-seeded"]]}}}
        started = cloud.module("domain", {**cloud.options, "state": "running"})
        assert started["changed"] and started["state"] == "running", started
        cloud.seed = seed_of(started)
        seconds = cloud.wait_for_ssh(log)
        print(f"\n{request.param}: first SSH login {seconds:.0f} s after the start (TCG)")
        yield cloud


def guest_info(cloud, sources=None, wait_for_agent=False) -> dict:
    """domain_info of the guest; with wait_for_agent, until the agent answers (it starts after sshd)."""
    args = {"name": cloud.name, **({"address_source": sources} if sources else {})}
    deadline = time.monotonic() + 300
    while True:
        info = cloud.module("domain_info", args)["domain"]
        if not wait_for_agent or info["guest_agent"]["connected"] or time.monotonic() > deadline:
            return info
        time.sleep(5)


@pytest.mark.guest
@pytest.mark.slow
def test_the_seed_reached_cloud_init_in_the_guest(cloud):
    assert "status: done" in cloud.ssh("cloud-init status --wait", timeout=600).stdout
    assert cloud.ssh("cat /var/tmp/virtops-seeded").stdout.strip() == cloud.marker, "runcmd ran"
    assert cloud.ssh("hostname").stdout.strip() == cloud.name, "local-hostname is the domain's name"
    seed = cloud.seed.read_bytes()
    assert cloud.ssh("sudo -n blkid -s LABEL -o value /dev/vdb").stdout.strip() == "cidata"
    assert cloud.ssh("cat /sys/block/vdb/ro").stdout.strip() == "1", "the seed disk is read-only"
    serial = cloud.ssh("cat /sys/block/vdb/serial").stdout.strip()
    assert serial == "cidata-" + hashlib.sha256(seed).hexdigest()[:12]


@pytest.mark.guest
@pytest.mark.slow
def test_domain_info_reports_the_address_from_the_lease_and_from_the_agent(cloud):
    info = guest_info(cloud, wait_for_agent=True)
    assert info["guest_agent"]["connected"], info["guest_agent"]
    os_info = info["guest_agent"]["os"]
    assert (os_info["id"], os_info["version-id"]) == ("debian", "12"), os_info
    [nic] = info["interfaces"]
    assert nic["source"] == "lease", nic
    assert {"address": cloud.address, "prefix": 24, "family": "ipv4"} in nic["addresses"]
    [nic] = guest_info(cloud, ["agent"])["interfaces"]
    assert nic["source"] == "agent" and {"address": cloud.address, "prefix": 24, "family": "ipv4"} in nic["addresses"]
    assert [a["family"] for a in nic["addresses"]].count("ipv4") == 1, "only the guest's NIC, no loopback"


@pytest.mark.guest
@pytest.mark.slow
def test_ansible_ping_reaches_the_guest_at_the_address_domain_info_reports(cloud):
    [nic] = guest_info(cloud)["interfaces"]
    inventory = cloud.workdir / "inventory.ini"
    inventory.write_text(
        f"guest ansible_host={nic['addresses'][0]['address']} ansible_user={USER} "
        f"ansible_ssh_private_key_file={cloud.key} ansible_python_interpreter=auto_silent "
        "ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null'\n")
    proc = subprocess.run(cloud.side.netns.exec_argv([str(BIN / "ansible"), "all", "-i", str(inventory),
                                                      "-m", "ping", "-o"]),
                          capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "ANSIBLE_HOST_KEY_CHECKING": "False"})
    assert proc.returncode == 0 and '"ping": "pong"' in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.guest
@pytest.mark.slow
def test_the_inventory_finds_the_guest_at_the_agent_address_by_uuid(cloud):
    inventory = ansible_inventory(cloud.workdir / "agent.virtops_domains.yml", {
        "plugin": "virtops.qemu.domains", "uris": [cloud.side.uri], "address_source": ["agent"],
        "hostname": "uuid"}, cloud.side.module_netns)
    assert inventory.rc == 0, inventory.stderr
    host = inventory.hostvars[guest_info(cloud)["uuid"]]
    assert host["ansible_host"] == cloud.address, host


@pytest.mark.guest
@pytest.mark.slow
def test_a_second_run_changes_nothing(cloud):
    again = cloud.module("domain", {**cloud.options, "state": "running"}, diff=True)
    assert not again["changed"] and again["diff"]["before"] == again["diff"]["after"], again["diff"]
    assert not again["restart_required"]


@pytest.mark.guest
@pytest.mark.slow
def test_check_mode_writes_no_seed_for_a_new_domain(cloud):
    name = f"{cloud.name}-new"
    options = {**cloud.options, "name": name, "xml": cloud.options["xml"].replace(cloud.name, name)}
    predicted = cloud.module("domain", options, check=True, diff=True)
    assert predicted["changed"] and predicted["seed"].endswith(f"/{name}.cidata.iso"), predicted
    assert not Path(predicted["seed"]).exists()
    assert not cloud.module("domain_info", {"name": name})["exists"]


@pytest.mark.guest
@pytest.mark.slow
def test_new_user_data_is_predicted_then_written_and_requires_a_restart(cloud):
    before = cloud.seed.read_bytes()
    user_data = {**cloud.options["cloud_init"]["user_data"], "bootcmd": [["true"]]}
    options = {**cloud.options, "cloud_init": {"user_data": user_data}}
    predicted = cloud.module("domain", options, check=True, diff=True)
    assert predicted["changed"] and predicted["restart_required"], predicted
    assert cloud.seed.read_bytes() == before, "check mode writes nothing"
    changed = [line for line in predicted["diff"]["after"].splitlines()
               if line not in predicted["diff"]["before"].splitlines()]
    assert [line.strip()[:15] for line in changed] == ["<serial>cidata-"], changed
    real = cloud.module("domain", options, diff=True)
    assert (real["changed"], real["restart_required"], real["diff"]) == (True, True, predicted["diff"])
    assert cloud.seed.read_bytes() != before
    assert guest_info(cloud)["restart_required"]
    cloud.options = options


@pytest.mark.guest
@pytest.mark.slow
def test_the_agent_shuts_the_guest_down_and_removal_takes_the_seed(cloud):
    down = cloud.module("domain", {"name": cloud.name, "state": "shutdown", "shutdown_mode": ["agent"],
                                   "shutdown_timeout": 300})
    assert down["changed"] and down["state"] == "shutoff", down
    detached = cloud.module("domain", {"name": cloud.name, "cloud_init": {"state": "absent"}}, diff=True)
    assert detached["changed"] and detached["seed"] is None and not cloud.seed.exists()
    assert all("cidata" not in (d.findtext("serial") or "") for d in disks_of(detached["xml"]))
    cloud.module("domain", {**cloud.options, "state": "present"})
    assert cloud.seed.exists()
    removed = cloud.module("domain", {"name": cloud.name, "state": "absent"})
    assert removed["changed"] and not cloud.seed.exists()
