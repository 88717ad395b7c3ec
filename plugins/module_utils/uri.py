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
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput

TRANSPORTS = ("unix", "ssh", "libssh", "libssh2", "tcp", "tls", "ext")
REMOTE_TRANSPORTS = ("ssh", "libssh", "libssh2", "tcp", "tls")
INSTANCES = ("system", "session", "embed")
SYSTEM_QEMU_CONF = "/etc/libvirt/qemu.conf"


@dataclass(frozen=True)
class ConnectionURI:
    raw: str
    transport: str | None
    user: str | None
    host: str | None
    port: int | None
    instance: str
    params: dict = field(default_factory=dict)

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
            return os.path.join(self.embed_root, "etc", "qemu.conf")
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
    uri = ConnectionURI(raw=raw, transport=transport, user=parts.username,
                        host=parts.hostname, port=port, instance=instance,
                        params=dict(parse_qsl(parts.query, keep_blank_values=True)))
    if instance == "embed":
        _check_embed(uri)
    elif transport in REMOTE_TRANSPORTS and not uri.host:
        raise InvalidInput(f"{raw!r} uses the {transport} transport but names no host", "uri")
    return uri


def _transport(scheme: str, raw: str) -> str | None:
    driver, transport = (scheme.split("+", 1) + [""])[:2]
    if driver != "qemu":
        raise InvalidInput(
            f"unknown scheme {scheme!r} in {raw!r}: this collection drives QEMU, use qemu:// or qemu+TRANSPORT://", "uri")
    if transport and transport not in TRANSPORTS:
        raise InvalidInput(
            f"unknown transport {transport!r} in {raw!r}; known: {', '.join(TRANSPORTS)}", "uri")
    return transport or None


def _check_embed(uri: ConnectionURI) -> None:
    if uri.host or uri.transport not in (None, "unix"):
        raise InvalidInput(f"{uri.raw!r}: the embedded driver runs locally; it takes no host or remote transport", "uri")
    root = uri.params.get("root")
    if not root:
        raise InvalidInput(f"{uri.raw!r}: qemu:///embed needs a root directory, as in qemu:///embed?root=/var/lib/myapp", "uri")
    if not os.path.isabs(root):
        raise InvalidInput(f"{uri.raw!r}: the embed root {root!r} must be an absolute path", "uri")
    if os.path.normpath(root) == "/":
        raise InvalidInput(f"{uri.raw!r}: the embed root cannot be / itself", "uri")
