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


def validate(tree, kind: str, what: str = "the definition", option: str = "xml") -> None:
    """Raise InvalidInput naming the element or attribute at fault when ``tree`` breaks the schema."""
    rng = schema(kind)
    if rng is None or rng.validate(tree):
        return
    raise InvalidInput(f"{what} does not match libvirt's {kind} schema: {_explain(rng, tree)}", option)


def _explain(rng: etree.RelaxNG, tree) -> str:
    precise = [e for e in rng.error_log if e.path and e.type_name not in _VAGUE]
    if precise:
        return f"{precise[0].path}: {precise[0].message}"
    culprit = _culprit(rng, tree)
    if culprit:
        return culprit
    last = rng.error_log.last_error
    return f"line {last.line}: {last.message}"


def _culprit(rng: etree.RelaxNG, tree) -> str | None:
    for node in tree.iter(etree.Element):
        for name in node.attrib:
            trial = copy.deepcopy(tree)
            del _same_node(trial, tree, node).attrib[name]
            if rng.validate(trial):
                return f"{_path(tree, node)}: attribute {name}={node.get(name)!r} is not valid here"
    # Deepest first, so that the smallest element that explains the failure is named.
    for node in reversed(list(tree.iter(etree.Element))):
        if node is tree:
            continue
        trial = copy.deepcopy(tree)
        twin = _same_node(trial, tree, node)
        twin.getparent().remove(twin)
        if rng.validate(trial):
            return f"{_path(tree, node)}: element <{node.tag}> or its content is not valid here"
    return None


def _same_node(trial, tree, node):
    return trial.getroottree().xpath(tree.getroottree().getpath(node))[0]


def _path(tree, node) -> str:
    return tree.getroottree().getpath(node)
