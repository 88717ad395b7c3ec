"""One view of a QEMU driver instance for the conformance tests.

The same domain scenarios run against libvirtd and against the embedded
driver; each backend here says how to observe the hypervisor's side: the
stored definition, the state with its reason (as virsh words it), QEMU's own
run state over QMP, and how to clean up a domain.
"""

from __future__ import annotations

import glob
import json
import os
import shutil

from .qemu import Qmp

VIRSH_STATE = {"shutoff": "shut off", "pmsuspended": "pmsuspended"}


class LibvirtBackend:
    name = "libvirt"

    def __init__(self, libvirtd):
        self.libvirtd = libvirtd
        self.uri = libvirtd.uri

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
