#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: network_info
short_description: Read the state, definition and DHCP leases of libvirt virtual networks
version_added: 0.2.0
description:
  - Returns one network's state, persistent definition, autostart flag, uuid, bridge
    and the DHCP leases its guests hold, or the same for every network of the driver instance.
  - A network that does not exist is not an error; RV(exists) is then V(false).
  - Never changes anything.
author:
  - virtops.qemu maintainers (@virtops)
extends_documentation_fragment:
  - virtops.qemu.connection
  - virtops.qemu.attributes.info
  - virtops.qemu.info_name.network
seealso:
  - module: virtops.qemu.network
"""

EXAMPLES = r"""
- name: Read one network
  virtops.qemu.network_info:
    name: lab
  register: lab

- name: Show the addresses its guests got
  ansible.builtin.debug:
    msg: "{{ lab.network.leases | map(attribute='ip') | list }}"
  when: lab.exists

- name: Find the address of one guest by its MAC
  ansible.builtin.debug:
    msg: "{{ (lab.network.leases | selectattr('mac', 'equalto', '52:54:00:00:15:01') | first).ip }}"
  when: lab.exists and lab.network.leases | selectattr('mac', 'equalto', '52:54:00:00:15:01') | list | length > 0

- name: List every network
  virtops.qemu.network_info:
  register: all_networks

- name: Name the active ones and their bridges
  ansible.builtin.debug:
    msg: >-
      {{ all_networks.networks | selectattr('state', 'equalto', 'active')
         | items2dict(key_name='name', value_name='bridge') }}
"""

RETURN = r"""
exists:
  description: Whether the network named by O(name) exists.
  returned: when O(name) is given
  type: bool
network:
  description: The network named by O(name).
  returned: when O(name) is given and the network exists
  type: dict
  contains:
    name:
      description: Name of the network.
      type: str
    uuid:
      description: UUID of the network.
      type: str
    state:
      description: V(active) or V(inactive).
      type: str
    active:
      description: Whether the network runs.
      type: bool
    persistent:
      description: Whether it has a persistent definition (a transient one vanishes when stopped).
      type: bool
    autostart:
      description: Whether the network starts with the host.
      type: bool
    bridge:
      description: Host bridge of the running network; V(null) when it is not active.
      type: str
    xml:
      description: Persistent definition.
      type: str
    leases:
      description: DHCP leases of the running network; empty when it is not active.
      type: list
      elements: dict
      contains:
        mac:
          description: MAC address of the guest interface, lower case.
          type: str
        ip:
          description: Address handed out.
          type: str
        prefix:
          description: Prefix length of the subnet.
          type: int
        hostname:
          description: Host name the guest sent, if any.
          type: str
        expiry:
          description: When the lease ends, in seconds since the epoch; V(0) for an infinite lease.
          type: int
        type:
          description: V(ipv4) or V(ipv6).
          type: str
        clientid:
          description: DHCP client id (IPv4) or DUID (IPv6), if any.
          type: str
  sample:
    name: lab
    state: active
    bridge: virbr-lab
    leases: [{"mac": "52:54:00:00:15:01", "ip": "192.168.150.10", "prefix": 24, "hostname": "web01",
              "expiry": 1733011200, "type": "ipv4", "clientid": null}]
networks:
  description:
    - Every network, each as RV(network).
    - A network that cannot be read does not fail the listing; it is listed as a dict with
      only C(name) and C(error), the reason.
  returned: when O(name) is not given
  type: list
  elements: dict
"""


from typing import TYPE_CHECKING

# First: the imports below then load through its compiled-code cache.
from ansible_collections.virtops.qemu.plugins.module_utils import bytecode  # noqa: F401  # pylint: disable=unused-import
from ansible_collections.virtops.qemu.plugins.module_utils.driver.connect import open_driver
from ansible_collections.virtops.qemu.plugins.module_utils.manager import info
from ansible_collections.virtops.qemu.plugins.module_utils.manager.network import describe, describe_all
from ansible_collections.virtops.qemu.plugins.module_utils.model import kinds
from ansible_collections.virtops.qemu.plugins.module_utils.module_glue import MaskingModule, argument_spec, run

# Never run: ansible-core reads this import and ships in the payload the parts
# the driver loads on demand for this module's calls (module_utils/lazy.py).
if TYPE_CHECKING:
    from ansible_collections.virtops.qemu.plugins.module_utils.payload import networks  # noqa: F401  # pylint: disable=unused-import

NETWORK = info.InfoKind(
    kinds.NETWORK,
    exists=lambda driver, name: driver.networks.exists(name),
    describe=lambda driver, name: describe(driver.networks, name),
    describe_all=lambda driver: describe_all(driver.networks))


def gather(params):
    return info.gather(NETWORK, open_driver, params["uri"], params.get("name"))


def main():
    module = MaskingModule(argument_spec=argument_spec(name=dict(type="str")), supports_check_mode=True)
    run(module, lambda: gather(module.params))


if __name__ == "__main__":
    main()
