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
  - Every writable disk of the domain must be a qcow2 file, for a snapshot other than a disk-only one.
  - With O(disk_only=true) the snapshot is external and holds the disks only (libvirt's
    C(--disk-only)) - each writable disk gets a new qcow2 overlay file, named in O(disks), on top of
    its image; the domain's disk is that overlay from then on (with the image as its C(<backingStore>)),
    and the image stays as it was when the snapshot was taken. A running guest carries on, writing to
    the overlays. Through libvirt this is C(virsh snapshot-create --disk-only); the embedded driver
    creates the overlay with C(qemu-img create), with the owner and mode of the image below it, and, for a
    running domain, makes QEMU write to it with C(blockdev-add) and C(blockdev-snapshot).
  - O(state=present) takes the snapshot when the domain has none of that name. A running or paused
    domain's snapshot holds its memory too, unless it is a disk-only one; a shut-off domain's holds its
    disks. An existing snapshot is left as it is, whatever O(description) says.
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
  - O(state=absent) of a disk-only snapshot merges each overlay into the image below it (a block commit
    on a running domain, C(qemu-img commit) on a shut-off one), points the disk back at that image and then
    removes the overlay file, as libvirt 9.0 does. Only a disk-only snapshot with no snapshot taken after it
    can be deleted.
  - O(state=current) of a disk-only snapshot fails - libvirt 9.0 cannot revert to an external snapshot
    (that came in libvirt 9.9), and neither backend does half of it.
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
      - Default V(true), unless O(disk_only=true), which holds no memory - V(true) with it fails.
      - V(false) for a running domain without O(disk_only=true) fails; a snapshot of a running guest's
        disks only is a disk-only one.
    type: bool
  disk_only:
    description:
      - Take a disk-only, external snapshot, with a new overlay file on top of each writable disk,
        named in O(disks). Every writable disk must be a file and be listed.
    type: bool
    default: false
    version_added: 0.4.0
  disks:
    description:
      - The overlay file of each disk of a disk-only snapshot (O(disk_only=true)), as libvirt's
        C(<disks><disk name='vda' snapshot='external'><source file='...'/>).
      - Only for a new snapshot; an existing one is left as it is.
    type: list
    elements: dict
    version_added: 0.4.0
    suboptions:
      target:
        description: The disk, by its target device name, for example V(vda).
        type: str
        required: true
      path:
        description: The new qcow2 overlay file, an absolute path that does not exist yet.
        type: path
        required: true
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
  - Deleting a snapshot never deletes a disk image in use; the overlay of a disk-only snapshot is removed
    only after its data were merged into the image below it.
  - On the embedded driver, a run killed while taking a disk-only snapshot can leave a new overlay file
    that no snapshot names (the domain is unchanged); a later run refuses that path as existing - remove
    the file or name another.
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

- name: A disk-only snapshot - the running guest writes to a new overlay from now on
  virtops.qemu.snapshot:
    name: demo01
    snapshot: before-backup
    disk_only: true
    disks:
      - target: vda
        path: /var/lib/libvirt/images/demo01-before-backup.qcow2

- name: Delete it - the overlay is merged into the image below and removed
  virtops.qemu.snapshot:
    name: demo01
    snapshot: before-backup
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
      description:
        - The domain state it holds - V(running), V(paused) or V(shutoff); V(disk-snapshot) for a disk-only
          snapshot of a running domain, as libvirt names it.
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
    disks:
      description: Its disks - C(target), C(snapshot) (V(internal), V(external) or V(no)) and, for an external
        one, C(path), the overlay file.
      type: list
      elements: dict
      version_added: 0.4.0
      sample: [{"target": "vda", "snapshot": "external", "path": "/var/lib/libvirt/images/demo01-snap.qcow2"}]
xml:
  description: The part of the snapshot's C(<domainsnapshot>) XML the module shows and diffs; empty when absent.
  returned: always
  type: str
"""


from typing import TYPE_CHECKING

# First: the imports below then load through its compiled-code cache.
from ansible_collections.virtops.qemu.plugins.module_utils import bytecode  # noqa: F401  # pylint: disable=unused-import
from ansible_collections.virtops.qemu.plugins.module_utils.driver.connect import open_driver
from ansible_collections.virtops.qemu.plugins.module_utils.manager.snapshot import SnapshotManager
from ansible_collections.virtops.qemu.plugins.module_utils.model import kinds
from ansible_collections.virtops.qemu.plugins.module_utils.model.snapshot import STATES
from ansible_collections.virtops.qemu.plugins.module_utils.module_glue import MaskingModule, argument_spec, run

# Never run: ansible-core reads this import and ships in the payload the parts
# the driver loads on demand for this module's calls (module_utils/lazy.py).
if TYPE_CHECKING:
    from ansible_collections.virtops.qemu.plugins.module_utils.payload import domains  # noqa: F401  # pylint: disable=unused-import

OPTIONS = dict(
    name=dict(type="str", required=True),
    snapshot=dict(type="str", required=True),
    state=dict(type="str", default="present", choices=list(STATES)),
    memory=dict(type="bool"),
    description=dict(type="str"),
    force=dict(type="bool", default=False),
    disk_only=dict(type="bool", default=False),
    disks=dict(type="list", elements="dict", options=dict(
        target=dict(type="str", required=True),
        path=dict(type="path", required=True),
    )),
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
