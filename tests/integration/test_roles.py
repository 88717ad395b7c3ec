"""The roles virtops.qemu.hypervisor and virtops.qemu.guests, applied by a playbook.

On the embedded driver the whole playbook (playbooks/roles_fleet.yml) runs in
a namespace made for the test: a NAT network with DHCP and a static host, a
dir pool under the test's workdir, and two test guests whose disks are
volumes of that pool. The guests boot with ``virtops.dhcp`` and print the
leases they get on their serial consoles (harness.guest.parse_leases).

The hypervisor role also runs against the harness libvirtd, for a network
and a pool, with its package installation on (in check mode: this host has
the packages), and its qemu.conf settings on a file of the test's own.
"""

from __future__ import annotations

import random
import secrets
import time
from pathlib import Path

import pytest
from lxml import etree

from harness import REPO
from harness.ansible import assert_no_failure, run_playbook
from harness.backends import EmbedBackend, LibvirtBackend
from harness.guest import DHCP_CMDLINE, parse_leases
from harness.inventory import ansible_inventory
from harness.libvirt_marker import LIBVIRT

pytestmark = [pytest.mark.guest]

PLAYBOOK = Path(REPO) / "tests" / "integration" / "playbooks" / "roles_fleet.yml"
LEASE_TIMEOUT = 150
MiB = 1024


def random_mac() -> str:
    return "52:54:00:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(3))


def unique(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(4)}"


def task(results: list[dict], suffix: str) -> dict:
    """The result of the role task whose name ends with ``suffix``."""
    found = [r for r in results if r["task"].endswith(suffix)]
    assert len(found) == 1, (suffix, [r["task"] for r in results])
    return found[0]


def changed_tasks(results: list[dict]) -> list[str]:
    return [r["task"] for r in results if r["changed"]]


def summary(results: list[dict]) -> dict:
    return task(results, "Summarise the guests that need a restart")["msg"]


def wait_for_lease(log: Path, mac: str):
    deadline = time.monotonic() + LEASE_TIMEOUT
    text = ""
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        leases = [lease for lease in parse_leases(text) if lease.mac == mac]
        if leases:
            return leases[0], text
        time.sleep(0.5)
    tail = "\n".join(text.splitlines()[-30:])
    raise AssertionError(f"no lease for {mac} after {LEASE_TIMEOUT}s; console tail:\n{tail}")


def live_memory_kib(backend, name: str) -> int:
    tree = etree.fromstring(backend.live_xml(name).encode())
    memory = tree.find("memory")
    assert memory.get("unit", "KiB") == "KiB", etree.tostring(memory)
    return int(memory.text)


class Fleet:
    """The variables of roles_fleet.yml for one test on one backend, and the runs of it.

    On libvirtd the playbook's qemu.conf settings go to a file of the test's
    own: the harness daemon's /etc/libvirt/qemu.conf is not the test's to edit.
    """

    def __init__(self, backend, netns, guest, workdir):
        self.backend = backend
        self.uri = backend.uri
        self.netns = netns
        self.workdir = workdir
        self.one_mac, self.two_mac = random_mac(), random_mac()
        self.prefix = f"10.{random.randint(16, 250)}.{random.randint(1, 250)}"
        self.names = {"one": unique("vt-one-"), "two": unique("vt-two-")}
        self.pool_path = workdir / "pool"
        self.vars = {
            "fleet_uri": self.uri, "fleet_pool": unique("vt-"), "fleet_pool_path": str(self.pool_path),
            "fleet_network": unique("vt-"), "fleet_bridge": unique("vtb"), "fleet_prefix": self.prefix,
            "fleet_one": self.names["one"], "fleet_two": self.names["two"],
            "fleet_one_mac": self.one_mac, "fleet_two_mac": self.two_mac,
            "fleet_kernel": str(guest.kernel), "fleet_initrd": str(guest.initrd),
            "fleet_cmdline": DHCP_CMDLINE, "fleet_logs": str(workdir),
        }
        if backend.name == "libvirt":
            (workdir / "qemu.conf").write_text("")
            self.vars["hypervisor_qemu_conf_path"] = str(workdir / "qemu.conf")

    def run(self, check: bool = False, **overrides) -> list[dict]:
        netns = self.netns.name if self.netns else None
        return run_playbook(PLAYBOOK, extra_vars={**self.vars, **overrides}, check=check, netns=netns)

    def ours(self) -> list[str]:
        """The fleet's guests that the backend has."""
        return sorted(set(self.names.values()) & set(self.backend.names()))

    def remove_libvirt_objects(self, libvirtd) -> None:
        for name in self.names.values():
            self.backend.remove(name)
            Path(f"/var/log/libvirt/qemu/{name}.log").unlink(missing_ok=True)
        network, pool = self.vars["fleet_network"], self.vars["fleet_pool"]
        libvirtd.virsh("net-destroy", network, check=False)
        libvirtd.virsh("net-undefine", network, check=False)
        Path(f"/run/libvirt/network/{network}.pid").unlink(missing_ok=True)
        libvirtd.virsh("pool-destroy", pool, check=False)
        libvirtd.virsh("pool-undefine", pool, check=False)

    def log(self, guest: str) -> Path:
        return self.workdir / f"{self.names[guest]}.log"


