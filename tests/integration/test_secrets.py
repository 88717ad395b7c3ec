"""Passwords are never shown, by any module that can see one, on both backends.

Each test runs ansible-playbook at -vvv with --diff and looks for the
passwords in everything a user or a log could see: Ansible's whole output
(module_args, results, diffs), the registered results (written to a file by
the play itself) and the files the modules write.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import pytest

from harness.ansible import run_playbook
from harness.debian import debian_qemu_conf_text
from harness.libvirt_marker import BACKENDS

MASK = "********"


def password() -> str:
    """A password no other text contains; 8 characters, the most VNC takes."""
    return f"P{secrets.token_hex(3)}w"


def run_shown(tasks: list[dict], workdir: Path, register: list[str], netns: str | None = None):
    """Run ``tasks`` at -vvv with --diff; the results, the whole output and the registered results."""
    saved = workdir / f"registered-{secrets.token_hex(2)}.json"
    keep = {"name": "Keep the registered results",
            "ansible.builtin.copy": {"dest": str(saved), "mode": "0600",
                                     "content": "{{ {" + ", ".join(f"'{n}': {n}" for n in register) + "} | to_json }}"}}
    play = [{"hosts": "localhost", "gather_facts": False, "tasks": [*tasks, keep]}]
    output: list[str] = []
    results = run_playbook(play, diff=True, output=output, netns=netns)
    assert "module_args" in "".join(output), "the run was not verbose enough to show module_args"
    return results, "\n".join(output), json.loads(saved.read_text())


def assert_never_shown(passwords: list[str], *seen) -> None:
    for where, text in enumerate(json.dumps(item) if not isinstance(item, str) else item for item in seen):
        for secret in passwords:
            at = text.find(secret)
            assert at < 0, f"password {secret} shown in #{where}: ...{text[max(0, at - 300):at + 100]}..."


def _task(module: str, args: dict, register: str, **extra) -> dict:
    return {"name": register, f"virtops.qemu.{module}": args, "register": register, **extra}


# -- domain, domain_info, security_label, qemu_override ---------------------------------
def test_console_passwords_are_not_shown_by_any_domain_module(backend, guest, workdir, vm):
    first, second, verbatim = password(), password(), password()
    uri, broken = backend.uri, f"{vm}-b"
    graphics = {"type": "vnc", "listen": "127.0.0.1"}
    options = {"uri": uri, "name": vm, "type": "qemu", "memory": "128MiB",
               "kernel": {"path": str(guest.kernel), "initrd": str(guest.initrd), "cmdline": guest.cmdline},
               "serials": [{"type": "file", "path": str(workdir / "serial.log")}],
               "graphics": {**graphics, "password": first}, "state": "running"}
    xml = (f"<domain type='qemu'><name>{vm}</name><devices>"
           f"<graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1' passwd='{verbatim}'/>"
           "</devices></domain>")
    tasks = [
        _task("domain", options, "defined"),
        _task("domain", {"uri": uri, "name": vm, "graphics": {**graphics, "password": second}}, "changed"),
        _task("domain_info", {"uri": uri, "name": vm}, "info"),
        _task("domain_info", {"uri": uri}, "listing"),
        _task("security_label", {"uri": uri, "domain": vm, "check_access": False, "labels": [
            {"model": "dac", "type": "static", "label": "+0:+0", "relabel": False}]}, "labelled"),
        _task("qemu_override", {"uri": uri, "name": vm, "commandline": {"env": {"VIRTOPS_TEST": "1"}}},
              "overridden"),
        _task("domain", {"uri": uri, "name": vm, "xml": xml}, "verbatim"),
        _task("domain", {**options, "name": broken, "kernel": {"path": str(workdir / "missing")}},
              "failed_start", ignore_errors=True),
    ]
    try:
        results, output, registered = run_shown(tasks, workdir, [t["register"] for t in tasks])
    finally:
        backend.remove(broken)
    assert_never_shown([first, second, verbatim], output, results, registered)

    assert all(registered[name]["changed"] for name in ("defined", "changed", "labelled", "overridden", "verbatim"))
    assert f'passwd="{MASK}"' in registered["changed"]["diff"]["before"]
    assert f'passwd="{MASK}(changed)"' in registered["changed"]["diff"]["after"]
    assert f'passwd="{MASK}"' in registered["info"]["domain"]["xml"]
    for name in ("labelled", "overridden"):
        assert f'passwd="{MASK}"' in registered[name]["xml"]
        assert f'passwd="{MASK}"' in registered[name]["diff"]["before"]
    assert f'passwd="{MASK}(changed)"' in registered["verbatim"]["diff"]["after"]
    failure = registered["failed_start"]
    assert failure["failed"] and failure["changed"] and f'passwd="{MASK}"' in failure["xml"], failure
    assert f"passwd='{verbatim}'" in backend.stored_xml(vm).replace('"', "'")


# -- qemu_conf -------------------------------------------------------------------------
@pytest.fixture(params=BACKENDS)
def conf_target(request, workdir):
    """(uri, path option, the file): a file of the test's own for libvirtd, an embedded root's own file."""
    text = debian_qemu_conf_text()
    if request.param == "libvirt":
        path = workdir / "qemu.conf"
        path.write_text(text)
        return request.getfixturevalue("libvirtd").uri, str(path), path
    root = request.getfixturevalue("root")
    os.mkdir(root / "etc", 0o700)
    (root / "etc" / "qemu.conf").write_text(text)
    return f"qemu:///embed?root={root}", None, root / "etc" / "qemu.conf"


def test_qemu_conf_passwords_are_not_shown(conf_target, workdir):
    uri, path, conf = conf_target
    vnc, spice = password(), password()
    target = {"uri": uri, **({"path": path} if path else {})}
    wanted = {"vnc_password": vnc, "spice_password": spice, "vnc_listen": "127.0.0.1"}
    tasks = [_task("qemu_conf", {**target, "settings": wanted}, "predicted", check_mode=True),
             _task("qemu_conf", {**target, "settings": wanted}, "written"),
             _task("qemu_conf", {**target, "settings": wanted}, "again"),
             _task("qemu_conf", {**target, "settings": {"vnc_password": vnc}, "state": "absent"}, "removed")]
    results, output, registered = run_shown(tasks, workdir, ["predicted", "written", "again", "removed"])
    assert_never_shown([vnc, spice], output, results, registered)
    assert registered["written"]["changed_keys"] == ["vnc_password", "spice_password", "vnc_listen"]
    assert registered["predicted"]["diff"] == registered["written"]["diff"] and not registered["again"]["changed"]
    assert registered["written"]["settings"]["vnc_password"] == MASK
    assert f'vnc_password = "{MASK}"' in registered["written"]["diff"]["after"]
    assert registered["removed"]["changed_keys"] == ["vnc_password"]
    assert f'spice_password = "{spice}"' in conf.read_text()


def test_unsetting_a_qemu_conf_password_leaves_no_copy_and_diffs_mask_commented_ones(conf_target, workdir):
    uri, path, conf = conf_target
    active, commented = password(), password()
    # A password set earlier, and one that an older release left commented out.
    conf.write_text(conf.read_text() + f'vnc_password = "{active}"\n#spice_password = "{commented}"\n')
    target = {"uri": uri, **({"path": path} if path else {})}
    tasks = [_task("qemu_conf", {**target, "settings": {"vnc_password": None}, "state": "absent"}, "removed"),
             _task("qemu_conf", {**target, "settings": {"vnc_listen": "127.0.0.2"}}, "unrelated")]
    results, output, registered = run_shown(tasks, workdir, ["removed", "unrelated"])
    assert_never_shown([active, commented], output, results, registered)
    assert registered["removed"]["changed_keys"] == ["vnc_password"]
    assert registered["unrelated"]["changed_keys"] == ["vnc_listen"]
    assert f'#spice_password = "{MASK}"' in registered["unrelated"]["diff"]["after"]
    assert active not in conf.read_text() and '\nvnc_password = ""\n' not in conf.read_text()
    assert '\n#vnc_password = ""\n' in conf.read_text()


# -- the guests role -------------------------------------------------------------------
def test_the_guests_role_does_not_show_console_passwords(backend, guest, workdir, vm):
    first, second = password(), password()

    def apply(secret: str):
        entry = {"name": vm, "state": "present", "memory": "128MiB",
                 "kernel": {"path": str(guest.kernel), "initrd": str(guest.initrd), "cmdline": guest.cmdline},
                 "graphics": {"type": "vnc", "listen": "127.0.0.1", "password": secret}}
        tasks = [{"name": "Apply the guests role", "ansible.builtin.include_role": {"name": "virtops.qemu.guests"},
                  "vars": {"guests_uri": backend.uri, "guests_type": "qemu", "guests_list": [entry]}}]
        return run_shown(tasks, workdir, ["guests_results", "guests_restart_required"])

    for secret in (first, second):
        results, output, registered = apply(secret)
        assert_never_shown([first, second], output, results, registered)
        assert [r["changed"] for r in registered["guests_results"]["results"]] == [True]
        assert f"passwd='{secret}'" in backend.stored_xml(vm).replace('"', "'")
