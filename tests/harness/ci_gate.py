"""Under CI (environment CI=true) a skipped test fails the run.

Every component the tests need is installed by tools/setup and started by the
harness, so in CI a skip can only mean something is missing that should not
be: the run exits non-zero and names the skipped tests. tests/conftest.py
imports ``pytest_configure`` from here.
"""

from __future__ import annotations

import os

import pytest


def ci_enabled() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


class SkipGate:
    """Collects skips (of tests and of whole modules) and fails the session on any."""

    def __init__(self) -> None:
        self.skipped: list[tuple[str, str]] = []

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.skipped:
            self.skipped.append((report.nodeid, _reason(report)))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # an expected failure is reported as skipped too, with wasxfail set
        if report.skipped and not hasattr(report, "wasxfail"):
            self.skipped.append((report.nodeid, _reason(report)))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.skipped and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.skipped:
            return
        terminalreporter.section("skipped tests fail the run under CI=true", sep="=", red=True, bold=True)
        for nodeid, reason in self.skipped:
            terminalreporter.line(f"SKIPPED {nodeid}: {reason}")


def _reason(report: pytest.CollectReport | pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def pytest_configure(config: pytest.Config) -> None:
    if ci_enabled():
        config.pluginmanager.register(SkipGate(), "virtops-ci-skip-gate")
