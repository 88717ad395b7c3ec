# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The persistent definitions of one kind of object under an embed root.

One store per kind (domains, networks, pools) keeps what libvirt's drivers
keep in ``etc/<kind>``: one XML file per object, written atomically and
privately, an autostart symlink, and a lock per object.  A name is checked
before it becomes a path; an unknown name is NotFound without any file
being created; an object's lock file goes with the object.  The temporary
files of writes killed half-way are removed by the next run that writes.
OS errors leave as BackendError naming the path.  Private to the collection.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator

from ansible_collections.virtops.qemu.plugins.module_utils import fileio
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.layout import KindLayout
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.state import PRIVATE
from ansible_collections.virtops.qemu.plugins.module_utils.errors import (
    BackendError,
    Conflict,
    InvalidInput,
    NotFound,
    OperationTimeout,
    UnreadableDefinition,
    VirtError,
    host_error,
)
from ansible_collections.virtops.qemu.plugins.module_utils.model.names import validate_name
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import XmlNode, parse, to_string

# fileio.atomic_write's temporary file for NAME.xml.
_TEMPORARY = re.compile(r"^\.(.+)\.xml\.[A-Za-z0-9_]+\.tmp$")


class DefinitionStore:
    """Definitions, autostart links and object locks of one kind.

    ``prepare`` creates the root's tree before the first write and refuses
    when the driver was opened read-only; ``read_only`` tells the store so.
    """

    def __init__(self, paths: KindLayout, uri_text: str, prepare: Callable[[], None], read_only: bool = False):
        self.paths = paths
        self.kind = paths.kind
        self.uri_text = uri_text
        self._prepare = prepare
        self.read_only = read_only

    def not_found(self, name: str) -> NotFound:
        return NotFound(f"{self.kind} {name!r} is not defined in {self.uri_text}")

    # -- names ------------------------------------------------------------
    def defined(self, name: str) -> bool:
        """Whether ``name`` has a persistent definition."""
        return os.path.exists(self.paths.config_file(name))

    def names_on_disk(self) -> set[str]:
        """Names with a definition or a status file (an active object whose definition was removed)."""
        names = {f[:-4] for f in fileio.list_dir(self.paths.config_dir) if f.endswith(".xml")}
        for entry in fileio.list_dir(self.paths.run_dir):
            if entry.endswith(".xml") and not entry.startswith("."):
                names.add(entry[:-4])
        return names

    # -- definitions ----------------------------------------------------------
    def read(self, name: str) -> XmlNode | None:
        """The definition as a tree; None when there is none, UnreadableDefinition when it cannot be parsed."""
        path = self.paths.config_file(name)
        text = fileio.read_text(path)
        if text is None:
            return None
        try:
            return parse(text, self.kind, path)
        except (VirtError, ValueError) as exc:     # ValueError: bytes that are not UTF-8
            raise UnreadableDefinition(
                f"{self.kind} {name!r}: definition file {path} cannot be parsed: {exc}") from exc

    def write(self, name: str, tree: XmlNode) -> None:
        """Replace the definition atomically, owner only (it may hold console passwords); hold the lock."""
        fileio.atomic_write(self.paths.config_file(name), to_string(tree), mode=PRIVATE)

    def remove(self, name: str) -> None:
        """Remove the definition and its autostart link; hold the object's lock."""
        fileio.remove_quietly(self.paths.autostart_link(name))
        fileio.remove_quietly(self.paths.config_file(name))
        fileio.fsync_directory(self.paths.config_dir)

    def check_identity(self, name: str, desired: XmlNode, current: XmlNode | None) -> None:
        """Refuse a uuid that differs from the stored one or that another object of the kind has."""
        wanted = _uuid_of(desired)
        if current is not None:
            have = _uuid_of(current)
            if wanted and wanted != have:
                raise Conflict(f"{self.kind} {name!r} already exists with uuid {have}")
            return
        if not wanted:
            return
        for other in self.names_on_disk() - {name}:
            try:
                config = self.read(other)
            except BackendError:
                continue    # an unreadable definition claims no uuid
            if config is not None and _uuid_of(config) == wanted:
                raise Conflict(f"{self.kind} {other!r} already has uuid {wanted}; "
                               f"a {self.kind} cannot be renamed by define")

    # -- autostart ----------------------------------------------------------
    def autostart(self, name: str) -> bool:
        return os.path.islink(self.paths.autostart_link(name))

    def set_autostart(self, name: str, enabled: bool) -> None:
        """Create or remove the autostart link; hold the object's lock."""
        config_file = self.paths.config_file(name)
        if not os.path.exists(config_file):
            raise NotFound(f"{self.kind} {name!r} has no persistent definition in {self.uri_text}")
        link = self.paths.autostart_link(name)
        if not enabled:
            fileio.remove_quietly(link)
        elif not os.path.islink(link):
            temporary = f"{link}.tmp"
            fileio.remove_quietly(temporary)
            try:
                os.symlink(config_file, temporary)
                os.replace(temporary, link)
            except OSError as exc:
                fileio.remove_quietly(temporary)
                raise host_error(exc, "create the autostart link", link) from exc
        fileio.fsync_directory(self.paths.autostart_dir)

    # -- locks ----------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, name: str, exists: Callable[[str], bool], creating: bool = False) -> Iterator[None]:
        """The object's lock; only a define (``creating``) takes it for an object that does not exist.

        ``exists`` says whether the kind knows the object (a definition, or
        an active object's status).  No lock file is made for an unknown
        name, and one removed by another run while this one waited is
        noticed.  A define that fails leaves no lock file for an object
        that still does not exist.
        """
        validate_name(name, self.kind)
        if not creating and not exists(name):
            raise self.not_found(name)
        if creating or not self.read_only:
            self._prepare()
        path = self.paths.lock_file(name)
        fileio.make_private_dir(os.path.dirname(path))     # a read-only run on a root of an older release
        with fileio.file_lock(path, f"{self.kind} {name!r}"):
            if not creating and not exists(name):
                fileio.remove_lock_file(path)       # removed by another run while this one waited
                raise self.not_found(name)
            try:
                yield
            except BaseException:
                if creating and not exists(name):
                    fileio.remove_lock_file(path)
                raise

    def remove_lock(self, name: str) -> None:
        """Remove the lock file of an object that is gone; only while holding its lock."""
        fileio.remove_lock_file(self.paths.lock_file(name))

    # -- what killed runs left --------------------------------------------------
    def remove_stale_temporaries(self) -> None:
        """Remove the temporary files of writes that were killed half-way (``.NAME.xml.*.tmp``).

        Every definition and status record is written under its object's
        lock, so the temporaries of an object whose lock is free belong to a
        run that is gone; a held lock may be a write at work and is left alone.
        """
        for name, paths in self._temporaries().items():
            try:
                with fileio.file_lock(self.paths.lock_file(name), f"{self.kind} {name!r}", timeout=0):
                    for path in paths:
                        fileio.remove_quietly(path)
                    if not self.defined(name) and not os.path.exists(self.paths.status_file(name)):
                        self.remove_lock(name)
            except OperationTimeout:
                continue

    def _temporaries(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for directory in (self.paths.config_dir, self.paths.run_dir):
            for entry in fileio.list_dir(directory):
                match = _TEMPORARY.match(entry)
                if match and _valid_name(match.group(1), self.kind):
                    found.setdefault(match.group(1), []).append(os.path.join(directory, entry))
        return found


class StoredAutostart:
    """autostart and set_autostart of a kind whose definitions a DefinitionStore keeps.

    A mixin for the embedded driver's kinds, placed before the kind's protocol class.
    """

    store: DefinitionStore
    exists: Callable[[str], bool]

    def autostart(self, name: str) -> bool:
        if not self.exists(name):
            raise self.store.not_found(name)
        return self.store.autostart(name)

    def set_autostart(self, name: str, enabled: bool) -> None:
        with self.store.lock(name, self.exists):
            self.store.set_autostart(name, enabled)


def _valid_name(name: str, kind: str) -> bool:
    try:
        validate_name(name, kind)
    except InvalidInput:
        return False
    return True


def _uuid_of(tree: XmlNode) -> str:
    return (tree.findtext("uuid") or "").strip().lower()
