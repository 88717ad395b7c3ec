# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The embedded driver's storage pools and volumes, done the way libvirt's storage driver does them.

Definitions live in ``etc/storage`` (a DefinitionStore); an active pool
has a status record in ``run/storage`` (poolstate.py), so a later run
knows it is active, and an fs pool whose filesystem was unmounted behind
the driver's back is found inactive.  Pool types:

- ``dir``: a directory; ``build`` makes it with the pool's permissions.
- ``fs``: a block device mounted on the target while the pool is active.
- ``iscsi-direct``: an iSCSI target reached in user space (libiscsi, as
  QEMU's ``iscsi`` block driver does); its disk LUNs are the volumes,
  named ``unit:0:0:<lun>`` as libvirt names them, and cannot be created
  or deleted.

Volumes of dir and fs pools are the files in the target directory, made by
qemu-img.  Every operation on a pool or one of its volumes holds the pool's
lock.  Other pool types are refused at define with an error naming the
type.  Private to the collection.
"""

from __future__ import annotations

import copy
import os
import uuid
from typing import TYPE_CHECKING

from ansible_collections.virtops.qemu.plugins.module_utils import fileio
from ansible_collections.virtops.qemu.plugins.module_utils.driver.base import Pools, PoolSpace, Volumes, local_path_kind
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import images, poolstate
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.poolstate import PoolRecord
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.store import StoredResources
from ansible_collections.virtops.qemu.plugins.module_utils.errors import (
    BackendError,
    Conflict,
    InvalidInput,
    NotFound,
    host_error,
)
from ansible_collections.virtops.qemu.plugins.module_utils.model import pool as pool_model
from ansible_collections.virtops.qemu.plugins.module_utils.model import units
from ansible_collections.virtops.qemu.plugins.module_utils.model.names import validate_name
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import (
    XmlNode,
    element,
    parse,
    sub,
    to_string,
    uuid_of,
)

if TYPE_CHECKING:
    from ansible_collections.virtops.qemu.plugins.module_utils.model.volume import ImageSource

EMBED_TYPES = ("dir", "fs", "iscsi-direct")
FILE_TYPES = ("dir", "fs")
# libvirt's defaults for a pool's directory and its new volumes.
DEFAULT_POOL_MODE = 0o711
DEFAULT_VOLUME_MODE = 0o600
ISCSI_PORT = 3260
LUN_PREFIX = "unit:0:0:"


class EmbedPools(StoredResources[PoolRecord], Pools):
    """The storage pools of one embed root."""

    records = poolstate.RECORDS

    # -- helpers ------------------------------------------------------------
    def lock(self, name: str, creating: bool = False):
        """The pool's lock, which its volumes' operations hold too."""
        return self._lock(name, creating)

    def config(self, name: str) -> XmlNode:
        config = self.store.read(name)
        if config is None:
            raise self.store.not_found(name)
        return config

    def live(self, name: str) -> XmlNode:
        """The active pool's definition (held by the caller's lock); Conflict when it is inactive."""
        record = self.refresh_state(name)
        if record is None:
            raise Conflict(f"storage pool {name!r} is not active")
        return record.live if record.live is not None else self.config(name)

    # -- the protocol -----------------------------------------------------------
    def exists(self, name: str) -> bool:
        return self.store.defined(name) or os.path.exists(self.paths.status_file(name))

    # -- the hooks of StoredResources ---------------------------------------------
    def _check_request(self, desired: XmlNode) -> None:
        check_supported(desired)
        pool_model.settle(desired)
        pool_model.validate(desired, "xml")

    def _complete(self, name: str, desired: XmlNode, current: XmlNode | None) -> XmlNode:
        final = copy.deepcopy(desired)
        if final.find("uuid") is None:
            final.find("name").addnext(element("uuid", uuid_of(current) or str(uuid.uuid4())))
        self._check_target_unique(name, final)
        return final

    def _refreshed(self, name: str) -> PoolRecord | None:
        return self.refresh_state(name)

    def _shown(self, name: str, tree: XmlNode, record: PoolRecord | None) -> XmlNode:
        """The tree with its space; as in libvirt, only the running pool is measured.

        A definition changed since the start waits for the next one and shows zeros.
        """
        measured = record is not None and (record.live is None or to_string(tree) == to_string(record.live))
        tree = copy.deepcopy(tree)
        self._measure(name, tree, measured)
        return tree

    def active(self, name: str) -> bool:
        with self.lock(name):
            return self.refresh_state(name) is not None

    def start(self, name: str) -> None:
        with self.lock(name):
            if self.refresh_state(name) is not None:
                raise Conflict(f"storage pool {name!r} is already active")
            live = copy.deepcopy(self.config(name))
            mounted = self._bring_up(name, live)
            self._save(name, PoolRecord(mounted=mounted, live=live))

    def stop(self, name: str) -> None:
        with self.lock(name):
            record = self.refresh_state(name)
            if record is None:
                raise Conflict(f"storage pool {name!r} is not active")
            if record.mounted and record.live is not None:
                images.unmount(pool_model.target_path(record.live) or "")
            self._forget_state(name)

    def build(self, name: str, overwrite: bool = False) -> None:
        with self.lock(name):
            if self.refresh_state(name) is not None:
                raise Conflict(f"storage pool {name!r} is active; stop it before building it")
            config = self.config(name)
            kind = pool_model.pool_type(config)
            if kind in FILE_TYPES:
                make_target(config)
            if kind == "fs" and overwrite:
                images.mkfs(_device(config), _fs_format(config) or "ext4")

    def built(self, name: str) -> bool:
        with self.lock(name):
            config = self.config(name)
        path = pool_model.target_path(config)
        return path is None or os.path.isdir(path)

    def refresh(self, name: str) -> None:
        """Volumes are read from the target (or the iSCSI target) each time: nothing is cached."""
        with self.lock(name):
            self.live(name)

    def space(self, name: str) -> PoolSpace:
        with self.lock(name):
            record = self.refresh_state(name)
            if record is None:
                return PoolSpace(0, 0, 0)
            return self._space(record.live if record.live is not None else self.config(name))

    def delete_target(self, name: str) -> None:
        with self.lock(name):
            if self.refresh_state(name) is not None:
                raise Conflict(f"storage pool {name!r} is active; stop it before removing its target")
            path = pool_model.target_path(self.config(name))
            if path is None:
                return
            try:
                os.rmdir(path)
            except FileNotFoundError:
                return
            except OSError as exc:
                raise host_error(exc, "remove the pool's target directory", path) from exc

    # -- state ----------------------------------------------------------------------
    def refresh_state(self, name: str) -> PoolRecord | None:
        """The record of an active pool; an fs pool whose filesystem has gone is found inactive."""
        record = self._record(name)
        if record is None:
            if not self.store.defined(name):
                raise self.store.not_found(name)
            return None
        live = record.live
        if record.mounted and live is not None and not _mounted(live):
            self.warnings.append(f"storage pool {name!r}: its filesystem is no longer mounted on "
                                 f"{pool_model.target_path(live)}; the pool is inactive")
            self._forget_state(name)
            return None
        return record

    def _forget_state(self, name: str) -> None:
        self._drop_record(name)
        if not self.store.defined(name):
            self.store.remove_lock(name)

    def _bring_up(self, name: str, live: XmlNode) -> bool:
        kind = pool_model.pool_type(live)
        path = pool_model.target_path(live)
        if kind in FILE_TYPES and (path is None or not os.path.isdir(path)):
            raise BackendError(f"cannot start storage pool {name!r}: its target directory {path} does not "
                               "exist (build the pool first)")
        if kind == "fs":
            if _mounted(live):
                return True
            if local_path_kind(_device(live)) != "block device":
                raise InvalidInput(f"cannot start storage pool {name!r}: its source device {_device(live)} is not "
                                   "a block device", "source/device")
            if images.mount_of(path or "") is not None:
                raise Conflict(f"cannot start storage pool {name!r}: another filesystem is mounted on {path}")
            images.mount(_device(live), path or "", _fs_format(live))
            return True
        if kind == "iscsi-direct":
            iscsi_luns(live)        # the target answers
        return False

    def _measure(self, name: str, tree: XmlNode, active: bool) -> None:
        space = self._measured_space(name, tree) if active else PoolSpace(0, 0, 0)
        anchor = tree.find("uuid") if tree.find("uuid") is not None else tree.find("name")
        for tag in reversed(pool_model.MEASURED):
            anchor.addnext(element(tag, getattr(space, tag), unit="bytes"))

    def _measured_space(self, name: str, tree: XmlNode) -> PoolSpace:
        """The space of the running pool; zeros and a warning when its target cannot be measured.

        A target removed behind the driver's back must not keep the pool
        from being described, stopped or removed.
        """
        try:
            return self._space(tree)
        except BackendError as exc:
            self.warnings.append(f"storage pool {name!r}: {exc}")
            return PoolSpace(0, 0, 0)

    def _space(self, tree: XmlNode) -> PoolSpace:
        if pool_model.pool_type(tree) == "iscsi-direct":
            total = sum(capacity for _lun, capacity in iscsi_volumes(tree))
            return PoolSpace(total, total, 0)
        path = pool_model.target_path(tree) or "/"
        try:
            stats = os.statvfs(path)
        except OSError as exc:
            raise host_error(exc, "measure", path) from exc
        return PoolSpace(stats.f_frsize * stats.f_blocks, stats.f_frsize * (stats.f_blocks - stats.f_bfree),
                         stats.f_frsize * stats.f_bavail)

    def _check_target_unique(self, name: str, tree: XmlNode) -> None:
        path = pool_model.target_path(tree)
        device = tree.find("source/device")
        for other in self.store.names_on_disk() - {name}:
            try:
                config = self.store.read(other)
            except BackendError:
                continue
            if config is None:
                continue
            if path and pool_model.target_path(config) == path:
                raise Conflict(f"storage pool {other!r} already uses target {path}")
            if device is not None and pool_model.pool_type(tree) == "fs" and \
                    device.get("path") in [d.get("path") for d in config.findall("source/device")]:
                raise Conflict(f"storage pool {other!r} already uses device {device.get('path')}")


def check_supported(pool: XmlNode) -> None:
    kind = pool_model.pool_type(pool)
    if kind not in EMBED_TYPES:
        raise InvalidInput(f"pool type {kind!r} is not supported by the embedded driver (it supports "
                           f"{', '.join(EMBED_TYPES)}); use libvirt (qemu:///system) for it", "type")


def make_target(config: XmlNode) -> None:
    """mkdir the target with the pool's permissions (libvirt's 0711 and the caller's ids by default)."""
    path = pool_model.target_path(config) or ""
    mode_text = (config.findtext("target/permissions/mode") or "").strip()
    mode = int(mode_text, 8) if mode_text else DEFAULT_POOL_MODE
    owner = int((config.findtext("target/permissions/owner") or "-1").strip())
    group = int((config.findtext("target/permissions/group") or "-1").strip())
    try:
        os.makedirs(path, exist_ok=True)
        os.chmod(path, mode)
        if owner != -1 or group != -1:
            os.chown(path, owner, group)
    except OSError as exc:
        raise host_error(exc, "create the pool's target directory", path) from exc


