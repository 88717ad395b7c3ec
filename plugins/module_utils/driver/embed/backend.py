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
from typing import TYPE_CHECKING

from ansible_collections.virtops.qemu.plugins.module_utils import fileio
from ansible_collections.virtops.qemu.plugins.module_utils.driver.base import Driver
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.layout import Layout
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.store import DefinitionStore
from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError, InvalidInput, host_error
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import XmlNode, parse, sub, to_string

# What only starting a QEMU, sending keys or another kind needs (the command-line
# builder, post-parse, capabilities, security managers, networks, storage) is
# imported where it is used: every module run pays for each import, and a call
# that reads one domain needs none of them.
if TYPE_CHECKING:
    from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import security
    from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.domains import EmbedDomains
    from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.network import EmbedNetworks
    from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.snapshot import EmbedSnapshots
    from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.storage import EmbedPools, EmbedVolumes

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
        self._domains: EmbedDomains | None = None
        self._networks: EmbedNetworks | None = None
        self._pools: EmbedPools | None = None
        self._volumes: EmbedVolumes | None = None
        self._snapshots: EmbedSnapshots | None = None

    # Each kind is made on first use, so that a call about one kind does not import another's code.
    @property
    def domains(self) -> EmbedDomains:  # type: ignore[override]
        if self._domains is None:
            from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.domains import EmbedDomains
            self._domains = EmbedDomains(self)
        return self._domains

    @property
    def networks(self) -> EmbedNetworks:  # type: ignore[override]
        if self._networks is None:
            from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.network import EmbedNetworks
            self._networks = EmbedNetworks(self)
        return self._networks

    @property
    def pools(self) -> EmbedPools:  # type: ignore[override]
        if self._pools is None:
            from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.storage import EmbedPools
            self._pools = EmbedPools(self)
        return self._pools

    @property
    def volumes(self) -> EmbedVolumes:  # type: ignore[override]
        if self._volumes is None:
            from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.storage import EmbedVolumes
            self._volumes = EmbedVolumes(self.pools)
        return self._volumes

    def volume_sources(self, domain: XmlNode) -> XmlNode:
        """``domain`` with its volume disks naming the files or LUNs they read (a copy when it has such disks).

        The storage driver loads only for a domain with a volume disk.
        """
        if domain.find("devices/disk[@type='volume']") is None:
            return domain
        from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.storage import resolve_volume_disks
        return resolve_volume_disks(domain, self.volumes)

    @property
    def snapshots(self) -> EmbedSnapshots:  # type: ignore[override]
        if self._snapshots is None:
            from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.snapshot import EmbedSnapshots
            self._snapshots = EmbedSnapshots(self)
        return self._snapshots

    def close(self) -> None:
        """Nothing stays open between calls: every call opens and closes its own QMP session."""

    def capabilities(self) -> str:
        from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import caps as capsmod
        from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import security
        found = capsmod.probe_all(self._caps_cache_dir())
        text = capsmod.host_capabilities_xml(found, capsmod.kvm_usable())
        return _with_secmodels(text, security.secmodels(self.security_policy()))

    def security_policy(self) -> security.Policy:
        """The security managers in force for this root (qemu.conf and the host)."""
        from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import security
        return security.policy(self.qemu_conf())

    def qemu_conf(self) -> dict:
        """The settings of $root/etc/qemu.conf (empty when the file does not exist)."""
        from ansible_collections.virtops.qemu.plugins.module_utils.qemu_conf import (
            EMBED_HONOURED_KEYS,
            read_conf,
            settings_from_text,
        )
        text = read_conf(self.layout.qemu_conf)
        if self._conf is None or self._conf[0] != text:     # a listing asks once per domain
            self._conf = (text, settings_from_text(text))
        settings = copy.deepcopy(self._conf[1])
        ignored = sorted(set(settings) - EMBED_HONOURED_KEYS)
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
            from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import caps as capsmod
            self._caps_cache[binary] = capsmod.probe(binary, self._caps_cache_dir())
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
        from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import caps as capsmod
        ostype = domain.find("os/type")
        arch = (ostype.get("arch") if ostype is not None else None) or capsmod.host_arch()
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
