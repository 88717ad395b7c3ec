# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A synchronous client for QEMU's machine protocol (QMP) over a UNIX socket.

One ``QMPClient`` talks to one QEMU monitor.  Commands carry an ``id`` so
their reply can be told apart from the asynchronous events QEMU sends at any
time; events seen while waiting for a reply are queued for ``wait_event`` and
``events``.  Every exchange has a deadline: a QEMU that is stopped or
wedged must not stall a module run.

A client may be given a ``TrafficLog``: every message sent and received is
appended to it, with a timestamp and secrets masked, so that a failure can
be looked into after the run.  qmp_commands.py holds one typed function per
command the collection sends.  Private to the collection.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import socket
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timezone

from ansible_collections.virtops.qemu.plugins.module_utils.errors import (
    BackendError,
    OperationTimeout,
    VirtError,
)

DEFAULT_TIMEOUT = 30.0
# Queries only read QEMU's state and answer at once from a healthy main loop.
QUERY_TIMEOUT = 3.0
_RETRY_INTERVAL = 0.05
# Polling a socket that does not exist yet is cheap; a short interval lets a
# start proceed as soon as QEMU listens instead of on the next coarse tick.
_CONNECT_POLL = 0.005
_RECV_SIZE = 65536
# QEMU may not have created or started listening on the socket yet.
_NOT_YET_LISTENING = (errno.ENOENT, errno.ECONNREFUSED)
# A traffic log is rotated once (to NAME.1) when it would grow past this.
TRAFFIC_LOG_LIMIT = 1024 * 1024
# A longer message (query-qmp-schema, say) is cut: the log is for following an exchange.
_LOGGED_MESSAGE_LIMIT = 16384
_MASK = "********"
# Keys whose value is a password or a secret, or names one (key-secret, password-secret).
_SECRET_KEY = re.compile(r"passw|secret", re.IGNORECASE)
# HMP command lines that carry a password or a secret's data.
_HMP_SECRETS = (
    re.compile(r"^(\s*set_password\s+\S+\s+)(\S+)"),
    re.compile(r"^(\s*change\s+vnc\s+password\s+)(\S+)"),
    re.compile(r"((?:^|[\s,])(?:data|[\w-]*passw[\w-]*|[\w-]*secret[\w-]*)=)([^,\s]+)", re.IGNORECASE),
)


class QMPError(BackendError):
    """QEMU answered a command with an error reply."""

    def __init__(self, command: str, error_class: str, desc: str, monitor: str = ""):
        self.command = command
        self.error_class = error_class
        self.desc = desc
        self.monitor = monitor
        where = f" on {monitor}" if monitor else ""
        super().__init__(f"QMP {command} failed{where}: {error_class}: {desc}")


class TrafficLog:
    """Appends what one QEMU's monitor says and is told to a file, for debugging.

    Each line holds a UTC timestamp, the pid of the run, the direction
    (``->`` to QEMU, ``<-`` from it, ``==`` a new session, ``!!`` what went
    wrong) and the message as JSON with every password and secret masked.  The file is
    private (0600) and rotated once, to ``PATH.1``, when it would pass
    ``limit`` bytes.  A log that cannot be written is given up for the
    session: it never fails the command it records.
    """

    def __init__(self, path: str, limit: int = TRAFFIC_LOG_LIMIT):
        self.path = path
        self.limit = limit
        self._fd: int | None = None
        self._broken = False

    def sent(self, message: dict, fds: int = 0) -> None:
        passed = f" (+{fds} file descriptors)" if fds else ""
        self._write(f"-> {_logged(message)}{passed}")

    def received(self, message: dict) -> None:
        self._write(f"<- {_logged(message)}")

    def connected(self, monitor: str) -> None:
        self._write(f"== connected to {monitor}")

    def note(self, text: str) -> None:
        self._write(f"!! {text}")

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _write(self, text: str) -> None:
        if self._broken:
            return
        stamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        line = f"{stamp} [{os.getpid()}] {text}\n".encode(errors="replace")
        try:
            fd = self._open()
            size = os.fstat(fd).st_size
            if size and size + len(line) > self.limit:
                fd = self._rotate(fd)
            os.write(fd, line)
        except OSError:
            self._broken = True
            self.close()

    def _open(self) -> int:
        if self._fd is None:
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
            self._fd = os.open(self.path, flags, 0o600)
            if os.fstat(self._fd).st_mode & 0o777 != 0o600:
                os.fchmod(self._fd, 0o600)
        return self._fd

    def _rotate(self, fd: int) -> int:
        """Move the full log aside, unless another run did so already, and start a new one."""
        with contextlib.suppress(OSError):
            if os.path.samestat(os.stat(self.path), os.fstat(fd)):
                os.replace(self.path, f"{self.path}.1")
        self.close()
        return self._open()


