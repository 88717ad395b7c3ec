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

import copy
import os
from dataclasses import dataclass, field

from ansible_collections.virtops.qemu.plugins.module_utils import addresses
from ansible_collections.virtops.qemu.plugins.module_utils.driver.base import is_active
from ansible_collections.virtops.qemu.plugins.module_utils.errors import (
    InvalidInput,
    UnreadableDefinition,
    VirtError,
)
from ansible_collections.virtops.qemu.plugins.module_utils.manager import guest_setup, power
from ansible_collections.virtops.qemu.plugins.module_utils.manager.resource import (
    ResourceManager,
    ResourceRequest,
    describe_each,
    reconcile_name,
    uuid_of,
)
from ansible_collections.virtops.qemu.plugins.module_utils.model import domain as model
from ansible_collections.virtops.qemu.plugins.module_utils.model import domain_options, origins
from ansible_collections.virtops.qemu.plugins.module_utils.model.names import validate_name
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import check_option_text, element, to_string


@dataclass
class DomainRequest(ResourceRequest):
    force: bool = False
    shutdown_timeout: float = 120
    remove_disks: list = field(default_factory=list)
    remove_snapshots: bool = False      # absent: forget the domain's snapshots with it (their metadata)
    definition_option: str = "xml"      # the option a wrong definition is blamed on
    creation_features: tuple = ()       # features a new domain gets unless turned off
    cloud_init: guest_setup.CloudInit | None = None
    guest_agent: bool | None = None     # the agent channel wanted (True), unwanted (False), or left alone
    shutdown_mode: tuple = ("acpi",)    # how a shutdown asks the guest, tried in order


class DomainManager(ResourceManager):
    """The generic life cycle plus power transitions, restart and remove_disks."""

    DONE = {**ResourceManager.DONE, "start_paused": "started paused", "shutdown": "shut down",
            "destroy": "destroyed", "suspend": "paused", "resume": "resumed"}
    FAILURES = {**ResourceManager.FAILURES, "start_paused": "failed to start", "shutdown": "did not shut down",
                "destroy": "could not be destroyed", "suspend": "could not be paused",
                "resume": "could not be resumed", "after_removal": "not every disk of remove_disks could be deleted"}
    STOPPING = frozenset({"shutdown", "destroy"})
    SCHEMA = "domain"
    OPTION_PLACES = origins.DOMAIN

    def __init__(self, driver):
        super().__init__(driver.domains, model.DOMAIN_RULES)
        self.driver = driver
        self._seed_path = ""                     # the request's seed file
        self._seed_image: bytes | None = None    # its content (None: cloud_init absent or not asked)
        self._seed_planned = False               # the file is to be (re)written
        self._stale_seeds: list[str] = []        # seed files the new definition no longer uses

    # -- model ----------------------------------------------------------------
    def _created(self, req):
        new = model.with_creation_defaults(copy.deepcopy(req.desired), features=req.creation_features)
        model.settle_memory(new, req.desired, req.definition_option)
        return new

    def _settle(self, tree, req):
        model.settle_memory(tree, req.desired, req.definition_option)

    def _definition(self, req, before, before_xml):
        self._add_guest_devices(req, before)
        return super()._definition(req, before, before_xml)

    def _add_guest_devices(self, req, before):
        """Put the seed disk and the agent channel into the request, now that the current definition is known."""
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

    def _seed_file(self, req) -> str:
        directory = self.driver.seed_directory(req.cloud_init.pool)
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

    def _plan(self, req):
        self._seed_path, self._seed_image, self._stale_seeds = "", None, []
        plan = super()._plan(req)
        self._seed_planned = self._seed_outdated()
        return plan

    def _apply(self, req, plan):
        """The seed file first, so the definition never names a seed that is not there yet."""
        if self._seed_planned:
            self.driver.write_seed(self._seed_path, self._seed_image)
        super()._apply(req, plan)
        if plan.define:
            for path in self._stale_seeds:
                self.driver.delete_disk_source({"path": path})

    def _result(self, req, plan, check_mode):
        result = super()._result(req, plan, check_mode)
        result["changed"] = result["changed"] or self._seed_planned
        if req.cloud_init is not None:
            result["seed"] = self._seed_path if self._seed_image is not None else None
        return result

    def _before(self, req):
        """The stored definition; an unreadable one does not stop a request that needs none of it.

        Power changes and removal work from the hypervisor's own record, so a
        broken definition file cannot keep a guest running.
        """
        try:
            return self._stored(req.name)
        except UnreadableDefinition as e:
            if req.desired is not None or req.remove_disks:
                raise
            self.driver.warnings.append(str(e))
            return None, ""

    # -- power ----------------------------------------------------------------
    def _status(self, name):
        return self.objects.status(name).state

    def _status_of_new(self):
        return "shutoff"

    def _is_active(self, status):
        return is_active(status)

    def _steps(self, req, status):
        power.require_known_state(req.name, status)
        return power.steps_to(req.state, status)

    def _plan_restart(self, req, plan):
        """Without definition options, the stored definition is what the running guest should have.

        So ``restart: true`` alone applies what another task (security_label, a
        redefine elsewhere) left pending, as domain_info's restart_required shows.
        """
        super()._plan_restart(req, plan)
        stays_active = self._is_active(plan.status) and not set(plan.steps) & self.STOPPING
        if req.desired is not None or not plan.before_xml or not stays_active:
            return
        live = model.parse_domain(self.objects.xml(req.name, inactive=False), "xml")
        if model.pending_changes(live, model.parse_domain(plan.before_xml, "xml")):
            plan.restart_now = req.restart
            plan.restart_required = not req.restart

    def _predicted_state(self, req, plan):
        if plan.restart_now and req.state == "paused":
            return "paused"
        return power.predicted_state(plan.steps, plan.status)

    def _transition(self, req, plan, step):
        if step == "restart":
            paused = req.state == "paused" or (req.state == "present" and plan.status == "paused")
            power.restart(self.objects, req.name, paused, req.shutdown_timeout, req.force, req.shutdown_mode)
        else:
            power.run_steps(self.objects, req.name, [step], req.shutdown_timeout, req.force, req.shutdown_mode)

    # -- absent -----------------------------------------------------------------
    def _before_removal(self, req, before):
        self._refuse_snapshots(req)
        self._stale_seeds = guest_setup.seed_paths(before, req.name)
        return {"removed_disks": self._disks_to_remove(req, before) if before is not None else []}

    def _after_removal(self, req, result):
        for path in self._stale_seeds:
            self.driver.delete_disk_source({"path": path})
        doomed, result["removed_disks"] = result["removed_disks"], []
        for source in doomed:
            self.driver.delete_disk_source(source)
            result["removed_disks"].append(source)

    def _refuse_snapshots(self, req) -> None:
        """A domain with snapshots goes only when asked, as libvirt refuses to undefine it without its flag."""
        names = self.driver.snapshots.names(req.name)
        if names and not req.remove_snapshots:
            raise InvalidInput(f"domain {req.name!r} has snapshots ({', '.join(names)}); set remove_snapshots: true "
                               "to remove it with their metadata", "remove_snapshots")

    @staticmethod
    def _disks_to_remove(req, before):
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

    def _gone(self, req, changed, before_xml):
        return {**super()._gone(req, changed, before_xml), "removed_disks": []}


