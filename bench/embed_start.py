# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Start one small TCG guest three ways and compare how long it takes.

(a) bare QEMU: spawn ``qemu-system-x86_64 -S`` with a QMP socket, then
    connect, ``cont`` and ``query-status`` until it says running.  The
    command line is the one the embedded driver ran for the same domain
    (read back from /proc), only the per-run paths differ.
(b) the embedded driver (qemu:///embed): DomainManager.ensure for
    state=running, in this process, exactly as the domain module calls it
    (open_driver + ensure), without Ansible's own start-up.  Measured from a
    defined, shut-off domain and from nothing (define + start).
(c) libvirtd (qemu:///system by default): ``virsh start NAME`` wall time for
    a defined domain, and virDomainCreateWithFlags through libvirt-python in
    this process.

Every variant ends with the guest running and is stopped again (untimed)
before the next one.  One untimed warm-up round precedes the --runs timed
rounds; medians are reported with the ratios b/a and c/b.

Run from the repository's venv:  .venv/bin/python bench/embed_start.py
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
TEST_COLLECTIONS = REPO / "tests" / ".cache" / "collections"
OUR_LINK = TEST_COLLECTIONS / "ansible_collections" / "virtops" / "qemu"

PREFIX = "vobe-"
VIRSH = "virsh"
QMP_POLL = 0.001          # the bare reference polls its monitor socket every millisecond
QMP_TIMEOUT = 30.0
AIM_VS_BARE = 1.3         # (b) at most this many times (a), with DAC, cgroup and status records in
AIM_VS_LIBVIRT = 3.0      # (c) at least this many times (b)

DOMAIN_XML = """\
<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <bios rebootTimeout='-1'/>
  </os>
  <devices>
    <serial type='file'>
      <source path='{serial}'/>
      <target port='0'/>
    </serial>
  </devices>
</domain>
"""


def _importable() -> None:
    """Import the working tree as ansible_collections.virtops.qemu, as tests/conftest.py does."""
    if not OUR_LINK.is_symlink():
        OUR_LINK.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(REPO, OUR_LINK)
    if str(TEST_COLLECTIONS) not in sys.path:
        sys.path.insert(0, str(TEST_COLLECTIONS))


_importable()

import libvirt  # noqa: E402

from ansible_collections.virtops.qemu.plugins.module_utils.driver.connect import open_driver  # noqa: E402
from ansible_collections.virtops.qemu.plugins.module_utils.manager.domain import (  # noqa: E402
    DomainManager, request_from_params)


class Interrupted(Exception):
    pass


def _on_signal(signum, _frame):
    raise Interrupted(f"signal {signum}")


# -- (a) bare QEMU ------------------------------------------------------------------
class BareQemu:
    """The reference: QEMU started by hand with the driver's argv, driven over raw QMP."""

    def __init__(self, argv: list[str], env: dict[str, str], rundir: Path):
        self.argv, self.env, self.rundir = argv, env, rundir
        self.monitor = rundir / "monitor.sock"
        self.log = rundir / "qemu.log"
        self.child: subprocess.Popen | None = None

    def start(self) -> float:
        """Spawn paused, resume over QMP, wait for 'running'; returns the seconds it took."""
        for stale in (self.monitor, self.rundir / "qemu.pid"):
            stale.unlink(missing_ok=True)
        began = time.perf_counter()
        fd = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            self.child = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd,
                                          env=self.env, cwd="/", close_fds=True, start_new_session=True)
        finally:
            os.close(fd)
        with RawQMP(self._connect()) as qmp:
            qmp.command("qmp_capabilities")
            qmp.command("cont")
            while qmp.command("query-status")["status"] != "running":
                time.sleep(QMP_POLL)
        return time.perf_counter() - began

    def _connect(self) -> socket.socket:
        deadline = time.monotonic() + QMP_TIMEOUT
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(self.monitor))
                return sock
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
            if self.child.poll() is not None:
                raise RuntimeError(f"bare QEMU exited with {self.child.returncode}: "
                                   f"{self.log.read_text(errors='replace')[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"bare QEMU: {self.monitor} never accepted a connection")
            time.sleep(QMP_POLL)

    def stop(self) -> None:
        if self.child is None:
            return
        if self.child.poll() is None:
            try:
                with RawQMP(self._connect()) as qmp:
                    qmp.command("qmp_capabilities")
                    qmp.command("quit")
            except (OSError, RuntimeError, ValueError):
                pass
            try:
                self.child.wait(10)
            except subprocess.TimeoutExpired:
                self.child.kill()
                self.child.wait()
        self.child = None


class RawQMP:
    """Just enough QMP: greeting, then one command at a time, events skipped."""

    def __init__(self, sock: socket.socket):
        sock.settimeout(QMP_TIMEOUT)
        self.sock, self.buffer = sock, b""
        if "QMP" not in self._message():
            raise RuntimeError("no QMP greeting")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sock.close()

    def command(self, command: str):
        self.sock.sendall(json.dumps({"execute": command}).encode() + b"\n")
        while True:
            message = self._message()
            if "error" in message:
                raise RuntimeError(f"QMP {command}: {message['error']}")
            if "return" in message:
                return message["return"]

    def _message(self) -> dict:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError("QEMU closed the monitor")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)


