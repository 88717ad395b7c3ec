"""Schema errors name the element or attribute at fault, not just a line."""

from __future__ import annotations

import pytest

from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.model import schema
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import parse

HEAD = "<domain type='qemu'><name>a</name><memory unit='MiB'>{memory}</memory><os><type>hvm</type></os>"


def _domain(devices: str = "", memory: str = "256") -> str:
    return HEAD.format(memory=memory) + f"<devices>{devices}</devices></domain>"


def _error(xml: str) -> str:
    with pytest.raises(InvalidInput) as caught:
        schema.validate(parse(xml, "domain"), "domain")
    assert caught.value.option == "xml"
    return str(caught.value)


def test_a_valid_definition_passes():
    schema.validate(parse(_domain("<disk type='file'><source file='/a'/><target dev='vda'/></disk>"),
                          "domain"), "domain")


def test_an_unknown_attribute_is_named_with_its_element():
    message = _error(_domain("<disk type='file' bogus='1'><source file='/a'/><target dev='vda'/></disk>"))
    assert "/domain/devices/disk: attribute bogus='1' is not valid here" in message


def test_a_bad_attribute_value_is_named():
    assert "/domain/devices/graphics: attribute port='x'" in _error(_domain("<graphics type='vnc' port='x'/>"))


def test_a_bad_element_value_is_named():
    assert "/domain/memory: " in _error(_domain(memory="lots"))


def test_an_unknown_element_is_named_rather_than_its_ancestors():
    message = _error(_domain("<disk type='file'><source file='/a'/><target dev='vda'/><frob/></disk>"))
    assert "/domain/devices/disk/frob: element <frob>" in message


def test_an_element_missing_a_required_child_is_named():
    assert "/domain/devices/disk: element <disk>" in _error(_domain("<disk type='file'><source file='/a'/></disk>"))
