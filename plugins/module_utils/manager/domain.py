# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bring a domain to the requested definition and state.

The generic life cycle (define, autostart, absent, result with diff) is
ResourceManager's; this adds what only domains have: power transitions,
restart, remove_disks, unreadable definitions, and what domain_info
reports.  Backend-agnostic: it speaks only the driver's
``domains``.  Private to the collection.
"""

from __future__ import annotations

import os
from typing import TypeVar

from ansible_collections.virtops.qemu.plugins.module_utils import addresses
from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput, VirtError
from ansible_collections.virtops.qemu.plugins.module_utils.manager import guest_setup, power
from ansible_collections.virtops.qemu.plugins.module_utils.manager.resource import (
    Plan,
    ResourceManager,
    describe_each,
    uuid_of,
)
from ansible_collections.virtops.qemu.plugins.module_utils.model import domain as model
from ansible_collections.virtops.qemu.plugins.module_utils.model import kinds
from ansible_collections.virtops.qemu.plugins.module_utils.model.domain_request import (  # noqa: F401  # pylint: disable=unused-import
    DomainRequest,
    request_from_params,
)
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import XmlNode, element, to_string

DR = TypeVar("DR", bound=DomainRequest)


class BaseDomainManager(ResourceManager[DR]):
    """The generic life cycle plus power transitions, restart, the cloud-init seed and remove_disks.

    Generic over the request, so a manager of one part of a domain (qemu_override) keeps its own request type.
    """

    DONE = {**ResourceManager.DONE, "start_paused": "started paused", "shutdown": "shut down",
            "destroy": "destroyed", "suspend": "paused", "resume": "resumed"}
    FAILURES = {**ResourceManager.FAILURES, "start_paused": "failed to start", "shutdown": "did not shut down",
                "destroy": "could not be destroyed", "suspend": "could not be paused",
                "resume": "could not be resumed", "after_removal": "not every disk of remove_disks could be deleted",
                "forget_seeds": "its former seed files could not all be deleted"}
    STOPPING = frozenset({"shutdown", "destroy"})
    AFTER = power.AFTER
    NEW_STATE = "shutoff"

    def __init__(self, driver):
        super().__init__(driver.domains, warnings=driver.warnings, record=kinds.DOMAIN)
        self.driver = driver
        self._seed_path = ""                     # the request's seed file
        self._seed_image: bytes | None = None    # its content (None: cloud_init absent or not asked)
        self._stale_seeds: list[str] = []        # seed files the new definition no longer uses

    # -- model ----------------------------------------------------------------
    def _prepare(self, req: DR, before: XmlNode | None) -> None:
        """Put the seed disk and the agent channel into the request, now that the current definition is known."""
        self._seed_path, self._seed_image, self._stale_seeds = "", None, []
        if req.cloud_init is None and req.guest_agent is None:
            return
        if req.desired is None:
            if before is None:
                return
            req.desired = element("domain")
            req.desired.append(element("name", req.name))
        if req.cloud_init is not None:
            self._seed_path = self._seed_file(req)
            image = self._seed_image = req.cloud_init.image() if req.cloud_init.state == "present" else None
            guest_setup.place_seed(req.desired, before, req.owned_lists, self._seed_path, image)
            self._stale_seeds = [path for path in guest_setup.seed_paths(before, req.name)
                                 if image is None or path != self._seed_path]
        if req.guest_agent is not None:
            guest_setup.place_agent_channel(req.desired, before, req.owned_lists, req.guest_agent)

    def _shape(self, tree: XmlNode, req: DR, new: bool) -> XmlNode:
        if req.desired is None:
            return tree
        if new:
            tree = model.with_creation_defaults(tree, features=req.creation_features)
        model.settle_memory(tree, req.desired, req.definition_option)
        return tree

    def _seed_file(self, req: DR) -> str:
        directory = self.driver.seed_directory(req.cloud_init.pool if req.cloud_init else None)
        return os.path.join(directory, guest_setup.seed_file_name(req.name))

    def _seed_outdated(self) -> bool:
        """The seed file is missing or holds other bytes than the request's."""
        if self._seed_image is None:
            return False
        try:
            with open(self._seed_path, "rb") as current:
                return current.read() != self._seed_image
        except OSError:
            return True

    # -- power ----------------------------------------------------------------
    def _steps(self, req: DR, status: str) -> list[str]:
        if req.state == "absent":
            return super()._steps(req, status)
        power.require_known_state(req.name, status)
        return power.steps_to(req.state, status)

    def _plan_live(self, req: DR, plan: Plan) -> None:
        """Without definition options, the stored definition is what the running guest should have.

        So ``restart: true`` alone applies what another task (security_label, a
        redefine elsewhere) left pending, as domain_info's restart_required shows.
        """
        super()._plan_live(req, plan)
        if req.desired is not None:
            return
        live = model.parse_domain(self.objects.xml(req.name, inactive=False), "xml")
        if model.pending_changes(live, model.parse_domain(plan.before_xml, "xml")):
            plan.restart_now = req.restart
            plan.restart_required = not req.restart

    def _predicted_state(self, req: DR, plan: Plan) -> str:
        if plan.restart_now and req.state == "paused":
            return "paused"
        return super()._predicted_state(req, plan)

    def _check_plan(self, req: DR, plan: Plan) -> None:
        """The seed file is written first, so the definition never names a seed that is not there yet."""
        if req.state != "absent":
            if self._seed_outdated():
                plan.prelude.append("seed")
            if plan.define and self._stale_seeds:
                plan.epilogue.append("forget_seeds")
            return
        if not plan.exists:
            plan.removal["removed_disks"] = []
            return
        self._refuse_snapshots(req)
        self._stale_seeds = guest_setup.seed_paths(plan.before, req.name)
        plan.removal["removed_disks"] = self._disks_to_remove(req, plan.before) if plan.before is not None else []
        plan.steps.append("after_removal")

    def _transition(self, req: DR, plan: Plan, step: str) -> None:
        if step == "seed":
            self.driver.write_seed(self._seed_path, self._seed_image)
        elif step == "forget_seeds":
            for path in self._stale_seeds:
                self.driver.delete_disk_source({"path": path})
        elif step == "after_removal":
            self._after_removal(plan.removal)
        elif step == "restart":
            paused = req.state == "paused" or (req.state == "present" and plan.status == "paused")
            power.restart(self.objects, req.name, paused, req.shutdown_timeout, req.force, req.shutdown_mode)
        else:
            power.run_steps(self.objects, req.name, [step], req.shutdown_timeout, req.force, req.shutdown_mode)

    def _finish(self, req: DR, plan: Plan, result: dict, check_mode: bool) -> None:
        if req.cloud_init is not None and req.state != "absent":
            result["seed"] = self._seed_path if self._seed_image is not None else None

    # -- absent -----------------------------------------------------------------
    def _after_removal(self, removal: dict) -> None:
        """The former seed files, then the disks of remove_disks; ``removed_disks`` tells which are gone."""
        for path in self._stale_seeds:
            self.driver.delete_disk_source({"path": path})
        doomed, removal["removed_disks"] = removal["removed_disks"], []
        for source in doomed:
            self.driver.delete_disk_source(source)
            removal["removed_disks"].append(source)

    def _refuse_snapshots(self, req: DR) -> None:
        """A domain with snapshots goes only when asked, as libvirt refuses to undefine it without its flag."""
        names = self.driver.snapshots.names(req.name)
        if names and not req.remove_snapshots:
            raise InvalidInput(f"domain {req.name!r} has snapshots ({', '.join(names)}); set remove_snapshots: true "
                               "to remove it with their metadata", "remove_snapshots")

    @staticmethod
    def _disks_to_remove(req: DR, before: XmlNode) -> list[dict]:
        """Resolve remove_disks (target devs, paths or pool/volume) before anything changes."""
        disks = model.disk_sources(before)
        doomed = []
        for wanted in req.remove_disks:
            hit = next((source for target, source in disks if wanted in (target, *_names(source))), None)
            if hit is None:
                known = ", ".join(f"{t} ({'/'.join(_names(s)[-1:])})" for t, s in disks) or "none"
                raise InvalidInput(f"{wanted!r} names no disk of domain {req.name!r}; its disks: {known}",
                                   "remove_disks")
            doomed.append(hit)
        return doomed


