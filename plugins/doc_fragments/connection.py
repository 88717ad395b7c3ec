# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  uri:
    description:
      - The QEMU driver instance to manage, as a libvirt connection URI.
      - V(qemu:///system) and V(qemu:///session), and remote forms such as
        V(qemu+ssh://user@host/system), V(qemu+tcp://host/system),
        V(qemu+tls://host/system) or V(qemu+unix:///system), go through libvirtd
        with the libvirt Python bindings.
      - V(qemu:///embed?root=/abs/dir) selects the daemonless embedded driver,
        which runs QEMU itself and keeps its state under the absolute directory O(uri)
        names (C(etc/qemu), C(run/qemu), C(log/qemu), C(lib/qemu), C(cache/qemu)).
        C(root) is its only parameter and may be given once; it cannot be C(/) itself
        or a file. The tree is created by the first change; check mode and the
        C(_info) modules create nothing.
      - Set it once for every module of the collection with
        C(module_defaults) and the action group C(group/virtops.qemu.qemu).
    type: str
    default: qemu:///system
requirements:
  - lxml
  - libvirt-python (libvirt's Python bindings, Debian package C(python3-libvirt)) for libvirtd URIs
  - qemu-system and qemu-img on the managed host for the embedded driver
"""

    ATTRIBUTES = r"""
attributes:
  check_mode:
    description: Can run in check mode and predict what a real run would change, without changing anything.
  diff_mode:
    description: Returns the definition before and after, showing only what really changes.
  idempotent:
    description: A second run with the same arguments changes nothing and reports C(changed=false).
  action_group:
    description: Use C(group/virtops.qemu.qemu) in C(module_defaults) to set defaults such as O(uri) for this module.
    support: full
    membership:
      - virtops.qemu.qemu
"""
