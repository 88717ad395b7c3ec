"""Bad input fails in check mode as in the real run, naming the option in option syntax, and changes nothing.

Each module runs through Ansible on each backend: first in check mode, then
for real. Both must fail with the same message, which starts with the
option the user wrote (``kernel.path: ``, ``interfaces[0].mac: ``), and the
object must be as before (absent, or with its stored definition unchanged).
The bad inputs of one kind run as the tasks of one playbook (in check mode,
then for real): one Ansible start-up each instead of one per input.
"""

from __future__ import annotations

import secrets

from harness.ansible import run_module, run_module_calls

MINIMAL = {"type": "qemu", "memory": "64MiB", "vcpus": 1}


def refused_alike(calls: list[tuple[str, dict]]) -> list[str]:
    """Run the calls in check mode, then for real; each must fail the same way in both, changing nothing.

    Return the messages, in the order of the calls.
    """
    predicted = run_module_calls(calls, check=True)
    real = run_module_calls(calls)
    for (_module, args), check, result in zip(calls, predicted, real, strict=True):
        assert check.get("failed") and not check.get("changed"), (args, check)
        assert result.get("failed") and not result.get("changed"), (args, result)
        assert check["msg"] == result["msg"], (args, check["msg"], result["msg"])
    return [result["msg"] for result in real]


def refused_as_expected(calls: list[tuple[str, dict]], starts: list[str]) -> None:
    for (_module, args), start, msg in zip(calls, starts, refused_alike(calls), strict=True):
        assert msg.startswith(start), (args, msg)


# -- domain -----------------------------------------------------------------------------------
NEW_DOMAINS = [
    ({"kernel": {"path": "relative/vmlinuz"}}, "kernel.path: 'relative/vmlinuz' must be an absolute path"),
    ({"interfaces": [{"type": "user", "mac": "zz:zz"}]}, "interfaces[0].mac: 'zz:zz' is not a MAC address"),
    # No check of the collection's own catches these: libvirt's schema does, and the option is named.
    ({"title": "two\nlines"}, "title: libvirt's domain schema refuses <title>two\nlines</title>"),
    ({"disks": [{"path": "/var/tmp/a.img"}, {"path": "/var/tmp/b.img", "target": "bad target"}]},
     "disks[1]: libvirt's domain schema refuses <disk"),
]


def test_a_new_domain_the_schema_refuses(backend, vm):
    refused_as_expected([("domain", {"uri": backend.uri, "name": vm, **MINIMAL, **options})
                         for options, _start in NEW_DOMAINS], [start for _options, start in NEW_DOMAINS])
    assert vm not in backend.names()


def test_a_change_the_schema_refuses_leaves_the_domain_as_it_was(backend, vm):
    defined = run_module("domain", {"uri": backend.uri, "name": vm, **MINIMAL})
    assert defined["changed"], defined
    before = backend.stored_xml(vm)
    [msg] = refused_alike([("domain", {"uri": backend.uri, "name": vm, "title": "two\nlines"})])
    assert msg.startswith("title: libvirt's domain schema refuses"), msg
    assert backend.stored_xml(vm) == before


def test_verbatim_xml_the_schema_refuses_names_the_place(backend, vm):
    xml = f"<domain type='qemu'><name>{vm}</name><memory>65536</memory><os><type>hvm</type></os>" \
          "<devices><interface type='user'><mac address='zz:zz'/></interface></devices></domain>"
    [msg] = refused_alike([("domain", {"uri": backend.uri, "name": vm, "xml": xml})])
    assert msg.startswith("xml: the domain definition does not match libvirt's domain schema: "
                          "/domain/devices/interface/mac: "), msg
    assert vm not in backend.names()


def test_the_embedded_driver_refuses_in_check_mode_what_its_define_refuses(embed_backend):
    name = f"virtops-test-{secrets.token_hex(4)}"
    uri = embed_backend.uri
    xml = f"<domain type='qemu'><name>{name}</name><memory>65536</memory>" \
          "<os><type machine='nosuch'>hvm</type></os></domain>"
    try:
        refused_as_expected([("domain", {"uri": uri, "name": name, **MINIMAL, "machine": "nosuch"}),
                             ("domain", {"uri": uri, "name": name, "xml": xml})],
                            ["machine: machine type 'nosuch' is not supported",
                             "xml: /domain/os/type/@machine: machine type 'nosuch'"])
        assert name not in embed_backend.names()
    finally:
        embed_backend.remove(name)


