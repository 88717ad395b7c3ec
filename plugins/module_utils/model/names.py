# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Names of domains, networks, pools and volumes: one rule for every kind.

Names become file names under the embed root and arguments of host tools,
so they are stricter than what libvirt accepts.  Private to the collection.
"""

from __future__ import annotations

import re

from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+:-]{0,199}$")


def validate_name(name: object, kind: str, option: str = "name") -> str:
    """``name`` when it is a safe name for a ``kind`` ("domain", "network", ...); InvalidInput naming ``option``."""
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"a {kind} name is required", option)
    if "/" in name or not _NAME.fullmatch(name):
        raise InvalidInput(
            f"{name!r} is not a valid {kind} name: use letters, digits and _ . + : - "
            "(no '/', no spaces, not starting with '.' or '-', at most 200 characters)", option)
    return name
