# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bring the qemu.conf of a QEMU driver instance to the requested settings.

The file is the one the instance of ``uri`` reads (uri.qemu_conf_path), or
an explicit path.  Read -> edit in place (qemu_conf.QemuConf keeps every
other byte) -> write atomically under the file's lock unless check mode ->
result with the file's diff.  libvirtd reads qemu.conf when it starts, so a
change on a libvirt URI needs a restart of libvirtd; the embedded driver
reads it at every domain start.  Private to the collection.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Optional

from ansible_collections.virtops.qemu.plugins.module_utils import fileio, qemu_conf
from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput, host_error
from ansible_collections.virtops.qemu.plugins.module_utils.uri import parse_uri

Backup = Optional[Callable[[str], str]]  # noqa: UP045 - evaluated at run time


@dataclass
class ConfRequest:
    uri: str = "qemu:///system"
    path: str | None = None
    settings: dict = field(default_factory=dict)
    state: str = "present"              # present, or absent: the listed keys return to their default
    allow_unknown_keys: bool = False
    backup: bool = False


def conf_path(req: ConfRequest) -> tuple[str, str]:
    """The file to edit and the backend that reads it ("libvirt" or "embed")."""
    uri = parse_uri(req.uri)
    if not uri.is_local:
        raise InvalidInput(f"{req.uri!r} is a remote URI; this module edits the qemu.conf of the host it "
                           "runs on: run it on that host with a local URI", "uri")
    if req.path is not None and not os.path.isabs(req.path):
        raise InvalidInput(f"{req.path!r} is not an absolute path", "path")
    return req.path or uri.qemu_conf_path(), uri.backend


def wanted_settings(req: ConfRequest) -> dict:
    """Key -> value, None for a key to return to its default; every key and value is checked here."""
    if not isinstance(req.settings, dict) or not req.settings:
        raise InvalidInput("give at least one setting, as a dict of key: value", "settings")
    wanted: dict = {}
    for key, value in req.settings.items():
        option = f"settings.{key}"
        try:
            qemu_conf.key_type(key, req.allow_unknown_keys)
            if req.state == "absent" or value is None:
                wanted[key] = None
            else:
                wanted[key] = qemu_conf.normalize(key, value, req.allow_unknown_keys)
        except InvalidInput as exc:
            raise InvalidInput(str(exc).split(": ", 1)[-1], option) from exc
    return wanted


def ensure(req: ConfRequest, check_mode: bool, backup: Backup = None) -> dict:
    path, backend = conf_path(req)
    wanted = wanted_settings(req)
    target = os.path.realpath(path)
    if check_mode:
        before = qemu_conf.read_conf(target)
        after, changed = qemu_conf.apply_settings(before, wanted, req.allow_unknown_keys)
        return _result(path, backend, before, after, changed, None)
    if backend == "embed" and req.path is None:
        fileio.make_private_dir(os.path.dirname(target))     # a root's etc/ is made by its first write
    _check_directory(target)
    with qemu_conf.file_locked(target):
        before = qemu_conf.read_conf(target)
        after, changed = qemu_conf.apply_settings(before, wanted, req.allow_unknown_keys)
        backup_file = None
        if changed:
            if req.backup and backup is not None and os.path.exists(target):
                backup_file = backup(target)
            fileio.atomic_write(target, after)
    return _result(path, backend, before, after, changed, backup_file)


def _check_directory(target: str) -> None:
    directory = os.path.dirname(target)
    if not os.path.isdir(directory):
        raise InvalidInput(f"directory {directory} of {target} does not exist", "path")
    if not os.access(directory, os.W_OK):
        raise host_error(PermissionError(13, "Permission denied"), "write to", directory)


def _result(path: str, backend: str, before: str, after: str, changed: list[str], backup_file) -> dict:
    settings = qemu_conf.settings_from_text(after)
    result = {
        "changed": bool(changed),
        "path": path,
        "changed_keys": changed,
        "settings": settings,
        # libvirtd reads qemu.conf once, when it starts; the embedded driver at every domain start.
        "restart_required": bool(changed) and backend == "libvirt",
        "diff": {"before": before, "after": after,
                 "before_header": path, "after_header": path},
        "warnings": _ignored_by_embed(settings) if backend == "embed" else [],
    }
    if backup_file:
        result["backup_file"] = backup_file
    return result


def _ignored_by_embed(settings: dict) -> list[str]:
    ignored = sorted(set(settings) - qemu_conf.EMBED_HONOURED_KEYS)
    return [f"the embedded driver ignores {', '.join(ignored)}"] if ignored else []
