"""The driver's per-kind objects behave the same on both backends: the protocol and its errors."""

from __future__ import annotations

import pytest

from ansible_collections.virtops.qemu.plugins.module_utils.driver.connect import open_driver
from ansible_collections.virtops.qemu.plugins.module_utils.errors import Conflict, NotFound


def _xml(name: str) -> str:
    return (f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
            "<os><type arch='x86_64' machine='pc'>hvm</type></os><devices/></domain>")


def test_the_domain_object_speaks_the_protocol_with_the_same_errors(backend, vm):
    with open_driver(backend.uri) as driver:
        domains = driver.domains
        assert domains.kind == "domain" and not domains.exists(vm)
        domains.define(_xml(vm))
        assert vm in domains.names() and domains.exists(vm) and not domains.active(vm)
        assert "<name>" in domains.xml(vm) and not domains.autostart(vm)
        with pytest.raises(Conflict):
            domains.stop(vm)                    # not running
        domains.start(vm, paused=True)
        assert domains.active(vm) and domains.status(vm).state == "paused"
        with pytest.raises(Conflict):
            domains.start(vm)                   # already running
        domains.stop(vm)
        assert not domains.active(vm)
        domains.set_autostart(vm, True)
        assert domains.autostart(vm)
        domains.undefine(vm)
        assert not domains.exists(vm) and vm not in domains.names()


@pytest.mark.parametrize("call", ["xml", "autostart", "active", "start", "stop", "undefine"])
def test_an_unknown_domain_is_not_found_on_every_backend(backend, vm, call):
    with open_driver(backend.uri) as driver:
        with pytest.raises(NotFound):
            getattr(driver.domains, call)(vm)
