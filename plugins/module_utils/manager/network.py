# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bring a virtual network to the requested definition and state.

The generic life cycle is ResourceManager's; this adds what only networks
have: changes libvirt can make to a running network (DHCP hosts and ranges,
DNS entries, portgroups) are applied live as well as to the definition,
and reported in ``live_updates``; any other change of a running network
waits for a restart.  Backend-agnostic: it speaks only the driver's
``Networks``.  Private to the collection.
"""

from __future__ import annotations

from ansible_collections.virtops.qemu.plugins.module_utils.driver.base import Lease, Networks
from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.manager.resource import (
    Plan,
    ResourceManager,
    describe_each,
    uuid_of,
)
from ansible_collections.virtops.qemu.plugins.module_utils.model import kinds
from ansible_collections.virtops.qemu.plugins.module_utils.model import network as model
from ansible_collections.virtops.qemu.plugins.module_utils.model.network import (  # noqa: F401  # pylint: disable=unused-import
    NetworkRequest,
    request_from_params,
)
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import parse, to_string


class NetworkManager(ResourceManager[NetworkRequest]):
    """The generic life cycle plus live updates of a running network."""

    DONE = {**ResourceManager.DONE, "update": "updated live"}
    FAILURES = {**ResourceManager.FAILURES, "update": "the update of the running network failed"}

    def __init__(self, networks: Networks, warnings: list[str] | None = None):
        super().__init__(networks, warnings=warnings, record=kinds.NETWORK)
        self.networks = networks

    def _check_plan(self, req: NetworkRequest, plan: Plan) -> None:
        """A running network this run cannot reach is refused before anything is written."""
        if req.state == "absent":
            if plan.exists:
                self.networks.check_reachable(req.name, "remove")
            return
        if "start" in plan.steps or plan.restart_now:
            self._check_subnets_free(req, plan)
        verb = "update" if plan.live_updates else "restart" if plan.restart_now else \
            "stop" if "stop" in plan.steps else None
        if verb:
            self.networks.check_reachable(req.name, verb)

    def _check_subnets_free(self, req: NetworkRequest, plan: Plan) -> None:
        """A network about to start must not share a subnet with another active one; nothing is touched yet."""
        mine = model.subnets(self.parse(plan.after_xml))
        for other in self.networks.names():
            if other == req.name or not mine or not self.networks.active(other):
                continue
            for theirs in model.subnets(self.parse(self.networks.xml(other, inactive=False))):
                clash = next((own for own in mine if own.overlaps(theirs)), None)
                if clash is not None:
                    raise InvalidInput(f"subnet {clash} of network {req.name!r} overlaps subnet {theirs} "
                                       f"of active network {other!r}", req.definition_option)

    def _plan_live(self, req: NetworkRequest, plan: Plan) -> None:
        """Changes libvirt can make to the running network go live; any other one needs a restart."""
        if req.desired is None:
            return
        live = self._live(req.name)
        merged = self.merge(live, req.desired, req.owned_lists)
        if not merged.changed:
            return
        model.settle(merged.tree)
        updates, other = model.live_changes(live, merged.tree)
        if other:
            plan.restart_now = req.restart
            plan.restart_required = not req.restart
        else:
            plan.live_updates = updates
            plan.steps.insert(0, "update")

    def _transition(self, req: NetworkRequest, plan: Plan, step: str) -> None:
        if step != "update":
            super()._transition(req, plan, step)
            return
        for command, section, xml, parent_index in plan.live_updates:
            self.networks.update(req.name, command, section, xml, parent_index)

    def _finish(self, req: NetworkRequest, plan: Plan, result: dict, check_mode: bool) -> None:
        result["live_updates"] = [model.describe_update(update) for update in plan.live_updates]
        if result["state"] != "active":
            result["bridge"] = None
        elif check_mode:
            result["bridge"] = _bridge_in(plan.after_xml)
        else:
            result["bridge"] = self.networks.bridge(req.name)


def _bridge_in(xml: str) -> str | None:
    if not xml:
        return None
    node = parse(xml, kinds.NETWORK.tag).find("bridge")
    return None if node is None else node.get("name")


# -- network_info ---------------------------------------------------------------------
def describe(networks: Networks, name: str) -> dict:
    """What network_info returns for one network."""
    stored = parse(networks.xml(name), kinds.NETWORK.tag)
    active = networks.active(name)
    return {"name": name, "uuid": uuid_of(stored), "state": "active" if active else "inactive",
            "active": active, "persistent": networks.persistent(name), "autostart": networks.autostart(name),
            "bridge": networks.bridge(name) if active else None, "xml": to_string(stored),
            "leases": [lease_dict(lease) for lease in networks.leases(name)] if active else []}


def describe_all(networks: Networks) -> list[dict]:
    """Every network as describe() has it; one that cannot be read is listed as {name, error}."""
    return describe_each(networks.names(), lambda name: describe(networks, name))


def lease_dict(lease: Lease) -> dict:
    return {"mac": lease.mac, "ip": lease.ip, "prefix": lease.prefix, "hostname": lease.hostname,
            "expiry": lease.expiry, "type": lease.family, "clientid": lease.clientid}
