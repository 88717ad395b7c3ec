"""One in-memory driver for the unit tests of the core's logic, speaking driver/base.py's protocol.

``MemoryDriver`` has domains, networks, pools and volumes, as a real driver
has.  Each kind keeps definitions as given, the live XML of what runs and
the autostart flags, filling in only what the hypervisor would (a network's
uuid and bridge, a volume's path).  Every call that changes something is
appended to ``driver.calls`` (also ``driver.<kind>.calls``), so a test can
tell that check mode touched nothing and which steps a real run took.

A test makes a call fail with ``fail(method, error, name)`` on a kind (or
on the driver, for ``delete_disk_source``).  The guest's own behaviour is
the driver's ``guest_obeys_acpi`` (a shutdown request powers it off) and
``stops_by_itself`` (it is gone by the time destroy comes).  The real
backends are exercised by the integration tests.

``FakeModule`` stands in for the AnsibleModule that module_glue.run reports
to; its exit raises ``Exit``.
"""

from __future__ import annotations

from typing import Any

from lxml import etree

from ansible_collections.virtops.qemu.plugins.module_utils.driver.base import (
    DomainRuntime,
    Domains,
    DomainStatus,
    Driver,
    Lease,
    Networks,
    Pools,
    PoolSpace,
    Resources,
    Snapshots,
    Volumes,
)
from ansible_collections.virtops.qemu.plugins.module_utils.errors import Conflict, NotFound
from ansible_collections.virtops.qemu.plugins.module_utils.model.volume import facts_from_xml, shown_xml
from ansible_collections.virtops.qemu.plugins.module_utils.uri import parse_uri

# libvirt's reason for a domain's state, where the fake can tell it.
REASONS = {"running": "booted", "shutoff": "shutdown"}
NETWORK_UUID = "0b3c2c59-5f4a-4d8a-9e4c-3c5d7b1c0a01"
NETWORK_BRIDGE = "virbr7"
QEMU_PID, DOMAIN_ID = 4242, 7


class Failures:
    """Errors a test wants raised: by method, for one object or (name None) for every one."""

    def __init__(self) -> None:
        self.failures: dict[tuple[str, str | None], BaseException] = {}

    def fail(self, method: str, error: BaseException, name: str | None = None) -> None:
        self.failures[(method, name)] = error

    def _may_fail(self, method: str, name: str | None = None) -> None:
        error = self.failures.get((method, name)) or self.failures.get((method, None))
        if error is not None:
            raise error


class MemoryResources(Failures, Resources):
    """The protocol every kind speaks, over dicts: definitions, live XML of active objects, autostart."""

    def __init__(self, driver: MemoryDriver) -> None:
        super().__init__()
        self.driver = driver
        self.defs: dict[str, str] = {}
        self.running: dict[str, str] = {}       # the live XML of every active object
        self.autostarts: dict[str, bool] = {}

    @property
    def calls(self) -> list:
        return self.driver.calls

    def names(self) -> list[str]:
        return sorted(set(self.defs) | set(self.running))

    def exists(self, name: str) -> bool:
        return name in self.defs or name in self.running

    def xml(self, name: str, inactive: bool = True) -> str:
        self._may_fail("xml", name)
        if not self.exists(name):
            raise NotFound(f"{self.kind} {name!r} not found")
        if inactive and name in self.defs or name not in self.running:
            return self.defs[name]
        return self.running[name]

    def define(self, xml: str) -> None:
        tree = etree.fromstring(xml)
        name = tree.findtext("name")
        self._may_fail("define", name)
        self.calls.append("define")
        self.defs[name] = etree.tostring(self.filled_in(tree), encoding="unicode")
        self.autostarts.setdefault(name, False)

    def filled_in(self, tree: Any) -> Any:
        """The definition as the hypervisor stores it: as given, unless a kind adds something."""
        return tree

    def undefine(self, name: str) -> None:
        self._may_fail("undefine", name)
        self.calls.append("undefine")
        del self.defs[name]

    def autostart(self, name: str) -> bool:
        return self.autostarts[name]

    def set_autostart(self, name: str, enabled: bool) -> None:
        self._may_fail("set_autostart", name)
        self.calls.append("autostart")
        self.autostarts[name] = enabled

    def active(self, name: str) -> bool:
        return name in self.running

    def start(self, name: str) -> None:
        self._may_fail("start", name)
        self.calls.append("start")
        self.running[name] = self.defs[name]

    def stop(self, name: str) -> None:
        self._may_fail("stop", name)
        self.calls.append("stop")
        del self.running[name]


