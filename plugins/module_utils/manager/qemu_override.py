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

from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput, NotFound
from ansible_collections.virtops.qemu.plugins.module_utils.manager.domain import DomainManager, DomainRequest
from ansible_collections.virtops.qemu.plugins.module_utils.model import domain as model
from ansible_collections.virtops.qemu.plugins.module_utils.model import qemu_ns
from ansible_collections.virtops.qemu.plugins.module_utils.model.names import validate_name
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import check_option_text, to_string


@dataclass
class OverrideRequest(DomainRequest):
    # section name -> its option (a dict with state and fields), None when the section is not managed
    sections: dict = field(default_factory=dict)


class QemuOverrideManager(DomainManager):
    """DomainManager whose new definition is the stored one with the requested qemu: sections."""

    def _plan(self, req):
        if not self.objects.exists(req.name):
            raise NotFound(f"domain {req.name!r} is not defined; qemu_override changes existing domains only")
        return super()._plan(req)

    def _definition(self, req, before, before_xml):
        if before is None:      # an unreadable definition: _before has raised unless nothing is asked
            return before_xml, False
        after = qemu_ns.edited(before, req.sections)
        if qemu_ns.sections_of(after) == qemu_ns.sections_of(before):
            return before_xml, False
        return to_string(after), True

    def _plan_restart(self, req, plan):
        stays_active = self._is_active(plan.status) and not set(plan.steps) & self.STOPPING
        if not stays_active or not plan.after_xml:
            return
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
