"""The inventory plugin's Ansible side: files it accepts, cache use, strict, constructed groups."""

from __future__ import annotations

import json

import pytest
from ansible.errors import AnsibleParserError
from ansible.inventory.data import InventoryData
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import inventory_loader
from ansible.utils.display import Display
from fakes import MemoryDriver

from ansible_collections.virtops.qemu.plugins.inventory import domains as plugin_module
from ansible_collections.virtops.qemu.plugins.module_utils.driver.base import Lease
from ansible_collections.virtops.qemu.plugins.module_utils.inventory import Reading, read_domains

SYSTEM, EMBED = "qemu:///system", "qemu:///embed?root=/srv/vms"


DOMAIN = ("<domain type='qemu'><name>{name}</name><uuid>u-{name}</uuid><memory unit='MiB'>512</memory>"
          "<vcpu>2</vcpu><os><type arch='x86_64'>hvm</type></os><devices><interface type='network'>"
          "<mac address='{mac}'/><source network='lab' bridge='virbr1'/><model type='virtio'/></interface>"
          "</devices></domain>")


def domain(name, state="running", ips=()):
    """A domain on network lab: its name, state and leased addresses."""
    return name, state, list(ips)


def hypervisor(*domains) -> MemoryDriver:
    """An in-memory hypervisor with the active network lab and ``domains``, each leased its addresses."""
    driver = MemoryDriver()
    driver.networks.define("<network><name>lab</name><bridge name='virbr1'/></network>")
    driver.networks.start("lab")
    leases = []
    for index, (name, state, ips) in enumerate(domains, start=1):
        mac = f"52:54:00:00:00:{index:02x}"
        driver.domains.define(DOMAIN.format(name=name, mac=mac))
        if state != "shutoff":
            driver.domains.start(name, paused=state == "paused")
        leases += [Lease(mac, ip, 24, name, 0, "ipv4") for ip in ips]
    driver.networks.leases_of["lab"] = leases
    return driver


class Hypervisors:
    """Stands in for read_hypervisors: reads the in-memory hypervisor of each URI, or records the
    error a URI answers with (a string); records which URIs were asked."""

    def __init__(self, answers):
        self.answers = answers
        self.asked = []

    def __call__(self, uris, opener, sources):
        self.asked.append(list(uris))
        self.sources = sources
        reading = Reading()
        for uri in uris:
            if isinstance(self.answers[uri], str):
                reading.failures[uri] = self.answers[uri]
            else:
                reading.domains[uri] = read_domains(self.answers[uri], reading.warnings, sources)
        return reading


@pytest.fixture
def reader(monkeypatch):
    fake = Hypervisors({SYSTEM: hypervisor(domain("web", ips=["10.0.0.5"]), domain("old", state="shutoff")),
                        EMBED: hypervisor(domain("api", state="paused"))})
    monkeypatch.setattr(plugin_module, "read_hypervisors", fake)
    return fake


def source(tmp_path, name="lab.virtops_domains.yml", **config):
    path = tmp_path / name
    path.write_text(json.dumps({"plugin": "virtops.qemu.domains", **config}))
    return str(path)


def new_plugin():
    """The plugin as Ansible's loader sets it up (the test process imports the collection without the loader)."""
    plugin = plugin_module.InventoryModule()
    inventory_loader._load_config_defs(plugin_module.NAME, plugin_module, plugin_module.__file__)
    inventory_loader._update_object(obj=plugin, name=plugin_module.NAME, path=plugin_module.__file__,
                                    resolved=plugin_module.NAME)
    return plugin


def parse(path, cache=True):
    plugin = new_plugin()
    inventory = InventoryData()
    if not plugin.verify_file(path):
        raise AssertionError(f"{path} not accepted")
    plugin.parse(inventory, DataLoader(), path, cache=cache)
    if plugin.get_option("cache"):
        plugin.update_cache_if_changed()        # as InventoryManager does after parse
    return inventory


def members(inventory, group):
    return sorted(host.name for host in inventory.groups[group].get_hosts()) if group in inventory.groups else []


