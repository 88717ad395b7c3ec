"""One view of a QEMU driver instance for the conformance tests.

The same domain scenarios run against libvirtd and against the embedded
driver; each backend here says how to observe the hypervisor's side: the
stored definition, the state with its reason (as virsh words it), QEMU's own
run state over QMP, and how to clean up a domain.

The network scenarios use a NetworkSide per backend instead: the URI, the
namespace modules run in, and where the networks' bridges, dnsmasq and
firewall rules can be seen (libvirtd's namespace, or the test's own for the
embedded driver).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
from pathlib import Path

from .embed import kill_qemus
from .libvirtd import LIBVIRTD_PIDFILE
from .netns import NETNS_DIR, Netns, netns_of_pid
from .qemu import Qmp

VIRSH_STATE = {"shutoff": "shut off", "pmsuspended": "pmsuspended"}


class LibvirtBackend:
    name = "libvirt"

    def __init__(self, libvirtd):
        self.libvirtd = libvirtd
        self.uri = libvirtd.uri
        self.dnsmasq_dir = "/var/lib/libvirt/dnsmasq"

    def stored_xml(self, name: str) -> str:
        return self.libvirtd.virsh("dumpxml", "--inactive", "--security-info", name)

    def live_xml(self, name: str) -> str:
        return self.libvirtd.virsh("dumpxml", name)

    def domstate(self, name: str) -> str:
        return self.libvirtd.virsh("domstate", "--reason", name).strip()

    def qmp_status(self, name: str) -> str:
        reply = self.libvirtd.virsh("qemu-monitor-command", name, json.dumps({"execute": "query-status"}))
        return json.loads(reply)["return"]["status"]

    def names(self) -> list[str]:
        return self.libvirtd.virsh("list", "--all", "--name").split()

    def autostart(self, name: str) -> bool:
        info = dict(line.split(":", 1) for line in self.libvirtd.virsh("dominfo", name).splitlines() if ":" in line)
        return info["Autostart"].strip() == "enable"

    def remove(self, name: str) -> None:
        self.libvirtd.virsh("destroy", name, check=False)
        self.libvirtd.virsh("undefine", name, "--nvram", check=False)


class EmbedBackend:
    """The embedded driver under ``root``; QEMU is observed over its own monitor socket."""

    name = "embed"

    def __init__(self, root: str):
        self.root = root
        self.uri = f"qemu:///embed?root={root}"

    def _driver(self):
        from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.backend import EmbedDriver
        from ansible_collections.virtops.qemu.plugins.module_utils.uri import parse_uri
        return EmbedDriver(parse_uri(self.uri))

    def stored_xml(self, name: str) -> str:
        with open(os.path.join(self.root, "etc", "qemu", f"{name}.xml"), encoding="utf-8") as handle:
            return handle.read()

    def live_xml(self, name: str) -> str:
        with self._driver() as driver:
            return driver.domains.xml(name, inactive=False)

    def domstate(self, name: str) -> str:
        with self._driver() as driver:
            status = driver.domains.status(name)
        return f"{VIRSH_STATE.get(status.state, status.state)} ({status.reason})"

    def qmp_status(self, name: str) -> str:
        sockets = glob.glob(os.path.join(self.root, "lib", "qemu", f"domain-*-{name[:20]}", "monitor.sock"))
        assert len(sockets) == 1, sockets
        qmp = Qmp(sockets[0])
        try:
            return qmp.execute("query-status")["status"]
        finally:
            qmp.close()

    def autostart(self, name: str) -> bool:
        return os.path.islink(os.path.join(self.root, "etc", "qemu", "autostart", f"{name}.xml"))

    def names(self) -> list[str]:
        config = os.path.join(self.root, "etc", "qemu")
        return sorted(f[:-4] for f in os.listdir(config) if f.endswith(".xml")) if os.path.isdir(config) else []

    def remove(self, name: str) -> None:
        with self._driver() as driver:
            if not driver.domains.exists(name):
                return
            if driver.domains.status(name).active:
                driver.domains.destroy(name)
            driver.domains.undefine(name)

    def close(self) -> None:
        for name in self.names():
            self.remove(name)
        shutil.rmtree(self.root, ignore_errors=True)


# -- networks ----------------------------------------------------------------

LIBVIRT_NETWORK_RUN = "/run/libvirt/network"


def is_live_dnsmasq(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return False
    comm, state = stat[stat.find("(") + 1:stat.rfind(")")], stat[stat.rfind(")") + 2]
    return comm == "dnsmasq" and state not in "ZX"


def dnsmasq_alive(pidfile: str) -> int | None:
    """The pid in ``pidfile`` when that process is a live dnsmasq, else None."""
    try:
        pid = int(Path(pidfile).read_text(encoding="ascii").split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if is_live_dnsmasq(pid) else None


def netns_named_like(pid: int) -> Netns:
    """The named namespace (/run/netns) that process ``pid`` lives in."""
    inode = netns_of_pid(pid)
    for name in sorted(os.listdir(NETNS_DIR)) if NETNS_DIR.is_dir() else []:
        if os.stat(NETNS_DIR / name).st_ino == inode:
            return Netns(name)
    raise RuntimeError(f"pid {pid} is in no named network namespace")


class NetworkSide:
    """How a network scenario reaches one backend and observes what its networks made.

    ``module_netns`` is where modules run (None: anywhere, they only talk
    to a daemon); ``netns`` holds the bridges, dnsmasq and firewall rules.
    """

    name = ""
    uri = ""
    module_netns: str | None = None

    def __init__(self, netns: Netns):
        self.netns = netns

    def names(self) -> list[str]:
        raise NotImplementedError

    def dnsmasq_pidfile(self, name: str) -> str:
        raise NotImplementedError

    def dnsmasq_pid(self, name: str) -> int | None:
        """The live dnsmasq of network ``name``, checked to run in ``netns``."""
        pid = dnsmasq_alive(self.dnsmasq_pidfile(name))
        if pid is not None and netns_of_pid(pid) != os.stat(NETNS_DIR / self.netns.name).st_ino:
            raise AssertionError(f"dnsmasq {pid} of {name} is not in netns {self.netns.name}")
        return pid

    dnsmasq_dir = ""

    def dnsmasq_files(self, name: str) -> dict[str, str]:
        """The contents of network ``name``'s dnsmasq configuration, hostsfile and addn-hosts file."""
        found = {}
        for suffix in ("conf", "hostsfile", "addnhosts"):
            path = Path(self.dnsmasq_dir) / f"{name}.{suffix}"
            found[suffix] = path.read_text() if path.exists() else None
        return found

    def bridge_exists(self, bridge: str) -> bool:
        return bridge in self.netns.links()

    def firewall_lines(self, bridge: str) -> list[str]:
        """Every line of the namespace's nftables ruleset (iptables-nft included) naming ``bridge``."""
        return [line.strip() for line in self.netns.ruleset().splitlines() if bridge in line]

    def remove(self, name: str) -> None:
        raise NotImplementedError

    def remove_domain(self, name: str) -> None:
        raise NotImplementedError