def _device(tree: XmlNode) -> str:
    return tree.find("source/device").get("path")


def _fs_format(tree: XmlNode) -> str | None:
    node = tree.find("source/format")
    return node.get("type") if node is not None else None


def _mounted(tree: XmlNode) -> bool:
    path = pool_model.target_path(tree)
    mounted = images.mount_of(path) if path else None
    return mounted is not None and mounted == images.device_number(_device(tree))


# -- iscsi-direct -----------------------------------------------------------------------
def iscsi_portal(tree: XmlNode) -> tuple[str, int, str, str]:
    """Host, port, target IQN and initiator IQN of an iscsi-direct pool."""
    host = tree.find("source/host")
    return (host.get("name"), int(host.get("port") or ISCSI_PORT), tree.find("source/device").get("path"),
            tree.find("source/initiator/iqn").get("name"))


def iscsi_luns(tree: XmlNode) -> list[int]:
    return images.iscsi_luns(*iscsi_portal(tree))


def iscsi_volumes(tree: XmlNode) -> list[tuple[int, int]]:
    portal = iscsi_portal(tree)
    return [(lun, images.iscsi_capacity(*portal, lun)) for lun in images.iscsi_luns(*portal)]


def lun_path(tree: XmlNode, lun: int) -> str:
    """libvirt's key and path of an iscsi-direct volume."""
    host, port, target, _initiator = iscsi_portal(tree)
    return f"ip-{host}:{port}-iscsi-{target}-lun-{lun}"


