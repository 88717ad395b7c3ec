# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Typed QMP commands and the QMP traffic log, against the scripted fake QMP server of test_qmp."""

from __future__ import annotations

import json
import os
import stat

import pytest
from test_qmp import FakeQMPServer, wire

from ansible_collections.virtops.qemu.plugins.module_utils import qmp_commands as qmpc
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import migration
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.backend import EmbedDriver
from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError
from ansible_collections.virtops.qemu.plugins.module_utils.qmp import QMPClient, QMPError, TrafficLog, masked
from ansible_collections.virtops.qemu.plugins.module_utils.uri import parse_uri

PASSWORD = "hunter2-Zq9"


@pytest.fixture
def sock_path(short_tmp_path):
    return str(short_tmp_path / "qmp.sock")


@pytest.fixture
def log_path(short_tmp_path):
    return str(short_tmp_path / "vm1.qmp.log")


def answering(*replies):
    """A server script: negotiate, then answer each request with the next reply (a return value,
    or a dict with "error")."""
    def script(peer):
        peer.negotiate()
        for reply in replies:
            request = peer.request()
            if isinstance(reply, dict) and "error" in reply:
                peer.send(wire({"id": request["id"], "error": reply["error"]}))
            else:
                peer.reply(request, reply)
    return script


def run(sock_path, script, commands, traffic=None):
    """Run ``commands(client)`` against the fake server; its result and the requests QEMU saw."""
    server = FakeQMPServer(sock_path, script).start()
    try:
        with QMPClient.connect(sock_path, timeout=5, traffic=traffic) as client:
            result = commands(client)
    finally:
        peer = server.join()
    return result, peer.requests[1:]


def log_lines(path: str) -> list[str]:
    with open(path, encoding="utf-8") as log:
        return log.read().splitlines()


# -- typed commands ------------------------------------------------------------------
def test_a_typed_query_returns_qemus_object(sock_path):
    status, requests = run(sock_path, answering({"running": True, "status": "running", "singlestep": False}),
                           qmpc.query_status)
    assert status["status"] == "running" and status["running"] is True
    assert requests == [{"execute": "query-status", "id": requests[0]["id"]}]


def test_a_typed_list_query_returns_its_objects(sock_path):
    jobs = [{"id": "migrate-vda", "type": "mirror", "status": "ready", "current-progress": 5,
             "total-progress": 5}]
    found, _requests = run(sock_path, answering(jobs), qmpc.query_jobs)
    assert [job["status"] for job in found] == ["ready"]


def test_typed_arguments_become_qemus_arguments(sock_path):
    def commands(client):
        qmpc.migrate_set_capabilities(client, {"events": True, "auto-converge": False})
        qmpc.migrate_set_parameters(client, max_bandwidth=1048576)
        qmpc.migrate_set_parameters(client)         # nothing to set: nothing sent
        qmpc.blockdev_mirror(client, "migrate-vda", "libvirt-1-format", "migrate-vda", sync="full",
                             auto_dismiss=False)
        qmpc.send_key(client, [{"type": "number", "data": 30}], hold_time=0)

    _result, requests = run(sock_path, answering({}, {}, {}, {}), commands)
    assert [(r["execute"], r.get("arguments")) for r in requests] == [
        ("migrate-set-capabilities", {"capabilities": [{"capability": "events", "state": True},
                                                       {"capability": "auto-converge", "state": False}]}),
        ("migrate-set-parameters", {"max-bandwidth": 1048576}),
        ("blockdev-mirror", {"job-id": "migrate-vda", "device": "libvirt-1-format", "target": "migrate-vda",
                             "sync": "full", "auto-dismiss": False}),
        ("send-key", {"keys": [{"type": "number", "data": 30}]}),
    ]


def test_an_external_snapshot_and_its_commit_on_the_wire(sock_path):
    def commands(client):
        qmpc.blockdev_add(client, {"driver": "qcow2", "node-name": "virtops-1", "backing": None,
                                   "file": {"driver": "file", "filename": "/r/vda.snap1"}})
        qmpc.transaction(client, [qmpc.blockdev_snapshot_action("libvirt-1-format", "virtops-1")])
        qmpc.block_commit(client, "virtops-commit-virtops-1", "virtops-1", "libvirt-1-format",
                          auto_dismiss=False)
        qmpc.job_complete(client, "virtops-commit-virtops-1")
        qmpc.job_dismiss(client, "virtops-commit-virtops-1")

    _result, requests = run(sock_path, answering({}, {}, {}, {}, {}), commands)
    assert [(r["execute"], r.get("arguments")) for r in requests] == [
        ("blockdev-add", {"driver": "qcow2", "node-name": "virtops-1", "backing": None,
                          "file": {"driver": "file", "filename": "/r/vda.snap1"}}),
        ("transaction", {"actions": [{"type": "blockdev-snapshot",
                                      "data": {"node": "libvirt-1-format", "overlay": "virtops-1"}}]}),
        ("block-commit", {"job-id": "virtops-commit-virtops-1", "device": "virtops-1",
                          "base-node": "libvirt-1-format", "auto-dismiss": False}),
        ("job-complete", {"id": "virtops-commit-virtops-1"}),
        ("job-dismiss", {"id": "virtops-commit-virtops-1"}),
    ]


