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

import copy
from dataclasses import dataclass

from ansible_collections.virtops.qemu.plugins.module_utils.driver.base import Lease, Networks
from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput, UnreadableDefinition
from ansible_collections.virtops.qemu.plugins.module_utils.manager.resource import (
    Plan,
    ResourceManager,
    ResourceRequest,
    describe_each,
    reconcile_name,
    uuid_of,
)
from ansible_collections.virtops.qemu.plugins.module_utils.model import network as model
from ansible_collections.virtops.qemu.plugins.module_utils.model import origins, schema
from ansible_collections.virtops.qemu.plugins.module_utils.model.names import validate_name
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import check_option_text, parse, to_string

STATES = ("present", "active", "inactive", "absent")


@dataclass
class NetworkRequest(ResourceRequest):
    definition_option: str = "ips"     # the option an overlapping subnet is blamed on


class NetworkManager(ResourceManager):
    """The generic life cycle plus live updates of a running network."""

    DONE = {**ResourceManager.DONE, "update": "updated live"}
    FAILURES = {**ResourceManager.FAILURES, "update": "the update of the running network failed"}
    SCHEMA = "network"
    OPTION_PLACES = origins.NETWORK

    def __init__(self, networks: Networks, warnings: list[str] | None = None):
        super().__init__(networks, model.NETWORK_RULES)
        self.networks = networks
        self.warnings = [] if warnings is None else warnings

    def _before(self, req):
        """The stored definition; an unreadable one does not keep a network from being stopped or removed."""
        try:
            return super()._before(req)
        except UnreadableDefinition as e:
            if req.desired is not None:
                raise
            self.warnings.append(str(e))
            return None, ""

    # -- model ----------------------------------------------------------------
    def _created(self, req):
        return model.settle(copy.deepcopy(req.desired))

    def _settle(self, tree, req):
        model.settle(tree)

    # -- planning -------------------------------------------------------------
    def _plan(self, req: ResourceRequest) -> Plan:
        plan = super()._plan(req)
        if "start" in plan.steps or plan.restart_now:
            self._check_subnets_free(req, plan)
        verb = "update" if plan.live_updates else "restart" if plan.restart_now else \
            "stop" if "stop" in plan.steps else None
        if verb:    # the running network is touched: refuse before the definition is written
            self.networks.check_reachable(req.name, verb)
        return plan

    def _check_subnets_free(self, req: ResourceRequest, plan: Plan) -> None:
        """A network about to start must not share a subnet with another active one; nothing is touched yet."""
        mine = model.subnets(self.parse(plan.after_xml))
        for other in self.networks.names():
            if other == req.name or not mine or not self.networks.active(other):
                continue
            for theirs in model.subnets(self.parse(self.networks.xml(other, inactive=False))):
                clash = next((own for own in mine if own.overlaps(theirs)), None)
                if clash is not None:
                    option = getattr(req, "definition_option", "ips")
                    raise InvalidInput(f"subnet {clash} of network {req.name!r} overlaps subnet {theirs} "
                                       f"of active network {other!r}", option)

    # -- live updates ---------------------------------------------------------
    def _plan_restart(self, req: ResourceRequest, plan: Plan) -> None:
        """Changes libvirt can make to the running network go live; any other one needs a restart."""
        stays_active = self._is_active(plan.status) and not set(plan.steps) & self.STOPPING
        if req.desired is None or not plan.before_xml or not stays_active:
            return
        live = self.parse(self.networks.xml(req.name, inactive=False))
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

    @staticmethod
    def _actions(plan: Plan) -> list[str]:
        actions = ResourceManager._actions(plan)
        if plan.live_updates:
            actions.insert(1 if plan.define else 0, "update")
        return actions

    def _act(self, req: ResourceRequest, plan: Plan, step: str) -> None:
        if step != "update":
            super()._act(req, plan, step)
            return
        for command, section, xml, parent_index in plan.live_updates:
            self.networks.update(req.name, command, section, xml, parent_index)

    # -- result ---------------------------------------------------------------
    def _result(self, req: ResourceRequest, plan: Plan, check_mode: bool) -> dict:
        result = super()._result(req, plan, check_mode)
        result["changed"] = result["changed"] or bool(plan.live_updates)
        result["live_updates"] = [model.describe_update(update) for update in plan.live_updates]
        if check_mode:
            result["bridge"] = _bridge_in(plan.after_xml) if result["state"] == "active" else None
        else:
            result["bridge"] = self.networks.bridge(req.name) if result["state"] == "active" else None
        return result

    def _before_removal(self, req, before):
        self.networks.check_reachable(req.name, "remove")
        return {}

    def _gone(self, req, changed, before_xml):
        return {**super()._gone(req, changed, before_xml), "live_updates": [], "bridge": None}


def _bridge_in(xml: str) -> str | None:
    if not xml:
        return None
    node = parse(xml, "network").find("bridge")
    return None if node is None else node.get("name")


# -- the module's request ---------------------------------------------------------
def request_from_params(params: dict) -> NetworkRequest:
    """Validate the module's options and build the request; connects to nothing."""
    name = validate_name(params["name"], "network")
    state = params.get("state") or "active"
    if state not in STATES:
        raise InvalidInput(f"must be one of {', '.join(STATES)}, got {state!r}", "state")
    desired, owned, option = None, set(), None
    if params.get("xml"):
        desired, option = parse(params["xml"], "network", "xml"), "xml"
        reconcile_name(desired, name, "network")
        owned = model.owned_lists_in(desired)
    elif model.has_definition(params):
        check_option_text(params, model.STRUCTURED_OPTIONS)
        desired, owned = model.render(params)
    if desired is not None:
        model.validate(desired, option)
        schema.validate(desired, "network", "the network definition", option or "options",
                        None if option else origins.locator(origins.NETWORK, desired))
    return NetworkRequest(name=name, state=state, desired=desired, owned_lists=owned,
                          autostart=params.get("autostart"), restart=bool(params.get("restart")),
                          definition_option=option or "ips", verbatim=option is not None)


# -- network_info ---------------------------------------------------------------------
def describe(networks: Networks, name: str) -> dict:
    """What network_info returns for one network."""
    stored = parse(networks.xml(name), "network")
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