def lun_of(name: str) -> int | None:
    if not name.startswith(LUN_PREFIX):
        return None
    try:
        return int(name[len(LUN_PREFIX):])
    except ValueError:
        return None


# -- volumes ----------------------------------------------------------------------------
class EmbedVolumes(Volumes):
    """Volumes of the embed root's active pools; each call holds its pool's lock."""

    def __init__(self, pools: EmbedPools):
        self.pools = pools

    def _active(self, pool: str) -> XmlNode:
        return self.pools.live(pool)

    def _file(self, tree: XmlNode, pool: str, name: str) -> str:
        validate_name(name, "volume")
        if pool_model.pool_type(tree) not in FILE_TYPES:
            raise InvalidInput(f"volumes of {pool_model.pool_type(tree)} pool {pool!r} are the target's LUNs; "
                               "they cannot be created, deleted, resized or changed here", "pool")
        return os.path.join(pool_model.target_path(tree) or "", name)

    def _not_found(self, pool: str, name: str) -> NotFound:
        return NotFound(f"storage volume {name!r} is not in pool {pool!r}")

    def names(self, pool: str) -> list[str]:
        with self.pools.lock(pool):
            tree = self._active(pool)
            if pool_model.pool_type(tree) == "iscsi-direct":
                return [f"{LUN_PREFIX}{lun}" for lun in iscsi_luns(tree)]
            directory = pool_model.target_path(tree) or ""
            return sorted(entry for entry in fileio.list_dir(directory)
                          if not entry.startswith(".") and os.path.isfile(os.path.join(directory, entry)))

    def exists(self, pool: str, name: str) -> bool:
        return name in self.names(pool)

    def xml(self, pool: str, name: str) -> str:
        with self.pools.lock(pool):
            tree = self._active(pool)
            if pool_model.pool_type(tree) == "iscsi-direct":
                return to_string(self._lun_xml(tree, pool, name))
            path = self._file(tree, pool, name)
            if not os.path.isfile(path):
                raise self._not_found(pool, name)
            return to_string(file_volume_xml(name, path))

    def _lun_xml(self, tree: XmlNode, pool: str, name: str) -> XmlNode:
        lun = lun_of(name)
        found = dict(iscsi_volumes(tree))
        if lun is None or lun not in found:
            raise self._not_found(pool, name)
        volume = element("volume", type="network")
        sub(volume, "name", name)
        sub(volume, "key", lun_path(tree, lun))
        sub(volume, "capacity", found[lun], unit="bytes")
        sub(volume, "allocation", found[lun], unit="bytes")
        target = sub(volume, "target")
        sub(target, "path", lun_path(tree, lun))
        sub(target, "format", type="raw")
        return volume

    def create(self, pool: str, xml: str, clone_from: tuple[str, str] | None = None) -> None:
        wanted = parse(xml, "volume")
        name = validate_name((wanted.findtext("name") or "").strip(), "volume")
        source = self._clone_source(clone_from) if clone_from else None
        with self.pools.lock(pool):
            path = self._file(self._active(pool), pool, name)
            if os.path.lexists(path):
                raise Conflict(f"storage volume {name!r} already exists in pool {pool!r}")
            make_volume(path, wanted, source)

    def import_image(self, pool: str, xml: str, source: ImageSource, opener, capacity: int | None) -> str:
        """Staged in the pool's directory without the pool's lock (a download may be slow), renamed under it."""
        from ansible_collections.virtops.qemu.plugins.module_utils.driver import image_import
        wanted = parse(xml, "volume")
        name = validate_name((wanted.findtext("name") or "").strip(), "volume")
        fmt = wanted.find("target/format").get("type") if wanted.find("target/format") is not None else "raw"
        with self.pools.lock(pool):
            path = self._file(self._active(pool), pool, name)
            if os.path.lexists(path):
                raise Conflict(f"storage volume {name!r} already exists in pool {pool!r}")
            image_import.sweep(os.path.dirname(path), name)
        staged = image_import.stage(source, opener, fmt, os.path.dirname(path), name, copy=True)
        try:
            image_import.check_capacity(capacity, staged.size, source.url or source.path or "")
            if capacity is not None and capacity > staged.size:
                image_import.grow(staged.path, fmt, capacity)
            set_permissions(staged.path, *_permissions(wanted))
            with self.pools.lock(pool):
                if os.path.lexists(path):
                    raise Conflict(f"storage volume {name!r} already exists in pool {pool!r}")
                try:
                    os.rename(staged.path, path)
                except OSError as exc:
                    raise host_error(exc, "move the imported image to", path) from exc
                fileio.fsync_directory(os.path.dirname(path))
        finally:
            staged.remove_temporaries()
        return staged.checksum

    def _clone_source(self, clone_from: tuple[str, str]) -> tuple[str, str]:
        facts = parse(self.xml(*clone_from), "volume")
        return facts.findtext("target/path"), facts.find("target/format").get("type")

    def delete(self, pool: str, name: str) -> None:
        with self.pools.lock(pool):
            path = self._file(self._active(pool), pool, name)
            try:
                os.remove(path)
            except FileNotFoundError as exc:
                raise self._not_found(pool, name) from exc
            except OSError as exc:
                raise host_error(exc, "delete volume", path) from exc

    def resize(self, pool: str, name: str, capacity: int, shrink: bool = False) -> None:
        with self.pools.lock(pool):
            path = self._existing(pool, name)
            fmt = images.info(path).get("format", "raw")
            images.resize(path, fmt, capacity, shrink)

    def _existing(self, pool: str, name: str) -> str:
        path = self._file(self._active(pool), pool, name)
        if not os.path.isfile(path):
            raise self._not_found(pool, name)
        return path

    def set_permissions(self, pool: str, name: str, mode: str | None, owner: int | None,
                        group: int | None) -> None:
        with self.pools.lock(pool):
            path = self._existing(pool, name)
            set_permissions(path, mode, owner, group)

    def path(self, pool: str, name: str) -> str:
        with self.pools.lock(pool):
            tree = self._active(pool)
            if pool_model.pool_type(tree) == "iscsi-direct":
                return self._lun_xml(tree, pool, name).findtext("target/path")
            return self._existing(pool, name)

    def source(self, pool: str, name: str) -> dict:
        """Where a domain disk on the volume reads: {"file": path, "format": ...} or an iSCSI LUN."""
        with self.pools.lock(pool):
            tree = self._active(pool)
            if pool_model.pool_type(tree) != "iscsi-direct":
                path = self._existing(pool, name)
                return {"file": path, "format": images.info(path).get("format", "raw")}
            lun = lun_of(name)
            if lun is None or lun not in iscsi_luns(tree):
                raise self._not_found(pool, name)
            host, port, target, initiator = iscsi_portal(tree)
            return {"host": host, "port": port, "target": target, "lun": lun, "initiator": initiator}


