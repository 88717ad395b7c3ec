#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pool
short_description: Define, build, start, stop and remove libvirt storage pools
version_added: 0.2.0
description:
  - Manages a libvirt storage pool of a QEMU driver instance, that is its persistent
    definition, whether it is active, autostart, and building its target on the host.
  - The definition is given either verbatim as libvirt storage pool XML in O(xml) or by
    structured options (O(type), O(target), O(source)).
  - Comparison is by desired subset. What you specify must hold in the current definition;
    what libvirt filled in (uuid, measured capacity) is kept. A pool keeps its type; another
    type under the same name is refused.
  - O(state=absent) stops and undefines the pool. It never deletes volumes or data; the
    (empty) target directory is removed only when O(delete_target) names it.
  - The embedded driver (V(qemu:///embed?root=/dir)) supports the types V(dir), V(fs) and
    V(iscsi-direct); other types go through libvirt only and are refused there with an error
    naming the type.
author:
  - virtops.qemu maintainers (@virtops)
extends_documentation_fragment:
  - virtops.qemu.connection
  - virtops.qemu.attributes
options:
  name:
    description:
      - Name of the pool, made of letters, digits and C(_), C(.), C(+), C(:), C(-); no C(/).
    type: str
    required: true
  state:
    description:
      - V(present) defines the pool and leaves it active or not as it is.
      - V(active) defines it if needed and starts it.
      - V(inactive) defines it if needed and stops it (an fs pool is unmounted).
      - V(absent) stops it and removes its definition; volumes stay where they are.
    type: str
    choices: [present, active, inactive, absent]
    default: active
  xml:
    description:
      - The pool as libvirt storage pool XML. Its C(<name>) must match O(name) or be absent.
      - Cannot be combined with the structured options.
    type: str
  type:
    description: Pool type, needed to create a pool from structured options.
    type: str
    choices: [dir, fs, netfs, logical, disk, iscsi, iscsi-direct]
  target:
    description: Where the pool's volumes appear on the host.
    type: dict
    suboptions:
      path:
        description: Absolute path of the target directory.
        type: path
      owner:
        description: Numeric owner of the directory O(build) makes.
        type: int
      group:
        description: Numeric group of the directory O(build) makes.
        type: int
      mode:
        description:
          - Mode of the directory O(build) makes, as M(ansible.builtin.file) takes it -
            an octal string such as V('0755'), an unquoted YAML number such as C(0755),
            or a symbolic mode that sets every class, such as V(u=rwx,g=rx,o=rx).
          - Permission bits only; libvirt keeps no setuid, setgid or sticky bit.
        type: raw
  source:
    description: Where the pool's storage comes from.
    type: dict
    suboptions:
      devices:
        description:
          - Block devices (fs, logical, disk pools), or the target IQN (iscsi, iscsi-direct pools).
          - The list is owned; devices missing from it are removed from the definition.
          - The device of an fs pool must be a block device; anything else (an image file, for which
            attach a loop device first) is refused before anything changes. One that does not exist
            yet may be defined but not started. Not checked when libvirt's host is remote.
        type: list
        elements: str
      hosts:
        description: Servers (netfs) or the iSCSI portal (iscsi, iscsi-direct).
        type: list
        elements: dict
        suboptions:
          name:
            description: Host name or address.
            type: str
            required: true
          port:
            description: Port; 3260 for iSCSI when not given.
            type: int
      dir:
        description: Exported directory of a netfs pool.
        type: str
      name:
        description: Volume group name of a logical pool.
        type: str
      format:
        description: Filesystem type (fs, netfs), partition table type (disk) or V(lvm2).
        type: str
      initiator:
        description: IQN of the initiator (required for iscsi-direct).
        type: str
      auth:
        description: CHAP authentication with a libvirt secret.
        type: dict
        suboptions:
          type:
            description: Authentication type.
            type: str
            default: chap
            choices: [chap, ceph]
          username:
            description: User name.
            type: str
            required: true
          usage:
            description: Usage name of the libvirt secret that holds the password.
            type: str
            required: true
  autostart:
    description: Whether the pool starts with the host. Left as it is when not given.
    type: bool
  build:
    description:
      - Make what the pool type needs on the host before the pool first starts, as
        C(virsh pool-build) does - the target directory with O(target.mode), O(target.owner) and
        O(target.group) (dir, fs, netfs), the volume group (logical, libvirt only).
      - Runs when the pool is created, or when its target is missing; never on an active pool.
    type: bool
    default: false
  build_overwrite:
    description:
      - With O(build), also make a new filesystem on an fs pool's device (C(mkfs)), destroying
        whatever the device held. Only when this task creates the pool; a re-run never formats.
    type: bool
    default: false
  restart:
    description: Restart an active pool whose definition changed, so that the change takes effect.
    type: bool
    default: false
  delete_target:
    description:
      - With O(state=absent), also remove the pool's target directory, which must be empty.
        The value must be that directory's path, as a confirmation.
      - A target that is not an empty directory is refused before the pool is stopped, so nothing
        changes (not checked when libvirt's host is remote, nor beneath an active fs pool's mount).
    type: path
  refresh:
    description:
      - Rescan the active pool's volumes (C(virsh pool-refresh)), so files other tools put into the
        pool's directory show up as volumes. Needs O(state=active).
      - A rescan changes nothing on the host, so it never makes the task report a change; check mode
        does not rescan. The embedded driver reads the pool's directory each time, so there a rescan
        has nothing to catch up with.
    type: bool
    default: false
    version_added: 0.3.0
seealso:
  - module: virtops.qemu.pool_info
  - module: virtops.qemu.volume
"""

EXAMPLES = r"""
- name: A directory pool, built and started at boot
  virtops.qemu.pool:
    name: images
    type: dir
    target:
      path: /srv/images
      mode: "0755"
    build: true
    autostart: true

- name: A filesystem pool on a block device, formatted when the pool is created
  virtops.qemu.pool:
    name: fast
    type: fs
    source:
      devices: [/dev/vdb]
      format: ext4
    target:
      path: /srv/fast
    build: true
    build_overwrite: true

- name: An iSCSI target reached without the kernel initiator
  virtops.qemu.pool:
    name: san
    type: iscsi-direct
    source:
      hosts: [{name: 192.0.2.10}]
      devices: [iqn.2024-01.org.example:store]
      initiator: iqn.2024-01.org.example:host1

- name: Remove a pool, its empty directory too (volumes would make this fail)
  virtops.qemu.pool:
    name: images
    state: absent
    delete_target: /srv/images

- name: A pool on the embedded driver
  virtops.qemu.pool:
    uri: qemu:///embed?root=/var/lib/virtops
    name: images
    type: dir
    target:
      path: /var/lib/virtops/images
    build: true

- name: Show files copied into the pool's directory by other tools as volumes
  virtops.qemu.pool:
    name: images
    refresh: true
"""

RETURN = r"""
name:
  description: Name of the pool.
  returned: always
  type: str
  sample: images
state:
  description: V(active), V(inactive) or V(absent) after the task (predicted in check mode).
  returned: always
  type: str
  sample: active
uuid:
  description: UUID of the pool.
  returned: when the pool exists
  type: str
xml:
  description: Persistent definition after the task (predicted in check mode), without the measured sizes.
  returned: always
  type: str
autostart:
  description: Whether the pool starts with the host.
  returned: always
  type: bool
restart_required:
  description: The definition has changes the active pool does not have yet.
  returned: always
  type: bool
deleted_target:
  description: The target directory O(delete_target) removed, or V(null).
  returned: always
  type: str
refreshed:
  description: Whether this run rescanned the pool's volumes (O(refresh), not in check mode).
  returned: always
  type: bool
  version_added: 0.3.0
"""


from typing import TYPE_CHECKING

# First: the imports below then load through its compiled-code cache.
from ansible_collections.virtops.qemu.plugins.module_utils import bytecode  # noqa: F401  # pylint: disable=unused-import
from ansible_collections.virtops.qemu.plugins.module_utils.driver.connect import open_driver
from ansible_collections.virtops.qemu.plugins.module_utils.manager.pool import PoolManager
from ansible_collections.virtops.qemu.plugins.module_utils.model import kinds
from ansible_collections.virtops.qemu.plugins.module_utils.model.pool import STRUCTURED_OPTIONS
from ansible_collections.virtops.qemu.plugins.module_utils.module_glue import MaskingModule, argument_spec, run

# Never run: ansible-core reads this import and ships in the payload the parts
# the driver loads on demand for this module's calls (module_utils/lazy.py).
if TYPE_CHECKING:
    from ansible_collections.virtops.qemu.plugins.module_utils.payload import storage  # noqa: F401  # pylint: disable=unused-import

OPTIONS = dict(
    name=dict(type="str", required=True),
    state=dict(type="str", default="active", choices=["present", "active", "inactive", "absent"]),
    xml=dict(type="str"),
    type=dict(type="str", choices=["dir", "fs", "netfs", "logical", "disk", "iscsi", "iscsi-direct"]),
    target=dict(type="dict", options=dict(
        path=dict(type="path"), owner=dict(type="int"), group=dict(type="int"), mode=dict(type="raw"))),
    source=dict(type="dict", options=dict(
        devices=dict(type="list", elements="str"),
        hosts=dict(type="list", elements="dict", options=dict(name=dict(type="str", required=True),
                                                              port=dict(type="int"))),
        dir=dict(type="str"), name=dict(type="str"), format=dict(type="str"), initiator=dict(type="str"),
        auth=dict(type="dict", no_log=False, options=dict(
            type=dict(type="str", default="chap", choices=["chap", "ceph"]),
            username=dict(type="str", required=True), usage=dict(type="str", required=True))))),
    autostart=dict(type="bool"),
    build=dict(type="bool", default=False),
    build_overwrite=dict(type="bool", default=False),
    restart=dict(type="bool", default=False),
    delete_target=dict(type="path"),
    refresh=dict(type="bool", default=False),
)


def ensure(module):
    request = kinds.POOL.request(module.params)
    with open_driver(module.params["uri"], read_only=module.check_mode) as driver:
        result = PoolManager(driver.pools, driver.warnings).ensure(request, module.check_mode)
        return dict(result, warnings=driver.warnings)


def main():
    module = MaskingModule(
        argument_spec=argument_spec(**OPTIONS),
        mutually_exclusive=[("xml", option) for option in STRUCTURED_OPTIONS],
        supports_check_mode=True,
    )
    run(module, lambda: ensure(module))


if __name__ == "__main__":
    main()
