# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where the embedded driver keeps its files under ``qemu:///embed?root=DIR``.

The tree is the one libvirt's embedded QEMU driver uses::

    DIR/log/qemu/<name>.log            QEMU's stderr
    DIR/log/qemu/<name>.qmp.log        the driver's QMP traffic with QEMU (and .qmp.log.1)
    DIR/log/swtpm/
    DIR/etc/qemu.conf
    DIR/etc/qemu/<name>.xml            persistent definitions
    DIR/etc/qemu/autostart/<name>.xml  symlinks to the definitions
    DIR/etc/pki/qemu/
    DIR/run/qemu/<name>.xml            status XML (<domstatus>) of active domains
    DIR/run/qemu/<name>.pid            QEMU's pidfile
    DIR/run/qemu/locks/driver.lock     the root's own lock (domain ids, ports, taps)
    DIR/run/qemu/locks/domain/<name>.lock
    DIR/run/swtpm/
    DIR/cache/qemu/                    capabilities cache
    DIR/lib/qemu/domain-<id>-<short name>/monitor.sock
    DIR/lib/qemu/nvram/<name>_VARS.fd
    DIR/lib/qemu/snapshot/<name>/<snapshot>.xml   snapshot metadata (<domainsnapshot>)
    DIR/lib/swtpm/<uuid>/              TPM state
    DIR/etc/network/<name>.xml         network definitions (autostart links beside them)
    DIR/run/network/<name>.xml         status XML (<networkstatus>) of active networks
    DIR/run/network/<name>.pid         the network's dnsmasq pidfile
    DIR/lib/dnsmasq/<name>.conf        dnsmasq configuration, .hostsfile, .addnhosts, .leases

Every kind of object with a definition has the same part of the tree
(``KindLayout``): domains under ``etc/qemu`` and ``run/qemu``, networks
under ``etc/network`` and ``run/network``, storage pools under
``etc/storage`` and ``run/storage``.  Locks live in a directory of their
own, one per kind of object, so no object name can reach a driver-wide
lock.  Directories are created on the first write, private to the user
running the driver (0700); reading a root that does not exist (yet) finds
no objects.  Private to the collection.
"""

from __future__ import annotations

import os
import stat

from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput, host_error
from ansible_collections.virtops.qemu.plugins.module_utils.fileio import make_private_dir
from ansible_collections.virtops.qemu.plugins.module_utils.model.kinds import KINDS

# sun_path holds 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107
# libvirt shortens domain names to 20 characters in per-domain directory names.
SHORT_NAME_LENGTH = 20
# Budget for the domain id in socket paths checked when the driver opens.
MAX_ID_DIGITS = 5

_TREE = ("log/qemu", "log/swtpm", "etc/pki/qemu", "run/swtpm", "cache/qemu", "lib/qemu",
         "lib/qemu/nvram", "lib/swtpm", "lib/dnsmasq")
# kind -> the directory name of its part of the tree, as libvirt's drivers name theirs (the kind's record).
KIND_DIRS = {kind.word: kind.directory for kind in KINDS.values() if kind.directory}


class KindLayout:
    """Where one kind of object keeps its definitions, autostart links, status files and locks."""

    def __init__(self, root: str, kind: str):
        self.kind = kind
        directory = KIND_DIRS[kind]
        self.config_dir = os.path.join(root, "etc", directory)
        self.autostart_dir = os.path.join(self.config_dir, "autostart")
        self.run_dir = os.path.join(root, "run", directory)
        self.lock_dir = os.path.join(self.run_dir, "locks")

    @property
    def tree(self) -> tuple[str, ...]:
        return (self.config_dir, self.autostart_dir, self.run_dir, self.lock_dir, self.object_lock_dir)

    @property
    def object_lock_dir(self) -> str:
        """Object locks sit one level below the kind's driver-wide locks: no name reaches those."""
        return os.path.join(self.lock_dir, self.kind)

    def config_file(self, name: str) -> str:
        return os.path.join(self.config_dir, f"{name}.xml")

    def autostart_link(self, name: str) -> str:
        return os.path.join(self.autostart_dir, f"{name}.xml")

    def status_file(self, name: str) -> str:
        return os.path.join(self.run_dir, f"{name}.xml")

    def lock_file(self, name: str) -> str:
        return os.path.join(self.object_lock_dir, f"{name}.lock")


def short_name(name: str) -> str:
    return name[:SHORT_NAME_LENGTH]


