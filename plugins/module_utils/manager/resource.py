# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bring one object of any kind (domain, network, pool) to the requested definition and state.

Read -> desired-subset compare -> plan -> act unless check mode -> re-read
-> result with diff.  It speaks only the driver's ``Resources`` protocol
and the kind's record (model/kinds.py: root tag, schema, merge rules,
option places); a kind's manager subclasses it for what is its own
(domain power transitions, network live update), through the hooks its
class docstring lists.  Private to the collection.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ansible_collections.virtops.qemu.plugins.module_utils.driver.base import Resources, is_active
from ansible_collections.virtops.qemu.plugins.module_utils.errors import (
    BackendError,
    Conflict,
    InvalidInput,
    NotFound,
    UnreadableDefinition,
    VirtError,
    host_error,
)
from ansible_collections.virtops.qemu.plugins.module_utils.model import origins
from ansible_collections.virtops.qemu.plugins.module_utils.model.kinds import KINDS, Kind
from ansible_collections.virtops.qemu.plugins.module_utils.model.merge import MergeResult, Rules, merge
from ansible_collections.virtops.qemu.plugins.module_utils.model.request import ResourceRequest
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import XmlNode, parse, to_string, uuid_of

R = TypeVar("R", bound=ResourceRequest)

# What a finished step did, and how a failed one reads, after "<kind> 'x' was defined but ...".
DONE = {"start": "started", "stop": "stopped", "restart": "restarted", "undefine": "removed"}
FAILURES = {"start": "failed to start", "stop": "could not be stopped", "restart": "failed to restart",
            "autostart": "its autostart could not be set", "undefine": "could not be undefined"}


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
    before: XmlNode | None = None       # the stored definition as read (None: none, or unreadable)
    # Changes the kind applies to the running object without a restart (a network's virNetworkUpdate commands).
    live_updates: list = field(default_factory=list)
    prelude: list[str] = field(default_factory=list)     # steps before the definition changes, outside the loop
    epilogue: list[str] = field(default_factory=list)    # steps after the transitions (a restart's too)
    removal: dict = field(default_factory=dict)          # what a removal resolved; it joins the result


