# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One record per kind of object: what the drivers, the managers and the modules know of it.

A kind's word names it in messages and in the driver (``Resources.kind``);
its XML has the root tag ``tag`` and, where libvirt has one, is checked
against the RelaxNG schema ``schema``; the embedded driver keeps its
definitions under ``etc/<directory>`` and ``run/<directory>``.  ``rules``
say how a desired subset merges into a stored definition, ``origins``
which structured option renders which place of it, ``request`` turns a
module's options into the kind's request.  A child kind (a volume, a
snapshot) names its ``parent``: its objects are addressed by the parent's
name and their own.

Passwords are not a kind's business: module_glue masks them in every
result and failure, whatever the kind.  Private to the collection.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, NamedTuple

from ansible_collections.virtops.qemu.plugins.module_utils.model import origins as origin_tables
from ansible_collections.virtops.qemu.plugins.module_utils.model.merge import Rules
from ansible_collections.virtops.qemu.plugins.module_utils.model.origins import Table
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import XmlNode

_MODEL_PACKAGE = "ansible_collections.virtops.qemu.plugins.module_utils.model"


def _resolve(reference: str) -> Any:
    """``module:attribute`` under model/, imported on first use: a call loads only its own kind's model."""
    module, attribute = reference.split(":")
    return getattr(importlib.import_module(f"{_MODEL_PACKAGE}.{module}"), attribute)


class Kind(NamedTuple):
    word: str                                   # "network": messages, Resources.kind, the module's name
    plural: str                                 # "networks": the *_info modules' list
    tag: str                                    # the XML root element
    schema: str                                 # libvirt's RelaxNG schema (SCHEMA_DIR/<schema>.rng); "" for none
    builder: str                                # "module:function" of model/: the module's options -> the request
    directory: str = ""                         # the embedded driver's etc/<directory>, run/<directory>
    rules_of: str = ""                          # "module:NAME" of model/: the merge Rules
    origins_of: str = ""                        # the table of model/origins.py
    parent: str | None = None                   # the kind whose object holds one of this kind
    # What the hypervisor does to a definition it stores ("module:function"); new and merged definitions get
    # it before they are compared, and, with settle_read, so do those read from the driver (a pool's sizes).
    settle_of: str = ""
    settle_read: bool = False

    @property
    def request(self) -> Callable[[dict], Any]:
        return _resolve(self.builder)

    @property
    def rules(self) -> Rules:
        return _resolve(self.rules_of) if self.rules_of else Rules()

    @property
    def origins(self) -> Table:
        return getattr(origin_tables, self.origins_of) if self.origins_of else {}

    @property
    def settle(self) -> Callable[[XmlNode], XmlNode] | None:
        return _resolve(self.settle_of) if self.settle_of else None


DOMAIN = Kind("domain", "domains", "domain", "domain", "domain_request:request_from_params", directory="qemu",
              rules_of="domain:DOMAIN_RULES", origins_of="DOMAIN")
NETWORK = Kind("network", "networks", "network", "network", "network:request_from_params", directory="network",
               rules_of="network:NETWORK_RULES", origins_of="NETWORK", settle_of="network:settle")
POOL = Kind("pool", "pools", "pool", "storagepool", "pool:request_from_params", directory="storage",
            rules_of="pool:POOL_RULES", origins_of="POOL", settle_of="pool:settle", settle_read=True)
VOLUME = Kind("volume", "volumes", "volume", "storagevol", "volume:request_from_params", parent="pool")
SNAPSHOT = Kind("snapshot", "snapshots", "domainsnapshot", "domainsnapshot", "snapshot:request_from_params",
                parent="domain")
# Labels are a part of a domain's definition: they are edited there, and libvirt's domain schema is the
# domain's business, not theirs.
SECURITY_LABEL = Kind("security_label", "security_labels", "domain", "", "seclabel:request_from_params",
                      parent="domain")

KINDS = {kind.word: kind for kind in (DOMAIN, NETWORK, POOL, VOLUME, SNAPSHOT, SECURITY_LABEL)}


def top_level() -> list[Kind]:
    """The kinds whose objects stand alone, addressed by their name only."""
    return [kind for kind in KINDS.values() if kind.parent is None]
