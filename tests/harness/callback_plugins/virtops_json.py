"""Stdout callback for the test harness: collect every task result as JSON.

The results go to the file named by VIRTOPS_RESULTS_FILE (not stdout, so
warnings or plugin chatter cannot corrupt them), one entry per host and task
in execution order, each the raw result dict plus ``task`` and ``host``.
With VIRTOPS_RESULTS_BESIDE_OUTPUT set, it runs beside Ansible's own stdout
callback (as an aggregate one), so a test sees both the results and the output.
"""

from __future__ import annotations

import json
import os

from ansible.plugins.callback import CallbackBase
from ansible.vars.clean import module_response_deepcopy, strip_internal_keys

DOCUMENTATION = """
    name: virtops_json
    type: stdout
    short_description: write task results as JSON to VIRTOPS_RESULTS_FILE
    description: Test harness callback of virtops.qemu.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate" if os.environ.get("VIRTOPS_RESULTS_BESIDE_OUTPUT") else "stdout"
    CALLBACK_NAME = "virtops_json"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._results = []

    def _record(self, result, **flags):
        data = getattr(result, "result", None)
        if data is None:
            data = result._result
        entry = strip_internal_keys(module_response_deepcopy(dict(data)))
        entry.setdefault("changed", False)
        entry.setdefault("failed", False)
        entry.update(flags)
        task = getattr(result, "task", None) or result._task
        host = getattr(result, "host", None) or result._host
        entry["task"] = task.get_name()
        entry["host"] = host.get_name()
        self._results.append(entry)

    def v2_runner_on_ok(self, result):
        self._record(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, failed=True, ignored=bool(ignore_errors))

    def v2_runner_on_skipped(self, result):
        self._record(result, skipped=True)

    def v2_runner_on_unreachable(self, result):
        self._record(result, unreachable=True, failed=True)

    def v2_playbook_on_stats(self, stats):
        path = os.environ.get("VIRTOPS_RESULTS_FILE")
        if path:
            with open(path, "w", encoding="utf-8") as out:
                json.dump(self._results, out, default=str)
