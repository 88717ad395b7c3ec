# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reaping a stale capability probe of the embedded driver."""

from __future__ import annotations

from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import caps


def test_a_probe_reaped_by_another_run_meanwhile_is_still_removed(tmp_path, monkeypatch):
    workdir = tmp_path / "probe"
    workdir.mkdir()
    (workdir / "qemu.pid").write_text("4242\n")
    needle = f"unix:{workdir / 'qmp.sock'},".encode()

    def gone(pid, signum):
        raise ProcessLookupError(pid)
    monkeypatch.setattr(caps, "_cmdline", lambda pid: b"qemu\0-qmp\0" + needle + b"server=on\0")
    monkeypatch.setattr(caps.os, "kill", gone)
    monkeypatch.setattr(caps, "is_alive", lambda pid, starttime: False)
    caps._reap_probe(str(workdir))
    assert not workdir.exists()
