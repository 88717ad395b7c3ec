# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Post-parse step of the embedded QEMU driver.

libvirt's QEMU driver completes every domain definition it accepts: uuid,
canonical machine type, MAC addresses, implicit controllers and devices,
drive and PCI addresses.  ``postparse`` does the same for the embedded
backend, from the probed QEMU capabilities, so that one XML defined here or
on libvirtd 9.0 yields the same devices at the same addresses.  It runs in
three steps: normalise.py (everything outside <devices>), devices.py (device
defaults, implicit devices, addresses other than PCI) and pci.py (PCI
addresses).

Values already present in the input are never changed.  Only the
``pc-i440fx-*`` and ``pc-q35-*`` machine families are supported.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.caps import LaunchCaps
    from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import etree

__all__ = ["postparse"]


def postparse(domain: etree._Element, caps: LaunchCaps) -> etree._Element:
    """Return a completed copy of ``domain`` as libvirt's define would store it."""
    # The steps load here: the command-line builder imports helpers of this package without post-parsing.
    from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.postparse.common import child
    from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.postparse.devices import (
        complete_devices,
        sort_devices,
    )
    from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.postparse.normalise import normalise
    from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.postparse.pci import PciPlanner
    dom = copy.deepcopy(domain)
    machine = normalise(dom, caps)
    devices = child(dom, "devices", after=("on_crash", "on_reboot", "on_poweroff", "clock", "cpu", "features", "os"))
    complete_devices(dom, devices, machine, caps)
    PciPlanner(devices, machine).assign()
    sort_devices(devices)
    return dom
