"""What the domain modules return and refuse: masked secrets, partial results, numbers, features."""

import pytest
from fakes import Exit, FakeModule, MemoryDriver
from lxml import etree
from test_domain_manager import BASE, ensure

from ansible_collections.virtops.qemu.plugins.module_utils.driver.libvirt_backend import taint_flags
from ansible_collections.virtops.qemu.plugins.module_utils.errors import (
    BackendError,
    InvalidInput,
    OperationTimeout,
    VirtError,
)
from ansible_collections.virtops.qemu.plugins.module_utils.manager.domain import (
    describe,
    describe_all,
    request_from_params,
)
from ansible_collections.virtops.qemu.plugins.module_utils.model import domain as model
from ansible_collections.virtops.qemu.plugins.module_utils.model import domain_options
from ansible_collections.virtops.qemu.plugins.module_utils.module_glue import run


def xml_of(result):
    return etree.fromstring(result["xml"].encode())


# -- current memory above memory ---------------------------------------------
def test_current_memory_above_memory_in_the_options_is_refused():
    with pytest.raises(InvalidInput, match="^current_memory: 512MiB is more than memory"):
        request_from_params({**BASE, "name": "vm", "memory": "256MiB", "current_memory": "512MiB"})


def test_current_memory_above_the_stored_memory_is_refused_before_anything_changes():
    d = MemoryDriver()
    ensure(d, name="vm", type="qemu", memory="256MiB")
    d.calls.clear()
    too_much = "^current_memory: the current memory .524288 KiB. is larger than the memory .262144 KiB."
    with pytest.raises(InvalidInput, match=too_much):
        ensure(d, name="vm", current_memory="512MiB")
    with pytest.raises(InvalidInput, match="^xml: the current memory"):
        ensure(d, name="vm", xml="<domain><name>vm</name><currentMemory unit='GiB'>1</currentMemory></domain>")
    with pytest.raises(InvalidInput, match="^xml: the current memory"):
        ensure(MemoryDriver(), name="new",
               xml="<domain><name>new</name><currentMemory unit='GiB'>2</currentMemory></domain>")
    assert d.calls == []


def test_lowering_memory_by_xml_lowers_the_current_memory_once():
    d = MemoryDriver()
    ensure(d, name="vm", type="qemu", memory="256MiB")
    lower = "<domain><name>vm</name><memory unit='MiB'>128</memory></domain>"
    assert xml_of(ensure(d, name="vm", xml=lower)).findtext("currentMemory") == "131072"
    assert not ensure(d, name="vm", xml=lower)["changed"]


# -- numbers ------------------------------------------------------------------
@pytest.mark.parametrize("options, words", [
    ({"shutdown_timeout": -1}, "^shutdown_timeout: must be 0 or more seconds, got -1"),
    ({"vcpus": 0}, "^vcpus: a domain needs at least 1 virtual CPU, got 0"),
    ({"vcpus": -2}, "^vcpus: a domain needs at least 1"),
    ({"memory": "0"}, "^memory: '0' is less than 1 KiB"),
    ({"memory": "100B"}, "^memory: '100B' is less than 1 KiB"),
    ({"memory": "-5MiB"}, "^memory: expected a size"),
    ({"current_memory": "0"}, "^current_memory: '0' is less than 1 KiB"),
    ({"graphics": {"type": "vnc", "port": 22}}, "^graphics.port: 22 is not a vnc port"),
    ({"graphics": {"type": "spice", "port": -5}}, "^graphics.port: -5 is not a spice port"),
    ({"graphics": {"type": "vnc", "port": 70000}}, "^graphics.port: 70000"),
])
def test_negative_and_zero_numbers_are_refused(options, words):
    with pytest.raises(InvalidInput, match=words):
        request_from_params({**BASE, "name": "vm", **options})


def test_zero_shutdown_timeout_and_any_free_port_are_fine():
    request = request_from_params({**BASE, "name": "vm", "shutdown_timeout": 0, "graphics": {"port": -1}})
    assert request.shutdown_timeout == 0


# -- features -------------------------------------------------------------------
def test_new_x86_domains_from_options_get_acpi_and_apic():
    d = MemoryDriver()
    new = xml_of(ensure(d, name="vm", type="qemu", arch="x86_64"))
    assert [f.tag for f in new.find("features")] == ["acpi", "apic"]
    assert not ensure(d, name="vm", type="qemu", arch="x86_64")["changed"]


