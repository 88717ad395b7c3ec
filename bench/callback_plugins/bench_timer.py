# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark-only callback: per task wall time and per item outcome, written as JSON.

Enabled by bench/converge_domains.py through ANSIBLE_CALLBACK_PLUGINS and
ANSIBLE_CALLBACKS_ENABLED; the output file is named by BENCH_TIMER_OUT.
Not part of the collection.
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: bench_timer
type: aggregate
short_description: Record task durations for bench/converge_domains.py
description:
  - Writes one JSON document with the duration of every task and the
    changed/failed outcome of every loop item to the file named by the
    environment variable E(BENCH_TIMER_OUT).
"""

import json
import os
import time

from ansible.plugins.callback import CallbackBase


def _payload(result):
    """The result dict, through the 2.19 property when it exists."""
    value = getattr(type(result), "result", None)
    return result.result if value is not None else result._result


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_timer"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._tasks = []
        self._current = None
        self._started = time.monotonic()

    def _close_current(self):
        if self._current is not None:
            self._current["seconds"] = time.monotonic() - self._current.pop("_t0")
            self._tasks.append(self._current)
            self._current = None

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._close_current()
        self._current = {"name": task.get_name(), "_t0": time.monotonic(),
                         "items": 0, "changed": 0, "failed": 0}

    def _item(self, result, failed):
        if self._current is None:
            return
        self._current["items"] += 1
        self._current["changed"] += int(bool(_payload(result).get("changed")))
        self._current["failed"] += int(failed)

    def v2_runner_item_on_ok(self, result):
        self._item(result, False)

    def v2_runner_item_on_failed(self, result):
        self._item(result, True)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        if self._current is not None and not _payload(result).get("results"):
            self._current["failed"] += 1

    def v2_playbook_on_stats(self, stats):
        self._close_current()
        target = os.environ.get("BENCH_TIMER_OUT")
        if not target:
            return
        document = {"since_callback_load": time.monotonic() - self._started, "tasks": self._tasks}
        with open(target, "w", encoding="utf-8") as handle:
            json.dump(document, handle)
