# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bring a domain to the requested definition and state.

Read -> compute the desired definition -> compare -> act unless check mode
-> re-read -> result.  Backend-agnostic: it speaks only the Driver interface.
Private to the collection.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from ansible_collections.virtops.qemu.plugins.module_utils.driver.base import is_active
from ansible_collections.virtops.qemu.plugins.module_utils.errors import (
    InvalidInput,
    NotFound,
    UnreadableDefinition,
    VirtError,
)
from ansible_collections.virtops.qemu.plugins.module_utils.manager import power
from ansible_collections.virtops.qemu.plugins.module_utils.model import domain as model
from ansible_collections.virtops.qemu.plugins.module_utils.model import domain_options
from ansible_collections.virtops.qemu.plugins.module_utils.model.names import validate_name
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import element, to_string


@dataclass
class DomainRequest:
    name: str
    state: str = "present"
    desired: object = None              # desired-subset <domain> element, or None
    owned_lists: set = field(default_factory=set)
    autostart: bool | None = None
    restart: bool = False
    force: bool = False
    shutdown_timeout: float = 120
    remove_disks: list = field(default_factory=list)
    definition_option: str = "current_memory"   # the option a wrong definition is blamed on
    creation_features: tuple = ()       # features a new domain gets unless turned off


@dataclass
class Plan:
    before_xml: str                     # "" when the domain does not exist
    after_xml: str
    define: bool
    status: str                         # libvirt state word before acting
    steps: list
    autostart_change: bool
    restart_required: bool = False
    restart_now: bool = False
    done: list = field(default_factory=list)    # what _apply has done so far


