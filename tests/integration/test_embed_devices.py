# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A device-rich domain boots on the embedded driver: QEMU 7.2 accepts the argv it builds.

The argv itself is compared with libvirtd's in test_embed_vs_libvirt.py; this
proves the same device families start for real under TCG and the guest
reaches its serial marker.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from ansible_collections.virtops.qemu.plugins.module_utils.driver.connect import open_driver
from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import parse
from harness.embed import private_root
from harness.guest import MARKER  # noqa: E402  (tests/ is on sys.path via conftest)
from harness.libvirtd import wait_for_line  # noqa: E402

pytestmark = [pytest.mark.embed, pytest.mark.guest]

RICH_DEVICES = """
    <controller type='usb' model='ich9-ehci1'/>
    <controller type='usb' model='ich9-uhci1'/>
    <controller type='scsi' model='virtio-scsi'/>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw' cache='writethrough' io='threads' discard='unmap' detect_zeroes='unmap'/>
      <source file='{root}/data.img'/>
      <target dev='sda' bus='scsi'/>
      <serial>VO-DATA</serial>
      <wwn>5000c50015ea71ac</wwn>
    </disk>
    <interface type='user'><model type='e1000'/></interface>
    <serial type='file'><source path='{root}/serial.log'/></serial>
    <serial type='null'/>
    <parallel type='null'/>
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
    <channel type='pty'><target type='virtio' name='org.example.pty'/></channel>
    <input type='tablet' bus='usb'/>
    <input type='keyboard' bus='virtio'/>
    <hub type='usb'/>
    <graphics type='vnc' autoport='yes'/>
    <video><model type='qxl'/></video>
    <sound model='ich9'><codec type='duplex'/></sound>
    <sound model='ac97'/>
    <watchdog model='i6300esb' action='reset'/>
    <memballoon model='virtio' autodeflate='on' freePageReporting='on'/>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
    <rng model='virtio'><rate bytes='4096' period='1000'/><backend model='builtin'/></rng>
    <panic model='isa'/>
    <shmem name='vo-shm-{suffix}'><model type='ivshmem-plain'/><size unit='M'>1</size></shmem>
    <iommu model='intel'><driver intremap='on' caching_mode='on'/></iommu>
"""


def rich_domain(guest, root: Path) -> str:
    devices = RICH_DEVICES.format(root=root, suffix=root.name)
    return f"""<domain type='qemu'>
  <name>rich</name>
  <memory unit='MiB'>256</memory>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>{guest.kernel}</kernel>
    <initrd>{guest.initrd}</initrd>
    <cmdline>{guest.cmdline}</cmdline>
  </os>
  <features><acpi/><ioapic driver='qemu'/></features>
  <devices>{devices}</devices>
</domain>"""


@pytest.fixture
def root():
    with private_root() as path:
        yield path
    Path(f"/dev/shm/vo-shm-{path.name}").unlink(missing_ok=True)


@pytest.fixture
def driver(root):
    with open_driver(f"qemu:///embed?root={root}") as drv:
        yield drv
        for name in drv.domains.names():
            if drv.domains.status(name).active:
                drv.domains.destroy(name)


def _peripherals(driver) -> set[str]:
    listing = driver.domains.monitor("rich", {"execute": "qom-list", "arguments": {"path": "/machine/peripheral"}})
    return {entry["name"] for entry in listing}


def test_device_rich_domain_boots_to_the_marker(driver, guest_build, root):
    (root / "data.img").write_bytes(b"\0" * (1 << 20))
    driver.domains.define(rich_domain(guest_build, root))
    driver.domains.start("rich")
    wait_for_line(root / "serial.log", MARKER, timeout=120)

    expected = {"rng0", "rng1", "channel0", "channel1", "virtio-serial0", "watchdog0", "balloon0", "sound0",
                "sound0-codec0", "sound1", "shmem0", "iommu0", "hub0", "input0", "input1", "parallel0",
                "serial1", "scsi0-0-0-0", "video0", "net0"}
    assert expected <= _peripherals(driver)
    agent = root / "lib" / "qemu" / "domain-1-rich" / "channel" / "org.qemu.guest_agent.0"
    live = parse(driver.domains.xml("rich", inactive=False), "domain")
    source = live.find("devices/channel[@type='unix']/source")
    assert source.attrib == {"mode": "bind", "path": str(agent)}  # shown as libvirt shows its channel sockets
    assert parse(driver.domains.xml("rich"), "domain").find("devices/channel/source") is None
    with socket.socket(socket.AF_UNIX) as sock:  # QEMU listens on the guest agent channel
        sock.connect(str(agent))
    balloon = driver.domains.monitor("rich", {"execute": "qom-get", "arguments": {
        "path": "/machine/peripheral/balloon0", "property": "deflate-on-oom"}})
    assert balloon is True
    driver.domains.destroy("rich")
    assert not agent.exists()


@pytest.mark.parametrize("device,message", [
    ("<tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>", "needs swtpm"),
    ("<filesystem type='mount'><driver type='virtiofs'/><source dir='/tmp'/><target dir='t'/></filesystem>",
     "needs virtiofsd"),
])
def test_devices_needing_a_helper_are_refused_at_define(driver, guest_build, root, device, message):
    with pytest.raises(InvalidInput, match=message):
        driver.domains.define(rich_domain(guest_build, root).replace("</devices>", f"{device}</devices>"))
    assert driver.domains.names() == []