def test_defaults_are_only_for_new_domains_from_options():
    d = MemoryDriver()
    d.domains.define("<domain type='qemu'><name>old</name><memory unit='KiB'>1024</memory>"
                     "<currentMemory unit='KiB'>1024</currentMemory></domain>")
    assert not ensure(d, name="old", memory="1MiB")["changed"]
    bare = xml_of(ensure(d, name="new", xml="<domain type='qemu'><name>new</name></domain>"))
    assert bare.find("features") is None
    other = xml_of(ensure(d, name="arm", type="qemu", arch="aarch64"))
    assert other.find("features") is None


def test_features_can_be_turned_off():
    d = MemoryDriver()
    new = xml_of(ensure(d, name="vm", type="qemu", arch="x86_64", features={"acpi": False, "pae": True}))
    assert [f.tag for f in new.find("features")] == ["pae", "apic"]
    assert not ensure(d, name="vm", features={"acpi": "no"})["changed"]
    off = ensure(d, name="vm", features={"pae": False, "apic": False})
    assert off["changed"] and xml_of(off).find("features") is not None
    assert len(xml_of(off).find("features")) == 0
    nothing = xml_of(ensure(d, name="flat", type="qemu", arch="x86_64", features={"acpi": False, "apic": False}))
    assert nothing.find("features") is None


def test_turning_off_a_feature_where_there_are_none_changes_nothing():
    d = MemoryDriver()
    ensure(d, name="vm", type="qemu", arch="aarch64")
    assert not ensure(d, name="vm", features={"acpi": False})["changed"]


@pytest.mark.parametrize("features, switches", [
    (["acpi", "pae"], {"acpi": True, "pae": True}),
    ("acpi, pae", {"acpi": True, "pae": True}),
    ({"acpi": False, "apic": "yes"}, {"acpi": False, "apic": True}),
])
def test_feature_forms(features, switches):
    assert domain_options.feature_switches(features) == switches


@pytest.mark.parametrize("features", [{"acpi": "maybe"}, [1, 2], 3])
def test_bad_feature_forms(features):
    with pytest.raises(InvalidInput, match="^features: expected a list"):
        domain_options.feature_switches(features)


# -- shutdown without ACPI ---------------------------------------------------------
@pytest.mark.parametrize("features, words", [
    ({"acpi": False}, "runs without ACPI .no <acpi/> in its features., so the ACPI power button cannot reach"),
    (["acpi"], "did not power off within 0 s of the ACPI shutdown request; set force: true"),
])
def test_a_shutdown_timeout_says_whether_the_guest_has_acpi(features, words):
    d = MemoryDriver(guest_obeys_acpi=False)
    ensure(d, name="vm", type="qemu", arch="x86_64", features=features, state="running")
    with pytest.raises(OperationTimeout, match=words):
        ensure(d, name="vm", state="shutdown", shutdown_timeout=0)


# -- a failure after the definition was written ---------------------------------
def test_a_failed_start_after_define_reports_the_definition_change():
    d = MemoryDriver()
    d.domains.fail("start", BackendError("cannot start 'vm': unsupported configuration: host-passthrough"))
    with pytest.raises(BackendError) as err:
        ensure(d, name="vm", type="qemu", state="running", cpu={"mode": "host-passthrough"})
    message = "domain 'vm' was defined but failed to start: cannot start 'vm': unsupported configuration"
    assert str(err.value).startswith(message)
    assert err.value.result["changed"] is True and "vm" in d.xml
    assert err.value.result["diff"]["before"] == "" and "host-passthrough" in err.value.result["diff"]["after"]


def test_a_failed_start_without_a_change_stays_as_it_was():
    d = MemoryDriver()
    ensure(d, name="vm", type="qemu")
    d.domains.fail("start", BackendError("cannot start 'vm': no"))
    with pytest.raises(BackendError) as err:
        ensure(d, name="vm", state="running")
    assert str(err.value) == "cannot start 'vm': no" and err.value.result == {}


@pytest.mark.parametrize("diff", [True, False])
def test_module_glue_returns_the_partial_result_with_the_failure(diff):
    def action():
        raise BackendError("start failed").after_changes("domain 'vm' was defined but failed to start: x",
                                                         {"changed": True, "diff": {"before": "", "after": "y"}})
    with pytest.raises(Exit) as done:
        run(FakeModule(diff), action)
    result = done.value.result
    assert result["msg"] == "domain 'vm' was defined but failed to start: x" and result["changed"] is True
    assert result["error"] == "BackendError" and ("diff" in result) is diff


