"""Unit tests of the embedded driver's post-parse step (no libvirtd needed)."""

from __future__ import annotations

import pytest
from lxml import etree
from qemu72_caps import CAPS

from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.postparse import postparse
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.postparse.devices import disk_index
from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput


def dom(devices="", machine="pc", extra=""):
    return etree.fromstring(
        f"<domain type='qemu'><name>t</name><memory unit='MiB'>64</memory>"
        f"<os><type machine='{machine}'>hvm</type></os>{extra}<devices>{devices}</devices></domain>")


def pci(elem):
    a = elem.find("address")
    return (int(a.get("bus"), 0), int(a.get("slot"), 0), int(a.get("function"), 0))


def test_fills_identity_machine_and_emulator():
    out = postparse(dom(machine="q35"), CAPS)
    assert len(out.findtext("uuid")) == 36
    assert out.find("os/type").get("machine") == "pc-q35-7.2"
    assert out.findtext("devices/emulator") == CAPS.binary
    assert out.find("memory").text == "65536" and out.find("currentMemory").text == "65536"
    assert [out.findtext(t) for t in ("on_poweroff", "on_reboot", "on_crash")] == ["destroy", "restart", "destroy"]
    assert out.findtext("cpu/model") == "qemu64"


def test_missing_machine_gets_default_and_unknown_machine_is_rejected():
    root = dom()
    root.find("os/type").attrib.pop("machine")
    assert postparse(root, CAPS).find("os/type").get("machine") == "pc-i440fx-7.2"
    with pytest.raises(InvalidInput, match="machine"):
        postparse(dom(machine="virt"), CAPS)


def test_input_is_not_modified_and_existing_values_are_kept():
    root = dom("<interface type='user'><mac address='52:54:00:01:02:03'/><model type='virtio'/>"
               "<address type='pci' domain='0' bus='0' slot='9' function='0'/></interface>")
    root.insert(1, etree.fromstring("<uuid>6f1f8a62-0c0a-4f43-9d5e-1b2a3c4d5e6f</uuid>"))
    before = etree.tostring(root)
    out = postparse(root, CAPS)
    assert etree.tostring(root) == before
    iface = out.find("devices/interface")
    assert iface.find("mac").get("address") == "52:54:00:01:02:03"
    assert pci(iface) == (0, 9, 0)
    assert out.findtext("uuid") == "6f1f8a62-0c0a-4f43-9d5e-1b2a3c4d5e6f"


def test_generated_macs_are_qemu_prefixed_and_distinct():
    out = postparse(dom("<interface type='user'/>" * 5), CAPS)
    macs = [m.get("address") for m in out.iter("mac")]
    assert len(set(macs)) == 5 and all(m.startswith("52:54:00:") for m in macs)


def test_i440fx_layout():
    out = postparse(dom("<disk type='file'><source file='/x'/><target dev='vda' bus='virtio'/></disk>"
                        "<disk type='file' device='cdrom'><target dev='hdc' bus='ide'/></disk>"
                        "<interface type='user'><model type='virtio'/></interface>"
                        "<graphics type='vnc'/>"), CAPS)
    dev = out.find("devices")
    assert pci(dev.find("controller[@type='usb']")) == (0, 1, 2)
    assert pci(dev.find("controller[@type='ide']")) == (0, 1, 1)
    assert pci(dev.find("video")) == (0, 2, 0)
    assert dev.find("video/model").get("type") == "cirrus"
    assert pci(dev.find("interface")) == (0, 3, 0)
    assert pci(dev.find("disk[@device='disk']")) == (0, 4, 0)
    assert pci(dev.find("memballoon")) == (0, 5, 0)
    cd = dev.find("disk[@device='cdrom']")
    assert dict(cd.find("address").attrib) == {
        "type": "drive", "controller": "0", "bus": "1", "target": "0", "unit": "0"}
    assert cd.find("readonly") is not None
    assert {(i.get("type"), i.get("bus")) for i in dev.iter("input")} == {("mouse", "ps2"), ("keyboard", "ps2")}


def test_i440fx_without_video_uses_slot_2():
    out = postparse(dom("<interface type='user'/>"), CAPS)
    assert pci(out.find("devices/interface")) == (0, 2, 0)
    assert out.find("devices/video") is None


def test_q35_puts_each_pcie_device_on_its_own_root_port_plus_one_spare():
    out = postparse(dom("<interface type='user'><model type='virtio'/></interface>", machine="q35"), CAPS)
    dev = out.find("devices")
    ports = dev.findall("controller[@model='pcie-root-port']")
    assert [p.get("index") for p in ports] == ["1", "2", "3", "4"][:len(ports)]
    assert len(ports) == 4  # net, usb, balloon, spare
    assert pci(dev.find("interface")) == (1, 0, 0)
    assert pci(dev.find("controller[@type='usb']")) == (2, 0, 0)
    assert pci(dev.find("memballoon")) == (3, 0, 0)
    assert [pci(p) for p in ports] == [(0, 1, f) for f in range(4)]
    assert ports[0].find("address").get("multifunction") == "on"
    assert ports[2].find("target").attrib == {"chassis": "3", "port": "0xa"}
    assert pci(dev.find("controller[@type='sata']")) == (0, 0x1F, 2)
    assert dev.find("controller[@model='pcie-to-pci-bridge']") is None


