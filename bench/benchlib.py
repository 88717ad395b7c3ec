# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the benchmarks share: community.libvirt fetched offline, the working tree as
virtops.qemu, subprocess helpers and timed ansible-playbook runs.

Not part of the collection.  The scripts in bench/ import it as ``benchlib``
(their own directory is first on sys.path when run as ``python bench/X.py``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
CACHE = BENCH / ".cache"
BENCH_COLLECTIONS = CACHE / "collections"
TEST_COLLECTIONS = REPO / "tests" / ".cache" / "collections"
OUR_LINK = TEST_COLLECTIONS / "ansible_collections" / "virtops" / "qemu"
REFERENCE_PREFIX = "ansible_collections/community/libvirt/"
REFERENCE_MANIFEST = BENCH_COLLECTIONS / "ansible_collections" / "community" / "libvirt" / "MANIFEST.json"
REQUIREMENTS = BENCH / "requirements.txt"


class BenchError(Exception):
    pass


# -- setup ------------------------------------------------------------------

def pinned_ansible() -> str:
    """The `ansible==X` line of bench/requirements.txt."""
    for line in REQUIREMENTS.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        match = re.fullmatch(r"ansible==([\w.]+)", line)
        if match:
            return match.group(1)
    raise BenchError(f"{REQUIREMENTS} pins no ansible==<version>")


def ensure_reference_collection(log) -> str:
    """Extract community.libvirt from the pinned ansible wheel unless it is cached."""
    if not REFERENCE_MANIFEST.exists():
        version = pinned_ansible()
        log(f"community.libvirt is not cached; fetching it from ansible=={version} (PyPI wheel, not installed)")
        BENCH_COLLECTIONS.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="download-", dir=CACHE) as tmp:
            run_checked([sys.executable, "-m", "pip", "download", f"ansible=={version}", "--no-deps",
                         "--only-binary=:all:", "--quiet", "--dest", tmp])
            wheels = sorted(Path(tmp).glob("ansible-*.whl"))
            if not wheels:
                raise BenchError("pip download produced no ansible wheel")
            staging = Path(tmp) / "collections"
            with zipfile.ZipFile(wheels[0]) as wheel:
                members = [m for m in wheel.namelist() if m.startswith(REFERENCE_PREFIX)]
                if not members:
                    raise BenchError(f"{wheels[0].name} does not bundle community.libvirt")
                for member in members:
                    parts = Path(member).parts
                    if ".." in parts or Path(member).is_absolute():
                        raise BenchError(f"unsafe path in wheel: {member}")
                    wheel.extract(member, staging)
            target = BENCH_COLLECTIONS / "ansible_collections" / "community"
            target.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(target / "libvirt", ignore_errors=True)
            (staging / "ansible_collections" / "community" / "libvirt").rename(target / "libvirt")
    manifest = json.loads(REFERENCE_MANIFEST.read_text(encoding="utf-8"))
    return manifest["collection_info"]["version"]


def ensure_our_collection_link() -> None:
    """The same link tests/conftest.py makes: the working tree as virtops.qemu."""
    if not OUR_LINK.is_symlink():
        OUR_LINK.parent.mkdir(parents=True, exist_ok=True)
        OUR_LINK.symlink_to(REPO)