@pytest.fixture
def fleet(root, netns, guest, workdir):
    """The fleet on the embedded driver, the playbook run in the test's namespace."""
    return Fleet(EmbedBackend(str(root)), netns, guest, workdir)


@pytest.fixture(params=["embed", LIBVIRT])
def any_fleet(request, guest, workdir):
    """The fleet on each backend (libvirtd's networks live in the daemon's own namespace)."""
    if request.param == "embed":
        yield request.getfixturevalue("fleet")
        return
    libvirtd = request.getfixturevalue("libvirtd")
    running = Fleet(LibvirtBackend(libvirtd), None, guest, workdir)
    try:
        yield running
    finally:
        running.remove_libvirt_objects(libvirtd)


def test_hypervisor_then_guests_boot_get_leases_and_converge(any_fleet: Fleet):
    fleet = any_fleet

    predicted = fleet.run(check=True)
    assert_no_failure(predicted)
    for suffix in ("Apply the qemu.conf settings", "Define and start the storage pools",
                   "Define and start the virtual networks",
                   "Predict the volumes of pools that do not run yet (check mode)",
                   "Define the guests and bring them to their state"):
        assert task(predicted, suffix)["changed"], suffix
    assert fleet.ours() == [] and not fleet.pool_path.exists()
    conf = Path(task(predicted, "Apply the qemu.conf settings")["path"])
    assert not conf.exists() or conf.read_text() == ""

    made = fleet.run()
    assert_no_failure(made)
    assert set(changed_tasks(predicted)) - set(changed_tasks(made)) == {
        "virtops.qemu.guests : Predict the volumes of pools that do not run yet (check mode)"}
    assert task(made, "Create the volumes of the guests' disks")["changed"]
    assert summary(made) == {"restart_required": [], "restarted": []}
    assert fleet.ours() == sorted(fleet.names.values())
    assert sorted(p.name for p in fleet.pool_path.iterdir()) == sorted(
        [f"{fleet.names['one']}.qcow2", f"{fleet.names['two']}.raw"])
    # Unquoted modes in the playbook, through the roles' argument specs.
    assert fleet.pool_path.stat().st_mode & 0o777 == 0o755
    assert (fleet.pool_path / f"{fleet.names['two']}.raw").stat().st_mode & 0o777 == 0o640

    one, console = wait_for_lease(fleet.log("one"), fleet.one_mac)
    assert (one.ip, one.prefix) == (f"{fleet.prefix}.50", 24), one
    assert "VIRTOPS-DISK vda 32768" in console, "the 16 MiB volume is the guest's vda"
    two, console = wait_for_lease(fleet.log("two"), fleet.two_mac)
    assert two.ip.startswith(f"{fleet.prefix}.1") and 100 <= int(two.ip.rsplit(".", 1)[1]) <= 199, two
    assert "VIRTOPS-DISK vda 16384" in console

    listed = ansible_inventory(fleet.workdir / "fleet.virtops_domains.yml", {"uris": [fleet.uri]},
                               fleet.netns.name if fleet.netns else None)
    assert listed.rc == 0, listed.stderr
    hosts = {name: listed.hostvars[name] for name in fleet.names.values()}
    assert hosts[fleet.names["one"]]["ansible_host"] == one.ip
    assert hosts[fleet.names["two"]]["ansible_host"] == two.ip
    assert set(fleet.names.values()) <= set(listed.members("virtops_running"))

    again = fleet.run()
    assert_no_failure(again)
    assert changed_tasks(again) == []
    checked = fleet.run(check=True)
    assert_no_failure(checked)
    assert changed_tasks(checked) == []
    assert summary(checked) == {"restart_required": [], "restarted": []}


