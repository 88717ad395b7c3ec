#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: domain
short_description: Define, start, stop and remove QEMU/KVM virtual machines
version_added: 0.1.0
description:
  - Manages the whole life of a libvirt domain (a virtual machine) on a QEMU
    driver instance, that is its persistent definition, its power state and autostart.
  - The definition is given either verbatim as libvirt domain XML in O(xml)
    or by structured options (O(memory), O(disks), O(interfaces), ...).
  - Comparison is by desired subset. What you specify must hold in the
    current definition; values libvirt generated (uuid, MAC addresses, PCI
    addresses, controllers, the versioned machine type) are kept, so a
    redefinition never reshuffles the guest's hardware.
  - Lists you mention are owned by you. When O(disks), O(interfaces),
    O(serials) or O(boot_order) is given (or the XML contains such devices),
    the current members missing from it are removed. Devices libvirt adds
    by itself (controllers, input, video, memballoon) are left alone.
  - A changed definition of a running domain is written to the persistent
    configuration and reported with RV(restart_required=true); set
    O(restart=true) to apply it by a restart.
  - Console passwords never appear in the results. The C(passwd) attributes of
    RV(xml) and of the diff are masked as C(********); a password that the task
    changes shows as C(********(changed)) in the diff's after side. The comparison
    sees the real values, so a new password is detected and applied.
  - When the definition was written but a later step failed (a start that QEMU
    or libvirt refused, say), the task fails with C(changed=true) and the diff of the
    definition, and the message says that the domain was defined.
author:
  - virtops.qemu maintainers (@virtops)
extends_documentation_fragment:
  - virtops.qemu.connection
  - virtops.qemu.attributes
