"""A stand-in for driver.embed.caps.QemuCaps with the values probed from QEMU 7.2 on Debian 12.

Unit tests of post-parse and the command builder use it so that they run
without probing a QEMU binary.
"""

from types import SimpleNamespace

ALIASES = {"pc": "pc-i440fx-7.2", "q35": "pc-q35-7.2"}
CAPS = SimpleNamespace(
    binary="/usr/bin/qemu-system-x86_64", version=(7, 2, 22), arch="x86_64", machine_aliases=ALIASES,
    default_machine="pc-i440fx-7.2",
    canonical_machine=lambda n: ALIASES.get(n, n if n.startswith(("pc-i440fx-", "pc-q35-")) else None),
    devices={"cirrus-vga", "VGA", "lsi", "virtio-scsi-pci", "qemu-xhci", "piix3-usb-uhci"},
    cpu_models={"qemu64", "max"}, accels={"tcg", "kvm"}, commands=set(),
)
