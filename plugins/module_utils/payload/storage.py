# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The parts that pool and volume calls load: the embedded driver's storage."""
# Imports for ansible-core to read, never used:
# pylint: disable=unused-import
# ruff: noqa: F401

from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import storage
