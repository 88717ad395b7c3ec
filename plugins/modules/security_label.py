#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: security_label
short_description: Manage the security labels of a domain and of its disks
version_added: 0.2.0
description:
  - Sets or removes the C(<seclabel>) elements of a defined domain, one per security model
    (V(selinux), V(apparmor), V(dac)), and those of its disk sources.
  - Setting a label replaces the domain's label of that model whole. Switching its type, for
    example from V(dynamic) to V(none), therefore leaves nothing of the old label behind.
    Labels of other models are left alone.
  - Labels take effect when the domain starts. For a running domain a change is written to the
    persistent definition and RV(restart_required) is returned. RV(live_labels) reports the
    labels in force.
  - Before writing, the module checks that the user and group QEMU runs as can reach every disk
    image, kernel, initrd and NVRAM file of the domain. That means search permission on every
    parent directory, and read or write permission on files that DAC will not give to QEMU. The
    check fails naming the first path that blocks and the missing permission. QEMU's user is a
    static DAC label of the domain, or else the base DAC label of the host capabilities
    (C(user) and C(group) of C(qemu.conf)).
author:
  - virtops.qemu maintainers (@virtops)
extends_documentation_fragment:
  - virtops.qemu.connection
  - virtops.qemu.attributes
options:
  name:
    description:
      - Name of the domain. It must be defined.
      - C(domain) is the name this option had before 0.3.0.
    type: str
    required: true
    aliases: [domain]
  state:
    description:
      - V(present) sets the labels given.
      - V(absent) removes the domain's labels, and the disks' labels, of the models given.
        Other options of those labels are ignored.
    type: str
    choices: [present, absent]
    default: present
  labels:
    description: Labels of the domain, at most one per model.
    type: list
    elements: dict
    default: []
    suboptions:
      model:
        description: The security model the label is for.
        type: str
        required: true
        choices: [selinux, apparmor, dac]
      type:
        description:
          - V(dynamic) makes the driver generate a label at every start and relabel the domain's files.
          - V(static) uses O(labels[].label) as given.
          - V(none) leaves the domain unconfined by this model.
        type: str
        choices: [dynamic, static, none]
        default: dynamic
      relabel:
        description:
          - Whether the driver relabels the domain's files for this label. A dynamic label always does.
            For a static label it defaults to V(false).
        type: bool
      label:
        description:
          - The label of a static label. For V(dac) it is C(USER:GROUP) or C(+UID:+GID), for V(selinux)
            a full context, for V(apparmor) a profile name.
        type: str
      imagelabel:
        description: The label the domain's files get, for a static label with O(labels[].relabel=true).
        type: str
      baselabel:
        description: The base a dynamic label is built on (SELinux type and level, for example).
        type: str
  disks:
    description: Labels of disk sources. A disk is matched by its target device.
    type: list
    elements: dict
    default: []
    suboptions:
      target:
        description: Target device of the disk, for example V(vda). The domain must have that disk.
        type: str
        required: true
      labels:
        description: Labels of the disk's source, at most one per model.
        type: list
        elements: dict
        required: true
        suboptions:
          model:
            description: The security model the label is for.
            type: str
            required: true
            choices: [selinux, apparmor, dac]
          relabel:
            description: V(false) keeps the driver from relabelling this disk.
            type: bool
          label:
            description: The label this disk gets instead of the domain's image label.
            type: str
  check_access:
    description:
      - Check before writing that QEMU's user can reach the domain's files.
    type: bool
    default: true
notes:
  - Bad input fails the task before anything changes, naming the option. Examples are an unknown
    model or type, a static label without O(labels[].label), a dynamic label with
    O(labels[].relabel=false), and a disk target the domain does not have.
  - On the embedded driver the models in force are picked from C(security_driver) in the root's
    C(qemu.conf) and from the host. A domain that asks for SELinux or AppArmor on a host without
    them fails to start with an error that says so.
seealso:
  - module: virtops.qemu.qemu_conf
  - module: virtops.qemu.domain
  - name: libvirt security label XML
    description: The C(<seclabel>) element.
    link: https://libvirt.org/formatdomain.html#security-label
"""

EXAMPLES = r"""
- name: Run web01 as a fixed user and group, and let the driver leave its files alone
  virtops.qemu.security_label:
    name: web01
    labels:
      - model: dac
        type: static
        label: "+1000:+1000"
        relabel: false

