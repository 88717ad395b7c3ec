# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a person sees, hears and types with: graphics, video, input devices, audio and sound cards."""

from __future__ import annotations

import os

from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.cmdline.base import (
    CommandLine,
    alias,
    opt_escape,
    to_json,
)
from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import etree

_INPUT_DRIVERS = {
    ("tablet", "usb"): "usb-tablet", ("mouse", "usb"): "usb-mouse", ("keyboard", "usb"): "usb-kbd",
    ("tablet", "virtio"): "virtio-tablet-pci", ("mouse", "virtio"): "virtio-mouse-pci",
    ("keyboard", "virtio"): "virtio-keyboard-pci",
}
_HDA_DRIVERS = {"ich6": "intel-hda", "ich9": "ich9-intel-hda"}
_SOUND_DRIVERS = {"ac97": "AC97", "es1370": "ES1370", "sb16": "sb16", "usb": "usb-audio"}
# video model -> (driver of the primary video, driver of a secondary one; None: cannot be secondary)
_VIDEO_DRIVERS = {"cirrus": ("cirrus-vga", None), "vga": ("VGA", None), "bochs": ("bochs-display", "bochs-display"),
                  "virtio": ("virtio-vga", "virtio-gpu-pci"), "qxl": ("qxl-vga", "qxl")}


def headless(cmd: CommandLine) -> None:
    if cmd.devices.find("graphics") is None:
        cmd.add("-display", "none")


def inputs(cmd: CommandLine) -> None:
    for number, inp in enumerate(cmd.devices.findall("input")):
        key = (inp.get("type"), inp.get("bus"))
        if key[1] == "ps2":
            continue  # the i8042 is built into the machine
        driver = _INPUT_DRIVERS.get(key)
        if driver is None:
            raise InvalidInput(f"input {key[0]} on bus {key[1]} is not supported", "devices/input")
        props = {"driver": driver, "id": alias(inp, f"input{number}")}
        if key[1] == "usb":
            address = inp.find("address")
            props.update({"bus": f"usb.{address.get('bus', '0')}", "port": address.get("port")})
            cmd.add_device(props)
        else:
            cmd.add_device(cmd.pci(inp, props))


def audio(cmd: CommandLine) -> str | None:
    """The -audiodev of <audio>; its id, which displays and sound cards name."""
    elem = cmd.devices.find("audio")
    if elem is None:
        return None
    kind = elem.get("type")
    if kind not in ("none", "spice"):
        raise InvalidInput(f"audio type {kind!r} is not supported by the embedded driver", "devices/audio@type")
    ident = f"audio{elem.get('id', '1')}"
    cmd.add("-audiodev", to_json({"id": ident, "driver": kind}))
    return ident


def graphics(cmd: CommandLine, audio_id: str | None) -> None:
    for elem in cmd.devices.findall("graphics"):
        kind = elem.get("type")
        if kind == "vnc":
            cmd.add("-vnc", _vnc(cmd, elem, audio_id))
        elif kind == "spice":
            cmd.add("-spice", _spice(cmd, elem))
        else:
            raise InvalidInput(f"graphics type {kind!r} is not supported by the embedded driver",
                               "devices/graphics@type")


def _vnc(cmd: CommandLine, elem: etree._Element, audio_id: str | None) -> str:
    listen = elem.find("listen")
    ltype = listen.get("type") if listen is not None else "address"
    if ltype == "none":
        display = "none"
    elif ltype == "socket":
        path = listen.get("socket") or elem.get("socket") or os.path.join(cmd.paths.domain_dir, "vnc.sock")
        display = f"vnc=unix:{opt_escape(path)}"
    else:
        address = (listen.get("address") if listen is not None else None) or elem.get("listen") \
            or cmd.conf.get("vnc_listen", "127.0.0.1")
        if ":" in address:
            address = f"[{address}]"
        display = f"{address}:{_port(elem, cmd.paths.vnc_port, 'vnc_port', 5900) - 5900}"
    opts = [display]
    if elem.get("passwd") or cmd.conf.get("vnc_password"):
        opts.append("password=on")
    if audio_id:
        opts.append(f"audiodev={audio_id}")
    return ",".join(opts)


