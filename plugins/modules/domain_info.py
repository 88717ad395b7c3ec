#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: domain_info
short_description: Read the state and definition of QEMU/KVM virtual machines
version_added: 0.1.0
description:
  - Returns one domain's state, persistent definition, autostart flag, uuid and
    QEMU command line, or the same for every domain of the driver instance.
  - Never changes anything.
author:
  - virtops.qemu maintainers (@virtops)
extends_documentation_fragment:
  - virtops.qemu.connection
  - virtops.qemu.connection.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: N/A
  idempotent:
    support: full
options:
  name:
    description: Domain to describe. Without it, every domain is listed in RV(domains).
    type: str
seealso:
  - module: virtops.qemu.domain
"""

EXAMPLES = r"""
- name: Read one domain
  virtops.qemu.domain_info:
    name: demo01
  register: demo

- name: Show its state, for example "running (booted)"
  ansible.builtin.debug:
    msg: "{{ demo.state }} ({{ demo.reason }})"

- name: List the names of every running domain
  virtops.qemu.domain_info:
  register: all_domains

- name: Print them
  ansible.builtin.debug:
    msg: "{{ all_domains.domains | selectattr('state', 'equalto', 'running') | map(attribute='name') | list }}"
"""

RETURN = r"""
name:
  description: Name of the domain.
  returned: when O(name) is given
  type: str
state:
  description: State in libvirt's words (running, paused, shutoff, crashed, pmsuspended, blocked, shutdown).
  returned: when O(name) is given
  type: str
  sample: running
reason:
  description: libvirt's reason for that state, for example V(booted), V(user), V(destroyed), V(shutdown).
  returned: when O(name) is given
  type: str
  sample: booted
active:
  description: Whether a QEMU process runs for the domain.
  returned: when O(name) is given
  type: bool
xml:
  description: Persistent definition (inactive XML, secrets included).
  returned: when O(name) is given
  type: str
uuid:
  description: UUID of the domain.
  returned: when O(name) is given
  type: str
autostart:
  description: Whether the domain starts with the host.
  returned: when O(name) is given
  type: bool
qemu_argv:
  description:
    - The QEMU command line the definition starts with, as C(virsh domxml-to-native qemu-argv)
      shows it. Runtime values such as the domain id, tap names and display ports are placeholders.
    - V(null) when the definition cannot be turned into a command line; RV(qemu_argv_error) says why.
  returned: when O(name) is given
  type: list
  elements: str
  sample: ["/usr/bin/qemu-system-x86_64", "-name", "guest=demo01,debug-threads=on", "-S"]
qemu_env:
  description: Environment QEMU is started with.
  returned: when O(name) is given
  type: dict
  sample: {"LC_ALL": "C", "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
qemu_argv_error:
  description: Why RV(qemu_argv) is V(null).
  returned: when the definition cannot be turned into a command line
  type: str
domains:
  description: Every domain, each with the keys above.
  returned: when O(name) is not given
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.virtops.qemu.plugins.module_utils.driver.connect import open_driver
from ansible_collections.virtops.qemu.plugins.module_utils.manager.domain import describe
from ansible_collections.virtops.qemu.plugins.module_utils.model.domain import validate_name
from ansible_collections.virtops.qemu.plugins.module_utils.module_glue import argument_spec, run


def gather(params):
    name = params.get("name")
    if name is not None:
        validate_name(name)
    with open_driver(params["uri"], read_only=True) as driver:
        if name is not None:
            return dict(changed=False, warnings=driver.warnings, **describe(driver, name))
        domains = [describe(driver, n) for n in driver.domain_names()]
        return dict(changed=False, domains=domains, warnings=driver.warnings)


def main():
    module = AnsibleModule(argument_spec=argument_spec(name=dict(type="str")), supports_check_mode=True)
    run(module, lambda: gather(module.params))


if __name__ == "__main__":
    main()
