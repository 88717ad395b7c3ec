# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Atomic file replacement and per-object locks, shared by every writer of the core.

Private to the collection.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import tempfile
import time

from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError, OperationTimeout

NEW_FILE_MODE = 0o600
LOCK_TIMEOUT = 300.0
_LOCK_POLL = 0.05


def atomic_write(path: str, text: str, mode: int | None = None) -> None:
    """Replace ``path`` with ``text``: temp file, fsync, rename, fsync the directory.

    With ``mode`` the file gets that mode; without, a replaced file keeps its
    mode and owner and a new one is private (0600).
    """
    directory, name = os.path.split(path)
    try:
        old = os.stat(path)
    except FileNotFoundError:
        old = None
    fd, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        # surrogateescape and no newline translation: bytes read are bytes written.
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape", newline="") as handle:
            handle.write(text)
            handle.flush()
            _set_owner_and_mode(handle.fileno(), old, mode)
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        remove_quietly(temporary)
        raise
    fsync_directory(directory)


def _set_owner_and_mode(fd: int, old: os.stat_result | None, mode: int | None) -> None:
    if mode is not None or old is None:
        os.fchmod(fd, NEW_FILE_MODE if mode is None else mode)
        return
    if (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
        os.fchown(fd, old.st_uid, old.st_gid)
    os.fchmod(fd, stat.S_IMODE(old.st_mode))


def fsync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_quietly(path: str) -> bool:
    """Remove a file, socket or symlink; True when something was removed."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def read_text(path: str) -> str | None:
    """The file's text, or None when it does not exist."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape", newline="") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def file_lock(path: str, what: str, timeout: float = LOCK_TIMEOUT):
    """An exclusive flock on ``path``; flock (not lockf) so that threads contend too."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, NEW_FILE_MODE)
    try:
        _acquire(fd, what, timeout)
        yield
    finally:
        os.close(fd)


def _acquire(fd: int, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise BackendError(f"cannot lock {what}: {exc}") from exc
        if time.monotonic() >= deadline:
            raise OperationTimeout(f"{what} stayed locked by another run for {timeout:.0f} s")
        time.sleep(_LOCK_POLL)
