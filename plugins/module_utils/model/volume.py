# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""libvirt storage volume XML: what a volume is, what the module asks for, and the XML both meet in.

A volume's facts (``VolumeFacts``) are read from the XML a driver reports.
The ``volume`` module compares and shows (in its diff) only what it
manages: name, capacity, path, format, backing store and permissions; the
allocation changes as a guest writes and is reported, not compared.
Private to the collection.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.model import units
from ansible_collections.virtops.qemu.plugins.module_utils.model.filemode import octal_mode
from ansible_collections.virtops.qemu.plugins.module_utils.model.names import validate_name
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import (
    XmlNode,
    check_option_text,
    element,
    parse,
    sub,
    to_string,
)

FORMATS = ("raw", "qcow2")
# libvirt creates volumes with this mode when the definition names none.
DEFAULT_MODE = "0600"


class VolumeFacts(NamedTuple):
    name: str
    path: str
    format: str
    capacity: int
    allocation: int = 0
    backing_path: str | None = None
    backing_format: str | None = None
    mode: str | None = None             # four octal digits
    owner: int | None = None
    group: int | None = None


def _bytes(node: XmlNode | None) -> int:
    if node is None or not (node.text or "").strip():
        return 0
    return units.to_bytes(f"{node.text.strip()}{node.get('unit') or 'bytes'}", "bytes", "xml")


def _int(text: str | None) -> int | None:
    try:
        return int((text or "").strip())
    except ValueError:
        return None


def facts_from_xml(xml: str) -> VolumeFacts:
    volume = parse(xml, "volume")
    fmt = volume.find("target/format")
    backing = volume.find("backingStore")
    backing_format = backing.find("format") if backing is not None else None
    mode = (volume.findtext("target/permissions/mode") or "").strip()
    return VolumeFacts(
        name=(volume.findtext("name") or "").strip(),
        path=(volume.findtext("target/path") or "").strip(),
        format=fmt.get("type") if fmt is not None else "raw",
        capacity=_bytes(volume.find("capacity")),
        allocation=_bytes(volume.find("allocation")),
        backing_path=((backing.findtext("path") or "").strip() or None) if backing is not None else None,
        backing_format=backing_format.get("type") if backing_format is not None else None,
        mode=mode.zfill(4) if mode else None,
        owner=_int(volume.findtext("target/permissions/owner")),
        group=_int(volume.findtext("target/permissions/group")),
    )


def shown_xml(facts: VolumeFacts) -> str:
    """The part of a volume's XML the module manages, for its diff and result."""
    volume = element("volume")
    sub(volume, "name", facts.name)
    sub(volume, "capacity", facts.capacity, unit="bytes")
    target = sub(volume, "target")
    sub(target, "path", facts.path)
    sub(target, "format", type=facts.format)
    if facts.mode is not None or facts.owner is not None or facts.group is not None:
        permissions = sub(target, "permissions")
        for tag, value in (("mode", facts.mode), ("owner", facts.owner), ("group", facts.group)):
            if value is not None:
                sub(permissions, tag, value)
    if facts.backing_path:
        backing = sub(volume, "backingStore")
        sub(backing, "path", facts.backing_path)
        sub(backing, "format", type=facts.backing_format or "raw")
    return to_string(volume)


def creation_xml(facts: VolumeFacts, allocation: int | None) -> str:
    """The XML a driver creates the volume from (virStorageVolCreateXML)."""
    volume = element("volume", type="file")
    sub(volume, "name", facts.name)
    sub(volume, "capacity", facts.capacity, unit="bytes")
    if allocation is not None:
        sub(volume, "allocation", allocation, unit="bytes")
    target = sub(volume, "target")
    sub(target, "format", type=facts.format)
    permissions = sub(target, "permissions")
    for tag, value in (("mode", facts.mode), ("owner", facts.owner), ("group", facts.group)):
        if value is not None:
            sub(permissions, tag, value)
    if facts.backing_path:
        backing = sub(volume, "backingStore")
        sub(backing, "path", facts.backing_path)
        sub(backing, "format", type=facts.backing_format or "raw")
    return to_string(volume)


# -- the module's request ---------------------------------------------------------------
# The digests source.checksum may name, as ansible.builtin.get_url writes them: "sha256:<hex>".
CHECKSUMS = {"sha1": 40, "sha224": 56, "sha256": 64, "sha384": 96, "sha512": 128}


class ImageSource(NamedTuple):
    """An image a new volume is imported from: a file on the module's host or an http(s) URL."""
    path: str | None = None
    url: str | None = None
    checksum: tuple[str, str] | None = None     # (algorithm, lower-case hex)
    validate_certs: bool = True


class VolumeRequest(NamedTuple):
    pool: str
    name: str
    state: str = "present"
    capacity: int | None = None
    allocation: int | None = None
    format: str | None = None
    backing: str | None = None              # a path or "pool/volume"
    backing_format: str | None = None
    clone_from: tuple[str, str] | None = None
    mode: str | None = None
    owner: int | None = None
    group: int | None = None
    allow_shrink: bool = False
    source: ImageSource | None = None


