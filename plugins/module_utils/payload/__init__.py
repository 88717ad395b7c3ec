# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lists of the parts a module's payload carries for lazy.load_part().

ansible-core builds a module's payload from the import statements it finds.
The parts the driver loads with lazy.load_part() are invisible to it, so each
module that opens a driver imports one list below in an if TYPE_CHECKING:
block: ansible-core reads that import and ships the list's parts, and Python
never runs it.  Nothing imports these modules at run time.  Private to the
collection.
"""
