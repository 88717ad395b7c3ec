# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every kind's request shares, and the checks its builder makes of the module's options.

A module turns its options into one request (``request_from_params`` of
the kind, named by its record in model/kinds.py) before it connects to
anything; the kind's manager acts on it.  Private to the collection.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import XmlNode, element


@dataclass
class ResourceRequest:
    name: str
    state: str = "present"              # present, absent, or a state word of the kind (active, running, ...)
    desired: XmlNode | None = None      # desired-subset element of the kind, or None
    owned_lists: set[str] = field(default_factory=set)
    autostart: bool | None = None
    restart: bool = False
    verbatim: bool = False              # the definition came as XML (the xml option), not from structured options

    def reads_definition(self) -> bool:
        """Whether acting needs the stored definition (an unreadable one fails the request, else it is a warning)."""
        return self.desired is not None


def reconcile_name(desired: XmlNode, name: str, kind: str) -> None:
    """Give a verbatim definition the ``name`` option's name, or refuse one that names another object."""
    node = desired.find("name")
    if node is None:
        desired.insert(0, element("name", name))
    elif (node.text or "").strip() != name:
        raise InvalidInput(f"the XML names the {kind} {(node.text or '').strip()!r} but name is {name!r}", "xml")


def checked_state(state: str, states: tuple[str, ...]) -> str:
    if state not in states:
        raise InvalidInput(f"must be one of {', '.join(states)}, got {state!r}", "state")
    return state
