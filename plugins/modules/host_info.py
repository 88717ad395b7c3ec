#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: host_info
short_description: Read what a QEMU driver instance can run
version_added: 0.1.0
description:
  - Returns the host capabilities of a QEMU driver instance in libvirt's
    C(<capabilities>) format and as plain data. This covers the emulators
    found, their architectures, machine types with canonical names, and
    whether KVM can be used.
  - On the embedded driver, each emulator is probed once and the result is
    cached under the root's C(cache/qemu); the cache is refreshed when the binary changes.
    This module only uses and refreshes a cache that exists; on a root that has no
    tree yet it probes every time and creates nothing.
  - Never changes anything.
author:
  - virtops.qemu maintainers (@virtops)
extends_documentation_fragment:
  - virtops.qemu.connection
  - virtops.qemu.attributes.info
seealso:
  - module: virtops.qemu.domain_info
"""

EXAMPLES = r"""
- name: Read the capabilities of the embedded driver under /var/lib/virtops
  virtops.qemu.host_info:
    uri: qemu:///embed?root=/var/lib/virtops
  register: host

- name: Show the machine types x86_64 guests can use
  ansible.builtin.debug:
    msg: >-
      {{ (host.guests | selectattr('arch', 'equalto', 'x86_64') | first).machines
         | map(attribute='canonical') | unique | list }}
"""

RETURN = r"""
capabilities_xml:
  description: The capabilities in libvirt's format.
  returned: always
  type: str
arch:
  description: Host CPU architecture.
  returned: always
  type: str
  sample: x86_64
uuid:
  description: Host uuid, when known.
  returned: always
  type: str
  sample: 9c760b4d-ae8d-450d-b531-bc46c2ce085f
guests:
  description: One entry per emulator and architecture.
  returned: always
  type: list
  elements: dict
  sample:
    - os_type: hvm
      arch: x86_64
      wordsize: 64
      emulator: /usr/bin/qemu-system-x86_64
      machines: [{"name": "pc", "canonical": "pc-i440fx-7.2", "max_cpus": 255}]
      domain_types: [qemu]
kvm:
  description: Whether any guest can use KVM acceleration.
  returned: always
  type: bool
security_models:
  description:
    - The security models in force, primary first, as libvirt's C(<secmodel>) lists them. libvirtd
      lists the LSM (V(selinux), V(apparmor) or V(none)) and then V(dac). The embedded driver picks
      them from the C(security_driver) of its C(qemu.conf) and from what the host has. It stacks
      V(dac) when it runs as root.
  returned: always
  type: list
  elements: dict
  contains:
    model:
      description: V(selinux), V(apparmor), V(none) or V(dac).
      type: str
    doi:
      description: Domain of interpretation.
      type: str
    baselabels:
      description: Label per domain type (V(kvm), V(qemu)) that domains without their own label get.
      type: dict
  sample: [{"model": "none", "doi": "0", "baselabels": {}},
           {"model": "dac", "doi": "0", "baselabels": {"kvm": "+64055:+994", "qemu": "+64055:+994"}}]
"""


from typing import TYPE_CHECKING

# First: the imports below then load through its compiled-code cache.
from ansible_collections.virtops.qemu.plugins.module_utils import bytecode  # noqa: F401  # pylint: disable=unused-import
from ansible_collections.virtops.qemu.plugins.module_utils.driver.connect import open_driver
from ansible_collections.virtops.qemu.plugins.module_utils.model.capabilities import summarise
from ansible_collections.virtops.qemu.plugins.module_utils.module_glue import MaskingModule, argument_spec, run

# Never run: ansible-core reads this import and ships in the payload the parts
# the driver loads on demand for this module's calls (module_utils/lazy.py).
if TYPE_CHECKING:
    from ansible_collections.virtops.qemu.plugins.module_utils.payload import domains  # noqa: F401  # pylint: disable=unused-import


def gather(params):
    with open_driver(params["uri"], read_only=True) as driver:
        xml = driver.capabilities()
    return dict(changed=False, capabilities_xml=xml, **summarise(xml))


def main():
    module = MaskingModule(argument_spec=argument_spec(), supports_check_mode=True)
    run(module, lambda: gather(module.params))


if __name__ == "__main__":
    main()