def test_a_changed_guest_is_reported_and_restarted_only_when_told(fleet):
    backend = fleet.backend
    one = fleet.names["one"]
    assert_no_failure(fleet.run())
    assert live_memory_kib(backend, one) == 256 * MiB

    predicted = fleet.run(check=True, fleet_one_memory="320MiB")
    assert_no_failure(predicted)
    assert changed_tasks(predicted) == ["virtops.qemu.guests : Define the guests and bring them to their state"]
    assert summary(predicted) == {"restart_required": [one], "restarted": []}

    changed = fleet.run(fleet_one_memory="320MiB")
    assert_no_failure(changed)
    assert changed_tasks(changed) == changed_tasks(predicted)
    assert summary(changed) == {"restart_required": [one], "restarted": []}
    facts = task(changed, "Note the guests restarted and those still waiting for a restart")["ansible_facts"]
    assert facts == {"guests_restart_required": [one], "guests_restarted": []}
    assert backend.domstate(one).startswith("running")
    assert live_memory_kib(backend, one) == 256 * MiB, "the guest was not to be restarted"

    pending = fleet.run(fleet_one_memory="320MiB")
    assert changed_tasks(pending) == [] and summary(pending)["restart_required"] == [one]

    predicted = fleet.run(check=True, fleet_one_memory="320MiB", fleet_restart=True)
    assert changed_tasks(predicted) == ["virtops.qemu.guests : Restart the guests that need it, where told to"]
    assert live_memory_kib(backend, one) == 256 * MiB
    restarted = fleet.run(fleet_one_memory="320MiB", fleet_restart=True)
    assert_no_failure(restarted)
    assert changed_tasks(restarted) == changed_tasks(predicted)
    assert summary(restarted) == {"restart_required": [], "restarted": [one]}
    assert backend.domstate(one).startswith("running")
    assert live_memory_kib(backend, one) == 320 * MiB
    assert live_memory_kib(backend, fleet.names["two"]) == 256 * MiB

    settled = fleet.run(fleet_one_memory="320MiB", fleet_restart=True)
    assert changed_tasks(settled) == [] and summary(settled) == {"restart_required": [], "restarted": []}


# -- hypervisor on libvirtd ---------------------------------------------------------

def hypervisor_play(uri: str, **role_vars) -> list[dict]:
    return [{"name": "Prepare the hypervisor", "hosts": "localhost", "gather_facts": False,
             "vars": {"hypervisor_uri": uri, **role_vars}, "roles": ["virtops.qemu.hypervisor"]}]


@pytest.fixture
def libvirt_objects(libvirtd):
    made = {"network": unique("vt-"), "pool": unique("vt-")}
    yield made
    libvirtd.virsh("net-destroy", made["network"], check=False)
    libvirtd.virsh("net-undefine", made["network"], check=False)
    libvirtd.virsh("pool-destroy", made["pool"], check=False)
    libvirtd.virsh("pool-undefine", made["pool"], check=False)
    Path(f"/run/libvirt/network/{made['network']}.pid").unlink(missing_ok=True)


