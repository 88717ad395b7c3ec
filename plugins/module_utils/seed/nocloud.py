# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A cloud-init NoCloud seed: its three files, and the ISO 9660 image labelled ``cidata`` that carries them.

cloud-init's NoCloud data source finds the seed by its filesystem label
(``cidata``) and reads ``user-data``, ``meta-data`` and ``network-config``
from it.  Everything here is pure Python and runs on the managed host.

Mappings are written as JSON, never through a YAML library: modules run on
the managed host, where ansible-core guarantees Python but not PyYAML, and
cloud-init reads these files as YAML, of which this JSON is a subset (see
_to_json for the two spots where YAML 1.1 and JSON part ways).  The same
input therefore gives the same bytes on every host.

Private to the collection.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.fileio import atomic_write, read_text
from ansible_collections.virtops.qemu.plugins.module_utils.seed.iso9660 import build_image

VOLUME_ID = "cidata"
USER_DATA = "user-data"
META_DATA = "meta-data"
NETWORK_CONFIG = "network-config"
CLOUD_CONFIG = "#cloud-config"
# The starts cloud-init recognises a user-data part by (it ignores case and leading blanks);
# "#cloud-config" covers "#cloud-config-archive" and "#include" covers "#include-once".
USER_DATA_HEADERS = (
    CLOUD_CONFIG, "#!", "#include", "#cloud-boothook", "#part-handler", "#upstart-job",
    "## template: jinja", "content-type:", "mime-version:",
)
NETWORK_CONFIG_VERSIONS = (1, 2)
# Characters JSON leaves raw in a string that YAML rejects (non-printable) or reads as line breaks.
# YAML's limit on an implicit key (here a JSON string, quotes and escapes included).
_YAML_KEY_LIMIT = 1024
_YAML_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")


@dataclass(frozen=True)
class Seed:
    """The seed's files (name to content) and the instance id its meta-data gives."""

    files: dict[str, bytes]
    instance_id: str

    def image(self) -> bytes:
        """The ISO 9660 image cloud-init finds by its label ``cidata``; the same files give the same bytes."""
        return build_image(VOLUME_ID, self.files)


def build_seed(hostname: str, user_data: str | Mapping | None = None, meta_data: Mapping | None = None,
               network_config: Mapping | None = None, option: str = "cloud_init") -> Seed:
    """The NoCloud seed of a guest named ``hostname``; ``option`` prefixes the option names in errors.

    ``user_data``: a string is written verbatim and must start like a
    user-data part cloud-init knows (``#cloud-config``, ``#!``, ...); a
    mapping is written as cloud-config (``#cloud-config`` and the mapping);
    none gives an empty file.  ``meta_data`` adds to (or overrides) the
    defaults: ``local-hostname`` is ``hostname`` and ``instance-id`` derives
    from the rest of the seed, so it stays the same as long as the content
    does and changes (and cloud-init runs its first-boot steps again) when it
    changes.  ``network_config``, when given, is written as network-config
    (version 1 or 2, top-level or under ``network``).
    """
    if not isinstance(hostname, str) or not hostname:
        raise InvalidInput("the guest's name must be a non-empty string", "name")
    files = {USER_DATA: _user_data(user_data, f"{option}.user_data")}
    if network_config is not None:
        files[NETWORK_CONFIG] = _network_config(network_config, f"{option}.network_config")
    meta = _meta_data(meta_data, hostname, f"{option}.meta_data")
    given_id = meta.pop("instance-id", None)
    instance_id = given_id or _instance_id(files, _document(meta, f"{option}.meta_data"))
    files[META_DATA] = _document({"instance-id": instance_id, **meta}, f"{option}.meta_data")
    return Seed(files, instance_id)


def write_seed(path: str, image: bytes, mode: int | None = None) -> bool:
    """Write ``image`` to ``path`` atomically unless it already holds it; True when written.

    A new file is private (0600: user-data often holds secrets) unless
    ``mode`` says otherwise; a replaced one keeps its mode and owner.
    """
    # fileio works on text; surrogateescape maps every byte to one code point and back.
    text = image.decode("utf-8", "surrogateescape")
    if read_text(path) == text:
        return False
    atomic_write(path, text, mode)
    return True


# -- the three files ---------------------------------------------------------

