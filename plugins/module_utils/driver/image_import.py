# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Importing an image into a new volume, the part both backends share.

``stage`` turns an ImageSource into one file in the volume's format: a
download streams into a temporary file and is checked against its
checksum; the image's format is probed by ``qemu-img info`` (never from its
name) and converted by ``qemu-img convert`` when it differs.  Where the
temporary files go is the backend's choice: the embedded driver stages in
the pool's directory and renames the result into place; the libvirt
backend stages on the module's host and uploads the result.

Temporary files are named ``.<stem>.import-<pid>[.<tag>].part``.  A run
killed at any moment leaves at most such files; ``stale_temporaries``
finds those whose process is gone, so the next run removes them.

URLs are opened by a callable the module passes in (``Opener``), so this
core needs no AnsibleModule.  Private to the collection.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import ssl
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

from ansible_collections.virtops.qemu.plugins.module_utils import fileio
from ansible_collections.virtops.qemu.plugins.module_utils.driver import hosttools
from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError, InvalidInput, host_error
from ansible_collections.virtops.qemu.plugins.module_utils.model.volume import ImageSource

# opener(url, validate_certs) -> a response to read() the body from
Opener = Callable[[str, bool], BinaryIO]
CHUNK = 1024 * 1024
DEFAULT_ALGORITHM = "sha256"
QEMU_IMG = "qemu-img"
TIMEOUT = 3600


@dataclass
class Staged:
    path: str               # the image in the volume's format, ready to be renamed or uploaded
    size: int               # its virtual size in bytes
    checksum: str           # "algorithm:hex" of the image as it was read or downloaded
    temporaries: list[str] = field(default_factory=list)

    def remove_temporaries(self) -> None:
        for path in self.temporaries:
            fileio.remove_quietly(path)


# -- temporaries ----------------------------------------------------------------------
def temporary(directory: str, stem: str, tag: str = "") -> str:
    return os.path.join(directory, f".{stem}.import-{os.getpid()}{'.' + tag if tag else ''}.part")


def stale_temporaries(directory: str, stem: str) -> list[tuple[str, str]]:
    """(path, tag) of the temporaries of ``stem`` in ``directory`` whose process has gone."""
    pattern = re.compile(rf"^\.{re.escape(stem)}\.import-(\d+)(?:\.(\w+))?\.part$")
    found = []
    for entry in fileio.list_dir(directory):
        match = pattern.match(entry)
        if match and not alive(int(match.group(1))):
            found.append((os.path.join(directory, entry), match.group(2) or ""))
    return found


def sweep(directory: str, stem: str) -> None:
    for path, _tag in stale_temporaries(directory, stem):
        fileio.remove_quietly(path)


def alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- staging ---------------------------------------------------------------------------
def stage(source: ImageSource, opener: Opener | None, fmt: str, directory: str, stem: str,
          copy: bool) -> Staged:
    """The image as a file in ``fmt``; with ``copy`` never the source file itself.

    On failure every temporary made here is removed before the error leaves.
    """
    algorithm = source.checksum[0] if source.checksum else DEFAULT_ALGORITHM
    staged = Staged("", 0, "")
    try:
        if source.url:
            staged.path = temporary(directory, stem)
            staged.temporaries.append(staged.path)
            digest = download(source.url, source.validate_certs, opener, staged.path, algorithm)
            what = source.url
        else:
            staged.path = source.path or ""
            digest = hash_file(staged.path, algorithm)
            what = staged.path
        verify(what, algorithm, digest, source.checksum)
        staged.checksum = f"{algorithm}:{digest}"
        image_format, staged.size = probe(staged.path, what)
        if image_format != fmt:
            converted = temporary(directory, stem, fmt)
            staged.temporaries.append(converted)
            convert(staged.path, image_format, converted, fmt)
            if source.url:
                fileio.remove_quietly(staged.path)
            staged.path = converted
        elif copy and not source.url:
            staged.path = temporary(directory, stem)
            staged.temporaries.append(staged.path)
            copy_file(source.path or "", staged.path)
        return staged
    except BaseException:
        staged.remove_temporaries()
        raise


def check_capacity(capacity: int | None, size: int, what: str) -> None:
    if capacity is not None and capacity < size:
        raise InvalidInput(f"{capacity} bytes is smaller than the {size} bytes of the image {what}; "
                           "leave capacity out or give at least the image's size", "capacity")