class QMPClient:
    """A negotiated QMP session; build it with ``QMPClient.connect``."""

    def __init__(self, sock: socket.socket, path: str = "", traffic: TrafficLog | None = None):
        self.path = path
        self.traffic = traffic
        self.greeting: dict = {}
        self._sock: socket.socket | None = sock
        self._buffer = b""
        self._pending: list[dict] = []
        self._event_queue: list[dict] = []
        self._next_id = 0

    # -- session --------------------------------------------------------
    @classmethod
    def connect(cls, path: str, timeout: float = DEFAULT_TIMEOUT,
                alive: Callable[[], bool] | None = None,
                wait_for_socket: bool = True, traffic: TrafficLog | None = None) -> QMPClient:
        """Connect, read the greeting and leave capabilities negotiation mode.

        ``timeout`` bounds the whole handshake.  A freshly spawned QEMU may
        not listen yet, so by default a missing or refusing socket is retried;
        ``alive`` lets the caller that started QEMU stop waiting as soon as
        the process is gone.  For a QEMU that already runs, pass
        ``wait_for_socket=False``: a socket that is not there now never will be.
        ``traffic`` records the session; the client closes it.
        """
        deadline = time.monotonic() + timeout
        try:
            sock = _connect_socket(path, deadline, alive, wait_for_socket)
        except VirtError as exc:
            if traffic is not None:
                traffic.note(str(exc))
                traffic.close()
            raise
        if traffic is not None:
            traffic.connected(path)
        client = cls(sock, path, traffic)
        try:
            client._read_greeting(deadline)
            client.execute("qmp_capabilities", timeout=_remaining(deadline))
        except BaseException:
            client.close()
            raise
        return client

    @property
    def version(self) -> tuple[int, int, int]:
        """QEMU's (major, minor, micro) as announced in the greeting."""
        qemu = self.greeting.get("version", {}).get("qemu", {})
        return (qemu.get("major", 0), qemu.get("minor", 0), qemu.get("micro", 0))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self.traffic is not None:
            self.traffic.close()

    def __enter__(self) -> QMPClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- commands -------------------------------------------------------
    def execute(self, command: str, arguments: dict | None = None,
                timeout: float | None = None,
                fds: Iterable[int] = ()) -> object:
        """Run one command and return its ``return`` value.

        Without ``timeout`` the deadline is ``command_timeout(command)``.
        ``fds`` are passed along with the command (SCM_RIGHTS), as ``getfd``
        and ``add-fd`` expect.
        """
        deadline = time.monotonic() + (command_timeout(command) if timeout is None else timeout)
        self._next_id += 1
        request_id = f"virtops-{self._next_id}"
        request: dict = {"execute": command, "id": request_id}
        if arguments is not None:
            request["arguments"] = arguments
        fds = list(fds)
        if self.traffic is not None:
            self.traffic.sent(request, len(fds))
        try:
            self._send(json.dumps(request).encode() + b"\n", fds, command, deadline)
            while True:
                message = self._next_message(deadline, f"the reply to {command}")
                if "event" in message:
                    self._event_queue.append(message)
                elif message.get("id") == request_id or _is_unaddressed_error(message):
                    return _reply_value(command, message, self.path)
        except QMPError:
            raise       # the reply is in the log already
        except VirtError as exc:
            self._note_failure(exc)
            raise

    def _note_failure(self, exc: VirtError) -> None:
        if self.traffic is not None:
            self.traffic.note(str(exc))

    # -- events ---------------------------------------------------------
    def wait_event(self, name: str, timeout: float = DEFAULT_TIMEOUT,
                   match: dict | None = None) -> dict:
        """Return (and dequeue) the first event ``name`` whose data holds ``match``."""
        deadline = time.monotonic() + timeout
        for index, event in enumerate(self._event_queue):
            if _event_matches(event, name, match):
                return self._event_queue.pop(index)
        while True:
            message = self._next_message(deadline, f"event {name}")
            if "event" not in message:
                continue
            if _event_matches(message, name, match):
                return message
            self._event_queue.append(message)

    def events(self) -> list[dict]:
        """Every queued event plus those already received, oldest first; clears the queue."""
        self._drain_socket()
        drained, self._event_queue = self._event_queue, []
        return drained

    # -- wire -----------------------------------------------------------
    def _read_greeting(self, deadline: float) -> None:
        try:
            message = self._next_message(deadline, "the QMP greeting")
            if "QMP" not in message:
                raise BackendError(f"{self.path}: not a QMP monitor (no greeting): {message!r}")
        except VirtError as exc:
            self._note_failure(exc)
            raise
        self.greeting = message["QMP"]

    def _send(self, data: bytes, fds: list[int], command: str, deadline: float) -> None:
        sock = self._open_socket()
        sock.settimeout(max(_remaining(deadline), _RETRY_INTERVAL))
        try:
            if fds:
                data = data[socket.send_fds(sock, [data], fds):]
            if data:
                sock.sendall(data)
        except TimeoutError:
            raise OperationTimeout(f"QMP {command}: timed out sending to {self.path}") from None
        except OSError as exc:
            raise BackendError(f"QMP {command}: cannot send to {self.path}: {exc}") from exc

    def _next_message(self, deadline: float, waiting_for: str) -> dict:
        while not self._pending:
            self._receive(deadline, waiting_for)
        return self._pending.pop(0)

    def _receive(self, deadline: float, waiting_for: str) -> None:
        sock = self._open_socket()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise OperationTimeout(f"QMP {self.path}: timed out waiting for {waiting_for}")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(_RECV_SIZE)
        except TimeoutError:
            raise OperationTimeout(
                f"QMP {self.path}: timed out waiting for {waiting_for}") from None
        except OSError as exc:
            raise BackendError(f"QMP {self.path}: receive failed waiting for {waiting_for}: {exc}") from exc
        if not chunk:
            raise BackendError(f"QMP {self.path}: QEMU closed the connection while "
                               f"waiting for {waiting_for}")
        self._feed(chunk)

    def _drain_socket(self) -> None:
        """Parse whatever QEMU already sent, without blocking."""
        if self._sock is not None:
            self._sock.setblocking(False)
            try:
                while chunk := self._sock.recv(_RECV_SIZE):
                    self._feed(chunk)
            except OSError:
                pass    # nothing more to read now, or the peer is gone
            finally:
                self._sock.setblocking(True)
        while self._pending:
            message = self._pending.pop(0)
            if "event" in message:
                self._event_queue.append(message)

    def _feed(self, chunk: bytes) -> None:
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            if line.strip():
                self._pending.append(self._decode(line))

    def _decode(self, line: bytes) -> dict:
        try:
            message = json.loads(line)
        except ValueError as exc:
            raise BackendError(f"QMP {self.path}: malformed message {line[:200]!r}: {exc}") from exc
        if not isinstance(message, dict):
            raise BackendError(f"QMP {self.path}: unexpected message {message!r}")
        if self.traffic is not None:
            self.traffic.received(message)
        return message

    def _open_socket(self) -> socket.socket:
        if self._sock is None:
            raise BackendError(f"QMP {self.path}: connection is closed")
        return self._sock