def set_permissions(path: str, mode: str | None, owner: int | None, group: int | None) -> None:
    try:
        if mode is not None:
            os.chmod(path, int(mode, 8))
        if owner is not None or group is not None:
            os.chown(path, -1 if owner is None else owner, -1 if group is None else group)
    except OSError as exc:
        raise host_error(exc, "change the permissions of", path) from exc


def make_volume(path: str, wanted: XmlNode, source: tuple[str, str] | None) -> None:
    """qemu-img create (or convert for a clone) into a hidden file, then set its mode and rename it."""
    fmt = (wanted.find("target/format").get("type") if wanted.find("target/format") is not None else "raw")
    capacity = _size(wanted.find("capacity"))
    allocation = _size(wanted.find("allocation")) if wanted.find("allocation") is not None else 0
    partial = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.part")
    fileio.remove_quietly(partial)
    try:
        if source is not None:
            images.convert(source[0], source[1], partial, fmt)     # a larger capacity is the caller's resize
        else:
            images.create(partial, fmt, capacity, _backing(wanted), preallocate=allocation >= capacity > 0)
        set_permissions(partial, *_permissions(wanted))
        os.rename(partial, path)
    except BaseException:
        fileio.remove_quietly(partial)
        raise


def _permissions(wanted: XmlNode) -> tuple[str, int | None, int | None]:
    """Mode, owner and group a new volume's XML asks for; libvirt's mode when it names none."""
    mode = (wanted.findtext("target/permissions/mode") or "").strip() or f"{DEFAULT_VOLUME_MODE:04o}"
    owner = (wanted.findtext("target/permissions/owner") or "").strip()
    group = (wanted.findtext("target/permissions/group") or "").strip()
    return mode, int(owner) if owner else None, int(group) if group else None


