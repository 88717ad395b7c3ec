"""Fixtures for integration tests: libvirtd, the TCG test guest, work dirs.

- ``libvirtd`` (session): a libvirtd on qemu:///system, reused if running,
  else started in a private network namespace and stopped afterwards.
- ``guest_build`` (session): the cached guest in tests/.cache/guest/.
- ``guest`` (session): the same guest copied where QEMU run by libvirt as
  libvirt-qemu can read it.
- ``cloud_image`` (session): the cached Debian 12 cloud image
  (harness.cloud_image).
- ``workdir`` (per test): an empty world-readable directory for serial logs,
  disks and sockets; short enough for UNIX socket paths.
- ``domain_name`` (per test): a unique domain name; the domain is destroyed
  and undefined after the test.
- ``root`` / ``driver`` (per test): a private embedded-driver root under /tmp
  and the driver on it; its QEMUs are killed and its files removed afterwards.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

TESTS = str(Path(__file__).resolve().parents[1])
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)

from ansible_collections.virtops.qemu.plugins.module_utils.driver.connect import open_driver  # noqa: E402
from harness.cloud_image import CloudImage, build_cloud_image  # noqa: E402
from harness.embed import private_root  # noqa: E402
from harness.guest import Guest, build_guest  # noqa: E402
from harness.libvirt_marker import BACKENDS  # noqa: E402
from harness.libvirtd import Libvirtd  # noqa: E402

RUNS_ROOT = Path("/var/tmp/virtops-tests")


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("the integration tests run as root (libvirtd, namespaces, QEMU as libvirt-qemu)", pytrace=False)


@pytest.fixture(scope="session")
def libvirtd():
    _need_root()
    daemon = Libvirtd.start()
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="session")
def guest_build() -> Guest:
    return build_guest()


@pytest.fixture(scope="session")
def cloud_image() -> CloudImage:
    return build_cloud_image()


@pytest.fixture(scope="session")
def run_dir():
    path = RUNS_ROOT / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    path.mkdir(parents=True, mode=0o755)
    for directory in (RUNS_ROOT, path):
        directory.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        try:
            RUNS_ROOT.rmdir()
        except OSError:
            pass  # other runs still use it


@pytest.fixture(scope="session")
def guest(guest_build: Guest, run_dir: Path) -> Guest:
    target = run_dir / "guest"
    target.mkdir(mode=0o755)
    kernel = Path(shutil.copy(guest_build.kernel, target / "vmlinuz"))
    initrd = Path(shutil.copy(guest_build.initrd, target / "initrd.img"))
    for path in (target, kernel, initrd):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return replace(guest_build, kernel=kernel, initrd=initrd)


@pytest.fixture
def workdir(request, run_dir: Path) -> Path:
    # Short names keep QMP/monitor socket paths under 108 bytes.
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)[:40]
    path = run_dir / f"{slug}-{secrets.token_hex(2)}"
    path.mkdir(mode=0o755)
    path.chmod(0o755)
    return path


@pytest.fixture
def domain_name(libvirtd: Libvirtd):
    name = f"virtops-test-{secrets.token_hex(4)}"
    yield name
    libvirtd.virsh("destroy", name, check=False)
    libvirtd.virsh("undefine", name, "--nvram", check=False)
    Path(f"/var/log/libvirt/qemu/{name}.log").unlink(missing_ok=True)


@pytest.fixture
def root():
    """A private embedded-driver root under /tmp; its QEMUs are killed and its files removed afterwards."""
    _need_root()
    with private_root() as path:
        yield path


@pytest.fixture
def driver(root):
    """The embedded driver on ``root``."""
    with open_driver(f"qemu:///embed?root={root}") as drv:
        yield drv


@pytest.fixture(scope="session")
def embed_backend():
    from harness.backends import EmbedBackend

    _need_root()
    # Short: the monitor socket path must stay under 108 bytes.
    backend = EmbedBackend(f"/var/tmp/vte-{secrets.token_hex(3)}")
    try:
        yield backend
    finally:
        backend.close()


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Each backend in turn, for scenarios that must behave the same on both."""
    if request.param == "libvirt":
        from harness.backends import LibvirtBackend
        return LibvirtBackend(request.getfixturevalue("libvirtd"))
    return request.getfixturevalue("embed_backend")


@pytest.fixture
def vm(backend):
    """A unique domain name on the backend under test, removed afterwards."""
    name = f"virtops-test-{secrets.token_hex(4)}"
    yield name
    backend.remove(name)
    Path(f"/var/log/libvirt/qemu/{name}.log").unlink(missing_ok=True)


@pytest.fixture
def netns():
    """A private network namespace (harness.netns.Netns), deleted with all it holds afterwards."""
    from harness.netns import private_netns

    _need_root()
    with private_netns() as namespace:
        yield namespace
