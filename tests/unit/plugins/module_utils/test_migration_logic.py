"""Migration logic that needs no host: libvirt flags and data URI, which disks move and their node names."""

from __future__ import annotations

import libvirt
import pytest

from ansible_collections.virtops.qemu.plugins.module_utils.driver import libvirt_migration as lm
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import migration
from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import parse

OPTIONS = {"live": True, "copy_storage": "none", "persistent": True, "undefine_source": True,
           "auto_converge": False}

DOMAIN = """<domain type='qemu'><name>d</name><devices>
  <disk type='file' device='cdrom'><source file='/iso/x.iso'/><target dev='hdc' bus='ide'/><readonly/></disk>
  <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/img/a.qcow2'/>
    <target dev='vda' bus='virtio'/></disk>
  <disk type='file' device='disk'><source file='/img/shared.raw'/><target dev='vdb' bus='virtio'/><shareable/></disk>
</devices></domain>"""


def test_live_copy_all_flags():
    flags = lm.flags_for({**OPTIONS, "copy_storage": "all", "auto_converge": True})
    for name in ("VIR_MIGRATE_PEER2PEER", "VIR_MIGRATE_LIVE", "VIR_MIGRATE_PERSIST_DEST",
                 "VIR_MIGRATE_UNDEFINE_SOURCE", "VIR_MIGRATE_NON_SHARED_DISK", "VIR_MIGRATE_AUTO_CONVERGE"):
        assert flags & getattr(libvirt, name), name
    assert not flags & libvirt.VIR_MIGRATE_NON_SHARED_INC


def test_offline_flags_persist_and_never_live():
    flags = lm.flags_for({**OPTIONS, "live": False, "persistent": False, "undefine_source": False})
    assert flags & libvirt.VIR_MIGRATE_OFFLINE and flags & libvirt.VIR_MIGRATE_PERSIST_DEST
    assert not flags & libvirt.VIR_MIGRATE_LIVE and not flags & libvirt.VIR_MIGRATE_UNDEFINE_SOURCE


@pytest.mark.parametrize(("uri", "data"), [("qemu+tcp://10.0.0.2/system", "tcp://10.0.0.2"),
                                           ("qemu+ssh://root@kvm02/system", "tcp://kvm02"),
                                           ("qemu+tcp://[fd00::2]/system", "tcp://[fd00::2]")])
def test_data_uri_is_the_destination_host(uri, data):
    assert lm.data_uri(uri) == data


def test_data_uri_needs_a_host():
    with pytest.raises(InvalidInput) as caught:
        lm.data_uri("qemu:///system")
    assert caught.value.option == "destination"


def test_only_writable_unshared_file_disks_are_copied():
    assert [d.find("target").get("dev") for d in migration.copied_disks(parse(DOMAIN, "domain"))] == ["vda"]


def test_format_nodes_count_from_the_last_disk_as_the_command_line_does():
    assert migration._format_nodes(parse(DOMAIN, "domain")) == {
        "hdc": "libvirt-3-format", "vda": "libvirt-2-format", "vdb": "libvirt-1-format"}


def test_offline_copy_writes_into_the_export_without_zeros():
    argv = migration._convert_argv("/img/a.qcow2", "qcow2", "nbd://10.0.0.2:10809/vda",
                                   {"copy_storage": "all", "bandwidth": 0})
    assert argv == ["qemu-img", "convert", "-q", "-n", "--target-is-zero", "-f", "qcow2", "/img/a.qcow2",
                    "-O", "raw", "nbd://10.0.0.2:10809/vda"]


def test_offline_incremental_copy_reads_the_top_image_alone_at_the_bandwidth():
    options = {"copy_storage": "incremental", "bandwidth": 5}
    argv = migration._convert_argv("/img/a.qcow2", "qcow2", "nbd://h:1/vda", options)
    top = 'json:{"driver": "qcow2", "backing": null, "file": {"driver": "file", "filename": "/img/a.qcow2"}}'
    assert argv[5:8] == ["-r", "5M", top]
