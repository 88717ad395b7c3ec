"""The domain and domain_info modules against each backend, with a booted guest.

One scenario suite, parametrised by backend (libvirtd at qemu:///system and
the embedded driver at qemu:///embed?root=...), with the same assertions.
Every scenario runs the modules through Ansible, as users do, and checks the
result against what the hypervisor side reports: the stored definition, the
state with its reason, QEMU's own QMP status and the guest's serial console.
"""

from __future__ import annotations

import difflib
import json
import subprocess

import pytest
from lxml import etree

from harness.ansible import run_module, run_module_calls
from harness.libvirtd import wait_for_line

pytestmark = [pytest.mark.guest]


def domain(backend, args: dict, **kwargs) -> dict:
    return run_module("domain", {"uri": backend.uri, **args}, **kwargs)


def guest_options(name, guest, workdir, **extra) -> dict:
    return {
        "name": name, "type": "qemu", "memory": "256MiB", "vcpus": 1,
        "kernel": {"path": str(guest.kernel), "initrd": str(guest.initrd), "cmdline": guest.cmdline},
        "serials": [{"type": "file", "path": str(workdir / "serial.log")}],
        "interfaces": [{"type": "user"}],
        "features": ["acpi"],
        "on_poweroff": "destroy",
        **extra,
    }


def parsed(xml: str):
    return etree.fromstring(xml.encode())


def changed_lines(diff: dict) -> list[str]:
    lines = difflib.unified_diff(diff["before"].splitlines(), diff["after"].splitlines(), lineterm="", n=0)
    return [line for line in lines if line[:1] in "+-" and line[:3] not in ("+++", "---")]


@pytest.fixture
def booted(backend, guest, workdir, vm):
    """A test guest defined and started in one task, up to its console marker."""
    result = domain(backend, {**guest_options(vm, guest, workdir), "state": "running"})
    assert result["changed"] and result["state"] == "running", result
    wait_for_line(workdir / "serial.log", guest.marker, timeout=90)
    return vm


def test_define_and_start_in_one_task_then_no_change(backend, guest, workdir, booted):
    assert backend.domstate(booted) == "running (booted)"
    assert backend.qmp_status(booted) == "running"
    again = domain(backend, {**guest_options(booted, guest, workdir), "state": "running"})
    assert not again["changed"], again
    assert not again["restart_required"]


def test_check_mode_predicts_and_touches_nothing(backend, guest, workdir, vm):
    options = guest_options(vm, guest, workdir)
    predicted = domain(backend, {**options, "state": "running"}, check=True)
    assert predicted["changed"] and predicted["state"] == "running"
    assert vm not in backend.names()
    domain(backend, options)
    before = backend.stored_xml(vm)
    predicted = domain(backend, {"name": vm, "vcpus": 2}, check=True, diff=True)
    assert predicted["changed"]
    assert backend.stored_xml(vm) == before
    real = domain(backend, {"name": vm, "vcpus": 2}, diff=True)
    assert real["changed"] and real["diff"]["after"] == predicted["diff"]["after"]
    assert parsed(backend.stored_xml(vm)).findtext("vcpu") == "2"


def test_memory_diff_shows_only_memory_lines(backend, guest, workdir, vm):
    grown = ("domain", {"uri": backend.uri, "name": vm, "memory": "384MiB"})
    _defined, result, repeat = run_module_calls(
        [("domain", {"uri": backend.uri, **guest_options(vm, guest, workdir)}), grown, grown], diff=True)
    assert result["changed"]
    assert changed_lines(result["diff"]) == [
        '-  <memory unit="KiB">262144</memory>',
        '-  <currentMemory unit="KiB">262144</currentMemory>',
        '+  <memory unit="KiB">393216</memory>',
        '+  <currentMemory unit="KiB">393216</currentMemory>',
    ]
    assert not repeat["changed"] and repeat["diff"]["before"] == repeat["diff"]["after"]


def test_redefine_keeps_mac_and_pci_addresses(backend, guest, workdir, vm):
    def hardware():
        tree = parsed(backend.stored_xml(vm))
        return (tree.findtext("uuid"), tree.find("devices/interface/mac").get("address"),
                sorted(etree.tostring(a) for a in tree.iterfind("devices//address")))

    domain(backend, guest_options(vm, guest, workdir))
    before = hardware()
    result = domain(backend, {**guest_options(vm, guest, workdir, vcpus=2),
                              "interfaces": [{"type": "user", "model": "e1000"}]})
    assert result["changed"]
    assert hardware() == before
    assert parsed(backend.stored_xml(vm)).find("devices/interface/model").get("type") == "e1000"