def test_errors_carry_no_result_by_default():
    assert VirtError("x").result == {} and InvalidInput("bad", "memory").result == {}


# -- secrets (masked by module_glue, tests/unit/.../test_secrets.py) ----------------------
def test_the_comparison_sees_passwords_and_the_module_result_masks_them():
    d = MemoryDriver()
    ensure(d, name="vm", type="qemu", graphics={"type": "vnc", "password": "old"})
    result = ensure(d, name="vm", graphics={"type": "vnc", "password": "new"})
    assert result["changed"] and "passwd='new'" in d.xml["vm"].replace('"', "'")
    assert not ensure(d, name="vm", graphics={"type": "vnc", "password": "new"})["changed"]
    module = FakeModule(True)
    module.exit_json = module.fail_json
    with pytest.raises(Exit) as done:
        run(module, lambda: result)
    shown = done.value.result
    assert "new" not in shown["xml"] and "old" not in shown["diff"]["before"]
    assert 'passwd="********(changed)"' in shown["diff"]["after"]


# -- domain_info ----------------------------------------------------------------------
def test_listing_reports_an_unreadable_domain_and_lists_the_others():
    d = MemoryDriver()
    for name in ("a", "b", "c"):
        ensure(d, name=name, type="qemu")
    d.domains.fail("xml", BackendError("status file of b is unreadable"), "b")
    listed = describe_all(d)
    assert [x["name"] for x in listed] == ["a", "b", "c"]
    assert listed[1] == {"name": "b", "error": "status file of b is unreadable"}


def test_a_listing_builds_no_command_line_unless_asked_and_one_named_domain_has_it(monkeypatch):
    d = MemoryDriver()
    for n in range(50):
        ensure(d, name=f"vm{n:02d}", type="qemu")
    built = []
    native = d.domains.native_command
    monkeypatch.setattr(d.domains, "native_command", lambda name: built.append(name) or native(name))
    listed = describe_all(d)
    assert len(listed) == 50 and built == []
    assert not {"qemu_argv", "qemu_env", "qemu_argv_error"} & set().union(*listed)
    assert describe(d, "vm07")["qemu_argv"] == ["qemu-system-x86_64"] and built == ["vm07"]
    assert "qemu_argv" not in describe(d, "vm07", qemu_argv=False) and built == ["vm07"]
    asked = describe_all(d, qemu_argv=True)
    assert len(built) == 51 and all(entry["qemu_env"] == {} for entry in asked)


def test_a_shut_off_domain_costs_no_runtime_read(monkeypatch):
    d = MemoryDriver()
    ensure(d, name="vm", type="qemu")
    monkeypatch.setattr(d.domains, "runtime", lambda name: pytest.fail(f"runtime of the shut-off {name} was read"))
    info = describe(d, "vm")
    assert (info["pid"], info["id"], info["taints"], info["live_xml"]) == (None, None, [], None)


def test_running_domain_reports_runtime_and_pending_restart():
    d = MemoryDriver()
    ensure(d, name="vm", type="qemu", memory="128MiB", state="running")
    info = describe(d, "vm")
    assert (info["pid"], info["id"], info["taints"], info["restart_required"]) == (4242, 7, [], False)
    assert info["live_xml"] == info["xml"]
    ensure(d, name="vm", memory="256MiB")
    assert describe(d, "vm")["restart_required"] is True
    ensure(d, name="vm", state="destroyed")
    assert describe(d, "vm")["live_xml"] is None and describe(d, "vm")["restart_required"] is False


def test_cpu_values_libvirt_rewrites_at_start_are_no_pending_change():
    stored = model.parse_domain("<domain><name>v</name><cpu mode='host-model' check='partial'/></domain>")
    live = model.parse_domain("<domain id='3'><name>v</name><cpu mode='custom' match='exact' check='full'>"
                              "<model>Skylake</model></cpu></domain>")
    assert model.pending_changes(live, stored) == []


def test_taint_messages_become_libvirt_flag_names():
    messages = ["tainted: custom configuration parameters specified",
                "tainted: potentially unsafe use of host CPU passthrough",
                "tainted: something new"]
    assert taint_flags(messages) == ["custom-argv", "host-cpu", "something new"]
