# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How the embedded driver recognises a domain's QEMU among the host's processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import process

UUID = "3f0b6a56-4c55-4b6e-9c3a-0d1e2f3a4b5c"
OTHER = "00000000-0000-4000-8000-000000000001"


@pytest.fixture
def stand_in(tmp_path):
    """A process whose command line looks like a domain's QEMU (``-uuid``, ``-pidfile``)."""
    pidfile = tmp_path / "vm1.pid"
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                              "-uuid", UUID, "-pidfile", str(pidfile)])
    try:
        deadline = time.monotonic() + 10
        while process.command_line(child.pid)[-1:] != [str(pidfile)]:     # not exec'd yet
            assert time.monotonic() < deadline
            time.sleep(0.01)
        yield child, pidfile
    finally:
        child.kill()
        child.wait()


def test_a_process_runs_a_domain_only_if_its_command_line_names_the_uuid(stand_in):
    child, _pidfile = stand_in
    assert process.runs_domain(child.pid, UUID)
    assert process.runs_domain(child.pid, UUID.upper())
    assert not process.runs_domain(child.pid, OTHER)
    assert not process.runs_domain(child.pid, None)
    assert not process.runs_domain(os.getpid(), UUID)


def test_without_a_start_time_the_uuid_decides(stand_in):
    child, _pidfile = stand_in
    assert process.is_domain_process(child.pid, None, UUID)
    assert not process.is_domain_process(child.pid, None, OTHER)      # a reused pid
    assert process.is_domain_process(child.pid, process.start_time(child.pid), OTHER)
    assert not process.is_domain_process(child.pid, process.start_time(child.pid) + 1, UUID)


def test_find_domain_process_trusts_the_pidfile_only_for_the_right_uuid(stand_in):
    child, pidfile = stand_in
    assert process.find_domain_process(str(pidfile), UUID, scan=False) is None     # no pidfile yet
    assert process.find_domain_process(str(pidfile), UUID) == child.pid            # found by its command line
    pidfile.write_text(f"{os.getpid()}\n")                                          # an unrelated live pid
    assert process.find_domain_process(str(pidfile), UUID, scan=False) is None
    assert process.find_domain_process(str(pidfile), UUID) == child.pid
    pidfile.write_text(f"{child.pid}\n")
    assert process.find_domain_process(str(pidfile), UUID, scan=False) == child.pid
    assert process.find_domain_process(str(pidfile), OTHER) is None
    child.kill()
    child.wait()
    assert process.find_domain_process(str(pidfile), UUID) is None


def test_option_syntax_with_escaped_commas():
    assert process.split_options("socket,id=charmonitor,path=/r/a,,b/monitor.sock,server=on,wait=off") == {
        "id": "charmonitor", "path": "/r/a,b/monitor.sock", "server": "on", "wait": "off"}
    assert process.split_options("path=/x,,,,y") == {"path": "/x,,y"}


def test_monitor_and_taps_from_a_command_line():
    argv = ["qemu-system-x86_64", "-uuid", UUID,
            "-chardev", "pty,id=charserial0",
            "-chardev", "socket,id=charmonitor,path=/r/lib/qemu/domain-3-vm,,1/monitor.sock,server=on,wait=off",
            "-mon", "chardev=charmonitor,id=monitor,mode=control",
            "-netdev", '{"type":"tap","ifname":"vnet4","script":"no","downscript":"no","id":"hostnet0"}',
            "-netdev", '{"type":"user","id":"hostnet1"}']
    assert process.monitor_path(argv) == "/r/lib/qemu/domain-3-vm,1/monitor.sock"
    assert process.tap_names(argv) == ["vnet4"]
    assert process.option_value(argv, "-uuid") == UUID
    assert process.option_value(argv, "-pidfile") == ""
    assert process.monitor_path(["qemu-system-x86_64"]) == ""
