# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Manage the ``qemu:`` namespace of an existing domain, and nothing else of it.

The domain's life cycle, diff, check mode and restart are DomainManager's;
only how the new definition is made differs: the stored definition with its
qemu: sections replaced (model/qemu_ns.py).  A running domain whose live
sections differ from the new ones needs a restart, which ``restart: true``
does.  Private to the collection.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.manager.domain import BaseDomainManager, DomainRequest
from ansible_collections.virtops.qemu.plugins.module_utils.manager.resource import Plan
from ansible_collections.virtops.qemu.plugins.module_utils.model import domain as model
from ansible_collections.virtops.qemu.plugins.module_utils.model import qemu_ns
from ansible_collections.virtops.qemu.plugins.module_utils.model.names import validate_name
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import XmlNode, check_option_text


@dataclass
class OverrideRequest(DomainRequest):
    # section name -> its option (a dict with state and fields), None when the section is not managed
    sections: dict = field(default_factory=dict)


class QemuOverrideManager(BaseDomainManager[OverrideRequest]):
    """DomainManager whose new definition is the stored one with the requested qemu: sections."""

    MISSING = "; qemu_override changes existing domains only"

    def _shape(self, tree: XmlNode, req: OverrideRequest, new: bool) -> XmlNode:
        after = qemu_ns.edited(tree, req.sections)
        return tree if qemu_ns.sections_of(after) == qemu_ns.sections_of(tree) else after

    def _plan_live(self, req: OverrideRequest, plan: Plan) -> None:
        live = model.parse_domain(self.objects.xml(req.name, inactive=False))
        wanted = model.parse_domain(plan.after_xml)
        if qemu_ns.sections_of(live) != qemu_ns.sections_of(wanted):
            plan.restart_now = req.restart
            plan.restart_required = not req.restart


def request_from_params(params: dict) -> OverrideRequest:
    """Validate the module's options; the aliases are checked against the domain when it is read."""
    name = validate_name(params["name"], "domain")
    sections = {section: params.get(section) for section in qemu_ns.SECTIONS}
    check_option_text(params, qemu_ns.SECTIONS)
    if all(option is None for option in sections.values()):
        raise InvalidInput("give at least one of " + ", ".join(qemu_ns.SECTIONS))
    timeout = params.get("shutdown_timeout", 120)
    if timeout is not None and timeout < 0:
        raise InvalidInput(f"must be 0 or more seconds, got {timeout}", "shutdown_timeout")
    return OverrideRequest(name=name, state="present", restart=params.get("restart", False),
                           force=params.get("force", False), shutdown_timeout=120 if timeout is None else timeout,
                           sections=sections)
