#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: network
short_description: Define, start, stop and remove libvirt virtual networks
version_added: 0.2.0
description:
  - Manages a libvirt virtual network of a QEMU driver instance, that is its persistent
    definition, whether it runs, and autostart.
  - The definition is given either verbatim as libvirt network XML in O(xml) or by
    structured options (O(forward), O(bridge), O(ips), O(dns), ...).
  - Comparison is by desired subset. What you specify must hold in the current
    definition; what libvirt filled in (uuid, bridge name, MAC address, the NAT port range)
    is kept.
  - Lists you mention are owned by you. When O(ips), O(ips[].dhcp.ranges), O(ips[].dhcp.hosts),
    a list of O(dns) or O(portgroups) is given (or the XML contains such elements), members
    missing from it are removed.
  - Changes libvirt can make to a running network without restarting it (DHCP static hosts
    and ranges, DNS hosts, TXT and SRV records, portgroups) are applied to the running network
    and to the persistent definition, and listed in RV(live_updates). Any other change of a
    running network is written to the definition and reported with RV(restart_required=true);
    set O(restart=true) to apply it by restarting the network.
  - A running network keeps its guests' links while it is updated live; a restart cuts them
    until the guests' interfaces are plugged in again.
author:
  - virtops.qemu maintainers (@virtops)
extends_documentation_fragment:
  - virtops.qemu.connection
  - virtops.qemu.attributes
