"""The pure parts of the molecule base-image builder: cache key, module order, initramfs archive."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

BUILDER = Path(__file__).resolve().parents[2] / "extensions" / "molecule" / "resources" / "image" / "build_image.py"


@pytest.fixture(scope="module")
def builder():
    spec = importlib.util.spec_from_file_location("virtops_build_image", BUILDER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cache_key_follows_package_versions(builder):
    inputs = {"suite": "bookworm", "mirrors": ["m"], "packages": {"python3": "3.11.2-1+b1"}, "source": "s"}
    same = dict(inputs)
    newer = {**inputs, "packages": {"python3": "3.11.2-1+b2"}}
    assert builder.cache_key(inputs) == builder.cache_key(same)
    assert builder.cache_key(inputs) != builder.cache_key(newer)
    assert builder.cache_key(inputs).startswith("image-")


def test_load_order_puts_dependencies_first(builder, tmp_path):
    (tmp_path / "modules.dep").write_text(
        "kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n"
        "kernel/drivers/virtio/virtio_ring.ko:\n"
        "kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n"
        "kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci-legacy_dev.ko "
        "kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n"
        "kernel/drivers/virtio/virtio_pci-legacy_dev.ko:\n")
    order = builder.load_order(tmp_path, ("virtio_pci", "virtio_blk"))
    names = [builder.module_name(path) for path in order]
    assert names == ["virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci", "virtio_blk"]


def test_load_order_names_a_missing_module(builder, tmp_path):
    (tmp_path / "modules.dep").write_text("kernel/drivers/virtio/virtio.ko:\n")
    with pytest.raises(builder.BuildError, match="virtio_blk"):
        builder.load_order(tmp_path, ("virtio_blk",))


def test_initramfs_archive_unpacks_with_cpio(builder, tmp_path):
    archive = builder.Cpio()
    archive.directory("bin")
    archive.file("bin/hello", b"hello\n", 0o755)
    archive.symlink("bin/sh", "hello")
    archive.device("console", 0o600, 5, 1)
    listing = subprocess.run(["cpio", "-t", "-v", "--quiet"], input=archive.finish(),
                             capture_output=True, check=True).stdout.decode()
    lines = {line.split()[-1] if "->" not in line else line.split()[-3]: line for line in listing.splitlines()}
    assert set(lines) == {"bin", "bin/hello", "bin/sh", "console"}
    assert lines["bin/hello"].startswith("-rwxr-xr-x")
    assert lines["bin/sh"].startswith("l") and lines["bin/sh"].endswith("-> hello")
    assert lines["console"].startswith("crw-------")


def test_cache_key_names_the_kind(builder):
    inputs = {"kind": "cloud", "suite": "bookworm", "mirrors": ["m"], "packages": {"cloud-init": "22.4.2-1"},
              "source": "s"}
    assert builder.cache_key(inputs, builder.PREFIXES["cloud"]).startswith("cloud-")
    assert builder.cache_key(inputs, "cloud-") != builder.cache_key({**inputs, "kind": "minimal"}, "cloud-")


def test_prune_keeps_one_image_per_kind(builder, tmp_path):
    for name in ("image-old", "image-new", "cloud-new", "unrelated"):
        (tmp_path / name).mkdir()
    builder.prune(tmp_path, builder.PREFIXES["minimal"], keep="image-new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cloud-new", "image-new", "unrelated"]


def test_cloud_partition_table_is_read_back_by_sfdisk(builder, tmp_path):
    disk = tmp_path / "disk.raw"
    root_start, root_size = builder.ESP_START + builder.ESP_SIZE, 64 << 20
    with open(disk, "wb") as f:
        f.truncate(root_start + root_size + (1 << 20))
    subprocess.run(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", str(disk)],
                   input=builder.partition_table(root_start, root_size), text=True, check=True)
    table = json.loads(subprocess.run(["sfdisk", "--json", str(disk)], capture_output=True, text=True,
                                      check=True).stdout)["partitiontable"]
    assert table["label"] == "gpt"
    esp, root = table["partitions"]
    assert (esp["start"] * 512, esp["size"] * 512) == (builder.ESP_START, builder.ESP_SIZE)
    assert esp["type"] == builder.ESP_TYPE
    assert (root["start"] * 512, root["size"] * 512, root["type"]) == (root_start, root_size, builder.ROOT_TYPE)


def test_grub_config_finds_the_root_by_uuid_and_boots_it_with_a_serial_console(builder):
    config = builder.grub_config("0f3c2a9e-1b7d-4c55-9a8e-2d6f1e0b7c41")
    assert "search --no-floppy --fs-uuid --set=root 0f3c2a9e-1b7d-4c55-9a8e-2d6f1e0b7c41\n" in config
    assert "linux /vmlinuz root=UUID=0f3c2a9e-1b7d-4c55-9a8e-2d6f1e0b7c41 ro " in config
    assert "console=ttyS0" in config and "initrd /initrd.img\n" in config
