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

from ansible_collections.virtops.qemu.plugins.module_utils.driver.base import Pools, Volumes
from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.manager.resource import (
    Plan,
    ResourceManager,
    describe_each,
    uuid_of,
)
from ansible_collections.virtops.qemu.plugins.module_utils.model import kinds
from ansible_collections.virtops.qemu.plugins.module_utils.model import pool as model
from ansible_collections.virtops.qemu.plugins.module_utils.model.pool import (  # noqa: F401  # pylint: disable=unused-import
    PoolRequest,
    request_from_params,
)
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import XmlNode, parse, to_string


class PoolManager(ResourceManager[PoolRequest]):
    """The generic life cycle plus build, the target directory's removal and a rescan."""

    DONE = {**ResourceManager.DONE, "build": "built", "delete_target": "emptied of its target"}
    FAILURES = {**ResourceManager.FAILURES, "build": "could not be built",
                "delete_target": "its target directory could not be removed"}

    def __init__(self, pools: Pools, warnings: list[str] | None = None):
        super().__init__(pools, warnings=warnings, record=kinds.POOL)
        self.pools = pools

    def _prepare(self, req: PoolRequest, before: XmlNode | None) -> None:
        """A pool keeps its type."""
        if before is not None and req.desired is not None:
            model.definition_for_type_check(before, req.desired)

    def _steps(self, req: PoolRequest, status: str) -> list[str]:
        steps = super()._steps(req, status)
        if req.state == "absent" and req.delete_target is not None:
            steps.insert(steps.index("undefine"), "delete_target")
        elif self._needs_build(req, status):
            steps.insert(0, "build")
        return steps

    def _needs_build(self, req: PoolRequest, status: str) -> bool:
        if not req.build or self._running(status):
            return False
        if not self.objects.exists(req.name):
            return True
        return not self.pools.built(req.name)

    def _check_plan(self, req: PoolRequest, plan: Plan) -> None:
        if req.state == "absent":
            plan.removal["deleted_target"] = self._target_to_delete(req, plan) if plan.exists else None
            return
        if plan.after_xml and (plan.define or plan.restart_now or "start" in plan.steps):
            self._check_devices(req, plan, starting=plan.restart_now or "start" in plan.steps)

    def _check_devices(self, req: PoolRequest, plan: Plan, starting: bool) -> None:
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
            option = req.definition_option or (f"source.devices[{index}]" if req.desired is not None else None)
            raise InvalidInput(f"the source device {path} of fs pool {req.name!r} {reason}; an fs pool mounts a "
                               "block device (attach an image file to a loop device first)", option)

    def _target_to_delete(self, req: PoolRequest, plan: Plan) -> str | None:
        wanted = req.delete_target
        if wanted is None:
            return None
        have = model.target_path(plan.before) if plan.before is not None else None
        if wanted != have:
            raise InvalidInput(f"names {wanted!r} but the target of pool {req.name!r} is {have!r}; "
                               "only the pool's own target directory can be removed", "delete_target")
        kind = self.pools.host_path_kind(have)
        if kind not in (None, "empty directory", "missing", "mount point"):
            raise InvalidInput(f"{have} is not an empty directory ({kind}); the pool is left as it is "
                               "(remove what the directory holds first, or leave delete_target out)",
                               "delete_target")
        return have

    def _transition(self, req: PoolRequest, plan: Plan, step: str) -> None:
        if step == "build":
            self.pools.build(req.name, overwrite=req.build_overwrite and not plan.exists)
        elif step == "delete_target":
            self.pools.delete_target(req.name)
        else:
            super()._transition(req, plan, step)

    def _finish(self, req: PoolRequest, plan: Plan, result: dict, check_mode: bool) -> None:
        """A rescan of the active pool's volumes, when asked, after the life cycle.

        A rescan changes nothing on the host, only what the pool lists, so it
        never counts as a change; check mode does not rescan.
        """
        result["refreshed"] = req.refresh and not check_mode
        if result["refreshed"]:
            self.pools.refresh(req.name)


# -- pool_info ---------------------------------------------------------------------
def describe(pools: Pools, volumes: Volumes, name: str) -> dict:
    """What pool_info returns for one pool."""
    from ansible_collections.virtops.qemu.plugins.module_utils.manager.volume import describe_volumes
    stored = model.settle(parse(pools.xml(name), kinds.POOL.tag))
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
