# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""QEMU command line of the embedded driver.

``build_command`` turns a post-parsed domain (see postparse/) into the argv
and environment of the QEMU process, in the modern syntax libvirt 9.0 uses
for QEMU 7.2: JSON ``-blockdev``/``-device``/``-netdev``/``-object``,
``-machine ...,memory-backend=``, ``-accel``, a UNIX-socket QMP monitor.
Each device family has a module of its own (system, storage, network,
chardev, display, misc, qemu_ns); this one puts their options in libvirt's
order.

Differences from libvirt, all due to there being no daemon:

* ``on_poweroff``/``on_reboot``/``on_crash`` become ``-action`` (see
  ``system.lifecycle_action``) instead of ``-no-shutdown`` plus a daemon
  reacting to monitor events.
* Taps are referenced by name (``ifname`` from the interface's
  ``<target dev>``): the caller creates the tap before starting QEMU and
  records its name in the live XML.  libvirt passes an open fd instead.
* No master-key secret object (nothing here needs encrypted secrets).
* VNC/SPICE passwords are not on the command line: ``password=on`` is
  emitted and the caller sets the password over QMP (``set_password``).
* VNC/SPICE ``autoport``: the caller picks the port and passes it as
  ``paths.vnc_port`` / ``paths.spice_port``.
* A ``variable`` clock starts at its adjustment, but a guest that sets its
  RTC does not update ``adjustment`` (libvirt follows RTC_CHANGE events).
* File-backed guest RAM lives in the domain's directory
  (``lib/qemu/domain-ID-NAME/pc.ram``), not under a separate memory
  backing directory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.cmdline import (
    chardev,
    display,
    misc,
    network,
    qemu_ns,
    storage,
    system,
)
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.cmdline.base import (
    CommandLine,
    LaunchPaths,
    opt_escape,
)
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import etree

if TYPE_CHECKING:
    from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.caps import LaunchCaps

__all__ = ["LaunchPaths", "build_command", "record_channel_paths", "taints"]

record_channel_paths = chardev.record_channel_paths
taints = qemu_ns.taints


def build_command(domain: etree._Element, caps: LaunchCaps, paths: LaunchPaths,
                  conf: dict | None) -> tuple[list[str], dict[str, str]]:
    """argv and environment that start ``domain`` (post-parsed) paused (-S).

    ``conf`` holds qemu.conf settings; seccomp_sandbox, vnc_listen,
    vnc_password, spice_listen and spice_password are used, the rest is
    ignored here.
    """
    cmd = CommandLine(domain, caps, paths, conf or {})
    removed = qemu_ns.removed_capabilities(cmd.dom)
    _machine(cmd, removed)
    _devices(cmd)
    qemu_ns.apply_overrides(cmd)
    argv = cmd.serialised()
    argv.extend(qemu_ns.custom_args(cmd.dom))
    argv += qemu_ns.sandbox(cmd.conf, removed)
    argv += ["-msg", "timestamp=on"]
    env = system.environment(cmd)
    env.update(qemu_ns.custom_env(cmd.dom))
    return argv, {**env, **cmd.extra_env}


def _machine(cmd: CommandLine, removed: set[str]) -> None:
    """The emulator and everything up to the devices: machine, CPU, memory, monitor, clock, boot."""
    emulator = (cmd.devices.findtext("emulator") or "").strip() or cmd.caps.binary
    cmd.add(emulator, "-name", f"guest={opt_escape(cmd.dom.findtext('name'))},debug-threads=on")
    qemu_ns.compat(cmd, removed)
    cmd.add("-S")
    pflash = system.firmware(cmd)
    system.machine(cmd, pflash)
    system.cpu_memory_smp(cmd)
    cmd.add("-uuid", cmd.dom.findtext("uuid"))
    system.smbios(cmd)
    display.headless(cmd)
    cmd.add("-no-user-config", "-nodefaults")
    chardev.monitor(cmd)
    system.clock(cmd)
    cmd.add("-action", system.lifecycle_action(cmd.dom, cmd.caps))
    system.acpi(cmd)
    system.power_management(cmd)
    system.boot(cmd)


def _devices(cmd: CommandLine) -> None:
    """The devices, family by family in libvirt's order."""
    misc.iommu(cmd)
    storage.controllers(cmd)
    misc.hubs(cmd)
    storage.disks(cmd)
    network.interfaces(cmd)
    chardev.serials(cmd)
    chardev.parallels(cmd)
    chardev.channels(cmd)
    display.inputs(cmd)
    audio_id = display.audio(cmd)
    display.graphics(cmd, audio_id)
    display.videos(cmd)
    display.sounds(cmd, audio_id)
    misc.watchdogs(cmd)
    misc.redirdevs(cmd)
    misc.balloon(cmd)
    misc.rngs(cmd)
    misc.vmcoreinfo(cmd)
    misc.panics(cmd)
    misc.shmems(cmd)
    misc.vsocks(cmd)
