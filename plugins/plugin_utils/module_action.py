# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller's side of every module of the collection.

ansible-core builds a module's AnsiballZ payload in the task's worker
process and parses every module_utils file the payload carries into an AST.
Those nodes set off the garbage collector again and again, and each of its
passes walks the worker's whole heap, inherited from the controller: about
40% of building the payload of ``domain``, which carries 141 files.
Reference counting frees the trees by itself, so the collector is off while
the task's action runs and back on after it, when it collects whatever
cycles the action left.  In everything else this is ansible-core's
``normal`` action: check mode, diff and async work as they do without it.
Each module's file in plugins/action subclasses this one.
"""

from __future__ import annotations

import gc

from ansible.plugins.action.normal import ActionModule as NormalAction


class ModuleAction(NormalAction):
    """ansible-core's ``normal`` action, run with the garbage collector off."""

    def run(self, tmp=None, task_vars=None):
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return super().run(tmp, task_vars)
        finally:
            if was_enabled:
                gc.enable()
