# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The AppArmor (sVirt) manager of the embedded driver.

Each domain gets a profile ``libvirt-<uuid>`` that lets QEMU read and write
exactly the files of that domain (disks, kernel, NVRAM, serial logs, its
run and lib files) on top of the local abstraction libvirt's Debian packages
ship (``abstractions/libvirt-qemu``) when it exists.  The profile is loaded
with ``apparmor_parser -r`` and QEMU enters it through
``/proc/self/attr/exec`` just before it executes; it is unloaded with
``apparmor_parser -R`` at stop.  Private to the collection.
"""

from __future__ import annotations

import os
import subprocess

from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError

ENABLED = "/sys/module/apparmor/parameters/enabled"
SECURITYFS = "/sys/kernel/security/apparmor"
ABSTRACTION = "/etc/apparmor.d/abstractions/libvirt-qemu"
PARSER = "apparmor_parser"


def available(enabled: str = ENABLED, securityfs: str = SECURITYFS) -> bool:
    """AppArmor is enabled and its interface in securityfs can load profiles."""
    try:
        with open(enabled, encoding="ascii") as handle:
            on = handle.read().strip() == "Y"
    except OSError:
        return False
    return on and os.path.isdir(securityfs)


def profile_name(uuid: str) -> str:
    return f"libvirt-{uuid}"


def _quoted(path: str) -> str:
    if any(c in path for c in '"\n\0'):
        raise BackendError(f"{path!r} cannot be written into an AppArmor profile")
    return f'"{path}"'


def profile_text(uuid: str, emulator: str, files: list[tuple[str, str]], abstraction: bool = True) -> str:
    """The profile of one domain: ``files`` are (path, "r" or "rw") pairs."""
    lines = ["#include <tunables/global>", "", f"profile {profile_name(uuid)} flags=(attach_disconnected) {{"]
    if abstraction:
        lines.append("  #include <abstractions/libvirt-qemu>")
    lines.append(f"  {_quoted(emulator)} rmix,")
    for path, access in sorted(set(files)):
        rule = "rwk" if access == "rw" else "rk"
        lines.append(f"  {_quoted(path)} {rule},")
    lines += ["}", ""]
    return "\n".join(lines)


def load(text: str) -> None:
    _parser(["-r"], text)


def unload(uuid: str) -> None:
    _parser(["-R"], f"profile {profile_name(uuid)} {{}}\n")


def _parser(flags: list[str], text: str) -> None:
    try:
        subprocess.run([PARSER, *flags], input=text, text=True, capture_output=True, check=True, timeout=60)
    except FileNotFoundError as exc:
        raise BackendError("apparmor_parser (package apparmor) is needed to confine domains") from exc
    except subprocess.CalledProcessError as exc:
        raise BackendError(f"apparmor_parser {' '.join(flags)} failed: {exc.stderr.strip()}") from exc
