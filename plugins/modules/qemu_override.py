#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: qemu_override
short_description: Manage the QEMU passthrough (qemu namespace) of a virtual machine's definition
version_added: 0.2.0
description:
  - Manages the C(qemu:) namespace of an existing domain's definition and nothing else of it -
    extra QEMU arguments and environment (C(qemu:commandline)), capability bits
    (C(qemu:capabilities)), QEMU's handling of deprecated features (C(qemu:deprecation),
    passed to QEMU as C(-compat)) and overridden device properties (C(qemu:override)).
  - Each section is managed only when its option is given. With O(ignore:commandline.state=absent)
    (and likewise for the other sections) the section is removed. The lists and dicts given
    replace what the definition has, so a shorter O(commandline.args) list removes the
    arguments left out; a field left out (O(commandline.env) when only O(commandline.args)
    is given, say) keeps what the definition has.
  - Like libvirt, it checks that an override names a device by a user alias (C(ua-...))
    the domain has, and that values parse as their type.
  - A domain started with any of this is tainted (C(custom-argv), C(custom-hypervisor-feature),
    C(custom-device)); M(virtops.qemu.domain_info) reports that in C(taints).
  - The embedded driver honours all of it when it starts the domain; it refuses the capability
    bits it does not model, when the domain starts.
  - A change to a running domain waits for its next cold start (RV(restart_required));
    O(restart=true) restarts it at once.
  - The libvirt documentation calls all of this unsupported and meant for development and
    testing; do not rely on it in production.
author:
  - virtops.qemu maintainers (@virtops)
extends_documentation_fragment:
  - virtops.qemu.connection
  - virtops.qemu.attributes
  - virtops.qemu.domain_name
