# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A start record this run left behind is not mistaken for a start in progress."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import process, state
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.backend import EmbedDriver
from ansible_collections.virtops.qemu.plugins.module_utils.uri import parse_uri


@pytest.fixture
def root():
    path = tempfile.mkdtemp(prefix="vo", dir="/tmp")     # short enough for monitor socket paths
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_an_own_unfinished_start_is_cleaned_up(root):
    driver = EmbedDriver(parse_uri(f"qemu:///embed?root={root}"))
    driver.ensure_tree()
    layout = driver.layout
    with open(layout.domains.config_file("vm1"), "w", encoding="utf-8") as handle:
        handle.write("<domain type='qemu'><name>vm1</name><uuid>0b3c2c59-5f4a-4d8a-9e4c-3c5d7b1c0a01</uuid></domain>")
    me = os.getpid()
    state.save_record(layout.domains.status_file("vm1"),
                      state.DomainRecord("paused", "starting up", starter=me, starter_time=process.start_time(me)))
    status = driver.domains.status("vm1")
    assert (status.state, status.reason) == ("shutoff", "failed")