class DomainManager(BaseDomainManager[DomainRequest]):
    """The domain module's manager."""


def _names(source: dict) -> tuple:
    """The ways a user may name a disk source in remove_disks."""
    if "volume" in source:
        return (source["volume"], f"{source['pool']}/{source['volume']}")
    return (source["path"],)


def summary(driver, name: str):
    """Name, state, reason, uuid and autostart of one domain, and its parsed persistent definition."""
    domains = driver.domains
    status = domains.status(name)
    stored = model.parse_domain(domains.xml(name), "xml")
    info = {"name": name, "state": status.state, "reason": status.reason, "active": status.active,
            "uuid": uuid_of(stored), "autostart": domains.autostart(name)}
    return info, stored


def describe(driver, name: str, address_source=addresses.ADDRESS_SOURCES, qemu_argv: bool = True) -> dict:
    """What domain_info returns for one domain (module_glue masks its passwords).

    ``qemu_argv``: with the QEMU command line the definition starts with,
    which costs as much as the rest together (post-parse, capabilities, the
    command-line builder), so a listing asks for it only when told to.
    """
    info, stored = summary(driver, name)
    info["xml"] = to_string(stored)
    info.update(_runtime(driver, name, stored, info["active"]))
    if qemu_argv:
        info.update(native_command(driver, name))
    info.update(guest_side(driver, name, info["live_xml"], list(address_source)))
    from ansible_collections.virtops.qemu.plugins.module_utils.manager.snapshot import describe_snapshots
    info["snapshots"] = describe_snapshots(driver.snapshots, name)
    return info


