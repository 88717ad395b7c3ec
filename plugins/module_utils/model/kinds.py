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

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.virtops.qemu.plugins.module_utils.model import (
    domain,
    domain_request,
    network,
    origins,
    pool,
    seclabel,
    snapshot,
    volume,
)
from ansible_collections.virtops.qemu.plugins.module_utils.model.merge import Rules
from ansible_collections.virtops.qemu.plugins.module_utils.model.origins import Table
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import XmlNode


@dataclass(frozen=True)
class Kind:
    word: str                                   # "network": messages, Resources.kind, the module's name
    plural: str                                 # "networks": the *_info modules' list
    tag: str                                    # the XML root element
    schema: str                                 # libvirt's RelaxNG schema (SCHEMA_DIR/<schema>.rng); "" for none
    request: Callable[[dict], Any]              # the module's options -> the kind's request
    directory: str = ""                         # the embedded driver's etc/<directory>, run/<directory>
    rules: Rules = field(default_factory=Rules)
    origins: Table = field(default_factory=dict)
    parent: str | None = None                   # the kind whose object holds one of this kind
    # What the hypervisor does to a definition it stores; new and merged definitions get it before they
    # are compared, and, with settle_read, so do those read from the driver (a pool's measured sizes).
    settle: Callable[[XmlNode], XmlNode] | None = None
    settle_read: bool = False


DOMAIN = Kind("domain", "domains", "domain", "domain", domain_request.request_from_params, directory="qemu",
              rules=domain.DOMAIN_RULES, origins=origins.DOMAIN)
NETWORK = Kind("network", "networks", "network", "network", network.request_from_params, directory="network",
               rules=network.NETWORK_RULES, origins=origins.NETWORK, settle=network.settle)
POOL = Kind("pool", "pools", "pool", "storagepool", pool.request_from_params, directory="storage",
            rules=pool.POOL_RULES, origins=origins.POOL, settle=pool.settle, settle_read=True)
VOLUME = Kind("volume", "volumes", "volume", "storagevol", volume.request_from_params, parent="pool")
SNAPSHOT = Kind("snapshot", "snapshots", "domainsnapshot", "domainsnapshot", snapshot.request_from_params,
                parent="domain")
# Labels are a part of a domain's definition: they are edited there, and libvirt's domain schema is the
# domain's business, not theirs.
SECURITY_LABEL = Kind("security_label", "security_labels", "domain", "", seclabel.request_from_params,
                      parent="domain")

KINDS = {kind.word: kind for kind in (DOMAIN, NETWORK, POOL, VOLUME, SNAPSHOT, SECURITY_LABEL)}


def top_level() -> list[Kind]:
    """The kinds whose objects stand alone, addressed by their name only."""
    return [kind for kind in KINDS.values() if kind.parent is None]
