"""The ``libvirt`` marker: the libvirt param of a backend parametrisation, and which tests use a libvirtd.

``BACKENDS`` are the params of a fixture that runs a test on each backend;
its libvirt half carries the marker.  A test uses a libvirtd when a fixture
it needs, directly or through other fixtures, starts or reuses one
(LIBVIRTD_FIXTURES), or when it runs the libvirt half of a backend
parametrisation: a fixture whose param is "libvirt" asks for the libvirtd
with ``request.getfixturevalue``, which no fixture closure shows.  Every
such test must carry the ``libvirt`` marker, so that ``pytest -m "not
libvirt"`` starts no libvirtd.

As a pytest plugin (tests/unit/test_libvirt_marker.py), ``pytest -p
harness.libvirt_marker --collect-only`` with VIRTOPS_LIBVIRTD_USERS=PATH
writes {node id: carries the marker} of each collected test that uses a
libvirtd to PATH, as JSON.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

# The fixtures that start a libvirtd or hand out the harness's one.
LIBVIRTD_FIXTURES = frozenset({"libvirtd", "private_libvirtd", "libvirtd_with_iscsi_direct"})
# The param of a backend parametrisation that selects libvirtd.
LIBVIRT_PARAM = "libvirt"
LIBVIRT = pytest.param(LIBVIRT_PARAM, marks=pytest.mark.libvirt)
BACKENDS = (LIBVIRT, "embed")


def uses_libvirtd(item: pytest.Item) -> bool:
    if LIBVIRTD_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return False
    # Only a fixture's own params; a test's parametrize arguments (say, an
    # expected backend name) give their fixture definition no params.
    definitions = item._fixtureinfo.name2fixturedefs     # type: ignore[attr-defined]
    return any(value == LIBVIRT_PARAM and any(d.params for d in definitions.get(name, ()))
               for name, value in callspec.params.items())


def pytest_collection_finish(session: pytest.Session) -> None:
    target = os.environ.get("VIRTOPS_LIBVIRTD_USERS")
    if target:
        users = {item.nodeid: item.get_closest_marker("libvirt") is not None
                 for item in session.items if uses_libvirtd(item)}
        Path(target).write_text(json.dumps(users, indent=1), encoding="utf-8")
