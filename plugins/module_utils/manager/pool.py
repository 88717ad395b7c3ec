# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bring a storage pool to the requested definition and state.

The generic life cycle is ResourceManager's; this adds what only pools
have: ``build`` makes the pool's target on the host before its first start
(a filesystem on its device only with ``build_overwrite``, and only for a
pool defined by this run, so a re-run never formats anything), and
``absent`` never deletes volumes: it stops and undefines the pool, and
removes its (empty) target directory only when ``delete_target`` names
that directory.  A pool keeps its type.  Backend-agnostic: it speaks only
the driver's ``Pools``.  Private to the collection.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from ansible_collections.virtops.qemu.plugins.module_utils.driver.base import Pools, Volumes
from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput, UnreadableDefinition
from ansible_collections.virtops.qemu.plugins.module_utils.manager.resource import (
    Plan,
    ResourceManager,
    ResourceRequest,
    describe_each,
    reconcile_name,
    uuid_of,
)
from ansible_collections.virtops.qemu.plugins.module_utils.model import origins, schema
from ansible_collections.virtops.qemu.plugins.module_utils.model import pool as model
from ansible_collections.virtops.qemu.plugins.module_utils.model.names import validate_name
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import check_option_text, parse, to_string

STATES = ("present", "active", "inactive", "absent")


@dataclass
class PoolRequest(ResourceRequest):
    build: bool = False
    build_overwrite: bool = False
    delete_target: str | None = None
    definition_option: str | None = None    # "xml" for a verbatim definition, None for the structured options
    refresh: bool = False


class PoolManager(ResourceManager):
    """The generic life cycle plus build and the target directory's removal."""

    DONE = {**ResourceManager.DONE, "build": "built", "delete_target": "emptied of its target"}
    FAILURES = {**ResourceManager.FAILURES, "build": "could not be built",
                "delete_target": "its target directory could not be removed"}

    SCHEMA = "storagepool"
    OPTION_PLACES = origins.POOL

    def __init__(self, pools: Pools, warnings: list[str] | None = None):
        super().__init__(pools, model.POOL_RULES)
        self.pools = pools
        self.warnings = [] if warnings is None else warnings

    def ensure(self, req, check_mode):
        """The life cycle, then a rescan of the active pool's volumes when asked.

        A rescan changes nothing on the host, only what the pool lists, so it
        never counts as a change; check mode does not rescan.
        """
        result = super().ensure(req, check_mode)
        refreshed = bool(getattr(req, "refresh", False)) and not check_mode
        if refreshed:
            self.pools.refresh(req.name)
        return dict(result, refreshed=refreshed)

    # -- model ----------------------------------------------------------------
    def _created(self, req):
        return model.settle(copy.deepcopy(req.desired))

    def _settle(self, tree, req):
        model.settle(tree)

    def _stored(self, name):
        tree = model.settle(self.parse(self.objects.xml(name), "xml"))
        return tree, to_string(tree)

    def _before(self, req):
        """The stored definition; an unreadable one does not stop a request that needs none of it.

        Stopping and removal work from the driver's record of the running
        pool, so a broken definition file cannot keep a pool active.
        """
        try:
            return self._stored(req.name)
        except UnreadableDefinition as e:
            if req.desired is not None or getattr(req, "delete_target", None) is not None:
                raise
            self.warnings.append(str(e))
            return None, ""

    def _definition(self, req, before, before_xml):
        if before is not None and req.desired is not None:
            model.definition_for_type_check(before, req.desired)
        return super()._definition(req, before, before_xml)

    def _plan_restart(self, req, plan):
        """The live XML of a pool carries what libvirt measured; compare without it."""
        stays_active = self._is_active(plan.status) and not set(plan.steps) & self.STOPPING
        if req.desired is None or not plan.before_xml or not stays_active:
            return
        live = model.settle(self.parse(self.objects.xml(req.name, inactive=False), "xml"))
        if self.merge(live, req.desired, req.owned_lists).changed:
            plan.restart_now = req.restart
            plan.restart_required = not req.restart

    # -- build ----------------------------------------------------------------
    def _plan(self, req):
        plan = super()._plan(req)
        if isinstance(req, PoolRequest) and self._needs_build(req, plan):
            plan.steps.insert(0, "build")
        if plan.after_xml and (plan.define or plan.restart_now or "start" in plan.steps):
            self._check_devices(req, plan, starting=plan.restart_now or "start" in plan.steps)
        return plan

    def _check_devices(self, req, plan: Plan, starting: bool) -> None:
        """An fs pool mounts a block device: refuse anything else before the first change.

        mount(8) would put a regular file on a loop device of its own, which
        the pool could then neither recognise as its mount nor release.  A
        device that does not exist yet may be defined, not started.
        """
        tree = self.parse(plan.after_xml)
        if model.pool_type(tree) != "fs":
            return
        for index, device in enumerate(tree.findall("source/device")):
            path = device.get("path") or ""
            kind = self.pools.host_path_kind(path)
            if kind in (None, "block device") or (kind == "missing" and not starting):
                continue
            reason = "does not exist" if kind == "missing" else f"is not a block device ({kind})"
            option = getattr(req, "definition_option", None) or \
                (f"source.devices[{index}]" if req.desired is not None else None)
            raise InvalidInput(f"the source device {path} of fs pool {req.name!r} {reason}; an fs pool mounts a "
                               "block device (attach an image file to a loop device first)", option)

    def _needs_build(self, req: PoolRequest, plan: Plan) -> bool:
        if not req.build or self._is_active(plan.status):
            return False
        if not plan.exists:
            return True
        return not self.pools.built(req.name)

    def _transition(self, req, plan, step):
        if step == "build":
            fresh = not plan.exists
            self.pools.build(req.name, overwrite=bool(getattr(req, "build_overwrite", False)) and fresh)
        else:
            super()._transition(req, plan, step)

    def _predicted_state(self, req, plan):
        moves = [step for step in plan.steps if step != "build"]
        after = {"start": "active", "stop": "inactive"}
        return after[moves[-1]] if moves else plan.status

    # -- absent -----------------------------------------------------------------
    def _before_removal(self, req, before):
        wanted = getattr(req, "delete_target", None)
        if wanted is None:
            return {"deleted_target": None}
        have = model.target_path(before) if before is not None else None
        if wanted != have:
            raise InvalidInput(f"names {wanted!r} but the target of pool {req.name!r} is {have!r}; "
                               "only the pool's own target directory can be removed", "delete_target")
        kind = self.pools.host_path_kind(have)
        if kind not in (None, "empty directory", "missing", "mount point"):
            raise InvalidInput(f"{have} is not an empty directory ({kind}); the pool is left as it is "
                               "(remove what the directory holds first, or leave delete_target out)",
                               "delete_target")
        return {"deleted_target": have}

    def _remove(self, req, result):
        done: list[str] = []
        steps = ["stop"] * self.objects.active(req.name)
        steps += ["delete_target"] * bool(result.get("deleted_target")) + ["undefine"]
        self._run(req.name, steps, lambda step: self._removal_step(req, result, step), done,
                  lambda: self._partial_removal(result, done))

    def _removal_step(self, req, result, step):
        if step == "delete_target":
            self.pools.delete_target(req.name)
        else:
            super()._removal_step(req, result, step)

    def _gone(self, req, changed, before_xml):
        return {**super()._gone(req, changed, before_xml), "deleted_target": None}


