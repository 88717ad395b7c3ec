# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""File modes given the ways ``ansible.builtin.file`` takes them, as libvirt's four octal digits.

An unquoted ``0755`` in YAML reaches a module as the integer 493, so an
integer is the mode's value; a string is octal (``'0755'``, ``'755'``,
``'0o755'``) or symbolic.  A symbolic mode is an absolute one here: every
class (``u``, ``g``, ``o``, or ``a`` for all) is set with ``=``, since a
relative ``+``/``-`` would depend on a mode the definition does not have
yet.  libvirt keeps the permission bits only (no setuid, setgid or sticky
bit).  Private to the collection.
"""

from __future__ import annotations

import re

from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput

_OCTAL = re.compile(r"^(0o|0)?[0-7]{1,4}$")
_CLAUSE = re.compile(r"^([ugoa]*)=([rwx]*)$")
_SHIFT = {"u": 6, "g": 3, "o": 0}
_BITS = {"r": 4, "w": 2, "x": 1}
EXAMPLE = "0755, '0755' or u=rwx,g=rx,o=rx"


def octal_mode(value: object, option: str) -> str:
    """``value`` as four octal digits such as ``0755``; InvalidInput naming ``option`` otherwise."""
    if isinstance(value, bool):
        raise InvalidInput(f"must be a file mode such as {EXAMPLE}, got {value!r}", option)
    if isinstance(value, int):
        return _checked(value, value, option)
    text = str(value).strip()
    if _OCTAL.match(text):
        return _checked(int(text.removeprefix("0o"), 8), value, option)
    return _checked(_symbolic(text, option), value, option)


def _checked(mode: int, value: object, option: str) -> str:
    if not 0 <= mode <= 0o777:
        raise InvalidInput(f"must be a file mode from 0000 to 0777 (libvirt keeps no setuid, setgid or "
                           f"sticky bit), got {value!r}", option)
    return f"{mode:04o}"


def _symbolic(text: str, option: str) -> int:
    mode, named = 0, set()
    for clause in text.split(","):
        match = _CLAUSE.match(clause.strip())
        if not match:
            raise InvalidInput(f"must be a file mode such as {EXAMPLE} (a symbolic mode sets each class "
                               f"with '=', since '+' and '-' need a mode to start from), got {text!r}", option)
        classes = match.group(1) or "a"
        who = {"u", "g", "o"} if "a" in classes else set(classes)
        for cls in who:
            bits = sum(_BITS[letter] for letter in set(match.group(2)))
            mode = mode & ~(0o7 << _SHIFT[cls]) | bits << _SHIFT[cls]
        named |= who
    if named != {"u", "g", "o"}:
        missing = ", ".join(sorted({"u", "g", "o"} - named))
        raise InvalidInput(f"a symbolic mode must set every class; {missing} missing in {text!r}", option)
    return mode
