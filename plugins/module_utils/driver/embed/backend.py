# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The embedded (daemonless) QEMU driver at qemu:///embed?root=/dir.  Private to the collection."""

from __future__ import annotations

from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError


class EmbedDriver:
    def __init__(self, uri):
        raise BackendError(f"{uri.raw}: the embedded QEMU driver is not available in this version")
