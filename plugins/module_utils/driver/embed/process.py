# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""QEMU processes and host resources of the embedded driver.

QEMU must outlive the module run that started it.  It is not started with
``-daemonize``: QEMU forks to daemonize after installing its seccomp filter,
and the ``-sandbox ...,spawn=deny`` policy libvirt uses (and command.py
emits) kills that fork with SIGSYS.  Instead QEMU is spawned the way libvirt
spawns it: in a session of its own, cwd /, stdin from /dev/null,
stdout/stderr appended to ``log/qemu/<name>.log``, with ``-pidfile``; it is
reparented to init when the module exits.  ``-D`` sends two trace events
(``runstate_set``, ``qemu_system_shutdown_request``) to a file of their own,
QEMU's own record of how it stopped.  QEMU removes its pidfile on every
orderly exit, so a dead pid whose pidfile is still there was killed or
crashed.

A pid is trusted as a domain's QEMU only while its start time is the
recorded one, or, where no start time is known, while its command line
names the domain's uuid (QEMU is started with ``-uuid``): pids are reused.
Private to the collection.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shlex
import signal
import socket
import struct
import subprocess
import time
from datetime import datetime, timezone

from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError, InvalidInput

LOG_TAIL_BYTES = 4000
TRACE_EVENTS = ("runstate_set", "qemu_system_shutdown_request")
IP = "ip"
IFNAMSIZ = 16               # <linux/if.h>: a link name and its NUL
IFREQ_SIZE = 40             # sizeof(struct ifreq) on Linux
SIOCGIFHWADDR = 0x8927      # <linux/sockios.h>
TAP_PREFIX = "vnet"

# QEMU's ShutdownCause for a guest panic.
_GUEST_PANIC = 8
_RUNSTATE = re.compile(r"runstate_set .*new_state \d+ \(([\w-]+)\)")
_SHUTDOWN = re.compile(r"qemu_system_shutdown_request reason=(\d+)")
# QEMUs started by this process, so that their exit is reaped rather than left a zombie.
_CHILDREN: dict[int, subprocess.Popen] = {}


# -- starting ---------------------------------------------------------------
def runtime_args(pidfile: str, trace_file: str, with_trace: bool) -> list[str]:
    args = ["-pidfile", pidfile]
    if with_trace:
        args += ["-D", trace_file]
        for event in TRACE_EVENTS:
            args += ["-trace", event]
    return args


def listen_monitor(path: str, owner: tuple[int, int] | None) -> socket.socket:
    """The QMP socket, bound and listening, for QEMU to inherit: connecting to it never has to wait
    for QEMU to come up.  Owned by QEMU's user, as when QEMU made it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        if owner is not None:
            os.chown(path, *owner)
        sock.listen(1)
    except OSError as exc:
        sock.close()
        raise BackendError(f"cannot make the monitor socket {path}: {exc}") from exc
    return sock


def spawn(argv: list[str], env: dict, log_file: str, prefix: tuple[str, ...] = (),
          pass_fds: tuple[int, ...] = (), spawner=None) -> tuple[subprocess.Popen, int]:
    """Start QEMU detached from this process's session; returns it and where its output begins.

    ``prefix`` is a command QEMU's argv is run under (security.exec_prefix: setpriv).  No Python
    runs between fork and exec, so the child is made with vfork and this returns once it executes.
    ``pass_fds`` stay open in QEMU.  ``spawner`` is the thread that forks it (security.spawning:
    the one in the device cgroup); None forks from this one.
    """
    offset = _log_header(log_file, argv, env)
    fd = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)

    def fork() -> subprocess.Popen:
        return subprocess.Popen([*prefix, *argv], stdin=null, stdout=fd, stderr=fd, env=env,
                                cwd="/", close_fds=True, start_new_session=True, pass_fds=pass_fds)
    try:
        child = spawner.run(fork) if spawner is not None else fork()
    except (OSError, subprocess.SubprocessError) as exc:
        raise BackendError(f"cannot run {prefix[0] if prefix else argv[0]}: {exc}") from exc
    finally:
        os.close(fd)
        os.close(null)
    _CHILDREN[child.pid] = child
    return child, offset


def _log_header(log_file: str, argv: list[str], env: dict) -> int:
    """libvirt-style 'starting up' line and the command line; returns where QEMU's output begins."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    environment = " ".join(f"{key}={value}" for key, value in sorted(env.items()))
    text = f"{stamp}+0000: starting up\n{environment} \\\n{shlex.join(argv)}\n"
    with open(log_file, "a", encoding="utf-8") as log:
        log.write(text)
        return log.tell()


