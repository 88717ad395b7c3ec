"""File modes taken the ways ansible.builtin.file takes them."""

import pytest

from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.model.filemode import octal_mode


@pytest.mark.parametrize("value, expected", [
    (493, "0755"),                  # mode: 0755 unquoted in YAML
    (0o640, "0640"),
    ("0755", "0755"), ("755", "0755"), ("0o750", "0750"), ("0", "0000"),
    ("u=rwx,g=rx,o=rx", "0755"), ("u=rw,go=", "0600"), ("a=rx,u=rwx", "0755"), ("a=rwx,u=r", "0477"),
])
def test_modes_file_accepts(value, expected):
    assert octal_mode(value, "mode") == expected


@pytest.mark.parametrize("value, reason", [
    ("u+x", "'+' and '-'"), ("u=rwx", "g, o missing"), (0o1777, "0000 to 0777"), ("01777", "0000 to 0777"),
    ("rwx", "such as 0755"), ("9", "such as 0755"), (True, "such as 0755"), (-1, "0000 to 0777"),
])
def test_bad_modes_name_the_option_and_the_reason(value, reason):
    with pytest.raises(InvalidInput) as e:
        octal_mode(value, "target.mode")
    assert e.value.option == "target.mode" and reason in str(e.value)
