"""The embedded storage driver's image facts: a qcow2 header read directly says what qemu-img info says.

Each image is made by qemu-img itself; the reader's answer must carry the
same format, virtual size and backing file as ``qemu-img info`` of it, and
any other file must be left to qemu-img.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import images

MiB = 1024 * 1024
KEYS = ("format", "virtual-size", "backing-filename", "full-backing-filename", "backing-filename-format")


def qemu_img(*args: str) -> str:
    return subprocess.run(["qemu-img", *args], check=True, capture_output=True, text=True).stdout


def told_by_qemu_img(path: str) -> dict:
    found = json.loads(qemu_img("info", "-U", "--output=json", path))
    return {key: found[key] for key in KEYS if key in found}


@pytest.fixture
def base(tmp_path):
    path = tmp_path / "base.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(path), str(32 * MiB))
    return path


CASES = {
    "qcow2 v3": ["-f", "qcow2"],
    "qcow2 v2": ["-f", "qcow2", "-o", "compat=0.10"],
    "2 MiB clusters": ["-f", "qcow2", "-o", "cluster_size=2M"],
    "512 byte clusters": ["-f", "qcow2", "-o", "cluster_size=512"],
    "lazy refcounts, 64-bit refcounts": ["-f", "qcow2", "-o", "lazy_refcounts=on,refcount_bits=64"],
    "extended L2": ["-f", "qcow2", "-o", "extended_l2=on,cluster_size=128k"],
    "relative backing file with format": ["-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2"],
    "absolute backing file, v2": ["-f", "qcow2", "-o", "compat=0.10", "-b", "{base}", "-F", "qcow2"],
    "backing file in a subdirectory": ["-f", "qcow2", "-u", "-b", "sub/base.raw", "-F", "raw"],
}


@pytest.mark.parametrize("options", CASES.values(), ids=CASES.keys())
def test_a_qcow2_header_says_what_qemu_img_info_says(tmp_path, base, options):
    path = str(tmp_path / "image.qcow2")
    qemu_img("create", "-q", *[option.format(base=base) for option in options], path, str(48 * MiB + 512))

    found = images.qcow2_info(path)

    assert found is not None
    assert {key: found[key] for key in KEYS if key in found} == told_by_qemu_img(path)
    assert images.info(path) == found


def test_a_backing_file_without_format_behind_an_unknown_extension(tmp_path, base):
    path = tmp_path / "image.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(path), str(32 * MiB))
    header = path.read_bytes()[:65536]
    at = header.index(images.QCOW2_BACKING_FORMAT.to_bytes(4, "big"))
    with open(path, "r+b") as image:      # qemu 7.2 makes no such image; an older one or another tool may
        image.seek(at)
        image.write((0x0BADF00D).to_bytes(4, "big"))

    found = images.qcow2_info(str(path))

    assert found is not None and "backing-filename-format" not in found
    assert {key: found[key] for key in KEYS if key in found} == told_by_qemu_img(str(path))


@pytest.mark.parametrize("fmt", ["raw", "vmdk", "vdi", "qed", "vpc"])
def test_other_formats_are_left_to_qemu_img(tmp_path, fmt):
    path = str(tmp_path / f"image.{fmt}")
    qemu_img("create", "-q", "-f", fmt, path, str(16 * MiB))

    assert images.qcow2_info(path) is None
    assert {key: value for key, value in images.info(path).items() if key in KEYS} == told_by_qemu_img(path)


def test_a_raw_image_starting_like_qcow2_but_too_short_for_a_header_is_raw(tmp_path):
    path = tmp_path / "short.raw"
    path.write_bytes(b"QFI\xfb" + bytes(60))

    assert images.qcow2_info(str(path)) is None
    assert images.info(str(path))["format"] == told_by_qemu_img(str(path))["format"] == "raw"


def test_a_protocol_backing_file_is_left_to_qemu_img(tmp_path):
    path = str(tmp_path / "image.qcow2")
    qemu_img("create", "-q", "-f", "qcow2", "-u", "-b", "nbd:localhost:10809", "-F", "raw", path, str(16 * MiB))

    assert images.qcow2_info(path) is None
    assert images.info(path)["backing-filename"] == "nbd:localhost:10809"


def test_an_unknown_incompatible_feature_is_left_to_qemu_img(tmp_path):
    path = tmp_path / "image.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(path), str(16 * MiB))
    with open(path, "r+b") as image:
        image.seek(72)
        image.write((1 << 40).to_bytes(8, "big"))

    assert images.qcow2_info(str(path)) is None


def test_an_unreadable_file_is_left_to_qemu_img_and_its_error(tmp_path):
    missing = os.path.join(tmp_path, "missing.qcow2")

    assert images.qcow2_info(missing) is None
    with pytest.raises(Exception, match="missing.qcow2"):
        images.info(missing)
