# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: domains
short_description: QEMU/KVM virtual machines of libvirt or the embedded driver as inventory hosts
version_added: 0.2.0
description:
  - Reads the domains (virtual machines) of one or more QEMU driver instances and
    makes each an inventory host named after the domain.
  - Works with every connection URI the modules take, libvirtd (C(qemu:///system),
    C(qemu+ssh://...)) and the daemonless embedded driver (C(qemu:///embed?root=/dir)),
    several at once.
  - Hosts are grouped by state (C(virtops_running), C(virtops_shutoff), C(virtops_paused), ...)
    and by hypervisor, one group per URI whose name is the URI in lower case with every
    run of other characters than letters and digits turned into C(_)
    (C(qemu:///system) gives C(virtops_qemu_system),
    C(qemu:///embed?root=/srv/vms) gives C(virtops_qemu_embed_root_srv_vms)).
  - Each host gets the variables C(virtops_uri), C(virtops_state), C(virtops_reason),
    C(virtops_active), C(virtops_uuid), C(virtops_autostart), C(virtops_memory_mib)
    (the maximum memory), C(virtops_current_memory_mib) (the memory it boots with),
    C(virtops_vcpus), C(virtops_macs), C(virtops_ips) and C(virtops_interfaces), a list of
    one dict per NIC with C(mac), C(type), C(network), C(bridge), C(model), C(target) (the
    host's tap device of a running guest) and C(ips).
  - The addresses are those the first source of O(address_source) knows for the NIC's MAC
    address (by default the DHCP leases of the hypervisor's active virtual networks, then the
    guest agent, then the neighbour table), IPv4 first. Only a running domain has addresses, so a
    lease that outlived its guest is not shown. When a running domain has an address,
    C(ansible_host) is set to its first IPv4 address (or its first address when it has no
    IPv4 one).
  - A URI that cannot be read (libvirtd not running, an embed root that does not exist)
    is a warning that names the URI, and the domains of the other URIs are still listed;
    with O(strict=true) it fails the inventory instead.
  - The same domain name on two hypervisors would make one host of two guests; the domain
    of the later URI in O(uris) is left out with a warning.
  - Reads only; it changes no domain, network or embed root. The embedded driver is opened
    read-only, as the info modules open it.
  - The inventory source is a YAML file whose name ends in C(virtops_domains.yml) or
    C(virtops_domains.yaml), or any YAML file whose O(plugin) is C(virtops.qemu.domains).
author:
  - virtops.qemu maintainers (@virtops)
requirements:
  - lxml
  - libvirt-python (python3-libvirt) for libvirt URIs
extends_documentation_fragment:
  - constructed
  - inventory_cache
options:
  plugin:
    description: Marks the file as a configuration of this plugin.
    type: str
    required: true
    choices: [virtops.qemu.domains]
  uris:
    description:
      - Connection URIs of the QEMU driver instances whose domains become hosts, in the
        forms the modules take (O(uris) entries are read in this order).
      - C(qemu:///embed?root=/dir) reads the embedded driver's root; its virtual networks'
        leases are read from the root, so run the inventory in the network namespace the
        networks were started in if they were started in one.
    type: list
    elements: str
    default: [qemu:///system]
  address_source:
    description:
      - Where a running domain's addresses come from, in order; for each NIC the first source
        that knows its MAC address gives its addresses, as the O(virtops.qemu.domain_info#module:address_source)
        option of M(virtops.qemu.domain_info) has it.
      - V(lease) is the DHCP leases of the hypervisor's active virtual networks, V(agent) the
        QEMU guest agent (only of domains with its channel), V(arp) the host's neighbour table on
        the NIC's bridge.
    type: list
    elements: str
    choices: [lease, agent, arp]
    default: [lease, agent, arp]
  hostname:
    description:
      - What names the host, the domain's V(name) or its V(uuid) (unique across hypervisors,
        so no domain is left out for a name another hypervisor also has).
    type: str
    choices: [name, uuid]
    default: name
  group_prefix:
    description: Prefix of the state and hypervisor groups' names.
    type: str
    default: virtops_
  strict:
    description:
      - If V(true), a URI that cannot be read fails the inventory, and so does an invalid
        entry of O(compose), O(groups) or O(keyed_groups).
      - If V(false), such a URI is a warning and the other URIs are still read; invalid
        entries are skipped.
    type: bool
    default: false
notes:
  - >-
    With O(cache=true), the domains of each URI are kept in the inventory cache and read
    from there until O(cache_timeout) passes or C(ansible-inventory --flush-cache) (or
    the C(meta) task C(refresh_inventory)) is used. A URI that could not be read is not
    cached, so it is tried again on the next run.
seealso:
  - module: virtops.qemu.domain_info
  - module: virtops.qemu.network_info
"""

EXAMPLES = r"""
# lab.virtops_domains.yml: the guests of the local libvirtd
plugin: virtops.qemu.domains

---
# two hypervisors, the embedded driver's root included, cached for 5 minutes
# (ansible-inventory -i all.virtops_domains.yml --graph)
plugin: virtops.qemu.domains
uris:
  - qemu:///system
  - qemu:///embed?root=/var/lib/virtops
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: /var/tmp/virtops-inventory
cache_timeout: 300

---
# more groups and variables from the host variables
plugin: virtops.qemu.domains
uris: [qemu+ssh://admin@kvm01.example.com/system]
strict: true
compose:
  ansible_user: "'debian'"
  first_mac: virtops_macs | first
groups:
  big: virtops_memory_mib >= 4096
  reachable: ansible_host is defined
keyed_groups:
  - key: virtops_interfaces | map(attribute='network') | select | list
    prefix: net
  - key: "virtops_autostart | string"
    prefix: autostart
"""

import yaml
from ansible.errors import AnsibleParserError
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable

try:
    from ansible_collections.virtops.qemu.plugins.module_utils.driver.connect import open_driver
    from ansible_collections.virtops.qemu.plugins.module_utils.inventory import inventory_hosts, read_hypervisors
    from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import HAS_LXML
except ImportError as import_error:     # only when the collection is installed incompletely
    IMPORT_ERROR: ImportError | None = import_error
else:
    IMPORT_ERROR = None

NAME = "virtops.qemu.domains"
FILE_SUFFIXES = ("virtops_domains.yml", "virtops_domains.yaml")


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    NAME = NAME

    def verify_file(self, path):
        if not super().verify_file(path):
            return False
        if path.endswith(FILE_SUFFIXES):
            return True
        return path.endswith((".yml", ".yaml")) and _names_this_plugin(path)

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        if IMPORT_ERROR is not None:
            raise AnsibleParserError(f"{NAME} cannot load the collection's driver core: {IMPORT_ERROR}")
        if not HAS_LXML:
            raise AnsibleParserError(f"{NAME} needs the Python library lxml")
        uris = self._uris()
        domains = self._domains(uris, self.get_cache_key(path), cache)
        prefix = self.get_option("group_prefix")
        hosts, warnings = inventory_hosts(uris, domains, prefix, self.get_option("hostname"))
        for warning in warnings:
            self.display.warning(warning)
        for host in hosts:
            self._add(host)

    def _uris(self) -> list:
        uris = list(dict.fromkeys(self.get_option("uris") or []))
        if not uris:
            raise AnsibleParserError(f"{NAME}: uris must name at least one connection URI")
        return uris

    def _domains(self, uris, cache_key, cache) -> dict:
        """The domains per URI: from the cache where it has them and may be read, else from the hypervisors."""
        use_cache = self.get_option("cache")
        cached = {}
        if use_cache and cache:
            try:
                cached = dict(self._cache[cache_key])
            except KeyError:
                cached = {}
        missing = [uri for uri in uris if uri not in cached]
        if not missing:
            return cached
        reading = read_hypervisors(missing, open_driver, self.get_option("address_source"))
        self._report(reading)
        domains = {uri: cached.get(uri, reading.domains.get(uri)) for uri in uris}
        domains = {uri: found for uri, found in domains.items() if found is not None}
        if use_cache:
            self._cache[cache_key] = domains
        return domains

    def _report(self, reading) -> None:
        for warning in reading.warnings:
            self.display.warning(warning)
        if not reading.failures:
            return
        lines = [f"{uri}: {to_native(reason)}" for uri, reason in reading.failures.items()]
        if self.get_option("strict"):
            raise AnsibleParserError(f"{NAME}: cannot read " + "; ".join(lines))
        for line in lines:
            self.display.warning(f"{NAME} leaves out the domains of {line}")

    def _add(self, host: dict) -> None:
        name = host["name"]
        self.inventory.add_host(name)
        for group in host["groups"]:
            self.inventory.add_group(group)
            self.inventory.add_child(group, name)
        for key, value in host["variables"].items():
            self.inventory.set_variable(name, key, value)
        strict = self.get_option("strict")
        variables = self.inventory.get_host(name).get_vars()
        self._set_composite_vars(self.get_option("compose"), variables, name, strict=strict)
        self._add_host_to_composed_groups(self.get_option("groups"), variables, name, strict=strict)
        self._add_host_to_keyed_groups(self.get_option("keyed_groups"), variables, name, strict=strict)


def _names_this_plugin(path: str) -> bool:
    """Whether the YAML file at ``path`` says ``plugin: virtops.qemu.domains``."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and data.get("plugin") == NAME