def command_timeout(command: str) -> float:
    """The default deadline of a command: short for queries, longer for anything that acts."""
    if command.startswith("query-") or command == "qmp_capabilities":
        return QUERY_TIMEOUT
    return DEFAULT_TIMEOUT


def _connect_socket(path: str, deadline: float, alive: Callable[[], bool] | None,
                    wait_for_socket: bool) -> socket.socket:
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(max(_remaining(deadline), _RETRY_INTERVAL))
            sock.connect(path)
            return sock
        except OSError as exc:
            sock.close()
            if exc.errno not in _NOT_YET_LISTENING or not wait_for_socket:
                raise BackendError(f"cannot connect to QMP socket {path}: {exc}") from exc
            if alive is not None and not alive():
                raise BackendError(f"QEMU exited before its QMP socket {path} accepted connections") from exc
            if time.monotonic() >= deadline:
                raise OperationTimeout(f"QMP socket {path} did not accept connections in time: {exc}") from exc
        time.sleep(_CONNECT_POLL)


def _remaining(deadline: float) -> float:
    return max(deadline - time.monotonic(), 0.0)


def _is_unaddressed_error(message: dict) -> bool:
    # QEMU answers a request it could not parse without echoing the id.
    return "error" in message and "id" not in message


def _reply_value(command: str, message: dict, monitor: str) -> object:
    if "error" in message:
        error = message["error"]
        raise QMPError(command, error.get("class", "GenericError"),
                       error.get("desc", "no description"), monitor)
    if "return" not in message:
        raise BackendError(f"QMP {command}: reply without return value: {message!r}")
    return message["return"]


def _event_matches(event: dict, name: str, match: dict | None) -> bool:
    if event.get("event") != name:
        return False
    data = event.get("data", {})
    return all(data.get(key) == value for key, value in (match or {}).items())


# -- traffic log ------------------------------------------------------------------
def masked(message):
    """``message`` with the value of every password or secret replaced, for a log."""
    if isinstance(message, dict):
        secret_object = message.get("qom-type") in ("secret", "secret_keyring")
        return {key: _MASK if _is_secret(key, secret_object) else _masked_value(key, value)
                for key, value in message.items()}
    if isinstance(message, list):
        return [masked(item) for item in message]
    return message


def _is_secret(key: str, secret_object: bool) -> bool:
    # A secret object carries its secret in ``data`` (or in ``file``, which is a path and stays).
    return bool(_SECRET_KEY.search(key)) or (secret_object and key == "data")


def _masked_value(key: str, value):
    if key == "command-line" and isinstance(value, str):
        for pattern in _HMP_SECRETS:
            value = pattern.sub(lambda m: m.group(1) + _MASK, value)
        return value
    return masked(value)


def _logged(message: dict) -> str:
    text = json.dumps(masked(message), sort_keys=False)
    if len(text) > _LOGGED_MESSAGE_LIMIT:
        return f"{text[:_LOGGED_MESSAGE_LIMIT]}... ({len(text)} characters in all)"
    return text