def request_from_params(params: dict) -> VolumeRequest:
    """Check the module's options; connects to nothing."""
    pool = validate_name(params.get("pool"), "pool", "pool")
    name = validate_name(params.get("name"), "volume", "name")
    state = params.get("state") or "present"
    if state not in ("present", "absent"):
        raise InvalidInput(f"must be present or absent, got {state!r}", "state")
    fmt = params.get("format")
    if fmt is not None and fmt not in FORMATS:
        raise InvalidInput(f"must be one of {', '.join(FORMATS)}, got {fmt!r}", "format")
    check_option_text(params, ("backing_store",))
    request = VolumeRequest(
        pool=pool, name=name, state=state, format=fmt,
        capacity=_size(params.get("capacity"), "capacity"),
        allocation=_size(params.get("allocation"), "allocation"),
        clone_from=_clone_source(params.get("clone_from"), pool),
        mode=_mode(params.get("mode")), owner=params.get("owner"), group=params.get("group"),
        allow_shrink=bool(params.get("allow_shrink")),
        source=image_source(params.get("source")))
    if request.source is not None and (request.clone_from or params.get("backing_store")):
        raise InvalidInput("a volume is imported from an image, cloned or put on a backing store; "
                           "give only one of source, clone_from and backing_store", "source")
    return _with_backing(request, params.get("backing_store"))


def image_source(value: dict | None) -> ImageSource | None:
    if not value:
        return None
    path, url = value.get("path"), value.get("url")
    if bool(path) == bool(url):
        raise InvalidInput("give the image's path or its url, one of them", "source")
    if path and not os.path.isabs(path):
        raise InvalidInput(f"must be an absolute path, got {path!r}", "source.path")
    if url and not str(url).lower().startswith(("http://", "https://")):
        raise InvalidInput(f"must be an http:// or https:// URL, got {url!r}", "source.url")
    validate_certs = value.get("validate_certs")
    return ImageSource(path=path or None, url=url or None, checksum=parse_checksum(value.get("checksum")),
                       validate_certs=True if validate_certs is None else bool(validate_certs))


def parse_checksum(value: str | None) -> tuple[str, str] | None:
    """``algorithm:hex`` as ansible.builtin.get_url takes it."""
    if not value:
        return None
    algorithm, sep, digest = str(value).strip().partition(":")
    algorithm, digest = algorithm.lower(), digest.strip().lower()
    if not sep or algorithm not in CHECKSUMS:
        raise InvalidInput(f"write it as ALGORITHM:HEX with ALGORITHM one of {', '.join(CHECKSUMS)}, "
                           f"got {value!r}", "source.checksum")
    if len(digest) != CHECKSUMS[algorithm] or any(c not in "0123456789abcdef" for c in digest):
        raise InvalidInput(f"a {algorithm} checksum is {CHECKSUMS[algorithm]} hexadecimal digits, got {digest!r}",
                           "source.checksum")
    return algorithm, digest


def _size(value, option: str) -> int | None:
    if value is None:
        return None
    size = units.to_bytes(value, "bytes", option)
    if size <= 0 and option == "capacity":
        raise InvalidInput("must be larger than zero", option)
    return size


def _mode(value) -> str | None:
    return None if value is None else octal_mode(value, "mode")


def _clone_source(value, pool: str) -> tuple[str, str] | None:
    """``name`` (a volume of the same pool) or ``pool/name``."""
    if value is None:
        return None
    parts = str(value).split("/")
    if len(parts) == 1:
        return pool, validate_name(parts[0], "volume", "clone_from")
    if len(parts) == 2:
        return validate_name(parts[0], "pool", "clone_from"), validate_name(parts[1], "volume", "clone_from")
    raise InvalidInput(f"name a volume as NAME or POOL/NAME, got {value!r}", "clone_from")


def _with_backing(request: VolumeRequest, backing: dict | None) -> VolumeRequest:
    if not backing:
        return request
    fmt = backing.get("format")
    if fmt is not None and fmt not in FORMATS:
        raise InvalidInput(f"must be one of {', '.join(FORMATS)}, got {fmt!r}", "backing_store.format")
    if backing.get("path") and backing.get("volume"):
        raise InvalidInput("give path or volume, not both", "backing_store")
    if backing.get("path"):
        if not os.path.isabs(backing["path"]):
            raise InvalidInput(f"must be an absolute path, got {backing['path']!r}", "backing_store.path")
        source = backing["path"]
    elif backing.get("volume"):
        owner, name = _clone_source(backing["volume"], request.pool) or (request.pool, "")
        source = f"{owner}/{name}"
    else:
        raise InvalidInput("give the backing file's path or volume", "backing_store")
    if request.format not in (None, "qcow2"):
        raise InvalidInput("only a qcow2 volume can have a backing store", "format")
    return request._replace(backing=source, backing_format=fmt, format=request.format or "qcow2")
