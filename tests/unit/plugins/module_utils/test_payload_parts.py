# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Each module's payload carries the parts its calls load, and a storage or network payload no more.

The payloads are built by ansible-core's own builder (module_common), as the
controller builds them for a task; what is checked is the list of
module_utils files in the zip.  The integration tests run every module
through ``ansible`` and ``ansible-playbook``, so from these same payloads.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError
from ansible_collections.virtops.qemu.plugins.module_utils.lazy import load_part
from harness.payloads import build_payloads

PLUGINS = Path(__file__).resolve().parents[4] / "plugins"
MODULE_UTILS = PLUGINS / "module_utils"
MU = "ansible_collections.virtops.qemu.plugins.module_utils"

MODULES = sorted(p.stem for p in (PLUGINS / "modules").glob("*.py"))
STORAGE_MODULES = ("pool", "pool_info", "volume")
NETWORK_MODULES = ("network", "network_info")
KEY_AND_MIGRATION_MODULES = ("migrate", "send_key")
# The parts only sending keys and migrating load.
KEY_AND_MIGRATION_PARTS = frozenset({"model/sendkey.py", "keycodes.py", "driver/embed/migration.py",
                                     "driver/libvirt_migration.py"})
# What only calls about domains (or the host's capabilities) use.
DOMAIN_PARTS = frozenset({"driver/embed/domains.py", "driver/embed/launch.py", "driver/embed/caps.py",
                          "driver/embed/security/__init__.py", "driver/embed/snapshot.py", "qmp.py",
                          "seed/nocloud.py", "qemu_conf.py"}) | KEY_AND_MIGRATION_PARTS


@pytest.fixture(scope="module")
def shipped() -> dict[str, set[str]]:
    """The collection's module_utils files in each module's payload, relative to module_utils."""
    ours = "ansible_collections/virtops/qemu/plugins/module_utils/"
    built = build_payloads([f"virtops.qemu.{m}" for m in MODULES])
    return {name.rpartition(".")[2]: {f.split(ours, 1)[1] for f in payload["module_utils"] if ours in f}
            for name, payload in built.items()}


@functools.cache
def loaded_parts() -> frozenset[str]:
    """Every literal name passed to lazy.load_part() in module_utils, as a file path."""
    parts = set()
    for path in MODULE_UTILS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "load_part":
                parts.add(part_file(node.args[0].value))
    return frozenset(parts)


def part_file(part: str) -> str:
    relative = part.replace(".", "/")
    return f"{relative}/__init__.py" if (MODULE_UTILS / relative).is_dir() else f"{relative}.py"


def payload_list(module: str) -> str | None:
    """The module_utils.payload list a module imports, None when it imports none."""
    names = [alias.name for node in ast.walk(ast.parse((PLUGINS / "modules" / f"{module}.py").read_text()))
             if isinstance(node, ast.ImportFrom) and node.module == f"{MU}.payload" for alias in node.names]
    assert len(names) <= 1, f"{module} imports {names}"
    return names[0] if names else None


def listed(payload: str) -> set[str]:
    """The parts a module_utils.payload list names, as file paths; a list it imports counts with its parts."""
    parts = set()
    for node in ast.walk(ast.parse((MODULE_UTILS / "payload" / f"{payload}.py").read_text())):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if node.module == f"{MU}.payload":
                    parts |= listed(alias.name)
                else:
                    parts.add(part_file(f"{node.module}.{alias.name}"[len(MU) + 1:]))
    return parts


def test_the_list_of_every_part_names_each_part_the_driver_loads():
    assert loaded_parts() == listed("every_part")


def test_the_list_about_domains_is_every_part_but_the_key_tables_and_migration():
    assert listed("domains") == loaded_parts() - KEY_AND_MIGRATION_PARTS


@pytest.mark.parametrize("module", MODULES)
def test_a_module_that_opens_a_driver_names_its_parts(module):
    opens_driver = "driver.connect import open_driver" in (PLUGINS / "modules" / f"{module}.py").read_text()
    expected = ("storage" if module in STORAGE_MODULES else "networks" if module in NETWORK_MODULES
                else "every_part" if module in KEY_AND_MIGRATION_MODULES else "domains" if opens_driver else None)
    assert payload_list(module) == expected


@pytest.mark.parametrize("module", KEY_AND_MIGRATION_MODULES)
def test_a_payload_that_sends_keys_or_migrates_carries_every_part_the_driver_loads(shipped, module):
    assert loaded_parts() <= shipped[module]


@pytest.mark.parametrize("module", [m for m in MODULES if payload_list(m) == "domains"])
def test_a_payload_about_domains_or_the_host_carries_their_parts_and_no_key_tables_or_migration(shipped, module):
    assert listed("domains") <= shipped[module]
    assert not shipped[module] & KEY_AND_MIGRATION_PARTS


@pytest.mark.parametrize("module", [m for m in MODULES if payload_list(m) is None])
def test_a_payload_of_a_module_without_a_driver_carries_no_driver_code(shipped, module):
    assert not {f for f in shipped[module] if f.startswith("driver/")}


@pytest.mark.parametrize("module", STORAGE_MODULES)
def test_a_storage_payload_carries_the_storage_driver_and_no_domain_or_network_code(shipped, module):
    files = shipped[module]
    assert {"driver/embed/storage.py", "driver/libvirt_backend.py", "driver/image_import.py"} <= files
    assert not files & (DOMAIN_PARTS | {"driver/embed/network.py", "driver/embed/dnsmasq.py"})


@pytest.mark.parametrize("module", NETWORK_MODULES)
def test_a_network_payload_carries_the_network_driver_and_no_domain_or_storage_code(shipped, module):
    files = shipped[module]
    assert {"driver/embed/network.py", "driver/embed/dnsmasq.py", "driver/libvirt_backend.py"} <= files
    assert not files & (DOMAIN_PARTS | {"driver/embed/storage.py"})


@pytest.fixture
def parts_package(tmp_path, monkeypatch) -> str:
    """A package standing in for module_utils, with one part that needs a library that is not installed."""
    package = tmp_path / "probe_parts"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "broken.py").write_text("import no_such_library_anywhere\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(f"{MU}.lazy._MODULE_UTILS", "probe_parts")
    return "probe_parts"


def test_a_part_missing_from_the_payload_is_named_in_the_error(parts_package):
    with pytest.raises(BackendError, match=r"payload lacks module_utils\.driver\.no_such_part: .*report"):
        load_part("driver.no_such_part")
    with pytest.raises(BackendError, match=r"payload lacks module_utils\.no_such_part: "):
        load_part("no_such_part")


def test_a_part_that_needs_a_missing_library_raises_the_import_error_itself(parts_package):
    with pytest.raises(ModuleNotFoundError, match="no_such_library_anywhere"):
        load_part("broken")