def test_q35_conventional_pci_device_gets_a_bridge():
    out = postparse(dom("<interface type='user'><model type='e1000'/></interface>", machine="q35"), CAPS)
    dev = out.find("devices")
    bridge = dev.find("controller[@model='pcie-to-pci-bridge']")
    assert bridge.get("index") == "2" and pci(bridge) == (1, 0, 0)
    assert pci(dev.find("interface")) == (2, 1, 0)


def test_q35_no_spare_root_port_when_the_user_manages_pci_controllers():
    out = postparse(dom("<controller type='pci' index='1' model='pcie-root-port'/>"
                        "<interface type='user'><model type='virtio'/></interface>", machine="q35"), CAPS)
    assert len(out.findall("devices/controller[@model='pcie-root-port']")) == 3


def test_drive_addresses_and_implicit_controllers():
    out = postparse(dom("<disk type='file' device='disk'><source file='/a'/><target dev='sdb'/></disk>"
                        "<disk type='file' device='disk'><source file='/b'/><target dev='sdc' bus='sata'/></disk>",
                        machine="q35"), CAPS)
    dev = out.find("devices")
    scsi, sata = dev.findall("disk")
    assert scsi.find("target").get("bus") == "scsi"
    assert scsi.find("address").get("unit") == "1"
    assert sata.find("address").get("unit") == "2"
    assert dev.find("controller[@type='scsi']").get("model") == "lsilogic"


def test_ide_on_q35_is_invalid():
    with pytest.raises(InvalidInput, match="IDE"):
        postparse(dom("<disk type='file'><source file='/a'/><target dev='hda'/></disk>", machine="q35"), CAPS)


def test_console_and_serial_mirror_each_other():
    out = postparse(dom("<serial type='file'><source path='/tmp/s.log'/></serial>"), CAPS)
    console = out.find("devices/console")
    assert console.get("type") == "file" and console.find("source").get("path") == "/tmp/s.log"
    assert out.find("devices/serial/target").attrib == {"type": "isa-serial", "port": "0"}
    out = postparse(dom("<console type='pty'/>"), CAPS)
    assert out.find("devices/serial").get("type") == "pty"


def test_vnc_defaults():
    out = postparse(dom("<graphics type='vnc' listen='0.0.0.0'/>"), CAPS)
    graphics = out.find("devices/graphics")
    assert graphics.get("port") == "-1" and graphics.get("autoport") == "yes"
    assert graphics.find("listen").attrib == {"type": "address", "address": "0.0.0.0"}
    assert out.find("devices/audio").attrib == {"id": "1", "type": "none"}


def test_full_pc_slot_space_is_reported():
    with pytest.raises(InvalidInput, match="no free PCI slot"):
        postparse(dom("<interface type='user'/>" * 31), CAPS)


@pytest.mark.parametrize("dev,index", [("vda", 0), ("sdb", 1), ("hdz", 25), ("vdaa", 26), ("sdab", 27)])
def test_disk_index(dev, index):
    assert disk_index(dev) == index


def test_bad_input_names_the_element():
    with pytest.raises(InvalidInput) as err:
        postparse(dom("<disk type='file'><source file='/a'/></disk>"), CAPS)
    assert err.value.option == "devices/disk/target"


def test_channels_get_virtio_serial_ports_and_controller():
    out = postparse(dom("<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>"
                        "<channel type='pty'><target type='virtio' name='b'/>"
                        "<address type='virtio-serial' controller='0' bus='0' port='3'/></channel>"
                        "<channel type='pty'><target type='virtio' name='c'/></channel>"), CAPS)
    ports = [c.find("address").get("port") for c in out.findall("devices/channel")]
    assert ports == ["1", "3", "2"]  # the lowest free port, as libvirt
    ctrl = out.find("devices/controller[@type='virtio-serial']")
    assert ctrl.get("index") == "0" and ctrl.find("address[@type='pci']") is not None
    assert out.find("devices/channel/source") is None  # the socket path is chosen when the domain starts


def test_usb_ports_follow_libvirt_order():
    out = postparse(dom("<redirdev bus='usb' type='spicevmc'/><sound model='usb'/><input type='tablet'/>"
                        "<disk type='file'><source file='/d'/><target dev='sda' bus='usb'/></disk><hub type='usb'/>"
                        "<graphics type='spice' port='5901'/>"), CAPS)
    ports = {e.tag: e.find("address[@type='usb']").get("port") for e in out.find("devices")
             if e.find("address[@type='usb']") is not None}
    assert ports == {"hub": "1", "disk": "2", "input": "3", "sound": "4", "redirdev": "5"}


