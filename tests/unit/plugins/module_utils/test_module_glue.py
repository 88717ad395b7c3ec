"""What a module reports when a backend's Python library is missing."""

import pytest

from ansible_collections.virtops.qemu.plugins.module_utils.driver import libvirt_backend
from ansible_collections.virtops.qemu.plugins.module_utils.errors import MissingDependency
from ansible_collections.virtops.qemu.plugins.module_utils.module_glue import run
from ansible_collections.virtops.qemu.plugins.module_utils.uri import parse_uri


class Exit(Exception):
    pass


class FakeModule:
    """Records the one exit call a module makes."""

    _diff = False
    params: dict = {}
    no_log_values: set = set()

    def fail_json(self, **result):
        raise Exit(("fail", result))

    def exit_json(self, **result):
        raise Exit(("exit", result))

    def warn(self, text):
        raise AssertionError(f"unexpected warning {text}")


def test_missing_libvirt_bindings_name_the_library(monkeypatch):
    monkeypatch.setattr(libvirt_backend, "HAS_LIBVIRT", False)
    with pytest.raises(MissingDependency):
        libvirt_backend.LibvirtDriver(parse_uri("qemu:///system"))
    with pytest.raises(Exit) as done:
        run(FakeModule(), lambda: libvirt_backend.LibvirtDriver(parse_uri("qemu:///system")))
    kind, result = done.value.args[0]
    assert kind == "fail"
    assert "Failed to import the required Python library (libvirt-python)" in result["msg"]
    assert "for the libvirt backend (qemu:///system)" in result["msg"]