class Layout:
    """Paths of one embedded driver root."""

    def __init__(self, root: str, uri_text: str = ""):
        self.root = os.path.normpath(root)
        self.uri_text = uri_text or f"qemu:///embed?root={root}"
        self.kinds = {kind: KindLayout(self.root, kind) for kind in KIND_DIRS}
        self.domains = self.kinds["domain"]

    # -- directories --------------------------------------------------------
    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    @property
    def qemu_conf(self) -> str:
        return self.path("etc", "qemu.conf")

    @property
    def log_dir(self) -> str:
        return self.path("log", "qemu")

    @property
    def cache_dir(self) -> str:
        return self.path("cache", "qemu")

    @property
    def lib_dir(self) -> str:
        return self.path("lib", "qemu")

    @property
    def nvram_dir(self) -> str:
        return self.path("lib", "qemu", "nvram")

    # -- per domain -----------------------------------------------------------
    def pidfile(self, name: str) -> str:
        return os.path.join(self.domains.run_dir, f"{name}.pid")

    def trace_file(self, name: str) -> str:
        """QEMU's own record of runstate changes and shutdown requests (-D)."""
        return os.path.join(self.domains.run_dir, f"{name}.trace")

    def driver_lock_file(self) -> str:
        """The root's own lock: domain ids, display ports and tap names are handed out under it."""
        return os.path.join(self.domains.lock_dir, "driver.lock")

    def log_file(self, name: str) -> str:
        return os.path.join(self.log_dir, f"{name}.log")

    def qmp_log_file(self, name: str) -> str:
        return os.path.join(self.log_dir, f"{name}.qmp.log")

    def domain_dir(self, domain_id: int | str, name: str) -> str:
        return os.path.join(self.lib_dir, f"domain-{domain_id}-{short_name(name)}")

    def monitor_socket(self, domain_id: int | str, name: str) -> str:
        return os.path.join(self.domain_dir(domain_id, name), "monitor.sock")

    def nvram_file(self, name: str) -> str:
        return os.path.join(self.nvram_dir, f"{name}_VARS.fd")

    def tpm_state_dir(self, uuid: str) -> str:
        return self.path("lib", "swtpm", uuid)

    # -- per network -----------------------------------------------------------
    @property
    def dnsmasq_dir(self) -> str:
        return self.path("lib", "dnsmasq")

    def dnsmasq_file(self, name: str, suffix: str) -> str:
        """lib/dnsmasq/<name>.<suffix>: conf, hostsfile, addnhosts or leases."""
        return os.path.join(self.dnsmasq_dir, f"{name}.{suffix}")

    def network_pidfile(self, name: str) -> str:
        return os.path.join(self.kinds["network"].run_dir, f"{name}.pid")

    def network_driver_lock_file(self) -> str:
        """Networks of the root start under this lock: bridge names and subnets are checked and taken under it."""
        return os.path.join(self.kinds["network"].lock_dir, "driver.lock")

    # -- checks and creation ----------------------------------------------------
    def check_socket_room(self) -> None:
        """Fail before creating anything when monitor sockets cannot fit in sun_path."""
        worst = self.monitor_socket("9" * MAX_ID_DIGITS, "n" * SHORT_NAME_LENGTH)
        check_socket_path(worst, self.uri_text, f"root {self.root!r} is too long: monitor sockets such as")

    def check_root(self) -> None:
        """Refuse a root that is not a directory, before anything is read or written."""
        try:
            info = os.stat(self.root)
        except FileNotFoundError:
            return      # created by the first write
        except NotADirectoryError as exc:
            raise InvalidInput(f"{self.uri_text}: the embed root {self.root} is below a file, "
                               "not a directory", "uri") from exc
        except OSError as exc:
            raise host_error(exc, "access the embed root", self.root) from exc
        if not stat.S_ISDIR(info.st_mode):
            raise InvalidInput(f"{self.uri_text}: the embed root {self.root} is not a directory", "uri")

    def ensure_tree(self) -> None:
        """Create the root and every driver directory that is missing, mode 0700."""
        make_private_dir(self.root)
        for relative in _TREE:
            make_private_dir(self.path(*relative.split("/")))
        for kind in self.kinds.values():
            for directory in kind.tree:
                make_private_dir(directory)


def check_socket_path(path: str, uri_text: str, what: str = "the socket path") -> None:
    size = len(os.fsencode(path))
    if size > MAX_SOCKET_PATH:
        raise InvalidInput(
            f"{uri_text}: {what} {path!r} would be {size} bytes, over the {MAX_SOCKET_PATH}-byte "
            "limit of UNIX socket paths; pick a shorter root directory", "uri")
