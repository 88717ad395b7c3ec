"""Every module runs through the collection's action, ansible-core's ``normal`` one with the collector off."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ansible.plugins.action.normal import ActionModule as NormalAction

from ansible_collections.virtops.qemu.plugins.plugin_utils.module_action import ModuleAction
from harness.ansible import COLLECTIONS

PLUGINS = Path(__file__).resolve().parents[4] / "plugins"
MODULES = sorted(path.stem for path in (PLUGINS / "modules").glob("*.py"))
SHARED = "ansible_collections.virtops.qemu.plugins.plugin_utils.module_action.ModuleAction"

# What ansible-core's plugin loader hands the task executor for each module's action.
RESOLVE = """
import json, sys
from ansible.plugins.loader import action_loader, init_plugin_loader
init_plugin_loader()
found = {}
for name in sys.argv[1:]:
    action = action_loader.get(f"virtops.qemu.{name}", class_only=True)
    found[name] = [f"{cls.__module__}.{cls.__qualname__}" for cls in action.__mro__]
print(json.dumps(found))
"""


def test_ansible_runs_every_module_through_the_shared_action():
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS), ANSIBLE_DEPRECATION_WARNINGS="false")
    env.pop("ANSIBLE_CONFIG", None)
    proc = subprocess.run([sys.executable, "-c", RESOLVE, *MODULES], capture_output=True, text=True, env=env,
                          check=True, timeout=120)
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert sorted(found) == MODULES
    for name, lineage in found.items():
        assert lineage[0] == f"ansible_collections.virtops.qemu.plugins.action.{name}.ActionModule", name
        assert SHARED in lineage, name
        assert "ansible.plugins.action.normal.ActionModule" in lineage, name


@pytest.fixture
def collector_seen(monkeypatch):
    """Replaces ansible-core's run: records whether the collector was on, then returns or raises as told."""
    seen = []

    def run(self, tmp=None, task_vars=None):
        seen.append(gc.isenabled())
        if task_vars.get("fail"):
            raise RuntimeError("the action failed")
        return {"changed": False, "task_vars": task_vars}

    monkeypatch.setattr(NormalAction, "run", run)
    yield seen
    gc.enable()


def action() -> ModuleAction:
    return ModuleAction.__new__(ModuleAction)   # run() needs none of the task's objects here


def test_the_collector_is_off_during_the_action_and_on_again_after(collector_seen):
    gc.enable()
    result = action().run(task_vars={"x": 1})
    assert collector_seen == [False]
    assert gc.isenabled()
    assert result == {"changed": False, "task_vars": {"x": 1}}


def test_the_collector_is_on_again_after_a_failed_action(collector_seen):
    gc.enable()
    with pytest.raises(RuntimeError, match="the action failed"):
        action().run(task_vars={"fail": True})
    assert collector_seen == [False]
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off(collector_seen):
    gc.disable()
    action().run(task_vars={})
    assert collector_seen == [False]
    assert not gc.isenabled()
