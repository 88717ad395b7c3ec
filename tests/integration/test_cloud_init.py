"""The domain module's cloud_init and guest_agent, and domain_info's addresses, on both backends.

First the seed alone: the busybox test guest's kernel (Debian's cloud kernel)
reads the seed the module wrote and attached, on each backend.  Then the
whole path on the Debian cloud image (build_image.py --kind cloud): an
overlay of it boots with a seed that carries an SSH key and a runcmd marker
and with the guest agent channel, on a NAT network with DHCP; the guest is
reached over SSH, domain_info reports its address from the lease and from
the agent and the agent's OS, ``ansible -m ping`` reaches it, and the seed
follows the definition (restart_required, check mode, removal).  Booting
systemd under TCG takes minutes, so one guest per backend serves the
read-only tests (module-scoped fixture) and the tests that change it run last.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest
from lxml import etree

from ansible_collections.virtops.qemu.plugins.module_utils.seed.nocloud import build_seed
from harness import REPO
from harness.ansible import run_module
from harness.seed_reader import DONE, build_seed_reader, parse_files

BUILDER = REPO / "extensions" / "molecule" / "resources" / "image" / "build_image.py"
OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"
AGENT = "org.qemu.guest_agent.0"
SSH_TIMEOUT = 900
USER = "debian"
USER_DATA = {"write_files": [{"path": "/etc/virtops-seeded", "content": "seeded\n"}]}


def seed_of(result: dict) -> Path:
    return Path(result["seed"])


def disks_of(xml: str) -> list:
    return etree.fromstring(xml.encode()).findall("devices/disk")


def wait_for(path: Path, text: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        console = path.read_text(errors="replace") if path.exists() else ""
        if text in console:
            return console
        time.sleep(1)
    raise AssertionError(f"{text!r} not on the console within {timeout} s:\n{console[-3000:]}")


# -- the seed alone, read by the cloud kernel ------------------------------------

@pytest.mark.guest
def test_the_cloud_kernel_reads_the_seed_the_module_attached(backend, guest, workdir, vm):
    reader = build_seed_reader(guest, workdir, ("vda",))
    log = workdir / "serial.log"
    options = {
        "uri": backend.uri, "name": vm, "type": "qemu", "memory": "256MiB", "vcpus": 1,
        "kernel": {"path": str(reader.kernel), "initrd": str(reader.initrd), "cmdline": reader.cmdline},
        "serials": [{"type": "file", "path": str(log)}], "features": ["acpi"], "on_poweroff": "destroy",
        "cloud_init": {"user_data": USER_DATA, "meta_data": {"public-keys": ["k1"]}}, "guest_agent": True,
    }
    try:
        result = run_module("domain", {**options, "state": "running"}, diff=True)
        assert result["changed"] and result["state"] == "running", result
        seed = seed_of(result)
        expected = build_seed(vm, USER_DATA, {"public-keys": ["k1"]})
        assert seed.read_bytes() == expected.image()
        [disk] = disks_of(result["xml"])
        assert disk.find("readonly") is not None and disk.find("target").attrib == {"dev": "vda", "bus": "virtio"}
        assert disk.findtext("serial") == "cidata-" + hashlib.sha256(expected.image()).hexdigest()[:12]
        assert "virtops-seeded" not in json.dumps([result["diff"], result["xml"]]), "no user-data in diff or xml"
        console = wait_for(log, DONE, 300)
        assert "SEED-ERROR" not in console, console[-3000:]
        seen = parse_files(console)[("vda", "ro")]
        assert {name: file.content for name, file in seen.items()} == expected.files

        removed = run_module("domain", {"uri": backend.uri, "name": vm, "state": "absent"})
        assert removed["changed"] and not seed.exists(), "the seed goes with the domain"
    finally:
        Path(backend_seed_dir(backend), f"{vm}.cidata.iso").unlink(missing_ok=True)


def backend_seed_dir(backend) -> str:
    if backend.name == "libvirt":
        return "/var/lib/libvirt/images"
    return os.path.join(backend.root, "lib", "qemu", "seeds")
