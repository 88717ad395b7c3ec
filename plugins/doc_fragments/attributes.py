# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # A module that changes things: full check mode, diff mode and idempotence.
    DOCUMENTATION = r"""
attributes:
  check_mode:
    description: Can run in check mode and predict what a real run would change, without changing anything.
    support: full
  diff_mode:
    description: Returns the definition before and after, showing only what really changes.
    support: full
  idempotent:
    description: A second run with the same arguments changes nothing and reports C(changed=false).
    support: full
  action_group:
    description: Use C(group/virtops.qemu.qemu) in C(module_defaults) to set defaults such as O(uri) for this module.
    support: full
    membership:
      - virtops.qemu.qemu
"""

    # A module that only reads: nothing to diff.
    INFO = r"""
attributes:
  check_mode:
    description: Can run in check mode and predict what a real run would change, without changing anything.
    support: full
  diff_mode:
    description: Returns the definition before and after, showing only what really changes.
    support: N/A
  idempotent:
    description: A second run with the same arguments changes nothing and reports C(changed=false).
    support: full
  action_group:
    description: Use C(group/virtops.qemu.qemu) in C(module_defaults) to set defaults such as O(uri) for this module.
    support: full
    membership:
      - virtops.qemu.qemu
"""
