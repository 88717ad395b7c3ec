# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Imports that ansible-core does not follow when it builds a module's payload.

ansible-core puts into a module's AnsiballZ payload every module_utils file
that an import statement reaches, even an import inside a function the call
never runs.  So the core loads the parts that only some modules use (a
kind's code, the capabilities and security code, QMP, migration, key codes,
the cloud-init seed) through ``load_part()``, and a module names the parts its
calls may load with one import of a ``module_utils.payload`` list.  That
keeps a ``volume`` payload free of the domain code, and a ``domain`` payload
free of the key tables and migration.  Private to the collection.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError

_MODULE_UTILS = __name__.rpartition(".")[0]


def load_part(part: str) -> ModuleType:
    """The module_utils module ``part`` (a dotted name under module_utils), imported now."""
    name = f"{_MODULE_UTILS}.{part}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (name == exc.name or name.startswith(f"{exc.name}.")):
            raise                   # the part is there but needs something that is not
        raise BackendError(f"this module's payload lacks module_utils.{part}: its module does not list it "
                           "in its module_utils.payload import; please report this") from exc