# -- the module's request ---------------------------------------------------------
def request_from_params(params: dict) -> PoolRequest:
    """Validate the module's options and build the request; connects to nothing."""
    name = validate_name(params["name"], "pool")
    state = params.get("state") or "active"
    if state not in STATES:
        raise InvalidInput(f"must be one of {', '.join(STATES)}, got {state!r}", "state")
    desired, owned, option = None, set(), None
    if params.get("xml"):
        desired, option = model.settle(parse(params["xml"], "pool", "xml")), "xml"
        reconcile_name(desired, name, "pool")
        owned = model.owned_lists_in(desired)
    elif model.has_definition(params):
        check_option_text(params, model.STRUCTURED_OPTIONS)
        desired, owned = model.render(params)
    if desired is not None:
        model.validate(desired, option)
        schema.validate(desired, "storagepool", "the pool definition", option or "options",
                        None if option else origins.locator(origins.POOL, desired))
    delete_target = params.get("delete_target")
    if delete_target is not None and state != "absent":
        raise InvalidInput("applies only with state=absent", "delete_target")
    if params.get("build_overwrite") and not params.get("build"):
        raise InvalidInput("needs build=true", "build_overwrite")
    if params.get("refresh") and state != "active":
        raise InvalidInput(f"rescans an active pool; it needs state=active, not {state}", "refresh")
    return PoolRequest(name=name, state=state, desired=desired, owned_lists=owned,
                       autostart=params.get("autostart"), restart=bool(params.get("restart")),
                       verbatim=option is not None, build=bool(params.get("build")),
                       build_overwrite=bool(params.get("build_overwrite")),
                       delete_target=delete_target, definition_option=option,
                       refresh=bool(params.get("refresh")))


# -- pool_info ---------------------------------------------------------------------
def describe(pools: Pools, volumes: Volumes, name: str) -> dict:
    """What pool_info returns for one pool."""
    from ansible_collections.virtops.qemu.plugins.module_utils.manager.volume import describe_volumes
    stored = model.settle(parse(pools.xml(name), "pool"))
    active = pools.active(name)
    space = pools.space(name) if active else None
    return {"name": name, "uuid": uuid_of(stored), "type": model.pool_type(stored),
            "state": "active" if active else "inactive", "active": active,
            "autostart": pools.autostart(name), "target": model.target_path(stored),
            "capacity": space.capacity if space else None, "allocation": space.allocation if space else None,
            "available": space.available if space else None, "xml": to_string(stored),
            "volumes": describe_volumes(volumes, name) if active else []}


def describe_all(pools: Pools, volumes: Volumes) -> list[dict]:
    """Every pool as describe() has it; one that cannot be read is listed as {name, error}."""
    return describe_each(pools.names(), lambda name: describe(pools, volumes, name))
