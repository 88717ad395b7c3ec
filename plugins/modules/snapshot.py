#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: snapshot
short_description: Take, revert to and delete snapshots of a virtual machine
version_added: 0.3.0
description:
  - Manages one snapshot of a domain, in libvirt's way - an internal snapshot kept inside the
    domain's qcow2 disk images, with libvirt's metadata (name, description, parent, creation time,
    the domain state it holds and which snapshot is current).
  - Through libvirt this is libvirt's snapshot API (C(virsh snapshot-create), C(snapshot-revert),
    C(snapshot-delete)). The embedded driver takes a running domain's snapshot with QEMU's
    C(snapshot-save) job and a shut-off domain's with C(qemu-img snapshot), and keeps the metadata as
    libvirt does, one C(<domainsnapshot>) XML per snapshot in C(ROOT/lib/qemu/snapshot/DOMAIN/NAME.xml).
  - Every writable disk of the domain must be a qcow2 file.
  - O(state=present) takes the snapshot when the domain has none of that name. A running or paused
    domain's snapshot holds its memory too; a shut-off domain's holds its disks. An existing snapshot
    is left as it is, whatever O(description) says.
  - O(state=current) reverts the domain to the snapshot - its disks, and for a snapshot of a running
    guest its memory, so the guest carries on from where it was; a snapshot of a shut-off domain leaves
    it shut off. Nothing happens when the snapshot is the domain's current one already, unless O(force=true).
  - A revert throws away what the domain did since its current snapshot, so it is refused without
    O(force=true) when there are such changes - when the domain runs or is paused, when it has no current
    snapshot, or when one of its disk images was modified after the current snapshot was taken (more than
    2 seconds after, which leaves room for the snapshot's own write). Where that cannot be checked (a
    volume disk, an image on another host) it counts as changed.
  - O(state=absent) deletes the snapshot's metadata and its data inside the images; the disk images
    themselves stay. Its children become children of its parent, which becomes current if it was.
  - A domain with snapshots is removed by M(virtops.qemu.domain) O(virtops.qemu.domain#module:state=absent)
    only with O(virtops.qemu.domain#module:remove_snapshots=true).
author:
  - virtops.qemu maintainers (@virtops)
extends_documentation_fragment:
  - virtops.qemu.connection
  - virtops.qemu.attributes
  - virtops.qemu.domain_name
options:
  snapshot:
    description: "Name of the snapshot: letters, digits and C(_ . + : -), no C(/)."
    type: str
    required: true
  state:
    description:
      - V(present) takes the snapshot if it does not exist, V(absent) deletes it, V(current) reverts
        the domain to it.
    type: str
    choices: [present, absent, current]
    default: present
  memory:
    description:
      - Include the running guest's memory (and device state) in the snapshot, as an internal qcow2
        snapshot does. A shut-off domain has no memory to include, so its snapshot holds the disks only.
      - V(false) for a running domain (a disk-only, external snapshot) is not supported and fails.
    type: bool
    default: true
  description:
    description: Free text stored with a new snapshot.
    type: str
  force:
    description:
      - Revert even when that discards changes made since the current snapshot, and revert to the
        snapshot that is current already.
    type: bool
    default: false
notes:
  - Deleting a snapshot never deletes a disk image.
seealso:
  - module: virtops.qemu.domain
  - module: virtops.qemu.domain_info
"""

EXAMPLES = r"""
- name: A snapshot of the running VM, with its memory
  virtops.qemu.snapshot:
    name: demo01
    snapshot: before-upgrade
    description: Before the kernel upgrade

- name: Back to it, throwing away what happened since
  virtops.qemu.snapshot:
    name: demo01
    snapshot: before-upgrade
    state: current
    force: true

- name: Delete the snapshot (the disks stay)
  virtops.qemu.snapshot:
    name: demo01
    snapshot: before-upgrade
    state: absent
"""

RETURN = r"""
name:
  description: The domain.
  returned: always
  type: str
snapshot:
  description: The snapshot.
  returned: always
  type: str
state:
  description: The O(state) asked for.
  returned: always
  type: str
action:
  description: What the task did (or would do in check mode) - V(create), V(revert), V(delete), or null.
  returned: always
  type: str
info:
  description:
    - The snapshot after the task (predicted in check mode), as M(virtops.qemu.domain_info) lists it;
      null when it does not exist.
  returned: always
  type: dict
  contains:
    name:
      description: Name of the snapshot.
      type: str
    parent:
      description: The snapshot it was taken after, null for the first one.
      type: str
    creation_time:
      description: When it was taken, in seconds since the epoch.
      type: int
    state:
      description: The domain state it holds - V(running), V(paused) or V(shutoff).
      type: str
    current:
      description: Whether it is the domain's current snapshot.
      type: bool
    description:
      description: Its description.
      type: str
    memory:
      description: Whether it holds the guest's memory.
      type: bool
xml:
  description: The part of the snapshot's C(<domainsnapshot>) XML the module shows and diffs; empty when absent.
  returned: always
  type: str
"""


from ansible_collections.virtops.qemu.plugins.module_utils.driver.connect import open_driver
from ansible_collections.virtops.qemu.plugins.module_utils.manager.snapshot import SnapshotManager
from ansible_collections.virtops.qemu.plugins.module_utils.model import kinds
from ansible_collections.virtops.qemu.plugins.module_utils.model.snapshot import STATES
from ansible_collections.virtops.qemu.plugins.module_utils.module_glue import MaskingModule, argument_spec, run

OPTIONS = dict(
    name=dict(type="str", required=True),
    snapshot=dict(type="str", required=True),
    state=dict(type="str", default="present", choices=list(STATES)),
    memory=dict(type="bool", default=True),
    description=dict(type="str"),
    force=dict(type="bool", default=False),
)


def ensure(module):
    request = kinds.SNAPSHOT.request(module.params)
    with open_driver(module.params["uri"], read_only=module.check_mode) as driver:
        manager = SnapshotManager(driver.domains, driver.snapshots, driver.uri.is_local)
        result = manager.ensure(request, module.check_mode)
        return dict(result, warnings=driver.warnings)


def main():
    module = MaskingModule(argument_spec=argument_spec(**OPTIONS), supports_check_mode=True)
    run(module, lambda: ensure(module))


if __name__ == "__main__":
    main()
