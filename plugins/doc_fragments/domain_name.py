# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # The domain a module acts on, named alike in every such module.
    DOCUMENTATION = r"""
options:
  name:
    description: Name of the domain the task acts on.
    type: str
    required: true
"""
