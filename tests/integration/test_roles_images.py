"""The guests role building a fleet from images (playbooks/roles_images.yml), on both backends.

On the embedded driver the Debian cloud image (build_image.py --kind cloud) is
served over HTTP inside the test's network namespace and imported from its
URL; one guest boots from an overlay of it with a cloud-init seed made from
the role's users and keys, the role waits for its address and SSH port and
adds it to a group, and the playbook's second play logs in through that
group. A second guest of the fleet is only defined (booting systemd under
TCG costs minutes). On libvirtd a small image from a path builds an overlay
and a copy that are only defined, with the same idempotence, check mode and
pruning checks, and with the seed's user-data read back from the seed file.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from harness import REPO
from harness.ansible import BIN, AnsibleRunError, ansible_env, assert_no_failure, run_module, run_playbook
from harness.backends import EmbedBackend, LibvirtBackend
from harness.cloud_image import DEFAULT_USER, FAST_HOST_KEYS, build_cloud_image
from harness.imageserver import image_server, served_image, sha256

pytestmark = [pytest.mark.guest]

PLAYBOOK = Path(REPO) / "tests" / "integration" / "playbooks" / "roles_images.yml"
ROLE = "virtops.qemu.guests : "
WHO = "Say who and where we are"
AS_DEFAULT = "Log in as the image's default user with the key of guests_authorized_keys"


def unique(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(4)}"


def random_mac() -> str:
    return "52:54:00:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(3))


def changed_tasks(results: list[dict]) -> list[str]:
    return sorted({r["task"] for r in results if r["changed"]})


def on_host(results: list[dict], task: str, host: str) -> list[dict]:
    return [r for r in results if r["task"] == task and r["host"] == host]


def ssh_key(workdir: Path, name: str) -> tuple[Path, str]:
    path = workdir / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)], check=True)
    return path, Path(f"{path}.pub").read_text().strip()


def backing_file(path: Path) -> tuple[str | None, int]:
    """The image's backing file and virtual size."""
    info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", str(path)],
                                     capture_output=True, text=True, check=True).stdout)
    return info.get("full-backing-filename"), info["virtual-size"]