options:
  name:
    description:
      - Name of the network, made of letters, digits and C(_), C(.), C(+), C(:), C(-); no C(/).
    type: str
    required: true
  state:
    description:
      - V(present) defines the network and leaves it running or not as it is.
      - V(active) defines it if needed and starts it.
      - V(inactive) defines it if needed and stops it.
      - V(absent) stops it and removes its definition.
    type: str
    choices: [present, active, inactive, absent]
    default: active
  xml:
    description:
      - The network as libvirt network XML. Its C(<name>) must match O(name) or be absent.
      - Cannot be combined with the structured options.
    type: str
  autostart:
    description: Whether the network starts with the host (or driver instance).
    type: bool
  restart:
    description:
      - Restart a running network whose change cannot be applied live, instead of
        reporting RV(restart_required).
    type: bool
    default: false
  forward:
    description: How the network reaches the outside.
    type: dict
    suboptions:
      mode:
        description:
          - V(nat) masquerades guest traffic, V(route) routes it, V(open) adds no firewall rules,
            V(bridge) attaches guests to an existing host bridge (O(bridge.name)).
          - V(none) and V(isolated) both mean an isolated network, without C(<forward>).
          - Switching the mode replaces the whole C(<forward>) element.
        type: str
        choices: [nat, route, open, bridge, none, isolated]
        default: nat
      dev:
        description: Host interface that traffic leaves by.
        type: str
      nat_ports:
        description: Source port range for masqueraded TCP and UDP (mode V(nat) only; libvirt's default 1024-65535).
        type: dict
        suboptions:
          start:
            description: First port.
            type: int
            required: true
          end:
            description: Last port.
            type: int
            required: true
  bridge:
    description: The host bridge of the network.
    type: dict
    suboptions:
      name:
        description:
          - Bridge device name, at most 15 bytes. When omitted, libvirt picks a free C(virbrN) and it is kept.
        type: str
      stp:
        description: Spanning tree protocol on the bridge.
        type: bool
      delay:
        description: Forward delay of the bridge, in seconds.
        type: int
      mtu:
        description: MTU of the bridge.
        type: int
      mac_table_manager:
        description: Who manages the bridge's MAC table.
        type: str
        choices: [kernel, libvirt]
  mac:
    description: MAC address of the bridge. When omitted, libvirt generates one and it is kept.
    type: str
  domain:
    description: DNS domain of the network.
    type: dict
    suboptions:
      name:
        description: Domain name, for example V(example.lan).
        type: str
        required: true
      local_only:
        description: Answer queries for the domain only locally, never forward them.
        type: bool
  ips:
    description: Addresses of the bridge, one per subnet, each with its DHCP service.
    type: list
    elements: dict
    suboptions:
      address:
        description: Address of the host on the bridge, for example V(192.168.100.1) or V(fd00:100::1).
        type: str
        required: true
      prefix:
        description: Prefix length of the subnet.
        type: int
      family:
        description: Address family; guessed from O(ips[].address) when omitted.
        type: str
        choices: [ipv4, ipv6]
      dhcp:
        description: DHCP service on this subnet.
        type: dict
        suboptions:
          ranges:
            description: Address ranges handed out dynamically. They must lie within the subnet.
            type: list
            elements: dict
            suboptions:
              start:
                description: First address.
                type: str
                required: true
              end:
                description: Last address, not before O(ips[].dhcp.ranges[].start).
                type: str
                required: true
              lease_time:
                description:
                  - V(infinite), or a number with an optional C(s), C(m) or C(h) suffix (minutes by default).
                type: str
          hosts:
            description:
              - Static hosts, matched by MAC address, else by name. An IPv4 host needs O(ips[].dhcp.hosts[].mac)
                or O(ips[].dhcp.hosts[].name).
            type: list
            elements: dict
            suboptions:
              mac:
                description: MAC address of the guest interface.
                type: str
              name:
                description: Host name of the guest.
                type: str
              ip:
                description: Address the host gets; it must lie within the subnet.
                type: str
              lease_time:
                description: Like O(ips[].dhcp.ranges[].lease_time).
                type: str
  dns:
    description: The network's DNS service.
    type: dict
    suboptions:
      hosts:
        description: Extra host records.
        type: list
        elements: dict
        suboptions:
          ip:
            description: Address of the record.
            type: str
            required: true
          hostnames:
            description: Names for the address.
            type: list
            elements: str
            required: true
      forwarders:
        description: Upstream servers, for every name or for one domain.
        type: list
        elements: dict
        suboptions:
          addr:
            description: Address of the upstream server.
            type: str
          domain:
            description: Domain the server answers for.
            type: str
      srv:
        description: SRV records.
        type: list
        elements: dict
        suboptions:
          service:
            description: Service name, for example V(ldap).
            type: str
            required: true
          protocol:
            description: V(tcp) or V(udp).
            type: str
            required: true
          domain:
            description: Domain of the record.
            type: str
          target:
            description: Host providing the service.
            type: str
          port:
            description: Port of the service.
            type: int
          priority:
            description: Priority of the target.
            type: int
          weight:
            description: Relative weight among targets of the same priority.
            type: int
      txt:
        description: TXT records.
        type: list
        elements: dict
        suboptions:
          name:
            description: Name of the record.
            type: str
            required: true
          value:
            description: Text of the record.
            type: str
            required: true
  portgroups:
    description:
      - Port groups guests may pick by name, with O(virtops.qemu.domain#module:interfaces[].portgroup).
      - libvirt takes a VLAN tag only on a network that can carry one (an Open vSwitch bridge,
        say); it refuses one on a V(nat) network.
    type: list
    elements: dict
    suboptions:
      name:
        description: Name of the port group.
        type: str
        required: true
      default:
        description: Whether guests that name no port group get this one.
        type: bool
      vlan_tag:
        description: VLAN tag of the port group (0 to 4095).
        type: int
notes:
  - Bad input fails the task before anything changes, naming the option, for example
    a bridge name over 15 bytes, a DHCP range outside its subnet or reversed, a static host with
    neither MAC nor name, an unknown forward mode, a malformed address or prefix.
  - A subnet that overlaps another active network or a route of the host is refused when the
    network starts.
  - Also refused up front, on every backend, naming the option - a control character (line break,
    tab, NUL, ...) in any value, since values end up in the configuration of dnsmasq, which runs as
    root; DHCP on an IPv6 address whose prefix is not 64; a DHCP range that covers the network's own
    address, its network address or its broadcast address; two O(ips) whose subnets overlap.
  - On the embedded driver, a network can only be changed, stopped or removed from the network
    namespace it was started in; from another one the task fails before the definition is written.
  - In check mode RV(bridge) is the name in the definition; for a new network without
    O(bridge.name) it is V(null), since the driver picks it when defining.
seealso:
  - module: virtops.qemu.network_info
  - module: virtops.qemu.domain
  - name: libvirt network XML format
    description: Reference of every element O(xml) may contain.
    link: https://libvirt.org/formatnetwork.html
"""

EXAMPLES = r"""
- name: A NAT network with DHCP and a static host, started at boot
  virtops.qemu.network:
    name: lab
    forward:
      mode: nat
    bridge:
      name: virbr-lab
    ips:
      - address: 192.168.150.1
        prefix: 24
        dhcp:
          ranges:
            - start: 192.168.150.100
              end: 192.168.150.199
              lease_time: 1h
          hosts:
            - mac: "52:54:00:00:15:01"
              name: web01
              ip: 192.168.150.10
    autostart: true

- name: Add a static host while the network runs; it is applied live
  virtops.qemu.network:
    name: lab
    ips:
      - address: 192.168.150.1
        dhcp:
          hosts:
            - mac: "52:54:00:00:15:01"
              name: web01
              ip: 192.168.150.10
            - mac: "52:54:00:00:15:02"
              name: web02
              ip: 192.168.150.11
  register: lab

- name: Show what was changed on the running network
  ansible.builtin.debug:
    var: lab.live_updates

- name: Route instead of NAT; restart the network to apply it
  virtops.qemu.network:
    name: lab
    forward:
      mode: route
    restart: true

- name: An isolated network with IPv6 router advertisements only
  virtops.qemu.network:
    name: backplane
    forward:
      mode: isolated
    ips:
      - address: fd00:150::1
        prefix: 64

- name: Define a network from libvirt XML without starting it
  virtops.qemu.network:
    name: legacy
    state: inactive
    xml: |
      <network>
        <name>legacy</name>
        <forward mode='nat'/>
        <ip address='192.168.151.1' prefix='24'>
          <dhcp><range start='192.168.151.2' end='192.168.151.254'/></dhcp>
        </ip>
      </network>

- name: Connect a VM to it
  virtops.qemu.domain:
    name: web01
    interfaces:
      - type: network
        source: lab
        mac: "52:54:00:00:15:01"

- name: Remove a network
  virtops.qemu.network:
    name: legacy
    state: absent
"""

RETURN = r"""
name:
  description: Name of the network.
  returned: always
  type: str
  sample: lab
state:
  description: V(active), V(inactive) or V(absent) after the task (predicted in check mode).
  returned: always
  type: str
  sample: active
uuid:
  description: UUID of the network.
  returned: when the network exists
  type: str
  sample: 8f5b6f2a-3c2d-4a8e-9b1f-2d0c1e5a7b60
xml:
  description: Persistent definition after the task (predicted in check mode).
  returned: always
  type: str
autostart:
  description: Whether the network starts with the host.
  returned: always
  type: bool
bridge:
  description: Host bridge the running network's guests attach to; V(null) when it is not active.
  returned: always
  type: str
  sample: virbr-lab
restart_required:
  description:
    - The definition has changes the running network does not have and that cannot be applied live;
      they take effect when the network restarts.
  returned: always
  type: bool
live_updates:
  description:
    - Changes applied to the running network without a restart (predicted in check mode),
      each as C(add) or C(delete), the libvirt section and the element.
  returned: always
  type: list
  elements: str
  sample: ["add ip-dhcp-host <host mac=\"52:54:00:00:15:02\" name=\"web02\" ip=\"192.168.150.11\"/>"]
"""


from typing import TYPE_CHECKING

# First: the imports below then load through its compiled-code cache.
from ansible_collections.virtops.qemu.plugins.module_utils import bytecode  # noqa: F401  # pylint: disable=unused-import
from ansible_collections.virtops.qemu.plugins.module_utils.driver.connect import open_driver
from ansible_collections.virtops.qemu.plugins.module_utils.manager.network import NetworkManager
from ansible_collections.virtops.qemu.plugins.module_utils.model import kinds
from ansible_collections.virtops.qemu.plugins.module_utils.model.network import STRUCTURED_OPTIONS
from ansible_collections.virtops.qemu.plugins.module_utils.module_glue import MaskingModule, argument_spec, run

# Never run: ansible-core reads this import and ships in the payload the parts
# the driver loads on demand for this module's calls (module_utils/lazy.py).
if TYPE_CHECKING:
    from ansible_collections.virtops.qemu.plugins.module_utils.payload import networks  # noqa: F401  # pylint: disable=unused-import

LEASE = dict(type="str")

OPTIONS = dict(
    name=dict(type="str", required=True),
    state=dict(type="str", default="active", choices=["present", "active", "inactive", "absent"]),
    xml=dict(type="str"),
    autostart=dict(type="bool"),
    restart=dict(type="bool", default=False),
    forward=dict(type="dict", options=dict(
        mode=dict(type="str", default="nat", choices=["nat", "route", "open", "bridge", "none", "isolated"]),
        dev=dict(type="str"),
        nat_ports=dict(type="dict", options=dict(start=dict(type="int", required=True),
                                                 end=dict(type="int", required=True))))),
    bridge=dict(type="dict", options=dict(
        name=dict(type="str"), stp=dict(type="bool"), delay=dict(type="int"), mtu=dict(type="int"),
        mac_table_manager=dict(type="str", choices=["kernel", "libvirt"]))),
    mac=dict(type="str"),
    domain=dict(type="dict", options=dict(name=dict(type="str", required=True), local_only=dict(type="bool"))),
    ips=dict(type="list", elements="dict", options=dict(
        address=dict(type="str", required=True), prefix=dict(type="int"),
        family=dict(type="str", choices=["ipv4", "ipv6"]),
        dhcp=dict(type="dict", options=dict(
            ranges=dict(type="list", elements="dict", options=dict(
                start=dict(type="str", required=True), end=dict(type="str", required=True), lease_time=LEASE)),
            hosts=dict(type="list", elements="dict", options=dict(
                mac=dict(type="str"), name=dict(type="str"), ip=dict(type="str"), lease_time=LEASE)))))),
    dns=dict(type="dict", options=dict(
        hosts=dict(type="list", elements="dict", options=dict(
            ip=dict(type="str", required=True), hostnames=dict(type="list", elements="str", required=True))),
        forwarders=dict(type="list", elements="dict", options=dict(addr=dict(type="str"), domain=dict(type="str"))),
        srv=dict(type="list", elements="dict", options=dict(
            service=dict(type="str", required=True), protocol=dict(type="str", required=True),
            domain=dict(type="str"), target=dict(type="str"), port=dict(type="int"),
            priority=dict(type="int"), weight=dict(type="int"))),
        txt=dict(type="list", elements="dict", options=dict(
            name=dict(type="str", required=True), value=dict(type="str", required=True))))),
    portgroups=dict(type="list", elements="dict", options=dict(
        name=dict(type="str", required=True), default=dict(type="bool"), vlan_tag=dict(type="int"))),
)


def ensure(module):
    request = kinds.NETWORK.request(module.params)
    with open_driver(module.params["uri"], read_only=module.check_mode) as driver:
        manager = NetworkManager(driver.networks, driver.warnings)
        return dict(manager.ensure(request, module.check_mode), warnings=driver.warnings)


def main():
    module = MaskingModule(
        argument_spec=argument_spec(**OPTIONS),
        mutually_exclusive=[("xml", option) for option in STRUCTURED_OPTIONS],
        supports_check_mode=True,
    )
    run(module, lambda: ensure(module))


if __name__ == "__main__":
    main()
