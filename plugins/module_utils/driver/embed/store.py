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
OS errors leave as BackendError naming the path.

``StoredResources`` is what the kinds (EmbedDomains, EmbedNetworks,
EmbedPools) share on top of their store: the define skeleton (parse,
name, checks, lock, identity, completion, schema, write), the read of the
stored or live XML, and the undefine skeleton; each kind fills in a few
hooks.  Private to the collection.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from typing import Generic, Protocol, TypeVar

from ansible_collections.virtops.qemu.plugins.module_utils import fileio
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.layout import KindLayout
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.state import PRIVATE, StatusRecords
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
from ansible_collections.virtops.qemu.plugins.module_utils.model.kinds import KINDS
from ansible_collections.virtops.qemu.plugins.module_utils.model.names import validate_name
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import XmlNode, parse, to_string, uuid_of

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
        wanted = _identity(desired)
        if current is not None:
            have = _identity(current)
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
            if config is not None and _identity(config) == wanted:
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


class _Status(Protocol):
    live: XmlNode | None      # the live XML of the active object


Record = TypeVar("Record", bound=_Status)


class StoredResources(StoredAutostart, Generic[Record]):
    """The define, read and undefine skeletons of a kind whose definitions a DefinitionStore keeps.

    A base for the embedded driver's kinds, placed before the kind's protocol
    class.  A subclass sets ``records`` (its status records) and, if it
    differs, ``LIVE_WITHOUT_DEFINITION``; ``kind`` (from the protocol class)
    names its record in model/kinds.py, which gives the root tag and the
    libvirt schema of its definitions.  It fills in the hooks ``_complete`` and
    ``_refreshed``, and ``_check_request``, ``_replaced``, ``_state``,
    ``_shown``, ``_to_undefine`` and ``_undefined`` where the defaults do
    not fit.  The hooks but ``_check_request`` and ``_state`` run under the
    object's lock unless ``_state`` says otherwise.
    """

    kind: str
    records: StatusRecords[Record]
    # Whether the inactive XML of an active object without a definition (a transient one) is its live
    # XML; otherwise asking for it is NotFound.
    LIVE_WITHOUT_DEFINITION = True

    def __init__(self, driver):
        self.driver = driver
        self.layout = driver.layout
        self.paths: KindLayout = driver.layout.kinds[self.kind]
        self.warnings = driver.warnings
        self.store = DefinitionStore(self.paths, driver.uri.raw, driver.ensure_tree, driver.read_only)
        self.tag, self.schema_name = KINDS[self.kind].tag, KINDS[self.kind].schema

    # -- helpers ------------------------------------------------------------
    def _lock(self, name: str, creating: bool = False):
        return self.store.lock(name, self.exists, creating)

    def _record(self, name: str) -> Record | None:
        return self.records.load(self.paths.status_file(name))

    def _save(self, name: str, record: Record, durable: bool = True) -> None:
        self.records.save(self.paths.status_file(name), record, durable)

    def _drop_record(self, name: str) -> None:
        self.records.remove(self.paths.status_file(name))

    # -- the protocol -----------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(n for n in self.store.names_on_disk() if self.exists(n))

    def define(self, xml: str) -> None:
        desired, name = self._parsed(xml)
        with self._lock(name, creating=True):
            self.store.write(name, self._completed(name, desired, self._replaced(name)))

    def xml(self, name: str, inactive: bool = True) -> str:
        """The definition (``inactive``) or the live XML of an active object, as ``_shown`` shows it."""
        with self._state(name) as record:
            live = record.live if record is not None else None
            tree = None if live is not None and not inactive else self.store.read(name)
            if tree is None and (not inactive or self.LIVE_WITHOUT_DEFINITION):
                tree = live
            if tree is None:
                raise self.store.not_found(name)
            return to_string(self._shown(name, tree, record))

    def undefine(self, name: str) -> None:
        """Remove the definition; an active object stays, transient, until it stops."""
        with self._lock(name):
            if not self.store.defined(name):
                raise self.store.not_found(name)
            config = self._to_undefine(name)
            active = self._refreshed(name) is not None
            self.store.remove(name)
            self._undefined(name, config, active)

    # -- the define skeleton ----------------------------------------------------
    def _parsed(self, xml: str) -> tuple[XmlNode, str]:
        """The requested definition and its name, checked before any lock is taken."""
        desired = parse(xml, self.tag)
        name = validate_name((desired.findtext("name") or "").strip(), self.kind)
        self._check_request(desired)
        return desired, name

    def _completed(self, name: str, desired: XmlNode, current: XmlNode | None) -> XmlNode:
        """The definition as it is stored: identity checked, completed, valid."""
        from ansible_collections.virtops.qemu.plugins.module_utils.model import schema  # only a define needs it
        self.store.check_identity(name, desired, current)
        final = self._complete(name, desired, current)
        schema.validate(final, self.schema_name, what="the completed definition")
        return final

    # -- hooks ------------------------------------------------------------------
    def _check_request(self, desired: XmlNode) -> None:
        """Refuse a requested definition before the lock is taken; by default one outside the schema."""
        from ansible_collections.virtops.qemu.plugins.module_utils.model import schema
        schema.validate(desired, self.schema_name)

    def _replaced(self, name: str) -> XmlNode | None:
        """What a define replaces, for the identity check and what it carries over: the definition."""
        return self.store.read(name)

    def _complete(self, name: str, desired: XmlNode, current: XmlNode | None) -> XmlNode:
        """``desired`` completed as libvirt completes a definition (uuid, addresses, ...) and checked."""
        raise NotImplementedError

    def _refreshed(self, name: str) -> Record | None:
        """The status record of an active object, brought up to date with the host; None when inactive."""
        raise NotImplementedError

    @contextlib.contextmanager
    def _state(self, name: str) -> Iterator[Record | None]:
        """``_refreshed`` for a read, steady while the caller reads: by default under the object's lock."""
        with self._lock(name):
            yield self._refreshed(name)

    def _shown(self, name: str, tree: XmlNode, record: Record | None) -> XmlNode:
        """The tree ``xml`` returns for the definition or live XML ``tree``; by default ``tree`` itself."""
        return tree

    def _to_undefine(self, name: str) -> XmlNode | None:
        """What ``_undefined`` needs to know of the definition being removed; by default nothing."""
        return None

    def _undefined(self, name: str, config: XmlNode | None, active: bool) -> None:
        """After the definition is removed: an inactive object's status record and lock go too."""
        if not active:
            self._drop_record(name)
            self.store.remove_lock(name)


def _valid_name(name: str, kind: str) -> bool:
    try:
        validate_name(name, kind)
    except InvalidInput:
        return False
    return True


def _identity(tree: XmlNode) -> str:
    """The uuid as compared: uuids differ only in case when they are the same."""
    return (uuid_of(tree) or "").lower()
