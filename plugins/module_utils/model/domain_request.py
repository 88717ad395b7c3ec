# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The domain module's request: its options checked and turned into what DomainManager acts on.

Connects to nothing, so a wrong option fails before any host is touched.
Private to the collection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.model import domain as model
from ansible_collections.virtops.qemu.plugins.module_utils.model import domain_options
from ansible_collections.virtops.qemu.plugins.module_utils.model.names import validate_name
from ansible_collections.virtops.qemu.plugins.module_utils.model.request import ResourceRequest, reconcile_name
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import check_option_text

if TYPE_CHECKING:
    from ansible_collections.virtops.qemu.plugins.module_utils.seed.nocloud import Seed

# How a shutdown may ask the guest, in the order given: ACPI power button, guest agent.
SHUTDOWN_MODES = ("acpi", "agent")


@dataclass
class CloudInit:
    state: str                  # present or absent
    seed: Seed | None           # None when absent
    pool: str | None            # where the seed lives; None: the driver's default

    def image(self) -> bytes:
        if self.seed is None:
            raise ValueError("a cloud-init request with state absent has no seed image")
        return self.seed.image()


@dataclass
class DomainRequest(ResourceRequest):
    force: bool = False
    shutdown_timeout: float = 120
    remove_disks: list = field(default_factory=list)
    remove_snapshots: bool = False      # absent: forget the domain's snapshots with it (their metadata)
    definition_option: str = "xml"      # the option a wrong definition is blamed on
    creation_features: tuple = ()       # features a new domain gets unless turned off
    cloud_init: CloudInit | None = None
    guest_agent: bool | None = None     # the agent channel wanted (True), unwanted (False), or left alone
    shutdown_mode: tuple = ("acpi",)    # how a shutdown asks the guest, tried in order

    def reads_definition(self) -> bool:
        return self.desired is not None or bool(self.remove_disks)


def request_from_params(params: dict) -> DomainRequest:
    """Validate the module's options and build the request; connects to nothing."""
    name = validate_name(params["name"], "domain")
    desired, owned = None, set()
    if params.get("xml"):
        desired = model.parse_domain(params["xml"])
        reconcile_name(desired, name, "domain")
        owned = model.owned_lists_in(desired)
    elif domain_options.has_definition(params):
        check_option_text(params, domain_options.DEFINITION_OPTIONS)
        desired, owned = domain_options.render(params)
    if desired is not None:
        model.normalise(desired)
    if params.get("remove_disks") and params["state"] != "absent":
        raise InvalidInput("only applies with state: absent", "remove_disks")
    if params.get("remove_snapshots") and params["state"] != "absent":
        raise InvalidInput("only applies with state: absent", "remove_snapshots")
    timeout = params.get("shutdown_timeout", 120)
    if timeout is not None and timeout < 0:
        raise InvalidInput(f"must be 0 or more seconds, got {timeout}", "shutdown_timeout")
    from_options = desired is not None and not params.get("xml")
    return DomainRequest(
        name=name, state=params["state"], desired=desired, owned_lists=owned,
        autostart=params.get("autostart"), restart=params.get("restart", False), verbatim=bool(params.get("xml")),
        force=params.get("force", False), shutdown_timeout=120 if timeout is None else timeout,
        remove_disks=params.get("remove_disks") or [], remove_snapshots=bool(params.get("remove_snapshots")),
        definition_option="current_memory" if from_options else "xml",
        creation_features=domain_options.creation_features(params) if from_options else (),
        cloud_init=cloud_init_from_params(params, name), guest_agent=params.get("guest_agent"),
        shutdown_mode=_shutdown_modes(params.get("shutdown_mode")))


def cloud_init_from_params(params: dict, name: str) -> CloudInit | None:
    given = params.get("cloud_init")
    if given is None:
        return None
    state = given.get("state") or "present"
    if state == "absent":
        return CloudInit("absent", None, given.get("pool"))
    from ansible_collections.virtops.qemu.plugins.module_utils.seed.nocloud import build_seed
    seed = build_seed(name, given.get("user_data"), given.get("meta_data"), given.get("network_config"))
    return CloudInit("present", seed, given.get("pool"))


def _shutdown_modes(given) -> tuple:
    modes = tuple(given or ("acpi",))
    unknown = [mode for mode in modes if mode not in SHUTDOWN_MODES]
    if unknown or len(set(modes)) != len(modes):
        raise InvalidInput(f"a list of distinct modes out of {', '.join(SHUTDOWN_MODES)}, got {list(modes)}",
                           "shutdown_mode")
    return modes