class DomainManager:
    def __init__(self, driver):
        self.driver = driver

    def ensure(self, req: DomainRequest, check_mode: bool) -> dict:
        if req.state == "absent":
            return self._absent(req, check_mode)
        plan = self._plan(req)
        if not check_mode:
            self._apply(req, plan)
        return self._result(req, plan, check_mode)

    def _stored(self, name: str):
        """The persistent definition as a tree, and serialised the way merged trees are, for a clean diff."""
        tree = model.parse_domain(self.driver.domain_xml(name), "xml")
        return tree, to_string(tree)

    def _stored_unless_unreadable(self, req: DomainRequest):
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

    # -- planning ---------------------------------------------------------
    def _plan(self, req: DomainRequest) -> Plan:
        exists = self.driver.domain_exists(req.name)
        if not exists and req.desired is None:
            raise NotFound(f"domain {req.name!r} is not defined; give its definition (xml or options) to create it")
        before, before_xml = self._stored_unless_unreadable(req) if exists else (None, "")
        after, define = self._definition(req, before, before_xml)
        status = self.driver.domain_status(req.name).state if exists else "shutoff"
        power.require_known_state(req.name, status)
        steps = power.steps_to(req.state, status)
        autostart_change = req.autostart is not None and (
            not exists or self.driver.domain_autostart(req.name) != req.autostart)
        plan = Plan(before_xml, after, define, status, steps, autostart_change)
        self._plan_restart(req, plan)
        return plan

    @staticmethod
    def _definition(req, before, before_xml):
        if req.desired is None:
            return before_xml, False
        if before is None:
            new = model.with_creation_defaults(copy.deepcopy(req.desired), features=req.creation_features)
            model.settle_memory(new, req.desired, req.definition_option)
            return to_string(new), True
        merged = model.merge_domain(before, req.desired, req.owned_lists)
        model.settle_memory(merged.tree, req.desired, req.definition_option)
        return (to_string(merged.tree), True) if merged.changed else (before_xml, False)

    def _plan_restart(self, req, plan):
        """A running guest whose live hardware differs from the request needs a cold restart."""
        stays_active = is_active(plan.status) and not set(plan.steps) & {"shutdown", "destroy"}
        if req.desired is None or not plan.before_xml or not stays_active:
            return
        live = model.parse_domain(self.driver.domain_xml(req.name, inactive=False), "xml")
        if model.merge_domain(live, req.desired, req.owned_lists).changed:
            plan.restart_now = req.restart
            plan.restart_required = not req.restart

    # -- acting -----------------------------------------------------------
    def _apply(self, req, plan):
        """Act on the plan; a failure after a first change carries what was already changed."""
        step = None
        try:
            for step in self._actions(plan):
                self._act(req, plan, step)
                plan.done.append(step)
        except VirtError as e:
            if plan.done:
                e.after_changes(f"{_what_was_done(req.name, plan.done)} but {_failure(step)}: {e}",
                                self._partial_result(req, plan))
            raise

    @staticmethod
    def _actions(plan):
        actions = ["define"] * plan.define + ["autostart"] * plan.autostart_change
        return actions + (["restart"] if plan.restart_now else list(plan.steps))

    def _act(self, req, plan, step):
        if step == "define":
            self.driver.domain_define(plan.after_xml)
            plan.after_xml = self._stored(req.name)[1]
        elif step == "autostart":
            self.driver.domain_set_autostart(req.name, req.autostart)
        elif step == "restart":
            paused = req.state == "paused" or (req.state == "present" and plan.status == "paused")
            power.restart(self.driver, req.name, paused, req.shutdown_timeout, req.force)
        else:
            power.run_steps(self.driver, req.name, [step], req.shutdown_timeout, req.force)

    def _partial_result(self, req, plan):
        before, after = model.mask_secrets_in_diff(plan.before_xml, plan.after_xml)
        return {"changed": True, "name": req.name, "xml": after, "uuid": _uuid(plan.after_xml),
                "diff": {"before": before, "after": after}}

    # -- result -----------------------------------------------------------
    def _result(self, req, plan, check_mode):
        changed = plan.define or plan.autostart_change or bool(plan.steps) or plan.restart_now
        if check_mode:
            state = "paused" if plan.restart_now and req.state == "paused" else \
                power.predicted_state(plan.steps, plan.status)
            autostart = req.autostart if req.autostart is not None else \
                (self.driver.domain_autostart(req.name) if plan.before_xml else False)
        else:
            state = self.driver.domain_status(req.name).state
            autostart = self.driver.domain_autostart(req.name)
        before, after = model.mask_secrets_in_diff(plan.before_xml, plan.after_xml)
        return {
            "changed": changed,
            "name": req.name,
            "state": state,
            "xml": after,
            "uuid": _uuid(plan.after_xml),
            "autostart": autostart,
            "restart_required": plan.restart_required,
            "diff": {"before": before, "after": after},
        }

    # -- absent -----------------------------------------------------------
    def _absent(self, req, check_mode):
        if not self.driver.domain_exists(req.name):
            return self._gone(req, False, "")
        before, before_xml = self._stored_unless_unreadable(req)
        doomed = self._disks_to_remove(req, before) if before is not None else []
        if not check_mode:
            if self.driver.domain_status(req.name).active:
                self.driver.domain_destroy(req.name)
            self.driver.domain_undefine(req.name)
            for path in doomed:
                self.driver.delete_disk_source(path)
        result = self._gone(req, True, model.mask_secrets(before_xml))
        result["removed_disks"] = doomed
        return result

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

    @staticmethod
    def _gone(req, changed, before_xml):
        return {"changed": changed, "name": req.name, "state": "absent", "xml": "", "uuid": None,
                "autostart": False, "restart_required": False, "removed_disks": [],
                "diff": {"before": before_xml, "after": ""}}


# How a failed action reads after "domain 'x' was defined but ...".
_FAILURES = {"start": "failed to start", "start_paused": "failed to start", "restart": "failed to restart",
             "shutdown": "did not shut down", "destroy": "could not be destroyed",
             "suspend": "could not be paused", "resume": "could not be resumed",
             "autostart": "its autostart could not be set"}


_DONE = {"start": "started", "start_paused": "started paused", "restart": "restarted",
         "shutdown": "shut down", "destroy": "destroyed", "suspend": "paused", "resume": "resumed"}