class MemoryDomains(MemoryResources, Domains):
    """Domains whose state is a word of DOMAIN_STATES; a domain's monitor answers from that state.

    ``running`` holds the live XML of a started domain; a test may also set a
    state alone (``states``), and the live XML is then the definition.
    """

    def __init__(self, driver: MemoryDriver) -> None:
        super().__init__(driver)
        self.states: dict[str, str] = {}
        self.sent: list = []        # QMP commands, HMP lines and keys sent to the monitors, in order

    def define(self, xml: str) -> None:
        super().define(xml)
        self.states.setdefault(etree.fromstring(xml).findtext("name"), "shutoff")

    def undefine(self, name: str) -> None:
        super().undefine(name)
        if not self.status(name).active:
            del self.states[name]

    def status(self, name: str) -> DomainStatus:
        self._may_fail("status", name)
        if name not in self.states:
            raise NotFound(f"domain {name!r} not found")
        return DomainStatus(self.states[name], REASONS.get(self.states[name], "unknown"))

    def active(self, name: str) -> bool:
        return self.status(name).active

    def stop(self, name: str) -> None:
        self.destroy(name)

    def start(self, name: str, paused: bool = False) -> None:
        self._may_fail("start", name)
        self.calls.append("start_paused" if paused else "start")
        self.states[name] = "paused" if paused else "running"
        self.running[name] = self.defs[name]

    def _power_off(self, name: str) -> None:
        self.states[name] = "shutoff"
        self.running.pop(name, None)

    def shutdown(self, name: str) -> None:
        self._may_fail("shutdown", name)
        self.calls.append("shutdown")
        if self.driver.guest_obeys_acpi:
            self._power_off(name)

    def destroy(self, name: str) -> None:
        self._may_fail("destroy", name)
        if self.driver.stops_by_itself:
            self._power_off(name)
            raise Conflict(f"cannot destroy {name!r}: domain is not running")
        self.calls.append("destroy")
        self._power_off(name)

    def suspend(self, name: str) -> None:
        self.calls.append("suspend")
        self.states[name] = "paused"

    def resume(self, name: str) -> None:
        self.calls.append("resume")
        self.states[name] = "running"

    def runtime(self, name: str) -> DomainRuntime:
        running = self.status(name).active
        return DomainRuntime(QEMU_PID if running else None, DOMAIN_ID if running else None, [])

    def native_command(self, name: str) -> tuple[list[str], dict[str, str]]:
        return ["qemu-system-x86_64"], {}

    def monitor(self, name: str, command: dict) -> object:
        self._may_fail("monitor", name)
        self.sent.append(command)
        return {"status": self.states[name]} if command.get("execute") == "query-status" else {}

    def human_monitor(self, name: str, command_line: str) -> str:
        self._may_fail("human_monitor", name)
        self.sent.append(command_line)
        return f"VM status: {self.states[name]}\r\n" if command_line == "info status" else ""

    def send_key(self, name: str, codeset: str, codes: list[int], holdtime: int = 0) -> None:
        self._may_fail("send_key", name)
        self.sent.append((codeset, codes, holdtime))


