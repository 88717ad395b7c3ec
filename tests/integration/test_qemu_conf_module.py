"""The qemu_conf module against a libvirtd the test restarts, and against the embedded driver."""

from __future__ import annotations

import difflib
import secrets
import tempfile
from pathlib import Path

import pytest

from ansible_collections.virtops.qemu.plugins.module_utils.driver.connect import open_driver
from ansible_collections.virtops.qemu.plugins.module_utils.secrets import mask_text
from harness.ansible import run_module
from harness.debian import debian_qemu_conf_text
from harness.private_libvirtd import PrivateLibvirtd

SETTINGS = {"vnc_listen": "127.0.0.2", "stdio_handler": "file"}


@pytest.fixture
def private_libvirtd():
    base = Path(tempfile.mkdtemp(prefix="vtl-", dir="/var/tmp"))
    daemon = PrivateLibvirtd(base, debian_qemu_conf_text())
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.close()


def _changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    lines = list(difflib.unified_diff(before.splitlines(True), after.splitlines(True), n=0))
    removed = [line[1:] for line in lines if line.startswith("-") and not line.startswith("---")]
    added = [line[1:] for line in lines if line.startswith("+") and not line.startswith("+++")]
    return removed, added


def _vnc_domain(name: str) -> str:
    return (f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory>"
            "<os><type arch='x86_64'>hvm</type></os>"
            "<devices><graphics type='vnc' port='-1' autoport='yes'/></devices></domain>")


@pytest.mark.libvirt
def test_debian_file_edited_in_place_and_honoured_after_restart(private_libvirtd):
    daemon = private_libvirtd
    shipped = daemon.qemu_conf.read_text()
    args = {"path": str(daemon.qemu_conf), "settings": SETTINGS}

    predicted = run_module("qemu_conf", args, check=True, diff=True, uri=daemon.uri)
    assert daemon.qemu_conf.read_text() == shipped
    done = run_module("qemu_conf", args, diff=True, uri=daemon.uri)
    assert predicted["changed"] and done["changed"] and done["restart_required"]
    assert predicted["diff"] == done["diff"] and done["changed_keys"] == ["vnc_listen", "stdio_handler"]

    edited = daemon.qemu_conf.read_text()
    # Debian's example password, commented out, is masked like any other.
    assert done["diff"]["before"] == mask_text(shipped) and done["diff"]["after"] == mask_text(edited)
    assert '#vnc_password = "********"' in done["diff"]["before"] and "XYZ12345" in shipped
    removed, added = _changed_lines(shipped, edited)
    assert removed == ['#vnc_listen = "0.0.0.0"\n', '#stdio_handler = "logd"\n']
    assert added == ['vnc_listen = "127.0.0.2"\n', 'stdio_handler = "file"\n']

    again = run_module("qemu_conf", args, diff=True, uri=daemon.uri)
    assert not again["changed"] and not again["restart_required"]
    assert again["diff"]["before"] == again["diff"]["after"]

    daemon.restart()
    name = f"vt-{secrets.token_hex(4)}"
    xml_file = daemon.base / "domain.xml"
    xml_file.write_text(_vnc_domain(name))
    daemon.virsh("define", str(xml_file))
    daemon.virsh("start", "--paused", name)
    live = daemon.virsh("dumpxml", name)
    assert "<listen type='address' address='127.0.0.2'/>" in live
    pid = int((daemon.base / "run" / "qemu" / f"{name}.pid").read_text())
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert argv[argv.index(b"-vnc") + 1].startswith(b"127.0.0.2:")