def test_running_domain_reports_restart_required_then_restart_applies(backend, workdir, booted):
    result = domain(backend, {"name": booted, "memory": "320MiB"})
    assert result["changed"] and result["restart_required"]
    assert parsed(backend.live_xml(booted)).findtext("memory") == "262144"
    result = domain(backend, {"name": booted, "memory": "320MiB", "state": "running", "restart": True,
                              "shutdown_timeout": 60})
    assert result["changed"] and not result["restart_required"] and result["state"] == "running"
    assert parsed(backend.live_xml(booted)).findtext("memory") == "327680"


def test_graceful_shutdown_powers_the_guest_off(backend, workdir, booted):
    result = domain(backend, {"name": booted, "state": "shutdown", "shutdown_timeout": 60})
    assert result["changed"] and result["state"] == "shutoff"
    assert backend.domstate(booted) == "shut off (shutdown)"
    wait_for_line(workdir / "serial.log", "VIRTOPS-GUEST-POWEROFF", timeout=5)
    assert not domain(backend, {"name": booted, "state": "shutdown"})["changed"]


def test_pause_and_resume(backend, booted):
    result = domain(backend, {"name": booted, "state": "paused"})
    assert result["changed"] and result["state"] == "paused"
    assert backend.qmp_status(booted) == "paused"
    assert not domain(backend, {"name": booted, "state": "paused"})["changed"]
    result = domain(backend, {"name": booted, "state": "running"})
    assert result["changed"] and backend.qmp_status(booted) == "running"


def test_destroyed_then_absent_with_named_disk(backend, guest, workdir, vm):
    keep, doomed = workdir / "keep.raw", workdir / "doomed.raw"
    for path in (keep, doomed):
        subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(path), "8M"], check=True)
    domain(backend, {**guest_options(vm, guest, workdir), "state": "running",
                     "disks": [{"path": str(keep), "format": "raw"}, {"path": str(doomed), "format": "raw"}]})
    wait_for_line(workdir / "serial.log", "VIRTOPS-DISK vdb 16384", timeout=90)
    result = domain(backend, {"name": vm, "state": "destroyed"})
    assert result["changed"] and backend.domstate(vm) == "shut off (destroyed)"
    predicted = domain(backend, {"name": vm, "state": "absent", "remove_disks": ["vdb"]}, check=True)
    assert predicted["changed"] and doomed.exists()
    result = domain(backend, {"name": vm, "state": "absent", "remove_disks": ["vdb"]})
    assert result["changed"] and result["removed_disks"] == [{"path": str(doomed)}]
    assert vm not in backend.names()
    assert keep.exists() and not doomed.exists()
    assert not domain(backend, {"name": vm, "state": "absent"})["changed"]


def test_domain_info(backend, booted):
    answer = run_module("domain_info", {"uri": backend.uri, "name": booted})
    assert not answer["changed"] and answer["exists"]
    one = answer["domain"]
    assert (one["state"], one["reason"], one["active"]) == ("running", "booted", True)
    assert one["uuid"] in one["xml"]
    listed = run_module("domain_info", {"uri": backend.uri})
    assert booted in [d["name"] for d in listed["domains"]]


BAD_INPUTS = [
    ({"xml": "<domain><name>x</name>"}, "xml: malformed XML"),
    ({"xml": "<network><name>x</name></network>"}, "root element must be <domain>"),
    ({"name": "bad/name"}, "name: 'bad/name' is not a valid domain name"),
    ({"memory": "plenty"}, "memory: expected a size"),
    ({"no_such_option": 1}, "Unsupported parameters"),
    ({"uri": "qemu+tcp://127.0.0.1:1/system"}, "cannot connect to qemu+tcp://127.0.0.1:1/system"),
    ({"uri": "xen:///system"}, "uri: unknown scheme"),
    ({"uri": "qemu:///embed?root=relative"}, "uri: 'qemu:///embed?root=relative': the embed root"),
    ({"state": "absent", "remove_disks": ["vdz"]}, "remove_disks: 'vdz' names no disk"),
]


def test_bad_input_fails_clearly_and_changes_nothing(backend, guest, workdir, vm):
    domain(backend, guest_options(vm, guest, workdir))
    before = backend.stored_xml(vm)
    # one playbook, a task per bad input
    results = run_module_calls([("domain", {"uri": backend.uri, "name": vm, **args}) for args, _words in BAD_INPUTS])
    for (args, words), result in zip(BAD_INPUTS, results, strict=True):
        assert result["failed"] and words in result["msg"], (args, result["msg"])
    assert backend.stored_xml(vm) == before