def read_pid(pidfile: str) -> int | None:
    try:
        with open(pidfile, encoding="ascii") as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def log_tail(log_file: str, offset: int = 0, limit: int = LOG_TAIL_BYTES) -> str:
    """The end of a QEMU log from ``offset``, as a suffix for an error message."""
    try:
        with open(log_file, "rb") as log:
            log.seek(max(offset, os.path.getsize(log_file) - limit))
            text = log.read().decode(errors="replace").strip()
    except OSError:
        return ""
    return f"; QEMU log ({log_file}): {text}" if text else f"; see {log_file}"


# -- watching ---------------------------------------------------------------
def start_time(pid: int) -> int | None:
    """The kernel's start time of a live process, None when it is gone or a zombie."""
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        del _CHILDREN[pid]
        return None
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            stat = handle.read()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None     # exited; nobody has reaped it yet
    return int(fields[19])


def is_alive(pid: int | None, starttime: int | None) -> bool:
    if not pid:
        return False
    current = start_time(pid)
    return current is not None and (starttime is None or current == starttime)


def command_line(pid: int) -> list[str]:
    """The argv of a process; empty when it is gone (or a zombie, whose cmdline is empty)."""
    return [os.fsdecode(arg) for arg in _raw_command_line(pid).split(b"\0")[:-1]]


