"""The guest agent client against a scripted agent on a UNIX socket, and the address source order."""

import json
import socket
import threading

import pytest

from ansible_collections.virtops.qemu.plugins.module_utils import addresses, guest_agent
from ansible_collections.virtops.qemu.plugins.module_utils.errors import OperationTimeout


def serve(path, handle):
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(1)

    def run():
        conn = server.accept()[0]
        with conn, conn.makefile("rwb") as stream:
            handle(stream)
        server.close()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def reply(stream, message):
    stream.write(json.dumps(message).encode() + b"\n")
    stream.flush()


def test_sync_skips_stale_replies_then_commands_get_their_answer(tmp_path):
    path = str(tmp_path / "qga.sock")

    def agent(stream):
        reply(stream, {"return": {"stale": True}})          # left over from an earlier client
        sync = json.loads(stream.readline())
        stream.write(b"\xff")
        reply(stream, {"return": 12345})                     # a stale sync answer
        reply(stream, {"return": sync["arguments"]["id"]})
        assert json.loads(stream.readline()) == {"execute": "guest-get-osinfo"}
        reply(stream, {"return": {"id": "debian", "version-id": "12"}})
    serve(path, agent)
    with guest_agent.GuestAgent.connect(path) as client:
        assert guest_agent.os_info(client) == {"id": "debian", "version-id": "12"}


def test_a_silent_agent_times_out_within_the_deadline(tmp_path):
    path = str(tmp_path / "qga.sock")
    done = threading.Event()
    serve(path, lambda stream: done.wait(5))
    with pytest.raises(OperationTimeout, match="qemu-guest-agent running"):
        guest_agent.GuestAgent.connect(path, timeout=0.5)
    done.set()


def test_addresses_by_mac_skip_loopback(tmp_path):
    path = str(tmp_path / "qga.sock")

    def agent(stream):
        sync = json.loads(stream.readline())
        reply(stream, {"return": sync["arguments"]["id"]})
        stream.readline()
        reply(stream, {"return": [
            {"name": "lo", "hardware-address": "00:00:00:00:00:00",
             "ip-addresses": [{"ip-address-type": "ipv4", "ip-address": "127.0.0.1", "prefix": 8}]},
            {"name": "eth0", "hardware-address": "52:54:00:AA:BB:CC",
             "ip-addresses": [{"ip-address-type": "ipv4", "ip-address": "10.0.0.5", "prefix": 24}]}]})
    serve(path, agent)
    with guest_agent.GuestAgent.connect(path) as client:
        assert guest_agent.interface_addresses(client) == {
            "52:54:00:aa:bb:cc": [{"address": "10.0.0.5", "prefix": 24, "family": "ipv4"}]}


def test_the_first_source_that_knows_an_interface_wins_and_each_source_is_asked_once():
    asked = []
    answers = {"lease": {"52:54:00:00:00:01": [{"address": "10.0.0.1", "prefix": 24, "family": "ipv4"}]},
               "agent": None,
               "arp": {"52:54:00:00:00:02": [{"address": "10.0.0.2", "prefix": 0, "family": "ipv4"}]}}

    def answer(source):
        asked.append(source)
        return answers[source]
    nics = [{"name": "vnet0", "mac": "52:54:00:00:00:01"}, {"name": "vnet1", "mac": "52:54:00:00:00:02"},
            {"name": "vnet2", "mac": "52:54:00:00:00:03"}]
    found = addresses.with_addresses(nics, ["lease", "agent", "arp"], answer)
    assert [(n["source"], [a["address"] for a in n["addresses"]]) for n in found] == [
        ("lease", ["10.0.0.1"]), ("arp", ["10.0.0.2"]), (None, [])]
    assert asked == ["lease", "agent", "arp"]
