# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validation against libvirt's RelaxNG schemas, with errors that point at the culprit.

libxml2 reports most RelaxNG failures inside ``<interleave>`` groups only as
"Extra element devices in interleave" on an ancestor.  When that is all it
says, the culprit is found by trial: the first attribute, then the first
element, whose removal makes the document valid, the deepest element first.  That costs one validation
per node, and only on the error path.  Private to the collection.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from typing import Any

from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import etree

SCHEMA_DIR = "/usr/share/libvirt/schemas"
# Errors that only say that some descendant is wrong.
_VAGUE = frozenset({"RELAXNG_ERR_INTEREXTRA", "RELAXNG_ERR_INTERSEQ", "RELAXNG_ERR_CONTENTVALID",
                    "RELAXNG_ERR_EXTRACONTENT", "RELAXNG_ERR_ELEMWRONG", "RELAXNG_ERR_NOELEM"})
_schemas: dict[str, etree.RelaxNG | None] = {}


def schema(kind: str) -> etree.RelaxNG | None:
    """libvirt's schema for ``kind`` (domain, network, storagepool, …); None where libvirt0 is not installed."""
    if kind not in _schemas:
        path = os.path.join(SCHEMA_DIR, f"{kind}.rng")
        _schemas[kind] = etree.RelaxNG(etree.parse(path)) if os.path.exists(path) else None
    return _schemas[kind]


@dataclass
class Fault:
    """Where a definition breaks the schema: the element, the attribute (None for the element itself), and why."""

    path: str
    node: Any
    attribute: str | None
    detail: str

    def __str__(self) -> str:
        return f"{self.path}: {self.detail}" if self.path else self.detail

    def shown(self) -> str:
        """The refused value: the attribute's, or the element as XML (shortened)."""
        if self.attribute is not None:
            return f"{self.attribute}={self.node.get(self.attribute)!r}"
        text = etree.tostring(self.node, encoding="unicode", with_tail=False)
        return text if len(text) <= 200 else text[:200] + "..."


def validate(tree, kind: str, what: str = "the definition", option: str = "xml", locate=None) -> None:
    """Raise InvalidInput naming the element or attribute at fault when ``tree`` breaks the schema.

    ``locate(element, attribute)`` names the module option that rendered the
    place at fault; where it does, the error names that option, else
    ``option`` and the place in the XML.
    """
    rng = schema(kind)
    if rng is None or rng.validate(tree):
        return
    fault = _explain(rng, tree)
    located = locate(fault.node, fault.attribute) if locate is not None and fault.node is not None else None
    if located:
        raise InvalidInput(f"libvirt's {kind} schema refuses {fault.shown()} at {fault.path}", located)
    raise InvalidInput(f"{what} does not match libvirt's {kind} schema: {fault}", option)


def _explain(rng: etree.RelaxNG, tree) -> Fault:
    precise = [e for e in rng.error_log if e.path and e.type_name not in _VAGUE]
    if precise:
        node = _node_at(tree, precise[0].path)
        # libxml2 also reports what failed while it tried the alternatives of a choice; trust a
        # precise error only where the document is valid without the element it names.
        if node is None or _valid_without(rng, tree, node):
            return Fault(precise[0].path, node, None, precise[0].message)
    culprit = _culprit(rng, tree)
    if culprit:
        return culprit
    last = rng.error_log.last_error
    return Fault("", None, None, f"line {last.line}: {last.message}")


def _node_at(tree, path: str):
    try:
        found = tree.getroottree().xpath(path, namespaces={k: v for k, v in tree.nsmap.items() if k})
    except etree.XPathError:
        return None
    return found[0] if found and isinstance(found[0], etree._Element) else None


def _culprit(rng: etree.RelaxNG, tree) -> Fault | None:
    for node in tree.iter(etree.Element):
        for name in node.attrib:
            trial = copy.deepcopy(tree)
            del _same_node(trial, tree, node).attrib[name]
            if rng.validate(trial):
                return Fault(_path(tree, node), node, name, f"attribute {name}={node.get(name)!r} is not valid here")
    # Deepest first, so that the smallest element that explains the failure is named.
    for node in reversed(list(tree.iter(etree.Element))):
        if node is tree:
            continue
        trial = copy.deepcopy(tree)
        twin = _same_node(trial, tree, node)
        twin.getparent().remove(twin)
        if rng.validate(trial):
            return Fault(_path(tree, node), node, None, f"element <{node.tag}> or its content is not valid here")
    return None


def _valid_without(rng: etree.RelaxNG, tree, node) -> bool:
    if node is tree:
        return True
    trial = copy.deepcopy(tree)
    twin = _same_node(trial, tree, node)
    twin.getparent().remove(twin)
    return bool(rng.validate(trial))


def _same_node(trial, tree, node):
    return trial.getroottree().xpath(tree.getroottree().getpath(node))[0]


def _path(tree, node) -> str:
    return tree.getroottree().getpath(node)