def _size(node: XmlNode | None) -> int:
    if node is None:
        raise InvalidInput("a volume needs a capacity", "capacity")
    return units.to_bytes(f"{(node.text or '').strip()}{node.get('unit') or 'bytes'}", "bytes", "xml")


def _backing(wanted: XmlNode) -> tuple[str, str] | None:
    backing = wanted.find("backingStore")
    if backing is None:
        return None
    fmt = backing.find("format")
    return backing.findtext("path"), fmt.get("type") if fmt is not None else "raw"


def file_volume_xml(name: str, path: str) -> XmlNode:
    """A file volume as libvirt's dir backend describes it, from qemu-img info and stat."""
    found = images.info(path)
    stats = os.stat(path)
    volume = element("volume", type="file")
    sub(volume, "name", name)
    sub(volume, "key", path)
    sub(volume, "capacity", found.get("virtual-size", stats.st_size), unit="bytes")
    sub(volume, "allocation", stats.st_blocks * 512, unit="bytes")
    sub(volume, "physical", stats.st_size, unit="bytes")
    target = sub(volume, "target")
    sub(target, "path", path)
    sub(target, "format", type=found.get("format", "raw"))
    permissions = sub(target, "permissions")
    sub(permissions, "mode", f"{stats.st_mode & 0o7777:04o}")
    sub(permissions, "owner", stats.st_uid)
    sub(permissions, "group", stats.st_gid)
    if found.get("backing-filename"):
        backing = sub(volume, "backingStore")
        sub(backing, "path", found.get("full-backing-filename") or found["backing-filename"])
        sub(backing, "format", type=found.get("backing-filename-format", "raw"))
    return volume