@pytest.mark.parametrize("command, call", [
    ("transaction", lambda client: qmpc.transaction(client, [qmpc.blockdev_snapshot_action("a", "b")])),
    ("block-commit", lambda client: qmpc.block_commit(client, "j", "top", "base")),
    ("job-complete", lambda client: qmpc.job_complete(client, "j")),
])
def test_a_failed_block_command_is_named(sock_path, command, call):
    error = {"error": {"class": "GenericError", "desc": "Job 'j' in state 'running' cannot accept command"}}
    with pytest.raises(QMPError) as caught:
        run(sock_path, answering(error), call)
    assert caught.value.command == command and f"QMP {command} failed on {sock_path}" in str(caught.value)


def test_the_block_queries_return_qemus_nodes(sock_path):
    inserted = {"node-name": "libvirt-1-format", "drv": "qcow2", "file": "/r/vda.qcow2", "ro": False,
                "image": {"filename": "/r/vda.qcow2", "format": "qcow2",
                          "backing-image": {"filename": "/r/base.qcow2"}}}
    block = [{"device": "", "qdev": "/machine/peripheral/virtio-disk0/virtio-backend", "locked": False,
              "removable": False, "inserted": inserted}, {"device": "ide1-cd0", "removable": True}]

    def commands(client):
        return qmpc.query_block(client), qmpc.query_named_block_nodes(client)

    (devices, nodes), requests = run(sock_path, answering(block, [inserted]), commands)
    assert [d.get("inserted", {}).get("node-name") for d in devices] == ["libvirt-1-format", None]
    assert nodes[0]["image"]["backing-image"]["filename"] == "/r/base.qcow2"
    assert [r["execute"] for r in requests] == ["query-block", "query-named-block-nodes"]
    with pytest.raises(BackendError, match="query-block.*expected a reply of type dict"):
        run(sock_path + "2", answering(["not a BlockInfo"]), qmpc.query_block)


def test_the_run_state_commands_on_the_wire(sock_path):
    def commands(client):
        qmpc.stop(client)
        qmpc.cont(client)
        qmpc.system_powerdown(client)
        qmpc.snapshot_delete(client, "virtops-snapshot-delete-1", "s1", ["libvirt-1-format"])
        chardevs = qmpc.query_chardev(client)
        qmpc.quit_qemu(client, timeout=1)
        return chardevs

    chardevs = [{"label": "charserial0", "filename": "pty:/dev/pts/7", "frontend-open": True}]
    found, requests = run(sock_path, answering({}, {}, {}, {}, chardevs, {}), commands)
    assert found == chardevs
    assert [(r["execute"], r.get("arguments")) for r in requests] == [
        ("stop", None), ("cont", None), ("system_powerdown", None),
        ("snapshot-delete", {"job-id": "virtops-snapshot-delete-1", "tag": "s1", "devices": ["libvirt-1-format"]}),
        ("query-chardev", None), ("quit", None),
    ]


def test_probe_queries_are_typed_and_checked(sock_path):
    def commands(client):
        types = qmpc.qom_list_types(client, "device", timeout=2)
        models = qmpc.query_tpm_models(client, timeout=2)
        return types, models, qmpc.query_version(client, timeout=2)["qemu"]["minor"]

    version = {"qemu": {"major": 7, "minor": 2, "micro": 22}, "package": "x"}
    found, requests = run(sock_path, answering([{"name": "virtio-net-pci"}], ["tpm-tis"], version), commands)
    assert found == ([{"name": "virtio-net-pci"}], ["tpm-tis"], 2)
    assert requests[0]["arguments"] == {"implements": "device", "abstract": False}
    with pytest.raises(BackendError, match="query-tpm-types.*expected a reply of type str"):
        run(sock_path + "2", answering([{"not": "a string"}]), qmpc.query_tpm_types)


