#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pool_info
short_description: Read the state, space and volumes of libvirt storage pools
version_added: 0.2.0
description:
  - Returns one pool's state, definition, autostart flag, capacity, allocation, available
    space and volumes, or the same for every pool of the driver instance.
  - A pool that does not exist is not an error; RV(exists) is then V(false).
  - Never changes anything.
author:
  - virtops.qemu maintainers (@virtops)
extends_documentation_fragment:
  - virtops.qemu.connection
  - virtops.qemu.attributes.info
  - virtops.qemu.info_name.pool
seealso:
  - module: virtops.qemu.pool
  - module: virtops.qemu.volume
"""

EXAMPLES = r"""
- name: Read one pool
  virtops.qemu.pool_info:
    name: images
  register: images

- name: Show its free space in GiB
  ansible.builtin.debug:
    msg: "{{ (images.pool.available / 1024 ** 3) | round(1) }}"
  when: images.exists and images.pool.active

- name: List every pool
  virtops.qemu.pool_info:
  register: all_pools
"""

RETURN = r"""
exists:
  description: Whether the pool named by O(name) exists.
  returned: when O(name) is given
  type: bool
pool:
  description: The pool named by O(name).
  returned: when O(name) is given and the pool exists
  type: dict
  contains:
    name:
      description: Name of the pool.
      type: str
    uuid:
      description: UUID of the pool.
      type: str
    type:
      description: Pool type, such as V(dir).
      type: str
    state:
      description: V(active) or V(inactive).
      type: str
    active:
      description: Whether the pool is active.
      type: bool
    autostart:
      description: Whether the pool starts with the host.
      type: bool
    target:
      description: Target path, if the type has one.
      type: str
    capacity:
      description: Bytes in the pool; V(null) when it is inactive.
      type: int
    allocation:
      description: Bytes in use; V(null) when it is inactive.
      type: int
    available:
      description: Bytes free; V(null) when it is inactive.
      type: int
    xml:
      description: Persistent definition, without the measured sizes.
      type: str
    volumes:
      description: Volumes of the active pool; empty when it is inactive.
      type: list
      elements: dict
      contains:
        name:
          description: Volume name.
          type: str
        path:
          description: Path (or libvirt's key of an iSCSI LUN).
          type: str
        format:
          description: Image format.
          type: str
        capacity:
          description: Capacity in bytes.
          type: int
        allocation:
          description: Bytes the volume occupies.
          type: int
pools:
  description:
    - Every pool, each as RV(pool).
    - A pool that cannot be read is listed as a dict with only C(name) and C(error).
  returned: when O(name) is not given
  type: list
  elements: dict
"""


from typing import TYPE_CHECKING

# First: the imports below then load through its compiled-code cache.
from ansible_collections.virtops.qemu.plugins.module_utils import bytecode  # noqa: F401  # pylint: disable=unused-import
from ansible_collections.virtops.qemu.plugins.module_utils.driver.connect import open_driver
from ansible_collections.virtops.qemu.plugins.module_utils.manager import info
from ansible_collections.virtops.qemu.plugins.module_utils.manager.pool import describe, describe_all
from ansible_collections.virtops.qemu.plugins.module_utils.model import kinds
from ansible_collections.virtops.qemu.plugins.module_utils.module_glue import MaskingModule, argument_spec, run

# Never run: ansible-core reads this import and ships in the payload the parts
# the driver loads on demand for this module's calls (module_utils/lazy.py).
if TYPE_CHECKING:
    from ansible_collections.virtops.qemu.plugins.module_utils.payload import storage  # noqa: F401  # pylint: disable=unused-import

POOL = info.InfoKind(
    kinds.POOL,
    exists=lambda driver, name: driver.pools.exists(name),
    describe=lambda driver, name: describe(driver.pools, driver.volumes, name),
    describe_all=lambda driver: describe_all(driver.pools, driver.volumes))


def gather(params):
    return info.gather(POOL, open_driver, params["uri"], params.get("name"))


def main():
    module = MaskingModule(argument_spec=argument_spec(name=dict(type="str")), supports_check_mode=True)
    run(module, lambda: gather(module.params))


if __name__ == "__main__":
    main()
