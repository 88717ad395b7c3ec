# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The embedded driver's directory layout, status files, locks and exit reasons."""

from __future__ import annotations

import os
import stat
import threading
import time

import pytest

from ansible_collections.virtops.qemu.plugins.module_utils import fileio
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import process, state
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.autostart import systemd_unit
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.layout import (
    MAX_SOCKET_PATH,
    Layout,
    check_socket_path,
    short_name,
)
from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError, InvalidInput, OperationTimeout
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import parse
from ansible_collections.virtops.qemu.plugins.module_utils.uri import parse_uri

TREE = ("log/qemu", "log/swtpm", "etc/qemu", "etc/qemu/autostart", "etc/pki/qemu", "run/qemu",
        "run/swtpm", "cache/qemu", "lib/qemu", "lib/qemu/nvram", "lib/swtpm",
        "etc/network/autostart", "run/network/locks/network", "etc/storage/autostart", "run/storage/locks/pool")


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_paths_follow_libvirt_embed_tree():
    layout = Layout("/srv/vm/")
    assert layout.root == "/srv/vm"
    assert layout.qemu_conf == "/srv/vm/etc/qemu.conf"
    assert layout.domains.config_file("web") == "/srv/vm/etc/qemu/web.xml"
    assert layout.domains.autostart_link("web") == "/srv/vm/etc/qemu/autostart/web.xml"
    assert layout.domains.status_file("web") == "/srv/vm/run/qemu/web.xml"
    assert layout.pidfile("web") == "/srv/vm/run/qemu/web.pid"
    assert layout.log_file("web") == "/srv/vm/log/qemu/web.log"
    assert layout.cache_dir == "/srv/vm/cache/qemu"
    assert layout.monitor_socket(3, "web") == "/srv/vm/lib/qemu/domain-3-web/monitor.sock"
    assert layout.nvram_file("web") == "/srv/vm/lib/qemu/nvram/web_VARS.fd"
    assert layout.tpm_state_dir("u-u-i-d") == "/srv/vm/lib/swtpm/u-u-i-d"


@pytest.mark.parametrize("kind, directory", [("network", "network"), ("pool", "storage")])
def test_every_kind_has_its_part_of_the_tree(kind, directory):
    paths = Layout("/srv/vm").kinds[kind]
    assert paths.config_file("n") == f"/srv/vm/etc/{directory}/n.xml"
    assert paths.autostart_link("n") == f"/srv/vm/etc/{directory}/autostart/n.xml"
    assert paths.status_file("n") == f"/srv/vm/run/{directory}/n.xml"
    assert paths.lock_file("driver") == f"/srv/vm/run/{directory}/locks/{kind}/driver.lock"


def test_domain_dir_uses_libvirt_short_name():
    name = "a-very-long-domain-name-indeed"
    assert short_name(name) == name[:20]
    assert Layout("/r").domain_dir(12, name) == f"/r/lib/qemu/domain-12-{name[:20]}"


def test_tree_is_created_private(tmp_path):
    os.umask(0o022)
    root = tmp_path / "root"
    Layout(str(root)).ensure_tree()
    assert _mode(root) == 0o700
    for relative in TREE:
        assert (root / relative).is_dir(), relative
        assert _mode(root / relative) == 0o700, relative
    Layout(str(root)).ensure_tree()     # idempotent


def test_existing_root_keeps_its_mode(tmp_path):
    tmp_path.chmod(0o755)
    Layout(str(tmp_path)).ensure_tree()
    assert _mode(tmp_path) == 0o755
    assert _mode(tmp_path / "run" / "qemu") == 0o700


def test_socket_room_checked_before_creation(tmp_path):
    root = tmp_path / ("x" * 90)
    layout = Layout(str(root), f"qemu:///embed?root={root}")
    with pytest.raises(InvalidInput) as info:
        layout.check_socket_room()
    assert info.value.option == "uri"
    assert "107" in str(info.value) and str(root) in str(info.value)
    assert not root.exists()


def test_socket_room_fits_short_root():
    Layout("/var/lib/virtops").check_socket_room()
    # the worst case the check allows is exactly at the limit
    longest = "/" + "r" * (MAX_SOCKET_PATH - len("/lib/qemu/domain-99999-" + "n" * 20 + "/monitor.sock") - 1)
    Layout(longest).check_socket_room()
    with pytest.raises(InvalidInput):
        Layout(longest + "r").check_socket_room()


def test_check_socket_path_counts_bytes():
    check_socket_path("/" + "a" * 106, "qemu:///embed?root=/a")
    with pytest.raises(InvalidInput):
        check_socket_path("/" + "é" * 54, "qemu:///embed?root=/a")


def test_relative_root_is_refused():
    with pytest.raises(InvalidInput) as info:
        parse_uri("qemu:///embed?root=relative/dir")
    assert info.value.option == "uri"