# -- reading ---------------------------------------------------------------------------
def download(url: str, validate_certs: bool, opener: Opener | None, path: str, algorithm: str) -> str:
    """Stream ``url`` into the new file ``path``; the hex digest of what arrived."""
    if opener is None:
        raise BackendError(f"cannot download {url}: no URL opener was given")
    digest = hashlib.new(algorithm)
    response = _open(url, validate_certs, opener)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, fileio.NEW_FILE_MODE)
    except OSError as exc:
        raise host_error(exc, "create", path) from exc
    with os.fdopen(fd, "wb") as out:
        while True:
            chunk = _read(response, url)
            if not chunk:
                break
            digest.update(chunk)
            _write(out, chunk, path)
        _sync(out, path)
    return digest.hexdigest()


def _open(url: str, validate_certs: bool, opener: Opener):
    try:
        return opener(url, validate_certs)
    except urllib.error.HTTPError as exc:
        raise InvalidInput(f"cannot download {url}: HTTP error {exc.code} {exc.reason}", "source.url") from exc
    except Exception as exc:   # the opener's own errors (urllib, ssl, socket, Ansible's urls)
        if _certificate_failure(exc):
            raise InvalidInput(f"cannot download {url}: TLS certificate verification failed ({_reason(exc)}); "
                               "trust the server's certificate authority or set source.validate_certs=false",
                               "source.url") from exc
        raise BackendError(f"cannot download {url}: {_reason(exc)}") from exc


def _reason(exc: Exception) -> str:
    return str(getattr(exc, "reason", None) or exc)


def _certificate_failure(exc: Exception) -> bool:
    reason = getattr(exc, "reason", None) or exc
    return isinstance(reason, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(reason) or \
        type(exc).__name__ == "SSLValidationError"


def _read(response, url: str) -> bytes:
    try:
        return response.read(CHUNK)
    except Exception as exc:   # a connection lost in the middle of the body
        raise BackendError(f"cannot download {url}: {_reason(exc)}") from exc


def _write(out, chunk: bytes, path: str) -> None:
    try:
        out.write(chunk)
    except OSError as exc:
        raise host_error(exc, "write", path) from exc


def _sync(out, path: str) -> None:
    try:
        out.flush()
        os.fsync(out.fileno())
    except OSError as exc:
        raise host_error(exc, "write", path) from exc


def hash_file(path: str, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(CHUNK), b""):
                digest.update(chunk)
    except FileNotFoundError as exc:
        raise InvalidInput(f"{path} does not exist", "source.path") from exc
    except OSError as exc:
        raise host_error(exc, "read", path) from exc
    return digest.hexdigest()


def verify(what: str, algorithm: str, digest: str, expected: tuple[str, str] | None) -> None:
    if expected is not None and digest != expected[1]:
        raise InvalidInput(f"the {algorithm} checksum of {what} is {digest}, not {expected[1]}; "
                           "nothing was imported", "source.checksum")


def copy_file(source: str, path: str) -> None:
    try:
        shutil.copyfile(source, path)
        os.chmod(path, fileio.NEW_FILE_MODE)
    except OSError as exc:
        raise host_error(exc, f"copy {source} to", path) from exc


# -- qemu-img ------------------------------------------------------------------------------
def probe(path: str, what: str) -> tuple[str, int]:
    """The image's format and virtual size by qemu-img's own probing; a standalone image only.

    A backing file, an external data file or a vmdk extent elsewhere would
    make the import read another file of the host, named by the image.
    """
    if not os.path.isfile(path):
        raise InvalidInput(f"{path} is not a file", "source.path")
    found = json.loads(_qemu_img(["info", "--output=json", path], f"read the image {what}"))
    specific = (found.get("format-specific") or {}).get("data") or {}
    extents = [extent.get("filename") for extent in specific.get("extents") or []]     # vmdk
    if found.get("backing-filename") or specific.get("data-file") or any(name != path for name in extents):
        raise InvalidInput(f"the image {what} refers to another file (a backing, data or extent file); "
                           "import a standalone image", "source")
    return found.get("format", "raw"), int(found.get("virtual-size") or 0)


def convert(source: str, source_format: str, path: str, fmt: str) -> None:
    _qemu_img(["convert", "-q", "-f", source_format, "-O", fmt, source, path],
              f"convert the image from {source_format} to {fmt}")


def grow(path: str, fmt: str, capacity: int) -> None:
    _qemu_img(["resize", "-q", "-f", fmt, path, str(capacity)], f"grow the imported image to {capacity} bytes")


def _qemu_img(args: list[str], what: str) -> str:
    return hosttools.run([QEMU_IMG, *args], what, TIMEOUT)
