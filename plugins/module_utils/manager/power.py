# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Power-state transitions of a domain, the same for every backend.

Each transition blocks until the domain has reached its target state.
Private to the collection.
"""

from __future__ import annotations

import os
import time

from ansible_collections.virtops.qemu.plugins.module_utils.driver.base import is_active
from ansible_collections.virtops.qemu.plugins.module_utils.errors import (
    BackendError,
    Conflict,
    OperationTimeout,
    VirtError,
)
from ansible_collections.virtops.qemu.plugins.module_utils.model.domain import parse_domain
from ansible_collections.virtops.qemu.plugins.module_utils.model.domain_options import X86_ARCHES
from ansible_collections.virtops.qemu.plugins.module_utils.model.domain_request import SHUTDOWN_MODES

POLL_SECONDS = 0.2


def steps_to(state: str, current: str) -> list[str]:
    """The driver actions that take a domain from libvirt state ``current`` to module ``state``."""
    active = is_active(current)
    if state == "running":
        if current == "paused":
            return ["resume"]
        return [] if active else ["start"]
    if state == "paused":
        if current == "paused":
            return []
        return ["suspend"] if active else ["start_paused"]
    if state == "shutdown":
        if not active:
            return []
        return (["resume"] if current == "paused" else []) + ["shutdown"]
    if state == "destroyed":
        return ["destroy"] if active else []
    return []


# The state each step leaves the domain in.
AFTER = {"start": "running", "resume": "running", "suspend": "paused", "start_paused": "paused",
         "shutdown": "shutoff", "destroy": "shutoff"}


def predicted_state(steps: list[str], current: str) -> str:
    return AFTER[steps[-1]] if steps else current


def run_steps(domains, name: str, steps: list[str], shutdown_timeout: float, force: bool,
              modes: tuple[str, ...] = SHUTDOWN_MODES[:1]) -> None:
    for step in steps:
        if step == "shutdown":
            shutdown(domains, name, shutdown_timeout, force, modes)
        elif step == "start_paused":
            domains.start(name, paused=True)
        elif step == "destroy":
            destroy(domains, name)
        else:
            getattr(domains, step)(name)


def shutdown(domains, name: str, timeout: float, force: bool, modes: tuple[str, ...] = SHUTDOWN_MODES[:1]) -> None:
    """Ask the guest to power off, waiting for it; destroy after ``timeout`` only if ``force``."""
    request_shutdown(domains, name, modes)
    if wait_for_shutoff(domains, name, timeout):
        return
    if force:
        destroy(domains, name)
        return
    if not _has_acpi(domains, name):
        raise OperationTimeout(
            f"domain {name!r} did not power off within {timeout} s: it runs without ACPI "
            "(no <acpi/> in its features), so the ACPI power button cannot reach the guest; "
            "use state: destroyed or force: true, and turn the acpi feature on for the next start")
    raise OperationTimeout(
        f"domain {name!r} did not power off within {timeout} s of the ACPI shutdown request; "
        "set force: true to destroy it after the timeout, or raise shutdown_timeout")


def request_shutdown(domains, name: str, modes: tuple[str, ...]) -> None:
    """The first of ``modes`` the domain accepts: the ACPI power button, or the guest agent's guest-shutdown."""
    refused = []
    for mode in modes:
        try:
            if mode == "agent":
                domains.agent_shutdown(name)
            else:
                domains.shutdown(name)
            return
        except VirtError as e:
            refused.append(f"{mode}: {e}")
    raise BackendError(f"domain {name!r} could not be asked to shut down ({'; '.join(refused)})")


def destroy(domains, name: str) -> None:
    """Hard power off; a guest that powered off by itself meanwhile (libvirt's Conflict) is fine."""
    try:
        domains.destroy(name)
    except Conflict:
        if domains.status(name).active:
            raise


def _has_acpi(domains, name: str) -> bool:
    """Whether the running x86 guest has ACPI; True when unknown or not x86, where other buttons exist."""
    try:
        running = parse_domain(domains.xml(name, inactive=False), "xml")
    except VirtError:
        return True
    os_type = running.find("os/type")
    arch = (os_type.get("arch") if os_type is not None else None) or os.uname().machine
    return arch not in X86_ARCHES or running.find("features/acpi") is not None


def wait_for_shutoff(domains, name: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if not domains.status(name).active:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_SECONDS)


def restart(domains, name: str, paused: bool, shutdown_timeout: float, force: bool,
            modes: tuple[str, ...] = SHUTDOWN_MODES[:1]) -> None:
    """Cold restart so that a changed persistent definition takes effect."""
    status = domains.status(name)
    if status.state == "paused":
        domains.resume(name)
    if status.active:
        shutdown(domains, name, shutdown_timeout, force, modes)
    domains.start(name, paused=paused)


def require_known_state(name: str, state: str) -> None:
    if state == "pmsuspended":
        raise Conflict(f"domain {name!r} is suspended to memory by its guest; wake it up first")