class ResourceManager(Generic[R]):
    """The life cycle every kind shares: define, autostart, start/stop, absent.

    ``ensure(req, check_mode)`` plans (the definition, the steps to the
    requested state, a restart or live changes), acts unless check mode and
    answers with the result and its diff; state ``absent`` plans and acts a
    removal the same way.  A kind's manager subclasses ``ResourceManager``
    of its request type and overrides only these hooks:

    ``_prepare(req, before)``
        Complete or refuse the request once the stored definition ``before``
        (None for a new object) is known, before the new definition is
        computed (a domain's seed disk and agent channel).
    ``_shape(tree, req, new)``
        The definition about to be defined, new (``new``) or merged, the way
        the hypervisor will store it; the default applies the kind record's
        ``settle``.  Called with the stored definition when the request has
        none (``req.desired`` None): a manager of one part of a definition
        (security labels) edits it here.
    ``_steps(req, status)``
        The steps from state ``status`` to the requested one, ``absent``
        included (stop, undefine); a kind adds its own (a pool's build).
    ``_predicted_state(req, plan)``
        The state check mode reports; the default follows ``AFTER``.
    ``_plan_live(req, plan)``
        What an object that stays active needs: by default a restart when
        its live definition differs from the request.
    ``_check_plan(req, plan)``
        Refuse, before the first change, what acting would fail at; add the
        kind's own ``prelude``/``epilogue`` steps; for a removal, put what it
        resolves into ``plan.removal``, which joins the result.
    ``_transition(req, plan, step)``
        Perform one step other than define, autostart, stop and undefine.
    ``_finish(req, plan, result, check_mode)``
        Complete the result with the kind's own keys.

    ``DONE`` and ``FAILURES`` word the kind's steps in a partial failure,
    ``STOPPING`` lists the steps after which the object no longer runs,
    ``AFTER`` the state each step leads to, ``NEW_STATE`` a new object's,
    ``MISSING`` what a request for a missing object is told.
    Everything else is the shared machinery, not meant to be overridden.
    """

    DONE = DONE
    FAILURES = FAILURES
    STOPPING = frozenset({"stop"})
    AFTER = {"start": "active", "stop": "inactive"}
    NEW_STATE = "inactive"
    MISSING = "; give its definition (xml or options) to create it"     # the hint when the object is missing

    def __init__(self, objects: Resources, rules: Rules | None = None, warnings: list[str] | None = None,
                 record: Kind | None = None):
        self.objects = objects
        self.kind = objects.kind
        self.record = record or KINDS[objects.kind]
        self.rules = self.record.rules if rules is None else rules
        self.warnings = [] if warnings is None else warnings

    def ensure(self, req: R, check_mode: bool) -> dict:
        plan = self._removal_plan(req) if req.state == "absent" else self._plan(req)
        self._check_plan(req, plan)
        if not check_mode:
            self._apply(req, plan)
        return self._result(req, plan, check_mode)

    # -- hooks ----------------------------------------------------------------------
    def _prepare(self, req: R, before: XmlNode | None) -> None:
        """See the class docstring."""

    def _shape(self, tree: XmlNode, req: R, new: bool) -> XmlNode:
        if req.desired is not None and self.record.settle is not None:
            return self.record.settle(tree)
        return tree

    def _steps(self, req: R, status: str) -> list[str]:
        running = self._running(status)
        if req.state == "absent":
            return ["stop"] * running + ["undefine"]
        if req.state == "active" and not running:
            return ["start"]
        if req.state == "inactive" and running:
            return ["stop"]
        return []

    def _predicted_state(self, req: R, plan: Plan) -> str:
        moves = [step for step in plan.steps if step in self.AFTER]
        return self.AFTER[moves[-1]] if moves else plan.status

    def _plan_live(self, req: R, plan: Plan) -> None:
        if req.desired is None:
            return
        if self.merge(self._live(req.name), req.desired, req.owned_lists).changed:
            plan.restart_now = req.restart
            plan.restart_required = not req.restart

    def _check_plan(self, req: R, plan: Plan) -> None:
        """See the class docstring."""

    def _transition(self, req: R, plan: Plan, step: str) -> None:
        if step == "restart":
            self._stop(req.name)
        if step in ("start", "restart"):
            self.objects.start(req.name)

    def _finish(self, req: R, plan: Plan, result: dict, check_mode: bool) -> None:
        """See the class docstring."""

    # -- the kind's model -------------------------------------------------------
    def parse(self, text: str, option: str = "xml") -> XmlNode:
        return parse(text, self.record.tag, option)

    def merge(self, current: XmlNode, desired: XmlNode, owned: set[str]) -> MergeResult:
        return merge(current, desired, self.rules, owned)

    def _read(self, text: str) -> XmlNode:
        tree = self.parse(text, "xml")
        if self.record.settle_read and self.record.settle is not None:
            tree = self.record.settle(tree)
        return tree

    def _stored(self, name: str) -> tuple[XmlNode, str]:
        """The persistent definition as a tree, and serialised the way merged trees are, for a clean diff."""
        tree = self._read(self.objects.xml(name))
        return tree, to_string(tree)

    def _live(self, name: str) -> XmlNode:
        return self._read(self.objects.xml(name, inactive=False))

    def _before(self, req: R) -> tuple[XmlNode | None, str]:
        """The stored definition; an unreadable one does not stop a request that needs none of it.

        Stopping and removal work from the hypervisor's record of the running
        object, so a broken definition file cannot keep it running.
        """
        try:
            return self._stored(req.name)
        except UnreadableDefinition as e:
            if req.reads_definition():
                raise
            self.warnings.append(str(e))
            return None, ""

    def _status(self, name: str) -> str:
        return self.objects.state(name)

    @staticmethod
    def _running(status: str) -> bool:
        return status != "inactive" and is_active(status)

    # -- planning -------------------------------------------------------------------
    def _plan(self, req: R) -> Plan:
        exists = self.objects.exists(req.name)
        if not exists and req.desired is None:
            raise NotFound(f"{self.kind} {req.name!r} is not defined{self.MISSING}")
        before, before_xml = self._before(req) if exists else (None, "")
        self._prepare(req, before)
        after, define = self._definition(req, before, before_xml)
        if define:
            self._check_definition(req, after)
        status = self._status(req.name) if exists else self.NEW_STATE
        steps = self._steps(req, status)
        autostart_change = req.autostart is not None and (
            not exists or self.objects.autostart(req.name) != req.autostart)
        plan = Plan(before_xml, after, define, status, steps, autostart_change, exists=exists, before=before)
        if plan.before_xml and self._running(plan.status) and not set(plan.steps) & self.STOPPING:
            self._plan_live(req, plan)
        return plan

    def _removal_plan(self, req: R) -> Plan:
        if not self.objects.exists(req.name):
            return Plan("", "", False, "absent", [], False, exists=False)
        before, before_xml = self._before(req)
        status = self._status(req.name)
        return Plan(before_xml, "", False, status, self._steps(req, status), False, before=before)

    def _check_definition(self, req: R, xml: str) -> None:
        """What define would refuse fails the plan, so check mode fails where a real run does."""
        if self.record.schema:
            from ansible_collections.virtops.qemu.plugins.module_utils.model import schema  # only a define needs it
            locate = None if req.verbatim else origins.locator(self.record.origins, req.desired)
            schema.validate(self.parse(xml), self.record.schema, f"the {self.kind} definition",
                            "xml" if req.verbatim else "options", locate)
        self._define(req, xml, self.objects.check_definition)

    def _define(self, req: R, xml: str, define: Callable[[str], None]) -> None:
        """``define(xml)``; a refusal at a place of the definition names the option that rendered it."""
        try:
            define(xml)
        except InvalidInput as e:
            if not self.record.origins or (e.option in (None, "xml") and req.verbatim):
                raise
            raise origins.named(e, self.record.origins, req.desired, req.verbatim, self.kind) from e

    def _definition(self, req: R, before: XmlNode | None, before_xml: str) -> tuple[str, bool]:
        if before is None:
            if req.desired is None:
                return before_xml, False
            return to_string(self._shape(copy.deepcopy(req.desired), req, True)), True
        if req.desired is None:
            after = to_string(self._shape(copy.deepcopy(before), req, False))
            return after, after != before_xml
        merged = self.merge(before, req.desired, req.owned_lists)
        tree = self._shape(merged.tree, req, False)
        return (to_string(tree), True) if merged.changed else (before_xml, False)

    # -- acting -----------------------------------------------------------------------
    def _apply(self, req: R, plan: Plan) -> None:
        """Act on the plan; a failure after a first change carries what was already changed."""
        for step in plan.prelude:
            self._transition(req, plan, step)
        run_steps(f"{self.kind} {req.name!r}", self._actions(plan), lambda step: self._act(req, plan, step),
                  plan.done, lambda: self._partial(req, plan), self.DONE, self.FAILURES)

    @staticmethod
    def _actions(plan: Plan) -> list[str]:
        actions = ["define"] * plan.define + ["autostart"] * plan.autostart_change
        return actions + (["restart"] if plan.restart_now else list(plan.steps)) + plan.epilogue

    def _act(self, req: R, plan: Plan, step: str) -> None:
        if step == "define":
            self._define(req, plan.after_xml, self.objects.define)
            plan.after_xml = self._stored(req.name)[1]
        elif step == "autostart":
            self.objects.set_autostart(req.name, bool(req.autostart))
        elif step == "stop":
            self._stop(req.name)
        elif step == "undefine":
            self.objects.undefine(req.name)
        else:
            self._transition(req, plan, step)

    def _stop(self, name: str) -> None:
        """Stop the object; one that stopped by itself meanwhile (libvirt's Conflict) is fine."""
        try:
            self.objects.stop(name)
        except Conflict:
            if self.objects.active(name):
                raise

    def _partial(self, req: R, plan: Plan) -> dict:
        """The result of a run that failed after a first change."""
        if req.state == "absent":
            return self._result(req, plan, False) if "undefine" in plan.done else {"changed": True, "name": req.name}
        return {"changed": True, "name": req.name, "xml": plan.after_xml, "uuid": self._uuid(plan.after_xml),
                "diff": {"before": plan.before_xml, "after": plan.after_xml}}

    # -- result -----------------------------------------------------------------------
    def _result(self, req: R, plan: Plan, check_mode: bool) -> dict:
        result = self._gone(req, plan) if req.state == "absent" else self._present(req, plan, check_mode)
        self._finish(req, plan, result, check_mode)
        return result

    def _present(self, req: R, plan: Plan, check_mode: bool) -> dict:
        changed = plan.define or plan.autostart_change or bool(plan.steps or plan.prelude) or plan.restart_now
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

    def _gone(self, req: R, plan: Plan) -> dict:
        return {"changed": plan.exists, "name": req.name, "state": "absent", "xml": "", "uuid": None,
                "autostart": False, "restart_required": False,
                "diff": {"before": plan.before_xml, "after": ""}, **plan.removal}

    def _uuid(self, xml: str) -> str | None:
        return uuid_of(self.parse(xml)) if xml else None