# -- (b) embedded driver ----------------------------------------------------------------
class Embedded:
    def __init__(self, uri: str, name: str, xml: str):
        self.uri, self.name, self.xml = uri, name, xml

    def ensure(self, params: dict) -> tuple[float, float, dict]:
        """What the domain module does after AnsibleModule: (open+ensure s, ensure-only s, result)."""
        began = time.perf_counter()
        request = request_from_params(params)
        with open_driver(self.uri) as driver:
            opened = time.perf_counter()
            result = DomainManager(driver).ensure(request, False)
            ended = time.perf_counter()
        if result["state"] != "running":
            raise RuntimeError(f"embedded ensure left the domain {result['state']}")
        return ended - began, ended - opened, result

    def start(self) -> tuple[float, float]:
        total, core = self.ensure({"name": self.name, "state": "running"})[:2]
        return total, core

    def define_and_start(self) -> tuple[float, float]:
        total, core = self.ensure({"name": self.name, "xml": self.xml, "state": "running"})[:2]
        return total, core

    def define(self) -> None:
        with open_driver(self.uri) as driver:
            driver.domains.define(self.xml)

    def stop(self, undefine: bool = False) -> None:
        with open_driver(self.uri) as driver:
            if not driver.domains.exists(self.name):
                return
            if driver.domains.status(self.name).active:
                driver.domains.destroy(self.name)
            if undefine:
                driver.domains.undefine(self.name)

    def pid(self) -> int:
        status = Path(self.uri.split("root=", 1)[1], "run", "qemu", f"{self.name}.pid")
        return int(status.read_text().split()[0])


# -- (c) libvirtd -----------------------------------------------------------------
class Libvirtd:
    def __init__(self, uri: str, name: str, xml: str, xml_file: Path):
        self.uri, self.name = uri, name
        xml_file.write_text(xml)
        self.xml_file = xml_file
        self.conn = libvirt.open(uri)
        self.defined = False

    def define(self) -> None:
        _run([VIRSH, "-q", "-c", self.uri, "define", str(self.xml_file)])
        self.defined = True

    def virsh_start(self) -> float:
        began = time.perf_counter()
        _run([VIRSH, "-q", "-c", self.uri, "start", self.name])
        elapsed = time.perf_counter() - began
        self._check_running()
        return elapsed

    def api_start(self) -> float:
        domain = self.conn.lookupByName(self.name)
        began = time.perf_counter()
        domain.createWithFlags(0)
        elapsed = time.perf_counter() - began
        self._check_running()
        return elapsed

    def _check_running(self) -> None:
        state = self.conn.lookupByName(self.name).state()[0]
        if state != libvirt.VIR_DOMAIN_RUNNING:
            raise RuntimeError(f"libvirt domain {self.name} is in state {state} after start")

    def stop(self) -> None:
        try:
            domain = self.conn.lookupByName(self.name)
        except libvirt.libvirtError:
            return
        if domain.isActive():
            domain.destroy()

    def remove(self) -> None:
        try:
            self.stop()
            self.conn.lookupByName(self.name).undefine()
        except libvirt.libvirtError:
            pass
        finally:
            self.conn.close()


