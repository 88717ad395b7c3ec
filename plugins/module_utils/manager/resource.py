# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bring one object of any kind (domain, network, pool) to the requested definition and state.

Read -> desired-subset compare -> plan -> act unless check mode -> re-read
-> result with diff.  It speaks only the driver's ``Resources`` protocol
and the kind's merge ``Rules``; a kind's manager subclasses it for what is
its own (domain power transitions, network live update).  Private to the
collection.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from ansible_collections.virtops.qemu.plugins.module_utils.driver.base import Resources
from ansible_collections.virtops.qemu.plugins.module_utils.errors import (
    BackendError,
    Conflict,
    InvalidInput,
    NotFound,
    VirtError,
    host_error,
)
from ansible_collections.virtops.qemu.plugins.module_utils.model import origins
from ansible_collections.virtops.qemu.plugins.module_utils.model.merge import MergeResult, Rules, merge
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import (
    XmlNode,
    element,
    parse,
    to_string,
    uuid_of,
)


@dataclass
class ResourceRequest:
    name: str
    state: str = "present"              # present, absent, or a state word of the kind (active, running, ...)
    desired: XmlNode | None = None      # desired-subset element of the kind, or None
    owned_lists: set[str] = field(default_factory=set)
    autostart: bool | None = None
    restart: bool = False
    verbatim: bool = False              # the definition came as XML (the xml option), not from structured options


@dataclass
class Plan:
    before_xml: str                     # "" when the object does not exist
    after_xml: str
    define: bool
    status: str                         # the kind's state word before acting
    steps: list[str]
    autostart_change: bool
    restart_required: bool = False
    restart_now: bool = False
    done: list[str] = field(default_factory=list)    # what has been done so far
    exists: bool = True                 # False when the object is yet to be created
    # Changes the kind applies to the running object without a restart (a network's virNetworkUpdate commands).
    live_updates: list = field(default_factory=list)