class ImageFleet:
    """The img_* variables of roles_images.yml on one backend, and the runs of the playbook.

    The playbook runs with an inventory of its own, not harness.ansible's: its
    second play reaches the guests over SSH, which the harness's ``-c local``
    and interpreter extra variables would override.
    """

    def __init__(self, backend, netns, workdir: Path, source: dict):
        self.backend, self.netns, self.workdir = backend, netns, workdir
        self.pool_path = workdir / "pool"
        ops_file, ops_key = ssh_key(workdir, "ops")
        default_file, default_key = ssh_key(workdir, "default")
        self.vars = {
            "img_uri": backend.uri, "img_pool": unique("vt-"), "img_pool_path": str(self.pool_path),
            "img_networks": [], "img_source": source,
            "img_fleet": unique("f"), "img_ops_key": ops_key, "img_ops_key_file": str(ops_file),
            "img_default_key": default_key, "img_default_key_file": str(default_file), "img_list": [],
        }
        self.inventory = workdir / "inventory.ini"
        self.inventory.write_text(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")

    def run(self, check: bool = False, **overrides) -> list[dict]:
        extra = json.dumps({**self.vars, **overrides})
        argv = [str(BIN / "ansible-playbook"), str(PLAYBOOK), "-i", str(self.inventory), "-e", extra]
        argv += ["--check"] * check
        if self.netns is not None:
            argv = self.netns.exec_argv(argv)
        with tempfile.TemporaryDirectory(prefix="virtops-images-") as tmp:
            results_file = os.path.join(tmp, "results.json")
            proc = subprocess.run(argv, env=ansible_env(results_file), cwd=tmp, capture_output=True, text=True,
                                  timeout=1800, check=False)
            try:
                with open(results_file, encoding="utf-8") as handle:
                    return json.load(handle)
            except FileNotFoundError:
                raise AnsibleRunError(f"no task results:\n{proc.stdout}\n{proc.stderr}") from None

    def names(self) -> list[str]:
        return sorted(self.backend.names())

    def foreign(self, name: str, description: str | None) -> None:
        """A domain the role did not make, defined straight with the domain module."""
        args = {"uri": self.backend.uri, "name": name, "type": "qemu", "memory": "128MiB"}
        if description:
            args["description"] = description
        defined = run_module("domain", args, netns=self.netns.name if self.netns else None)
        assert defined["changed"], defined


def predicted_then_nothing_made(fleet: ImageFleet, ours: list[str]) -> list[dict]:
    predicted = fleet.run(check=True)
    assert_no_failure(predicted)
    for task in ("Predict the images of pools that do not run yet (check mode)",
                 "Predict the disks of images not imported yet (check mode)",
                 "Define the guests and bring them to their state"):
        assert ROLE + task in changed_tasks(predicted), task
    assert not set(ours) & set(fleet.names()) and not fleet.pool_path.exists()
    return predicted


# -- embedded driver: the cloud image from a URL, one guest booted -------------

@pytest.fixture
def embed_fleet(root, netns, workdir):
    image = build_cloud_image()
    served = workdir / "served"
    served.mkdir()
    os.symlink(image.path, served / "debian-12.qcow2")
    with image_server(netns, served) as base:
        fleet = ImageFleet(EmbedBackend(str(root)), netns, workdir,
                           {"url": f"{base}/debian-12.qcow2", "checksum": image.checksum})
        yield fleet


def test_a_fleet_from_the_cloud_image_boots_answers_ssh_and_is_reached_through_the_group(embed_fleet):
    fleet = embed_fleet
    vm, spare, foreign = unique("vt-img-"), unique("vt-spare-"), unique("vt-foreign-")
    prefix = f"10.{random.randint(16, 250)}.{random.randint(1, 250)}"
    mac = random_mac()
    network = unique("vt-")
    fleet.vars["img_networks"] = [{
        "name": network, "forward": {"mode": "nat"}, "bridge": {"name": unique("vtb")},
        "ips": [{"address": f"{prefix}.1", "prefix": 24,
                 "dhcp": {"ranges": [{"start": f"{prefix}.100", "end": f"{prefix}.199"}],
                          "hosts": [{"mac": mac, "ip": f"{prefix}.60"}]}}]}]
    booted = {"name": vm, "memory": "768MiB", "vcpus": 1, "machine": "pc", "firmware": "efi",
              "features": ["acpi"], "image": "cloud.qcow2", "disk_size": "2GiB",
              "interfaces": [{"network": network, "mac": mac}],
              "serials": [{"type": "file", "path": str(fleet.workdir / f"{vm}.log")}], "on_poweroff": "destroy",
              "cloud_init": {"user_data": FAST_HOST_KEYS}}
    defined = {"name": spare, "state": "present", "memory": "256MiB", "image": "cloud.qcow2"}
    fleet.vars["img_list"] = [booted, defined]

    predicted_then_nothing_made(fleet, [vm, spare])

    made = fleet.run()
    assert_no_failure(made)
    for task in ("Import the images into the pools of the guests built from them",
                 "Build the disks of the guests from their images",
                 "Define the guests and bring them to their state"):
        assert ROLE + task in changed_tasks(made), task
    assert fleet.names() == sorted([vm, spare])
    pool = fleet.pool_path
    assert sorted(p.name for p in pool.iterdir()) == sorted(["cloud.qcow2", f"{vm}.qcow2", f"{spare}.qcow2"])
    assert backing_file(pool / f"{vm}.qcow2") == (str(pool / "cloud.qcow2"), 2 * 1024 ** 3), "a grown overlay"
    assert backing_file(pool / f"{spare}.qcow2")[0] == str(pool / "cloud.qcow2")
    assert fleet.backend.domstate(vm).startswith("running") and fleet.backend.domstate(spare).startswith("shut")

    [who] = on_host(made, WHO, vm)
    assert who["stdout_lines"] == ["ops", vm], who
    [default] = on_host(made, AS_DEFAULT, vm)
    assert default["stdout"] == DEFAULT_USER, default
    assert on_host(made, WHO, spare) == [], "a guest that is not running is not waited for nor added"

    again = fleet.run()
    assert_no_failure(again)
    assert changed_tasks(again) == []
    assert on_host(again, WHO, vm)[0]["stdout_lines"] == ["ops", vm]
    checked = fleet.run(check=True)
    assert_no_failure(checked)
    assert changed_tasks(checked) == []

    fleet.foreign(foreign, "virtops.qemu.guests: fleet=another")
    fleet.vars.update(img_list=[booted], img_prune=True)
    predicted = fleet.run(check=True)
    assert_no_failure(predicted)
    assert changed_tasks(predicted) == [ROLE + "Remove the guests of this fleet that left guests_list (prune)"]
    assert fleet.names() == sorted([vm, spare, foreign])
    pruned = fleet.run()
    assert_no_failure(pruned)
    assert changed_tasks(pruned) == changed_tasks(predicted)
    assert fleet.names() == sorted([vm, foreign]), "the dropped guest goes, another fleet's domain stays"
    assert (pool / f"{spare}.qcow2").exists(), "its disk stays without guests_prune_disks"
    assert fleet.backend.domstate(vm).startswith("running")


# -- libvirtd: a small image from a path, guests defined only --------------------

@pytest.fixture
def libvirt_fleet(libvirtd, workdir):
    image = served_image(workdir, "small.qcow2")
    fleet = ImageFleet(LibvirtBackend(libvirtd), None, workdir, {"path": str(image), "checksum": sha256(image)})
    made: list[str] = []
    yield fleet, made
    for name in made:
        fleet.backend.remove(name)
    pool = fleet.vars["img_pool"]
    for volume in libvirtd.virsh("vol-list", pool, "--name", check=False).split():
        libvirtd.virsh("vol-delete", volume, "--pool", pool, check=False)
    libvirtd.virsh("pool-destroy", pool, check=False)
    libvirtd.virsh("pool-undefine", pool, check=False)


def seed_user_data(path: Path) -> dict:
    data = subprocess.run(["isoinfo", "-R", "-x", "/user-data", "-i", str(path)],
                          capture_output=True, text=True, check=True).stdout
    assert data.startswith("#cloud-config\n"), data
    return yaml.safe_load(data)


@pytest.mark.libvirt
def test_on_libvirtd_overlay_and_copy_are_defined_idempotent_and_pruned_with_their_disk_only(libvirt_fleet):
    fleet, made = libvirt_fleet
    thin, full, foreign = unique("vt-thin-"), unique("vt-full-"), unique("vt-foreign-")
    made += [thin, full, foreign]
    pool, pool_name = fleet.pool_path, fleet.vars["img_pool"]
    fleet.vars.update(img_list=[
        {"name": thin, "memory": "128MiB", "image": "cloud.qcow2", "disk_size": "32MiB",
         "cloud_init": {"pool": pool_name, "user_data": {"runcmd": [["true"]]}}},
        {"name": full, "memory": "128MiB", "image": "cloud.qcow2", "disk_mode": "copy", "authorized_keys": ["k2"],
         "disks": [{"pool": pool_name, "volume": f"{full}-data.raw", "capacity": "1MiB"}],
         "cloud_init": {"pool": pool_name}},
    ])
    fleet.vars["img_list"] = [{**guest, "state": "present"} for guest in fleet.vars["img_list"]]

    predicted_then_nothing_made(fleet, [thin, full])
    made_run = fleet.run()
    assert_no_failure(made_run)
    assert {thin, full} <= set(fleet.names())
    assert backing_file(pool / f"{thin}.qcow2") == (str(pool / "cloud.qcow2"), 32 * 1024 ** 2)
    assert backing_file(pool / f"{full}.qcow2") == (None, 16 * 1024 ** 2), "a full copy"
    ops = {"name": "ops", "shell": "/bin/bash", "lock_passwd": True,
           "ssh_authorized_keys": [fleet.vars["img_ops_key"]]}
    assert seed_user_data(pool / f"{thin}.cidata.iso") == {
        "users": ["default", ops], "ssh_authorized_keys": [fleet.vars["img_default_key"]], "runcmd": [["true"]]}
    assert seed_user_data(pool / f"{full}.cidata.iso") == {
        "users": ["default", ops], "ssh_authorized_keys": [fleet.vars["img_default_key"], "k2"]}
    assert "fleet=" + fleet.vars["img_fleet"] in fleet.backend.stored_xml(thin)

    again = fleet.run()
    assert_no_failure(again)
    assert changed_tasks(again) == []
    assert changed_tasks(fleet.run(check=True)) == []

    fleet.foreign(foreign, None)
    fleet.vars.update(img_list=fleet.vars["img_list"][:1], img_prune=True, img_prune_disks=True)
    predicted = fleet.run(check=True)
    assert changed_tasks(predicted) == [ROLE + "Remove the guests of this fleet that left guests_list (prune)"]
    assert full in fleet.names() and (pool / f"{full}.qcow2").exists()
    pruned = fleet.run()
    assert_no_failure(pruned)
    assert changed_tasks(pruned) == changed_tasks(predicted)
    names = fleet.names()
    assert full not in names and thin in names and foreign in names
    assert sorted(p.name for p in pool.iterdir()) == sorted(
        ["cloud.qcow2", f"{thin}.qcow2", f"{thin}.cidata.iso", f"{full}-data.raw"]), \
        "the disk built from the image goes with guests_prune_disks, the data volume and the image stay"
    assert changed_tasks(fleet.run()) == []


# -- bad variables ------------------------------------------------------------------

BAD_VARIABLES = [
    ({"guests_disk_mode": "thin"}, "Validating arguments",
     "value of guests_disk_mode must be one of: overlay, copy, got: thin"),
    ({"guests_list": [{"name": "web01", "image": "deb", "disk_mode": "linked"}]}, "Validating arguments",
     "value of disk_mode must be one of: overlay, copy, got: linked found in guests_list"),
    ({"guests_users": [{"shell": "/bin/sh"}]}, "Validating arguments",
     "missing required arguments: name found in guests_users"),
    ({"guests_prune": "maybe"}, "Validating arguments",
     "argument 'guests_prune' is of type str and we were unable to convert to bool"),
    ({"guests_images": {"deb": {"url": "http://x/a", "path": "/a"}}}, "Check the images",
     "guests_images.deb must give exactly one of url and path"),
    ({"guests_images": {"deb": {"path": "/a", "sha": "1"}}}, "Check the images",
     "guests_images.deb must give exactly one of url and path"),
    ({"guests_list": [{"name": "web01", "image": "ubuntu"}]}, "Check that every guest's image is in guests_images",
     "guests_list[].image names an image that guests_images does not have: ubuntu"),
]


@pytest.fixture(scope="module")
def bad_variable_runs(tmp_path_factory) -> list[tuple[list[dict], Path]]:
    """Each of BAD_VARIABLES on a host of its own, in one playbook: that host's results, and its root."""
    base = tmp_path_factory.mktemp("bad-variables")
    hosts = {f"case{index}": {"guests_uri": f"qemu:///embed?root={base / f'root{index}'}", **role_vars}
             for index, (role_vars, _task, _message) in enumerate(BAD_VARIABLES)}
    results = run_playbook([{"hosts": "all", "gather_facts": False, "roles": ["virtops.qemu.guests"]}], hosts=hosts)
    return [([r for r in results if r["host"] == host], base / f"root{index}") for index, host in enumerate(hosts)]


@pytest.mark.parametrize("role_vars,task,message", BAD_VARIABLES)
def test_bad_image_variables_are_refused_before_anything_changes(bad_variable_runs, role_vars, task, message):
    results, root = bad_variable_runs[[case[0] for case in BAD_VARIABLES].index(role_vars)]
    failed = [r for r in results if r["failed"]]
    assert len(failed) == 1 and failed[0]["task"].startswith(ROLE + task), results
    assert message in json.dumps(failed[0]), failed[0]
    assert not root.exists()
