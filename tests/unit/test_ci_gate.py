"""Under CI=true a skipped test fails the pytest run (tests/harness/ci_gate.py)."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

CONFTEST = "from harness.ci_gate import pytest_configure  # noqa: F401\n"
TESTS = """
import pytest

def test_passes():
    pass

def test_skipped_inside():
    pytest.skip("no widget here")

@pytest.mark.skipif(True, reason="widget absent")
def test_skipped_by_mark():
    pass

@pytest.mark.xfail(reason="known bug", strict=True)
def test_expected_failure():
    assert False
"""
ONLY_PASSING = """
import pytest

def test_passes():
    pass

@pytest.mark.xfail(reason="known bug", strict=True)
def test_expected_failure():
    assert False
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    return pytester


def test_skips_fail_the_run_under_ci(project, monkeypatch):
    monkeypatch.setenv("CI", "true")
    project.makepyfile(test_widgets=TESTS)
    result = project.runpytest()
    result.assert_outcomes(passed=1, skipped=2, xfailed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "*skipped tests fail the run under CI=true*",
        "SKIPPED test_widgets.py::test_skipped_inside: no widget here",
        "SKIPPED test_widgets.py::test_skipped_by_mark: widget absent",
    ])


def test_a_skipped_module_fails_the_run_under_ci(project, monkeypatch):
    monkeypatch.setenv("CI", "true")
    project.makepyfile(test_module="import pytest\npytest.skip('no module', allow_module_level=True)\n")
    result = project.runpytest()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["SKIPPED test_module.py: no module"])


def test_a_run_without_skips_passes_under_ci(project, monkeypatch):
    monkeypatch.setenv("CI", "true")
    project.makepyfile(test_widgets=ONLY_PASSING)
    result = project.runpytest()
    result.assert_outcomes(passed=1, xfailed=1)
    assert result.ret == pytest.ExitCode.OK
    assert "fail the run" not in result.stdout.str()


def test_a_failing_run_keeps_its_status_under_ci(project, monkeypatch):
    monkeypatch.setenv("CI", "true")
    project.makepyfile(test_widgets="import pytest\n\ndef test_fails():\n    pytest.skip('x')\n\n"
                                    "def test_broken():\n    assert False\n")
    result = project.runpytest()
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_skips_are_allowed_outside_ci(project, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    project.makepyfile(test_widgets=TESTS)
    result = project.runpytest()
    result.assert_outcomes(passed=1, skipped=2, xfailed=1)
    assert result.ret == pytest.ExitCode.OK