# -- state ----------------------------------------------------------------
def test_atomic_write_replaces_privately(tmp_path):
    target = tmp_path / "x.xml"
    target.write_text("old")
    fileio.atomic_write(str(target), "new", mode=0o600)
    assert target.read_text() == "new"
    assert _mode(target) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["x.xml"]


def test_status_record_round_trip(tmp_path):
    live = parse("<domain type='qemu' id='4'><name>web</name></domain>", "domain")
    record = state.DomainRecord("running", "booted", pid=1234, starttime=99, started="2024-01-01T00:00:00+00:00",
                                domain_id=4, monitor="/r/lib/qemu/domain-4-web/monitor.sock",
                                domain_dir="/r/lib/qemu/domain-4-web", taints=["custom-argv"],
                                taps=["vnet0"], live=live)
    path = str(tmp_path / "web.xml")
    state.save_record(path, record)
    text = (tmp_path / "web.xml").read_text()
    assert text.startswith("<domstatus state=\"running\" reason=\"booted\" pid=\"1234\">")
    loaded = state.load_record(path)
    assert (loaded.state, loaded.reason, loaded.pid, loaded.starttime) == ("running", "booted", 1234, 99)
    assert loaded.domain_id == 4 and loaded.taps == ["vnet0"] and loaded.taints == ["custom-argv"]
    assert loaded.monitor == record.monitor and loaded.domain_dir == record.domain_dir
    assert loaded.live.findtext("name") == "web"
    assert loaded.active


def test_shutoff_record_is_inactive(tmp_path):
    path = str(tmp_path / "web.xml")
    state.save_record(path, state.DomainRecord("shutoff", "crashed"))
    loaded = state.load_record(path)
    assert (loaded.state, loaded.reason, loaded.pid, loaded.live) == ("shutoff", "crashed", None, None)
    assert not loaded.active
    assert state.load_record(str(tmp_path / "none.xml")) is None


def test_lock_excludes_other_threads(tmp_path):
    path = str(tmp_path / "d.lock")
    inside, order = threading.Event(), []

    def holder():
        with fileio.file_lock(path, "domain d"):
            inside.set()
            time.sleep(0.3)
            order.append("holder")

    thread = threading.Thread(target=holder)
    thread.start()
    inside.wait(5)
    with fileio.file_lock(path, "domain d"):
        order.append("second")
    thread.join()
    assert order == ["holder", "second"]


def test_lock_times_out(tmp_path):
    path = str(tmp_path / "d.lock")
    with fileio.file_lock(path, "domain d"):
        with pytest.raises(OperationTimeout, match="domain d"):
            with fileio.file_lock(path, "domain d", timeout=0.2):
                pass


def test_a_lock_file_that_cannot_be_checked_is_a_backend_error_and_leaks_no_fd(tmp_path, monkeypatch):
    path = str(tmp_path / "d.lock")
    real_stat = os.stat

    def denied(target, *args, **kwargs):
        if target == path:
            raise PermissionError(13, "Permission denied")
        return real_stat(target, *args, **kwargs)
    monkeypatch.setattr(fileio.os, "stat", denied)
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(BackendError, match=f"cannot check lock file {path}: Permission denied"):
        with fileio.file_lock(path, "domain d"):
            pass
    assert len(os.listdir("/proc/self/fd")) == before


# -- process ----------------------------------------------------------------
@pytest.mark.parametrize("pidfile_left, trace, reason", [
    (True, None, "crashed"),
    (True, "runstate_set current_run_state 9 (running) new_state 4 (paused)", "crashed"),
    (False, None, "shutdown"),
    (False, "1@1.0:qemu_system_shutdown_request reason=6\n", "shutdown"),
    (False, "1@1.0:runstate_set current_run_state 9 (running) new_state 10 (guest-panicked)\n", "crashed"),
    (False, "1@1.0:qemu_system_shutdown_request reason=8\n", "crashed"),
])
def test_exit_reason(pidfile_left, trace, reason):
    assert process.exit_reason(pidfile_left, trace) == reason


def test_runtime_args():
    assert process.runtime_args("/r/p.pid", "/r/t", False) == ["-pidfile", "/r/p.pid"]
    args = process.runtime_args("/r/p.pid", "/r/t", True)
    assert args[:4] == ["-pidfile", "/r/p.pid", "-D", "/r/t"]
    assert "-daemonize" not in args     # incompatible with -sandbox spawn=deny


def test_start_time_of_self_and_dead_pid():
    assert process.start_time(os.getpid()) is not None
    assert process.is_alive(os.getpid(), process.start_time(os.getpid()))
    assert not process.is_alive(os.getpid(), -1)        # a reused pid
    assert not process.is_alive(None, None)


def test_systemd_unit_keeps_guests_alive():
    unit = systemd_unit("/var/lib/virtops", "/usr/share/ansible/collections")
    assert "KillMode=process" in unit
    assert "--root /var/lib/virtops" in unit
    assert "Environment=PYTHONPATH=/usr/share/ansible/collections" in unit