class MemoryNetworks(MemoryResources, Networks):
    """Networks that get a uuid and a bridge when defined, apply live updates and hand out ``leases_of``."""

    def __init__(self, driver: MemoryDriver) -> None:
        super().__init__(driver)
        self.leases_of: dict[str, list[Lease]] = {}

    def filled_in(self, tree: Any) -> Any:
        if tree.find("uuid") is None:
            tree.insert(1, etree.fromstring(f"<uuid>{NETWORK_UUID}</uuid>"))
        if tree.find("bridge") is None:
            tree.append(etree.fromstring(f"<bridge name='{NETWORK_BRIDGE}' stp='on' delay='0'/>"))
        return tree

    def update(self, name: str, command: str, section: str, xml: str, parent_index: int = -1) -> None:
        self._may_fail("update", name)
        self.calls.append(("update", command, section, parent_index))
        tree = etree.fromstring(self.running[name])
        dhcp = tree.findall("ip")[max(parent_index, 0)].find("dhcp")
        if command == "add-last":
            dhcp.append(etree.fromstring(xml))
        else:
            dhcp.remove(next(host for host in dhcp if etree.tostring(host, encoding="unicode") == xml))
        self.running[name] = etree.tostring(tree, encoding="unicode")

    def persistent(self, name: str) -> bool:
        return name in self.defs

    def leases(self, name: str) -> list[Lease]:
        self._may_fail("leases", name)
        return list(self.leases_of.get(name, [])) if self.active(name) else []

    def bridge(self, name: str) -> str | None:
        if not self.active(name):
            return None
        return etree.fromstring(self.running[name]).find("bridge").get("name")


class MemoryPools(MemoryResources, Pools):
    """Pools whose targets always exist; ``spaces`` gives a pool's capacity (zeros when not set)."""

    def __init__(self, driver: MemoryDriver) -> None:
        super().__init__(driver)
        self.spaces: dict[str, PoolSpace] = {}

    def build(self, name: str, overwrite: bool = False) -> None:
        self.calls.append(("build", overwrite))

    def built(self, name: str) -> bool:
        return True

    def refresh(self, name: str) -> None:
        self.calls.append("refresh")

    def space(self, name: str) -> PoolSpace:
        return self.spaces.get(name, PoolSpace(0, 0, 0)) if self.active(name) else PoolSpace(0, 0, 0)

    def delete_target(self, name: str) -> None:
        self.calls.append("delete_target")

    def target(self, name: str) -> str:
        return etree.fromstring(self.defs[name]).findtext("target/path")


class MemoryVolumes(Failures, Volumes):
    """Volumes described as libvirt describes them (model.volume.shown_xml), by pool and name."""

    def __init__(self, driver: MemoryDriver) -> None:
        super().__init__()
        self.driver = driver
        self.facts: dict[tuple[str, str], Any] = {}     # (pool, name) -> model.volume.VolumeFacts

    @property
    def calls(self) -> list:
        return self.driver.calls

    def names(self, pool: str) -> list[str]:
        return sorted(name for owner, name in self.facts if owner == pool)

    def exists(self, pool: str, name: str) -> bool:
        return (pool, name) in self.facts

    def xml(self, pool: str, name: str) -> str:
        return shown_xml(self.facts[(pool, name)])

    def create(self, pool: str, xml: str, clone_from: tuple[str, str] | None = None) -> None:
        self._may_fail("create", pool)
        self.calls.append(("create", clone_from))
        tree = etree.fromstring(xml)
        name = tree.findtext("name")
        if tree.find("target/path") is None:
            target = tree.find("target")
            if target is None:
                target = etree.SubElement(tree, "target")
            etree.SubElement(target, "path").text = f"{self.driver.pools.target(pool)}/{name}"
        self.facts[(pool, name)] = facts_from_xml(etree.tostring(tree, encoding="unicode"))

    def import_image(self, pool: str, xml: str, source, opener, capacity: int | None) -> str:
        self.calls.append(("import", source, capacity))
        self.create(pool, xml)
        return "sha256:" + "0" * 64

    def delete(self, pool: str, name: str) -> None:
        self.calls.append(("delete", name))
        del self.facts[(pool, name)]

    def resize(self, pool: str, name: str, capacity: int, shrink: bool = False) -> None:
        self.calls.append(("resize", capacity, shrink))
        self.facts[(pool, name)] = self.facts[(pool, name)]._replace(capacity=capacity)

    def set_permissions(self, pool: str, name: str, mode: str | None, owner: int | None,
                        group: int | None) -> None:
        self.calls.append(("permissions", mode, owner, group))
        changed = {key: value for key, value in (("mode", mode), ("owner", owner), ("group", group))
                   if value is not None}
        self.facts[(pool, name)] = self.facts[(pool, name)]._replace(**changed)

    def path(self, pool: str, name: str) -> str:
        return self.facts[(pool, name)].path