def test_unknown_domain_without_definition(backend, vm):
    result, info = run_module_calls([("domain", {"uri": backend.uri, "name": vm, "state": "running"}),
                                     ("domain_info", {"uri": backend.uri, "name": vm})])
    assert result["failed"] and "is not defined" in result["msg"]
    assert not info.get("failed") and info["exists"] is False and "domain" not in info, info


def devices_of(argv: list[str]) -> list[str]:
    """QEMU device drivers in order, from JSON or key=value -device arguments."""
    found = []
    for flag, value in zip(argv, argv[1:], strict=False):
        if flag == "-device":
            found.append(json.loads(value)["driver"] if value.startswith("{") else value.split(",")[0])
    return found


def test_domain_info_shows_the_qemu_command_line(backend, guest, workdir, vm):
    domain(backend, guest_options(vm, guest, workdir))
    info = run_module("domain_info", {"uri": backend.uri, "name": vm})["domain"]
    argv, env = info["qemu_argv"], info["qemu_env"]
    assert argv[0].endswith("qemu-system-x86_64") and "-S" in argv
    assert argv[argv.index("-machine") + 1].startswith("pc-i440fx-7.2,")
    assert argv[argv.index("-accel") + 1] == "tcg"
    assert argv[argv.index("-kernel") + 1] == str(guest.kernel)
    assert "virtio-net-pci" in devices_of(argv) and "isa-serial" in devices_of(argv)
    assert env.get("LC_ALL") == "C"


@pytest.mark.libvirt
def test_both_backends_run_the_same_qemu_devices(libvirtd, embed_backend, guest, workdir):
    from harness.backends import LibvirtBackend
    name = "virtops-test-same-argv"
    argvs = {}
    for side in (LibvirtBackend(libvirtd), embed_backend):
        try:
            domain(side, guest_options(name, guest, workdir))
            argvs[side.name] = run_module("domain_info", {"uri": side.uri, "name": name})["domain"]["qemu_argv"]
        finally:
            side.remove(name)
    assert devices_of(argvs["embed"]) == devices_of(argvs["libvirt"])
    for flag in ("-machine", "-accel", "-m", "-smp", "-cpu", "-kernel", "-initrd", "-append"):
        embed, libvirt = argvs["embed"], argvs["libvirt"]
        assert embed[embed.index(flag) + 1] == libvirt[libvirt.index(flag) + 1], flag


def test_host_info(backend):
    info = run_module("host_info", {"uri": backend.uri})
    assert not info["changed"] and info["arch"] == "x86_64"
    x86 = next(g for g in info["guests"] if g["arch"] == "x86_64")
    assert x86["emulator"].endswith("qemu-system-x86_64") and "qemu" in x86["domain_types"]
    canonical = {m["name"]: m["canonical"] for m in x86["machines"]}
    assert canonical["pc"] == "pc-i440fx-7.2" and canonical["q35"] == "pc-q35-7.2"
    assert "<capabilities>" in info["capabilities_xml"]


def test_embedded_driver_names_the_qemu_conf_keys_it_ignores(guest, workdir, root):
    from harness.backends import EmbedBackend
    side = EmbedBackend(str(root))
    try:
        domain(side, guest_options("conf-test", guest, workdir))
        conf = f"{side.root}/etc/qemu.conf"
        with open(conf, "w", encoding="utf-8") as handle:
            handle.write('max_files = 4096\nvnc_listen = "127.0.0.1"\n')
        info = run_module("domain_info", {"uri": side.uri, "name": "conf-test"})
        assert not info["failed"]
        assert any(f"{conf}: the embedded driver ignores max_files" in str(w) for w in info["warnings"]), info
    finally:
        side.close()


def test_autostart(backend, guest, workdir, vm):
    # One playbook between two looks at the backend's autostart flag.
    on = ("domain", {"uri": backend.uri, "name": vm, "autostart": True})
    _defined, predicted = run_module_calls([("domain", {"uri": backend.uri, **guest_options(vm, guest, workdir)}),
                                            (*on, {"check_mode": True})])
    assert predicted["changed"] and predicted["autostart"] and not backend.autostart(vm)
    result, again, info = run_module_calls([on, on, ("domain_info", {"uri": backend.uri, "name": vm})])
    assert result["changed"] and backend.autostart(vm)
    assert not again["changed"]
    assert info["domain"]["autostart"] is True
    domain(backend, {"name": vm, "autostart": False})
    assert not backend.autostart(vm)