def _user_data(value: str | Mapping | None, option: str) -> bytes:
    if value is None:
        return b""
    if isinstance(value, Mapping):
        return _encode(f"{CLOUD_CONFIG}\n{_to_json(value, option)}\n", option)
    if not isinstance(value, str):
        raise InvalidInput(f"must be a string or a mapping, not {_kind(value)}", option)
    if value and not value.lstrip().lower().startswith(tuple(h.lower() for h in USER_DATA_HEADERS)):
        raise InvalidInput("a string must start like a user-data part cloud-init knows: "
                           + ", ".join(repr(h) for h in USER_DATA_HEADERS)
                           + " (or pass a mapping, written as #cloud-config)", option)
    return _encode(value, option)


def _meta_data(value: Mapping | None, hostname: str, option: str) -> dict:
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise InvalidInput(f"must be a mapping, not {_kind(value)}", option)
    for key in ("instance-id", "local-hostname"):
        if key in value and (not isinstance(value[key], str) or not value[key]):
            raise InvalidInput("must be a non-empty string", f"{option}.{key}")
    return {"local-hostname": hostname, **value}


def _network_config(value: Mapping, option: str) -> bytes:
    if not isinstance(value, Mapping):
        raise InvalidInput(f"must be a mapping, not {_kind(value)}", option)
    config, where = value, option
    if isinstance(value.get("network"), Mapping):
        config, where = value["network"], f"{option}.network"
    version = config.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version not in NETWORK_CONFIG_VERSIONS:
        raise InvalidInput(f"must be 1 or 2, not {version!r}", f"{where}.version")
    return _document(value, option)


def _instance_id(files: dict[str, bytes], meta_data: bytes) -> str:
    """An id that changes exactly when the seed's content (meta-data without the id) does."""
    digest = hashlib.sha256()
    parts = {**files, META_DATA: meta_data}
    for name in sorted(parts):
        digest.update(f"{name}\0{len(parts[name])}\0".encode() + parts[name])
    return f"iid-{digest.hexdigest()[:20]}"


def _document(value: Mapping, option: str) -> bytes:
    return _encode(_to_json(value, option) + "\n", option)


def _encode(text: str, option: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(f"is not valid Unicode text ({exc.reason} at character {exc.start})", option) from exc


# -- JSON that YAML 1.1 reads the same -----------------------------------------

def _to_json(value: object, option: str, indent: str = "") -> str:
    """``value`` as indented JSON, with the errors naming the option path (``users[0].name``).

    Two JSON spellings that YAML 1.1 (cloud-init's PyYAML) reads otherwise
    are avoided: a float without a dot (``1e+20`` would be a string) and a
    control character left raw in a string.
    """
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return _float(value, option)
    if isinstance(value, str):
        return _YAML_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(value, ensure_ascii=False))
    if isinstance(value, Mapping):
        return _mapping(value, option, indent)
    if isinstance(value, (list, tuple)):
        inner = indent + "  "
        items = [inner + _to_json(item, f"{option}[{i}]", inner) for i, item in enumerate(value)]
        return _bracketed("[", items, "]", indent)
    raise InvalidInput(f"cannot be written as YAML: {_kind(value)}", option)


def _mapping(value: Mapping, option: str, indent: str) -> str:
    inner, items = indent + "  ", []
    for key, item in value.items():
        if not isinstance(key, str):
            raise InvalidInput(f"keys must be strings, not {key!r}", option)
        where = f"{option}.{key}" if option else key
        rendered = _to_json(key, where)
        if len(rendered) > _YAML_KEY_LIMIT:
            raise InvalidInput(f"keys longer than {_YAML_KEY_LIMIT} characters cannot be read as YAML", option)
        items.append(f"{inner}{rendered}: {_to_json(item, where, inner)}")
    return _bracketed("{", items, "}", indent)


def _bracketed(opening: str, items: list[str], closing: str, indent: str) -> str:
    if not items:
        return opening + closing
    return opening + "\n" + ",\n".join(items) + "\n" + indent + closing


def _float(value: float, option: str) -> str:
    if not math.isfinite(value):
        raise InvalidInput(f"{value} cannot be written in JSON", option)
    text = repr(float(value))
    mantissa, e, exponent = text.partition("e")
    return f"{mantissa}.0e{exponent}" if e and "." not in mantissa else text


def _kind(value: object) -> str:
    return type(value).__name__
