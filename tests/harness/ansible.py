"""Run Ansible modules and playbooks against localhost, returning results.

Both runners use the venv's own ansible executables, inventory
``localhost,`` with the local connection and the venv python as
``ansible_python_interpreter``. Results come from the harness's
``virtops_json`` stdout callback (callback_plugins/), which writes every task
result to a JSON file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from . import CACHE

BIN = Path(sys.executable).parent
CALLBACK_DIR = Path(__file__).resolve().parent / "callback_plugins"
COLLECTIONS = CACHE / "collections"
TIMEOUT = 900


class AnsibleRunError(RuntimeError):
    """Ansible produced no task results (bad arguments, parse error, ...)."""


def run_module(module: str, args: dict, check: bool = False,
               diff: bool = False, uri: str | None = None,
               env: dict | None = None, netns: str | None = None) -> dict:
    """Run ``virtops.qemu.<module>`` (or a FQCN) ad hoc; return its result.

    ``netns`` names a network namespace (harness.netns) to run it in.
    """
    if uri is not None:
        args = {**args, "uri": uri}
    name = module if "." in module else f"virtops.qemu.{module}"
    argv = [str(BIN / "ansible"), "localhost", "-m", name]
    if args:
        # `-a '{}'` would reach the module as a raw parameter
        argv += ["-a", json.dumps(args)]
    results = _run(argv, check, diff, env, netns)
    if len(results) != 1:
        raise AnsibleRunError(f"expected one result, got {results!r}")
    return results[0]


def run_module_calls(calls: list[tuple[str, dict]] | list[tuple[str, dict, dict]], check: bool = False,
                     diff: bool = False, env: dict | None = None, netns: str | None = None) -> list[dict]:
    """Run many module calls as the tasks of one playbook; return their results in order.

    One Ansible start-up (about two seconds) instead of one per call.  Each
    task runs whatever the ones before it returned (``ignore_errors``), so
    each result is the one ``run_module`` would give for the same call.  A
    call's optional third item adds task keywords, e.g. ``{"check_mode":
    True}`` for one call in check mode.  Arguments that Jinja would template
    are refused: the playbook would not pass them as written.
    """
    tasks = []
    for module, args, *keywords in calls:
        text = json.dumps(args)
        if any(mark in text for mark in ("{{", "{%", "{#")):
            raise ValueError(f"{module} arguments would be templated: {text}")
        name = module if "." in module else f"virtops.qemu.{module}"
        tasks.append({"name": f"{len(tasks)} {name}", name: args, "ignore_errors": True, **dict(*keywords)})
    results = run_playbook([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}],
                           check=check, diff=diff, env=env, netns=netns)
    if len(results) != len(calls):
        raise AnsibleRunError(f"expected {len(calls)} results, got {results!r}")
    return results


def run_playbook(playbook: str | os.PathLike | list, extra_vars: dict | None
                 = None, check: bool = False, diff: bool = False,
                 env: dict | None = None, netns: str | None = None,
                 host_mounts: bool = False, output: list | None = None,
                 hosts: dict[str, dict] | None = None) -> list[dict]:
    """Run a playbook file or a list of plays; return per-task results.

    Every entry is the task's result dict plus ``task`` (its name) and
    ``host``, in execution order.  The inventory is ``localhost``, or with
    ``hosts`` those names with their variables, all on the local
    connection: one run for cases that each need variables of their own
    (a failing host does not stop the others).  ``host_mounts`` enters only the network
    namespace ``netns`` (nsenter) instead of ``ip netns exec``'s private
    mount namespace, so filesystems the modules mount stay mounted on the
    host after they exit (/sys then shows the host's network devices).
    With a list as ``output``, the playbook runs at -vvv with Ansible's
    default output, and its stdout and stderr are appended to the list.
    """
    with tempfile.TemporaryDirectory(prefix="virtops-play-") as tmp:
        if isinstance(playbook, list):
            path = Path(tmp) / "playbook.yml"
            # JSON is YAML; no YAML dumper needed.
            path.write_text(json.dumps(playbook, indent=1))
        else:
            path = Path(playbook)
        argv = [str(BIN / "ansible-playbook"), str(path)]
        if extra_vars:
            argv += ["-e", json.dumps(extra_vars)]
        if output is not None:
            argv.append("-vvv")
            env = {**(env or {}), "ANSIBLE_STDOUT_CALLBACK": "default", "VIRTOPS_RESULTS_BESIDE_OUTPUT": "1"}
        inventory = "localhost,"
        if hosts is not None:
            inventory = str(Path(tmp) / "inventory.yml")
            Path(inventory).write_text(json.dumps({"all": {"hosts": hosts}}))
        return _run(argv, check, diff, env, netns, host_mounts, output, inventory)


def assert_no_failure(results: list[dict]) -> None:
    """No task of a run_playbook result failed; a failure names the task and each failed loop item with its message."""
    failed = [(r["task"], r.get("msg"), _failed_items(r)) for r in results if r["failed"]]
    assert not failed, failed


def _failed_items(result: dict) -> list[tuple]:
    return [(item.get("item"), item.get("msg")) for item in result.get("results", []) if item.get("failed")]


def ansible_env(results_file: str, extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(COLLECTIONS))
    env.update({
        "ANSIBLE_CALLBACK_PLUGINS": str(CALLBACK_DIR),
        "ANSIBLE_STDOUT_CALLBACK": "virtops_json",
        # ad hoc `ansible` ignores a custom stdout callback without this
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_HOST_KEY_CHECKING": "0",
        # keep module tracebacks in result["exception"] for failing tests
        "ANSIBLE_DISPLAY_TRACEBACK": "error",
        "VIRTOPS_RESULTS_FILE": results_file,
    })
    env.update(extra or {})
    return env


def _run(argv: list[str], check: bool, diff: bool, env: dict | None, netns: str | None = None,
         host_mounts: bool = False, output: list | None = None, inventory: str = "localhost,") -> list[dict]:
    prefix = []
    if netns:
        prefix = ["nsenter", f"--net=/run/netns/{netns}", "--"] if host_mounts else ["ip", "netns", "exec", netns]
    argv = prefix + argv + ["-i", inventory, "-c", "local",
                            "-e", json.dumps({"ansible_python_interpreter": sys.executable})]
    argv += ["--check"] * check + ["--diff"] * diff
    with tempfile.TemporaryDirectory(prefix="virtops-ansible-") as tmp:
        results_file = os.path.join(tmp, "results.json")
        proc = subprocess.run(argv, env=ansible_env(results_file, env),
                              cwd=tmp, capture_output=True, text=True, check=False,
                              timeout=TIMEOUT)
        if output is not None:
            output += [proc.stdout, proc.stderr]
        try:
            with open(results_file, encoding="utf-8") as handle:
                results = json.load(handle)
        except FileNotFoundError:
            results = []
    if not results:
        raise AnsibleRunError(
            f"{argv!r} exited {proc.returncode} without task results\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return results
