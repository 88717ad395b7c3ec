"""The demo playbook and the modules' EXAMPLES, run for real.

EXAMPLES name host-specific things (kernel paths, a KVM host, libvirt's
"default" network, an embed root): the test puts this machine's equivalents
in their place, runs every example as one playbook and checks each task.
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest
import yaml

from harness import REPO
from harness.ansible import run_playbook

pytestmark = [pytest.mark.libvirt, pytest.mark.guest, pytest.mark.slow]


def examples(module: str) -> str:
    source = (Path(REPO) / "plugins" / "modules" / f"{module}.py").read_text()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and node.targets[0].id == "EXAMPLES":
            return node.value.value
    raise AssertionError(f"{module} has no EXAMPLES")


def test_demo_playbook(backend, guest, workdir, vm):
    results = run_playbook(Path(REPO) / "playbooks" / "demo.yml", extra_vars={
        "demo_name": vm, "demo_dir": str(workdir), "demo_uri": backend.uri,
        "demo_kernel": str(guest.kernel), "demo_initrd": str(guest.initrd)})
    by_task = {r["task"]: r for r in results}
    assert not [r for r in results if r["failed"]], results
    assert by_task["Define the VM and boot it, in one task"]["changed"]
    assert not by_task["Running the same task again changes nothing"]["changed"]
    assert by_task["Inspect the VM"]["domain"]["state"] == "running"
    assert by_task["Shut the guest down gracefully (ACPI power button)"]["changed"]
    assert vm not in backend.names()


@pytest.fixture
def example_names(libvirtd, domain_name):
    names = {n: f"{domain_name}-{n}" for n in ("demo01", "web01", "web02", "web03", "legacy01", "embedded01")}
    yield names
    for name in names.values():
        libvirtd.virsh("destroy", name, check=False)
        libvirtd.virsh("undefine", name, "--nvram", check=False)


def test_domain_examples(libvirtd, guest, workdir, example_names):
    image = workdir / "web02.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "16M"], check=True)
    (workdir / "web01.xml").write_text(
        f"<domain type='qemu'><name>{example_names['web01']}</name>"
        "<memory unit='MiB'>64</memory><os><type>hvm</type></os></domain>")
    text = examples("domain")
    replacements = {
        "/var/lib/libvirt/boot/vmlinuz": str(guest.kernel),
        "/var/lib/libvirt/boot/initrd.img": str(guest.initrd),
        "/var/lib/libvirt/images/web02.qcow2": str(image),
        "qemu:///embed?root=/var/lib/virtops": "qemu:///system",
        "      - type: network\n        source: default": "      - type: user",
        "mode: host-passthrough": "mode: maximum",
        "    memory: 2GiB\n": "    memory: 128MiB\n    type: qemu\n",
        # The test guest boots its ACPI daemon seconds after the start, later than these examples press the
        # power button, so both shutdowns end by force: after a second, not after a minute and a half.
        "shutdown_timeout: 60\n": "shutdown_timeout: 1\n",
        "shutdown_timeout: 30\n": "shutdown_timeout: 1\n",
        **{f"name: {short}": f"name: {full}" for short, full in example_names.items()},
    }
    for old, new in replacements.items():
        assert old in text, f"EXAMPLES no longer contain {old!r}; update this test"
        text = text.replace(old, new)
    tasks = yaml.safe_load(text)
    playbook = workdir / "examples.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "EXAMPLES of virtops.qemu.domain", "hosts": "localhost", "gather_facts": False,
        "vars": {"vnc_password": "s3cret!"},
        "module_defaults": {"group/virtops.qemu.qemu": {"uri": libvirtd.uri}},
        "tasks": tasks}]))
    results = run_playbook(playbook)
    failed = [r for r in results if r["failed"]]
    assert not failed, failed
    ran = [r["task"] for r in results if not r.get("skipped")]
    assert len(ran) >= len(tasks), ran
    assert example_names["web02"] not in libvirtd.virsh("list", "--all", "--name").split()
    assert not image.exists(), "remove_disks: [vda] deletes the named image"
    assert not Path(f"/var/lib/libvirt/images/{example_names['web03']}.cidata.iso").exists(), "the seed went too"


def test_domain_info_examples(libvirtd, example_names):
    tasks = yaml.safe_load(examples("domain_info").replace("name: demo01", f"name: {example_names['demo01']}"))
    define = {"name": "define", "virtops.qemu.domain": {
        "name": example_names["demo01"], "type": "qemu", "memory": "64MiB", "state": "running"}}
    results = run_playbook([{"hosts": "localhost", "gather_facts": False,
                             "module_defaults": {"group/virtops.qemu.qemu": {"uri": libvirtd.uri}},
                             "tasks": [define, *tasks]}])
    assert not [r for r in results if r["failed"]], results
    printed = next(r for r in results if r["task"] == "Print them")
    assert printed["msg"].count(example_names["demo01"]) == 1
    unreadable = next(r for r in results if r["task"] == "Name the domains that could not be read, and why")
    assert unreadable["msg"] == {}
    listed = next(r for r in results if r["task"].startswith("List every domain with the QEMU command line"))
    (argv,) = [d["qemu_argv"] for d in listed["domains"] if d["name"] == example_names["demo01"]]
    shown = next(r for r in results if r["task"] == "Print the QEMU each one starts and the command line's length")
    assert f"{example_names['demo01']}: {argv[0]} with {len(argv) - 1} arguments" in \
        [item["msg"] for item in shown["results"]]