def run_steps(what: str, steps: list[str], act: Callable[[str], None], done: list[str],
              partial: Callable[[], dict], words: dict[str, str], failures: dict[str, str]) -> None:
    """``act`` each step, noting it in ``done``; a failure after the first one carries ``partial()``.

    Its message says what was done and what failed: "network 'n1' was
    defined but failed to start: ...".  A file or value error met on the way
    becomes the BackendError it is for the caller.
    """
    step = None
    try:
        for step in steps:
            act(step)
            done.append(step)
    except VirtError as e:
        if done:
            e.after_changes(f"{_what_was_done(what, done, words)} but {_failure(step, failures)}: {e}", partial())
        raise
    except (OSError, ValueError) as e:
        if not done:
            raise
        error = _backend_error(e)
        error.after_changes(f"{_what_was_done(what, done, words)} but {_failure(step, failures)}: {error}",
                            partial())
        raise error from e


def _what_was_done(what: str, done: list[str], words: dict[str, str]) -> str:
    if "define" in done:
        return f"{what} was defined"
    if "undefine" in done:
        return f"{what} was removed"
    if done == ["autostart"]:
        return f"the autostart of {what} was set"
    return f"{what} was {words.get(done[-1], 'changed')}"


def _failure(step: str | None, failures: dict[str, str]) -> str:
    return failures.get(step or "", f"then failed to {step}")


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