def test_current_memory_above_memory_is_refused_on_every_path(backend, guest, workdir, vm):
    domain(backend, guest_options(vm, guest, workdir))
    before = backend.stored_xml(vm)
    for args, option in (({"memory": "256MiB", "current_memory": "512MiB"}, "current_memory"),
                         ({"current_memory": "512MiB"}, "current_memory"),
                         ({"xml": f"<domain><name>{vm}</name>"
                                  "<currentMemory unit='MiB'>512</currentMemory></domain>"}, "xml")):
        result = domain(backend, {"name": vm, **args})
        assert result["failed"] and result["msg"].startswith(f"{option}: "), result["msg"]
        assert backend.stored_xml(vm) == before
    lower = {"name": vm, "xml": f"<domain><name>{vm}</name><memory unit='MiB'>128</memory></domain>"}
    assert domain(backend, lower)["changed"]
    assert parsed(backend.stored_xml(vm)).findtext("currentMemory") == "131072"
    assert not domain(backend, lower)["changed"]


def test_a_start_that_fails_after_the_definition_was_written_says_so(backend, guest, workdir, vm):
    result = domain(backend, {**guest_options(vm, guest, workdir), "cpu": {"mode": "host-passthrough"},
                              "state": "running"}, diff=True)
    assert result["failed"] and result["changed"], result
    assert result["msg"].startswith(f"domain '{vm}' was defined but failed to start: "), result["msg"]
    assert "rejected the definition" not in result["msg"]
    assert result["diff"]["before"] == "" and "host-passthrough" in result["diff"]["after"]
    assert parsed(backend.stored_xml(vm)).find("cpu").get("mode") == "host-passthrough"
    assert backend.domstate(vm).startswith("shut off")


def test_console_passwords_are_masked_in_every_result(backend, guest, workdir, vm):
    secret, other = "s3cr3tpw", "n3wpassw"
    options = {**guest_options(vm, guest, workdir), "graphics": {"type": "vnc", "password": secret}}
    domain(backend, options)
    results = [domain(backend, {"name": vm, "vcpus": 2}, diff=True),
               run_module("domain_info", {"uri": backend.uri, "name": vm}),
               run_module("domain_info", {"uri": backend.uri})]
    xml = backend.stored_xml(vm).replace(secret, other)
    changed = domain(backend, {"name": vm, "xml": xml}, diff=True)
    results.append(changed)
    for result in results:
        assert not result.get("failed"), result
        text = json.dumps(result)
        assert secret not in text and other not in text and "********" in text
    assert changed["changed"]
    assert changed_lines(changed["diff"]) == [
        '-    <graphics type="vnc" port="-1" autoport="yes" passwd="********">',
        '+    <graphics type="vnc" port="-1" autoport="yes" passwd="********(changed)">']
    assert parsed(backend.stored_xml(vm)).find("devices/graphics").get("passwd") == other
    assert not domain(backend, {"name": vm, "xml": xml})["changed"]


def test_structured_options_give_x86_guests_acpi_and_apic(backend, guest, workdir, vm):
    options = {k: v for k, v in guest_options(vm, guest, workdir).items() if k != "features"}
    domain(backend, {**options, "state": "running"})
    features = parsed(backend.stored_xml(vm)).find("features")
    assert features is not None and features.find("acpi") is not None and features.find("apic") is not None
    wait_for_line(workdir / "serial.log", guest.marker, timeout=90)
    result = domain(backend, {"name": vm, "state": "shutdown", "shutdown_timeout": 60})
    assert result["changed"] and backend.domstate(vm) == "shut off (shutdown)"


def test_acpi_can_be_turned_off_and_then_a_shutdown_timeout_says_why(backend, guest, workdir, vm):
    options = {**guest_options(vm, guest, workdir), "features": {"acpi": False}}
    domain(backend, {**options, "state": "running"})
    stored = parsed(backend.stored_xml(vm))
    assert stored.find("features/acpi") is None and stored.find("features/apic") is not None
    assert not domain(backend, options)["changed"]
    result = domain(backend, {"name": vm, "state": "shutdown", "shutdown_timeout": 3})
    assert result["failed"] and result["error"] == "OperationTimeout"
    assert "without ACPI" in result["msg"] and "power button cannot reach the guest" in result["msg"]
    assert backend.domstate(vm).startswith("running")