# -- domain disks on volumes -------------------------------------------------------------
def resolve_volume_disks(domain: XmlNode, volumes: EmbedVolumes) -> XmlNode:
    """A copy of the domain whose volume disks name what they read: the volume's file, or its iSCSI LUN.

    A disk whose driver names no format gets the volume's, as libvirt's start does.
    """
    resolved = copy.deepcopy(domain)
    for disk in resolved.findall("devices/disk[@type='volume']"):
        source = disk.find("source")
        if source is None or not source.get("pool") or not source.get("volume"):
            raise InvalidInput("a volume disk needs <source pool='...' volume='...'/>", "devices/disk/source")
        found = volumes.source(source.get("pool"), source.get("volume"))
        driver = disk.find("driver")
        if driver is None:
            driver = element("driver", name="qemu")
            disk.insert(0, driver)
        for attribute in list(source.attrib):
            del source.attrib[attribute]
        if "file" in found:
            disk.set("type", "file")
            source.set("file", found["file"])
            driver.set("type", driver.get("type") or found["format"])
        else:
            _iscsi_source(disk, source, found)
            driver.set("type", driver.get("type") or "raw")
    return resolved


def _iscsi_source(disk: XmlNode, source: XmlNode, found: dict) -> None:
    disk.set("type", "network")
    source.set("protocol", "iscsi")
    source.set("name", f"{found['target']}/{found['lun']}")
    sub(source, "host", name=found["host"], port=found["port"])
    initiator = sub(source, "initiator")
    sub(initiator, "iqn", name=found["initiator"])