def run_checked(argv, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    if proc.returncode != 0:
        raise BenchError(f"{argv[0]} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def run_group(argv, **kwargs) -> int:
    """Run ``argv`` in its own process group; if we are interrupted, stop the whole group.

    ansible-playbook runs loop items in forked workers: killing only the main
    process would leave a worker creating domains after the cleanup.
    """
    proc = subprocess.Popen(argv, start_new_session=True, **kwargs)
    try:
        return proc.wait()
    except BaseException:
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                continue
            # The leader is gone; give the workers a moment, then make sure.
            time.sleep(0.5)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        raise


@dataclass
class Playbook:
    wall: float                 # ansible-playbook process, start to exit
    tasks: float                # sum of task durations (bench_timer callback)
    calls: int                  # module invocations (loop items)
    changed: int
    failed: int


class PlaybookRunner:
    """ansible-playbook against localhost with the bench_timer callback; one Playbook per run."""

    def __init__(self, workdir: Path, pipelining: bool = False, extra_env: dict | None = None):
        self.workdir = workdir
        self.playbook_bin = str(Path(sys.executable).with_name("ansible-playbook"))
        if not Path(self.playbook_bin).exists():
            raise BenchError(f"{self.playbook_bin} not found; run with the venv's python")
        self.inventory = workdir / "inventory.ini"
        self.inventory.write_text(
            f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n",
            encoding="utf-8")
        self.env = dict(os.environ)
        self.env.update({
            "ANSIBLE_COLLECTIONS_PATH": os.pathsep.join([str(BENCH_COLLECTIONS), str(TEST_COLLECTIONS)]),
            "ANSIBLE_CALLBACK_PLUGINS": str(BENCH / "callback_plugins"),
            "ANSIBLE_CALLBACKS_ENABLED": "bench_timer",
            "ANSIBLE_LOCAL_TEMP": str(workdir / "ansible-local"),
            "ANSIBLE_REMOTE_TEMP": str(workdir / "ansible-remote"),
            "ANSIBLE_RETRY_FILES_ENABLED": "false",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_DEPRECATION_WARNINGS": "false",
            "ANSIBLE_PIPELINING": "true" if pipelining else "false",
            **(extra_env or {}),
        })
        self.env.pop("ANSIBLE_CONFIG", None)

    def run(self, playbook: Path, varsfile: Path, label: str, prefix: list[str] | None = None) -> Playbook:
        """Run ``playbook`` with ``-e @varsfile``; ``prefix`` goes before the argv (ip netns exec ...)."""
        timer = self.workdir / f"timer-{label}.json"
        logfile = self.workdir / f"log-{label}.txt"
        timer.unlink(missing_ok=True)
        env = dict(self.env, BENCH_TIMER_OUT=str(timer))
        argv = [*(prefix or []), self.playbook_bin, "-i", str(self.inventory), "-e", f"@{varsfile}", str(playbook)]
        start = time.perf_counter()
        with open(logfile, "w", encoding="utf-8") as out:
            returncode = run_group(argv, env=env, cwd=self.workdir, stdout=out, stderr=subprocess.STDOUT)
        wall = time.perf_counter() - start
        if not timer.exists():
            raise BenchError(f"{label}: ansible-playbook exited {returncode} without timings; see {logfile}")
        tasks = json.loads(timer.read_text(encoding="utf-8"))["tasks"]
        result = Playbook(wall=wall, tasks=sum(t["seconds"] for t in tasks),
                          calls=sum(t["items"] for t in tasks),
                          changed=sum(t["changed"] for t in tasks), failed=sum(t["failed"] for t in tasks))
        if returncode != 0 or result.failed:
            raise BenchError(f"{label}: ansible-playbook failed (rc={returncode}); see {logfile}")
        return result


def median(values):
    return statistics.median(values) if values else float("nan")


def daemon_version(uri: str) -> str:
    out = run_checked(["virsh", "-c", uri, "version", "--daemon"]).stdout
    match = re.search(r"Running against daemon: ([\w.]+)", out)
    return match.group(1) if match else "?"


def ansible_core_version() -> str:
    out = run_checked([str(Path(sys.executable).with_name("ansible-playbook")), "--version"]).stdout
    return (re.search(r"core ([\w.]+)", out) or ["", "?"])[1]


LIBVIRT_NETWORK_RUN = Path("/run/libvirt/network")


def drop_stale_dnsmasq_pidfile(name: str) -> None:
    """libvirtd 9 leaves the pidfile of an undefined network's dnsmasq behind; remove ours."""
    (LIBVIRT_NETWORK_RUN / f"{name}.pid").unlink(missing_ok=True)