def _names(source: dict) -> tuple:
    """The ways a user may name a disk source in remove_disks."""
    if "volume" in source:
        return (source["volume"], f"{source['pool']}/{source['volume']}")
    return (source["path"],)


def request_from_params(params: dict) -> DomainRequest:
    """Validate the module's options and build the request; connects to nothing."""
    name = validate_name(params["name"], "domain")
    desired, owned = None, set()
    if params.get("xml"):
        desired = model.parse_domain(params["xml"])
        reconcile_name(desired, name, "domain")
        owned = model.owned_lists_in(desired)
    elif domain_options.has_definition(params):
        check_option_text(params, domain_options.DEFINITION_OPTIONS)
        desired, owned = domain_options.render(params)
    if desired is not None:
        model.normalise(desired)
    if params.get("remove_disks") and params["state"] != "absent":
        raise InvalidInput("only applies with state: absent", "remove_disks")
    if params.get("remove_snapshots") and params["state"] != "absent":
        raise InvalidInput("only applies with state: absent", "remove_snapshots")
    timeout = params.get("shutdown_timeout", 120)
    if timeout is not None and timeout < 0:
        raise InvalidInput(f"must be 0 or more seconds, got {timeout}", "shutdown_timeout")
    from_options = desired is not None and not params.get("xml")
    return DomainRequest(
        name=name, state=params["state"], desired=desired, owned_lists=owned,
        autostart=params.get("autostart"), restart=params.get("restart", False), verbatim=bool(params.get("xml")),
        force=params.get("force", False), shutdown_timeout=120 if timeout is None else timeout,
        remove_disks=params.get("remove_disks") or [], remove_snapshots=bool(params.get("remove_snapshots")),
        definition_option="current_memory" if from_options else "xml",
        creation_features=domain_options.creation_features(params) if from_options else (),
        cloud_init=guest_setup.cloud_init_from_params(params, name), guest_agent=params.get("guest_agent"),
        shutdown_mode=_shutdown_modes(params.get("shutdown_mode")))


def _shutdown_modes(given) -> tuple:
    modes = tuple(given or ("acpi",))
    unknown = [mode for mode in modes if mode not in power.SHUTDOWN_MODES]
    if unknown or len(set(modes)) != len(modes):
        raise InvalidInput(f"a list of distinct modes out of {', '.join(power.SHUTDOWN_MODES)}, got {list(modes)}",
                           "shutdown_mode")
    return modes


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
