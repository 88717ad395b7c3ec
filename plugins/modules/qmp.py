#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: qmp
short_description: Run one QEMU monitor command (QMP or HMP) on a running virtual machine
version_added: 0.2.0
description:
  - Sends one QMP command with its arguments, or one HMP (human monitor) command line,
    to the QEMU of a running domain and returns QEMU's reply.
  - On libvirt this is libvirt's monitor passthrough (C(virsh qemu-monitor-command)); on
    the embedded driver the command goes to the domain's QMP socket. Either way the domain
    is tainted C(custom-monitor), as libvirt marks it, and
    M(virtops.qemu.domain_info) lists that in its C(taints).
  - Commands that only read (V(query-*), V(qom-get), V(qom-list) and a few more, HMP
    C(info ...)) report RV(ignore:changed=false) and run in check mode too; every other command
    reports a change and is not sent in check mode.
  - A command QEMU refuses fails the task with QEMU's error class and description
    (RV(error_class), RV(error_desc)).
  - What a command changes is outside libvirt's knowledge; use it for what the other
    modules cannot do, and prefer those where they can.
author:
  - virtops.qemu maintainers (@virtops)
extends_documentation_fragment:
  - virtops.qemu.connection
  - virtops.qemu.connection.attributes
  - virtops.qemu.domain_name
attributes:
  check_mode:
    support: partial
    details: Commands that only read run; other commands are not sent and report a change.
  diff_mode:
    support: none
  idempotent:
    support: none
    details: Reading commands never report a change; any other command is an action that reports one each time.
options:
  command:
    description: QMP command name (C(execute)), for example V(query-status) or V(qom-get).
    type: str
  arguments:
    description: The QMP command's arguments.
    type: dict
  hmp:
    description: One HMP command line instead of O(command), for example V(info status).
    type: str
notes:
  - Exactly one of O(command) and O(hmp) is required.
seealso:
  - module: virtops.qemu.send_key
  - module: virtops.qemu.domain_info
"""

EXAMPLES = r"""
- name: Ask QEMU for its run state
  virtops.qemu.qmp:
    name: demo01
    command: query-status
  register: status

- name: Show it, for example "running"
  ansible.builtin.debug:
    msg: "{{ status.return.status }}"

- name: Read a property of the disk whose alias is ua-disk0
  virtops.qemu.qmp:
    name: demo01
    command: qom-get
    arguments:
      path: /machine/peripheral/ua-disk0
      property: serial

- name: The same state through the human monitor
  virtops.qemu.qmp:
    name: demo01
    hmp: info status

- name: Eject the CD of ide0-1-0 (changes the guest, so it reports a change)
  virtops.qemu.qmp:
    name: demo01
    command: eject
    arguments:
      id: ide0-1-0
      force: true
"""

RETURN = r"""
name:
  description: The domain.
  returned: always
  type: str
return:
  description:
    - QEMU's reply, the C(return) member of the QMP answer (a dict, list, string or number
      as the command defines), or the text of an HMP command.
    - V(null) in check mode for a command that was not sent.
  returned: success
  type: raw
  sample: {"running": true, "status": "running", "singlestep": false}
error_class:
  description: QEMU's error class when QEMU refused the command, for example V(CommandNotFound) or V(GenericError).
  returned: when QEMU refused the command
  type: str
  sample: CommandNotFound
error_desc:
  description: QEMU's description of that error.
  returned: when QEMU refused the command
  type: str
  sample: The command bogus has not been found
"""


from typing import TYPE_CHECKING

# First: the imports below then load through its compiled-code cache.
from ansible_collections.virtops.qemu.plugins.module_utils import bytecode  # noqa: F401  # pylint: disable=unused-import
from ansible_collections.virtops.qemu.plugins.module_utils.driver.connect import open_driver
from ansible_collections.virtops.qemu.plugins.module_utils.manager.monitor import run_command
from ansible_collections.virtops.qemu.plugins.module_utils.module_glue import MaskingModule, argument_spec, run

# Never run: ansible-core reads this import and ships in the payload the parts
# the driver loads on demand for this module's calls (module_utils/lazy.py).
if TYPE_CHECKING:
    from ansible_collections.virtops.qemu.plugins.module_utils.payload import domains  # noqa: F401  # pylint: disable=unused-import

OPTIONS = dict(
    name=dict(type="str", required=True),
    command=dict(type="str"),
    arguments=dict(type="dict"),
    hmp=dict(type="str"),
)


def execute(module):
    with open_driver(module.params["uri"]) as driver:
        return dict(run_command(driver, module.params, module.check_mode), warnings=driver.warnings)


def main():
    module = MaskingModule(
        argument_spec=argument_spec(**OPTIONS),
        required_one_of=[("command", "hmp")],
        mutually_exclusive=[("command", "hmp"), ("arguments", "hmp")],
        supports_check_mode=True,
    )
    run(module, lambda: execute(module))


if __name__ == "__main__":
    main()
