# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Atomic file replacement, private directories and per-object locks, shared by every writer of the core.

OS errors leave these helpers as BackendError naming the path.  Private to
the collection.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import tempfile
import time

from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError, OperationTimeout, host_error

NEW_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700
LOCK_TIMEOUT = 300.0
_LOCK_POLL = 0.05


def atomic_write(path: str, text: str, mode: int | None = None, durable: bool = True) -> None:
    """Replace ``path`` with ``text``: temp file, fsync, rename, fsync the directory.

    With ``mode`` the file gets that mode; without, a replaced file keeps its
    mode and owner and a new one is private (0600).  ``durable=False`` skips
    the directory's fsync: after a host crash the file may be the old one,
    never a partial new one.
    """
    try:
        _replace(path, text, mode)
    except OSError as exc:
        raise host_error(exc, "write", path) from exc
    if durable:
        fsync_directory(os.path.dirname(path))


def _replace(path: str, text: str, mode: int | None) -> None:
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


def _set_owner_and_mode(fd: int, old: os.stat_result | None, mode: int | None) -> None:
    if mode is not None or old is None:
        os.fchmod(fd, NEW_FILE_MODE if mode is None else mode)
        return
    if (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
        os.fchown(fd, old.st_uid, old.st_gid)
    os.fchmod(fd, stat.S_IMODE(old.st_mode))


def make_private_dir(path: str) -> None:
    """mkdir -p with 0700 on every directory created here; existing ones are left alone."""
    missing = []
    current = path
    while not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, PRIVATE_DIR_MODE)
        except FileExistsError as exc:
            if not os.path.isdir(directory):
                raise BackendError(
                    f"cannot create directory {path}: {directory} exists and is not a directory") from exc
            continue
        except OSError as exc:
            raise host_error(exc, "create directory", directory) from exc
        os.chmod(directory, PRIVATE_DIR_MODE)     # mkdir applies the umask; make the mode exact


def fsync_directory(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise host_error(exc, "sync directory", directory) from exc


def remove_quietly(path: str) -> bool:
    """Remove a file, socket or symlink; True when something was removed."""
    try:
        os.unlink(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        raise host_error(exc, "remove", path) from exc
    return True


def read_text(path: str) -> str | None:
    """The file's text, or None when it does not exist."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape", newline="") as handle:
            return handle.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise host_error(exc, "read", path) from exc


def list_dir(directory: str) -> list[str]:
    """The entries of ``directory``; none when it does not exist (yet)."""
    try:
        return os.listdir(directory)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise host_error(exc, "list directory", directory) from exc


@contextlib.contextmanager
def file_lock(path: str, what: str, timeout: float = LOCK_TIMEOUT):
    """An exclusive flock on ``path``; flock (not lockf) so that threads contend too.

    The holder may remove ``path`` (see remove_lock_file): a run that was
    waiting on the removed file notices and locks the current one instead.
    """
    deadline = time.monotonic() + timeout
    while True:
        fd = _open_lock(path)
        try:
            _acquire(fd, what, deadline, timeout)
            current = _is_current(fd, path)
        except BaseException:
            os.close(fd)
            raise
        if current:
            break
        os.close(fd)
    try:
        yield
    finally:
        os.close(fd)


def remove_lock_file(path: str) -> None:
    """Remove the lock file of an object that is gone; only while holding its lock."""
    remove_quietly(path)


def _open_lock(path: str) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, NEW_FILE_MODE)
    except OSError as exc:
        raise host_error(exc, "open lock file", path) from exc


def _is_current(fd: int, path: str) -> bool:
    """Whether the locked file is still the one at ``path``, not one removed meanwhile."""
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise host_error(exc, "check lock file", path) from exc
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (on_disk.st_dev, on_disk.st_ino)


def _acquire(fd: int, what: str, deadline: float, timeout: float) -> None:
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
