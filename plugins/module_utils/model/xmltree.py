# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Safe parsing and stable serialisation of libvirt XML.  Private to the collection."""

from __future__ import annotations

import copy
from typing import Any

from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput

try:
    from lxml import etree
    HAS_LXML = True
    LXML_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - depends on the host
    etree = None
    HAS_LXML = False
    LXML_IMPORT_ERROR = exc

# An lxml element; lxml ships no type information.
XmlNode = Any


def _parser():
    # No entity expansion and no network: the XML may come from anywhere.
    return etree.XMLParser(resolve_entities=False, no_network=True,
                           remove_blank_text=True, remove_comments=True, huge_tree=False)


def parse(text: str, root_tag: str, option: str = "xml"):
    """Parse ``text`` and check that its root element is ``root_tag``."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput(f"expected a <{root_tag}> XML document, got an empty value", option)
    try:
        root = etree.fromstring(text.strip().encode("utf-8"), _parser())
    except etree.XMLSyntaxError as e:
        raise InvalidInput(f"malformed XML: {e}", option) from e
    if root.tag != root_tag:
        raise InvalidInput(f"the root element must be <{root_tag}>, not <{root.tag}>", option)
    return root


def to_string(element) -> str:
    """Pretty-print so that unchanged elements serialise to identical lines."""
    tree = copy.deepcopy(element)
    for node in tree.iter():
        if len(node) and node.text is not None and not node.text.strip():
            node.text = None
        if node.tail is not None and not node.tail.strip():
            node.tail = None
    etree.indent(tree, space="  ")
    return etree.tostring(tree, encoding="unicode") + "\n"


def element(tag: str, text=None, **attrib):
    """A new element; attributes whose value is None are left out.

    A value XML cannot hold (NUL, control characters) is InvalidInput naming the element.
    """
    values = {k: str(v) for k, v in attrib.items() if v is not None}
    for name, value in [("", None if text is None else str(text)), *values.items()]:
        if value is not None and not _xml_compatible(value):
            where = f"{tag}@{name}" if name else tag
            raise InvalidInput(f"{value!r} contains a character XML cannot hold (NUL or a control character)",
                               where)
    node = etree.Element(tag, values)
    if text is not None:
        node.text = str(text)
    return node


def check_option_text(params: dict, names) -> None:
    """Refuse, by its option path (``ips[0].dhcp.hosts[1].name``), a value of the options ``names`` XML cannot hold.

    The renderers would meet it too, but only knowing the element it goes into.
    """
    for name in names:
        _check_text(params.get(name), name)


def _check_text(value: Any, path: str) -> None:
    if isinstance(value, str) and not _xml_compatible(value):
        raise InvalidInput(f"{value!r} contains a character XML cannot hold (NUL or a control character)", path)
    if isinstance(value, dict):
        for key, item in value.items():
            _check_text(str(key), path)
            _check_text(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_text(item, f"{path}[{index}]")


def _xml_compatible(value: str) -> bool:
    # XML 1.0 Char: tab, newline, carriage return, then U+0020 up, minus surrogates and U+FFFE/U+FFFF.
    return not any((ord(c) < 0x20 and c not in "\t\n\r") or 0xD800 <= ord(c) <= 0xDFFF or c in "\ufffe\uffff"
                   for c in value)


def uuid_of(tree) -> str | None:
    """The ``<uuid>`` of a definition as written, without surrounding blanks; None when it has none."""
    if tree is None:
        return None
    return (tree.findtext("uuid") or "").strip() or None


def sub(parent, tag: str, text=None, **attrib):
    node = element(tag, text, **attrib)
    parent.append(node)
    return node
