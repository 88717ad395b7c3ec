#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: qemu_conf
short_description: Manage the qemu.conf of a QEMU driver instance
version_added: 0.2.0
description:
  - Sets settings of the C(qemu.conf) that the QEMU driver instance of O(uri) reads,
    or returns them to their default.
  - The file is C(/etc/libvirt/qemu.conf) for V(qemu:///system),
    C($XDG_CONFIG_HOME/libvirt/qemu.conf) (default C(~/.config)) for V(qemu:///session),
    C(ROOT/etc/qemu.conf) for V(qemu:///embed?root=ROOT), or O(path).
  - Edits are made in place. Comments, order and every other line stay byte for byte as they
    were. A key that is not set but has its documented commented-out example
    (C(#vnc_listen = "0.0.0.0")) is set by uncommenting that example line.
  - Values are typed by the table of keys libvirt reads. A boolean is written as C(1) or
    C(0); integers, strings and lists of strings are written in libvirt's syntax.
  - The file is written atomically (temporary file, fsync, rename) under a lock, keeping its
    mode and owner.
  - libvirtd reads C(qemu.conf) only when it starts; a change on a libvirt URI returns
    RV(restart_required). The embedded driver reads it at every domain start, so a change
    applies to the next domain start there.
author:
  - virtops.qemu maintainers (@virtops)
extends_documentation_fragment:
  - virtops.qemu.connection
  - virtops.qemu.attributes
options:
  uri:
    description:
      - The driver instance whose C(qemu.conf) is edited. It must be local.
        A remote URI such as V(qemu+ssh://host/system) is refused, because the module
        edits files on the host it runs on. Run the task on that host instead.
  path:
    description:
      - Edit this file instead of the one O(uri) reads. It must be an absolute path.
      - O(uri) still decides whether RV(restart_required) can be returned.
    type: path
  settings:
    description:
      - Key to value. The type of each key is the one libvirt reads. Booleans take
        V(true)/V(false) (or V(1)/V(0)), integers take numbers, and keys such as
        C(cgroup_device_acl) or C(namespaces) take a list of strings.
        C(security_driver) takes a string or a list.
      - A value of V(null) returns that key to its default, as O(state=absent) does.
      - An unknown key or a value of the wrong type fails the task, naming the key and the
        type it needs. Nothing is changed then.
    type: dict
    required: true
  state:
    description:
      - V(present) sets O(settings).
      - V(absent) returns the keys of O(settings) to their default by commenting out their
        statements; their values are ignored.
      - A password's statement is commented out without its value (C(#vnc_password = "")),
        so no copy of the password stays in the file.
    type: str
    choices: [present, absent]
    default: present
  allow_unknown_keys:
    description:
      - Accept keys the module does not know, for example a key of a newer libvirt. Such a key
        is written as a string.
    type: bool
    default: false
  backup:
    description:
      - Before changing the file, keep a copy of it beside it, named with a timestamp.
    type: bool
    default: false
notes:
  - Passwords (the values of C(vnc_password), C(spice_password), C(rdp_password) and of any other
    key ending in C(_password)) are shown as C(********) in RV(settings) and in the diff, also
    in commented-out statements; a password the task changes shows as C(********(changed)) in
    the diff's after side. The passwords in O(settings) are hidden like C(no_log) options.
  - On the embedded driver the result warns about settings that the driver ignores.
seealso:
  - module: virtops.qemu.security_label
  - name: libvirt QEMU driver documentation
    description: What the security settings of qemu.conf do.
    link: https://libvirt.org/drvqemu.html
"""

EXAMPLES = r"""
- name: Run QEMU as libvirt-qemu with dynamic ownership, and listen for VNC on every address
  virtops.qemu.qemu_conf:
    settings:
      user: libvirt-qemu
      group: libvirt-qemu
      dynamic_ownership: true
      vnc_listen: 0.0.0.0
    backup: true
  register: conf

- name: Restart libvirtd when the change needs it
  ansible.builtin.service:
    name: libvirtd
    state: restarted
  when: conf.restart_required

- name: Let guests use /dev/vfio/vfio in addition to the default devices
  virtops.qemu.qemu_conf:
    settings:
      cgroup_device_acl:
        - /dev/null
        - /dev/full
        - /dev/zero
        - /dev/random
        - /dev/urandom
        - /dev/ptmx
        - /dev/kvm
        - /dev/vfio/vfio

- name: Turn off the security driver of an embedded driver root
  virtops.qemu.qemu_conf:
    uri: qemu:///embed?root=/var/lib/virtops
    settings:
      security_driver: none

- name: Return vnc_listen to its default
  virtops.qemu.qemu_conf:
    settings:
      vnc_listen:
    state: absent
"""

RETURN = r"""
path:
  description: The file that was edited (or would be, in check mode).
  returned: always
  type: str
  sample: /etc/libvirt/qemu.conf
changed_keys:
  description: The keys whose statements changed, in the order given.
  returned: always
  type: list
  elements: str
  sample: [vnc_listen]
settings:
  description: Every active setting of the file after the task, passwords masked.
  returned: always
  type: dict
  sample: {"vnc_listen": "0.0.0.0", "dynamic_ownership": true}
restart_required:
  description:
    - The change takes effect only once libvirtd restarts. It is V(true) on a libvirt URI when the
      file changed. On the embedded driver it is always V(false), because the change applies to the
      next domain start.
  returned: always
  type: bool
backup_file:
  description: The copy made by O(backup).
  returned: when O(backup) made a copy
  type: str
  sample: /etc/libvirt/qemu.conf.12345.2024-01-01@10:00:00~
"""


# First: the imports below then load through its compiled-code cache.
from ansible_collections.virtops.qemu.plugins.module_utils import bytecode  # noqa: F401  # pylint: disable=unused-import
from ansible_collections.virtops.qemu.plugins.module_utils.manager.qemu_conf import ConfRequest, ensure
from ansible_collections.virtops.qemu.plugins.module_utils.module_glue import MaskingModule, argument_spec, run

OPTIONS = dict(
    path=dict(type="path"),
    settings=dict(type="dict", required=True),
    state=dict(type="str", default="present", choices=["present", "absent"]),
    allow_unknown_keys=dict(type="bool", default=False),
    backup=dict(type="bool", default=False),
)


def main():
    module = MaskingModule(argument_spec=argument_spec(**OPTIONS), supports_check_mode=True)
    params = module.params
    request = ConfRequest(uri=params["uri"], path=params["path"], settings=params["settings"],
                          state=params["state"], allow_unknown_keys=params["allow_unknown_keys"],
                          backup=params["backup"])
    run(module, lambda: ensure(request, module.check_mode, module.backup_local))


if __name__ == "__main__":
    main()