def _run(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


# -- the benchmark ---------------------------------------------------------------
def bare_command(embedded: Embedded, rundir: Path) -> tuple[list[str], dict[str, str]]:
    """The argv and environment the embedded driver ran, re-pointed at the bare run's directory."""
    pid = embedded.pid()
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").decode().split("\0")
    env = dict(item.split("=", 1) for item in
               Path(f"/proc/{pid}/environ").read_bytes().rstrip(b"\0").decode().split("\0") if "=" in item)
    root = embedded.uri.split("root=", 1)[1]
    # The driver hands QEMU its monitor as a listening descriptor; the bare run gives it a path instead.
    domain_dir = env["HOME"]
    argv = [f"socket,id=charmonitor,path={domain_dir}/monitor.sock,server=on,wait=off"
            if a.startswith("socket,id=charmonitor,") else a for a in argv]
    swaps = {
        domain_dir: str(rundir),
        os.path.join(root, "run", "qemu", f"{embedded.name}.pid"): str(rundir / "qemu.pid"),
        os.path.join(root, "run", "qemu", f"{embedded.name}.trace"): str(rundir / "qemu.trace"),
    }

    def swap(text: str) -> str:
        for old, new in swaps.items():
            text = text.replace(old, new)
        return text

    argv = [swap(arg) for arg in argv]
    env = {key: swap(value) for key, value in env.items()}
    if root in " ".join(argv) or not any(str(rundir) in a for a in argv):
        raise RuntimeError(f"could not re-point the driver's command line at {rundir}: {argv}")
    return argv, env


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def run(args, workdir: Path, cleanups: list) -> int:
    name = f"{PREFIX}{secrets.token_hex(3)}"
    embed_uri = f"qemu:///embed?root={workdir / 'r'}"
    embedded = Embedded(embed_uri, name, DOMAIN_XML.format(name=name, serial=workdir / "serial-embed.log"))
    cleanups.append(lambda: embedded.stop(undefine=True))

    # The embedded driver's own start gives the argv for the bare reference.
    first_call = embedded.define_and_start()[0]
    rundir = workdir / "bare"
    rundir.mkdir(mode=0o700)
    argv, env = bare_command(embedded, rundir)
    argv = [a.replace(str(workdir / "serial-embed.log"), str(workdir / "serial-bare.log")) for a in argv]
    embedded.stop()
    bare = BareQemu(argv, env, rundir)
    cleanups.append(bare.stop)

    libvirt_side = Libvirtd(args.uri, name, DOMAIN_XML.format(name=name, serial=workdir / "serial-libvirt.log"),
                            workdir / "libvirt.xml")
    cleanups.append(libvirt_side.remove)
    libvirt_side.define()

    def bare_round():
        try:
            return bare.start()
        finally:
            bare.stop()

    def embed_round():
        try:
            return embedded.start()
        finally:
            embedded.stop()

    def embed_fresh_round():
        embedded.stop(undefine=True)
        try:
            return embedded.define_and_start()
        finally:
            embedded.stop()

    def virsh_round():
        try:
            return libvirt_side.virsh_start()
        finally:
            libvirt_side.stop()

    def api_round():
        try:
            return libvirt_side.api_start()
        finally:
            libvirt_side.stop()

    rounds = {"a": bare_round, "b": embed_round, "b+define": embed_fresh_round,
              "c virsh": virsh_round, "c api": api_round}
    samples: dict[str, list] = {key: [] for key in rounds}
    order = list(rounds)
    print(f"guest {name}: TCG, 128 MiB, 1 vCPU, no disk, no NIC, serial to a file; "
          f"{args.runs} runs after 1 warm-up", flush=True)
    for index in range(args.runs + 1):
        turn = order[index % len(order):] + order[:index % len(order)]    # who goes first rotates
        for key in turn:
            value = rounds[key]()
            if index:
                samples[key].append(value)
        if index:
            print(f"  run {index}: " + ", ".join(f"{k} {_ms(samples[k][-1])}" for k in order), flush=True)

    report(args, samples, argv, first_call)
    missed = (statistics.median(pair[0] for pair in samples["b"]) > AIM_VS_BARE * statistics.median(samples["a"])
              or statistics.median(samples["c virsh"]) < AIM_VS_LIBVIRT * statistics.median(
                  pair[0] for pair in samples["b"]))
    if args.profile or missed:
        profile(embedded, args.profile_runs, args.profile_lines)
    return 0


def _first(value):
    return value[0]


def _verdict(good: bool) -> str:
    return "ok" if good else "MISSED"


def _ms(value) -> str:
    total = value[0] if isinstance(value, tuple) else value
    return f"{total * 1000:.1f}"


def report(args, samples: dict, argv: list[str], first_call: float) -> None:
    a = median_ms(samples["a"])
    b = median_ms([pair[0] for pair in samples["b"]])
    b_core = median_ms([pair[1] for pair in samples["b"]])
    bd = median_ms([pair[0] for pair in samples["b+define"]])
    bd_core = median_ms([pair[1] for pair in samples["b+define"]])
    cv = median_ms(samples["c virsh"])
    ca = median_ms(samples["c api"])

    def spread(key, pick=lambda v: v):
        values = [pick(v) * 1000 for v in samples[key]]
        return f"{min(values):8.1f} {max(values):8.1f}"

    print()
    print(f"host: {platform.node()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; "
          f"{Path(argv[0]).name}; libvirt {args.uri}")
    print()
    print(f"{'':44} {'median ms':>10} {'min':>8} {'max':>8}")
    print(f"{'(a) bare QEMU -S, QMP cont, running':44} {a:10.1f} {spread('a')}")
    print(f"{'(b) embed ensure running, defined+shutoff':44} {b:10.1f} {spread('b', _first)}")
    print(f"{'    of which ensure() (driver opened)':44} {b_core:10.1f}")
    print(f"{'(b) embed ensure running, from nothing':44} {bd:10.1f} {spread('b+define', _first)}")
    print(f"{'    of which ensure() (driver opened)':44} {bd_core:10.1f}")
    print(f"{'    first call in this process (untimed set-up)':44} {first_call * 1000:10.1f}")
    print(f"{'(c) virsh start (process wall time)':44} {cv:10.1f} {spread('c virsh')}")
    print(f"{'(c) libvirt-python createWithFlags':44} {ca:10.1f} {spread('c api')}")
    print()
    print(f"b/a        = {b / a:5.2f}   (aim <= {AIM_VS_BARE})  {_verdict(b / a <= AIM_VS_BARE)}")
    print(f"c virsh/b  = {cv / b:5.2f}   (aim >= {AIM_VS_LIBVIRT})  {_verdict(cv / b >= AIM_VS_LIBVIRT)}")
    print(f"c api/b    = {ca / b:5.2f}")
    print(f"b+define/a = {bd / a:5.2f}, c virsh/(b+define) = {cv / bd:5.2f}")
    if args.show_argv:
        print()
        print("bare argv: " + " ".join(argv))


def profile(embedded: Embedded, runs: int, lines: int) -> None:
    """cProfile of open_driver + ensure(state=running) from shut-off, summed over ``runs`` starts."""
    profiler = cProfile.Profile()
    wall = []
    for _run in range(runs):
        began = time.perf_counter()
        profiler.enable()
        embedded.start()
        profiler.disable()
        wall.append(time.perf_counter() - began)
        embedded.stop()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.strip_dirs()
    print()
    print(f"profile: {runs} embedded starts from shut-off, {median_ms(wall):.1f} ms median under the profiler;"
          f" cumulative time per start (ms)")
    entries = []
    for (filename, line, function), (_cc, calls, tottime, cumtime, _callers) in stats.stats.items():
        entries.append((cumtime / runs * 1000, tottime / runs * 1000, calls / runs, f"{filename}:{line}({function})"))
    print(f"{'cum ms':>8} {'own ms':>8} {'calls':>7}  function")
    for cum, own, calls, where in sorted(entries, reverse=True)[:lines]:
        print(f"{cum:8.2f} {own:8.2f} {calls:7.1f}  {where}")
    print()
    print(f"{'own ms':>8} {'calls':>7}  function (by own time)")
    for cum, own, calls, where in sorted(entries, key=lambda e: e[1], reverse=True)[:lines // 2]:
        print(f"{own:8.2f} {calls:7.1f}  {where}")


def kill_leftovers(workdir: Path) -> None:
    """SIGKILL QEMUs whose command line names this run's private directory (nothing else can)."""
    needle = str(workdir).encode() + b"/"
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.startswith(b"/") and b"qemu-system" in cmdline.split(b"\0")[0] and needle in cmdline:
            try:
                os.kill(int(entry), signal.SIGKILL)
            except ProcessLookupError:
                pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--runs", type=int, default=5, help="timed rounds (default 5), after one warm-up")
    parser.add_argument("--uri", default="qemu:///system", help="libvirtd URI for (c) (default qemu:///system)")
    parser.add_argument("--profile", action="store_true",
                        help="profile the embedded start even when it meets the aims")
    parser.add_argument("--profile-runs", type=int, default=5, help="starts under cProfile (default 5)")
    parser.add_argument("--profile-lines", type=int, default=30, help="profile lines shown (default 30)")
    parser.add_argument("--show-argv", action="store_true", help="print the bare QEMU command line")
    parser.add_argument("--keep-workdir", action="store_true", help="keep logs and XML under /var/tmp")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    # Short and under /var/tmp: monitor sockets must fit in 108 bytes; 0755 so that the
    # libvirt-run QEMU can reach its serial file here too.
    workdir = Path(tempfile.mkdtemp(prefix=PREFIX, dir="/var/tmp"))
    workdir.chmod(0o755)
    cleanups: list = []
    try:
        return run(args, workdir, cleanups)
    except (Interrupted, KeyboardInterrupt) as exc:
        print(f"interrupted ({exc or 'Ctrl-C'}); cleaning up", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for cleanup in reversed(cleanups):
            try:
                cleanup()
            except Exception as exc:  # noqa: BLE001  (keep cleaning)
                print(f"cleanup: {exc}", file=sys.stderr)
        kill_leftovers(workdir)
        if args.keep_workdir:
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
