#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: send_key
short_description: Press keys on the keyboard of a running virtual machine
version_added: 0.2.0
description:
  - Presses the given keys together, holds them for O(holdtime) and releases them,
    as C(virsh send-key) does, for example Ctrl+Alt+Delete or a key at a boot prompt.
  - Keys are numbers of the code set O(codeset), or names. Names come from the
    Linux (V(KEY_A), V(KEY_LEFTCTRL)), OS X (V(ANSI_A)) and Win32 (V(VK_LCONTROL)) name sets;
    a name from another set than O(codeset) is translated to O(codeset) first.
  - On libvirt the keys go to C(virDomainSendKey); on the embedded driver to QMP
    C(send-key), translated to QEMU's key numbers with the tables of keycodemapdb, as libvirt does.
  - Every key is checked first; an unknown name, or a code without a QEMU key, fails the
    task naming it and nothing is sent.
  - A key press is an action, so the module always reports a change; check mode sends nothing.
author:
  - virtops.qemu maintainers (@virtops)
extends_documentation_fragment:
  - virtops.qemu.connection
  - virtops.qemu.connection.attributes
  - virtops.qemu.domain_name
attributes:
  check_mode:
    support: full
    details: Keys are checked but not sent.
  diff_mode:
    support: none
  idempotent:
    support: none
    details: Every run presses the keys again.
options:
  keys:
    description:
      - The keys pressed together, at most 16; numbers (decimal, or hexadecimal with V(0x))
        in O(codeset), or key names.
    type: list
    elements: raw
    required: true
  codeset:
    description:
      - The code set of numeric O(keys), by libvirt's names; V(rfb) is another name for V(qnum).
    type: str
    default: linux
    choices: [linux, xt, atset1, atset2, atset3, os_x, xt_kbd, usb, win32, qnum, rfb]
  holdtime:
    description: Milliseconds the keys are held; V(0) leaves it to the hypervisor (QEMU holds them 100 ms).
    type: int
    default: 0
seealso:
  - module: virtops.qemu.qmp
"""

EXAMPLES = r"""
- name: Ctrl+Alt+Delete
  virtops.qemu.send_key:
    name: demo01
    keys: [KEY_LEFTCTRL, KEY_LEFTALT, KEY_DELETE]

- name: Press Enter at a boot prompt, with the XT code of Enter
  virtops.qemu.send_key:
    name: demo01
    codeset: xt
    keys: [28]

- name: Hold F7 for a second
  virtops.qemu.send_key:
    name: demo01
    keys: [KEY_F7]
    holdtime: 1000
"""

RETURN = r"""
name:
  description: The domain.
  returned: always
  type: str
codeset:
  description: The code set the keys were sent in (V(rfb) is shown as V(qnum)).
  returned: success
  type: str
  sample: linux
codes:
  description: The keys as numbers of RV(codeset), names resolved.
  returned: success
  type: list
  elements: int
  sample: [29, 56, 111]
"""


from typing import TYPE_CHECKING

# First: the imports below then load through its compiled-code cache.
from ansible_collections.virtops.qemu.plugins.module_utils import bytecode  # noqa: F401  # pylint: disable=unused-import
from ansible_collections.virtops.qemu.plugins.module_utils.driver.connect import open_driver
from ansible_collections.virtops.qemu.plugins.module_utils.manager.monitor import send_keys
from ansible_collections.virtops.qemu.plugins.module_utils.module_glue import MaskingModule, argument_spec, run

# Never run: ansible-core reads this import and ships in the payload the parts
# the driver loads on demand for this module's calls (module_utils/lazy.py).
if TYPE_CHECKING:
    from ansible_collections.virtops.qemu.plugins.module_utils.payload import every_part  # noqa: F401  # pylint: disable=unused-import

CODESETS = ["linux", "xt", "atset1", "atset2", "atset3", "os_x", "xt_kbd", "usb", "win32", "qnum", "rfb"]
OPTIONS = dict(
    name=dict(type="str", required=True),
    keys=dict(type="list", elements="raw", required=True, no_log=False),
    codeset=dict(type="str", default="linux", choices=CODESETS),
    holdtime=dict(type="int", default=0),
)


def press(module):
    with open_driver(module.params["uri"], read_only=module.check_mode) as driver:
        return dict(send_keys(driver, module.params, module.check_mode), warnings=driver.warnings)


def main():
    module = MaskingModule(argument_spec=argument_spec(**OPTIONS), supports_check_mode=True)
    run(module, lambda: press(module))


if __name__ == "__main__":
    main()
