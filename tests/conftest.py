"""Make the working tree importable as ansible_collections.virtops.qemu.

The collection is linked into tests/.cache/collections so that tests import
the same ``ansible_collections.virtops.qemu...`` paths the modules use, and
ansible-playbook runs started by tests find it through
ANSIBLE_COLLECTIONS_PATH.

Under CI (CI=true) a skipped test fails the run (harness/ci_gate.py).  In
pytest-xdist workers, the longest test files start first (harness/schedule.py).
"""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(REPO, "tests", ".cache", "collections")
LINK = os.path.join(COLLECTIONS, "ansible_collections", "virtops", "qemu")

if not os.path.islink(LINK):
    os.makedirs(os.path.dirname(LINK), exist_ok=True)
    os.symlink(REPO, LINK)
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)
os.environ["ANSIBLE_COLLECTIONS_PATH"] = COLLECTIONS

TESTS = os.path.dirname(os.path.abspath(__file__))
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)

from harness import ci_gate, schedule  # noqa: E402  pylint: disable=wrong-import-position


def pytest_configure(config) -> None:
    ci_gate.pytest_configure(config)
    schedule.pytest_configure(config)