def test_qemus_error_names_the_command_the_monitor_and_qemus_class(sock_path):
    error = {"error": {"class": "DeviceNotFound", "desc": "Failed to find node with node-name='migrate-vda'"}}
    with pytest.raises(QMPError) as caught:
        run(sock_path, answering(error), lambda client: qmpc.blockdev_del(client, "migrate-vda"))
    assert isinstance(caught.value, BackendError)
    assert (caught.value.command, caught.value.error_class, caught.value.monitor) == \
        ("blockdev-del", "DeviceNotFound", sock_path)
    message = str(caught.value)
    assert "blockdev-del" in message and sock_path in message and "DeviceNotFound" in message \
        and "node-name='migrate-vda'" in message


def test_a_reply_of_the_wrong_shape_names_the_command(sock_path):
    with pytest.raises(BackendError, match="query-jobs.*expected a reply of type list"):
        run(sock_path, answering({"not": "a list"}), qmpc.query_jobs)


# -- traffic log -------------------------------------------------------------------------
def test_the_log_has_the_exchange_and_never_the_password(sock_path, log_path):
    def commands(client):
        qmpc.set_password(client, "vnc", PASSWORD)
        return qmpc.runstate(client)

    def script(peer):
        answering({})(peer)
        request = peer.request()
        peer.send(wire({"event": "RESUME", "timestamp": {"seconds": 1, "microseconds": 2}}))
        peer.reply(request, {"running": True, "status": "running"})

    state, requests = run(sock_path, script, commands, traffic=TrafficLog(log_path))
    assert state == "running"
    assert requests[0]["arguments"]["password"] == PASSWORD      # QEMU got it
    text = open(log_path, encoding="utf-8").read()
    assert PASSWORD not in text
    assert stat.S_IMODE(os.stat(log_path).st_mode) == 0o600
    exchange = [line.split("] ", 1)[1] for line in log_lines(log_path)]
    assert [line[:2] for line in exchange] == ["==", "<-", "->", "<-", "->", "<-", "->", "<-", "<-"]
    sent = [json.loads(line[3:]) for line in exchange if line.startswith("->")]
    assert [m["execute"] for m in sent] == ["qmp_capabilities", "set_password", "query-status"]
    assert sent[1]["arguments"] == {"protocol": "vnc", "password": "********"}
    received = [json.loads(line[3:]) for line in exchange if line.startswith("<-")]
    assert "QMP" in received[0]
    assert received[-2]["event"] == "RESUME"
    assert received[-1]["return"]["status"] == "running"
    assert log_lines(log_path)[0][:4].isdigit() and f"[{os.getpid()}]" in log_lines(log_path)[0]


def test_qemus_error_reply_is_in_the_log(sock_path, log_path):
    error = {"error": {"class": "GenericError", "desc": "No job with id 'x'"}}
    with pytest.raises(QMPError):
        run(sock_path, answering(error), lambda client: qmpc.job_dismiss(client, "x"),
            traffic=TrafficLog(log_path))
    assert "No job with id 'x'" in log_lines(log_path)[-1]


def test_a_monitor_that_cannot_be_reached_is_noted(sock_path, log_path):
    with pytest.raises(BackendError):
        QMPClient.connect(sock_path, timeout=1, wait_for_socket=False, traffic=TrafficLog(log_path))
    assert "!! cannot connect to QMP socket" in log_lines(log_path)[-1]


def test_secrets_are_masked_wherever_they_are():
    secret = {"qom-type": "secret", "id": "sec0", "data": "c2VjcmV0", "format": "base64"}
    assert masked({"execute": "object-add", "arguments": secret}) == \
        {"execute": "object-add", "arguments": dict(secret, data="********")}
    luks = masked({"arguments": {"driver": "luks", "key-secret": "sec0", "file": "disk0"}})
    assert luks["arguments"] == {"driver": "luks", "key-secret": "********", "file": "disk0"}
    assert masked({"arguments": {"protocol": "spice", "password": "pw"}})["arguments"]["password"] == "********"
    # Data that is no secret's stays.
    assert masked({"event": "X", "data": {"device": "vda"}}) == {"event": "X", "data": {"device": "vda"}}
    for line, shown in [("set_password vnc hunter2", "set_password vnc ********"),
                        ("change vnc password hunter2", "change vnc password ********"),
                        ("object_add secret,id=s0,data=hunter2", "object_add secret,id=s0,data=********"),
                        ("info status", "info status")]:
        hmp = masked({"execute": "human-monitor-command", "arguments": {"command-line": line}})
        assert hmp["arguments"]["command-line"] == shown


