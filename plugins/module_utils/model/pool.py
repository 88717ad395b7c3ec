# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""libvirt storage pool XML: merge rules, structured options and bad-input checks.

The ``pool`` module's options render to the same XML a user may give
verbatim; ``validate`` checks either before anything is touched.  What a
driver reports about a pool's space (capacity, allocation, available) is
not part of a definition and is dropped from a desired one.  Private to the
collection.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.model.filemode import octal_mode
from ansible_collections.virtops.qemu.plugins.module_utils.model.merge import Rules, own_attr
from ansible_collections.virtops.qemu.plugins.module_utils.model.names import validate_name
from ansible_collections.virtops.qemu.plugins.module_utils.model.request import (
    ResourceRequest,
    checked_state,
    reconcile_name,
)
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import (
    XmlNode,
    check_option_text,
    element,
    parse,
    sub,
)

Params = dict[str, Any]

POOL_TYPES = ("dir", "fs", "netfs", "logical", "disk", "iscsi", "iscsi-direct")
# Types whose definition names a directory or device directory on the host.
TARGET_TYPES = ("dir", "fs", "netfs", "logical", "disk", "iscsi")
# Elements a driver fills in with what it measured.
MEASURED = ("capacity", "allocation", "available")
STRUCTURED_OPTIONS = ("type", "target", "source")
_MODE = re.compile(r"^0?[0-7]{3,4}$")
_IQN = re.compile(r"^(iqn\.\d{4}-\d{2}\.[^\s]+|eui\.[0-9A-Fa-f]{16}|naa\.[0-9A-Fa-f]{16,32})$")

POOL_RULES = Rules(
    identity={
        "pool/source/device": own_attr("path"),
        "pool/source/host": own_attr("name"),
    },
    owned=frozenset({"pool/source/device", "pool/source/host"}),
    equivalent={"pool/target/permissions/mode#text": lambda have, want: _octal(have) == _octal(want)},
)


def _octal(text: str) -> int | None:
    try:
        return int(text, 8)
    except ValueError:
        return None


def settle(pool: XmlNode) -> XmlNode:
    """Drop what a driver measures from a desired definition."""
    for tag in MEASURED:
        for node in pool.findall(tag):
            pool.remove(node)
    return pool


def owned_lists_in(pool: XmlNode) -> set[str]:
    return {path for path, tag in (("pool/source/device", "source/device"), ("pool/source/host", "source/host"))
            if pool.find(tag) is not None}


def pool_type(pool: XmlNode) -> str:
    return pool.get("type") or ""


def target_path(pool: XmlNode) -> str | None:
    return (pool.findtext("target/path") or "").strip() or None


# -- structured options ---------------------------------------------------------------
def has_definition(params: Params) -> bool:
    return any(params.get(option) is not None for option in STRUCTURED_OPTIONS)


def render(params: Params) -> tuple[XmlNode, set[str]]:
    """The <pool> the structured options describe, and the lists they own."""
    if not params.get("type"):
        raise InvalidInput("a new definition needs the pool type", "type")
    pool = element("pool", type=params["type"])
    sub(pool, "name", params["name"])
    owned: set[str] = set()
    if params.get("source"):
        pool.append(_source(params["source"], owned))
    if params.get("target"):
        pool.append(_target(params["target"]))
    return pool, owned


def _source(source: Params, owned: set[str]) -> XmlNode:
    node = element("source")
    for host in _listed(source.get("hosts")):
        sub(node, "host", name=host.get("name"), port=host.get("port"))
        owned.add("pool/source/host")
    for device in _listed(source.get("devices")):
        sub(node, "device", path=device)
        owned.add("pool/source/device")
    if source.get("dir"):
        sub(node, "dir", path=source["dir"])
    if source.get("name"):
        sub(node, "name", source["name"])
    if source.get("format"):
        sub(node, "format", type=source["format"])
    if source.get("initiator"):
        initiator = sub(node, "initiator")
        sub(initiator, "iqn", name=source["initiator"])
    if source.get("auth"):
        node.append(_auth(source["auth"]))
    return node


def _listed(value) -> list:
    return list(value or [])


def _auth(auth: Params) -> XmlNode:
    node = element("auth", type=auth.get("type") or "chap", username=auth.get("username"))
    sub(node, "secret", usage=auth.get("usage"))
    return node


def _target(target: Params) -> XmlNode:
    node = element("target")
    if target.get("path"):
        sub(node, "path", target["path"])
    perms = {key: target.get(key) for key in ("mode", "owner", "group") if target.get(key) is not None}
    if "mode" in perms:
        perms["mode"] = octal_mode(perms["mode"], "target.mode")
    if perms:
        permissions = sub(node, "permissions")
        for key in ("mode", "owner", "group"):
            if key in perms:
                sub(permissions, key, perms[key])
    return node


# -- checks -------------------------------------------------------------------------------
def validate(pool: XmlNode, option: str | None = None) -> None:
    """Bad input named by the option it came from (``option`` is "xml" for a verbatim definition)."""
    kind = pool_type(pool)
    if kind not in POOL_TYPES:
        raise InvalidInput(f"unsupported pool type {kind!r}; types: {', '.join(POOL_TYPES)}",
                           option or "type")
    _check_target(pool, kind, option)
    _check_source(pool, kind, option)


def _where(option: str | None, structured: str) -> str:
    return option or structured


