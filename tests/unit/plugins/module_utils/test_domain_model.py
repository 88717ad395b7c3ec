"""Domain rules: generated values are kept, user-owned lists follow the options."""

import pytest

from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.model import domain as model
from ansible_collections.virtops.qemu.plugins.module_utils.model.domain_options import render
from ansible_collections.virtops.qemu.plugins.module_utils.model.names import validate_name

STORED = """
<domain type='qemu'>
  <name>vm1</name>
  <uuid>0b5c6a64-8a59-4c55-9a6b-4f0f7b1c2d3e</uuid>
  <memory unit='KiB'>262144</memory>
  <currentMemory unit='KiB'>262144</currentMemory>
  <vcpu placement='static'>1</vcpu>
  <os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type><boot dev='hd'/></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='/img/a.raw'/>
      <target dev='vda' bus='virtio'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/>
    </disk>
    <controller type='pci' index='0' model='pci-root'/>
    <interface type='user'>
      <mac address='52:54:00:aa:bb:cc'/>
      <model type='virtio'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/>
    </interface>
    <graphics type='vnc' port='-1' autoport='yes'/>
    <memballoon model='virtio'/>
  </devices>
</domain>
"""


def stored():
    return model.parse_domain(STORED)


def desired(**options):
    domain, owned = render({"name": "vm1", **options})
    return model.normalise(domain), owned


def merged(**options):
    want, owned = desired(**options)
    return model.merge_domain(stored(), want, owned)


def test_same_options_as_stored_change_nothing():
    result = merged(type="qemu", memory="256MiB", vcpus=1, machine="pc",
                    disks=[{"path": "/img/a.raw", "format": "raw"}],
                    interfaces=[{"type": "user"}], graphics={"type": "vnc"})
    assert not result.changed, result.changes


def test_memory_change_touches_only_memory():
    result = merged(memory="512MiB")
    assert sorted(result.changes) == ["domain/currentMemory#text", "domain/memory#text"]
    assert result.tree.findtext("memory") == "524288"


def test_interface_without_mac_keeps_generated_mac_and_address():
    result = merged(interfaces=[{"type": "user", "model": "e1000"}])
    nic = result.tree.find("devices/interface")
    assert nic.find("mac").get("address") == "52:54:00:aa:bb:cc"
    assert nic.find("address").get("slot") == "0x03"
    assert nic.find("model").get("type") == "e1000"


def test_disk_list_is_owned():
    result = merged(disks=[{"path": "/img/b.qcow2", "format": "qcow2", "target": "vdb"}])
    assert [d.find("target").get("dev") for d in result.tree.iterfind("devices/disk")] == ["vdb"]
    assert "domain/devices/disk-" in result.changes


def test_unmentioned_devices_are_kept():
    result = merged(vcpus=2)
    assert len(result.tree.findall("devices/disk")) == 1
    assert result.tree.find("devices/memballoon") is not None


def test_graphics_none_removes_the_console():
    result = merged(graphics={"type": "none"})
    assert result.tree.find("devices/graphics") is None
    assert result.changed


def test_q35_is_not_pc():
    assert merged(machine="q35").changed


def test_mac_case_does_not_matter():
    assert not merged(interfaces=[{"type": "user", "mac": "52:54:00:AA:BB:CC"}]).changed


def test_xml_memory_units_are_normalised():
    domain = model.normalise(model.parse_domain("<domain><name>vm1</name><memory unit='MiB'>256</memory></domain>"))
    assert not model.merge_domain(stored(), domain, model.owned_lists_in(domain)).changed


def test_owned_lists_in_verbatim_xml():
    domain = model.parse_domain("<domain><name>x</name><devices><disk/><controller/></devices></domain>")
    assert model.owned_lists_in(domain) == {"domain/devices/disk"}


def test_creation_defaults_fill_only_gaps():
    domain = model.with_creation_defaults(model.parse_domain("<domain type='qemu'><name>x</name></domain>"))
    assert domain.get("type") == "qemu"
    assert domain.findtext("memory") == "1048576" and domain.findtext("vcpu") == "1"
    assert domain.findtext("os/type") == "hvm"


@pytest.mark.parametrize("name", ["a/b", "", "../x", ".hidden", "-dash", "sp ace", "x" * 201])
def test_bad_names(name):
    with pytest.raises(InvalidInput) as err:
        validate_name(name, "domain")
    assert str(err.value).startswith("name: ")


def test_malformed_xml_names_the_option():
    with pytest.raises(InvalidInput, match="^xml: malformed XML"):
        model.parse_domain("<domain><name>x</domain>")


def test_entities_are_not_expanded():
    text = ('<?xml version="1.0"?><!DOCTYPE d [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
            "<domain><name>&e;</name></domain>")
    domain = model.parse_domain(text)
    assert "root:" not in (domain.findtext("name") or "")


@pytest.mark.parametrize("options, words", [
    ({"disks": [{"device": "disk"}]}, "needs a path or a volume"),
    ({"disks": [{"path": "relative.img"}]}, "must be absolute"),
    ({"disks": [{"path": "/a", "target": "vda"}, {"path": "/b", "target": "vda"}]}, "used by two disks"),
    ({"disks": [{"volume": "v"}]}, "needs both pool and volume"),
    ({"interfaces": [{"model": "virtio"}]}, "set network, bridge, or type: user"),
    ({"serials": [{"type": "file"}]}, "needs a path"),
    ({"interfaces": [{"bridge": "br0", "portgroup": "slow"}]}, r"interfaces\[0\]\.portgroup: .*type bridge"),
    ({"memory": "lots"}, "memory: expected a size"),
    ({"graphics": {"type": "vnc", "password": "nine-char"}}, "graphics.password: a VNC password has at most 8"),
    ({"memory": "12 parsecs"}, "unknown unit"),
])
def test_bad_structured_options(options, words):
    with pytest.raises(InvalidInput, match=words):
        render({"name": "vm1", **options})


def test_an_interface_names_the_portgroup_of_its_network():
    domain = render({"name": "vm1", "interfaces": [{"network": "lab", "portgroup": "slow"}]})[0]
    source = domain.find("devices/interface/source")
    assert (source.get("network"), source.get("portgroup")) == ("lab", "slow")


def test_disk_targets_follow_the_bus():
    domain = render({"name": "vm1", "disks": [
        {"path": "/a"}, {"path": "/b"}, {"device": "cdrom"}, {"path": "/dev/sdz", "bus": "ide"}]})[0]
    targets = [(d.get("type"), d.find("target").get("dev")) for d in domain.iterfind("devices/disk")]
    assert targets == [("file", "vda"), ("file", "vdb"), ("file", "sda"), ("block", "hda")]


@pytest.mark.parametrize("kind", ["domain", "network", "pool"])
def test_a_bad_name_is_refused_with_its_kind(kind):
    with pytest.raises(InvalidInput, match=f"^name: 'a/b' is not a valid {kind} name"):
        validate_name("a/b", kind)
    with pytest.raises(InvalidInput, match=f"^name: a {kind} name is required"):
        validate_name("", kind)
