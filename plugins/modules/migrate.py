#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: migrate
short_description: Move a virtual machine to another host, live or shut off
version_added: 0.3.0
description:
  - Moves a domain from the host of O(uri) to another hypervisor, with its memory and device
    state when it runs (O(live)) and its disks when they are not shared (O(copy_storage)).
  - On libvirt (O(phase=managed)) the source libvirtd runs the whole move to O(destination),
    peer to peer, with libvirt's managed migration; disks are copied by libvirt's
    non-shared-disk migration. The task runs once, against the source.
  - The embedded driver has no daemon to talk to the other host, so the move is a handshake of
    phases that Ansible runs on the two hosts in turn; the C(virtops.qemu.migrate) role runs it.
    V(source) (source host) reads the definition and disk sizes; V(prepare) (destination) checks
    the host, creates the disks, starts QEMU waiting for the migration and exports the disks
    over NBD; V(perform) (source) mirrors the disks into those exports and migrates; V(finish)
    (destination) resumes the guest; V(confirm) (source) stops the source QEMU. V(cancel), run on
    both hosts after a failure, stops what was started - the guest keeps running on the source and
    nothing is left on the destination.
  - On the embedded driver O(live=false) with O(copy_storage=all) or O(copy_storage=incremental) moves a shut-off
    domain with its disks - V(prepare) creates the disks and exports them writable over NBD with
    C(qemu-storage-daemon), V(perform) copies each disk into its export with C(qemu-img convert), V(finish)
    stops the export and defines the domain, V(confirm) removes the source's definition.
  - A move whose controller died after the source paused for the switch-over is taken up by the next run of
    the handshake. V(source) reports it in RV(unfinished) instead of failing; when the destination's
    QEMU received the whole migration, V(prepare) finishes the move there (the guest runs on the destination)
    and V(confirm) stops the paused source; otherwise V(prepare) removes what is left on the destination and
    V(perform) resumes the guest on the source before it migrates again.
  - Before anything moves the destination is checked for the networks and storage pools the
    domain uses, its machine type and CPU model, and room for the copied disks; a missing one
    fails the task and changes nothing.
  - A domain already running on the destination and absent from the source is not changed.
  - A separate module rather than an option of M(virtops.qemu.domain) - moving a domain involves
    two hosts and, on the embedded driver, phases of its own; M(virtops.qemu.domain) stays about one host.
author:
  - virtops.qemu maintainers (@virtops)
extends_documentation_fragment:
  - virtops.qemu.connection
  - virtops.qemu.connection.attributes
  - virtops.qemu.domain_name
attributes:
  check_mode:
    support: full
    details: The destination is checked and the result predicted; nothing moves.
  diff_mode:
    support: none
  idempotent:
    support: full
options:
  phase:
    description:
      - V(managed) for libvirt; one of the embedded driver's handshake phases otherwise (see the description).
    type: str
    default: managed
    choices: [managed, source, prepare, perform, finish, confirm, cancel]
  destination:
    description:
      - The destination's libvirt URI, for example V(qemu+tcp://kvm02/system) or V(qemu+ssh://kvm02/system),
        for O(phase=managed). The migration stream goes to that URI's host.
    type: str
  live:
    description:
      - Move a running guest without stopping it. V(false) moves a shut-off domain - its definition, and its
        disks unless O(copy_storage=none). The destination always keeps the definition of a domain moved
        shut off.
    type: bool
    default: true
  copy_storage:
    description:
      - V(all) copies every writable disk to the destination, V(incremental) only the top image of each,
        V(none) expects the disks on shared storage at the same paths.
    type: str
    default: none
    choices: [none, all, incremental]
  persistent:
    description:
      - Keep the domain defined on the destination (otherwise it is transient there).
      - On the embedded driver it is given to V(prepare) too, which finishes a move whose controller died.
    type: bool
    default: true
  undefine_source:
    description: Remove the domain's definition from the source once it runs on the destination.
    type: bool
    default: true
  bandwidth:
    description: Limit of the migration stream (and disk copy) in MiB/s; V(0) is no limit.
    type: int
    default: 0
  max_downtime:
    description: The longest pause the guest may see at the switch-over, in milliseconds; V(0) keeps QEMU's default.
    type: int
    default: 0
  auto_converge:
    description: Slow the guest's CPUs down when its memory changes faster than it can be copied.
    type: bool
    default: false
  xml:
    description: For O(phase=prepare), the domain's definition as O(phase=source) returned it.
    type: str
  disks:
    description: For O(phase=prepare), the disk sizes O(phase=source) returned (by target device).
    type: dict
  listen_address:
    description:
      - For O(phase=prepare), the destination's address the source connects to (for the migration stream
        and the disk exports).
    type: str
  incoming:
    description: For O(phase=perform), what O(phase=prepare) returned.
    type: dict
