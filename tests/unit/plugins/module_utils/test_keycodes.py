"""The generated key code tables match keycodemapdb's csv and libvirt's known translations."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from ansible_collections.virtops.qemu.plugins.module_utils import keycodes

REPO = Path(__file__).resolve().parents[4]
CSV = REPO / "tests" / "data" / "keymaps.csv"      # keycodemapdb's table (tests/data/README.md)


def _generator():
    spec = importlib.util.spec_from_file_location("gen_keycodes", REPO / "tools" / "gen_keycodes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _translate(source: str, target: str, code: int) -> int | None:
    linux = keycodes.TO_LINUX[source].get(code)
    if linux is None:
        return None
    if target == "linux":
        return linux
    if target == "qnum":
        return keycodes.QNUM.get(linux)
    return min((c for c, key in keycodes.TO_LINUX[target].items() if key == linux), default=None)


def test_the_committed_table_is_what_the_generator_makes_of_the_csv():
    import csv

    generator = _generator()
    with open(CSV, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    committed = (REPO / "plugins" / "module_utils" / "keycodes.py").read_text(encoding="utf-8")
    assert generator.render(generator.build(rows)) == committed


@pytest.mark.parametrize("source,target,code,expected", [
    ("linux", "usb", 111, 76),
    ("linux", "qnum", 88, 88),
    ("linux", "qnum", 160, 163),
    ("atset2", "atset3", 131, 55),
    ("os_x", "win32", 90, 131),
    ("os_x", "atset1", 3200, None),
])
def test_translations_libvirt_documents(source, target, code, expected):
    assert _translate(source, target, code) == expected


@pytest.mark.parametrize("nameset,name,code", [
    ("linux", "KEY_DELETE", 111), ("linux", "KEY_RFKILL", 524),
    ("os_x", "Function", 0x3F), ("win32", "VK_UP", 0x26),
])
def test_key_names_resolve_in_their_own_code_set(nameset, name, code):
    assert keycodes.NAMES[nameset][name] == code


def test_extended_keys_fold_the_prefix_into_qnum_and_xt_kbd():
    right_ctrl = keycodes.NAMES["linux"]["KEY_RIGHTCTRL"]
    assert keycodes.QNUM[right_ctrl] == 0x9D                       # AT set 1: e0 1d
    assert keycodes.TO_LINUX["xt_kbd"][0x11D] == right_ctrl
