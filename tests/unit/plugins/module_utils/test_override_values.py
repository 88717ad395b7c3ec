"""qemu_override values of type signed and unsigned stay within what libvirt reads them into (64 bits)."""

from __future__ import annotations

import pytest

from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.model.qemu_ns import property_value

WHERE = "override.devices[0].properties[1].value"


@pytest.mark.parametrize("ptype,value,stored", [
    ("unsigned", 2 ** 64 - 1, "18446744073709551615"),
    ("unsigned", "0", "0"),
    ("signed", -(2 ** 63), "-9223372036854775808"),
    ("signed", "+9223372036854775807", "9223372036854775807"),
])
def test_the_ends_of_the_ranges_pass(ptype, value, stored):
    assert property_value(ptype, value, WHERE) == stored


@pytest.mark.parametrize("ptype,value", [
    ("unsigned", 2 ** 64), ("unsigned", "99999999999999999999999"), ("signed", 2 ** 63), ("signed", -(2 ** 63) - 1),
])
def test_a_value_beyond_64_bits_is_refused_naming_the_option(ptype, value):
    with pytest.raises(InvalidInput) as caught:
        property_value(ptype, value, WHERE)
    assert str(caught.value).startswith(f"{WHERE}: {value!r} is out of range for type {ptype}, a 64-bit")
