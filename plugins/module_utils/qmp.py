# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A synchronous client for QEMU's machine protocol (QMP) over a UNIX socket.

One ``QMPClient`` talks to one QEMU monitor.  Commands carry an ``id`` so
their reply can be told apart from the asynchronous events QEMU sends at any
time; events seen while waiting for a reply are queued for ``wait_event`` and
``events``.  Every exchange has a deadline: a QEMU that is stopped or
wedged must not stall a module run.  Private to the collection.
"""

from __future__ import annotations

import errno
import json
import socket
import time
from collections.abc import Callable, Iterable

from ansible_collections.virtops.qemu.plugins.module_utils.errors import (
    BackendError,
    OperationTimeout,
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


class QMPError(BackendError):
    """QEMU answered a command with an error reply."""

    def __init__(self, command: str, error_class: str, desc: str):
        self.command = command
        self.error_class = error_class
        self.desc = desc
        super().__init__(f"QMP {command} failed: {error_class}: {desc}")


class QMPClient:
    """A negotiated QMP session; build it with ``QMPClient.connect``."""

    def __init__(self, sock: socket.socket, path: str = ""):
        self.path = path
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
                wait_for_socket: bool = True) -> QMPClient:
        """Connect, read the greeting and leave capabilities negotiation mode.

        ``timeout`` bounds the whole handshake.  A freshly spawned QEMU may
        not listen yet, so by default a missing or refusing socket is retried;
        ``alive`` lets the caller that started QEMU stop waiting as soon as
        the process is gone.  For a QEMU that already runs, pass
        ``wait_for_socket=False``: a socket that is not there now never will be.
        """
        deadline = time.monotonic() + timeout
        client = cls(_connect_socket(path, deadline, alive, wait_for_socket), path)
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
        self._send(json.dumps(request).encode() + b"\n", list(fds), command, deadline)
        while True:
            message = self._next_message(deadline, f"the reply to {command}")
            if "event" in message:
                self._event_queue.append(message)
            elif message.get("id") == request_id or _is_unaddressed_error(message):
                return _reply_value(command, message)

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
        message = self._next_message(deadline, "the QMP greeting")
        if "QMP" not in message:
            raise BackendError(f"{self.path}: not a QMP monitor (no greeting): {message!r}")
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


def _reply_value(command: str, message: dict) -> object:
    if "error" in message:
        error = message["error"]
        raise QMPError(command, error.get("class", "GenericError"),
                       error.get("desc", "no description"))
    if "return" not in message:
        raise BackendError(f"QMP {command}: reply without return value: {message!r}")
    return message["return"]


def _event_matches(event: dict, name: str, match: dict | None) -> bool:
    if event.get("event") != name:
        return False
    data = event.get("data", {})
    return all(data.get(key) == value for key, value in (match or {}).items())
