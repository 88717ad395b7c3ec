# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Desired-subset comparison and merge of libvirt XML trees.

What the user asked for must hold in the current definition; everything
else there (uuid, MACs, addresses, implicit devices) is kept.  Elements
that may repeat are matched by identity, given per element path by a
``Rules`` table, so a redefine never reshuffles generated values.
Private to the collection.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable


def child_attr(child_tag: str, attr: str) -> Callable:
    """Identity taken from an attribute of a child element, e.g. target/@dev."""
    def key(node):
        found = node.find(child_tag)
        return None if found is None else found.get(attr)
    return key


def own_attr(*attrs: str) -> Callable:
    """Identity taken from the element's own attributes; None unless all are set."""
    def key(node):
        values = tuple(node.get(a) for a in attrs)
        return None if None in values else values
    return key


def first_key(*keys: Callable) -> Callable:
    """The first identity that is known on the desired element decides."""
    def key(node):
        for index, fn in enumerate(keys):
            value = fn(node)
            if value is not None:
                return (index, value)
        return None
    return key


@dataclass(frozen=True)
class Rules:
    """How repeatable elements match, which lists the user owns, and equivalent values.

    ``identity``: element path -> key function (None from the key function
    means "match by position").  ``owned``: element paths whose current
    members are dropped when the desired tree does not list them.
    ``equivalent``: "path@attr" or "path#text" -> predicate(current, desired).
    """
    identity: dict = field(default_factory=dict)
    owned: frozenset = frozenset()
    equivalent: dict = field(default_factory=dict)


@dataclass
class MergeResult:
    tree: object                    # the merged element tree
    changes: list                   # human-readable paths of what changed

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def merge(current, desired, rules: Rules, owned_paths=None) -> MergeResult:
    """Return ``current`` with ``desired`` laid over it, and what that changed.

    ``owned_paths`` overrides ``rules.owned`` with the lists the user has
    actually spoken about (an empty list of disks still owns the disks).
    """
    tree = copy.deepcopy(current)
    owned = rules.owned if owned_paths is None else frozenset(owned_paths)
    changes: list = []
    _merge_node(tree, desired, tree.tag, rules, owned, changes)
    return MergeResult(tree, changes)


def _merge_node(cur, des, path, rules, owned, changes):
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
    for tag in _child_tags(des, path, owned):
        _merge_children(cur, des, tag, f"{path}/{tag}", rules, owned, changes)


def _child_tags(des, path, owned):
    tags = [c.tag for c in des if isinstance(c.tag, str)]
    prefix = path + "/"
    tags += [p[len(prefix):] for p in owned if p.startswith(prefix) and "/" not in p[len(prefix):]]
    return list(dict.fromkeys(tags))


def _merge_children(cur, des, tag, path, rules, owned, changes):
    wanted = des.findall(tag)
    present = cur.findall(tag)
    pairs = match(present, wanted, rules.identity.get(path))
    for have, want in pairs:
        if have is None:
            _insert(cur, copy.deepcopy(want), tag)
            changes.append(f"{path}+")
        else:
            _merge_node(have, want, path, rules, owned, changes)
    if path in owned:
        matched = {id(have) for have, _want in pairs if have is not None}
        for extra in present:
            if id(extra) not in matched:
                cur.remove(extra)
                changes.append(f"{path}-")


def match(present: list, wanted: list, key: Callable | None) -> list:
    """Pair each wanted element with a present one (or None when it is new).

    Wanted elements with a known identity take the present element with the
    same identity; the rest take the remaining present elements in order.
    """
    free = list(present)
    pairs: list = [None] * len(wanted)
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
    return pairs


def _insert(parent, node, tag):
    """Put a new element after its last sibling of the same tag, for a readable diff."""
    same = parent.findall(tag)
    if same:
        same[-1].addnext(node)
    else:
        parent.append(node)


def _equivalent(rules, where, old, new):
    test = rules.equivalent.get(where)
    return bool(test and old is not None and test(old, new))