seealso:
  - module: virtops.qemu.domain
  - name: The migrate role
    description: Runs the embedded driver's handshake between two hosts.
    link: https://github.com/virtops/qemu/tree/main/roles/migrate
"""

EXAMPLES = r"""
- name: Move demo01 to kvm02 with its disks, through libvirt
  virtops.qemu.migrate:
    name: demo01
    destination: qemu+tcp://kvm02/system
    copy_storage: all
    max_downtime: 300
  register: moved

- name: Show how long the guest was paused
  ansible.builtin.debug:
    msg: "{{ moved.stats.downtime_ms }} ms of downtime, {{ moved.stats.transferred_bytes }} bytes sent"
"""

RETURN = r"""
name:
  description: The domain.
  returned: always
  type: str
stats:
  description: What the move took, from QEMU's C(query-migrate) or libvirt's job statistics.
  returned: when a migration ran (phases V(managed) and V(perform))
  type: dict
  contains:
    total_time_ms:
      description: Time from the start of the move (disk copy included) to its end.
      type: int
    downtime_ms:
      description:
        - How long the guest was paused at the switch-over; V(0) for a shut-off domain.
        - On the embedded driver with O(copy_storage=none) the destination resumes the guest only in
          phase V(finish), so the guest's pause lasts until then.
      type: int
    memory_bytes:
      description: Bytes of memory and device state sent.
      type: int
    disk_bytes:
      description:
        - Bytes of disk copied.
        - For a shut-off domain on the embedded driver, the space the copied disk images take on the source.
      type: int
    transferred_bytes:
      description: Everything sent.
      type: int
present:
  description:
    - For V(source) and V(prepare), whether the domain is on the host the task ran on.
    - For V(prepare), also true when it finished a move whose controller died (RV(recovered)).
  returned: phases V(source) and V(prepare)
  type: bool
xml:
  description: The domain's definition, for O(xml) of V(prepare).
  returned: phase V(source)
  type: str
disks:
  description: Virtual size and allocation of each copied disk, by target device, for O(disks) of V(prepare).
  returned: phase V(source)
  type: dict
incoming:
  description:
    - Where the source sends the migration and the disks, for O(incoming) of V(perform).
    - For O(live=false), the NBD exports the source copies the disks into (C(offline) is true).
  returned: phase V(prepare), when it started an incoming QEMU or, for O(live=false), exported the new disks
  type: dict
unfinished:
  description:
    - The state (QEMU's C(query-migrate) status, for example V(completed) or V(pre-switchover)) of a move
      that paused the source and was neither finished nor cancelled.
  returned: phase V(source), when the source was left so
  type: str
  sample: completed
recovered:
  description: V(prepare) found the whole migration received here and finished the move (the guest runs here).
  returned: phase V(prepare), when it did
  type: bool
"""


from typing import TYPE_CHECKING

# First: the imports below then load through its compiled-code cache.
from ansible_collections.virtops.qemu.plugins.module_utils import bytecode  # noqa: F401  # pylint: disable=unused-import
from ansible_collections.virtops.qemu.plugins.module_utils.driver.connect import open_driver
from ansible_collections.virtops.qemu.plugins.module_utils.manager.migrate import COPY_STORAGE, PHASES
from ansible_collections.virtops.qemu.plugins.module_utils.manager.migrate import run as migrate
from ansible_collections.virtops.qemu.plugins.module_utils.module_glue import MaskingModule, argument_spec, run

# Never run: ansible-core reads this import and ships in the payload the parts
# the driver loads on demand for this module's calls (module_utils/lazy.py).
if TYPE_CHECKING:
    from ansible_collections.virtops.qemu.plugins.module_utils.payload import every_part  # noqa: F401  # pylint: disable=unused-import

OPTIONS = dict(
    name=dict(type="str", required=True),
    phase=dict(type="str", default="managed", choices=list(PHASES)),
    destination=dict(type="str"),
    live=dict(type="bool", default=True),
    copy_storage=dict(type="str", default="none", choices=list(COPY_STORAGE)),
    persistent=dict(type="bool", default=True),
    undefine_source=dict(type="bool", default=True),
    bandwidth=dict(type="int", default=0),
    max_downtime=dict(type="int", default=0),
    auto_converge=dict(type="bool", default=False),
    xml=dict(type="str"),
    disks=dict(type="dict"),
    listen_address=dict(type="str"),
    incoming=dict(type="dict"),
)


def main():
    module = MaskingModule(argument_spec=argument_spec(**OPTIONS), supports_check_mode=True)
    run(module, lambda: dict(migrate(open_driver, module.params, module.check_mode), name=module.params["name"]))


if __name__ == "__main__":
    main()
