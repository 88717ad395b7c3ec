"""Two hypervisor hosts on one machine, for migration tests.

Each host is a network namespace (the two joined by a veth pair) and a
mount namespace of its own, in which a private directory is bind-mounted
over HOST_DIR: a disk at ``HOST_DIR/images/disk.qcow2`` is a different file
on each host, as on two machines without shared storage.  A holder process
keeps the mount namespace alive; Ansible reaches a host through an
interpreter that enters both namespaces (``nsenter``), and QEMUs started
there stay there.  Closing a host kills every process in its network
namespace and deletes it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .ansible import BIN, AnsibleRunError, ansible_env
from .debian import debian_qemu_conf_text
from .embed import remove_cgroups
from .guest import DISK_MARKER, TICK_CMDLINE, parse_ticks
from .netns import Netns
from .private_libvirtd import PrivateLibvirtd

BIND_EXEC = Path(__file__).resolve().parent / "bind_exec.py"
HOST_DIR = "/run/virtops-host"


@dataclass
class Host:
    name: str               # inventory name
    netns: Netns
    address: str
    base: Path              # HOST_DIR of this host, seen from the test
    holder: subprocess.Popen
    tag: str                # of the pair: roots differ from other pairs' (QEMU command lines, cgroups)

    @property
    def root(self) -> str:
        """This host's embed root, as its modules see it."""
        return f"{HOST_DIR}/embed-{self.name}-{self.tag}"

    @property
    def uri(self) -> str:
        return f"qemu:///embed?root={self.root}"

    def local(self, path: str) -> Path:
        """Where a path of this host (under HOST_DIR) is seen from the test."""
        return self.base / os.path.relpath(path, HOST_DIR)

    def argv(self, argv: list[str]) -> list[str]:
        return ["nsenter", "-t", str(self.holder.pid), "-m", "-n", "--", *argv]

    def run(self, argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(self.argv(argv), capture_output=True, text=True, check=False)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{argv!r} on {self.name} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def python(self, code: str) -> str:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        return subprocess.run(self.argv([sys.executable, "-c", code]), capture_output=True, text=True,
                              check=True, env=env).stdout

    def inventory_vars(self) -> dict:
        return {"ansible_connection": "local", "ansible_python_interpreter": str(self.interpreter())}

    def interpreter(self) -> Path:
        """An executable that runs this venv's Python inside the host (Ansible takes a path, not argv)."""
        path = self.base / "python"
        if not path.exists():
            argv = self.argv([sys.executable])
            path.write_text(f"#!{sys.executable}\nimport os, sys\nos.execvp({argv[0]!r}, {argv!r} + sys.argv[1:])\n")
            path.chmod(0o755)
        return path

    def close(self) -> None:
        # The QEMUs die with the namespace; only then can their cgroups go.
        self.netns.close()
        with contextlib.suppress(ProcessLookupError):
            self.holder.send_signal(signal.SIGKILL)
        self.holder.wait(timeout=10)
        remove_cgroups(self.root)
        shutil.rmtree(self.base, ignore_errors=True)


def _host(name: str, netns: Netns, address: str, tag: str) -> Host:
    base = Path(tempfile.mkdtemp(prefix=f"vo-{name}-", dir="/var/tmp"))
    (base / "images").mkdir()
    base.chmod(0o755)
    os.makedirs(HOST_DIR, exist_ok=True)
    holder = subprocess.Popen(netns.exec_argv(["unshare", "--mount", "--propagation", "private", sys.executable,
                                               str(BIND_EXEC), f"{base}={HOST_DIR}", "--", "sleep", "infinity"]))
    host = Host(name, netns, address, base, holder, tag)
    deadline = time.monotonic() + 10
    while host.run(["findmnt", "-n", HOST_DIR], check=False).returncode != 0:
        if time.monotonic() > deadline or holder.poll() is not None:
            host.close()
            raise RuntimeError(f"host {name}: {HOST_DIR} was not mounted")
        time.sleep(0.05)
    return host


@contextlib.contextmanager
def two_hosts() -> Iterator[tuple[Host, Host]]:
    """Hosts ``src`` (10.x.y.1) and ``dst`` (10.x.y.2) joined by a veth pair; everything goes afterwards."""
    tag = secrets.token_hex(3)
    subnet = f"10.{secrets.randbelow(200) + 20}.{secrets.randbelow(250) + 1}"
    made: list[Host] = []
    try:
        for index, name in enumerate(("src", "dst"), start=1):
            netns = Netns(f"vtm{index}-{tag}")
            subprocess.run(["ip", "netns", "add", netns.name], check=True, capture_output=True)
            netns.run(["ip", "link", "set", "lo", "up"])
            made.append(_host(name, netns, f"{subnet}.{index}", tag))
        src, dst = made
        subprocess.run(["ip", "link", "add", f"vtm-{tag}", "netns", src.netns.name, "type", "veth",
                        "peer", "name", f"vtm-{tag}", "netns", dst.netns.name], check=True, capture_output=True)
        for host in made:
            host.netns.run(["ip", "addr", "add", f"{host.address}/24", "dev", f"vtm-{tag}"])
            host.netns.run(["ip", "link", "set", f"vtm-{tag}", "up"])
        yield src, dst
    finally:
        for host in made:
            host.close()


def inventory(*hosts: Host) -> str:
    """An inventory file's text (JSON is YAML) with the hosts."""
    return json.dumps({"all": {"hosts": {h.name: h.inventory_vars() for h in hosts}}})


DISK = f"{HOST_DIR}/images/disk.qcow2"
SERIAL = f"{HOST_DIR}/serial.log"


def domain_xml(name: str, guest) -> str:
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{guest.kernel}</kernel><initrd>{guest.initrd}</initrd><cmdline>{TICK_CMDLINE}</cmdline></os>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{DISK}'/>
      <target dev='vda' bus='virtio'/></disk>
    <serial type='file'><source path='{SERIAL}'/><target port='0'/></serial>
  </devices>
</domain>"""


def play(hosts: list[Host], plays: list[dict], check: bool = False) -> list[dict]:
    """Run plays against the two hosts' inventory; per-task results."""
    with tempfile.TemporaryDirectory(prefix="virtops-migrate-") as tmp:
        (Path(tmp) / "inventory.yml").write_text(inventory(*hosts))
        (Path(tmp) / "play.yml").write_text(json.dumps(plays))
        results_file = os.path.join(tmp, "results.json")
        argv = [str(BIN / "ansible-playbook"), "-i", "inventory.yml", "play.yml"] + ["--check"] * check
        proc = subprocess.run(argv, env=ansible_env(results_file), cwd=tmp, capture_output=True, text=True,
                              check=False, timeout=600)
        try:
            return json.loads(Path(results_file).read_text())
        except FileNotFoundError:
            raise AnsibleRunError(f"no results\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}") from None


def role_play(src: Host, dst: Host, name: str, **options) -> list[dict]:
    variables = {"migrate_name": name, "migrate_source": src.name, "migrate_destination": dst.name,
                 "migrate_source_uri": src.uri, "migrate_destination_uri": dst.uri,
                 "migrate_destination_address": dst.address, **options}
    return [{"hosts": src.name, "gather_facts": False,
             "tasks": [{"name": "migrate", "ansible.builtin.include_role": {"name": "virtops.qemu.migrate"},
                        "vars": variables}]}]


def start_guest(host: Host, name: str, guest, xml: str | None = None) -> None:
    """Start the guest (on a new disk at DISK unless ``xml`` says otherwise) and wait for its ticks."""
    if xml is None:
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(host.local(DISK)), "16M"], check=True)
    start = {"uri": host.uri, "name": name, "xml": xml or domain_xml(name, guest), "state": "running"}
    results = play([host], [{"hosts": host.name, "gather_facts": False,
                             "tasks": [{"name": "start", "virtops.qemu.domain": start}]}])
    assert not results[0]["failed"], results[0]
    wait_for(lambda: len(parse_ticks(serial(host))) >= 2 and f"{DISK_MARKER} written" in serial(host),
             60, "the guest's first ticks and its disk marker")