@pytest.mark.libvirt
def test_hypervisor_on_libvirtd_defines_networks_and_pools_and_reports_restart(libvirtd, libvirt_objects, workdir):
    conf = workdir / "qemu.conf"
    conf.write_text('#vnc_listen = "0.0.0.0"\n')
    prefix = f"10.{random.randint(16, 250)}.{random.randint(1, 250)}"
    role_vars = {
        "hypervisor_manage_libvirtd": False,
        "hypervisor_qemu_conf": {"vnc_listen": "127.0.0.1"}, "hypervisor_qemu_conf_path": str(conf),
        "hypervisor_pools": [{"name": libvirt_objects["pool"], "type": "dir",
                              "target": {"path": str(workdir / "pool")}, "build": True}],
        "hypervisor_networks": [{"name": libvirt_objects["network"], "forward": {"mode": "nat"},
                                 "ips": [{"address": f"{prefix}.1", "prefix": 24,
                                          "dhcp": {"ranges": [{"start": f"{prefix}.10", "end": f"{prefix}.20"}]}}]}],
    }

    predicted = run_playbook(hypervisor_play(libvirtd.uri, **role_vars, hypervisor_install_packages=True), check=True)
    assert_no_failure(predicted)
    installed = task(predicted, "Install QEMU and what the URI needs")
    assert not installed.get("skipped") and not installed["changed"], installed
    assert task(predicted, "Define and start the storage pools")["changed"]
    assert task(predicted, "Define and start the virtual networks")["changed"]
    assert libvirt_objects["network"] not in libvirtd.virsh("net-list", "--all", "--name").split()
    assert conf.read_text() == '#vnc_listen = "0.0.0.0"\n'

    made = run_playbook(hypervisor_play(libvirtd.uri, **role_vars, hypervisor_install_packages=False))
    assert_no_failure(made)
    assert task(made, "Install QEMU and what the URI needs").get("skipped")
    assert conf.read_text() == 'vnc_listen = "127.0.0.1"\n'
    assert task(made, "Apply the qemu.conf settings")["restart_required"]
    facts = task(made, "Note whether libvirtd still has to read the new qemu.conf")["ansible_facts"]
    assert facts == {"hypervisor_restart_required": True}
    assert "libvirtd reads it only" in task(made, "Say that libvirtd must restart for the qemu.conf change")["msg"]
    assert task(made, "Restart libvirtd").get("skipped"), "libvirtd is restarted only when the user says so"
    assert libvirtd.virsh("net-list", "--name").split().count(libvirt_objects["network"]) == 1
    assert libvirt_objects["pool"] in libvirtd.virsh("pool-list", "--name").split()
    assert (workdir / "pool").is_dir()

    again = run_playbook(hypervisor_play(libvirtd.uri, **role_vars, hypervisor_install_packages=False))
    assert_no_failure(again)
    assert changed_tasks(again) == []
    assert task(again, "Note whether libvirtd still has to read the new qemu.conf")["ansible_facts"] == {
        "hypervisor_restart_required": False}
    checked = run_playbook(hypervisor_play(libvirtd.uri, **role_vars, hypervisor_install_packages=False), check=True)
    assert changed_tasks(checked) == []


# -- argument specs -------------------------------------------------------------------

ARGUMENT_CASES = [
    ("hypervisor", {"hypervisor_install_packages": "perhaps"},
     "argument 'hypervisor_install_packages' is of type str and we were unable to convert to bool"),
    ("hypervisor", {"hypervisor_networks": {"name": "default"}},
     "argument 'hypervisor_networks' is of type dict and we were unable to convert to list"),
    ("hypervisor", {"hypervisor_pools": [{"name": "images", "type": "zfs"}]},
     "value of type must be one of: dir, fs, netfs, logical, disk, iscsi, iscsi-direct, got: zfs "
     "found in hypervisor_pools"),
    ("guests", {"guests_state": "started"},
     "value of guests_state must be one of: present, running, paused, shutdown, destroyed, absent, got: started"),
    ("guests", {"guests_list": [{"name": "web01", "vcpus": "two"}]},
     "argument 'vcpus' is of type str found in 'guests_list'. and we were unable to convert to int"),
    ("guests", {"guests_list": [{"name": "web01", "memroy": "1GiB"}]}, "guests_list.memroy"),
    ("guests", {"guests_list": [{"name": "web01", "disks": [{"pool": "p", "volume": "v", "size": "1GiB"}]}]},
     "guests_list.disks.size"),
]


@pytest.fixture(scope="module")
def argument_case_runs(tmp_path_factory) -> dict[int, tuple[list[dict], Path]]:
    """Each of ARGUMENT_CASES on a host of its own, one playbook per role: that host's results, and its root."""
    base = tmp_path_factory.mktemp("argument-cases")
    runs = {}
    for role in ("hypervisor", "guests"):
        cases = [(index, role_vars) for index, (name, role_vars, _message) in enumerate(ARGUMENT_CASES)
                 if name == role]
        hosts = {f"case{index}": {f"{role}_uri": f"qemu:///embed?root={base / f'root{index}'}",
                                  "hypervisor_install_packages": False, **role_vars} for index, role_vars in cases}
        results = run_playbook([{"hosts": "all", "gather_facts": False, "roles": [f"virtops.qemu.{role}"]}],
                               hosts=hosts)
        for index, _role_vars in cases:
            runs[index] = ([r for r in results if r["host"] == f"case{index}"], base / f"root{index}")
    return runs


@pytest.mark.parametrize("role,role_vars,message", ARGUMENT_CASES)
def test_role_argument_specs_reject_a_wrong_variable(argument_case_runs, role, role_vars, message):
    results, root = argument_case_runs[ARGUMENT_CASES.index((role, role_vars, message))]
    assert len(results) == 1 and results[0]["failed"], results
    assert results[0]["task"].startswith(f"virtops.qemu.{role} : Validating arguments"), results
    assert message in results[0]["msg"], results[0]["msg"]
    assert not root.exists()
