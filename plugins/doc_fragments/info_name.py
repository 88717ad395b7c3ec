# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # The O(name) option, alike in every per-object _info module.
    DOMAIN = r"""
options:
  name:
    description: The domain to describe. Without it, every domain is listed in RV(domains).
    type: str
"""

    NETWORK = r"""
options:
  name:
    description: The network to describe. Without it, every network is listed in RV(networks).
    type: str
"""

    POOL = r"""
options:
  name:
    description: The pool to describe. Without it, every pool is listed in RV(pools).
    type: str
"""
