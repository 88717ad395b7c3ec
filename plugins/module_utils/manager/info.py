# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The answer of every per-object ``*_info`` module, in one shape.

With a name: ``exists`` and, when it does, the object under the kind's key
(``domain``, ``network``, ``pool``); an unknown name is an answer, not a
failure.  Without one: every object in a list under the plural key.
Private to the collection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from ansible_collections.virtops.qemu.plugins.module_utils.model.kinds import Kind
from ansible_collections.virtops.qemu.plugins.module_utils.model.names import validate_name


class InfoKind(NamedTuple):
    """How to read one kind of object from an open driver."""

    record: Kind                                # its word is the answer's key, its plural the list's
    exists: Callable[[Any, str], bool]          # (driver, name)
    describe: Callable[[Any, str], dict]        # (driver, name)
    describe_all: Callable[[Any], list[dict]]   # (driver)

    @property
    def key(self) -> str:
        return self.record.word

    @property
    def plural(self) -> str:
        return self.record.plural


def gather(kind: InfoKind, open_driver: Callable[..., Any], uri: str, name: str | None) -> dict:
    """Open the driver read-only and answer for ``name``, or for every object when it is None.

    The module passes ``open_driver`` (driver/connect.py): only the plugins pick a backend.
    """
    if name is not None:
        validate_name(name, kind.key)
    with open_driver(uri, read_only=True) as driver:
        return dict(changed=False, warnings=driver.warnings, **answer(kind, driver, name))


def answer(kind: InfoKind, driver, name: str | None) -> dict:
    if name is None:
        return {kind.plural: kind.describe_all(driver)}
    if not kind.exists(driver, name):
        return {"exists": False}
    return {"exists": True, kind.key: kind.describe(driver, name)}
