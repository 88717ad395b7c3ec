# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""QMP sessions of the embedded driver: only a monitor that does not greet is given up for the run."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import pytest

from ansible_collections.virtops.qemu.plugins.module_utils import qmp as qmpmod
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import domains as domainsmod
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.state import DomainRecord
from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError, OperationTimeout


class _SlowClient:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def execute(self, command, arguments=None, timeout=None):
        raise OperationTimeout(f"QMP {command}: timed out")


def _domains() -> domainsmod.EmbedDomains:
    domains = domainsmod.EmbedDomains.__new__(domainsmod.EmbedDomains)
    domains._unanswered = set()
    domains._started = {}
    domains.driver = SimpleNamespace(read_only=True)     # no traffic log
    return domains


def test_a_slow_command_does_not_give_up_the_monitor(monkeypatch):
    monkeypatch.setattr(qmpmod.QMPClient, "connect", classmethod(lambda cls, *a, **k: _SlowClient()))
    domains = _domains()
    for _attempt in range(2):
        with pytest.raises(OperationTimeout), domains._session("/r/m.sock") as qmp:
            qmp.execute("human-monitor-command")
    assert domains._unanswered == set()


def test_a_monitor_that_does_not_greet_is_not_asked_again(monkeypatch):
    def silent(cls, path, **kwargs):
        raise OperationTimeout(f"QMP {path}: timed out waiting for the greeting")
    monkeypatch.setattr(qmpmod.QMPClient, "connect", classmethod(silent))
    domains = _domains()
    with pytest.raises(OperationTimeout), domains._session("/r/m.sock"):
        pass
    with pytest.raises(BackendError, match="did not answer earlier in this run"), domains._session("/r/m.sock"):
        pass


def test_a_user_command_gets_the_long_deadline_even_when_it_is_a_query(monkeypatch):
    deadlines = []

    class Client(_SlowClient):
        def execute(self, command, arguments=None, timeout=None):
            deadlines.append(timeout)
            return {}
    monkeypatch.setattr(qmpmod.QMPClient, "connect", classmethod(lambda cls, *a, **k: Client()))
    domains = _domains()
    monkeypatch.setattr(domains, "_lock", lambda name: contextlib.nullcontext(), raising=False)
    monkeypatch.setattr(domains, "_active_record", lambda name, verb: DomainRecord("running", "booted",
                                                                                   monitor="/r/m.sock"),
                        raising=False)
    saved = []
    monkeypatch.setattr(domains, "_save", lambda name, record: saved.append(list(record.taints)), raising=False)
    domains.monitor("vm1", {"execute": "query-migrate"})
    assert deadlines == [qmpmod.DEFAULT_TIMEOUT]
    assert saved == [["custom-monitor"]]        # tainted as libvirt taints it, before QEMU is asked