options:
  name:
    description:
      - Name of the domain, made of letters, digits and C(_), C(.), C(+), C(:), C(-); no C(/).
    type: str
    required: true
  state:
    description:
      - V(present) defines the domain and leaves its power state as it is.
      - V(running) defines it if needed, starts it and resumes it from pause.
      - V(paused) starts it paused, or pauses it.
      - V(shutdown) asks the guest to power off (ACPI power button) and waits up to
        O(shutdown_timeout) seconds; then it fails, or destroys the domain if O(force=true).
      - V(destroyed) powers it off at once, like pulling the plug.
      - V(absent) stops it at once and removes the definition with its NVRAM,
        TPM state, managed save and snapshot metadata. Disk images are kept
        unless listed in O(remove_disks).
      - Every transition blocks until the domain has reached the state.
    type: str
    choices: [present, running, paused, shutdown, destroyed, absent]
    default: present
  xml:
    description:
      - The domain as libvirt domain XML. Its C(<name>) must match O(name) or be absent.
      - Cannot be combined with the structured definition options.
      - Console passwords (C(passwd) attributes) in it are hidden in the task's results
        like a C(no_log) option.
    type: str
  title:
    description: Short title of the domain.
    type: str
  description:
    description: Free-form description of the domain.
    type: str
  type:
    description:
      - Hypervisor type. V(kvm) needs C(/dev/kvm); V(qemu) is pure emulation (TCG).
      - A new domain defaults to V(kvm).
    type: str
    choices: [kvm, qemu]
  arch:
    description: Guest CPU architecture, for example V(x86_64). Default is the host's.
    type: str
  machine:
    description:
      - Machine type such as V(q35) or V(pc). libvirt stores the versioned
        name (V(pc-q35-7.2)), which counts as the same.
    type: str
  memory:
    description:
      - Maximum memory of the guest, with a unit (V(512MiB), V(2GiB)); a bare
        number is MiB. A new domain defaults to 1 GiB.
      - Unless O(current_memory) is set, the current memory follows it.
    type: str
  current_memory:
    description:
      - Memory the guest gets at start; same format.
      - It must be at most O(memory) (or the domain's memory when O(memory) is not given);
        a larger value is refused, as is a C(<currentMemory>) above C(<memory>) in O(xml).
    type: str
  vcpus:
    description: Number of virtual CPUs, at least 1. A new domain defaults to 1.
    type: int
  cpu:
    description: The guest CPU.
    type: dict
    suboptions:
      mode:
        description: How the guest CPU relates to the host's.
        type: str
        choices: [host-passthrough, host-model, custom, maximum]
      model:
        description: CPU model name, for example V(qemu64) or V(Skylake-Server).
        type: str
  firmware:
    description:
      - V(efi) asks libvirt to select UEFI firmware (OVMF) with an NVRAM store.
        V(bios) (SeaBIOS) is the default of new domains and changes nothing on existing ones.
    type: str
    choices: [bios, efi]
  kernel:
    description: Direct kernel boot.
    type: dict
    suboptions:
      path:
        description: Kernel image on the managed host.
        type: path
        required: true
      initrd:
        description: Initial ramdisk.
        type: path
      cmdline:
        description: Kernel command line.
        type: str
      dtb:
        description: Device tree blob.
        type: path
  boot_order:
    description: Boot devices in order of preference.
    type: list
    elements: str
    choices: [hd, cdrom, network, fd]
  disks:
    description:
      - The domain's disks, in order. Targets are assigned per bus (V(vda), V(vdb),
        V(sda), ...) unless O(disks[].target) is given.
    type: list
    elements: dict
    suboptions:
      path:
        description:
          - Image file or block device (paths under C(/dev/) are block devices).
          - May be omitted for an empty cdrom.
        type: path
      pool:
        description: Storage pool of O(disks[].volume).
        type: str
      volume:
        description: Storage volume name, for a disk that lives in a libvirt pool.
        type: str
      type:
        description: Source kind; guessed from O(disks[].path) or O(disks[].volume).
        type: str
        choices: [file, block, volume]
      device:
        description: Disk or CD-ROM drive.
        type: str
        choices: [disk, cdrom]
        default: disk
      bus:
        description: Bus the disk is attached to. Default V(virtio) for disks, V(sata) for cdroms.
        type: str
        choices: [virtio, sata, scsi, ide, usb]
      target:
        description: Device name as the guest sees it in the XML, for example V(vdb).
        type: str
      format:
        description: Image format.
        type: str
        choices: [raw, qcow2]
      readonly:
        description: Attach read-only.
        type: bool
        default: false
      cache:
        description: Host page cache mode.
        type: str
        choices: [default, none, writethrough, writeback, directsync, unsafe]
  interfaces:
    description: The domain's network interfaces, in order.
    type: list
    elements: dict
    suboptions:
      type:
        description:
          - Kind of interface; guessed from O(interfaces[].network) or O(interfaces[].bridge).
          - V(network) and V(bridge) need O(interfaces[].source).
        type: str
        choices: [network, bridge, user]
      source:
        description:
          - Name of the virtual network (O(interfaces[].type=network)) or host bridge
            (O(interfaces[].type=bridge)) to connect to.
          - O(interfaces[].network) and O(interfaces[].bridge) say the same and set the type.
        type: str
      network:
        description:
          - libvirt virtual network to connect to; the same as O(interfaces[].type=network)
            with O(interfaces[].source).
        type: str
      bridge:
        description:
          - Existing host bridge to connect to; the same as O(interfaces[].type=bridge)
            with O(interfaces[].source).
        type: str
      model:
        description: NIC model.
        type: str
        default: virtio
      mac:
        description: MAC address. When omitted, libvirt generates one and it is kept.
        type: str
      portgroup:
        description:
          - Portgroup of the virtual network (O(interfaces[].type=network) only) whose settings
            the interface gets, see O(virtops.qemu.network#module:portgroups).
          - libvirt applies the portgroup's settings (bandwidth, VLAN tag, virtual port,
            C(trustGuestRxFilters)) when the domain starts; C(virsh net-port-dumpxml) shows them.
          - The embedded driver stores the portgroup and refuses to start a domain whose portgroup
            sets a bandwidth limit, a VLAN tag or a virtual port, which it does not apply.
        type: str
  graphics:
    description: Graphical console.
    type: dict
    suboptions:
      type:
        description: V(none) removes every graphical console.
        type: str
        choices: [vnc, spice, none]
        default: vnc
      listen:
        description: Address to listen on.
        type: str
      port:
        description: TCP port (5900 to 65535 for VNC); V(-1) or unset picks a free one at start.
        type: int
      password:
        description:
          - Console password; at most 8 characters for VNC.
          - Never returned; results show C(********) in its place.
        type: str
  serials:
    description: Serial ports, in order; the first one is also the text console.
    type: list
    elements: dict
    suboptions:
      type:
        description: Host side of the port.
        type: str
        choices: [pty, file, unix, 'null']
        default: pty
      path:
        description: Log file (V(file)) or socket path (V(unix)).
        type: path
  features:
    description:
      - Hypervisor features, for example V(acpi), V(apic), V(pae).
      - A list of names turns those features on; the others are left as they are.
      - A dict of feature names to V(true) or V(false) also turns features off (for example
        V(acpi) set to V(false)); a feature turned off is removed from the definition.
      - A new x86 domain defined from options gets V(acpi) and V(apic) (as virt-install
        gives them) unless they are turned off here; without ACPI the guest cannot see the
        power button that O(state=shutdown) presses. Existing domains and O(xml) get no defaults.
    type: raw
  clock:
    description: Guest clock.
    type: dict
    suboptions:
      offset:
        description: What the guest's RTC starts from.
        type: str
        choices: [utc, localtime]
      timers:
        description: Timer settings.
        type: list
        elements: dict
        suboptions:
          name:
            description: Timer, for example V(rtc), V(pit), V(hpet).
            type: str
            required: true
          tickpolicy:
            description: What to do with missed ticks.
            type: str
            choices: [delay, catchup, merge, discard]
          present:
            description: Whether the guest sees the timer.
            type: bool
  on_poweroff:
    description: What happens when the guest powers off.
    type: str
    choices: [destroy, restart, preserve, rename-restart]
  on_reboot:
    description: What happens when the guest reboots.
    type: str
    choices: [destroy, restart, preserve, rename-restart]
  on_crash:
    description: What happens when the guest crashes.
    type: str
    choices: [destroy, restart, preserve, rename-restart, coredump-destroy, coredump-restart]
  cloud_init:
    description:
      - A cloud-init NoCloud seed for the guest, written by the module in pure Python
        (an ISO 9660 image labelled C(cidata)) and attached read-only.
      - The seed is a file named C(<name>.cidata.iso), on the embedded driver in
        C(<root>/lib/qemu/seeds) and on libvirt in the directory of the pool O(cloud_init.pool)
        (default C(/var/lib/libvirt/images)). The module writes it on the managed host, so on libvirt
        the URI must be local to it.
      - It is attached as a read-only virtio disk (the first free C(vd*) target), because
        Debian's and most other cloud kernels have virtio_blk built in or in the initramfs
        but no AHCI driver for a SATA CD-ROM; cloud-init finds the seed by its C(cidata)
        label on any block device. The disk's C(<serial>) is V(cidata-) and a digest of
        the seed, so the diff shows when the content changes, never the content itself.
      - A new content rewrites the file and, for a running domain, reports
        RV(restart_required=true), as cloud-init reads the seed at boot. It runs its
        first-boot steps (users, keys, runcmd) again only when the C(instance-id) of the
        meta-data changes; the default C(instance-id) is derived from the content, so any
        change of user-data, meta-data or network-config makes the next boot a first boot.
        Give O(cloud_init.meta_data) an C(instance-id) of your own to keep it fixed.
      - The seed file is deleted with O(cloud_init.state=absent) and with O(state=absent).
      - User-data often holds secrets; the seed file is readable by root and, once
        attached, by QEMU's user only. Use C(no_log) on the task to keep the option out of
        Ansible's own logs.
    type: dict
    suboptions:
      user_data:
        description:
          - A string is written verbatim and must start like a user-data part
            cloud-init knows (C(#cloud-config), C(#!), C(#include), ...).
          - A dict is written as C(#cloud-config).
        type: raw
      meta_data:
        description:
          - Added to the defaults C(instance-id) (derived from the seed's content) and
            C(local-hostname) (the domain's O(name)).
        type: dict
      network_config:
        description:
          - cloud-init network configuration, version 1 or 2. Without it cloud-init's
            fallback asks DHCP on the first NIC.
        type: dict
      pool:
        description:
          - The directory pool (type V(dir), V(fs) or V(netfs)) whose directory holds the seed.
        type: str
      state:
        description: V(absent) detaches the seed and deletes its file.
        type: str
        choices: [present, absent]
        default: present
  guest_agent:
    description:
      - V(true) adds the QEMU guest agent's virtio channel
        C(org.qemu.guest_agent.0), V(false) removes it; other channels are kept.
      - M(virtops.qemu.domain_info) then reads addresses and the guest's OS through the
        agent, and O(shutdown_mode) may ask it to power the guest off.
    type: bool
  autostart:
    description: Start the domain when the host (libvirtd) starts.
    type: bool
  restart:
    description:
      - Restart a running domain whose definition changed, so the change takes effect.
      - The restart is a graceful shutdown (see O(shutdown_timeout) and O(force)) and a start.
    type: bool
    default: false
  force:
    description: Destroy the domain when a graceful shutdown does not finish in O(shutdown_timeout).
    type: bool
    default: false
  shutdown_mode:
    description:
      - How O(state=shutdown) (and the shutdown of O(restart)) asks the guest to power off,
        tried in this order until one is accepted.
      - V(acpi) presses the ACPI power button. V(agent) asks the QEMU guest agent
        (C(guest-shutdown); on libvirt its C(VIR_DOMAIN_SHUTDOWN_GUEST_AGENT)), for guests without
        ACPI; it needs O(guest_agent=true) and the agent running in the guest.
    type: list
    elements: str
    choices: [acpi, agent]
    default: [acpi]
  shutdown_timeout:
    description:
      - Seconds to wait for the guest to power off after the ACPI request; 0 or more.
      - When the wait ends and the guest has no ACPI (no V(acpi) in O(features)), the
        error says so.
    type: int
    default: 120
  remove_disks:
    description:
      - With O(state=absent), the disk images to delete with the domain, named by
        target (V(vda)), source path, or V(pool/volume). Others are always kept.
      - A name that matches no disk of the domain fails the task before anything changes.
    type: list
    elements: str
    default: []
  remove_snapshots:
    description:
      - With O(state=absent), remove a domain that has snapshots, forgetting their metadata as libvirt's
        C(virsh undefine --snapshots-metadata) does; the snapshots' data stays inside the qcow2 images.
      - Without it, removing a domain that has snapshots fails before anything changes.
    type: bool
    default: false
    version_added: 0.3.0
notes:
  - The comparison ignores values you did not specify; to remove a device from a list you
    own (disks, interfaces, serials, graphics), give the list without it.
  - A domain with an interface of type V(network) starts only while that network is active
    (see M(virtops.qemu.network)).
  - A disk on a storage volume (O(disks[].pool) and O(disks[].volume)) needs its pool active
    when the domain starts (see M(virtops.qemu.pool)).
  - On the embedded driver (V(qemu:///embed?root=/dir)) O(on_poweroff=restart) is
    refused, and O(autostart) takes effect only where the host runs the collection's
    autostart entry point at boot (see the collection README).
seealso:
  - module: virtops.qemu.domain_info
  - name: libvirt domain XML format
    description: Reference of every element O(xml) may contain.
    link: https://libvirt.org/formatdomain.html
"""

EXAMPLES = r"""
- name: Define and start a small VM that boots a kernel directly
  virtops.qemu.domain:
    name: demo01
    state: running
    type: qemu
    memory: 256MiB
    vcpus: 1
    kernel:
      path: /var/lib/libvirt/boot/vmlinuz
      initrd: /var/lib/libvirt/boot/initrd.img
      cmdline: console=ttyS0
    serials:
      - type: pty
    interfaces:
      - type: user

- name: Give it more memory; a running guest reports restart_required
  virtops.qemu.domain:
    name: demo01
    memory: 512MiB
  register: demo

- name: Apply the change by a graceful restart
  virtops.qemu.domain:
    name: demo01
    state: running
    memory: 512MiB
    restart: true
    force: true
    shutdown_timeout: 60
  when: demo.restart_required

- name: Define a VM from libvirt XML without starting it
  virtops.qemu.domain:
    name: web01
    xml: "{{ lookup('ansible.builtin.file', 'web01.xml') }}"

- name: A VM with a qcow2 disk, a cdrom and a VNC console, started at boot
  virtops.qemu.domain:
    name: web02
    state: running
    memory: 2GiB
    vcpus: 2
    machine: q35
    cpu:
      mode: host-passthrough
    disks:
      - path: /var/lib/libvirt/images/web02.qcow2
        format: qcow2
      - device: cdrom
    interfaces:
      - type: network
        source: default
    graphics:
      type: vnc
      listen: 127.0.0.1
      password: "{{ vnc_password }}"
    autostart: true

- name: A VM without ACPI (it gets ACPI and APIC by default); stop it with state destroyed
  virtops.qemu.domain:
    name: legacy01
    type: qemu
    memory: 64MiB
    features:
      acpi: false

- name: Pause and resume
  virtops.qemu.domain:
    name: demo01
    state: paused

- name: Shut the guest down, pulling the plug if it has not stopped after 30 s
  virtops.qemu.domain:
    name: demo01
    state: shutdown
    shutdown_timeout: 30
    force: true

- name: Remove a VM and delete its system disk (other disks are kept)
  virtops.qemu.domain:
    name: web02
    state: absent
    remove_disks:
      - vda

- name: A guest from a cloud image, with a NoCloud seed (SSH key, packages) and the guest agent
  virtops.qemu.domain:
    name: web03
    memory: 1GiB
    machine: q35
    disks:
      - path: /var/lib/libvirt/images/web03.qcow2
        format: qcow2
    interfaces:
      - type: network
        source: default
    guest_agent: true
    cloud_init:
      user_data:
        ssh_authorized_keys:
          - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB7 ansible@control
        packages: [nginx]
      meta_data:
        local-hostname: web03.example.org

- name: Remove it; its seed file goes with it (the disk image stays)
  virtops.qemu.domain:
    name: web03
    state: absent

- name: Use the daemonless embedded driver for every task of a play
  module_defaults:
    group/virtops.qemu.qemu:
      uri: qemu:///embed?root=/var/lib/virtops
  block:
    - name: Define a VM there
      virtops.qemu.domain:
        name: embedded01
        type: qemu
        memory: 256MiB
"""

RETURN = r"""
name:
  description: Name of the domain.
  returned: always
  type: str
  sample: demo01
state:
  description:
    - The domain's state in libvirt's words after the task (predicted in check mode),
      or V(absent).
  returned: always
  type: str
  sample: running
uuid:
  description: UUID of the domain.
  returned: when the domain exists
  type: str
  sample: 4dea22b3-1d52-d8f3-2516-782e98a23fa0
xml:
  description:
    - Persistent definition after the task (predicted in check mode).
    - Console passwords (C(passwd) attributes) are masked as C(********).
  returned: always
  type: str
autostart:
  description: Whether the domain starts with the host.
  returned: always
  type: bool
restart_required:
  description: The persistent definition changed while the domain was running; it takes effect at the next cold start.
  returned: always
  type: bool
seed:
  description:
    - Path of the NoCloud seed file (predicted in check mode, where nothing is written),
      or V(null) with O(cloud_init.state=absent).
  returned: when O(cloud_init) is given and the domain is not absent
  type: str
  sample: /var/lib/libvirt/images/web03.cidata.iso
removed_disks:
  description: Disk sources deleted with the domain (O(state=absent)).
  returned: always
  type: list
  elements: dict
  sample: [{"path": "/var/lib/libvirt/images/web02.qcow2"}]
"""


from typing import TYPE_CHECKING

# First: the imports below then load through its compiled-code cache.
from ansible_collections.virtops.qemu.plugins.module_utils import bytecode  # noqa: F401  # pylint: disable=unused-import
from ansible_collections.virtops.qemu.plugins.module_utils.driver.connect import open_driver
from ansible_collections.virtops.qemu.plugins.module_utils.manager.domain import DomainManager
from ansible_collections.virtops.qemu.plugins.module_utils.model import kinds
from ansible_collections.virtops.qemu.plugins.module_utils.model.domain_options import DEFINITION_OPTIONS
from ansible_collections.virtops.qemu.plugins.module_utils.module_glue import MaskingModule, argument_spec, run

# Never run: ansible-core reads this import and ships in the payload the parts
# the driver loads on demand for this module's calls (module_utils/lazy.py).
if TYPE_CHECKING:
    from ansible_collections.virtops.qemu.plugins.module_utils.payload import domains  # noqa: F401  # pylint: disable=unused-import

EVENT_ACTIONS = ["destroy", "restart", "preserve", "rename-restart"]

OPTIONS = dict(
    name=dict(type="str", required=True),
    state=dict(type="str", default="present",
               choices=["present", "running", "paused", "shutdown", "destroyed", "absent"]),
    xml=dict(type="str"),
    title=dict(type="str"),
    description=dict(type="str"),
    type=dict(type="str", choices=["kvm", "qemu"]),
    arch=dict(type="str"),
    machine=dict(type="str"),
    memory=dict(type="str"),
    current_memory=dict(type="str"),
    vcpus=dict(type="int"),
    cpu=dict(type="dict", options=dict(
        mode=dict(type="str", choices=["host-passthrough", "host-model", "custom", "maximum"]),
        model=dict(type="str"))),
    firmware=dict(type="str", choices=["bios", "efi"]),
    kernel=dict(type="dict", options=dict(
        path=dict(type="path", required=True), initrd=dict(type="path"),
        cmdline=dict(type="str"), dtb=dict(type="path"))),
    boot_order=dict(type="list", elements="str", choices=["hd", "cdrom", "network", "fd"]),
    disks=dict(type="list", elements="dict", options=dict(
        path=dict(type="path"), pool=dict(type="str"), volume=dict(type="str"),
        type=dict(type="str", choices=["file", "block", "volume"]),
        device=dict(type="str", choices=["disk", "cdrom"], default="disk"),
        bus=dict(type="str", choices=["virtio", "sata", "scsi", "ide", "usb"]),
        target=dict(type="str"), format=dict(type="str", choices=["raw", "qcow2"]),
        readonly=dict(type="bool", default=False),
        cache=dict(type="str", choices=["default", "none", "writethrough", "writeback", "directsync", "unsafe"]))),
    interfaces=dict(type="list", elements="dict", options=dict(
        type=dict(type="str", choices=["network", "bridge", "user"]),
        source=dict(type="str"), network=dict(type="str"), bridge=dict(type="str"),
        model=dict(type="str", default="virtio"), mac=dict(type="str"), portgroup=dict(type="str"))),
    graphics=dict(type="dict", options=dict(
        type=dict(type="str", choices=["vnc", "spice", "none"], default="vnc"),
        listen=dict(type="str"), port=dict(type="int"), password=dict(type="str", no_log=True))),
    serials=dict(type="list", elements="dict", options=dict(
        type=dict(type="str", choices=["pty", "file", "unix", "null"], default="pty"),
        path=dict(type="path"))),
    features=dict(type="raw"),
    clock=dict(type="dict", options=dict(
        offset=dict(type="str", choices=["utc", "localtime"]),
        timers=dict(type="list", elements="dict", options=dict(
            name=dict(type="str", required=True),
            tickpolicy=dict(type="str", choices=["delay", "catchup", "merge", "discard"]),
            present=dict(type="bool"))))),
    on_poweroff=dict(type="str", choices=EVENT_ACTIONS),
    on_reboot=dict(type="str", choices=EVENT_ACTIONS),
    on_crash=dict(type="str", choices=EVENT_ACTIONS + ["coredump-destroy", "coredump-restart"]),
    autostart=dict(type="bool"),
    restart=dict(type="bool", default=False),
    force=dict(type="bool", default=False),
    shutdown_timeout=dict(type="int", default=120),
    remove_disks=dict(type="list", elements="str", default=[]),
    remove_snapshots=dict(type="bool", default=False),
    cloud_init=dict(type="dict", options=dict(
        user_data=dict(type="raw"), meta_data=dict(type="dict"), network_config=dict(type="dict"),
        pool=dict(type="str"), state=dict(type="str", choices=["present", "absent"], default="present"))),
    guest_agent=dict(type="bool"),
    shutdown_mode=dict(type="list", elements="str", choices=["acpi", "agent"], default=["acpi"]),
)


def ensure(module):
    request = kinds.DOMAIN.request(module.params)
    with open_driver(module.params["uri"], read_only=module.check_mode) as driver:
        return dict(DomainManager(driver).ensure(request, module.check_mode), warnings=driver.warnings)


def main():
    module = MaskingModule(
        argument_spec=argument_spec(**OPTIONS),
        mutually_exclusive=[("xml", option) for option in DEFINITION_OPTIONS],
        supports_check_mode=True,
    )
    run(module, lambda: ensure(module))


if __name__ == "__main__":
    main()