class ResourceManager:
    """The life cycle every kind shares: define, autostart, start/stop, absent."""

    # What a finished step did, and how a failed one reads, after "<kind> 'x' was defined but ...".
    DONE = {"start": "started", "stop": "stopped", "restart": "restarted", "undefine": "removed"}
    FAILURES = {"start": "failed to start", "stop": "could not be stopped", "restart": "failed to restart",
                "autostart": "its autostart could not be set", "undefine": "could not be undefined",
                "after_removal": "what goes with it could not all be removed"}
    # Steps after which the object no longer runs.
    STOPPING = frozenset({"stop"})
    # libvirt's schema of the kind, and which structured option renders which place of its XML.
    SCHEMA = ""
    OPTION_PLACES: origins.Table = {}

    def __init__(self, objects: Resources, rules: Rules):
        self.objects = objects
        self.kind = objects.kind
        self.rules = rules

    def ensure(self, req: ResourceRequest, check_mode: bool) -> dict:
        if req.state == "absent":
            return self._absent(req, check_mode)
        plan = self._plan(req)
        if not check_mode:
            self._apply(req, plan)
        return self._result(req, plan, check_mode)

    # -- the kind's model -------------------------------------------------------
    def parse(self, text: str, option: str = "xml") -> XmlNode:
        return parse(text, self.kind, option)

    def merge(self, current: XmlNode, desired: XmlNode, owned: set[str]) -> MergeResult:
        return merge(current, desired, self.rules, owned)

    def _created(self, req: ResourceRequest) -> XmlNode:
        """The definition of a new object: the request, plus what the kind adds to a new one."""
        return copy.deepcopy(req.desired)

    def _settle(self, tree: XmlNode, req: ResourceRequest) -> None:
        """Adjust a merged definition the way the hypervisor will store it."""

    # -- the kind's states --------------------------------------------------------
    def _status(self, name: str) -> str:
        return "active" if self.objects.active(name) else "inactive"

    def _is_active(self, status: str) -> bool:
        return status == "active"

    def _steps(self, req: ResourceRequest, status: str) -> list[str]:
        if req.state == "active" and not self._is_active(status):
            return ["start"]
        if req.state == "inactive" and self._is_active(status):
            return ["stop"]
        return []

    def _predicted_state(self, req: ResourceRequest, plan: Plan) -> str:
        after = {"start": "active", "stop": "inactive"}
        return after[plan.steps[-1]] if plan.steps else plan.status

    # -- reading ------------------------------------------------------------------
    def _stored(self, name: str) -> tuple[XmlNode, str]:
        """The persistent definition as a tree, and serialised the way merged trees are, for a clean diff."""
        tree = self.parse(self.objects.xml(name), "xml")
        return tree, to_string(tree)

    def _before(self, req: ResourceRequest) -> tuple[XmlNode | None, str]:
        return self._stored(req.name)

    # -- planning -------------------------------------------------------------------
    def _plan(self, req: ResourceRequest) -> Plan:
        exists = self.objects.exists(req.name)
        if not exists and req.desired is None:
            raise NotFound(f"{self.kind} {req.name!r} is not defined; give its definition (xml or options) "
                           "to create it")
        before, before_xml = self._before(req) if exists else (None, "")
        after, define = self._definition(req, before, before_xml)
        if define:
            self._check_definition(req, after)
        status = self._status(req.name) if exists else self._status_of_new()
        steps = self._steps(req, status)
        autostart_change = req.autostart is not None and (
            not exists or self.objects.autostart(req.name) != req.autostart)
        plan = Plan(before_xml, after, define, status, steps, autostart_change, exists=exists)
        self._plan_restart(req, plan)
        return plan

    def _status_of_new(self) -> str:
        return "inactive"

    def _check_definition(self, req: ResourceRequest, xml: str) -> None:
        """What define would refuse fails the plan, so check mode fails where a real run does."""
        if self.SCHEMA:
            from ansible_collections.virtops.qemu.plugins.module_utils.model import schema  # only a define needs it
            locate = None if req.verbatim else origins.locator(self.OPTION_PLACES, req.desired)
            schema.validate(self.parse(xml), self.SCHEMA, f"the {self.kind} definition",
                            "xml" if req.verbatim else "options", locate)
        self._define(req, xml, self.objects.check_definition)

    def _define(self, req: ResourceRequest, xml: str, define) -> None:
        """``define(xml)``; a refusal at a place of the definition names the option that rendered it."""
        try:
            define(xml)
        except InvalidInput as e:
            if not self.OPTION_PLACES or (e.option in (None, "xml") and req.verbatim):
                raise
            raise origins.named(e, self.OPTION_PLACES, req.desired, req.verbatim, self.kind) from e

    def _definition(self, req: ResourceRequest, before: XmlNode | None, before_xml: str) -> tuple[str, bool]:
        if req.desired is None:
            return before_xml, False
        if before is None:
            return to_string(self._created(req)), True
        merged = self.merge(before, req.desired, req.owned_lists)
        self._settle(merged.tree, req)
        return (to_string(merged.tree), True) if merged.changed else (before_xml, False)

    def _plan_restart(self, req: ResourceRequest, plan: Plan) -> None:
        """An active object whose live configuration differs from the request needs a restart."""
        stays_active = self._is_active(plan.status) and not set(plan.steps) & self.STOPPING
        if req.desired is None or not plan.before_xml or not stays_active:
            return
        live = self.parse(self.objects.xml(req.name, inactive=False), "xml")
        if self.merge(live, req.desired, req.owned_lists).changed:
            plan.restart_now = req.restart
            plan.restart_required = not req.restart

    # -- acting -----------------------------------------------------------------------
    def _apply(self, req: ResourceRequest, plan: Plan) -> None:
        """Act on the plan; a failure after a first change carries what was already changed."""
        self._run(req.name, self._actions(plan), lambda step: self._act(req, plan, step), plan.done,
                  lambda: self._partial_result(req, plan))

    def _run(self, name: str, steps: list[str], act, done: list[str], partial) -> None:
        """``act`` each step, noting it in ``done``; a failure after the first one carries ``partial()``.

        A file or value error met on the way becomes the BackendError it is for the caller.
        """
        step = None
        try:
            for step in steps:
                act(step)
                done.append(step)
        except VirtError as e:
            if done:
                e.after_changes(f"{self._what_was_done(name, done)} but {self._failure(step)}: {e}", partial())
            raise
        except (OSError, ValueError) as e:
            if not done:
                raise
            error = _backend_error(e)
            error.after_changes(f"{self._what_was_done(name, done)} but {self._failure(step)}: {error}", partial())
            raise error from e

    @staticmethod
    def _actions(plan: Plan) -> list[str]:
        actions = ["define"] * plan.define + ["autostart"] * plan.autostart_change
        return actions + (["restart"] if plan.restart_now else list(plan.steps))

    def _act(self, req: ResourceRequest, plan: Plan, step: str) -> None:
        if step == "define":
            self._define(req, plan.after_xml, self.objects.define)
            plan.after_xml = self._stored(req.name)[1]
        elif step == "autostart":
            self.objects.set_autostart(req.name, bool(req.autostart))
        else:
            self._transition(req, plan, step)

    def _transition(self, req: ResourceRequest, plan: Plan, step: str) -> None:
        if step in ("stop", "restart"):
            self._stop(req.name)
        if step in ("start", "restart"):
            self.objects.start(req.name)

    def _what_was_done(self, name: str, done: list[str]) -> str:
        if "define" in done:
            return f"{self.kind} {name!r} was defined"
        if "undefine" in done:
            return f"{self.kind} {name!r} was removed"
        if done == ["autostart"]:
            return f"the autostart of {self.kind} {name!r} was set"
        return f"{self.kind} {name!r} was {self.DONE.get(done[-1], 'changed')}"

    def _failure(self, step: str | None) -> str:
        return self.FAILURES.get(step or "", f"then failed to {step}")

    def _partial_result(self, req: ResourceRequest, plan: Plan) -> dict:
        return {"changed": True, "name": req.name, "xml": plan.after_xml, "uuid": self._uuid(plan.after_xml),
                "diff": {"before": plan.before_xml, "after": plan.after_xml}}

    # -- result -----------------------------------------------------------------------
    def _result(self, req: ResourceRequest, plan: Plan, check_mode: bool) -> dict:
        changed = plan.define or plan.autostart_change or bool(plan.steps) or plan.restart_now
        if check_mode:
            state = self._predicted_state(req, plan)
            autostart = req.autostart if req.autostart is not None else \
                (self.objects.autostart(req.name) if plan.exists else False)
        else:
            state = self._status(req.name)
            autostart = self.objects.autostart(req.name)
        return {
            "changed": changed,
            "name": req.name,
            "state": state,
            "xml": plan.after_xml,
            "uuid": self._uuid(plan.after_xml),
            "autostart": autostart,
            "restart_required": plan.restart_required,
            "diff": {"before": plan.before_xml, "after": plan.after_xml},
        }

    def _uuid(self, xml: str) -> str | None:
        return uuid_of(self.parse(xml)) if xml else None

    def _stop(self, name: str) -> None:
        """Stop the object; one that stopped by itself meanwhile (libvirt's Conflict) is fine."""
        try:
            self.objects.stop(name)
        except Conflict:
            if self.objects.active(name):
                raise

    # -- absent -----------------------------------------------------------------------
    def _absent(self, req: ResourceRequest, check_mode: bool) -> dict:
        if not self.objects.exists(req.name):
            return self._gone(req, False, "")
        before, before_xml = self._before(req)
        result = self._gone(req, True, before_xml)
        result.update(self._before_removal(req, before))
        if not check_mode:
            self._remove(req, result)
        return result

    def _remove(self, req: ResourceRequest, result: dict) -> None:
        """Stop, undefine, then remove what goes with the object; a failure carries what was done."""
        done: list[str] = []
        steps = ["stop"] * self.objects.active(req.name) + ["undefine", "after_removal"]
        self._run(req.name, steps, lambda step: self._removal_step(req, result, step), done,
                  lambda: self._partial_removal(result, done))

    def _removal_step(self, req: ResourceRequest, result: dict, step: str) -> None:
        if step == "stop":
            self._stop(req.name)
        elif step == "undefine":
            self.objects.undefine(req.name)
        else:
            self._after_removal(req, result)

    @staticmethod
    def _partial_removal(result: dict, done: list[str]) -> dict:
        if "undefine" in done:
            return result
        return {key: value for key, value in result.items() if key in ("changed", "name")}

    def _before_removal(self, req: ResourceRequest, before: XmlNode | None) -> dict:
        """What the kind resolves before anything is removed; it joins the result."""
        return {}

    def _after_removal(self, req: ResourceRequest, result: dict) -> None:
        """What the kind removes besides the object, once it is gone; ``result`` tells what was removed."""

    def _gone(self, req: ResourceRequest, changed: bool, before_xml: str) -> dict:
        return {"changed": changed, "name": req.name, "state": "absent", "xml": "", "uuid": None,
                "autostart": False, "restart_required": False,
                "diff": {"before": before_xml, "after": ""}}


def reconcile_name(desired: XmlNode, name: str, kind: str) -> None:
    """Give a verbatim definition the ``name`` option's name, or refuse one that names another object."""
    node = desired.find("name")
    if node is None:
        desired.insert(0, element("name", name))
    elif (node.text or "").strip() != name:
        raise InvalidInput(f"the XML names the {kind} {(node.text or '').strip()!r} but name is {name!r}", "xml")


def describe_each(names: list[str], describe) -> list[dict]:
    """``describe(name)`` of every name; one removed meanwhile is left out, one that cannot be read is {name, error}."""
    found = []
    for name in names:
        try:
            found.append(describe(name))
        except NotFound:
            continue
        except VirtError as e:
            found.append({"name": name, "error": str(e)})
    return found


def _backend_error(e: OSError | ValueError) -> BackendError:
    """A file or value error met while acting, as the BackendError it is for the caller."""
    if isinstance(e, OSError) and e.filename:
        return host_error(e, "access", str(e.filename))
    return BackendError(str(e))
