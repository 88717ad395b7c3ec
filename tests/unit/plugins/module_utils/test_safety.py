"""Input checks, file errors and lock files that keep the driver core from harming the host."""

from __future__ import annotations

import pytest

from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.model import domain as model


@pytest.mark.parametrize("name", ["vm1\n", "vm1\n\n", "\nvm1", "vm\n1", "vm1\r"])
def test_names_with_line_breaks_are_refused(name):
    with pytest.raises(InvalidInput) as err:
        model.validate_name(name)
    assert str(err.value).startswith("name: ")
