# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The compiled-code cache of module_utils run from an AnsiballZ zip (bytecode.py).

Each case imports a small package from a zip in a new Python process, as a
module run does, with the cache installed for that package.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ansible_collections.virtops.qemu.plugins.module_utils import bytecode

PACKAGE = {
    "probe/__init__.py": "",
    "probe/plain.py": "VALUE = 'first'\n\ndef fail():\n    raise RuntimeError('from plain')\n",
    "probe/sub/__init__.py": "from probe.sub import inner\n",
    "probe/sub/inner.py": "from probe.plain import VALUE\nDOUBLED = VALUE * 2\n",
}
IMPORTER = """
import json, sys, traceback
sys.path.insert(0, {archive!r})
from ansible_collections.virtops.qemu.plugins.module_utils import bytecode
bytecode.install("probe", {archive!r})
import probe.plain, probe.sub.inner
try:
    probe.plain.fail()
except RuntimeError as error:
    where = traceback.extract_tb(error.__traceback__)[-1].filename
print(json.dumps({{"value": probe.plain.VALUE, "doubled": probe.sub.inner.DOUBLED, "where": where,
                  "loader": type(probe.sub.inner.__loader__).__name__, "file": probe.plain.__file__}}))
"""


def make_zip(path: Path, files: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return path


def run_import(archive: Path, cache: str) -> dict:
    env = dict(os.environ, VIRTOPS_QEMU_BYTECODE_CACHE=cache,
               PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.run([sys.executable, "-c", IMPORTER.format(archive=str(archive))], env=env,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def entries(cache: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} if cache.exists() else {}


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache" / "bytecode"


def test_the_first_run_stores_the_package_and_the_next_one_loads_it_with_its_own_file_names(tmp_path, cache):
    first = run_import(make_zip(tmp_path / "one.zip", PACKAGE), str(cache))
    assert first["loader"] == "CachedLoader"
    assert (first["value"], first["doubled"]) == ("first", "firstfirst")
    stored = entries(cache)
    assert sorted(name.rsplit(".", 2)[0] for name in stored) == ["probe.plain", "probe.sub", "probe.sub.inner"]
    assert cache.stat().st_mode & 0o777 == 0o700

    again = run_import(make_zip(tmp_path / "two.zip", PACKAGE), str(cache))
    assert entries(cache) == stored, "a second run with the same sources writes nothing"
    assert again["doubled"] == "firstfirst"
    assert again["where"] == str(tmp_path / "two.zip" / "probe" / "plain.py"), "tracebacks name this run's zip"
    assert again["file"] == again["where"]


def test_a_changed_source_is_compiled_again_and_runs_as_changed(tmp_path, cache):
    run_import(make_zip(tmp_path / "one.zip", PACKAGE), str(cache))
    changed = dict(PACKAGE, **{"probe/plain.py": "VALUE = 'second'\n\ndef fail():\n    raise RuntimeError\n"})
    result = run_import(make_zip(tmp_path / "two.zip", changed), str(cache))
    assert result["doubled"] == "secondsecond"
    assert len([n for n in entries(cache) if n.startswith("probe.plain.")]) == 2


def test_a_damaged_entry_is_compiled_again_and_replaced(tmp_path, cache):
    archive = make_zip(tmp_path / "one.zip", PACKAGE)
    run_import(archive, str(cache))
    damaged = next(p for p in cache.iterdir() if p.name.startswith("probe.plain."))
    damaged.write_bytes(damaged.read_bytes()[:len(bytecode.HEADER) + bytecode.DIGEST_SIZE + 3])
    assert run_import(archive, str(cache))["value"] == "first"
    assert damaged.stat().st_size > len(bytecode.HEADER) + bytecode.DIGEST_SIZE + 3


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o755 | 0o020])
def test_a_directory_others_can_write_to_is_not_used(tmp_path, cache, mode):
    cache.mkdir(parents=True)
    cache.chmod(mode)
    planted = cache / "planted"
    planted.write_text("")
    result = run_import(make_zip(tmp_path / "one.zip", PACKAGE), str(cache))
    assert result["loader"] == "zipimporter" and result["doubled"] == "firstfirst"
    assert [p.name for p in cache.iterdir()] == ["planted"]


def test_a_directory_of_another_user_is_not_used(tmp_path, cache):
    cache.mkdir(parents=True, mode=0o700)
    os.chown(cache, 65534, 65534)
    result = run_import(make_zip(tmp_path / "one.zip", PACKAGE), str(cache))
    assert result["loader"] == "zipimporter"
    assert list(cache.iterdir()) == []


def test_a_symlinked_directory_is_not_used(tmp_path, cache):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    cache.parent.mkdir(parents=True)
    cache.symlink_to(real)
    result = run_import(make_zip(tmp_path / "one.zip", PACKAGE), str(cache))
    assert result["loader"] == "zipimporter"
    assert list(real.iterdir()) == []


def test_off_and_a_relative_path_turn_it_off(tmp_path):
    archive = make_zip(tmp_path / "one.zip", PACKAGE)
    assert run_import(archive, "off")["loader"] == "zipimporter"
    assert run_import(archive, "relative/dir")["loader"] == "zipimporter"
    assert not (Path.cwd() / "relative").exists()


def test_imported_from_files_it_installs_nothing():
    assert not any(isinstance(finder, bytecode.CachedFinder) for finder in sys.meta_path)


def test_every_module_imports_it_before_the_rest_of_the_collection():
    """Its finder must be in place before the first of the collection's other imports."""
    modules = Path(__file__).resolve().parents[4] / "plugins" / "modules"
    for path in sorted(modules.glob("*.py")):
        ours = [line for line in path.read_text().splitlines()
                if line.startswith("from ansible_collections.virtops.qemu.plugins.module_utils")]
        assert ours and ours[0].startswith(
            "from ansible_collections.virtops.qemu.plugins.module_utils import bytecode"), path.name