# -- network and pool -------------------------------------------------------------------------
NETWORKS = [
    ({"forward": {"mode": "nat", "nat_ports": {"start": 1024, "end": 70000}}},
     "forward.nat_ports.end: end port '70000' is not a number from 1 to 65535"),
    ({"bridge": {"name": "advbré"}}, "bridge.name: 'advbré' is not a valid bridge name"),
    ({"bridge": {"name": "vtb-msg", "mtu": -1}}, "bridge.mtu: MTU '-1' is not a number from 1 to 65535"),
    ({"bridge": {"name": "vtb\x01"}}, "bridge.name: 'vtb\\x01' contains a character XML cannot hold"),
    # The schema alone refuses this one; the rendered place is traced back to the option.
    ({"bridge": {"name": "vtb-msg", "delay": -1}}, "bridge.delay: libvirt's network schema refuses delay='-1'"),
]


def test_a_network_the_checks_refuse(backend):
    names = [f"vtn-{secrets.token_hex(3)}" for _case in NETWORKS]
    try:
        refused_as_expected([("network", {"uri": backend.uri, "name": name, "state": "inactive", **options})
                             for name, (options, _start) in zip(names, NETWORKS, strict=True)],
                            [start for _options, start in NETWORKS])
        infos = run_module_calls([("network_info", {"uri": backend.uri, "name": name}) for name in names])
        assert [info["exists"] for info in infos] == [False] * len(names), infos
    finally:
        run_module_calls([("network", {"uri": backend.uri, "name": name, "state": "absent"}) for name in names])


def test_a_pool_on_the_root_directory_is_refused(backend):
    name = f"vtp-{secrets.token_hex(3)}"
    try:
        [msg] = refused_alike([("pool", {"uri": backend.uri, "name": name, "state": "inactive", "type": "dir",
                                         "target": {"path": "/"}})])
        assert msg == "target.path: the target path must be a directory below /, not / itself", msg
        assert not run_module("pool_info", {"uri": backend.uri, "name": name})["exists"]
    finally:
        run_module("pool", {"uri": backend.uri, "name": name, "state": "absent"})


# -- qemu_override -----------------------------------------------------------------------------
OVERRIDES = [
    ({"override": {"devices": [{"alias": "ua-disk0", "properties": [
        {"name": "serial", "type": "string", "value": "S1"},
        {"name": "num", "type": "unsigned", "value": str(2 ** 64)}]}]}},
     "override.devices[0].properties[1].value: '18446744073709551616' is out of range for type unsigned"),
    ({"override": {"devices": [{"alias": "ua-disk0", "properties": [
        {"name": "num", "type": "signed", "value": str(2 ** 63)}]}]}},
     "override.devices[0].properties[0].value: '9223372036854775808' is out of range for type signed"),
    ({"commandline": {"args": ["-device", "isa-debug-exit\x01"]}},
     "commandline.args[1]: 'isa-debug-exit\\x01' contains a character XML cannot hold"),
]


def test_qemu_override_values_libvirt_refuses(backend, vm, workdir):
    disk = workdir / "d.raw"
    disk.write_bytes(b"\0" * 65536)
    xml = f"<domain type='qemu'><name>{vm}</name><memory>65536</memory><os><type>hvm</type></os><devices>" \
          f"<disk type='file' device='disk'><source file='{disk}'/><target dev='vda' bus='virtio'/>" \
          "<alias name='ua-disk0'/></disk></devices></domain>"
    assert run_module("domain", {"uri": backend.uri, "name": vm, "xml": xml})["changed"]
    before = backend.stored_xml(vm)
    refused_as_expected([("qemu_override", {"uri": backend.uri, "name": vm, **options})
                         for options, _start in OVERRIDES], [start for _options, start in OVERRIDES])
    assert backend.stored_xml(vm) == before


# -- connection ---------------------------------------------------------------------------------
def test_a_libvirt_uri_no_daemon_answers_says_so_and_names_the_fixes():
    uri = "qemu:///system?socket=/nonexistent/virtops-test-sock"
    for check in (True, False):
        result = run_module("domain", {"uri": uri, "name": "virtops-test-nodaemon", **MINIMAL}, check=check)
        assert result.get("failed") and not result.get("changed"), result
        assert result["msg"] == (
            f"cannot connect to {uri}: no libvirtd is running to answer it (Failed to connect socket to "
            "'/nonexistent/virtops-test-sock': No such file or directory). Start libvirtd (for example: "
            "systemctl start libvirtd), or use the daemonless embedded driver with uri: "
            "qemu:///embed?root=/an/absolute/dir"), result["msg"]
