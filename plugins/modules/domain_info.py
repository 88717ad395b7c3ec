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
    QEMU command line, or the same for every domain of the driver instance (there
    without the command line unless O(qemu_argv) asks for it).
  - For a running domain it also returns what only the running guest has, that is the
    live definition (with the display ports and pty paths chosen at start), the QEMU
    process id, the domain id, libvirt's taint flags, and whether the persistent
    definition has changes that wait for a restart.
  - Console passwords (the C(passwd) attributes libvirt shows only to privileged
    readers) are masked as C(********) in every returned XML.
  - For a running domain it reads the addresses of each interface from the sources in
    O(address_source), and whether the QEMU guest agent answers, with the guest's OS.
  - A domain that does not exist is not an error; RV(exists) is then V(false).
  - Never changes anything.
author:
  - virtops.qemu maintainers (@virtops)
extends_documentation_fragment:
  - virtops.qemu.connection
  - virtops.qemu.attributes.info
  - virtops.qemu.info_name.domain
options:
  address_source:
    description:
      - Where to read each interface's addresses from, in order; the first source that knows
        an interface's MAC address gives its addresses (RV(domain.interfaces[].source)).
      - V(lease) is the DHCP leases of the virtual network the interface is on (libvirt's
        leases, or the embedded driver's dnsmasq), V(agent) the guest agent's
        C(guest-network-get-interfaces) (only for a domain with the agent channel, see
        O(virtops.qemu.domain#module:guest_agent)), V(arp) the host's neighbour table on the
        interface's bridge (C(ip neigh); only addresses the host has talked to, prefix V(0)).
    type: list
    elements: str
    choices: [lease, agent, arp]
    default: [lease, agent, arp]
  qemu_argv:
    description:
      - Whether to return the QEMU command line each domain's definition starts with
        (RV(domain.qemu_argv), RV(domain.qemu_env), RV(domain.qemu_argv_error)).
      - Building it costs more than reading the rest of a domain (on the embedded driver
        the definition is post-parsed against the emulator's capabilities; on libvirt it is
        one C(domxml-to-native) call per domain), so a listing leaves it out by default.
      - Default V(true) with O(name), V(false) without.
    type: bool
    version_added: 0.4.0
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
    msg: "{{ demo.domain.state }} ({{ demo.domain.reason }})"
  when: demo.exists

- name: Read a guest's addresses, from its guest agent first, then from the DHCP leases
  virtops.qemu.domain_info:
    name: demo01
    address_source: [agent, lease]
  register: found

- name: Show its IPv4 addresses and the OS its agent reports
  ansible.builtin.debug:
    msg: >-
      {{ found.domain.interfaces | map(attribute='addresses') | flatten
         | selectattr('family', 'equalto', 'ipv4') | map(attribute='address') | list }}
      {{ found.domain.guest_agent.os['pretty-name'] | default('no agent') if found.domain.guest_agent.connected
         else 'no agent' }}
  when: found.exists

- name: List the names of every running domain
  virtops.qemu.domain_info:
  register: all_domains

- name: Print them
  ansible.builtin.debug:
    msg: "{{ all_domains.domains | selectattr('state', 'equalto', 'running') | map(attribute='name') | list }}"

- name: Name the domains that could not be read, and why
  ansible.builtin.debug:
    msg: "{{ all_domains.domains | selectattr('error', 'defined') | items2dict(key_name='name', value_name='error') }}"

- name: List every domain with the QEMU command line each one starts with
  virtops.qemu.domain_info:
    qemu_argv: true
  register: with_argv

- name: Print the QEMU each one starts and the command line's length
  ansible.builtin.debug:
    msg: "{{ item.name }}: {{ item.qemu_argv | first }} with {{ item.qemu_argv | length - 1 }} arguments"
  loop: "{{ with_argv.domains | selectattr('qemu_argv', 'defined') | rejectattr('qemu_argv', 'none') }}"
  loop_control:
    label: "{{ item.name }}"

- name: Warn about running domains with changes that wait for a restart
  ansible.builtin.debug:
    msg: "{{ item.name }} (QEMU pid {{ item.pid }}) needs a restart"
  loop: "{{ all_domains.domains | selectattr('restart_required', 'defined') | selectattr('restart_required') }}"
  loop_control:
    label: "{{ item.name }}"
"""

RETURN = r"""
exists:
  description: Whether the domain named by O(name) exists.
  returned: when O(name) is given
  type: bool
domain:
  description: The domain named by O(name).
  returned: when O(name) is given and the domain exists
  type: dict
  contains:
    name:
      description: Name of the domain.
      type: str
    state:
      description: State in libvirt's words (running, paused, shutoff, crashed, pmsuspended, blocked, shutdown).
      type: str
      sample: running
    reason:
      description: libvirt's reason for that state, for example V(booted), V(user), V(destroyed), V(shutdown).
      type: str
      sample: booted
    active:
      description: Whether a QEMU process runs for the domain.
      type: bool
    xml:
      description: Persistent definition (inactive XML); console passwords are masked as C(********).
      type: str
    live_xml:
      description:
        - Definition of the running guest, with what was chosen at start (display ports,
          pty paths, aliases); console passwords are masked as C(********).
        - V(null) when the domain is not running.
      type: str
    pid:
      description:
        - Process id of the domain's QEMU.
        - V(null) when the domain is not running, or when the backend cannot tell
          (libvirt on a remote host, or without the right to read libvirtd's pidfiles).
      type: int
      sample: 48213
    id:
      description:
        - libvirt's domain id of the running domain (as C(virsh domid) shows it).
        - V(null) when it is not running.
      type: int
      sample: 7
    taints:
      description:
        - libvirt's taint flags of the running domain, for example V(custom-argv) (C(qemu:commandline)
          in the definition), V(custom-hypervisor-feature) (C(qemu:capabilities)), V(custom-device)
          (C(qemu:override)), V(custom-monitor) (a command passed through with M(virtops.qemu.qmp)),
          V(host-cpu), V(deprecated-config); empty when it is not running.
      type: list
      elements: str
      sample: ["custom-argv"]
    restart_required:
      description:
        - Whether the persistent definition asks for something the running guest does not have,
          so that it takes effect only at the next cold start (the comparison the
          M(virtops.qemu.domain) module makes). V(false) when the domain is not running.
      type: bool
    uuid:
      description: UUID of the domain.
      type: str
    autostart:
      description: Whether the domain starts with the host.
      type: bool
    qemu_argv:
      description:
        - The QEMU command line the definition starts with, as C(virsh domxml-to-native qemu-argv)
          shows it. Runtime values such as the domain id, tap names and display ports are placeholders.
        - V(null) when the definition cannot be turned into a command line; RV(domain.qemu_argv_error) says why.
      returned: when O(qemu_argv) is true, by default only with O(name)
      type: list
      elements: str
      sample: ["/usr/bin/qemu-system-x86_64", "-name", "guest=demo01,debug-threads=on", "-S"]
    qemu_env:
      description: Environment QEMU is started with; V(null) with RV(domain.qemu_argv_error).
      returned: when O(qemu_argv) is true, by default only with O(name)
      type: dict
      sample: {"LC_ALL": "C", "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    qemu_argv_error:
      description: Why RV(domain.qemu_argv) is V(null).
      returned: when O(qemu_argv) is true and the definition cannot be turned into a command line
      type: str
    interfaces:
      description:
        - Each interface of the running domain with its addresses; empty when it is not running.
      type: list
      elements: dict
      contains:
        name:
          description: The host side name of the interface (the tap, as C(virsh domiflist) shows it).
          type: str
          sample: vnet0
        mac:
          description: Its MAC address, lower case.
          type: str
          sample: "52:54:00:12:34:56"
        addresses:
          description: Its addresses, each with C(address), C(prefix) and C(family) (V(ipv4) or V(ipv6)).
          type: list
          elements: dict
          sample: [{"address": "192.168.122.20", "prefix": 24, "family": "ipv4"}]
        source:
          description: The source of O(address_source) the addresses came from; V(null) when none knew it.
          type: str
          sample: lease
    guest_agent:
      description: The QEMU guest agent of the running domain.
      type: dict
      contains:
        connected:
          description: Whether the agent answered (V(false) without the agent channel or when not running).
          type: bool
        os:
          description:
            - The guest's C(guest-get-osinfo), for example C(id), C(version-id), C(pretty-name),
              C(kernel-release); V(null) when the agent did not answer.
          type: dict
          sample: {"id": "debian", "version-id": "12", "pretty-name": "Debian GNU/Linux 12 (bookworm)"}
    snapshots:
      description:
        - The domain's snapshots, oldest first, as M(virtops.qemu.snapshot) manages them.
      type: list
      elements: dict
      version_added: 0.3.0
      contains:
        name:
          description: Name of the snapshot.
          type: str
        parent:
          description: The snapshot it was taken after; V(null) for a first one.
          type: str
        creation_time:
          description: When it was taken, in seconds since the epoch.
          type: int
        state:
          description:
            - The domain state it holds - V(running), V(paused) or V(shutoff); V(disk-snapshot) for a disk-only
              snapshot of a running domain, as libvirt names it.
          type: str
        current:
          description: Whether it is the domain's current snapshot.
          type: bool
        description:
          description: Its description, V(null) without one.
          type: str
        memory:
          description: Whether it holds the guest's memory.
          type: bool
        disks:
          description:
            - Its disks - C(target), C(snapshot) (V(internal), V(external) or V(no)) and, for an external one,
              C(path), the overlay file.
          type: list
          elements: dict
          version_added: 0.4.0
domains:
  description:
    - Every domain, each as RV(domain); without RV(domain.qemu_argv), RV(domain.qemu_env) and
      RV(domain.qemu_argv_error) unless O(qemu_argv=true).
    - A domain that cannot be read (a corrupt definition, say) does not fail the listing;
      it is listed as a dict with only C(name) and C(error), the reason.
  returned: when O(name) is not given
  type: list
  elements: dict
  sample: [{"name": "demo01", "state": "running", "active": true}, {"name": "broken", "error": "..."}]
"""


from typing import TYPE_CHECKING

# First: the imports below then load through its compiled-code cache.
from ansible_collections.virtops.qemu.plugins.module_utils import bytecode  # noqa: F401  # pylint: disable=unused-import
from ansible_collections.virtops.qemu.plugins.module_utils.addresses import ADDRESS_SOURCES
from ansible_collections.virtops.qemu.plugins.module_utils.driver.connect import open_driver
from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.manager import info
from ansible_collections.virtops.qemu.plugins.module_utils.manager.domain import describe, describe_all
from ansible_collections.virtops.qemu.plugins.module_utils.model import kinds
from ansible_collections.virtops.qemu.plugins.module_utils.module_glue import MaskingModule, argument_spec, run

# Never run: ansible-core reads this import and ships in the payload the parts
# the driver loads on demand for this module's calls (module_utils/lazy.py).
if TYPE_CHECKING:
    from ansible_collections.virtops.qemu.plugins.module_utils.payload import domains  # noqa: F401  # pylint: disable=unused-import


def gather(params):
    sources = address_sources(params.get("address_source"))
    argv = params.get("qemu_argv")
    kind = info.InfoKind(
        kinds.DOMAIN,
        exists=lambda driver, name: driver.domains.exists(name),
        describe=lambda driver, name: describe(driver, name, sources, qemu_argv=argv is not False),
        describe_all=lambda driver: describe_all(driver, sources, qemu_argv=bool(argv)))
    return info.gather(kind, open_driver, params["uri"], params.get("name"))


def address_sources(given) -> list:
    sources = list(ADDRESS_SOURCES if given is None else given)
    if len(set(sources)) != len(sources):
        raise InvalidInput(f"names a source twice: {sources}", "address_source")
    return sources


def main():
    module = MaskingModule(argument_spec=argument_spec(
        name=dict(type="str"),
        address_source=dict(type="list", elements="str", choices=list(ADDRESS_SOURCES),
                            default=list(ADDRESS_SOURCES)),
        qemu_argv=dict(type="bool")), supports_check_mode=True)
    run(module, lambda: gather(module.params))


if __name__ == "__main__":
    main()