def serial(host: Host) -> str:
    path = host.local(SERIAL)
    return path.read_text(errors="replace") if path.exists() else ""


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@contextlib.contextmanager
def two_libvirtds() -> Iterator[list[tuple[PrivateLibvirtd, str]]]:
    """Two private libvirtds joined by a veth pair, each serving qemu+tcp:// on its address, with a pool
    'default' on /var/lib/libvirt/images; (daemon, URI) of each."""
    daemons = []
    try:
        for _index in range(2):
            base = Path(tempfile.mkdtemp(prefix="vtl-", dir="/var/tmp"))
            # No virtlogd serves a private daemon's /run/libvirt: QEMU writes its log itself.
            daemons.append(PrivateLibvirtd(base, debian_qemu_conf_text() + '\nstdio_handler = "file"\n'))
        veth = f"vtm-{os.getpid() % 100000}"
        subprocess.run(["ip", "link", "add", veth, "netns", daemons[0].netns, "type", "veth", "peer", "name", veth,
                        "netns", daemons[1].netns], check=True, capture_output=True)
        addresses = ["10.231.7.1", "10.231.7.2"]
        for daemon, address in zip(daemons, addresses, strict=True):
            namespace = Netns(daemon.netns)
            namespace.run(["ip", "link", "set", "lo", "up"])
            namespace.run(["ip", "addr", "add", f"{address}/24", "dev", veth])
            namespace.run(["ip", "link", "set", veth, "up"])
            (daemon.base / "lib" / "images").mkdir(mode=0o755)
            (daemon.base / "log" / "qemu").mkdir(mode=0o755)
            daemon.start(listen_address=address)
            daemon.virsh("pool-define-as", "default", "dir", "--target", "/var/lib/libvirt/images")
            daemon.virsh("pool-start", "default")
        yield [(daemon, f"qemu+tcp://{address}/system") for daemon, address in zip(daemons, addresses, strict=True)]
    finally:
        for daemon in daemons:
            daemon.close()


def libvirt_domain_xml(name: str, guest) -> str:
    return domain_xml(name, guest).replace(DISK, f"/var/lib/libvirt/images/{name}.qcow2").replace(
        SERIAL, f"/var/log/libvirt/qemu/{name}-serial.log")


def tasks(results: list[dict]) -> dict[str, dict]:
    """Results by task name, without the role's prefix."""
    return {r["task"].rpartition(" : ")[2]: r for r in results}
