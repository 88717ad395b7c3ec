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


def _logged_invocation(module_class, monkeypatch) -> str:
    """What a module made with these options writes to the host's log (syslog, journal)."""
    import json

    from ansible.module_utils import basic
    params = {"ANSIBLE_MODULE_ARGS": {"settings": {"vnc_password": "s3cr3t-vnc", "vnc_listen": "0.0.0.0"}}}
    monkeypatch.setattr(basic, "_ANSIBLE_ARGS", json.dumps(params).encode())
    monkeypatch.setattr(basic, "_ANSIBLE_PROFILE", "legacy")
    logged = []
    monkeypatch.setattr(basic.AnsibleModule, "log", lambda self, msg, log_args=None: logged.append(msg))
    module_class(argument_spec={"settings": {"type": "dict"}})
    return "\n".join(logged)


def test_passwords_among_the_options_stay_out_of_the_host_log(monkeypatch):
    from ansible.module_utils.basic import AnsibleModule

    from ansible_collections.virtops.qemu.plugins.module_utils.module_glue import MaskingModule
    assert "s3cr3t-vnc" in _logged_invocation(AnsibleModule, monkeypatch)    # what the mask is for
    logged = _logged_invocation(MaskingModule, monkeypatch)
    assert "s3cr3t-vnc" not in logged
    assert "0.0.0.0" in logged
