# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The QMP client against a scripted fake QMP server on a temporary UNIX socket."""

from __future__ import annotations

import json
import os
import socket
import threading
import time

import pytest

from ansible_collections.virtops.qemu.plugins.module_utils import qmp
from ansible_collections.virtops.qemu.plugins.module_utils.errors import (
    BackendError,
    OperationTimeout,
)
from ansible_collections.virtops.qemu.plugins.module_utils.qmp import QMPClient, QMPError

GREETING = {"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7},
                                "package": "Debian 1:7.2"},
                    "capabilities": ["oob"]}}


def wire(message: dict) -> bytes:
    return json.dumps(message).encode() + b"\r\n"


class Peer:
    """The server's side of one connection, as seen by a test script."""

    def __init__(self, conn: socket.socket):
        self.conn = conn
        self.buffer = b""
        self.requests: list[dict] = []
        self.fds: list[int] = []

    def send(self, data: bytes) -> None:
        self.conn.sendall(data)

    def request(self) -> dict:
        while b"\n" not in self.buffer:
            chunk, fds, _flags, _addr = socket.recv_fds(self.conn, 4096, 8)
            self.fds.extend(fds)
            if not chunk:
                raise EOFError("client closed")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        message = json.loads(line)
        self.requests.append(message)
        return message

    def wait_closed(self) -> None:
        """Keep the connection open until the client closes it."""
        while self.conn.recv(4096):
            pass

    def reply(self, request: dict, value=None) -> None:
        self.send(wire({"return": {} if value is None else value, "id": request["id"]}))

    def negotiate(self) -> None:
        self.send(wire(GREETING))
        request = self.request()
        assert request["execute"] == "qmp_capabilities"
        self.reply(request)


class FakeQMPServer:
    """Accepts one connection and runs ``script(peer)`` on it in a thread."""

    def __init__(self, path: str, script, listen_after: float = 0.0):
        self.path = path
        self.script = script
        self.listen_after = listen_after
        self.peer: Peer | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> FakeQMPServer:
        self.thread.start()
        return self

    def _run(self) -> None:
        time.sleep(self.listen_after)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(self.path)
            listener.listen(1)
            listener.settimeout(10)
            conn = listener.accept()[0]
            with conn:
                self.peer = Peer(conn)
                self.script(self.peer)
        except BaseException as exc:   # re-raised in the test thread by join()
            self.error = exc
        finally:
            listener.close()

    def join(self) -> Peer:
        self.thread.join(10)
        assert not self.thread.is_alive(), "fake server script did not finish"
        if self.error is not None:
            raise self.error
        return self.peer


@pytest.fixture
def sock_path(tmp_path):
    return str(tmp_path / "qmp.sock")


def serve(sock_path, script, **kwargs) -> FakeQMPServer:
    return FakeQMPServer(sock_path, script, **kwargs).start()


def test_connect_reads_greeting_and_negotiates(sock_path):
    server = serve(sock_path, lambda peer: peer.negotiate())
    with QMPClient.connect(sock_path, timeout=5) as client:
        assert client.greeting["version"]["qemu"]["major"] == 7
        assert client.version == (7, 2, 22)
    peer = server.join()
    assert [r["execute"] for r in peer.requests] == ["qmp_capabilities"]
    assert "id" in peer.requests[0]


def test_execute_sends_arguments_with_id_and_returns_value(sock_path):
    def script(peer):
        peer.negotiate()
        request = peer.request()
        peer.reply(request, {"running": False, "status": "prelaunch"})

    server = serve(sock_path, script)
    with QMPClient.connect(sock_path, timeout=5) as client:
        assert client.execute("query-status", {"x": 1}, timeout=5) == \
            {"running": False, "status": "prelaunch"}
    request = server.join().requests[-1]
    assert request["execute"] == "query-status"
    assert request["arguments"] == {"x": 1}
    assert request["id"] != server.peer.requests[0]["id"]


