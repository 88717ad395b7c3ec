# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sizes with units, as libvirt reads them.  Private to the collection."""

from __future__ import annotations

import re

from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput

# libvirt: single letters and *B are powers of 1024 except "KB", "MB"... which are 1000.
UNIT_FACTORS = {
    "b": 1, "bytes": 1,
    "k": 1024, "kib": 1024, "kb": 1000,
    "m": 1024 ** 2, "mib": 1024 ** 2, "mb": 1000 ** 2,
    "g": 1024 ** 3, "gib": 1024 ** 3, "gb": 1000 ** 3,
    "t": 1024 ** 4, "tib": 1024 ** 4, "tb": 1000 ** 4,
}
_SIZE = re.compile(r"^\s*(\d+)\s*([A-Za-z]*)\s*$")


def to_bytes(value, default_unit: str, option: str) -> int:
    """``512``, ``"512MiB"``, ``"2G"`` -> bytes; a bare number is in ``default_unit``."""
    if isinstance(value, bool):
        raise InvalidInput(f"expected a size such as 512MiB, got {value!r}", option)
    text = str(value)
    found = _SIZE.match(text)
    if not found:
        raise InvalidInput(f"expected a size such as 512MiB or 2GiB, got {text!r}", option)
    number, unit = found.groups()
    factor = UNIT_FACTORS.get((unit or default_unit).lower())
    if factor is None:
        raise InvalidInput(f"unknown unit {unit!r} in {text!r}; use KiB, MiB, GiB, TiB (or KB, MB, GB, TB)", option)
    return int(number) * factor


def xml_size_to_kib(text: str, unit: str | None) -> int:
    """A <memory unit='…'> value as KiB (libvirt's default unit there)."""
    return to_bytes(f"{text}{unit or 'KiB'}", "KiB", "xml") // 1024
