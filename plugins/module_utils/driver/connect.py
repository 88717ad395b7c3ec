# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pick and open the backend a connection URI names.  Private to the collection."""

from __future__ import annotations

from ansible_collections.virtops.qemu.plugins.module_utils.uri import parse_uri


def open_driver(raw_uri: str, read_only: bool = False):
    """Return an open Driver for ``raw_uri`` (a context manager).

    ``read_only`` is for runs that change no definition (check mode, info
    modules): the embedded driver then creates no tree, cache or lock file
    under a new root.  It still cleans up after a QEMU that died or a start
    that was interrupted, as libvirtd does when it notices: it updates the
    status file and kills a half-started QEMU.  libvirtd needs no such care,
    and a read-only libvirt connection could not read secrets, so the
    libvirt backend ignores it.
    """
    uri = parse_uri(raw_uri)
    if uri.backend == "embed":
        from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.backend import EmbedDriver
        return EmbedDriver(uri, read_only=read_only)
    from ansible_collections.virtops.qemu.plugins.module_utils.driver.libvirt_backend import LibvirtDriver
    return LibvirtDriver(uri)
