"""A module's EXAMPLES as a playbook that runs on this machine.

EXAMPLES name host-specific things (paths, devices, addresses, names that
other tests or users may hold): ``adapted()`` puts the test's equivalents in
their place and fails when a text to replace is no longer there, so an
edited example cannot silently slip out of the test.
"""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

from . import REPO


def examples(module: str) -> str:
    """The EXAMPLES string of ``plugins/modules/<module>.py``."""
    source = (Path(REPO) / "plugins" / "modules" / f"{module}.py").read_text()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "EXAMPLES":
            return node.value.value
    raise AssertionError(f"{module} has no EXAMPLES")


def adapted(modules: str | tuple[str, ...], replacements: dict[str, str] | None = None) -> list[dict]:
    """The tasks of the modules' EXAMPLES, in turn, with every ``old`` text replaced by ``new``."""
    modules = (modules,) if isinstance(modules, str) else modules
    text = "\n".join(examples(module) for module in modules)
    for old, new in (replacements or {}).items():
        assert old in text, f"EXAMPLES of {', '.join(modules)} no longer contain {old!r}; update this test"
        text = text.replace(old, new)
    return yaml.safe_load(text)


def play(tasks: list[dict], uri: str, name: str = "EXAMPLES", **extra) -> list[dict]:
    """One play on localhost whose virtops.qemu modules default to ``uri``."""
    return [{"name": name, "hosts": "localhost", "gather_facts": False,
             "module_defaults": {"group/virtops.qemu.qemu": {"uri": uri}}, "tasks": tasks, **extra}]


def by_task(results: list[dict]) -> dict[str, dict]:
    """Results by task name (the last one wins when a name repeats)."""
    return {result["task"]: result for result in results}
