# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The embedded (daemonless) QEMU driver at qemu:///embed?root=/dir.

The collection itself plays libvirt's QEMU driver: definitions are kept
by a DefinitionStore per kind (store.py), QEMU is started paused and
resumed over QMP, and each later run finds it again from the status XML,
the pidfile and the monitor socket (see layout.py, state.py, process.py).
``EmbedDriver`` holds what the whole root shares (tree, capabilities,
qemu.conf, the root's lock); ``EmbedDomains`` (domains.py, with
recovery.py and launch.py) is its ``domains``, ``EmbedNetworks``
(network.py) its ``networks``, ``EmbedPools`` and ``EmbedVolumes``
(storage.py) its ``pools`` and ``volumes``.  The root's tree is created by
the first write; a read-only driver (check mode, info modules) creates
nothing and reads a missing tree as a root without domains.  Private to
the collection.
"""

from __future__ import annotations

import copy
import os
import shutil

from ansible_collections.virtops.qemu.plugins.module_utils import fileio
from ansible_collections.virtops.qemu.plugins.module_utils.driver.base import (
    Domains,
    Driver,
    Networks,
    Pools,
    Snapshots,
    Volumes,
)
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.layout import Layout
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.store import DefinitionStore
from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError, InvalidInput, host_error
from ansible_collections.virtops.qemu.plugins.module_utils.lazy import load_part
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import XmlNode, parse, sub, to_string

# Each kind's code, the capabilities, the security managers and qemu.conf's
# parser are loaded when a call uses them, through lazy.load_part() so that a
# module's payload carries only the parts its module lists (module_utils/payload).

# libvirt architecture names whose QEMU target is spelt differently.
_QEMU_TARGET = {"i686": "i386", "armv7l": "arm"}


class EmbedDriver(Driver):
    """One embed root: its tree, capabilities, qemu.conf and lock, and a driver object per kind."""

    def __init__(self, uri, read_only: bool = False):
        super().__init__(uri)       # parse_uri has checked that the root is absolute
        self.read_only = read_only
        self.layout = Layout(uri.embed_root, uri.raw)
        self.layout.check_socket_room()
        self.layout.check_root()
        self._tree_ready = False
        self._caps_cache: dict[str, object] = {}
        self._conf: tuple[str, dict] | None = None
        self._domains: Domains | None = None
        self._networks: Networks | None = None
        self._pools: Pools | None = None
        self._volumes: Volumes | None = None
        self._snapshots: Snapshots | None = None

    # Each kind is made on first use, so that a call about one kind does not import another's code.
    @property
    def domains(self) -> Domains:  # type: ignore[override]
        if self._domains is None:
            self._domains = load_part("driver.embed.domains").EmbedDomains(self)
        return self._domains

    @property
    def networks(self) -> Networks:  # type: ignore[override]
        if self._networks is None:
            self._networks = load_part("driver.embed.network").EmbedNetworks(self)
        return self._networks

    @property
    def pools(self) -> Pools:  # type: ignore[override]
        if self._pools is None:
            self._pools = load_part("driver.embed.storage").EmbedPools(self)
        return self._pools

    @property
    def volumes(self) -> Volumes:  # type: ignore[override]
        if self._volumes is None:
            self._volumes = load_part("driver.embed.storage").EmbedVolumes(self.pools)
        return self._volumes

    def volume_sources(self, domain: XmlNode) -> XmlNode:
        """``domain`` with its volume disks naming the files or LUNs they read (a copy when it has such disks).

        The storage driver loads only for a domain with a volume disk.
        """
        if domain.find("devices/disk[@type='volume']") is None:
            return domain
        return load_part("driver.embed.storage").resolve_volume_disks(domain, self.volumes)

    @property
    def snapshots(self) -> Snapshots:  # type: ignore[override]
        if self._snapshots is None:
            self._snapshots = load_part("driver.embed.snapshot").EmbedSnapshots(self)
        return self._snapshots

    def close(self) -> None:
        """Nothing stays open between calls: every call opens and closes its own QMP session."""

    def capabilities(self) -> str:
        capsmod = load_part("driver.embed.caps")
        found = capsmod.probe_all(self._caps_cache_dir())
        text = capsmod.host_capabilities_xml(found, capsmod.kvm_usable())
        return _with_secmodels(text, load_part("driver.embed.security").secmodels(self.security_policy()))

    def security_policy(self):
        """The security managers in force for this root (qemu.conf and the host): a security.Policy."""
        return load_part("driver.embed.security").policy(self.qemu_conf())

    def qemu_conf(self) -> dict:
        """The settings of $root/etc/qemu.conf (empty when the file does not exist)."""
        conf = load_part("qemu_conf")
        text = conf.read_conf(self.layout.qemu_conf)
        if self._conf is None or self._conf[0] != text:     # a listing asks once per domain
            self._conf = (text, conf.settings_from_text(text))
        settings = copy.deepcopy(self._conf[1])
        ignored = sorted(set(settings) - conf.EMBED_HONOURED_KEYS)
        warning = f"{self.layout.qemu_conf}: the embedded driver ignores {', '.join(ignored)}"
        if ignored and warning not in self.warnings:
            self.warnings.append(warning)
        return settings

    # -- helpers ----------------------------------------------------------
    def ensure_tree(self) -> None:
        """Make the root ready for this run's first write: its tree, cleared of what killed writes left."""
        if self.read_only:
            raise BackendError(f"{self.uri.raw} was opened read-only; nothing may be written")
        if not self._tree_ready:
            self.layout.ensure_tree()
            self._tree_ready = True
            for paths in self.layout.kinds.values():
                DefinitionStore(paths, self.uri.raw, self.ensure_tree, self.read_only).remove_stale_temporaries()

    def driver_lock(self):
        return fileio.file_lock(self.layout.driver_lock_file(), f"embed root {self.layout.root}")

    def caps_for(self, domain):
        binary = (domain.findtext("devices/emulator") or "").strip() or self._default_emulator(domain)
        if binary not in self._caps_cache:
            self._caps_cache[binary] = load_part("driver.embed.caps").probe(binary, self._caps_cache_dir())
        return self._caps_cache[binary]

    def _caps_cache_dir(self) -> str | None:
        """Where probed capabilities are cached; None to probe without a cache.

        A read-only run uses and refreshes an existing cache but never creates one.
        """
        if not self.read_only:
            self.ensure_tree()
        return self.layout.cache_dir if os.path.isdir(self.layout.cache_dir) else None

    @staticmethod
    def _default_emulator(domain) -> str:
        ostype = domain.find("os/type")
        arch = (ostype.get("arch") if ostype is not None else None) or load_part("driver.embed.caps").host_arch()
        binary = shutil.which(f"qemu-system-{_QEMU_TARGET.get(arch, arch)}")
        if binary is None:
            raise InvalidInput(f"no qemu-system binary for architecture {arch!r} is installed",
                               "devices/emulator")
        return binary

    def default_seed_directory(self) -> str:
        return self.layout.path("lib", "qemu", "seeds")

    def write_seed(self, path: str, image: bytes) -> bool:
        self.ensure_tree()
        if path.startswith(self.default_seed_directory() + os.sep):
            _make_dir(self.default_seed_directory())
        return super().write_seed(path, image)

    def delete_disk_source(self, source: dict) -> None:
        if source.get("volume"):
            self.volumes.delete(source["pool"], source["volume"])
            return
        path = source["path"]
        if not os.path.lexists(path):
            return
        if not (os.path.isfile(path) or os.path.islink(path)):
            raise BackendError(f"{path!r} is not a regular file; the embedded driver deletes only image files")
        try:
            os.remove(path)
        except OSError as exc:
            raise host_error(exc, "delete", path) from exc


def _with_secmodels(text: str, models: list[dict]) -> str:
    """The capabilities with libvirt's <secmodel> elements of the models in force."""
    root = parse(text, "capabilities", "capabilities")
    host = root.find("host")
    for old in host.findall("secmodel"):
        host.remove(old)
    for entry in models:
        node = sub(host, "secmodel")
        sub(node, "model").text = entry["model"]
        sub(node, "doi").text = entry["doi"]
        for virt_type, label in entry["baselabels"].items():
            sub(node, "baselabel", type=virt_type).text = label
    return to_string(root)


def _make_dir(path: str) -> None:
    """A directory QEMU may pass through (0711) to the seed files it is given."""
    try:
        os.makedirs(path, mode=0o711, exist_ok=True)
    except OSError as exc:
        raise host_error(exc, "create", path) from exc