class LibvirtNetworkSide(NetworkSide):
    """libvirtd's network driver; its bridges live in the daemon's own namespace."""

    name = "libvirt"

    def __init__(self, libvirtd):
        pid = int(Path(LIBVIRTD_PIDFILE).read_text(encoding="ascii").split()[0])
        super().__init__(Netns(libvirtd.netns) if libvirtd.netns else netns_named_like(pid))
        if self.netns.same_as_ours():
            raise AssertionError("the harness libvirtd runs in the host's network namespace")
        self.libvirtd = libvirtd
        self.uri = libvirtd.uri
        self.dnsmasq_dir = "/var/lib/libvirt/dnsmasq"

    def names(self) -> list[str]:
        return self.libvirtd.virsh("net-list", "--all", "--name").split()

    def dnsmasq_pidfile(self, name: str) -> str:
        return os.path.join(LIBVIRT_NETWORK_RUN, f"{name}.pid")

    def remove(self, name: str) -> None:
        self.libvirtd.virsh("net-destroy", name, check=False)
        self.libvirtd.virsh("net-undefine", name, check=False)
        if name not in self.names():
            # libvirtd 9 leaves the pidfile of the network's dnsmasq behind
            Path(self.dnsmasq_pidfile(name)).unlink(missing_ok=True)

    def remove_domain(self, name: str) -> None:
        self.libvirtd.virsh("destroy", name, check=False)
        self.libvirtd.virsh("undefine", name, "--nvram", check=False)
        Path(f"/var/log/libvirt/qemu/{name}.log").unlink(missing_ok=True)


class EmbedNetworkSide(NetworkSide):
    """The embedded driver under ``root``; every module call runs in the test's namespace."""

    name = "embed"

    def __init__(self, root: str, netns: Netns):
        super().__init__(netns)
        self.root = str(root)
        self.uri = f"qemu:///embed?root={root}"
        self.module_netns = netns.name
        self.dnsmasq_dir = os.path.join(self.root, "lib", "dnsmasq")

    def names(self) -> list[str]:
        config = os.path.join(self.root, "etc", "network")
        return sorted(f[:-4] for f in os.listdir(config) if f.endswith(".xml")) if os.path.isdir(config) else []

    def dnsmasq_pidfile(self, name: str) -> str:
        return os.path.join(self.root, "run", "network", f"{name}.pid")

    def status_exists(self, name: str) -> bool:
        return os.path.exists(os.path.join(self.root, "run", "network", f"{name}.xml"))

    def remove(self, name: str) -> None:
        # Closing the namespace ends dnsmasq and takes bridge and table along;
        # the root's files go with the root.
        pass

    def remove_domain(self, name: str) -> None:
        kill_qemus(self.root)