def test_the_log_rotates_once_at_its_cap(log_path):
    log = TrafficLog(log_path, limit=4096)
    for index in range(200):
        log.note(f"line {index:03d} " + "x" * 40)
    log.close()
    assert os.path.getsize(log_path) <= 4096 and os.path.getsize(f"{log_path}.1") <= 4096
    assert stat.S_IMODE(os.stat(f"{log_path}.1").st_mode) == 0o600
    assert log_lines(log_path)[-1].endswith("line 199 " + "x" * 40)
    older, newer = log_lines(f"{log_path}.1"), log_lines(log_path)
    assert int(older[-1].split("line ")[1][:3]) + 1 == int(newer[0].split("line ")[1][:3])
    assert not os.path.exists(f"{log_path}.2")


def test_a_log_another_run_rotated_is_not_rotated_again(log_path):
    first, second = TrafficLog(log_path, limit=300), TrafficLog(log_path, limit=300)
    first.note("a" * 100)
    second.note("b" * 100)
    first.note("c" * 100)       # rotates: the a and b lines go to .1
    second.note("d" * 100)      # its file is .1 now: it opens the new log instead of rotating that
    first.close()
    second.close()
    assert ["a", "b"] == [line[-100] for line in log_lines(f"{log_path}.1")]
    assert ["c", "d"] == [line[-100] for line in log_lines(log_path)]


def test_a_log_that_cannot_be_written_does_not_fail_the_command(sock_path, short_tmp_path):
    missing = str(short_tmp_path / "no-such-dir" / "vm1.qmp.log")
    status, _requests = run(sock_path, answering({"running": False, "status": "paused"}), qmpc.query_status,
                            traffic=TrafficLog(missing))
    assert status["status"] == "paused"


def test_a_long_message_is_cut_in_the_log(sock_path, log_path):
    schema = [{"name": f"type{index}", "meta-type": "object"} for index in range(2000)]
    run(sock_path, answering(schema), lambda client: client.execute("query-qmp-schema"),
        traffic=TrafficLog(log_path))
    last = log_lines(log_path)[-1]
    assert len(last) < 17000 and "characters in all)" in last


# -- the embedded driver's log ------------------------------------------------------------------
def test_the_embedded_driver_logs_next_to_qemus_log(short_tmp_path):
    uri = f"qemu:///embed?root={short_tmp_path}"
    traffic = EmbedDriver(parse_uri(uri)).domains._traffic("vm1")
    assert traffic is not None and traffic.path == f"{short_tmp_path}/log/qemu/vm1.qmp.log"
    assert EmbedDriver(parse_uri(uri), read_only=True).domains._traffic("vm1") is None


# -- the embedded migration's source side, on the wire --------------------------------------------
def test_a_migration_with_disks_finishes_the_mirrors_at_the_switch_over(sock_path):
    incoming = {"migration_uri": "tcp:10.0.0.2:49152", "nbd": {"host": "10.0.0.2", "port": 10809},
                "exports": [{"target": "vda", "name": "vda"}]}
    concluded = [{"id": "migrate-vda", "type": "mirror", "status": "concluded", "current-progress": 1,
                  "total-progress": 1}]
    script = answering({}, {}, {}, {"status": "active"}, {"status": "pre-switchover"},
                       {}, concluded, {}, {}, {}, {"status": "completed", "downtime": 12, "ram": {"transferred": 9}})
    info, requests = run(sock_path, script, lambda client: migration._migrate(
        client, incoming, {"bandwidth": 2, "max_downtime": None, "auto_converge": False}))
    assert info["status"] == "completed"
    assert [(r["execute"], r.get("arguments")) for r in requests] == [
        ("migrate-set-capabilities", {"capabilities": [
            {"capability": "events", "state": True}, {"capability": "auto-converge", "state": False},
            {"capability": "pause-before-switchover", "state": True}]}),
        ("migrate-set-parameters", {"max-bandwidth": 2 * 1024 * 1024}),
        ("migrate", {"uri": "tcp:10.0.0.2:49152"}),
        ("query-migrate", None),
        ("query-migrate", None),
        ("block-job-cancel", {"device": "migrate-vda"}),
        ("query-jobs", None),
        ("job-dismiss", {"id": "migrate-vda"}),
        ("blockdev-del", {"node-name": "migrate-vda"}),
        ("migrate-continue", {"state": "pre-switchover"}),
        ("query-migrate", None),
    ]


def test_a_failed_migration_says_why(sock_path):
    script = answering({}, {}, {"status": "failed", "error-desc": "Unable to write to socket"})
    with pytest.raises(BackendError, match="the migration failed: Unable to write to socket"):
        run(sock_path, script, lambda client: migration._migrate(
            client, {"migration_uri": "tcp:h:1"}, {"auto_converge": True}))
