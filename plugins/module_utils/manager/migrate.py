# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Moving a domain to another host: the whole move, or one phase of it, per call.

On libvirt the source libvirtd runs the whole move (phase ``managed``,
``Domains.migrate``).  The embedded driver has no daemon to talk to its
peer, so Ansible runs its phases on the two hosts in turn (the
``virtops.qemu.migrate`` role): ``source`` and ``perform`` and ``confirm``
on the source, ``prepare`` and ``finish`` on the destination, ``cancel`` on
both after a failure (``Domains.migration_phase``; driver/embed/migration.py).
Every phase reports what is already done as unchanged.  Private to the
collection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.model.names import validate_name

PHASES = ("managed", "source", "prepare", "perform", "finish", "confirm", "cancel")
COPY_STORAGE = ("none", "all", "incremental")
OPTIONS = ("live", "copy_storage", "persistent", "undefine_source", "bandwidth", "max_downtime", "auto_converge")


def run(open_driver: Callable[..., Any], params: dict, check_mode: bool) -> dict:
    """The module's result; ``open_driver`` is driver/connect.py's (only plugins pick a backend)."""
    name = validate_name(params["name"], "domain")
    for option in ("bandwidth", "max_downtime"):
        if params[option] < 0:
            raise InvalidInput(f"{option} must be 0 or more, not {params[option]}", option)
    phase = params["phase"]
    # Only the phases that start or stop something on this host write to it.
    read_only = check_mode or phase == "source"
    with open_driver(params["uri"], read_only=read_only) as driver:
        if phase == "managed":
            options = {key: params[key] for key in OPTIONS}
            result = driver.domains.migrate(name, params["destination"], options, check_mode)
        else:
            result = driver.domains.migration_phase(phase, name, params, check_mode)
        return dict(result, warnings=driver.warnings)
