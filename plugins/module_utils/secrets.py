# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Passwords kept out of what the collection returns.

module_glue.run passes every result and every failure through ``mask``, so
no manager, and no kind added later, has to remember it.  A secret is the
value of anything whose name says password: an XML attribute ``passwd``
(libvirt's VNC, SPICE and RDP console passwords), a qemu.conf statement such
as ``vnc_password = "..."``, active or commented out, and a mapping entry
such as qemu_conf's ``settings.vnc_password``.  They are found by their
text, so an XML document, a qemu.conf, an error message or a fragment of one
are all masked alike.

In a diff (a mapping with ``before`` and ``after`` strings), a password that
differs from the one in the same place before shows as CHANGED_MASK on the
after side, so that changing only a password still shows as a change.

Private to the collection; no Ansible imports.
"""

from __future__ import annotations

import re

MASK = "********"
CHANGED_MASK = "********(changed)"

# name = value, as XML attributes and qemu.conf statements write it.  A qemu.conf
# value may be triple-quoted, quoted, a number or a list; an XML one is quoted.
_ASSIGNMENT = re.compile(r"""(?<![\w.:-])(?P<name>[A-Za-z_][\w.:-]*)(?P<eq>\s*=\s*)"""
                         r"""(?P<value>\"\"\"[\s\S]*?\"\"\"|"[^"\r\n]*"|'[^'\r\n]*'|[+-]?[0-9]+|\[[^\]]*\])""")
_START_TAG = re.compile(r"<(?P<tag>[A-Za-z_][\w.:-]*)(?P<attributes>[^<>]*)")
_TYPE = re.compile(r"""\stype\s*=\s*(?:"([^"]*)"|'([^']*)')""")


def is_secret_name(name: object) -> bool:
    """Whether a key or attribute of this name holds a password."""
    return isinstance(name, str) and (name in ("passwd", "password") or name.endswith("_password"))


def mask(value):
    """``value`` (a result, or any part of one) with every password replaced by MASK."""
    if isinstance(value, dict):
        return _mask_mapping(value)
    if isinstance(value, (list, tuple)):
        return [mask(item) for item in value]
    if isinstance(value, str):
        return mask_text(value)
    return value


def _mask_mapping(mapping: dict) -> dict:
    masked = {key: MASK if is_secret_name(key) and value is not None else mask(value)
              for key, value in mapping.items()}
    before, after = mapping.get("before"), mapping.get("after")
    if isinstance(before, str) and isinstance(after, str):
        masked["after"] = _masked(after, _secrets_by_place(before))
    return masked


def mask_text(text: str) -> str:
    """``text`` with the value of every password attribute or statement in it replaced by MASK."""
    return _masked(text, {})


def values_in(value) -> set[str]:
    """The passwords in a module's options, for Ansible to hide wherever they appear (module_args)."""
    if isinstance(value, dict):
        found = set()
        for key, item in value.items():
            if is_secret_name(key) and isinstance(item, str):
                found.add(item)
            else:
                found |= values_in(item)
        return found - {""}
    if isinstance(value, (list, tuple)):
        return set().union(*(values_in(item) for item in value))
    if isinstance(value, str):
        raw = {_unquoted(match.group("value")) for match, _place in _secrets(value)}
        if not raw:
            return set()
        # Imported here: its entity table is a costly import that text without secrets never needs.
        import html
        return (raw | {html.unescape(secret) for secret in raw}) - {""}
    return set()


def _masked(text: str, earlier: dict) -> str:
    """``text`` masked; a secret whose place had another value in ``earlier`` gets CHANGED_MASK."""
    pieces, end = [], 0
    for match, place in _secrets(text):
        old = earlier.get(place)
        shown = CHANGED_MASK if old is not None and old != match.group("value") else MASK
        quote = match.group("value")[0] if match.group("value")[0] in "\"'" else '"'
        pieces += [text[end:match.start("value")], quote + shown + quote]
        end = match.end()
    return "".join(pieces) + text[end:] if pieces else text


def _secrets_by_place(text: str) -> dict:
    return {place: match.group("value") for match, place in _secrets(text)}


def _secrets(text: str) -> list:
    """(match, place) of every password assignment in ``text``.

    The place tells the same password apart in two versions of a text: the
    element it is an attribute of (tag and type, ``graphics`` ``vnc``) or
    whether its qemu.conf statement is commented out, its name, and how many
    came before it in that place.
    """
    if "=" not in text or "passw" not in text:     # every secret name has it (is_secret_name)
        return []
    found: list = []
    seen: dict = {}
    for match in _ASSIGNMENT.finditer(text):
        if not is_secret_name(match.group("name")):
            continue
        where = (_context(text, match.start()), match.group("name"))
        seen[where] = seen.get(where, -1) + 1
        found.append((match, (*where, seen[where])))
    return found


def _context(text: str, position: int) -> tuple:
    """The start tag ``position`` lies in, as (tag, type); else whether its line is a comment."""
    opening = text.rfind("<", 0, position)
    if opening > text.rfind(">", 0, position):
        tag = _START_TAG.match(text, opening)
        if tag:
            kind = _TYPE.search(tag.group("attributes"))
            return ("element", tag.group("tag"), kind and (kind.group(1) or kind.group(2)))
    line_start = max(text.rfind("\n", 0, position), text.rfind("\r", 0, position)) + 1
    return ("comment" if text[line_start:position].lstrip().startswith("#") else "statement",)


def _unquoted(value: str) -> str:
    if value.startswith('"""'):
        return value[3:-3]
    if value[:1] in "\"'":
        return value[1:-1]
    return value
