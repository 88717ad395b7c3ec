# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bring one storage volume to the requested capacity, format and permissions, or remove it.

Volumes have no definition to merge and no start or stop, so this is a
small manager of its own on the common step loop (resource.run_steps),
with the results every kind has: ``changed``, a
diff of the volume's XML (the part the module manages, see
model/volume.py) and check mode that predicts the real run.  Its rules: a
missing volume is created (empty, cloned, or on a backing store); an
existing one grows to a larger capacity, shrinks only with
``allow_shrink``, and keeps its format and backing store.  A missing
volume with a ``source`` is imported from that image (a file or a URL);
an existing one is never imported again, whatever the source says now, so
no run replaces a volume's data: delete it (``absent``) to import anew.
``absent`` deletes exactly the named volume.  Backend-agnostic: it speaks only the
driver's ``Pools`` and ``Volumes``.  Private to the collection.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ansible_collections.virtops.qemu.plugins.module_utils.driver.base import Pools, Volumes
from ansible_collections.virtops.qemu.plugins.module_utils.errors import Conflict, InvalidInput, NotFound
from ansible_collections.virtops.qemu.plugins.module_utils.manager.resource import run_steps
from ansible_collections.virtops.qemu.plugins.module_utils.model import kinds
from ansible_collections.virtops.qemu.plugins.module_utils.model import pool as pool_model
from ansible_collections.virtops.qemu.plugins.module_utils.model.volume import (
    DEFAULT_MODE,
    VolumeFacts,
    VolumeRequest,
    creation_xml,
    facts_from_xml,
    shown_xml,
)
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import parse

if TYPE_CHECKING:
    from ansible_collections.virtops.qemu.plugins.module_utils.driver import image_import

# qemu-img rounds qcow2 sizes up to whole sectors.
SECTOR = 512
# What a finished step did, and how a failed one reads, after "volume 'x' was created but ...".
DONE = {"create": "created", "import": "imported", "resize": "resized", "permissions": "given its permissions",
        "delete": "deleted"}
FAILURES = {"create": "could not be created", "import": "could not be imported", "resize": "could not be resized",
            "permissions": "its permissions could not be set", "delete": "could not be deleted"}


@dataclass
class VolumePlan:
    before: VolumeFacts | None
    after: VolumeFacts | None
    steps: list[str] = field(default_factory=list)     # create, import, resize, permissions, delete
    done: list[str] = field(default_factory=list)
    checksum: str | None = None                         # of the image imported by this run