options:
  commandline:
    description: Extra arguments and environment of the QEMU process (C(qemu:commandline)).
    type: dict
    suboptions:
      state:
        description: V(absent) removes the section.
        type: str
        choices: [present, absent]
        default: present
      args:
        description: Arguments appended to QEMU's command line, in this order.
        type: list
        elements: str
      env:
        description: Environment variables of the QEMU process; a V(null) value sets the variable empty.
        type: dict
  capabilities:
    description:
      - Capability bits added to or removed from what libvirt probed of QEMU (C(qemu:capabilities)),
        by the names libvirt uses in its status XML (for example V(blockdev)).
    type: dict
    suboptions:
      state:
        description: V(absent) removes the section.
        type: str
        choices: [present, absent]
        default: present
      add:
        description: Capabilities to add.
        type: list
        elements: str
      del:
        description: Capabilities to remove.
        type: list
        elements: str
  deprecation:
    description: How QEMU treats deprecated commands and fields (C(qemu:deprecation), QEMU's C(-compat)).
    type: dict
    suboptions:
      state:
        description: V(absent) removes the section, which is QEMU's default (V(none)).
        type: str
        choices: [present, absent]
        default: present
      behavior:
        description:
          - V(none) accepts them, V(omit) hides deprecated output, V(reject) also refuses deprecated
            input with an error, V(crash) makes QEMU abort on it.
        type: str
        choices: [none, omit, reject, crash]
  override:
    description: Device properties set, changed or removed on QEMU's C(-device) of a device (C(qemu:override)).
    type: dict
    suboptions:
      state:
        description: V(absent) removes the section.
        type: str
        choices: [present, absent]
        default: present
      devices:
        description: The devices whose properties are overridden; the list replaces the stored one.
        type: list
        elements: dict
        suboptions:
          alias:
            description: The device's user alias, as in its C(<alias name='ua-...'/>).
            type: str
            required: true
          properties:
            description: The device's properties.
            type: list
            elements: dict
            default: []
            suboptions:
              name:
                description: QEMU's property name, for example V(serial).
                type: str
                required: true
              type:
                description: The type QEMU expects; V(remove) removes a property libvirt would set.
                type: str
                required: true
                choices: [string, signed, unsigned, bool, remove]
              value:
                description: The value; not with V(remove).
                type: raw
  restart:
    description: Restart a running domain whose running QEMU does not have the new settings yet.
    type: bool
    default: false
  force:
    description: When O(restart) is set and the guest does not shut down in time, destroy it.
    type: bool
    default: false
  shutdown_timeout:
    description: Seconds to wait for the guest to shut down when restarting it.
    type: int
    default: 120
seealso:
  - module: virtops.qemu.domain
  - module: virtops.qemu.qmp
"""

EXAMPLES = r"""
- name: Give QEMU an extra device and an environment variable
  virtops.qemu.qemu_override:
    name: demo01
    commandline:
      args: ["-device", "isa-debug-exit"]
      env:
        QEMU_AUDIO_DRV: none

- name: Make QEMU refuse deprecated input, and set the serial of the disk with alias ua-disk0
  virtops.qemu.qemu_override:
    name: demo01
    deprecation:
      behavior: reject
    override:
      devices:
        - alias: ua-disk0
          properties:
            - {name: serial, type: string, value: DISK0001}
    restart: true

- name: Remove the extra arguments again
  virtops.qemu.qemu_override:
    name: demo01
    commandline:
      state: absent
"""

RETURN = r"""
name:
  description: The domain.
  returned: always
  type: str
state:
  description: The domain's state in libvirt's words.
  returned: always
  type: str
  sample: running
xml:
  description:
    - The persistent definition after the change.
    - Console passwords (C(passwd) attributes) are masked as C(********), as in the diff.
  returned: always
  type: str
uuid:
  description: UUID of the domain.
  returned: always
  type: str
autostart:
  description: Whether the domain starts with the host.
  returned: always
  type: bool
restart_required:
  description: Whether the running domain needs a cold start to get the new settings.
  returned: always
  type: bool
diff:
  description: The definition before and after (with C(--diff)).
  returned: when diff mode is on
  type: dict
"""


from typing import TYPE_CHECKING

# First: the imports below then load through its compiled-code cache.
from ansible_collections.virtops.qemu.plugins.module_utils import bytecode  # noqa: F401  # pylint: disable=unused-import
from ansible_collections.virtops.qemu.plugins.module_utils.driver.connect import open_driver
from ansible_collections.virtops.qemu.plugins.module_utils.manager.qemu_override import (
    QemuOverrideManager,
    request_from_params,
)
from ansible_collections.virtops.qemu.plugins.module_utils.module_glue import MaskingModule, argument_spec, run

# Never run: ansible-core reads this import and ships in the payload the parts
# the driver loads on demand for this module's calls (module_utils/lazy.py).
if TYPE_CHECKING:
    from ansible_collections.virtops.qemu.plugins.module_utils.payload import domains  # noqa: F401  # pylint: disable=unused-import

STATE = dict(type="str", choices=["present", "absent"], default="present")
OPTIONS = dict(
    name=dict(type="str", required=True),
    commandline=dict(type="dict", options=dict(state=STATE, args=dict(type="list", elements="str"),
                                               env=dict(type="dict"))),
    capabilities=dict(type="dict", options={"state": STATE, "add": dict(type="list", elements="str"),
                                            "del": dict(type="list", elements="str")}),
    deprecation=dict(type="dict", options=dict(state=STATE, behavior=dict(
        type="str", choices=["none", "omit", "reject", "crash"]))),
    override=dict(type="dict", options=dict(state=STATE, devices=dict(type="list", elements="dict", options=dict(
        alias=dict(type="str", required=True),
        properties=dict(type="list", elements="dict", default=[], options=dict(
            name=dict(type="str", required=True),
            type=dict(type="str", required=True, choices=["string", "signed", "unsigned", "bool", "remove"]),
            value=dict(type="raw"))))))),
    restart=dict(type="bool", default=False),
    force=dict(type="bool", default=False),
    shutdown_timeout=dict(type="int", default=120),
)


def ensure(module):
    request = request_from_params(module.params)
    with open_driver(module.params["uri"], read_only=module.check_mode) as driver:
        return dict(QemuOverrideManager(driver).ensure(request, module.check_mode), warnings=driver.warnings)


def main():
    module = MaskingModule(argument_spec=argument_spec(**OPTIONS), supports_check_mode=True)
    run(module, lambda: ensure(module))


if __name__ == "__main__":
    main()
