# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every part lazy.load_part() loads: what the modules that send keys or migrate may use.

That is the parts of the ``domains`` list and the key tables and migration.
"""
# Imports for ansible-core to read, never used:
# pylint: disable=unused-import
# ruff: noqa: F401

from ansible_collections.virtops.qemu.plugins.module_utils.driver import libvirt_migration
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import migration
from ansible_collections.virtops.qemu.plugins.module_utils.model import sendkey
from ansible_collections.virtops.qemu.plugins.module_utils.payload import domains as domain_parts
