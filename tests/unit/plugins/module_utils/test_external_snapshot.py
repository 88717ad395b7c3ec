"""The embedded driver's definition edits for disk-only snapshots, and their metadata, against libvirt's schemas."""

from __future__ import annotations

import copy

from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import external_snapshot as external
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.snapshot import _metadata
from ansible_collections.virtops.qemu.plugins.module_utils.model import schema
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import parse, to_string

DOMAIN = """<domain type='qemu'><name>vm</name><memory>65536</memory>
<os><type arch='x86_64' machine='pc'>hvm</type></os><devices>
<disk type='file' device='disk'><driver name='qemu' type='{fmt}'/><source file='/img/base'/>{below}
<target dev='vda' bus='virtio'/></disk></devices></domain>"""
GOLDEN = "<backingStore type='file'><format type='qcow2'/><source file='/img/golden.qcow2'/></backingStore>"


def definition(fmt: str = "qcow2", below: str = ""):
    return parse(DOMAIN.format(fmt=fmt, below=below), "domain")


def test_the_disk_becomes_the_overlay_with_its_image_below_as_libvirt_writes_it():
    config = definition("raw")
    disk = external.disk_of(config, "vda")
    external.with_overlay(disk, "/img/over.qcow2")
    schema.validate(config, "domain")
    assert disk.find("source").get("file") == "/img/over.qcow2" and disk.find("driver").get("type") == "qcow2"
    below = disk.find("backingStore")
    assert below.get("type") == "file" and below.find("source").get("file") == "/img/base"
    assert below.find("format").get("type") == "raw" and below.find("backingStore") is None


def test_an_image_with_its_own_backing_store_keeps_it_below_and_gets_it_back():
    config = definition(below=GOLDEN)
    before = to_string(config)
    disk = external.disk_of(config, "vda")
    external.with_overlay(disk, "/img/over.qcow2")
    schema.validate(config, "domain")
    chain = [node.find("source").get("file") for node in disk.iter("backingStore")]
    assert chain == ["/img/base", "/img/golden.qcow2"]
    external.without_overlay(disk, None)
    assert to_string(config) == before


def test_without_a_backing_store_the_disk_goes_back_as_the_snapshot_saved_it():
    saved = definition("raw")
    config = copy.deepcopy(saved)
    disk = external.disk_of(config, "vda")
    external.with_overlay(disk, "/img/over.qcow2")
    disk.remove(disk.find("backingStore"))
    external.without_overlay(disk, external.disk_of(saved, "vda"))
    assert to_string(config) == to_string(saved)


def test_the_metadata_of_an_external_snapshot_is_libvirts():
    wanted = parse("<domainsnapshot><name>e1</name><description>d</description><memory snapshot='no'/><disks>"
                   "<disk name='vda' snapshot='external'><source file='/img/over.qcow2'/></disk></disks>"
                   "</domainsnapshot>", "domainsnapshot")
    assert external.overlays_of(wanted) == [("vda", "/img/over.qcow2")]
    tree = _metadata(wanted, "e1", "disk-snapshot", "no", "s0", 5, [("vda", "external", "/img/over.qcow2")],
                     definition())
    schema.validate(tree, "domainsnapshot")
    assert external.overlays_of(tree) == [("vda", "/img/over.qcow2")]
    assert tree.findtext("state") == "disk-snapshot" and tree.findtext("parent/name") == "s0"
