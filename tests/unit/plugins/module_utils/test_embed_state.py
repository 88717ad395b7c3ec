# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The status record of the embedded driver survives a write and a read."""

from __future__ import annotations

import pytest

from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import state
from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import parse


def test_a_start_in_progress_names_its_starter(tmp_path):
    live = parse("<domain type='qemu' id='2'><name>vm1</name><uuid>u</uuid></domain>", "domain")
    record = state.DomainRecord("paused", "starting up", domain_id=2, monitor="/r/m.sock", live=live,
                                starter=4242, starter_time=987654)
    path = str(tmp_path / "vm1.xml")
    state.save_record(path, record)
    back = state.load_record(path)
    assert (back.state, back.reason, back.starter, back.starter_time) == ("paused", "starting up", 4242, 987654)
    assert back.domain_id == 2 and back.live.findtext("uuid") == "u"


def test_a_finished_start_names_no_starter(tmp_path):
    path = str(tmp_path / "vm1.xml")
    state.save_record(path, state.DomainRecord("running", "booted", pid=10, starttime=20))
    back = state.load_record(path)
    assert back.starter is None and back.starter_time is None
    assert "starter" not in (tmp_path / "vm1.xml").read_text()


def test_a_status_file_that_is_not_utf8_is_a_backend_error(tmp_path):
    path = tmp_path / "vm1.xml"
    path.write_bytes(b"<domstatus state='running' reason='\xff'/>")
    with pytest.raises(BackendError, match="vm1.xml is unreadable"):
        state.load_record(str(path))