def describe_all(driver, address_source=addresses.ADDRESS_SOURCES, qemu_argv: bool = False) -> list:
    """Every domain as describe() has it (the command line only when asked); an unreadable one is {name, error}."""
    return describe_each(driver.domains.names(), lambda name: describe(driver, name, address_source, qemu_argv))


def guest_side(driver, name: str, live_xml: str | None, sources: list[str]) -> dict:
    """The interfaces with their addresses (first source that knows each), and the guest agent's state.

    The agent is asked only when the live definition has its channel, so a
    domain without one costs no wait.
    """
    if live_xml is None:
        return {"interfaces": [], "guest_agent": {"connected": False, "os": None}}
    live = model.parse_domain(live_xml, "xml")
    has_agent = any(guest_setup.is_agent_channel(node) for node in live.iterfind("devices/channel"))
    usable = [source for source in sources if source != "agent" or has_agent]
    nics = addresses.with_addresses(addresses.interfaces_of(live), usable,
                                    lambda source: driver.domains.interface_addresses(name, source))
    agent = driver.domains.guest_agent(name) if has_agent else {"connected": False, "os": None}
    return {"interfaces": nics, "guest_agent": agent}


def _runtime(driver, name: str, stored, active: bool) -> dict:
    """The running side: live XML, QEMU pid, domain id, taints, and whether a restart is pending."""
    if not active:
        return {"pid": None, "id": None, "taints": [], "live_xml": None, "restart_required": False}
    runtime = driver.domains.runtime(name)
    live = model.parse_domain(driver.domains.xml(name, inactive=False), "xml")
    return {"pid": runtime.pid, "id": runtime.domain_id, "taints": runtime.taints,
            "live_xml": to_string(live), "restart_required": bool(model.pending_changes(live, stored))}


def native_command(driver, name: str) -> dict:
    """QEMU's argv/env for the definition; a definition QEMU cannot run says why instead."""
    try:
        argv, env = driver.domains.native_command(name)
    except VirtError as e:
        return {"qemu_argv": None, "qemu_env": None, "qemu_argv_error": str(e)}
    return {"qemu_argv": argv, "qemu_env": env}
