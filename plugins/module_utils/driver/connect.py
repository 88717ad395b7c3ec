# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pick and open the backend a connection URI names.  Private to the collection."""

from __future__ import annotations

from ansible_collections.virtops.qemu.plugins.module_utils.uri import parse_uri


def open_driver(raw_uri: str):
    """Return an open Driver for ``raw_uri`` (a context manager)."""
    uri = parse_uri(raw_uri)
    if uri.backend == "embed":
        from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.backend import EmbedDriver
        return EmbedDriver(uri)
    from ansible_collections.virtops.qemu.plugins.module_utils.driver.libvirt_backend import LibvirtDriver
    return LibvirtDriver(uri)
