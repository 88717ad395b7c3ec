# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read, edit and write libvirt's ``qemu.conf`` without losing a byte.

The syntax is the one libvirt's ``virconf`` parser reads: ``name = value``
statements separated by line breaks or ``;``, ``#`` comments (whole line or
after a value), values that are double-, single- or triple-quoted strings,
integers with an optional sign, or ``[ ... ]`` lists.  The parsed document
keeps every character, so rendering an unmodified file gives it back
unchanged, and an edit touches only the statement it is about.

Edits follow the file's own documentation: a key that is not set but has its
commented-out example (``#user = "libvirt-qemu"``) is set by uncommenting
that example; unsetting a key comments its statement out.  A password's
statement is commented out with an empty value, so no copy of the password
stays in the file.

Private to the collection; no Ansible imports.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from enum import Enum
from typing import NamedTuple, NoReturn, Union

from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.fileio import atomic_write, file_lock, read_text
from ansible_collections.virtops.qemu.plugins.module_utils.secrets import is_secret_name

Value = Union[str, int, bool, list]  # noqa: UP007 - evaluated at run time, on the managed host's Python


class KeyType(Enum):
    """Value types of qemu.conf settings; the value is the user-facing name."""

    STR = "a string"
    BOOL = "a boolean (written as 1 or 0)"
    INT = "an integer"
    UINT = "a non-negative integer"
    CORE = 'a non-negative integer or the string "unlimited"'
    STR_LIST = "a list of strings"
    STR_OR_LIST = "a string or a list of strings"


def _keys(kind: KeyType, names: str) -> dict[str, KeyType]:
    return {name: kind for name in names.split()}


# Every setting recent libvirt (9.0 as shipped by Debian 12 up to the 11.x
# series) reads from qemu.conf, typed after the getter libvirt uses for it.
KEYS: dict[str, KeyType] = {
    **_keys(KeyType.STR, """
        default_tls_x509_cert_dir default_tls_x509_secret_uuid
        default_tls_priority
        vnc_listen vnc_tls_x509_cert_dir vnc_tls_x509_secret_uuid
        vnc_tls_priority vnc_password vnc_sasl_dir
        spice_listen spice_tls_x509_cert_dir spice_password spice_sasl_dir
        rdp_listen rdp_tls_x509_cert_dir rdp_username rdp_password
        chardev_tls_x509_cert_dir chardev_tls_x509_secret_uuid
        chardev_tls_priority
        vxhs_tls_x509_cert_dir vxhs_tls_x509_secret_uuid
        nbd_tls_x509_cert_dir nbd_tls_x509_secret_uuid nbd_tls_priority
        migrate_tls_x509_cert_dir migrate_tls_x509_secret_uuid
        migrate_tls_priority
        backup_tls_x509_cert_dir backup_tls_x509_secret_uuid
        backup_tls_priority
        user group swtpm_user swtpm_group
        save_image_format dump_image_format snapshot_image_format
        auto_dump_path
        auto_shutdown_try_save auto_shutdown_try_shutdown
        auto_shutdown_poweroff
        bridge_helper pr_helper slirp_helper qemu_rdp dbus_daemon
        lock_manager migration_address migration_host stdio_handler
        memory_backing_dir deprecation_behavior sched_core
        default_cpu_deprecated_features
    """),
    **_keys(KeyType.BOOL, """
        default_tls_x509_verify
        vnc_auto_unix_socket vnc_tls vnc_tls_x509_verify vnc_sasl
        vnc_allow_host_audio
        spice_tls spice_auto_unix_socket spice_sasl
        chardev_tls chardev_tls_x509_verify vxhs_tls nbd_tls
        migrate_tls_x509_verify migrate_tls_force backup_tls_x509_verify
        nographics_allow_host_audio
        security_default_confined security_require_confined
        dynamic_ownership remember_owner
        auto_dump_bypass_cache auto_start_bypass_cache auto_save_bypass_cache
        auto_shutdown_restore
        set_process_name dump_guest_core mac_filter relaxed_acs_check
        log_timestamp virtiofsd_debug storage_use_nbdkit
        clear_emulator_capabilities allow_disk_format_probing
    """),
    **_keys(KeyType.INT, "keepalive_interval seccomp_sandbox"),
    **_keys(KeyType.UINT, """
        remote_display_port_min remote_display_port_max
        remote_websocket_port_min remote_websocket_port_max
        migration_port_min migration_port_max
        auto_start_delay auto_shutdown_wait
        max_processes max_files max_threads_per_process max_queued
        keepalive_count gluster_debug_level
    """),
    **_keys(KeyType.CORE, "max_core"),
    **_keys(KeyType.STR_LIST, """
        cgroup_controllers cgroup_device_acl nvram namespaces
        capability_filters shared_filesystems
    """),
    **_keys(KeyType.STR_OR_LIST, "security_driver hugetlbfs_mount"),
}

_INT_RANGE = {
    KeyType.INT: (-(2**31), 2**31 - 1),
    KeyType.UINT: (0, 2**32 - 1),
    KeyType.CORE: (0, 2**64 - 1),
}

# The keys the embedded driver acts on (it reads its root's qemu.conf at every
# domain start); it reports the others as ignored.
EMBED_HONOURED_KEYS = frozenset({
    "seccomp_sandbox", "vnc_listen", "vnc_password", "spice_listen", "spice_password",
    "remote_display_port_min", "remote_display_port_max",
    "user", "group", "dynamic_ownership", "remember_owner", "security_driver",
    "cgroup_device_acl", "cgroup_controllers",
})
_TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
_FALSE_WORDS = frozenset({"0", "false", "no", "off"})
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_BAD_CHARS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_BLANKS = " \t"
_EOL = "\r\n"


class ConfSyntaxError(InvalidInput):
    """The text is not valid qemu.conf syntax; ``line`` is 1-based."""

    def __init__(self, line: int, reason: str, source: str = "qemu.conf"):
        self.line = line
        super().__init__(f"{source} line {line}: {reason}")


class _Comment(NamedTuple):
    text: str  # from '#' up to, not including, the line break
    at_line_start: bool


class _Assignment(NamedTuple):
    key: str
    head: str  # the key, the '=' and the blanks around it
    raw: str  # the value exactly as written
    value: Value


_Piece = Union[str, _Comment, _Assignment]  # noqa: UP007 - evaluated at run time


def _render(pieces: list[_Piece]) -> str:
    return "".join(_piece_text(piece) for piece in pieces)


def _piece_text(piece: _Piece) -> str:
    if isinstance(piece, str):
        return piece
    if isinstance(piece, _Comment):
        return piece.text
    return piece.head + piece.raw


class _Parser:
    """Recursive descent over the virconf grammar, recording every character.

    One leniency over libvirt: ``#`` comments are accepted between list
    items, since hand-edited files have them; virconf itself rejects those.
    """

    def __init__(self, text: str, source: str = "qemu.conf"):
        self.text = text
        self.source = source
        self.pos = 0
        self.line = 1
        self.pieces: list[_Piece] = []

    def parse(self) -> list[_Piece]:
        while True:
            self._keep(self._span_of(_BLANKS + _EOL))
            if self.pos >= len(self.text):
                return _merge_text(self.pieces)
            if self._peek() == "#":
                self._comment()
            else:
                self._statement()
            self._separator()

    def lone_statement(self) -> tuple[str, str, int]:
        """Parse one statement that opens the text: (key, raw value, its end)."""
        self._span_of(_BLANKS)
        key, _head, raw, _value = self._assignment()
        end = self.pos
        self._span_of(_BLANKS)
        if self._peek() not in ("", "#", "\r", "\n", ";"):
            self._fail("expecting a separator")
        return key, raw, end

    def _fail(self, reason: str) -> NoReturn:
        raise ConfSyntaxError(self.line, reason, self.source)

    def _peek(self) -> str:
        return self.text[self.pos:self.pos + 1]

    def _advance(self, end: int) -> str:
        chunk = self.text[self.pos:end]
        self.line += chunk.count("\n")
        self.pos = end
        return chunk

    def _span_of(self, chars: str) -> str:
        end = self.pos
        while end < len(self.text) and self.text[end] in chars:
            end += 1
        return self._advance(end)

    def _to_line_end(self) -> str:
        end = self.pos
        while end < len(self.text) and self.text[end] not in _EOL:
            end += 1
        return self._advance(end)

    def _keep(self, chunk: str) -> None:
        if chunk:
            self.pieces.append(chunk)

    def _comment(self) -> None:
        at_line_start = self.pos == 0 or self.text[self.pos - 1] in _EOL
        self.pieces.append(_Comment(self._to_line_end(), at_line_start))

    def _statement(self) -> None:
        key, head, raw, value = self._assignment()
        self.pieces.append(_Assignment(key, head, raw, value))
        self._keep(self._span_of(_BLANKS))
        if self._peek() == "#":
            self._comment()

    def _assignment(self) -> tuple[str, str, str, Value]:
        start = self.pos
        name = _NAME.match(self.text, self.pos)
        if not name:
            self._fail("expecting a setting name")
        self._advance(name.end())
        self._span_of(_BLANKS)
        if self._peek() != "=":
            self._fail(f"expecting '=' after {name.group()}")
        self._advance(self.pos + 1)
        self._span_of(_BLANKS)
        value_start = self.pos
        value = self._value()
        return (name.group(), self.text[start:value_start],
                self.text[value_start:self.pos], value)

    def _separator(self) -> None:
        self._keep(self._span_of(_BLANKS))
        if self.pos >= len(self.text) or self._peek() in _EOL:
            return
        if self._peek() != ";":
            self._fail("expecting a line break or ';' after the value")
        self._keep(self._advance(self.pos + 1))

    def _value(self) -> Value:
        char = self._peek()
        if char == "":
            self._fail("expecting a value")
        if self.text.startswith('"""', self.pos):
            return self._triple_quoted()
        if char in "\"'":
            return self._quoted(char)
        if char == "[":
            return self._list()
        if char in "+-0123456789":
            return self._number()
        self._fail("expecting a value (a quoted string, a number or a list)")

    def _quoted(self, quote: str) -> str:
        end = self.pos + 1
        while end < len(self.text) and self.text[end] not in (quote, "\r", "\n"):
            end += 1
        if end >= len(self.text) or self.text[end] != quote:
            self._fail("unterminated string")
        return self._advance(end + 1)[1:-1]

    def _triple_quoted(self) -> str:
        end = self.text.find('"""', self.pos + 3)
        if end < 0:
            self._fail("unterminated string")
        return self._advance(end + 3)[3:-3]

    def _number(self) -> int:
        match = _INTEGER.match(self.text, self.pos)
        if not match:
            self._fail("expecting digits")
        return int(self._advance(match.end()))

    def _list(self) -> list[Value]:
        self._advance(self.pos + 1)
        items: list[Value] = []
        self._list_gap()
        while self._peek() != "]":
            if self.pos >= len(self.text):
                self._fail("list is not closed with ]")
            if items:
                if self._peek() != ",":
                    self._fail("expecting ',' between list items")
                self._advance(self.pos + 1)
                self._list_gap()
                if self._peek() == "]":
                    break
            items.append(self._value())
            self._list_gap()
        self._advance(self.pos + 1)
        return items

    def _list_gap(self) -> None:
        while True:
            self._span_of(_BLANKS + _EOL)
            if self._peek() != "#":
                return
            self._to_line_end()


def _commented_out(statement: _Assignment) -> str:
    """The statement to put after a '#': a password loses its value, others keep theirs to show the old setting."""
    if is_secret_name(statement.key):
        return statement.head + '""'
    return _piece_text(statement).replace("\n", "\n#")


def _merge_text(pieces: list[_Piece]) -> list[_Piece]:
    merged: list[_Piece] = []
    for piece in pieces:
        if isinstance(piece, str) and merged and isinstance(merged[-1], str):
            merged[-1] += piece
        else:
            merged.append(piece)
    return merged


class _Example(NamedTuple):
    first: int  # index of the first comment piece
    stop: int  # index after the last comment piece
    raw: str  # the example's value, with the '#' of each line removed
    canonical: bool  # written '#key = ...', straight after the '#'


class QemuConf:
    """A parsed qemu.conf that renders back exactly, edited in place."""

    def __init__(self, pieces: list[_Piece], source: str = "qemu.conf"):
        self._pieces = pieces
        self._source = source

    @classmethod
    def parse(cls, text: str, source: str = "qemu.conf") -> QemuConf:
        return cls(_Parser(text, source).parse(), source)

    def render(self) -> str:
        return _render(self._pieces)

    def get(self, key: str) -> Value | None:
        """The effective value of a known key (the first active one), or None."""
        kind = key_type(key)
        found = self._active(key)
        return _typed(kind, found[0].value) if found else None

    def settings(self) -> dict[str, Value]:
        """Every active setting, unknown keys included, as libvirt sees them."""
        result: dict[str, Value] = {}
        for piece in self._pieces:
            if isinstance(piece, _Assignment) and piece.key not in result:
                result[piece.key] = _typed(KEYS.get(piece.key), piece.value)
        return result

    def set(self, key: str, value: Value, allow_unknown: bool = False) -> bool:
        """Give a key a value in place; True when the text changed."""
        wanted = normalize(key, value, allow_unknown)
        found = self._active(key)
        if found and _typed(key_type(key, allow_unknown), found[0].value) == wanted:
            return False
        if found:
            index = self._pieces.index(found[0])
            raw = _format_value(wanted, style=found[0].raw)
            self._replace(index, index + 1, found[0].head + raw)
            return True
        example = self._example(key)
        if example:
            raw = _format_value(wanted, style=example.raw)
            self._replace(example.first, example.stop, f"{key} = {raw}")
        else:
            self._append(f"{key} = {_format_value(wanted, style='')}")
        return True

    def unset(self, key: str, allow_unknown: bool = False) -> bool:
        """Comment out every active statement of a key; True when any was."""
        key_type(key, allow_unknown)
        if not self._active(key):
            return False
        out: list[str] = []
        break_before_next = False
        for piece in self._pieces:
            if isinstance(piece, _Assignment) and piece.key == key:
                if break_before_next:
                    out.append("\n")
                out.append("#" + _commented_out(piece))
                break_before_next = True
                continue
            if isinstance(piece, _Assignment) and break_before_next:
                # A later statement on the same line would be commented out too.
                out.append("\n")
            if isinstance(piece, _Assignment) or (isinstance(piece, str) and "\n" in piece):
                break_before_next = False
            out.append(_piece_text(piece))
        self._load("".join(out))
        return True

    def _active(self, key: str) -> list[_Assignment]:
        return [p for p in self._pieces if isinstance(p, _Assignment) and p.key == key]

    def _replace(self, start: int, stop: int, text: str) -> None:
        self._load(_render(self._pieces[:start]) + text + _render(self._pieces[stop:]))

    def _append(self, statement: str) -> None:
        text = self.render()
        newline = "\r\n" if text.endswith("\r\n") else "\n"
        if text and not text.endswith(("\n", "\r")):
            text += newline
        self._load(text + statement + newline)

    def _load(self, text: str) -> None:
        self._pieces = _Parser(text, self._source).parse()

    def _example(self, key: str) -> _Example | None:
        examples = list(self._examples(key))
        canonical = [e for e in examples if e.canonical]
        chosen = canonical or examples
        return chosen[-1] if chosen else None

    def _examples(self, key: str) -> Iterator[_Example]:
        pattern = re.compile(r"#[ \t]*" + re.escape(key) + r"[ \t]*=")
        for index, piece in enumerate(self._pieces):
            if isinstance(piece, _Comment) and piece.at_line_start and pattern.match(piece.text):
                example = self._example_at(index, key)
                if example:
                    yield example

    def _example_at(self, index: int, key: str) -> _Example | None:
        block = self._comment_block(index)
        # The comment lines with their '#' cut off, joined by their own breaks.
        # Between the comments of a block there are only line breaks.
        bodies = "".join(piece.text[1:] if isinstance(piece, _Comment)
                         else _piece_text(piece) for piece in self._pieces[index:block[-1] + 1])
        try:
            found_key, raw, end = _Parser(bodies).lone_statement()
        except ConfSyntaxError:
            return None
        if found_key != key:
            return None
        lines = bodies[:end].count("\n") + 1
        first = self._pieces[index]
        if not isinstance(first, _Comment):
            return None     # an example starts at a comment
        canonical = first.text.startswith("#" + key)
        return _Example(index, block[lines - 1] + 1, raw, canonical)

    def _comment_block(self, index: int) -> list[int]:
        """Indexes of the whole-line comments on consecutive lines from index."""
        block = [index]
        while True:
            gap, after = block[-1] + 1, block[-1] + 2
            if after >= len(self._pieces) or self._pieces[gap] not in ("\n", "\r\n"):
                return block
            following = self._pieces[after]
            if not isinstance(following, _Comment):
                return block
            block.append(after)


def key_type(key: str, allow_unknown: bool = False) -> KeyType:
    """The type of a known key; InvalidInput naming the key otherwise.

    ``allow_unknown`` lets a well-formed name this table does not know (a
    newer libvirt's key) through as a string.
    """
    if allow_unknown and isinstance(key, str) and key not in KEYS and _NAME.fullmatch(key):
        return KeyType.STR
    if not isinstance(key, str) or key not in KEYS:
        import difflib  # only a misspelt key needs it
        hint = difflib.get_close_matches(str(key), KEYS, n=1)
        extra = f" (did you mean {hint[0]}?)" if hint else ""
        raise InvalidInput(f"unknown qemu.conf setting{extra}", str(key))
    return KEYS[key]


def normalize(key: str, value: object, allow_unknown: bool = False) -> Value:
    """Check a value for a key and return it in its canonical python form.

    Booleans become bool, numbers int, max_core "unlimited" or int, lists
    list[str].  Strings are accepted for bool and integer keys only in their
    unambiguous forms ("yes"/"no"/"true"/"false"/"on"/"off"/"1"/"0", digits).
    """
    kind = key_type(key, allow_unknown)
    result: Value | None
    if kind is KeyType.BOOL:
        result = _to_bool(value)
    elif kind in _INT_RANGE:
        result = _to_int(kind, value)
    elif kind is KeyType.STR or (kind is KeyType.STR_OR_LIST and isinstance(value, str)):
        result = _to_str(key, value)
    else:
        result = _to_str_list(key, value)
    if result is None:
        shown = "" if is_secret_name(key) else f" {value!r}"
        raise InvalidInput(f"expected {kind.value}, got {type(value).__name__}{shown}", key)
    return result


def _to_bool(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE_WORDS | _FALSE_WORDS:
        return value.strip().lower() in _TRUE_WORDS
    return None


def _to_int(kind: KeyType, value: object) -> int | str | None:
    if kind is KeyType.CORE and value == "unlimited":
        return "unlimited"
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        value = int(value.strip())
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    low, high = _INT_RANGE[kind]
    return value if low <= value <= high else None


def _to_str(key: str, value: object) -> str | None:
    if not isinstance(value, str):
        return None
    _check_writable(key, value)
    return value


def _to_str_list(key: str, value: object) -> list[str] | None:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        return None
    for item in value:
        _check_writable(key, item)
    return list(value)


def _check_writable(key: str, text: str) -> None:
    if _BAD_CHARS.search(text):
        raise InvalidInput("line breaks and control characters cannot be written to qemu.conf", key)
    if '"' in text and "'" in text:
        raise InvalidInput("a value cannot contain both ' and \" quotes", key)


def _typed(kind: KeyType | None, value: Value) -> Value:
    if kind is KeyType.BOOL and isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
        return bool(value)
    return value


def _format_value(value: Value, style: str) -> str:
    """Write a value; a list keeps the one-item-per-line layout of style."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _quote(value)
    layout = re.search(r"(\r?\n)([ \t]*)[^ \t\r\n]", style)
    if not layout:
        return "[ " + ", ".join(_quote(v) for v in value) + " ]" if value else "[]"
    newline, indent = layout.groups()
    items = ("," + newline).join(indent + _quote(v) for v in value)
    return "[" + newline + items + newline + "]" if value else "[]"


def _quote(text: str) -> str:
    return f"'{text}'" if '"' in text else f'"{text}"'


def settings_from_text(text: str) -> dict[str, Value]:
    """The active settings of a qemu.conf text (first occurrence wins)."""
    return QemuConf.parse(text).settings()


def apply_settings(text: str, settings: dict[str, object],
                   allow_unknown: bool = False) -> tuple[str, list[str]]:
    """Bring a qemu.conf text to the wanted settings; None unsets a key.

    Every value is checked before anything is edited.  Returns the new text
    and the keys that changed, in the order given; the text is returned as
    it was when nothing had to change.
    """
    conf = QemuConf.parse(text)
    for key in settings:
        key_type(key, allow_unknown)
    wanted = {key: None if value is None else normalize(key, value, allow_unknown)
              for key, value in settings.items()}
    changed = []
    for key, value in wanted.items():
        edited = conf.unset(key, allow_unknown) if value is None else conf.set(key, value, allow_unknown)
        if edited:
            changed.append(key)
    return conf.render(), changed


def read_conf(path: str) -> str:
    """The text of a qemu.conf; a missing file is an empty configuration."""
    text = read_text(path)
    return "" if text is None else text


def write_conf_atomic(path: str, text: str) -> None:
    """Replace a qemu.conf atomically, keeping its mode and owner."""
    target = os.path.realpath(path)
    with _locked(target):
        atomic_write(target, text)


def update_conf(path: str, settings: dict[str, object], write: bool = True,
                allow_unknown: bool = False) -> tuple[str, str, list[str]]:
    """Read, edit and (unless write is False) write a qemu.conf under its lock.

    Returns (text before, text after, changed keys); nothing is written when
    no key changed.
    """
    target = os.path.realpath(path)
    with _locked(target):
        before = read_conf(target)
        after, changed = apply_settings(before, settings, allow_unknown)
        if write and changed:
            atomic_write(target, after)
    return before, after, changed


def _locked(target: str):
    directory, name = os.path.split(target)
    return file_lock(os.path.join(directory, f".{name}.lock"), target)


def file_locked(path: str):
    """The lock every writer of this qemu.conf takes (a hidden file beside it)."""
    return _locked(os.path.realpath(path))
