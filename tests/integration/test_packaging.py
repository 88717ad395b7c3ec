"""The collection as users get it: the built artifact, its docs and its changelog.

The artifact is built by tools/build and installed with ansible-galaxy into a
private collections path; the demo playbook then runs from that installed
copy with nothing of the work tree on the collections path.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from harness import REPO
from harness.ansible import run_playbook

ROOT = Path(REPO)
TOOLS = ROOT / "tools"
BIN = Path(sys.executable).parent
GALAXY = yaml.safe_load((ROOT / "galaxy.yml").read_text())
MU = "ansible_collections.virtops.qemu.plugins.module_utils"
MODULES = sorted(p.stem for p in (ROOT / "plugins" / "modules").glob("*.py"))
# Work tree only: machine set-up, benchmarks, CI, lint settings, caches.
NOT_SHIPPED = (".ci/", ".venv", "bench/", "tools/", "build/", "tests/.cache/", "tests/output/",
               "pyproject.toml", ".ansible-lint", ".gitignore", "changelogs/.plugin-cache.yaml")


@dataclass(frozen=True)
class Installed:
    artifact: Path
    collections: Path

    @property
    def copy(self) -> Path:
        return self.collections / "ansible_collections" / "virtops" / "qemu"

    def env(self) -> dict:
        """Ansible sees this install and nothing else: no work tree link, no sys.path scan."""
        return {"ANSIBLE_COLLECTIONS_PATH": str(self.collections),
                "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "False"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    base = tmp_path_factory.mktemp("package")
    collections = base / "collections"
    built = subprocess.run([str(TOOLS / "build"), str(base / "dist"), "--install-to", str(collections)],
                           capture_output=True, text=True, check=True)
    return Installed(Path(built.stdout.strip()), collections)


def run_tool(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, check=False, env=env)


def module_doc(module: str, env: dict) -> dict:
    proc = subprocess.run([str(BIN / "ansible-doc"), "--json", f"virtops.qemu.{module}"],
                          env=env, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)[f"virtops.qemu.{module}"]["doc"]


def documented_plugins() -> list[tuple[str, str]]:
    """(type, name) of every plugin with its own DOCUMENTATION: modules, inventory, ...

    An action plugin shares its module's; module_utils, plugin_utils and doc_fragments hold none.
    """
    return sorted((path.parent.name, path.stem) for path in (ROOT / "plugins").glob("*/*.py")
                  if path.parent.name not in ("module_utils", "plugin_utils", "doc_fragments", "action")
                  and path.stem != "__init__")


def version_added(kind: str, name: str) -> str:
    source = (ROOT / "plugins" / kind / f"{name}.py").read_text()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "DOCUMENTATION":
            return str(yaml.safe_load(node.value.value)["version_added"])
    raise AssertionError(f"plugins/{kind}/{name}.py has no DOCUMENTATION")


def test_artifact_holds_the_collection_and_nothing_of_the_work_tree(installed):
    assert installed.artifact.name == f"virtops-qemu-{GALAXY['version']}.tar.gz"
    with tarfile.open(installed.artifact) as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile("MANIFEST.json"))
    assert manifest["collection_info"]["version"] == GALAXY["version"]
    for needed in ("meta/runtime.yml", "README.md", "COPYING", "CHANGELOG.rst", "changelogs/changelog.yaml",
                   "docs/collection/index.rst", "playbooks/demo.yml",
                   *(f"plugins/modules/{m}.py" for m in MODULES),
                   *(f"docs/collection/{m}_module.rst" for m in MODULES)):
        assert needed in names, f"{needed} is missing from the artifact"
    leaked = [n for n in names if n.startswith(NOT_SHIPPED) or "__pycache__" in n or n.endswith(".pyc")]
    assert not leaked, leaked


def test_installed_copy_is_what_ansible_uses(installed):
    env = {**os.environ, **installed.env()}
    listed = json.loads(run_tool(str(BIN / "ansible-galaxy"), "collection", "list", "virtops.qemu",
                                 "--format", "json", env=env).stdout)
    assert listed == {str(installed.collections / "ansible_collections"):
                      {"virtops.qemu": {"version": GALAXY["version"]}}}
    doc = module_doc("domain", env)
    assert doc["filename"] == str(installed.copy / "plugins" / "modules" / "domain.py")
    assert (installed.copy / "MANIFEST.json").is_file() and not installed.copy.is_symlink()


@pytest.mark.embed
@pytest.mark.guest
@pytest.mark.slow
def test_demo_runs_from_the_installed_copy(installed, embed_backend, guest, workdir):
    name = f"vt-demo-{workdir.name[-4:]}"
    compiled = workdir / "bytecode"
    try:
        results = run_playbook(installed.copy / "playbooks" / "demo.yml", extra_vars={
            "demo_name": name, "demo_dir": str(workdir), "demo_uri": embed_backend.uri,
            "demo_kernel": str(guest.kernel), "demo_initrd": str(guest.initrd)},
            env={**installed.env(), "VIRTOPS_QEMU_BYTECODE_CACHE": str(compiled)})
    finally:
        embed_backend.remove(name)
    by_task = {r["task"]: r for r in results}
    assert not [r for r in results if r["failed"]], results
    assert by_task["Define the VM and boot it, in one task"]["changed"]
    assert not by_task["Running the same task again changes nothing"]["changed"]
    assert by_task["Inspect the VM"]["domain"]["state"] == "running"
    assert by_task["Shut the guest down gracefully (ACPI power button)"]["changed"]
    assert by_task["Remove the VM"]["changed"]
    assert name not in embed_backend.names()
    # The module runs loaded module_utils through the compiled-code cache: one entry per source.
    stored = [p.name.rsplit(".", 2)[0] for p in compiled.iterdir()]
    assert f"{MU}.driver.embed.domains" in stored and f"{MU}.module_glue" in stored, stored
    assert len(stored) == len(set(stored)), stored


def test_rendered_docs_are_up_to_date():
    proc = run_tool(str(TOOLS / "docs"), "--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_changelog_fragments_lint_and_changelog_is_generated():
    proc = run_tool(str(TOOLS / "changelog"), "--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_changelog_lint_names_a_bad_fragment(tmp_path):
    shutil.copy(ROOT / "galaxy.yml", tmp_path)
    shutil.copytree(ROOT / "changelogs", tmp_path / "changelogs")
    (tmp_path / "changelogs" / "fragments" / "bad.yml").write_text(
        "minor_changes: one string, not a list\nnew_things:\n  - x\n")
    proc = subprocess.run([str(BIN / "antsibull-changelog"), "lint"], cwd=tmp_path,
                          capture_output=True, text=True, check=False)
    assert proc.returncode != 0
    assert 'bad.yml:0:0: section "minor_changes" must be type list not str' in proc.stdout
    assert "bad.yml:0:0: invalid section: new_things" in proc.stdout


@pytest.mark.parametrize(("kind", "name"), documented_plugins())
def test_plugin_is_in_the_changelog_of_its_version(kind, name):
    releases = yaml.safe_load((ROOT / "changelogs" / "changelog.yaml").read_text())["releases"]
    version = version_added(kind, name)
    release = releases.get(version, {})
    listed = release.get("modules", []) if kind == "modules" else release.get("plugins", {}).get(kind, [])
    assert name in [entry["name"] for entry in listed], (
        f"plugins/{kind}/{name}.py says version_added {version}, but changelogs/changelog.yaml does not list "
        f"it as new in {version} (galaxy.yml: {GALAXY['version']}); set version_added to an upcoming version "
        "and run tools/changelog release")
