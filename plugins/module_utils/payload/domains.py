# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The parts calls about domains and the host load: every part but the key tables and migration."""
# Imports for ansible-core to read, never used:
# pylint: disable=unused-import
# ruff: noqa: F401

from ansible_collections.virtops.qemu.plugins.module_utils import qemu_conf, qmp
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import (
    caps,
    domains,
    network,
    security,
    snapshot,
    storage,
)
from ansible_collections.virtops.qemu.plugins.module_utils.seed import nocloud
