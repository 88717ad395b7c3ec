# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


def _info(kind: str, plural: str) -> str:
    """The O(name) option, alike in every per-object _info module."""
    return rf"""
options:
  name:
    description: The {kind} to describe. Without it, every {kind} is listed in RV({plural}).
    type: str
"""


class ModuleDocFragment:
    DOMAIN = _info("domain", "domains")
    NETWORK = _info("network", "networks")
    POOL = _info("pool", "pools")
