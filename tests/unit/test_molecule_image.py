"""The pure parts of the molecule base-image builder: cache key, module order, initramfs archive."""

from __future__ import annotations

import importlib.util
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
