# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection URIs in the forms libvirt documents for its QEMU driver.

``qemu[+transport]://[user@][host[:port]]/(system|session)[?params]`` reaches
libvirtd; ``qemu:///embed?root=/abs/dir`` selects the daemonless embedded
driver.  Private to the collection.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple
from urllib.parse import parse_qsl, urlsplit

from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput

TRANSPORTS = ("unix", "ssh", "libssh", "libssh2", "tcp", "tls", "ext")
REMOTE_TRANSPORTS = ("ssh", "libssh", "libssh2", "tcp", "tls")
INSTANCES = ("system", "session", "embed")
# libvirt's embed URI knows no other parameter; a typo must not go unnoticed.
EMBED_PARAMS = ("root",)
SYSTEM_QEMU_CONF = "/etc/libvirt/qemu.conf"


class ConnectionURI(NamedTuple):
    raw: str
    transport: str | None
    user: str | None
    host: str | None
    port: int | None
    instance: str
    params: Mapping[str, str] = MappingProxyType({})

    @property
    def backend(self) -> str:
        return "embed" if self.instance == "embed" else "libvirt"

    @property
    def is_local(self) -> bool:
        return not self.host

    @property
    def embed_root(self) -> str | None:
        return self.params.get("root") if self.instance == "embed" else None

    def qemu_conf_path(self, environ=None) -> str:
        """Where the QEMU driver of this instance reads qemu.conf."""
        if self.instance == "embed":
            root = self.embed_root
            if root is None:
                raise InvalidInput(f"{self.raw!r}: qemu:///embed needs a root directory", "uri")
            return os.path.join(root, "etc", "qemu.conf")
        if self.instance == "session":
            env = os.environ if environ is None else environ
            base = env.get("XDG_CONFIG_HOME") or os.path.join(
                env.get("HOME") or os.path.expanduser("~"), ".config")
            return os.path.join(base, "libvirt", "qemu.conf")
        return SYSTEM_QEMU_CONF


def parse_uri(raw: str) -> ConnectionURI:
    """Parse and validate a QEMU driver connection URI."""
    if not isinstance(raw, str) or "://" not in raw:
        raise InvalidInput(f"{raw!r} is not a connection URI such as qemu:///system", "uri")
    parts = urlsplit(raw)
    transport = _transport(parts.scheme, raw)
    instance = parts.path.strip("/")
    if instance not in INSTANCES:
        raise InvalidInput(
            f"path of {raw!r} must be /system, /session or /embed, not {parts.path or '(empty)'!r}", "uri")
    try:
        port = parts.port
    except ValueError as e:
        raise InvalidInput(f"bad port in {raw!r}: {e}", "uri") from e
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    uri = ConnectionURI(raw=raw, transport=transport, user=parts.username,
                        host=parts.hostname, port=port, instance=instance, params=dict(pairs))
    if instance == "embed":
        uri = _check_embed(uri, pairs)
    elif transport in REMOTE_TRANSPORTS and not uri.host:
        raise InvalidInput(f"{raw!r} uses the {transport} transport but names no host", "uri")
    return uri


def _transport(scheme: str, raw: str) -> str | None:
    driver, transport = (scheme.split("+", 1) + [""])[:2]
    if driver != "qemu":
        raise InvalidInput(
            f"unknown scheme {scheme!r} in {raw!r}: this collection drives QEMU, "
            "use qemu:// or qemu+TRANSPORT://", "uri")
    if transport and transport not in TRANSPORTS:
        raise InvalidInput(
            f"unknown transport {transport!r} in {raw!r}; known: {', '.join(TRANSPORTS)}", "uri")
    return transport or None


def _check_embed(uri: ConnectionURI, pairs: list[tuple[str, str]]) -> ConnectionURI:
    """The embed URI with its root normalised, or InvalidInput."""
    if uri.host or uri.transport not in (None, "unix"):
        raise InvalidInput(f"{uri.raw!r}: the embedded driver runs locally; it takes no host or remote transport",
                           "uri")
    names = [name for name, _value in pairs]
    for name in names:
        if name not in EMBED_PARAMS:
            raise InvalidInput(f"{uri.raw!r}: unknown parameter {name!r}; qemu:///embed takes only root", "uri")
    if names.count("root") > 1:
        raise InvalidInput(f"{uri.raw!r} gives root more than once", "uri")
    root = _embed_root(uri.raw, uri.params.get("root"))
    return uri._replace(params={**uri.params, "root": root})


def _embed_root(raw: str, root: str | None) -> str:
    if not root:
        raise InvalidInput(f"{raw!r}: qemu:///embed needs a root directory, as in qemu:///embed?root=/var/lib/myapp",
                           "uri")
    if any(ord(char) < 32 or ord(char) == 127 for char in root):
        raise InvalidInput(f"{raw!r}: the embed root {root!r} contains a control character", "uri")
    if not os.path.isabs(root):
        # libvirt refuses a relative root too ("Driver root must be an absolute path").
        raise InvalidInput(f"{raw!r}: the embed root {root!r} must be an absolute path", "uri")
    # POSIX lets a path start with exactly two slashes mean something else, so
    # normpath keeps "//"; on Linux it is plain /.
    normal = "/" + os.path.normpath(root).lstrip("/")
    if normal == "/" or os.path.realpath(normal) == "/":
        raise InvalidInput(f"{raw!r}: the embed root cannot be / itself", "uri")
    return normal