def test_q35_ich9_sound_and_bridge_port_reservation():
    out = postparse(dom("<sound model='ich9'/><sound model='ac97'/>", machine="q35"), CAPS)
    assert pci(out.find("devices/sound[@model='ich9']")) == (0, 0x1B, 0)
    bridge = out.find("devices/controller[@model='pcie-to-pci-bridge']")
    assert pci(bridge) == (1, 0, 0)  # the first root port, kept before any device was placed
    assert pci(out.find("devices/sound[@model='ac97']"))[0] == int(bridge.get("index"))


def test_first_console_mirrors_the_first_serial_port():
    out = postparse(dom("<serial type='file'><source path='/log'/></serial><console type='pty'/>"), CAPS)
    console = out.find("devices/console")
    assert console.get("type") == "file" and console.find("source").get("path") == "/log"
    assert console.find("target").attrib == {"type": "serial", "port": "0"}


@pytest.mark.parametrize("graphics,backend", [
    ("<graphics type='spice'/>", "spice"),
    ("<graphics type='spice'/><graphics type='vnc'/>", "none"),
    ("<graphics type='vnc'/><graphics type='spice'/>", "spice"),
])
def test_audio_backend_follows_the_last_display(graphics, backend):
    assert postparse(dom(graphics), CAPS).find("devices/audio").get("type") == backend


@pytest.mark.parametrize("device,option,reason", [
    ("<tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>", "devices/tpm/backend@type",
     "devices/tpm/backend@type model 'tpm-crb' backend 'emulator' needs swtpm, which the embedded driver does not run"),
    ("<filesystem type='mount'><driver type='virtiofs'/><source dir='/s'/><target dir='t'/></filesystem>",
     "devices/filesystem/driver@type", "needs virtiofsd"),
    ("<interface type='vhostuser'><source type='unix' path='/s' mode='client'/><model type='virtio'/></interface>",
     "devices/interface@type", "needs a vhost-user backend process"),
    ("<interface type='user'><backend type='passt'/></interface>", "devices/interface/backend@type", "needs passt"),
    ("<vsock model='virtio'><cid auto='yes'/></vsock>", "devices/vsock/cid", "fixed one"),
    ("<tpm model='tpm-tis'><backend type='passthrough'><device path='/dev/tpm0'/></backend></tpm>", "devices/tpm",
     "is not supported"),
])
def test_devices_needing_a_helper_are_refused_at_define(device, option, reason):
    with pytest.raises(InvalidInput) as err:
        postparse(dom(device), CAPS)
    assert err.value.option == option and reason in str(err.value)


@pytest.mark.parametrize("name", ["../../x", "a/b", ".hidden"])
def test_unix_channel_names_that_would_leave_the_channel_dir_are_refused(name):
    with pytest.raises(InvalidInput) as err:
        postparse(dom(f"<channel type='unix'><target type='virtio' name='{name}'/></channel>"), CAPS)
    assert err.value.option == "devices/channel/target@name"


def test_unix_channel_name_like_a_domain_file_stays_in_the_channel_dir():
    from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.cmdline.chardev import channel_socket_path
    assert channel_socket_path("/r/d", "monitor.sock") == "/r/d/channel/monitor.sock"


@pytest.mark.parametrize("channel,option", [
    ("<channel type='unix'/>", "devices/channel/target"),
    ("<channel type='pty'><target type='virtio' name='a'/>"
     "<address type='pci' domain='0' bus='0' slot='9' function='0'/></channel>", "devices/channel/address@type"),
    ("<channel type='pty'><target type='virtio' name='a'/>"
     "<address type='virtio-serial' controller='0' bus='0' port='x'/></channel>", "devices/channel/address@port"),
])
def test_malformed_channels_are_refused_at_define(channel, option):
    with pytest.raises(InvalidInput) as err:
        postparse(dom(channel), CAPS)
    assert err.value.option == option


def test_virtio_serial_address_without_port_gets_the_lowest_free_one():
    out = postparse(dom("<channel type='pty'><target type='virtio' name='a'/>"
                        "<address type='virtio-serial' controller='0' bus='0' port='1'/></channel>"
                        "<channel type='pty'><target type='virtio' name='b'/>"
                        "<address type='virtio-serial' controller='0' bus='0'/></channel>"), CAPS)
    assert [a.get("port") for a in out.findall("devices/channel/address")] == ["1", "2"]


def test_watchdog_dump_is_refused_at_define():
    with pytest.raises(InvalidInput, match="dump") as err:
        postparse(dom("<watchdog model='i6300esb' action='dump'/>"), CAPS)
    assert err.value.option == "devices/watchdog@action"


def test_spicevmc_redirdev_needs_spice_graphics():
    redir = "<redirdev bus='usb' type='spicevmc'/>"
    with pytest.raises(InvalidInput, match="spice") as err:
        postparse(dom(redir + "<graphics type='vnc'/>"), CAPS)
    assert err.value.option == "devices/redirdev@type"
    assert postparse(dom(redir + "<graphics type='spice'/>"), CAPS).find("devices/redirdev") is not None