- name: Keep the driver's hands off a shared data disk of web02 (its other files are still labelled)
  virtops.qemu.security_label:
    name: web02
    disks:
      - target: vdb
        labels:
          - model: dac
            relabel: false

- name: No confinement by SELinux for a domain, then restart it to apply that
  virtops.qemu.security_label:
    name: legacy01
    labels:
      - model: selinux
        type: none
  register: labels

- name: Restart it when needed
  virtops.qemu.domain:
    name: legacy01
    state: running
    restart: true
  when: labels.restart_required

- name: Back to the driver's default label for web01
  virtops.qemu.security_label:
    name: web01
    state: absent
    labels:
      - model: dac

- name: Let the driver relabel the data disk of web02 again
  virtops.qemu.security_label:
    name: web02
    state: absent
    disks:
      - target: vdb
        labels:
          - model: dac
"""

RETURN = r"""
name:
  description: Name of the domain.
  returned: always
  type: str
  sample: web01
labels:
  description: The domain's labels in its persistent definition after the task (predicted in check mode).
  returned: always
  type: list
  elements: dict
  sample: [{"model": "dac", "type": "static", "relabel": "no", "label": "+1000:+1000"}]
disks:
  description: The labels of each disk source, by target device, after the task.
  returned: always
  type: dict
  sample: {"vdb": [{"model": "dac", "relabel": "no"}]}
live_labels:
  description:
    - The labels in force on the running domain, primary model first (libvirt's
      C(virDomainGetSecurityLabelList), or the embedded driver's own record). The list is empty
      when the domain does not run.
  returned: always
  type: list
  elements: dict
  sample: [{"model": "dac", "label": "+64055:+994", "enforcing": true}]
restart_required:
  description: The domain runs with labels other than those of its definition; they apply at its next start.
  returned: always
  type: bool
xml:
  description:
    - The persistent definition after the task (predicted in check mode).
    - Console passwords (C(passwd) attributes) are masked as C(********), as in the diff.
  returned: always
  type: str
"""


from typing import TYPE_CHECKING

# First: the imports below then load through its compiled-code cache.
from ansible_collections.virtops.qemu.plugins.module_utils import bytecode  # noqa: F401  # pylint: disable=unused-import
from ansible_collections.virtops.qemu.plugins.module_utils.driver.connect import open_driver
from ansible_collections.virtops.qemu.plugins.module_utils.manager.security_label import SecurityLabelManager
from ansible_collections.virtops.qemu.plugins.module_utils.model import kinds
from ansible_collections.virtops.qemu.plugins.module_utils.module_glue import MaskingModule, argument_spec, run

# Never run: ansible-core reads this import and ships in the payload the parts
# the driver loads on demand for this module's calls (module_utils/lazy.py).
if TYPE_CHECKING:
    from ansible_collections.virtops.qemu.plugins.module_utils.payload import domains  # noqa: F401  # pylint: disable=unused-import

MODEL = dict(type="str", required=True, choices=["selinux", "apparmor", "dac"])

OPTIONS = dict(
    name=dict(type="str", required=True, aliases=["domain"]),
    state=dict(type="str", default="present", choices=["present", "absent"]),
    labels=dict(type="list", elements="dict", default=[], options=dict(
        model=MODEL,
        type=dict(type="str", default="dynamic", choices=["dynamic", "static", "none"]),
        relabel=dict(type="bool"), label=dict(type="str"), imagelabel=dict(type="str"),
        baselabel=dict(type="str"))),
    disks=dict(type="list", elements="dict", default=[], options=dict(
        target=dict(type="str", required=True),
        labels=dict(type="list", elements="dict", required=True, options=dict(
            model=MODEL, relabel=dict(type="bool"), label=dict(type="str"))))),
    check_access=dict(type="bool", default=True),
)


def ensure(module):
    request = kinds.SECURITY_LABEL.request(module.params)
    with open_driver(module.params["uri"], read_only=module.check_mode) as driver:
        manager = SecurityLabelManager(driver.domains, driver.capabilities)
        return dict(manager.ensure(request, module.check_mode), warnings=driver.warnings)


def main():
    module = MaskingModule(argument_spec=argument_spec(**OPTIONS), supports_check_mode=True)
    run(module, lambda: ensure(module))


if __name__ == "__main__":
    main()
