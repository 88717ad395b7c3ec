# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Exception tree of the driver core.

Every failure the core can explain is one of these; the module glue turns
them into a single ``fail_json``.  Private to the collection.
"""

from __future__ import annotations

import errno
import os


class VirtError(Exception):
    """Base of every error raised by the driver core.

    ``result`` holds what a run had already done when it failed (``changed``,
    ``diff``, ...); the module glue returns it with the failure.
    """

    def __init__(self, *args: object):
        super().__init__(*args)
        self.result: dict = {}

    def after_changes(self, message: str, result: dict) -> VirtError:
        """Reword the error for a run that had already changed something, and carry that result."""
        self.args = (message,)
        self.result = result
        return self


class InvalidInput(VirtError):
    """The user's input is wrong; nothing was changed."""

    def __init__(self, message: str, option: str | None = None):
        self.option = option
        self.reason = message
        super().__init__(f"{option}: {message}" if option else message)


class NotFound(VirtError):
    """A named object (domain, network, pool, volume) does not exist."""


class Conflict(VirtError):
    """The request clashes with the current state of an object."""


class BackendError(VirtError):
    """The hypervisor, libvirtd or QEMU refused or failed an operation."""


def host_error(exc: OSError, doing: str, path: str) -> BackendError:
    """A BackendError for a failed file operation, naming the path and the system's reason.

    "Not a directory" names the part of the path that is a file, which the bare reason does not.
    """
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOTDIR:
        blocker = _file_on_the_way(path)
        reason = f"{blocker} is not a directory" if blocker else reason
    return BackendError(f"cannot {doing} {path}: {reason}")


def _file_on_the_way(path: str) -> str | None:
    """The nearest ancestor of ``path`` that exists and is not a directory."""
    parent = os.path.dirname(os.path.normpath(path))
    while parent and parent != os.path.dirname(parent):
        if os.path.lexists(parent) and not os.path.isdir(parent):
            return parent
        parent = os.path.dirname(parent)
    return None


class UnreadableDefinition(BackendError):
    """A stored definition cannot be parsed; the object can still be stopped and removed."""


class MissingDependency(VirtError):
    """A Python library the chosen backend needs is not installed."""

    def __init__(self, library: str, reason: str):
        self.library = library
        super().__init__(f"{library} is required {reason}")


class OperationTimeout(VirtError):
    """A blocking transition did not finish in time."""