def test_execute_without_arguments_omits_the_key(sock_path):
    def script(peer):
        peer.negotiate()
        peer.reply(peer.request(), [])

    server = serve(sock_path, script)
    with QMPClient.connect(sock_path, timeout=5) as client:
        assert client.execute("query-commands") == []
    assert "arguments" not in server.join().requests[-1]


def test_events_before_the_reply_are_queued(sock_path):
    def script(peer):
        peer.negotiate()
        request = peer.request()
        peer.send(wire({"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 0}}))
        peer.send(wire({"event": "RESUME", "timestamp": {"seconds": 2, "microseconds": 0}}))
        peer.reply(request, 42)

    server = serve(sock_path, script)
    with QMPClient.connect(sock_path, timeout=5) as client:
        assert client.execute("cont") == 42
        assert client.wait_event("RESUME", timeout=1)["timestamp"]["seconds"] == 2
        assert [e["event"] for e in client.events()] == ["STOP"]
        assert client.events() == []
    server.join()


def test_several_messages_in_one_chunk(sock_path):
    def script(peer):
        peer.negotiate()
        request = peer.request()
        peer.send(wire({"event": "A"}) + wire({"event": "B"}) + wire({"return": "ok", "id": request["id"]})
                  + wire({"event": "C"}))

    server = serve(sock_path, script)
    with QMPClient.connect(sock_path, timeout=5) as client:
        assert client.execute("x") == "ok"
        server.join()
        assert [e["event"] for e in client.events()] == ["A", "B", "C"]


def test_messages_split_across_reads(sock_path):
    def script(peer):
        peer.send(wire(GREETING)[:7])
        time.sleep(0.05)
        peer.send(wire(GREETING)[7:])
        request = peer.request()
        data = wire({"event": "SPLIT"}) + wire({"return": {"split": True}, "id": request["id"]})
        for index in range(len(data)):
            peer.send(data[index:index + 1])
            time.sleep(0.001)
        request = peer.request()
        peer.reply(request, "second")

    server = serve(sock_path, script)
    with QMPClient.connect(sock_path, timeout=5) as client:
        assert client.execute("second") == "second"
        assert client.wait_event("SPLIT", timeout=0.1)["event"] == "SPLIT"
    server.join()


def test_error_reply_names_command_class_and_desc(sock_path):
    def script(peer):
        peer.negotiate()
        request = peer.request()
        peer.send(wire({"id": request["id"], "error": {
            "class": "DeviceNotFound", "desc": "Device 'net0' not found"}}))

    server = serve(sock_path, script)
    with QMPClient.connect(sock_path, timeout=5) as client:
        with pytest.raises(QMPError) as caught:
            client.execute("device_del", {"id": "net0"})
    server.join()
    error = caught.value
    assert isinstance(error, BackendError)
    assert (error.command, error.error_class, error.desc) == \
        ("device_del", "DeviceNotFound", "Device 'net0' not found")
    assert "device_del" in str(error) and "DeviceNotFound" in str(error) and "net0" in str(error)
    assert error.monitor == sock_path and sock_path in str(error)


def test_error_without_id_is_the_answer(sock_path):
    def script(peer):
        peer.negotiate()
        peer.request()
        peer.send(wire({"error": {"class": "GenericError", "desc": "JSON parse error"}}))

    server = serve(sock_path, script)
    with QMPClient.connect(sock_path, timeout=5) as client:
        with pytest.raises(BackendError, match="JSON parse error"):
            client.execute("anything")
    server.join()


def test_reply_with_another_id_is_skipped(sock_path):
    def script(peer):
        peer.negotiate()
        request = peer.request()
        peer.send(wire({"return": "stale", "id": "virtops-0-old"}))
        peer.reply(request, "fresh")

    server = serve(sock_path, script)
    with QMPClient.connect(sock_path, timeout=5) as client:
        assert client.execute("x") == "fresh"
    server.join()


def test_eof_while_waiting_raises_backend_error(sock_path):
    def script(peer):
        peer.negotiate()
        peer.request()      # then close without answering

    server = serve(sock_path, script)
    with QMPClient.connect(sock_path, timeout=5) as client:
        with pytest.raises(BackendError, match="closed the connection.*reply to system_powerdown"):
            client.execute("system_powerdown")
    server.join()


def test_eof_before_greeting(sock_path):
    server = serve(sock_path, lambda peer: None)
    with pytest.raises(BackendError, match="greeting"):
        QMPClient.connect(sock_path, timeout=5)
    server.join()


def test_not_a_qmp_greeting(sock_path):
    server = serve(sock_path, lambda peer: peer.send(wire({"hello": 1})))
    with pytest.raises(BackendError, match="not a QMP monitor"):
        QMPClient.connect(sock_path, timeout=5)
    server.join()


def test_malformed_message(sock_path):
    server = serve(sock_path, lambda peer: peer.send(b"{not json\r\n"))
    with pytest.raises(BackendError, match="malformed"):
        QMPClient.connect(sock_path, timeout=5)
    server.join()


def test_connect_retries_until_the_socket_exists(sock_path):
    started = time.monotonic()
    server = serve(sock_path, lambda peer: peer.negotiate(), listen_after=0.4)
    with QMPClient.connect(sock_path, timeout=5) as client:
        assert client.version == (7, 2, 22)
    assert time.monotonic() - started >= 0.4
    server.join()


def test_connect_retries_while_refused(sock_path):
    # A bound but not listening socket refuses connections, like QEMU starting up.
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(sock_path)

    def script(peer):
        peer.negotiate()

    def rebind():
        time.sleep(0.3)
        stale.close()
        os.unlink(sock_path)
        FakeQMPServer(sock_path, script).start().join()

    helper = threading.Thread(target=rebind, daemon=True)
    helper.start()
    with QMPClient.connect(sock_path, timeout=5) as client:
        assert client.greeting
    helper.join(10)


def test_connect_times_out(sock_path):
    started = time.monotonic()
    with pytest.raises(OperationTimeout):
        QMPClient.connect(sock_path, timeout=0.3)
    assert time.monotonic() - started < 2


def test_connect_stops_when_the_process_is_gone(sock_path):
    started = time.monotonic()
    with pytest.raises(BackendError, match="exited"):
        QMPClient.connect(sock_path, timeout=10, alive=lambda: False)
    assert time.monotonic() - started < 1


def test_connect_to_an_impossible_path_fails_at_once(tmp_path):
    (tmp_path / "plain-file").write_text("")
    started = time.monotonic()
    with pytest.raises(BackendError, match="cannot connect"):
        QMPClient.connect(str(tmp_path / "plain-file" / "qmp.sock"), timeout=5)
    assert time.monotonic() - started < 1


def test_connect_to_a_running_qemu_does_not_wait_for_a_missing_socket(sock_path):
    started = time.monotonic()
    with pytest.raises(BackendError, match="cannot connect"):
        QMPClient.connect(sock_path, timeout=10, wait_for_socket=False)
    assert time.monotonic() - started < 0.5


def test_connect_to_a_running_qemu_does_not_wait_while_refused(sock_path):
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(sock_path)       # bound, never listening: a monitor nobody serves
    started = time.monotonic()
    try:
        with pytest.raises(BackendError, match="cannot connect"):
            QMPClient.connect(sock_path, timeout=10, wait_for_socket=False)
    finally:
        stale.close()
    assert time.monotonic() - started < 0.5


def test_connect_to_a_silent_monitor_times_out(sock_path):
    release = threading.Event()
    server = serve(sock_path, lambda peer: release.wait(5))    # accepts, never greets: a stopped QEMU
    while not os.path.exists(sock_path):
        time.sleep(0.01)
    time.sleep(0.05)    # from bind to listen
    started = time.monotonic()
    with pytest.raises(OperationTimeout, match="greeting"):
        QMPClient.connect(sock_path, timeout=0.3, wait_for_socket=False)
    assert time.monotonic() - started < 1
    release.set()
    server.join()


def test_queries_have_a_short_default_deadline():
    assert qmp.command_timeout("query-status") == qmp.QUERY_TIMEOUT <= 3
    assert qmp.command_timeout("qmp_capabilities") == qmp.QUERY_TIMEOUT
    assert qmp.command_timeout("blockdev-add") == qmp.DEFAULT_TIMEOUT > qmp.QUERY_TIMEOUT


def test_execute_without_timeout_uses_the_command_deadline(sock_path, monkeypatch):
    monkeypatch.setattr(qmp, "QUERY_TIMEOUT", 0.3)
    release = threading.Event()

    def script(peer):
        peer.negotiate()
        peer.request()
        release.wait(5)

    server = serve(sock_path, script)
    with QMPClient.connect(sock_path, timeout=5) as client:
        started = time.monotonic()
        with pytest.raises(OperationTimeout, match="query-status"):
            client.execute("query-status")
        assert time.monotonic() - started < 1
    release.set()
    server.join()


def test_execute_times_out(sock_path):
    release = threading.Event()

    def script(peer):
        peer.negotiate()
        peer.request()
        release.wait(5)

    server = serve(sock_path, script)
    with QMPClient.connect(sock_path, timeout=5) as client:
        with pytest.raises(OperationTimeout, match="query-status"):
            client.execute("query-status", timeout=0.2)
    release.set()
    server.join()


def test_wait_event_matches_data_and_keeps_others(sock_path):
    def script(peer):
        peer.negotiate()
        peer.send(wire({"event": "DEVICE_DELETED", "data": {"device": "disk0"}}))
        peer.send(wire({"event": "DEVICE_DELETED", "data": {"device": "net0"}}))
        peer.wait_closed()

    server = serve(sock_path, script)
    with QMPClient.connect(sock_path, timeout=5) as client:
        event = client.wait_event("DEVICE_DELETED", timeout=2, match={"device": "net0"})
        assert event["data"]["device"] == "net0"
        assert [e["data"]["device"] for e in client.events()] == ["disk0"]
        with pytest.raises(OperationTimeout, match="SHUTDOWN"):
            client.wait_event("SHUTDOWN", timeout=0.2)
        client.close()
    server.join()


def test_events_drains_without_blocking(sock_path):
    sent = threading.Event()

    def script(peer):
        peer.negotiate()
        peer.send(wire({"event": "POWERDOWN"}))
        sent.set()
        peer.wait_closed()

    server = serve(sock_path, script)
    with QMPClient.connect(sock_path, timeout=5) as client:
        sent.wait(5)
        time.sleep(0.05)
        started = time.monotonic()
        assert [e["event"] for e in client.events()] == ["POWERDOWN"]
        assert time.monotonic() - started < 0.5
    server.join()


def test_execute_passes_file_descriptors(sock_path, tmp_path):
    def script(peer):
        peer.negotiate()
        request = peer.request()
        with os.fdopen(peer.fds[0], "w") as passed:
            passed.write("written through the passed fd")
        peer.reply(request)

    target = tmp_path / "target"
    server = serve(sock_path, script)
    with open(target, "w") as handle, QMPClient.connect(sock_path, timeout=5) as client:
        client.execute("getfd", {"fdname": "tap0"}, fds=[handle.fileno()])
    peer = server.join()
    assert peer.requests[-1]["arguments"] == {"fdname": "tap0"}
    assert len(peer.fds) == 1
    assert target.read_text() == "written through the passed fd"


def test_closed_client_refuses_commands(sock_path):
    server = serve(sock_path, lambda peer: peer.negotiate())
    client = QMPClient.connect(sock_path, timeout=5)
    with client:
        pass
    client.close()      # closing twice is harmless
    with pytest.raises(BackendError, match="closed"):
        client.execute("query-status")
    server.join()


def test_events_after_qemu_closed_still_returns_what_arrived(sock_path):
    def script(peer):
        peer.negotiate()
        peer.send(wire({"event": "SHUTDOWN", "data": {"guest": True, "reason": "guest-shutdown"}}))

    server = serve(sock_path, script)
    with QMPClient.connect(sock_path, timeout=5) as client:
        server.join()
        time.sleep(0.05)
        assert [e["data"]["reason"] for e in client.events()] == ["guest-shutdown"]
        client.close()
        assert client.events() == []
