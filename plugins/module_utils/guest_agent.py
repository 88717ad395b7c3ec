# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A synchronous client for the QEMU guest agent over its channel's UNIX socket.

The agent speaks QMP's JSON without a greeting, and the channel keeps what an
earlier client left unread (or the agent answers late), so every session
opens with ``guest-sync``: a random id the agent echoes, and every reply
before that echo is stale.  Every exchange has a deadline: a guest whose
agent is not running must not stall a module run.  Private to the
collection.
"""

from __future__ import annotations

import json
import random
import socket
import time

from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError, OperationTimeout

CHANNEL = "org.qemu.guest_agent.0"
# The agent answers from the guest's own scheduler; under TCG that can take a while.
SYNC_TIMEOUT = 5.0
COMMAND_TIMEOUT = 10.0
_RECV_SIZE = 65536


class AgentError(BackendError):
    """The agent answered a command with an error reply."""

    def __init__(self, command: str, error_class: str, desc: str):
        self.command, self.error_class, self.desc = command, error_class, desc
        super().__init__(f"guest agent {command} failed: {error_class}: {desc}")


class GuestAgent:
    """One synchronised session with a guest agent; build it with ``GuestAgent.connect``."""

    def __init__(self, sock: socket.socket, path: str):
        self.path = path
        self._sock = sock
        self._buffer = b""

    @classmethod
    def connect(cls, path: str, timeout: float = SYNC_TIMEOUT) -> GuestAgent:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(path)
        except OSError as exc:
            sock.close()
            raise BackendError(f"cannot connect to the guest agent channel {path}: {exc}") from exc
        agent = cls(sock, path)
        try:
            agent.sync(timeout)
        except BaseException:
            agent.close()
            raise
        return agent

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> GuestAgent:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def sync(self, timeout: float = SYNC_TIMEOUT) -> None:
        """Skip every stale reply: wait for the echo of a fresh random id."""
        token = random.randint(1, 2**31 - 1)
        deadline = time.monotonic() + timeout
        self._send({"execute": "guest-sync", "arguments": {"id": token}}, "guest-sync", deadline)
        while self._next_reply(deadline, "guest-sync").get("return") != token:
            continue

    def execute(self, command: str, arguments: dict | None = None, timeout: float = COMMAND_TIMEOUT) -> object:
        deadline = time.monotonic() + timeout
        request: dict = {"execute": command}
        if arguments is not None:
            request["arguments"] = arguments
        self._send(request, command, deadline)
        reply = self._next_reply(deadline, command)
        if "error" in reply:
            error = reply["error"]
            raise AgentError(command, error.get("class", "GenericError"), error.get("desc", "no description"))
        return reply.get("return")

    def send_only(self, command: str, arguments: dict | None = None) -> None:
        """A command the agent does not answer when it succeeds (guest-shutdown)."""
        request: dict = {"execute": command}
        if arguments is not None:
            request["arguments"] = arguments
        self._send(request, command, time.monotonic() + COMMAND_TIMEOUT)

    # -- wire -----------------------------------------------------------
    def _send(self, request: dict, command: str, deadline: float) -> None:
        self._sock.settimeout(max(deadline - time.monotonic(), 0.05))
        try:
            self._sock.sendall(json.dumps(request).encode() + b"\n")
        except TimeoutError:
            raise OperationTimeout(f"guest agent {command}: timed out sending to {self.path}") from None
        except OSError as exc:
            raise BackendError(f"guest agent {command}: cannot send to {self.path}: {exc}") from exc

    def _next_reply(self, deadline: float, command: str) -> dict:
        while True:
            line, newline, rest = self._buffer.partition(b"\n")
            if newline:
                self._buffer = rest
                reply = _decode(line)
                if reply is not None:
                    return reply
                continue
            self._receive(deadline, command)

    def _receive(self, deadline: float, command: str) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise OperationTimeout(f"guest agent {self.path}: no answer to {command} in time "
                                   "(is qemu-guest-agent running in the guest?)")
        self._sock.settimeout(remaining)
        try:
            chunk = self._sock.recv(_RECV_SIZE)
        except TimeoutError:
            raise OperationTimeout(f"guest agent {self.path}: no answer to {command} in time "
                                   "(is qemu-guest-agent running in the guest?)") from None
        except OSError as exc:
            raise BackendError(f"guest agent {self.path}: receive failed waiting for {command}: {exc}") from exc
        if not chunk:
            raise BackendError(f"guest agent {self.path}: the channel closed while waiting for {command}")
        self._buffer += chunk


def _decode(line: bytes) -> dict | None:
    """A reply, or None for what is none (the 0xff delimiter of guest-sync-delimited, blank lines)."""
    line = line.strip(b"\xff \r\t")
    if not line:
        return None
    try:
        message = json.loads(line)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


# -- what the collection asks ---------------------------------------------

def os_info(agent: GuestAgent) -> dict:
    value = agent.execute("guest-get-osinfo")
    return value if isinstance(value, dict) else {}


def interface_addresses(agent: GuestAgent) -> dict[str, list[dict]]:
    """The guest's addresses by MAC address (lower case), as guest-network-get-interfaces has them."""
    found: dict[str, list[dict]] = {}
    nics = agent.execute("guest-network-get-interfaces")
    for nic in nics if isinstance(nics, list) else []:
        mac = (nic.get("hardware-address") or "").lower()
        if not mac or mac == "00:00:00:00:00:00":
            continue
        found.setdefault(mac, []).extend(
            {"address": ip.get("ip-address"), "prefix": ip.get("prefix"), "family": ip.get("ip-address-type")}
            for ip in nic.get("ip-addresses") or [])
    return found