def _check_target(pool: XmlNode, kind: str, option: str | None) -> None:
    path = target_path(pool)
    if kind in ("dir", "fs", "netfs") and not path:
        raise InvalidInput(f"a {kind} pool needs a target path", _where(option, "target.path"))
    if path is not None and not path.startswith("/"):
        raise InvalidInput(f"the target path must be absolute, got {path!r}", _where(option, "target.path"))
    if path is not None and not path.strip("/"):
        raise InvalidInput("the target path must be a directory below /, not / itself", _where(option, "target.path"))
    mode = (pool.findtext("target/permissions/mode") or "").strip()
    if mode and not _MODE.match(mode):
        raise InvalidInput(f"the mode must be octal such as 0755, got {mode!r}", _where(option, "target.mode"))
    for key in ("owner", "group"):
        value = (pool.findtext(f"target/permissions/{key}") or "").strip()
        if value and not re.match(r"^(-1|\d+)$", value):
            raise InvalidInput(f"the {key} must be a numeric id, got {value!r}", _where(option, f"target.{key}"))


def _check_source(pool: XmlNode, kind: str, option: str | None) -> None:
    devices = [d.get("path") or "" for d in pool.findall("source/device")]
    hosts = [h.get("name") or "" for h in pool.findall("source/host")]
    if kind in ("fs", "disk") and not devices:
        raise InvalidInput(f"a {kind} pool needs a source device", _where(option, "source.devices"))
    if kind in ("fs", "disk", "logical") and any(not d.startswith("/") for d in devices):
        raise InvalidInput(f"source devices must be absolute paths, got {devices!r}", _where(option, "source.devices"))
    if kind == "netfs" and not (hosts and pool.find("source/dir") is not None):
        raise InvalidInput("a netfs pool needs a source host and dir", _where(option, "source.hosts"))
    if kind in ("iscsi", "iscsi-direct"):
        _check_iscsi(pool, kind, devices, hosts, option)


def _check_iscsi(pool: XmlNode, kind: str, devices: list[str], hosts: list[str], option: str | None) -> None:
    if len(hosts) != 1 or not hosts[0]:
        raise InvalidInput(f"an {kind} pool needs exactly one source host (the portal)", _where(option, "source.hosts"))
    if len(devices) != 1 or not _IQN.match(devices[0]):
        raise InvalidInput(f"an {kind} pool needs one source device: the target's IQN, "
                           f"such as iqn.2024-01.org.example:disk1; got {devices!r}", _where(option, "source.devices"))
    initiator = pool.find("source/initiator/iqn")
    if kind == "iscsi-direct" and (initiator is None or not _IQN.match(initiator.get("name") or "")):
        raise InvalidInput("an iscsi-direct pool needs the initiator's IQN", _where(option, "source.initiator"))


def definition_for_type_check(current: XmlNode, desired: XmlNode) -> None:
    """A pool keeps its type: another type under the same name is refused."""
    have, want = pool_type(current), pool_type(desired)
    if want and have != want:
        raise InvalidInput(f"pool {(current.findtext('name') or '').strip()!r} already exists with type {have!r}; "
                           f"it cannot become a {want!r} pool (remove it first)", "type")


def without_measures(pool: XmlNode) -> XmlNode:
    return settle(copy.deepcopy(pool))


# -- the module's request ---------------------------------------------------------
STATES = ("present", "active", "inactive", "absent")


@dataclass
class PoolRequest(ResourceRequest):
    build: bool = False
    build_overwrite: bool = False
    delete_target: str | None = None
    definition_option: str | None = None    # "xml" for a verbatim definition, None for the structured options
    refresh: bool = False

    def reads_definition(self) -> bool:
        return self.desired is not None or self.delete_target is not None


def request_from_params(params: dict) -> PoolRequest:
    """Validate the module's options and build the request; connects to nothing."""
    name = validate_name(params["name"], "pool")
    state = checked_state(params.get("state") or "active", STATES)
    desired, owned, option = None, set(), None
    if params.get("xml"):
        desired, option = settle(parse(params["xml"], "pool", "xml")), "xml"
        reconcile_name(desired, name, "pool")
        owned = owned_lists_in(desired)
    elif has_definition(params):
        check_option_text(params, STRUCTURED_OPTIONS)
        desired, owned = render(params)
    if desired is not None:
        from ansible_collections.virtops.qemu.plugins.module_utils.model import origins, schema  # not for volumes
        validate(desired, option)
        schema.validate(desired, "storagepool", "the pool definition", option or "options",
                        None if option else origins.locator(origins.POOL, desired))
    delete_target = params.get("delete_target")
    if delete_target is not None and state != "absent":
        raise InvalidInput("applies only with state=absent", "delete_target")
    if params.get("build_overwrite") and not params.get("build"):
        raise InvalidInput("needs build=true", "build_overwrite")
    if params.get("refresh") and state != "active":
        raise InvalidInput(f"rescans an active pool; it needs state=active, not {state}", "refresh")
    return PoolRequest(name=name, state=state, desired=desired, owned_lists=owned,
                       autostart=params.get("autostart"), restart=bool(params.get("restart")),
                       verbatim=option is not None, build=bool(params.get("build")),
                       build_overwrite=bool(params.get("build_overwrite")),
                       delete_target=delete_target, definition_option=option,
                       refresh=bool(params.get("refresh")))
