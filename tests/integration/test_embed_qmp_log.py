# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The embedded driver's QMP traffic log (log/qemu/NAME.qmp.log) with a real QEMU."""

from __future__ import annotations

import json
import os
import signal
import stat

import pytest

from ansible_collections.virtops.qemu.plugins.module_utils.driver.connect import open_driver
from ansible_collections.virtops.qemu.plugins.module_utils.qmp import QMPError

pytestmark = [pytest.mark.embed]

PASSWORD = "Vnc-7hx2Qp"


def domain_xml(name: str = "vm1") -> str:
    # No disk, no kernel: QEMU sits in its firmware, which is all a monitor needs.
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1' passwd='{PASSWORD}'/>
  </devices>
</domain>"""


def sent(lines: list[str]) -> list[dict]:
    return [json.loads(line.split("] -> ", 1)[1].split(" (+", 1)[0]) for line in lines if "] -> " in line]


def test_a_domains_monitor_traffic_is_logged_without_its_password(driver, root):
    driver.domains.define(domain_xml())
    driver.domains.start("vm1")
    log = root / "log" / "qemu" / "vm1.qmp.log"
    assert driver.domains.status("vm1").state == "running"
    assert log.read_text().count("== connected") == 1, "right after its own start a run asks QEMU nothing more"
    with pytest.raises(QMPError) as caught:
        driver.domains.monitor("vm1", {"execute": "no-such-command"})
    assert "no-such-command" in str(caught.value) and "monitor.sock" in str(caught.value)
    assert driver.domains.status("vm1").state == "running"       # after talking to QEMU: query-status
    with open_driver(f"qemu:///embed?root={root}", read_only=True) as reader:
        reader.domains.status("vm1")         # a read-only run (check mode, info modules) writes no log
    before_destroy = log.read_text().splitlines()
    driver.domains.destroy("vm1")

    lines = log.read_text().splitlines()
    assert stat.S_IMODE(os.stat(log).st_mode) == 0o600
    assert PASSWORD not in log.read_text()
    commands = [m["execute"] for m in sent(lines)]
    assert commands[:4] == ["qmp_capabilities", "set_password", "cont", "qmp_capabilities"]
    assert "query-status" in commands and commands[-1] == "quit"
    assert sent(lines)[1]["arguments"] == {"protocol": "vnc", "password": "********"}
    replies = [json.loads(line.split("] <- ", 1)[1]) for line in lines if "] <- " in line]
    assert any(r.get("return", {}).get("status") == "running" for r in replies if isinstance(r.get("return"), dict))
    assert any(r.get("error", {}).get("class") == "CommandNotFound" for r in replies)
    # The read-only run's query-status is not there: the last thing before destroy is this run's.
    failed_at = max(i for i, line in enumerate(before_destroy) if "CommandNotFound" in line)
    assert [m["execute"] for m in sent(before_destroy[failed_at:])] == ["qmp_capabilities", "query-status"]
    assert '"status": "running"' in before_destroy[-1]


def test_a_qemu_that_died_right_after_its_start_is_seen_dead_by_the_same_run(driver, root):
    driver.domains.define(domain_xml("vm2"))
    driver.domains.start("vm2")
    pid = int((root / "run" / "qemu" / "vm2.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert driver.domains.status("vm2").state == "shutoff"