@pytest.mark.libvirt
def test_absent_returns_keys_to_the_shipped_text(private_libvirtd):
    daemon = private_libvirtd
    shipped = daemon.qemu_conf.read_text()
    args = {"path": str(daemon.qemu_conf), "settings": SETTINGS}
    run_module("qemu_conf", args, uri=daemon.uri)
    removed = run_module("qemu_conf", {**args, "state": "absent"}, diff=True, uri=daemon.uri)
    assert removed["changed"] and removed["changed_keys"] == ["vnc_listen", "stdio_handler"]
    # Unsetting comments the statement out where the shipped example was; nothing else moves.
    expected = shipped.replace('#vnc_listen = "0.0.0.0"', '#vnc_listen = "127.0.0.2"') \
        .replace('#stdio_handler = "logd"', '#stdio_handler = "file"')
    assert daemon.qemu_conf.read_text() == expected
    assert removed["settings"] == {}
    assert not run_module("qemu_conf", {**args, "state": "absent"}, uri=daemon.uri)["changed"]


@pytest.mark.libvirt
@pytest.mark.parametrize(("settings", "message"), [
    ({"vnc_listen": "127.0.0.2", "dynamic_ownership": "sometimes"},
     "settings.dynamic_ownership: expected a boolean (written as 1 or 0), got str 'sometimes'"),
    ({"cgroup_device_acl": "/dev/null"}, "settings.cgroup_device_acl: expected a list of strings"),
    ({"vnc_listn": "127.0.0.2"}, "settings.vnc_listn: unknown qemu.conf setting (did you mean vnc_listen?)"),
])
def test_bad_settings_fail_naming_the_key_and_change_nothing(private_libvirtd, settings, message):
    daemon = private_libvirtd
    shipped = daemon.qemu_conf.read_text()
    result = run_module("qemu_conf", {"path": str(daemon.qemu_conf), "settings": settings}, uri=daemon.uri)
    assert result.get("failed") and message in result["msg"]
    assert daemon.qemu_conf.read_text() == shipped


def test_remote_uri_is_refused(tmp_path):
    result = run_module("qemu_conf", {"settings": {"vnc_listen": "::1"}}, uri="qemu+ssh://kvm01.example/system")
    assert result.get("failed") and result["msg"].startswith("uri: ") and "remote URI" in result["msg"]


def test_embedded_root_takes_effect_on_next_start_without_restart(root):
    uri = f"qemu:///embed?root={root}"
    first = run_module("qemu_conf", {"settings": {"vnc_listen": "127.0.0.3"}}, diff=True, uri=uri)
    assert first["changed"] and not first["restart_required"]
    assert first["path"] == f"{root}/etc/qemu.conf" and first["diff"]["before"] == ""
    assert not run_module("qemu_conf", {"settings": {"vnc_listen": "127.0.0.3"}}, uri=uri)["changed"]
    with open_driver(uri) as driver:
        driver.domains.define(_vnc_domain("vt-conf"))
        argv, _env = driver.domains.native_command("vt-conf")
    assert argv[argv.index("-vnc") + 1].startswith("127.0.0.3:")


def test_module_examples_on_an_embedded_root(root, tmp_path):
    """The EXAMPLES as written, with the connection moved to a private embedded root."""
    import ast

    import yaml

    from harness import REPO
    from harness.ansible import run_playbook

    source = (Path(REPO) / "plugins" / "modules" / "qemu_conf.py").read_text()
    text = next(n.value.value for n in ast.parse(source).body
                if isinstance(n, ast.Assign) and n.targets[0].id == "EXAMPLES")
    uri = f"qemu:///embed?root={root}"
    assert "qemu:///embed?root=/var/lib/virtops" in text
    tasks = yaml.safe_load(text.replace("qemu:///embed?root=/var/lib/virtops", uri))
    playbook = tmp_path / "examples.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "EXAMPLES of virtops.qemu.qemu_conf", "hosts": "localhost", "gather_facts": False,
        "module_defaults": {"group/virtops.qemu.qemu": {"uri": uri}}, "tasks": tasks}]))
    results = run_playbook(playbook)
    assert not [r for r in results if r["failed"]], results
    assert [r["task"] for r in results if r.get("skipped")] == ["Restart libvirtd when the change needs it"]
    text = (root / "etc" / "qemu.conf").read_text()
    assert 'user = "libvirt-qemu"' in text and "/dev/vfio/vfio" in text and 'security_driver = "none"' in text
    assert "#vnc_listen" in text
