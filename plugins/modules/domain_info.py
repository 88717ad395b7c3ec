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
  - For a running domain it also returns what only the running guest has, that is the
    live definition (with the display ports and pty paths chosen at start), the QEMU
    process id, the domain id, libvirt's taint flags, and whether the persistent
    definition has changes that wait for a restart.
  - Console passwords (the C(passwd) attributes libvirt shows only to privileged
    readers) are masked as C(********) in every returned XML.
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

- name: Name the domains that could not be read, and why
  ansible.builtin.debug:
    msg: "{{ all_domains.domains | selectattr('error', 'defined') | items2dict(key_name='name', value_name='error') }}"

- name: Warn about running domains with changes that wait for a restart
  ansible.builtin.debug:
    msg: "{{ item.name }} (QEMU pid {{ item.pid }}) needs a restart"
  loop: "{{ all_domains.domains | selectattr('restart_required', 'defined') | selectattr('restart_required') }}"
  loop_control:
    label: "{{ item.name }}"
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
  description: Persistent definition (inactive XML); console passwords are masked as C(********).
  returned: when O(name) is given
  type: str
live_xml:
  description:
    - Definition of the running guest, with what was chosen at start (display ports,
      pty paths, aliases); console passwords are masked as C(********).
    - V(null) when the domain is not running.
  returned: when O(name) is given
  type: str
pid:
  description:
    - Process id of the domain's QEMU.
    - V(null) when the domain is not running, or when the backend cannot tell
      (libvirt on a remote host, or without the right to read libvirtd's pidfiles).
  returned: when O(name) is given
  type: int
  sample: 48213
id:
  description: libvirt's domain id of the running domain (as C(virsh domid) shows it); V(null) when it is not running.
  returned: when O(name) is given
  type: int
  sample: 7
taints:
  description:
    - libvirt's taint flags of the running domain, for example V(custom-argv) (C(qemu:commandline)
      in the definition), V(custom-hypervisor-feature) (C(qemu:capabilities)), V(custom-device)
      (C(qemu:override)), V(custom-monitor) (a command passed through with M(virtops.qemu.qmp)),
      V(host-cpu), V(deprecated-config); empty when it is not running.
  returned: when O(name) is given
  type: list
  elements: str
  sample: ["custom-argv"]
restart_required:
  description:
    - Whether the persistent definition asks for something the running guest does not have,
      so that it takes effect only at the next cold start (the comparison the
      M(virtops.qemu.domain) module makes). V(false) when the domain is not running.
  returned: when O(name) is given
  type: bool
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
  description:
    - Every domain, each with the keys above.
    - A domain that cannot be read (a corrupt definition, say) does not fail the listing;
      it is listed as a dict with only C(name) and C(error), the reason.
  returned: when O(name) is not given
  type: list
  elements: dict
  sample: [{"name": "demo01", "state": "running", "active": true}, {"name": "broken", "error": "..."}]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.virtops.qemu.plugins.module_utils.driver.connect import open_driver
from ansible_collections.virtops.qemu.plugins.module_utils.manager.domain import describe, describe_all
from ansible_collections.virtops.qemu.plugins.module_utils.model.names import validate_name
from ansible_collections.virtops.qemu.plugins.module_utils.module_glue import argument_spec, run


def gather(params):
    name = params.get("name")
    if name is not None:
        validate_name(name, "domain")
    with open_driver(params["uri"], read_only=True) as driver:
        if name is not None:
            return dict(changed=False, warnings=driver.warnings, **describe(driver, name))
        return dict(changed=False, domains=describe_all(driver), warnings=driver.warnings)


def main():
    module = AnsibleModule(argument_spec=argument_spec(name=dict(type="str")), supports_check_mode=True)
    run(module, lambda: gather(module.params))


if __name__ == "__main__":
    main()
