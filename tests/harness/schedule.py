"""The order in which pytest-xdist's ``--dist loadfile`` hands test files to its workers: longest first.

xdist hands out whole files (a file's tests share their fixtures and guests)
in the order of their test counts, so a file of three long Molecule runs
started last and one worker ran it alone while the other had finished.
Giving each free worker the longest file left makes the two end together
(longest-processing-time-first), and a worker takes its next file only
when it is down to its last test (xdist's default takes it two tests
early, which can leave the next file waiting behind two long tests).

The seconds each file takes come from tests/file_seconds.json (checked in;
refresh it from a whole run's record, see below), updated by the record of
earlier whole runs on this machine in tests/.cache/file_seconds.json: the
setup, call and teardown seconds of each file.  A file that neither knows is new and starts first: a new
integration file is the likelier to be long.

The terminal summary of a run in workers tells when each worker finished
and how long it was busy: the difference of the finish times is the time
one worker waited for the other at the end.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import pytest
from xdist.scheduler import LoadFileScheduling

from . import CACHE, REPO

TABLE = REPO / "tests" / "file_seconds.json"
RECORD = CACHE / "file_seconds.json"


def _read(path: Path) -> dict[str, float]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def expected_seconds() -> dict[str, float]:
    return {**_read(TABLE), **_read(RECORD)}


class LongestFileFirst(LoadFileScheduling):
    """``--dist loadfile`` that gives a free worker the longest file left, when it is down to its last test."""

    def __init__(self, config, log=None):
        super().__init__(config, log)
        self.seconds = expected_seconds()

    def _assign_work_unit(self, node) -> None:
        longest = max(self.workqueue, key=lambda scope: self.seconds.get(scope, float("inf")))
        self.workqueue.move_to_end(longest, last=False)
        super()._assign_work_unit(node)

    def _reschedule(self, node) -> None:
        # A worker runs its last test only once it has the next one (or is told to stop):
        # one test left is the earliest moment it needs more work.
        if node.shutting_down:
            return
        if not self.workqueue:
            node.shutdown()
            return
        if self._pending_of(self.assigned_work[node]) <= 1:
            self._assign_work_unit(node)


class FileTimes:
    """Each file's setup, call and teardown seconds, and each worker's busy time and finish."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.files: dict[str, float] = defaultdict(float)
        self.busy: dict[str, float] = defaultdict(float)
        self.finished: dict[str, float] = {}

    @pytest.hookimpl(optionalhook=True)     # a hook of xdist's, absent with -p no:xdist
    def pytest_xdist_make_scheduler(self, config, log):
        if config.getvalue("dist") == "loadfile":
            return LongestFileFirst(config, log)
        return None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.files[report.nodeid.split("::", 1)[0]] += report.duration
        worker = getattr(report, "node", None)
        if worker is not None:
            name = worker.gateway.id
            self.busy[name] += report.duration
            self.finished[name] = time.monotonic() - self.start

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.files and whole_run(session.config):
            self.save()

    def save(self) -> None:
        record = {**_read(RECORD), **{name: round(seconds, 1) for name, seconds in self.files.items()}}
        RECORD.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=RECORD.parent, prefix=".file_seconds-", delete=False) as out:
            json.dump(dict(sorted(record.items())), out, indent=1)
            out.write("\n")
        os.replace(out.name, RECORD)

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.finished:
            return
        terminalreporter.section("workers")
        for name in sorted(self.finished):
            terminalreporter.line(f"{name}: busy {self.busy[name]:.0f} s, finished {self.finished[name]:.0f} s "
                                  "after the start")


def whole_run(config: pytest.Config) -> bool:
    """Every test of every file ran: a run of part of a file would record it as shorter than it is."""
    option = config.option
    return (config.args_source == pytest.Config.ArgsSource.TESTPATHS and not option.collectonly
            and not option.keyword and not option.markexpr and not option.deselect
            and not getattr(option, "lf", False))


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(FileTimes(), "virtops-file-times")