def _raw_command_line(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def environment(pid: int) -> dict[str, str]:
    """The environment a process started with; empty when it is gone."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            raw = handle.read()
    except OSError:
        return {}
    found = {}
    for item in raw.split(b"\0"):
        key, equals, value = os.fsdecode(item).partition("=")
        if equals:
            found[key] = value
    return found


def runs_domain(pid: int, uuid: str | None) -> bool:
    """The process is a QEMU started for the domain with this uuid."""
    return bool(uuid) and option_value(command_line(pid), "-uuid").lower() == (uuid or "").lower()


def is_domain_process(pid: int | None, starttime: int | None, uuid: str | None) -> bool:
    """``pid`` still is the domain's QEMU: its recorded start time, or else its uuid, says so."""
    if not pid or not is_alive(pid, starttime):
        return False
    return starttime is not None or runs_domain(pid, uuid)


def find_domain_process(pidfile: str, uuid: str | None, scan: bool = True) -> int | None:
    """The live QEMU of a domain: the pid in its pidfile, else (with ``scan``) a process started
    with that pidfile and uuid, for a QEMU whose pidfile was removed or not written yet."""
    pid = read_pid(pidfile)
    if pid and is_domain_process(pid, None, uuid):
        return pid
    if not scan or not uuid:
        return None
    wanted = os.fsencode(pidfile)
    for entry in os.listdir("/proc"):
        # Most processes do not name the pidfile at all: only those that do are decoded and parsed.
        if entry.isdigit() and entry != str(os.getpid()) and wanted in _raw_command_line(int(entry)):
            argv = command_line(int(entry))
            if option_value(argv, "-pidfile") == pidfile and is_domain_process(int(entry), None, uuid):
                return int(entry)
    return None


def option_value(argv: list[str], flag: str) -> str:
    """The argument following the first ``flag`` in argv, "" when there is none."""
    for index, arg in enumerate(argv[:-1]):
        if arg == flag:
            return argv[index + 1]
    return ""


def monitor_path(argv: list[str]) -> str:
    """The QMP monitor socket a QEMU command line names (the ``charmonitor`` chardev), "" if none:
    a monitor QEMU inherited as a descriptor has no path on its command line."""
    for index, arg in enumerate(argv[:-1]):
        if arg == "-chardev":
            props = split_options(argv[index + 1])
            if props.get("id") == "charmonitor":
                return props.get("path", "")
    return ""


def tap_names(argv: list[str]) -> list[str]:
    """The taps a QEMU command line uses (JSON ``-netdev`` of type tap)."""
    taps = []
    for index, arg in enumerate(argv[:-1]):
        if arg == "-netdev" and argv[index + 1].startswith("{"):
            try:
                netdev = json.loads(argv[index + 1])
            except ValueError:
                continue
            if netdev.get("type") == "tap" and netdev.get("ifname"):
                taps.append(netdev["ifname"])
    return taps


def split_options(text: str) -> dict[str, str]:
    """QEMU's key=value,... option syntax, where ",," is a literal comma."""
    parts, current, index = [], [], 0
    while index < len(text):
        if text[index] == "," and text[index + 1:index + 2] == ",":
            current.append(",")
            index += 2
            continue
        if text[index] == ",":
            parts.append("".join(current))
            current = []
        else:
            current.append(text[index])
        index += 1
    parts.append("".join(current))
    return dict(part.split("=", 1) for part in parts if "=" in part)


def wait_gone(pid: int, starttime: int | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while is_alive(pid, starttime):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def signal_process(pid: int, starttime: int | None, signum: int) -> None:
    if is_alive(pid, starttime):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def kill(pid: int, starttime: int | None, grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL if QEMU has not gone after ``grace`` seconds."""
    signal_process(pid, starttime, signal.SIGTERM)
    signal_process(pid, starttime, signal.SIGCONT)      # a stopped QEMU acts on SIGTERM only once resumed
    if wait_gone(pid, starttime, grace):
        return
    signal_process(pid, starttime, signal.SIGKILL)
    if not wait_gone(pid, starttime, 10.0):
        raise BackendError(f"QEMU process {pid} survived SIGKILL")


def exit_reason(pidfile_left: bool, trace_text: str | None) -> str:
    """libvirt's shutoff reason for a QEMU that exited without us stopping it."""
    if pidfile_left:
        return "crashed"
    if trace_text:
        states = _RUNSTATE.findall(trace_text)
        causes = [int(c) for c in _SHUTDOWN.findall(trace_text)]
        if "guest-panicked" in states or _GUEST_PANIC in causes:
            return "crashed"
    return "shutdown"


# -- taps ---------------------------------------------------------------------
def run_ip(*args: str) -> str:
    try:
        done = subprocess.run([IP, *args], check=True, capture_output=True, text=True, timeout=30)
    except FileNotFoundError as exc:
        raise BackendError("the 'ip' command (iproute2) is needed for tap interfaces") from exc
    except subprocess.CalledProcessError as exc:
        raise BackendError(f"ip {' '.join(args)} failed: {exc.stderr.strip() or exc.returncode}") from exc
    return done.stdout


def link_names() -> set[str]:
    """Links of this process's network namespace, asked of the kernel (not /sys: sysfs may belong to another one)."""
    try:
        return {name for _index, name in socket.if_nameindex()}
    except OSError as exc:
        raise BackendError(f"cannot list the network links: {exc.strerror}") from exc


def link_address(name: str) -> str | None:
    """The MAC address of a link of this process's network namespace; None when there is no such link."""
    encoded = name.encode()
    if not encoded or len(encoded) >= IFNAMSIZ:
        return None
    request = struct.pack(f"{IFNAMSIZ}s{IFREQ_SIZE - IFNAMSIZ}x", encoded)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            reply = fcntl.ioctl(sock, SIOCGIFHWADDR, request)
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                return None
            raise BackendError(f"cannot read the address of link {name}: {exc.strerror}") from exc
    hardware = reply[IFNAMSIZ + 2:IFNAMSIZ + 8]     # ifr_hwaddr: sa_family, then the address
    return ":".join(f"{byte:02x}" for byte in hardware)


def is_bridge(name: str) -> bool:
    try:
        details = run_ip("-d", "-o", "link", "show", "dev", name)
    except BackendError:
        return False
    return " bridge " in details


def free_tap_name(taken: set[str]) -> str:
    existing = link_names() | taken
    for number in range(0, 65536):
        name = f"{TAP_PREFIX}{number}"
        if name not in existing:
            return name
    raise BackendError("no free vnetN tap name")


def create_tap(name: str, bridge: str, mac: str | None, owner: tuple[int, int] | None = None) -> None:
    """A persistent tap enslaved to an existing bridge, as libvirt sets it up."""
    if not is_bridge(bridge):
        raise InvalidInput(f"bridge {bridge!r} does not exist on this host", "devices/interface/source@bridge")
    if os.geteuid() != 0:
        raise BackendError(f"creating tap {name} on bridge {bridge} needs root")
    # A QEMU that runs as another user may attach only to a tap that user owns.
    run_ip("tuntap", "add", "dev", name, "mode", "tap",
           *(["user", str(owner[0]), "group", str(owner[1])] if owner else []))
    try:
        args = ["link", "set", "dev", name]
        if mac:
            # libvirt's habit: the host side gets the guest MAC with fe: so the bridge never takes it over.
            args += ["address", "fe" + mac[2:]]
        run_ip(*args, "master", bridge, "up")
    except BackendError:
        delete_tap(name)
        raise


def delete_tap(name: str) -> None:
    if name in link_names():
        run_ip("link", "del", "dev", name)


# -- ports ------------------------------------------------------------------
def free_port(address: str, first: int, last: int, taken: set[int]) -> int:
    """The first TCP port in [first, last] nobody listens on and no other domain reserved."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    for port in range(first, last + 1):
        if port in taken:
            continue
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((address, port))
            except OSError:
                continue
        return port
    raise BackendError(f"no free port between {first} and {last} on {address}")
