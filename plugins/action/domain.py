# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

from ansible_collections.virtops.qemu.plugins.plugin_utils.module_action import ModuleAction


class ActionModule(ModuleAction):
    """The domain module's action on the controller (see plugin_utils.module_action)."""
