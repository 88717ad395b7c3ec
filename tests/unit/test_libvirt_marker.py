"""`pytest -m "not libvirt"` starts no libvirtd: every test that uses one carries the marker.

The suite is collected (not run) in a child pytest with the
harness.libvirt_marker plugin, which lists the collected tests that use a
libvirtd: through a fixture that starts or hands out one, or through the
libvirt half of a backend parametrisation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def libvirtd_users(tmp_path: Path, *args: str) -> dict[str, bool]:
    """{node id: carries the libvirt marker} of the collected tests that use a libvirtd."""
    report = tmp_path / "users.json"
    env = {**os.environ, "VIRTOPS_LIBVIRTD_USERS": str(report),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "tests"), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "harness.libvirt_marker",
         "--collect-only", "-q", *args, "tests"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(report.read_text(encoding="utf-8"))


def test_every_test_that_uses_a_libvirtd_carries_the_marker(tmp_path):
    users = libvirtd_users(tmp_path)
    # Both kinds of use are seen: a backend parametrisation's libvirt half
    # and a fixture that starts a libvirtd of its own.
    assert "tests/integration/test_domain.py::test_autostart[libvirt]" in users
    assert "tests/integration/test_domain.py::test_autostart[embed]" not in users
    assert "tests/integration/test_qemu_conf_module.py::test_absent_returns_keys_to_the_shipped_text" in users
    assert [node for node, marked in users.items() if not marked] == []


def test_not_libvirt_collects_no_test_that_uses_a_libvirtd(tmp_path):
    assert libvirtd_users(tmp_path, "-m", "not libvirt") == {}
