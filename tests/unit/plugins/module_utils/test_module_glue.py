"""What a module reports when a backend's Python library is missing."""

import pytest
from fakes import Exit, FakeModule

from ansible_collections.virtops.qemu.plugins.module_utils.driver import libvirt_backend
from ansible_collections.virtops.qemu.plugins.module_utils.errors import MissingDependency
from ansible_collections.virtops.qemu.plugins.module_utils.module_glue import run
from ansible_collections.virtops.qemu.plugins.module_utils.uri import parse_uri


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


class DeprecatingModule(FakeModule):
    def __init__(self):
        super().__init__()
        self.deprecations = []

    def deprecate(self, msg, version=None, collection_name=None):
        self.deprecations.append((msg, version, collection_name))


def test_a_result_s_deprecations_become_ansible_deprecations_of_the_collection():
    module = DeprecatingModule()
    with pytest.raises(Exit) as done:
        run(module, lambda: {"changed": False, "deprecations": [{"msg": "old key", "version": "0.4.0"}]})
    assert done.value.args[0] == ("exit", {"changed": False})
    assert module.deprecations == [("old key", "0.4.0", "virtops.qemu")]
