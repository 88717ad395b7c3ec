# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Keys for send-key: names and numbers of libvirt's code sets, and QEMU's numbers for them.

The tables are keycodes.py (generated from keycodemapdb); every code set is
mapped through the Linux key code, as keycodemapdb's tables are.  A key is
checked to have a QEMU number before anything is sent, on every backend, so
a request either sends all its keys or none.  Private to the collection.
"""

from __future__ import annotations

from ansible_collections.virtops.qemu.plugins.module_utils import keycodes
from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput

# virKeycodeSet by the names virsh send-key uses, in the enum's order (libvirt's "rfb" is "qnum").
KEYCODE_SETS = ("linux", "xt", "atset1", "atset2", "atset3", "os_x", "xt_kbd", "usb", "win32", "qnum")
# virDomainSendKey's limit on keys pressed at once (VIR_DOMAIN_SEND_KEY_MAX_KEYS).
MAX_KEYS = 16
# The code sets whose keys have names (virsh send-key accepts them), in lookup order.
NAME_SETS = ("linux", "os_x", "win32")
# libvirt's other word for QEMU's numbers.
CODESET_ALIASES = {"rfb": "qnum"}


def codeset_name(codeset: str) -> str:
    codeset = CODESET_ALIASES.get(codeset, codeset)
    if codeset not in KEYCODE_SETS:
        raise InvalidInput(f"unknown code set {codeset!r}; one of {', '.join(KEYCODE_SETS)}", "codeset")
    return codeset


def resolve(keys: list, codeset: str) -> list[int]:
    """The codes in ``codeset`` of ``keys`` (names or numbers); each must have a QEMU number."""
    if not keys:
        raise InvalidInput("give at least one key", "keys")
    if len(keys) > MAX_KEYS:
        raise InvalidInput(f"{len(keys)} keys given; at most {MAX_KEYS} can be pressed at once", "keys")
    codes = []
    for index, key in enumerate(keys):
        code = _code(key, codeset, f"keys[{index}]")
        to_qnum(codeset, code, f"keys[{index}]")
        codes.append(code)
    return codes


def to_qnum(codeset: str, code: int, option: str = "keys") -> int:
    """QEMU's number (send-key's "number" key) for ``code`` of ``codeset``."""
    if codeset == "qnum":
        if code not in keycodes.TO_LINUX["qnum"]:
            raise InvalidInput(f"{code} is not a QEMU key number (code set qnum)", option)
        return code
    linux = _linux(codeset, code)
    qnum = keycodes.QNUM.get(linux) if linux is not None else None
    if qnum is None:
        raise InvalidInput(f"code {code} of code set {codeset} has no mapping to a QEMU key", option)
    return qnum


def _linux(codeset: str, code: int) -> int | None:
    return keycodes.TO_LINUX[codeset].get(code)


def _code(key, codeset: str, option: str) -> int:
    """A number as it is (decimal, or 0x hex as virsh takes it), a name looked up in the name sets."""
    if isinstance(key, bool):
        raise InvalidInput(f"{key!r} is neither a key name nor a number", option)
    if isinstance(key, int):
        return _non_negative(key, option)
    text = str(key).strip()
    try:
        return _non_negative(int(text, 0), option)
    except ValueError:
        pass
    return _named(text, codeset, option)


def _non_negative(code: int, option: str) -> int:
    if code < 0:
        raise InvalidInput(f"key code {code} is negative", option)
    return code


def _named(name: str, codeset: str, option: str) -> int:
    """A name of the code set itself, else of another name set translated through its Linux code."""
    if codeset in NAME_SETS and name in keycodes.NAMES[codeset]:
        return keycodes.NAMES[codeset][name]
    for nameset in NAME_SETS:
        code = keycodes.NAMES[nameset].get(name)
        if code is None:
            continue
        linux = _linux(nameset, code)
        found = _from_linux(codeset, linux) if linux is not None else None
        if found is None:
            raise InvalidInput(f"key {name!r} has no code in code set {codeset}", option)
        return found
    raise InvalidInput(f"no key is named {name!r} (names come from the {', '.join(NAME_SETS)} name sets, "
                       "e.g. KEY_A, ANSI_A, VK_A)", option)


def _from_linux(codeset: str, linux: int) -> int | None:
    if codeset == "linux":
        return linux
    if codeset == "qnum":
        return keycodes.QNUM.get(linux)
    return min((code for code, key in keycodes.TO_LINUX[codeset].items() if key == linux), default=None)
