"""The unit tests share one in-memory driver (tests/unit/fakes.py, imported as ``fakes``)
and a temporary directory short enough for UNIX socket paths."""

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

UNIT = os.path.dirname(os.path.abspath(__file__))
if UNIT not in sys.path:
    sys.path.insert(0, UNIT)


@pytest.fixture
def short_tmp_path():
    """A fresh directory with a short path: the embedded driver refuses socket paths over
    107 bytes, and pytest's tmp_path grows with the test's name and the xdist worker."""
    path = tempfile.mkdtemp(prefix="vo-")
    try:
        yield Path(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)