def test_hosts_groups_and_variables(tmp_path, reader):
    inventory = parse(source(tmp_path, uris=[SYSTEM, EMBED], compose={"nic_network": "virtops_interfaces[0].network"},
                             groups={"reachable": "ansible_host is defined"},
                             keyed_groups=[{"key": "virtops_vcpus | string", "prefix": "cpus"}]))
    assert members(inventory, "virtops_qemu_system") == ["old", "web"]
    assert members(inventory, "virtops_qemu_embed_root_srv_vms") == ["api"]
    assert (members(inventory, "virtops_running"), members(inventory, "virtops_shutoff"),
            members(inventory, "virtops_paused")) == (["web"], ["old"], ["api"])
    assert members(inventory, "reachable") == ["web"]
    assert members(inventory, "cpus_2") == ["api", "old", "web"]
    web = inventory.get_host("web").get_vars()
    assert web["ansible_host"] == "10.0.0.5" and web["virtops_uri"] == SYSTEM and web["nic_network"] == "lab"
    assert "ansible_host" not in inventory.get_host("old").get_vars()


def test_files_it_accepts(tmp_path):
    plugin = new_plugin()
    assert plugin.verify_file(source(tmp_path, "a.virtops_domains.yaml"))
    assert plugin.verify_file(source(tmp_path, "hosts.yml"))        # says plugin: virtops.qemu.domains
    other = tmp_path / "other.yml"
    other.write_text("plugin: community.libvirt.libvirt\n")
    assert not plugin.verify_file(str(other))
    assert not plugin.verify_file(str(tmp_path / "absent.virtops_domains.yml"))


def cached_source(tmp_path, **config):
    return source(tmp_path, uris=[SYSTEM, EMBED], cache=True, cache_plugin="jsonfile",
                  cache_connection=str(tmp_path / "cache"), **config)


def test_the_cache_answers_until_flushed(tmp_path, reader):
    path = cached_source(tmp_path)
    assert members(parse(path), "virtops_running") == ["web"]
    reader.answers[SYSTEM] = hypervisor(domain("new"))
    inventory = parse(path)
    assert reader.asked == [[SYSTEM, EMBED]], "the second run asked the hypervisors"
    assert members(inventory, "virtops_qemu_system") == ["old", "web"]
    flushed = parse(path, cache=False)      # ansible-inventory --flush-cache, meta: refresh_inventory
    assert reader.asked[-1] == [SYSTEM, EMBED]
    assert members(flushed, "virtops_qemu_system") == ["new"]
    assert members(parse(path), "virtops_qemu_system") == ["new"] and len(reader.asked) == 2


def test_a_failed_uri_is_warned_about_not_cached_and_tried_again(tmp_path, reader, monkeypatch):
    warnings = []
    monkeypatch.setattr(Display, "warning", lambda _self, msg, *a, **k: warnings.append(msg))
    reader.answers[EMBED] = "the embed root /srv/vms does not exist"
    path = cached_source(tmp_path)
    inventory = parse(path)
    assert members(inventory, "virtops_running") == ["web"] and "api" not in inventory.hosts
    assert warnings == ["virtops.qemu.domains leaves out the domains of qemu:///embed?root=/srv/vms: "
                        "the embed root /srv/vms does not exist"]
    reader.answers[EMBED] = hypervisor(domain("api", state="paused"))
    assert members(parse(path), "virtops_paused") == ["api"]
    assert reader.asked == [[SYSTEM, EMBED], [EMBED]]


def test_strict_fails_on_a_uri_that_cannot_be_read(tmp_path, reader):
    reader.answers[EMBED] = "cannot connect"
    with pytest.raises(AnsibleParserError, match=r"cannot read qemu:///embed\?root=/srv/vms: cannot connect"):
        parse(source(tmp_path, uris=[SYSTEM, EMBED], strict=True))


def test_an_empty_uri_list_is_refused(tmp_path, reader):
    with pytest.raises(AnsibleParserError, match="uris must name at least one connection URI"):
        parse(source(tmp_path, uris=[]))
