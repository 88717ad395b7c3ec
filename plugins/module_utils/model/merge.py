# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Desired-subset comparison and merge of libvirt XML trees.

What the user asked for must hold in the current definition; everything
else there (uuid, MACs, addresses, implicit devices) is kept.  Elements
that may repeat are matched by identity, given per element path by a
``Rules`` table, so a redefine never reshuffles generated values.  A rule
may replace an element whole instead (a network's <forward> whose mode
changes keeps nothing of the old mode).  Elements in a namespace (libvirt's
qemu: extensions, <metadata> content) hold nothing libvirt generates: the
desired element describes their lists completely.  Private to the collection.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection, Hashable, Mapping
from types import MappingProxyType
from typing import NamedTuple, Optional

from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import XmlNode

# An element's identity within its list; None means "match by position".
KeyFunction = Callable[[XmlNode], Optional[Hashable]]  # noqa: UP045 - evaluated at run time
# Whether a current value already satisfies the desired one.
Equivalence = Callable[[str, str], bool]
# Whether the current element must give way to the desired one whole: (current, desired) -> bool.
Replacement = Callable[[XmlNode, XmlNode], bool]


def child_attr(child_tag: str, attr: str) -> KeyFunction:
    """Identity taken from an attribute of a child element, e.g. target/@dev."""
    def key(node: XmlNode) -> Hashable | None:
        found = node.find(child_tag)
        return None if found is None else found.get(attr)
    return key


def own_attr(*attrs: str) -> KeyFunction:
    """Identity taken from the element's own attributes; None unless all are set."""
    def key(node: XmlNode) -> Hashable | None:
        values = tuple(node.get(a) for a in attrs)
        return None if None in values else values
    return key


def differs_in(*attrs: str) -> Replacement:
    """Replace the element when the desired one sets one of ``attrs`` to another value."""
    def replace(current: XmlNode, desired: XmlNode) -> bool:
        return any(desired.get(a) is not None and desired.get(a) != current.get(a) for a in attrs)
    return replace


def first_key(*keys: KeyFunction) -> KeyFunction:
    """The first identity that is known on the desired element decides."""
    def key(node: XmlNode) -> Hashable | None:
        for index, fn in enumerate(keys):
            value = fn(node)
            if value is not None:
                return (index, value)
        return None
    return key


class Rules(NamedTuple):
    """How repeatable elements match, which lists the user owns, and equivalent values.

    ``identity``: element path -> key function (None from the key function
    means "match by position").  ``owned``: element paths whose current
    members are dropped when the desired tree does not list them.
    ``equivalent``: "path@attr" or "path#text" -> predicate(current, desired).
    ``replace``: element path -> predicate(current, desired) that says when
    the desired element replaces the current one whole instead of merging.
    """
    identity: Mapping[str, KeyFunction] = MappingProxyType({})
    owned: frozenset[str] = frozenset()
    equivalent: Mapping[str, Equivalence] = MappingProxyType({})
    replace: Mapping[str, Replacement] = MappingProxyType({})


class MergeResult(NamedTuple):
    tree: XmlNode                   # the merged element tree
    # What changed: "path@attr", "path#text", "path+" (added), "path-" (removed), "path=" (replaced whole).
    changes: list[str]

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def merge(current: XmlNode, desired: XmlNode, rules: Rules,
          owned_paths: Collection[str] | None = None) -> MergeResult:
    """Return ``current`` with ``desired`` laid over it, and what that changed.

    ``owned_paths`` overrides ``rules.owned`` with the lists the user has
    actually spoken about (an empty list of disks still owns the disks).
    """
    tree = copy.deepcopy(current)
    owned = rules.owned if owned_paths is None else frozenset(owned_paths)
    changes: list[str] = []
    _merge_node(tree, desired, tree.tag, rules, owned, changes)
    return MergeResult(tree, changes)


