# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Character devices: the QMP monitor, serial ports and consoles, parallel ports, virtio channels,
and the -chardev backends other devices (rng, redirdev) share."""

from __future__ import annotations

import os

from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.cmdline.base import (
    CommandLine,
    alias,
    opt_escape,
)
from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.fileio import make_private_dir
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import etree

_SUN_PATH_MAX = 108     # bytes of a UNIX socket path, with its terminating NUL


def monitor(cmd: CommandLine) -> None:
    """The QMP monitor, on the socket the driver connects to."""
    cmd.add("-chardev", f"socket,id=charmonitor,{_monitor_address(cmd)},server=on,wait=off",
            "-mon", "chardev=charmonitor,id=monitor,mode=control")


def _monitor_address(cmd: CommandLine) -> str:
    # A socket the driver made listens before QEMU runs: nobody has to wait for QEMU to make it.
    fd = cmd.paths.monitor_fd
    return f"fd={fd}" if fd is not None else f"path={opt_escape(cmd.paths.monitor_socket)}"


def serials(cmd: CommandLine) -> None:
    for serial in cmd.devices.findall("serial"):
        target = serial.find("target")
        if target.get("type") != "isa-serial":
            raise InvalidInput(f"serial target {target.get('type')!r} is not supported", "devices/serial/target")
        port = int(target.get("port"))
        chardev = f"charserial{port}"
        cmd.add("-chardev", backend(serial, chardev))
        cmd.add_device({"driver": "isa-serial", "chardev": chardev, "id": alias(serial, f"serial{port}"),
                        "index": port})
    for console in cmd.devices.findall("console"):
        if console.find("target").get("type") != "serial":
            raise InvalidInput("only serial consoles are supported by the embedded driver",
                               "devices/console/target@type")


def parallels(cmd: CommandLine) -> None:
    for number, parallel in enumerate(cmd.devices.findall("parallel")):
        chardev = f"charparallel{number}"
        cmd.add("-chardev", backend(parallel, chardev))
        cmd.add_device({"driver": "isa-parallel", "chardev": chardev, "id": alias(parallel, f"parallel{number}")})


def channels(cmd: CommandLine) -> None:
    for number, channel in enumerate(cmd.devices.findall("channel")):
        target = channel.find("target")
        if target is None or target.get("type") != "virtio":
            raise InvalidInput("only virtio channels are supported by the embedded driver (guestfwd needs "
                               "a daemon-side socket)", "devices/channel/target@type")
        name = target.get("name")
        chardev = f"charchannel{number}"
        cmd.add("-chardev", backend(channel, chardev,
                                    default_path=channel_socket_path(cmd.paths.domain_dir, name)))
        address = channel.find("address[@type='virtio-serial']")
        props = {"driver": "virtserialport", "bus": f"virtio-serial{address.get('controller', '0')}."
                 f"{address.get('bus', '0')}", "nr": int(address.get("port")), "chardev": chardev,
                 "id": alias(channel, f"channel{number}")}
        if name:
            props["name"] = name
        cmd.add_device(props)


def channel_socket_path(domain_dir: str, name: str | None) -> str | None:
    """Socket of a unix channel without a path: in the domain's ``channel`` directory, as libvirt's channel dir."""
    if not name:
        return None
    path = os.path.join(domain_dir, "channel", name)
    if len(path.encode()) >= _SUN_PATH_MAX:
        raise InvalidInput(f"the channel socket path {path} is longer than the 107 bytes a UNIX socket allows; "
                           "use a shorter root or a <source path>", "devices/channel/source@path")
    return path


def record_channel_paths(live: etree._Element, domain_dir: str) -> None:
    """Write the generated socket of each unix channel into the live XML, as libvirt shows it.

    The sockets' directory is created here, as QEMU binds them at start.
    """
    for channel in live.findall("devices/channel[@type='unix']"):
        source = channel.find("source")
        if source is not None and source.get("path"):
            continue
        path = channel_socket_path(domain_dir, channel.find("target").get("name"))
        if path is None:
            continue
        make_private_dir(os.path.dirname(path))
        if source is None:
            source = channel.makeelement("source", {})
            channel.insert(0, source)
        source.set("mode", "bind")
        source.set("path", path)


def backend(chardev: etree._Element, ident: str, where: str | None = None, spice_name: str = "vdagent",
            default_path: str | None = None) -> str:
    """The -chardev value for a character device's backend (its type and <source>)."""
    where = where or f"devices/{chardev.tag}"
    ctype = chardev.get("type", "pty")
    sources = chardev.findall("source")
    src = sources[0].attrib if sources else {}
    if ctype in ("pty", "null"):
        return f"{ctype},id={ident}"
    if ctype == "spicevmc":
        return f"spicevmc,id={ident},name={spice_name}"
    if ctype == "file":
        if not src.get("path"):
            raise InvalidInput("a file chardev needs <source path>", f"{where}/source@path")
        append = ",append=on" if src.get("append") == "on" else ""
        return f"file,id={ident},path={opt_escape(src['path'])}{append}"
    if ctype == "udp":
        return _udp(sources, ident, where)
    generated = ctype == "unix" and not src.get("path")
    server = ",server=on,wait=off" if src.get("mode", "bind" if generated else "connect") == "bind" else ""
    path = src.get("path") or default_path
    if ctype == "unix" and path:
        return f"socket,id={ident},path={opt_escape(path)}{server}"
    if ctype == "tcp" and src.get("service"):
        protocol = chardev.find("protocol")
        telnet = ",telnet=on" if protocol is not None and protocol.get("type") == "telnet" else ""
        host = src.get("host", "127.0.0.1")
        return f"socket,id={ident},host={opt_escape(host)},port={src['service']}{telnet}{server}"
    raise InvalidInput(f"chardev type {ctype!r} (or its source) is not supported by the embedded driver",
                       f"{where}@type")


def _udp(sources: list, ident: str, where: str) -> str:
    by_mode = {s.get("mode", "connect"): s for s in sources}
    remote = by_mode.get("connect")
    if remote is None or not remote.get("service"):
        raise InvalidInput("a udp chardev needs <source mode='connect' service='...'/>", f"{where}/source")
    opts = f"udp,id={ident},host={opt_escape(remote.get('host', '127.0.0.1'))},port={remote.get('service')}"
    local = by_mode.get("bind")
    if local is not None:
        opts += f",localaddr={opt_escape(local.get('host', '127.0.0.1'))},localport={local.get('service', '0')}"
    return opts