class VolumeManager:
    def __init__(self, pools: Pools, volumes: Volumes, opener: image_import.Opener | None = None):
        self.pools = pools
        self.volumes = volumes
        self.opener = opener        # opens source.url; the module's, so the core needs no AnsibleModule

    def ensure(self, req: VolumeRequest, check_mode: bool) -> dict:
        self._check_pool(req.pool)
        plan = self._plan(req)
        if not check_mode and plan.steps:
            self._apply(req, plan)
            if plan.after is not None:
                plan.after = self._facts(req.pool, req.name)
        return self._result(req, plan)

    # -- reading ------------------------------------------------------------------
    def _check_pool(self, pool: str) -> None:
        if not self.pools.exists(pool):
            raise NotFound(f"pool {pool!r} is not defined")
        if not self.pools.active(pool):
            raise Conflict(f"pool {pool!r} is not active; start it (virtops.qemu.pool state=active) first")

    def _facts(self, pool: str, name: str) -> VolumeFacts:
        return facts_from_xml(self.volumes.xml(pool, name))

    # -- planning -------------------------------------------------------------------
    def _plan(self, req: VolumeRequest) -> VolumePlan:
        exists = self.volumes.exists(req.pool, req.name)
        before = self._facts(req.pool, req.name) if exists else None
        if req.state == "absent":
            return VolumePlan(before, None, ["delete"] if exists else [])
        if before is None and req.source is not None:
            return VolumePlan(None, self._imported(req), ["import"])
        if before is None:
            after = self._new(req)
            # libvirt copies a clone at its source's size; a larger one is grown afterwards.
            grow = req.clone_from is not None and after.capacity > self._facts(*req.clone_from).capacity
            return VolumePlan(None, after, ["create"] + ["resize"] * grow)
        return self._change(req, before)

    def _new(self, req: VolumeRequest) -> VolumeFacts:
        source = self._facts(*req.clone_from) if req.clone_from else None
        backing_path, backing_format, backing_capacity = self._backing(req)
        fmt = req.format or (source.format if source else "raw")
        capacity = req.capacity or (source.capacity if source else backing_capacity)
        if capacity is None:
            raise InvalidInput(f"volume {req.name!r} does not exist; give its capacity to create it", "capacity")
        if source is not None and capacity < source.capacity:
            raise InvalidInput(f"{capacity} bytes is smaller than the {source.capacity} bytes of "
                               f"{'/'.join(req.clone_from or ())}, the volume to clone", "capacity")
        return VolumeFacts(
            name=req.name, path=os.path.join(self._target(req.pool), req.name), format=fmt,
            capacity=_rounded(capacity, fmt), backing_path=backing_path, backing_format=backing_format,
            mode=req.mode or DEFAULT_MODE, owner=os.getuid() if req.owner is None else req.owner,
            group=os.getgid() if req.group is None else req.group)

    def _imported(self, req: VolumeRequest) -> VolumeFacts:
        """The volume an import makes; a URL's image is not read before the real run, so its size shows as 0."""
        from ansible_collections.virtops.qemu.plugins.module_utils.driver import image_import
        source = req.source
        size = 0
        if source is not None and source.path:
            size = image_import.probe(source.path, source.path)[1]
            image_import.check_capacity(req.capacity, size, source.path)
        fmt = req.format or "raw"
        return VolumeFacts(
            name=req.name, path=os.path.join(self._target(req.pool), req.name), format=fmt,
            capacity=_rounded(max(req.capacity or 0, size), fmt),
            mode=req.mode or DEFAULT_MODE, owner=os.getuid() if req.owner is None else req.owner,
            group=os.getgid() if req.group is None else req.group)

    def _target(self, pool: str) -> str:
        tree = parse(self.pools.xml(pool, inactive=False), kinds.POOL.tag)
        kind = pool_model.pool_type(tree)
        if kind not in ("dir", "fs", "netfs"):
            raise InvalidInput(f"volumes of {kind} pool {pool!r} cannot be created or deleted by this module",
                               "pool")
        return pool_model.target_path(tree) or ""

    def _backing(self, req: VolumeRequest) -> tuple[str | None, str | None, int | None]:
        """The backing file's path, format and capacity (None where a plain file's is unknown)."""
        if req.backing is None:
            return None, None, None
        if req.backing.startswith("/"):
            if req.backing_format is None:
                raise InvalidInput("give the format of the backing file", "backing_store.format")
            return req.backing, req.backing_format, None
        pool, name = req.backing.split("/", 1)
        facts = self._facts(pool, name)
        return facts.path, req.backing_format or facts.format, facts.capacity

    def _change(self, req: VolumeRequest, before: VolumeFacts) -> VolumePlan:
        if req.format is not None and req.format != before.format:
            raise InvalidInput(f"volume {req.name!r} is {before.format}; the format of an existing volume "
                               f"cannot be changed to {req.format}", "format")
        self._check_backing(req, before)
        after, steps = before, []
        capacity = _rounded(req.capacity, before.format) if req.capacity is not None else before.capacity
        if capacity < before.capacity and not req.allow_shrink:
            raise InvalidInput(f"volume {req.name!r} has {before.capacity} bytes; shrinking it to {capacity} "
                               "loses data at its end and needs allow_shrink=true", "capacity")
        if capacity != before.capacity:
            after, steps = after._replace(capacity=capacity), ["resize"]
        permissions = after._replace(mode=req.mode or after.mode,
                                     owner=after.owner if req.owner is None else req.owner,
                                     group=after.group if req.group is None else req.group)
        if permissions != after:
            after, steps = permissions, steps + ["permissions"]
        return VolumePlan(before, after, steps)

    def _check_backing(self, req: VolumeRequest, before: VolumeFacts) -> None:
        if req.backing is None:
            return
        path = req.backing if req.backing.startswith("/") else self._backing(req)[0]
        if path != before.backing_path:
            raise InvalidInput(f"volume {req.name!r} has backing store {before.backing_path!r}; the backing "
                               f"store of an existing volume cannot be changed to {path!r}", "backing_store")

    # -- acting -----------------------------------------------------------------------
    def _apply(self, req: VolumeRequest, plan: VolumePlan) -> None:
        """Act on the plan; a failure after a first change carries what was already changed."""
        run_steps(f"volume {req.name!r}", plan.steps, lambda step: self._act(req, plan, step), plan.done,
                  lambda: self._partial(req, plan), DONE, FAILURES)

    @staticmethod
    def _partial(req: VolumeRequest, plan: VolumePlan) -> dict:
        before = shown_xml(plan.before) if plan.before else ""
        after = shown_xml(plan.after) if plan.after else ""
        return {"changed": True, "pool": req.pool, "name": req.name, "xml": after,
                "diff": {"before": before, "after": after}}

    def _act(self, req: VolumeRequest, plan: VolumePlan, step: str) -> None:
        after = plan.after
        if step == "delete":
            self.volumes.delete(req.pool, req.name)
        elif step == "create" and after is not None:
            self.volumes.create(req.pool, creation_xml(after, req.allocation), req.clone_from)
        elif step == "import" and after is not None and req.source is not None:
            plan.checksum = self.volumes.import_image(req.pool, creation_xml(after, None), req.source, self.opener,
                                                      req.capacity)
        elif step == "resize" and after is not None:
            self.volumes.resize(req.pool, req.name, after.capacity, shrink=req.allow_shrink)
        elif step == "permissions":
            self.volumes.set_permissions(req.pool, req.name, req.mode, req.owner, req.group)

    # -- result -----------------------------------------------------------------------
    @staticmethod
    def _result(req: VolumeRequest, plan: VolumePlan) -> dict:
        before = shown_xml(plan.before) if plan.before else ""
        after = shown_xml(plan.after) if plan.after else ""
        facts = plan.after
        return {
            "changed": bool(plan.steps),
            "pool": req.pool,
            "name": req.name,
            "state": "present" if facts else "absent",
            "path": facts.path if facts else None,
            # The same under its name before 0.3.0, for one release.
            "format": facts.format if facts else None,
            "capacity": facts.capacity if facts else None,
            "allocation": facts.allocation if facts else None,
            "xml": after,
            "checksum": plan.checksum,
            "diff": {"before": before, "after": after},
        }


def _rounded(size: int, fmt: str) -> int:
    if fmt != "qcow2":
        return size
    return -(-size // SECTOR) * SECTOR


# -- volume lists for pool_info --------------------------------------------------------
def describe_volumes(volumes: Volumes, pool: str) -> list[dict]:
    found = []
    for name in volumes.names(pool):
        try:
            facts = facts_from_xml(volumes.xml(pool, name))
        except NotFound:
            continue
        found.append({"name": name, "path": facts.path, "format": facts.format,
                      "capacity": facts.capacity, "allocation": facts.allocation})
    return found