def _merge_node(cur: XmlNode, des: XmlNode, path: str, rules: Rules, owned: frozenset[str],
                changes: list[str]) -> None:
    for name, value in des.attrib.items():
        old = cur.get(name)
        if old != value and not _equivalent(rules, f"{path}@{name}", old, value):
            cur.set(name, value)
            changes.append(f"{path}@{name}")
    want_text = (des.text or "").strip()
    if want_text and (cur.text or "").strip() != want_text \
            and not _equivalent(rules, f"{path}#text", (cur.text or "").strip(), want_text):
        cur.text = des.text.strip()
        changes.append(f"{path}#text")
    for tag in _child_tags(cur, des, path, owned):
        _merge_children(cur, des, tag, f"{path}/{tag}", rules, owned, changes)


def _child_tags(cur: XmlNode, des: XmlNode, path: str, owned: frozenset[str]) -> list[str]:
    tags = [c.tag for c in des if isinstance(c.tag, str)]
    if _namespaced(des):
        tags += [c.tag for c in cur if isinstance(c.tag, str)]
    prefix = path + "/"
    tags += [p[len(prefix):] for p in owned if p.startswith(prefix) and "/" not in p[len(prefix):]]
    return list(dict.fromkeys(tags))


def _namespaced(node: XmlNode) -> bool:
    """libvirt's own elements have no namespace; anything in one is an extension stored verbatim."""
    return isinstance(node.tag, str) and node.tag.startswith("{")


def _merge_children(cur: XmlNode, des: XmlNode, tag: str, path: str, rules: Rules,
                    owned: frozenset[str], changes: list[str]) -> None:
    wanted = des.findall(tag)
    present = cur.findall(tag)
    pairs = match(present, wanted, rules.identity.get(path))
    replace = rules.replace.get(path)
    for have, want in pairs:
        if have is None:
            if _only_owns_lists(want, path, owned):
                continue
            _insert(cur, copy.deepcopy(want), tag)
            changes.append(f"{path}+")
        elif replace is not None and replace(have, want):
            cur.replace(have, copy.deepcopy(want))
            changes.append(f"{path}=")
        else:
            _merge_node(have, want, path, rules, owned, changes)
    if path in owned or _namespaced(des):
        matched = {id(have) for have, _want in pairs if have is not None}
        for extra in present:
            if id(extra) not in matched:
                cur.remove(extra)
                changes.append(f"{path}-")


def _only_owns_lists(node: XmlNode, path: str, owned: frozenset[str]) -> bool:
    """An empty element that is there only to own lists below it (e.g. features turned off).

    Where it is missing, nothing below it can be removed, so it is not created.
    """
    empty = not node.attrib and not (node.text or "").strip() and len(node) == 0
    return empty and any(p.startswith(path + "/") for p in owned)


def match(present: list[XmlNode], wanted: list[XmlNode],
          key: KeyFunction | None) -> list[tuple[XmlNode | None, XmlNode]]:
    """Pair each wanted element with a present one (or None when it is new).

    Wanted elements with a known identity take the present element with the
    same identity; the rest take the remaining present elements in order.
    """
    free = list(present)
    pairs: list[tuple[XmlNode | None, XmlNode] | None] = [None] * len(wanted)
    if key is not None:
        for i, want in enumerate(wanted):
            ident = key(want)
            if ident is None:
                continue
            hit = next((p for p in free if key(p) == ident), None)
            pairs[i] = (hit, want)
            if hit is not None:
                free.remove(hit)
    claimed = {key(w) for w in wanted if key is not None and key(w) is not None}
    for i, want in enumerate(wanted):
        if pairs[i] is None:
            hit = next((p for p in free if key is None or key(p) not in claimed), None)
            if hit is not None:
                free.remove(hit)
            pairs[i] = (hit, want)
    return [pair for pair in pairs if pair is not None]


def _insert(parent: XmlNode, node: XmlNode, tag: str) -> None:
    """Put a new element after its last sibling of the same tag, for a readable diff."""
    same = parent.findall(tag)
    if same:
        same[-1].addnext(node)
    else:
        parent.append(node)


def _equivalent(rules: Rules, where: str, old: str | None, new: str) -> bool:
    test = rules.equivalent.get(where)
    return bool(test and old is not None and test(old, new))