def _spice(cmd: CommandLine, elem: etree._Element) -> str:
    listen = elem.find("listen")
    opts = []
    if listen is None or listen.get("type") != "none":
        address = (listen.get("address") if listen is not None else None) or elem.get("listen") \
            or cmd.conf.get("spice_listen", "127.0.0.1")
        opts += [f"port={_port(elem, cmd.paths.spice_port, 'spice_port', 0)}", f"addr={address}"]
    if not (elem.get("passwd") or cmd.conf.get("spice_password")):
        opts.append("disable-ticketing=on")
    opts.append("seamless-migration=on")
    return ",".join(opts)


def _port(elem: etree._Element, chosen: int | None, field: str, minimum: int) -> int:
    """The display's port: its own, or for autoport the one the caller chose (``chosen``, paths.<field>)."""
    port = elem.get("port")
    if elem.get("autoport") == "yes" or port in (None, "-1"):
        if chosen is None:
            raise InvalidInput(f"{elem.get('type')} autoport needs a port chosen by the caller "
                               f"(paths.{field})", "devices/graphics@port")
        port = chosen
    number = int(port)
    if number < minimum or number > 65535:
        raise InvalidInput(f"port {number} is out of range", "devices/graphics@port")
    return number


def videos(cmd: CommandLine) -> None:
    for number, video in enumerate(cmd.devices.findall("video")):
        model = video.find("model")
        vtype = model.get("type")
        if vtype == "none":
            continue
        primary = model.get("primary") == "yes" or number == 0
        props: dict = {"driver": _video_driver(vtype, primary), "id": alias(video, f"video{number}")}
        if vtype == "vga":
            props["vgamem_mb"] = int(model.get("vram", "16384")) // 1024
        elif vtype == "virtio":
            props["max_outputs"] = int(model.get("heads", "1"))
        elif vtype == "qxl":
            props.update({"ram_size": int(model.get("ram")) * 1024, "vram_size": int(model.get("vram")) * 1024,
                          "vram64_size_mb": int(model.get("vram64", "0")) // 1024,
                          "vgamem_mb": int(model.get("vgamem")) // 1024, "max_outputs": int(model.get("heads"))})
        elif vtype == "bochs":
            props["vgamem"] = int(model.get("vram", "16384")) * 1024
        cmd.add_device(cmd.pci(video, props))


def _video_driver(vtype: str, primary: bool) -> str:
    if vtype not in _VIDEO_DRIVERS:
        raise InvalidInput(f"video model {vtype!r} is not supported by the embedded driver",
                           "devices/video/model@type")
    driver = _VIDEO_DRIVERS[vtype][0 if primary else 1]
    if driver is None:
        raise InvalidInput(f"video model {vtype!r} can only be the primary video", "devices/video/model@type")
    return driver


def sounds(cmd: CommandLine, audio_id: str | None) -> None:
    for number, sound in enumerate(cmd.devices.findall("sound")):
        model = sound.get("model")
        ident = alias(sound, f"sound{number}")
        if model in _HDA_DRIVERS:
            cmd.add_device(cmd.pci(sound, {"driver": _HDA_DRIVERS[model], "id": ident}))
            _codecs(cmd, sound, ident, audio_id)
        elif model in _SOUND_DRIVERS:
            props = {"driver": _SOUND_DRIVERS[model], "id": ident, "audiodev": audio_id}
            if model == "usb":
                props = cmd.usb(sound, props)
            elif model != "sb16":  # an ISA card
                props = cmd.pci(sound, props)
            cmd.add_device(props)
        elif model == "pcspk":
            cmd.add("-soundhw", "pcspk")
        else:
            raise InvalidInput(f"sound model {model!r} is not supported by the embedded driver",
                               "devices/sound@model")


def _codecs(cmd: CommandLine, sound: etree._Element, ident: str, audio_id: str | None) -> None:
    codecs = [codec.get("type", "duplex") for codec in sound.findall("codec")] or ["duplex"]
    for cad, ctype in enumerate(codecs):
        if ctype not in ("duplex", "micro", "output"):
            raise InvalidInput(f"codec type {ctype!r} is not supported", "devices/sound/codec@type")
        cmd.add_device({"driver": f"hda-{ctype}", "id": f"{ident}-codec{cad}", "bus": f"{ident}.0",
                        "cad": cad, "audiodev": audio_id})
