# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Power-state transitions of a domain, the same for every backend.

Each transition blocks until the domain has reached its target state.
Private to the collection.
"""

from __future__ import annotations

import time

from ansible_collections.virtops.qemu.plugins.module_utils.driver.base import is_active
from ansible_collections.virtops.qemu.plugins.module_utils.errors import Conflict, OperationTimeout

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


def predicted_state(steps: list[str], current: str) -> str:
    after = {"start": "running", "resume": "running", "suspend": "paused", "start_paused": "paused",
             "shutdown": "shutoff", "destroy": "shutoff"}
    return after[steps[-1]] if steps else current


def run_steps(driver, name: str, steps: list[str], shutdown_timeout: float, force: bool) -> None:
    for step in steps:
        if step == "shutdown":
            shutdown(driver, name, shutdown_timeout, force)
        elif step == "start_paused":
            driver.domain_start(name, paused=True)
        else:
            getattr(driver, f"domain_{step}")(name)


def shutdown(driver, name: str, timeout: float, force: bool) -> None:
    """ACPI power-off, waiting for the guest; destroy after ``timeout`` only if ``force``."""
    driver.domain_shutdown(name)
    if wait_for_shutoff(driver, name, timeout):
        return
    if force:
        driver.domain_destroy(name)
        return
    raise OperationTimeout(
        f"domain {name!r} did not power off within {timeout} s of the ACPI shutdown request; "
        "set force: true to destroy it after the timeout, or raise shutdown_timeout")


def wait_for_shutoff(driver, name: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if not driver.domain_status(name).active:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_SECONDS)


def restart(driver, name: str, paused: bool, shutdown_timeout: float, force: bool) -> None:
    """Cold restart so that a changed persistent definition takes effect."""
    status = driver.domain_status(name)
    if status.state == "paused":
        driver.domain_resume(name)
    if status.active:
        shutdown(driver, name, shutdown_timeout, force)
    driver.domain_start(name, paused=paused)


def require_known_state(name: str, state: str) -> None:
    if state == "pmsuspended":
        raise Conflict(f"domain {name!r} is suspended to memory by its guest; wake it up first")