def _what_was_done(name: str, done: list) -> str:
    if "define" in done:
        return f"domain {name!r} was defined"
    if done == ["autostart"]:
        return f"the autostart of domain {name!r} was set"
    return f"domain {name!r} was {_DONE.get(done[-1], 'changed')}"


def _failure(step) -> str:
    return _FAILURES.get(step, f"then failed to {step}")


def _names(source: dict) -> tuple:
    """The ways a user may name a disk source in remove_disks."""
    if "volume" in source:
        return (source["volume"], f"{source['pool']}/{source['volume']}")
    return (source["path"],)


def _uuid(xml: str):
    if not xml:
        return None
    node = model.parse_domain(xml, "xml").find("uuid")
    return None if node is None else node.text


def request_from_params(params: dict) -> DomainRequest:
    """Validate the module's options and build the request; connects to nothing."""
    name = validate_name(params["name"], "domain")
    desired, owned = None, set()
    if params.get("xml"):
        desired = model.parse_domain(params["xml"])
        _reconcile_name(desired, name)
        owned = model.owned_lists_in(desired)
    elif domain_options.has_definition(params):
        desired, owned = domain_options.render(params)
    if desired is not None:
        model.normalise(desired)
    if params.get("remove_disks") and params["state"] != "absent":
        raise InvalidInput("only applies with state: absent", "remove_disks")
    timeout = params.get("shutdown_timeout", 120)
    if timeout is not None and timeout < 0:
        raise InvalidInput(f"must be 0 or more seconds, got {timeout}", "shutdown_timeout")
    from_options = desired is not None and not params.get("xml")
    return DomainRequest(
        name=name, state=params["state"], desired=desired, owned_lists=owned,
        autostart=params.get("autostart"), restart=params.get("restart", False),
        force=params.get("force", False), shutdown_timeout=120 if timeout is None else timeout,
        remove_disks=params.get("remove_disks") or [],
        definition_option="current_memory" if from_options else "xml",
        creation_features=domain_options.creation_features(params) if from_options else ())


def _reconcile_name(desired, name: str) -> None:
    node = desired.find("name")
    if node is None:
        node = element("name", name)
        desired.insert(0, node)
    elif (node.text or "").strip() != name:
        raise InvalidInput(f"the XML names the domain {(node.text or '').strip()!r} but name is {name!r}", "xml")


def describe(driver, name: str) -> dict:
    """What domain_info returns for one domain; secrets are masked."""
    status = driver.domain_status(name)
    stored = model.parse_domain(driver.domain_xml(name), "xml")
    xml = to_string(stored)
    info = {"name": name, "state": status.state, "reason": status.reason, "active": status.active,
            "xml": model.mask_secrets(xml), "uuid": _uuid(xml), "autostart": driver.domain_autostart(name)}
    info.update(_runtime(driver, name, stored, status.active))
    info.update(native_command(driver, name))
    return info


def describe_all(driver) -> list:
    """Every domain as describe() has it; one that cannot be read is listed as {name, error}."""
    found = []
    for name in driver.domain_names():
        try:
            found.append(describe(driver, name))
        except NotFound:
            continue        # undefined while we were listing
        except VirtError as e:
            found.append({"name": name, "error": str(e)})
    return found


def _runtime(driver, name: str, stored, active: bool) -> dict:
    """The running side: live XML, QEMU pid, domain id, taints, and whether a restart is pending."""
    runtime = driver.domain_runtime(name)
    info = {"pid": runtime.pid, "id": runtime.domain_id, "taints": runtime.taints,
            "live_xml": None, "restart_required": False}
    if active:
        live = model.parse_domain(driver.domain_xml(name, inactive=False), "xml")
        info["live_xml"] = model.mask_secrets(to_string(live))
        info["restart_required"] = bool(model.pending_changes(live, stored))
    return info


def native_command(driver, name: str) -> dict:
    """QEMU's argv/env for the definition; a definition QEMU cannot run says why instead."""
    try:
        argv, env = driver.domain_native_command(name)
    except VirtError as e:
        return {"qemu_argv": None, "qemu_env": None, "qemu_argv_error": str(e)}
    return {"qemu_argv": argv, "qemu_env": env}