class MemorySnapshots(Snapshots):
    """Snapshot metadata only: {domain: {name: <domainsnapshot> XML}} and the current one per domain."""

    def __init__(self, driver: MemoryDriver) -> None:
        self.driver = driver
        self.taken: dict[str, dict[str, str]] = {}
        self.current_of: dict[str, str] = {}

    def names(self, domain: str) -> list[str]:
        return sorted(self.taken.get(domain, {}))

    def xml(self, domain: str, name: str) -> str:
        if name not in self.taken.get(domain, {}):
            raise NotFound(f"domain {domain!r} has no snapshot {name!r}")
        return self.taken[domain][name]

    def current(self, domain: str) -> str | None:
        return self.current_of.get(domain)

    def create(self, domain: str, xml: str) -> None:
        name = etree.fromstring(xml.encode()).findtext("name")
        self.driver.calls.append(("snapshot-create", domain, name))
        self.taken.setdefault(domain, {})[name] = xml
        self.current_of[domain] = name

    def revert(self, domain: str, name: str) -> None:
        self.driver.calls.append(("snapshot-revert", domain, name))
        self.current_of[domain] = name

    def delete(self, domain: str, name: str) -> None:
        self.driver.calls.append(("snapshot-delete", domain, name))
        del self.taken[domain][name]


class MemoryDriver(Failures, Driver):
    domains: MemoryDomains
    networks: MemoryNetworks
    pools: MemoryPools
    volumes: MemoryVolumes

    def __init__(self, uri: str = "qemu:///system", guest_obeys_acpi: bool = True) -> None:
        Failures.__init__(self)
        Driver.__init__(self, parse_uri(uri))
        self.calls: list = []
        self.guest_obeys_acpi = guest_obeys_acpi
        self.stops_by_itself = False
        self.read_only: bool | None = None      # as the opener asked (inventory)
        self.domains = MemoryDomains(self)
        self.networks = MemoryNetworks(self)
        self.pools = MemoryPools(self)
        self.volumes = MemoryVolumes(self)
        self.snapshots = MemorySnapshots(self)

    # The domains' stores, by the short names the domain tests use.
    @property
    def xml(self) -> dict[str, str]:
        return self.domains.defs

    @property
    def live(self) -> dict[str, str]:
        return self.domains.running

    @property
    def state(self) -> dict[str, str]:
        return self.domains.states

    @property
    def autostart(self) -> dict[str, bool]:
        return self.domains.autostarts

    def close(self) -> None:
        """Nothing is open."""

    def capabilities(self) -> str:
        return "<capabilities><host><cpu><arch>x86_64</arch></cpu></host></capabilities>"

    def delete_disk_source(self, source: dict) -> None:
        self._may_fail("delete_disk_source", source.get("path"))
        self.calls.append(("delete", source))


class Exit(Exception):
    """The one exit call a FakeModule got: ``args[0]`` is (kind, result), kind "fail" or "exit"."""

    def __init__(self, kind: str, result: dict) -> None:
        super().__init__((kind, result))
        self.kind, self.result = kind, result


class FakeModule:
    """The AnsibleModule calls of module_glue.run: an exit raises Exit; a warning is not expected."""

    def __init__(self, diff: bool = False) -> None:
        self._diff = diff
        self.params: dict = {}
        self.no_log_values: set = set()

    def fail_json(self, **result) -> None:
        raise Exit("fail", result)

    def exit_json(self, **result) -> None:
        raise Exit("exit", result)

    def warn(self, text: str) -> None:
        raise AssertionError(f"unexpected warning {text}")
