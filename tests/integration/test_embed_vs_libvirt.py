"""The embedded driver's post-parse and command line against libvirtd 9.0.

For every XML under tests/data/domains:
* ``virsh define`` + ``dumpxml --inactive`` is compared with ``postparse``:
  same devices, same PCI/drive addresses, same controllers;
* ``virsh domxml-to-native qemu-argv`` is compared with ``build_command``:
  same -device drivers/buses/addresses/properties, -blockdev nodes, machine,
  memory, smp, cpu, accel — ids, fds, MACs and daemon paths aside.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import subprocess
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from lxml import etree

from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.cmdline import LaunchPaths, build_command
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.postparse import postparse
from ansible_collections.virtops.qemu.plugins.module_utils.model.qemu_ns import QEMU_NS

pytestmark = pytest.mark.libvirt

URI = "qemu:///system"
DATA = Path(__file__).resolve().parents[1] / "data" / "domains"
XMLS = sorted(DATA.glob("*.xml"))
PARSER = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=True)
ALIASES = {"pc": "pc-i440fx-7.2", "q35": "pc-q35-7.2"}


def _canonical(name):
    if name in ALIASES:
        return ALIASES[name]
    return name if name.startswith(("pc-i440fx-", "pc-q35-")) else None


CAPS = SimpleNamespace(
    binary="/usr/bin/qemu-system-x86_64", version=(7, 2, 22), arch="x86_64",
    machine_aliases=ALIASES, default_machine="pc-i440fx-7.2", canonical_machine=_canonical,
    devices={"cirrus-vga", "VGA", "virtio-vga", "qxl-vga", "lsi", "virtio-scsi-pci", "qemu-xhci",
             "piix3-usb-uhci", "virtio-net-pci", "e1000", "e1000e", "rtl8139", "virtio-blk-pci"},
    cpu_models={"qemu64", "qemu32", "max", "Skylake-Client"}, accels={"tcg", "kvm"}, commands=set(),
)


def _virsh(*args, check=True):
    return subprocess.run(["virsh", "-c", URI, *args], capture_output=True, text=True, check=check)


# The harness's libvirtd fixture reuses the daemon on qemu:///system or starts one.
requires_libvirtd = pytest.mark.usefixtures("libvirtd")


def _load(path, name=None):
    root = etree.parse(str(path), PARSER).getroot()
    if name:
        root.find("name").text = name
    return root


@pytest.fixture
def defined(tmp_path, libvirtd):
    """Define a throw-away copy of an XML on libvirtd; undefine it afterwards."""
    names = []

    def define(path):
        name = f"vo-test-{uuid.uuid4().hex[:10]}"
        root = _load(path, name)
        tmp = tmp_path / f"{name}.xml"
        tmp.write_bytes(etree.tostring(root))
        _virsh("define", str(tmp))
        names.append(name)
        return _load_string(_virsh("dumpxml", "--inactive", name).stdout)

    yield define
    for name in names:
        _virsh("undefine", "--nvram", name, check=False)


def _load_string(text):
    return etree.fromstring(text.encode(), PARSER)


# -- post-parse against virsh define ----------------------------------------

def _device_key(dev):
    """What identifies a device and where it sits, leaving out random values."""
    attrs = {k: v for k, v in dev.attrib.items() if k not in ("passwd",)}
    parts = []
    for child in dev:
        if child.tag in ("address", "model", "target", "driver", "listen", "readonly", "source", "master", "backend",
                         "rate", "codec", "cid", "stats", "size", "serial", "wwn", "shareable", "boot"):
            parts.append(child.tag + json.dumps(dict(child.attrib), sort_keys=True) + (child.text or "").strip())
            parts += [f"{child.tag}/{c.tag}" + json.dumps(dict(c.attrib), sort_keys=True) for c in child
                      if isinstance(c.tag, str)]
    # the order of a device's children carries no meaning
    return " ".join([dev.tag, json.dumps(attrs, sort_keys=True), *sorted(parts)])


def _devices(dom):
    return sorted(_device_key(d) for d in dom.find("devices") if d.tag != "emulator")


@requires_libvirtd
@pytest.mark.parametrize("path", XMLS, ids=[p.stem for p in XMLS])
def test_postparse_matches_virsh_define(path, defined):
    reference = defined(path)
    ours = postparse(_load(path), CAPS)
    assert _devices(ours) == _devices(reference)
    for tag in ("os", "cpu", "clock", "on_poweroff", "on_reboot", "on_crash", "memory", "currentMemory", "vcpu",
                "features", "sysinfo", "memoryBacking", "pm", "iothreads"):
        assert _plain(ours.find(tag)) == _plain(reference.find(tag)), tag


def _plain(elem):
    if elem is None:
        return None
    return (elem.tag, dict(sorted(elem.attrib.items())), (elem.text or "").strip(), [_plain(c) for c in elem])


@requires_libvirtd
@pytest.mark.parametrize("path", XMLS, ids=[p.stem for p in XMLS])
def test_postparse_is_stable_under_libvirt(path, defined, tmp_path):
    """libvirt keeps every address we assigned: our output is already complete for it."""
    ours = postparse(_load(path), CAPS)
    out = tmp_path / "ours.xml"
    out.write_bytes(etree.tostring(ours))
    assert _devices(defined(out)) == _devices(ours)


# -- argv against virsh domxml-to-native -------------------------------------

LIBVIRT_NVRAM_DIR = "/var/lib/libvirt/qemu/nvram"
IGNORED_DEVICE_PROPS = {"id", "drive", "netdev", "chardev", "mac", "device_id", "vhostfd"}
IGNORED_NODE_PROPS = {"node-name", "file"}


def _options(argv, flag):
    return [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == flag]


def _summary(argv):
    devices = [json.loads(a) for a in _options(argv, "-device") if a.startswith("{")]
    nodes = [json.loads(a) for a in _options(argv, "-blockdev")]
    machine = [o for o in _options(argv, "-machine")[0].split(",") if not o.startswith("pflash")]
    return {
        "devices": sorted(json.dumps({k: v for k, v in d.items() if k not in IGNORED_DEVICE_PROPS},
                                     sort_keys=True) for d in devices),
        "nodes": sorted(json.dumps({k: v for k, v in n.items() if k not in IGNORED_NODE_PROPS}, sort_keys=True)
                        for n in nodes),
        "machine": machine,
        "pflash": sorted(o.split("=")[0] for o in _options(argv, "-machine")[0].split(",") if o.startswith("pflash")),
        "single": {flag: _options(argv, flag) for flag in (
            "-accel", "-cpu", "-m", "-smp", "-boot", "-kernel", "-initrd", "-append", "-display",
            "-vnc", "-spice", "-audiodev", "-compat", "-sandbox", "-msg", "-smbios", "-numa", "-bios",
            "-overcommit", "-soundhw")},
        # a variable clock starts at "now + adjustment": the time of day differs between the two runs
        "rtc": [re.sub(r"base=\d{4}-\d\d-\d\dT[\d:]+", "base=DATETIME", o) for o in _options(argv, "-rtc")],
        "globals": sorted(_options(argv, "-global")),
        "no_hpet": "-no-hpet" in argv,
        "objects": sorted(_object_shape(o) for o in _options(argv, "-object") if '"secret"' not in o),
        "chardevs": sorted(_chardev_shape(c) for c in _options(argv, "-chardev") if "charmonitor" not in c),
        "watchdog_action": _options(argv, "-watchdog-action"),
        "no_acpi": "-no-acpi" in argv,
        "nodefaults": "-nodefaults" in argv and "-no-user-config" in argv,
    }


def _object_shape(text):
    props = json.loads(text)
    props.pop("mem-path", None)     # a file under the daemon's or the domain's directory
    return json.dumps(props, sort_keys=True)


def _chardev_shape(value):
    """A -chardev value with socket paths cut to their file name: libvirt's channel dir is not ours."""
    opts = [o if not o.startswith("path=") else "path=" + o.rsplit("/", 1)[-1] for o in value.split(",")]
    return ",".join(opts)


def _libvirt_argv(path):
    line = _virsh("domxml-to-native", "qemu-argv", str(path)).stdout.strip()
    words = shlex.split(line)
    start = next(i for i, w in enumerate(words) if "=" not in w)
    return words[start:]


def _our_argv(path, tmp_path):
    source = _load(path)
    for override in source.findall(f"{{{QEMU_NS}}}override"):
        # domxml-to-native does not apply overrides (it drops user aliases); unit tests cover them
        source.remove(override)
    for alias in source.iter("alias"):
        alias.getparent().remove(alias)
    dom = postparse(source, CAPS)
    for number, iface in enumerate(dom.iter("interface")):
        if iface.get("type") != "user" and iface.find("target") is None:
            # the caller creates the tap and records it in the live XML, as libvirt does
            iface.find("mac").addnext(etree.Element("target", dev=f"vnet{number}"))
    paths = LaunchPaths(monitor_socket=str(tmp_path / "monitor.sock"), pidfile=str(tmp_path / "pid"),
                        domain_dir=str(tmp_path), log_file=str(tmp_path / "log"), vnc_port=5900,
                        spice_port=5901, nvram=f"{LIBVIRT_NVRAM_DIR}/{dom.findtext('name')}_VARS.fd")
    argv, _env = build_command(dom, CAPS, paths, {})
    return argv


@requires_libvirtd
@pytest.mark.parametrize("path", XMLS, ids=[p.stem for p in XMLS])
def test_command_matches_domxml_to_native(path, tmp_path):
    ours = _summary(_our_argv(path, tmp_path))
    theirs = _summary(_libvirt_argv(path))
    for key in theirs:
        assert ours[key] == theirs[key], key


@requires_libvirtd
def test_data_set_covers_the_brief():
    text = "".join(p.read_text() for p in XMLS)
    for needle in ("bus='virtio'", "bus='sata'", "bus='scsi'", "bus='ide'", "device='cdrom'",
                   "type='user'", "type='bridge'", "<serial type='pty'", "<serial type='file'",
                   "type='vnc'", "machine='q35'", "machine='pc'", "<kernel>", "<loader",
                   "qemu:commandline", "qemu:override", "qemu:deprecation",
                   "os firmware='efi'", "<sysinfo type='smbios'>", "<smbios mode='sysinfo'/>", "<numa>",
                   "<topology", "<memoryBacking>", "<timer name='rtc'", "<pm>", "<hyperv", "<smm",
                   "<iothreads>", "mode='maximum'", "policy='disable'",
                   "<channel type='unix'", "org.qemu.guest_agent.0", "<backend model='random'",
                   "<backend model='builtin'", "<backend model='egd'", "<watchdog", "<memballoon",
                   "<panic", "<iommu", "<vsock", "<sound model='ich9'", "<sound model='usb'", "ich9-ehci1",
                   "model='lsilogic'", "device='floppy'", "bus='usb'", "<parallel", "<serial type='udp'",
                   "type='spice'", "<hub", "<redirdev", "ivshmem-plain", "<model type='qxl'",
                   "type='ethernet'", "<wwn>", "<shareable/>", "detect_zeroes", "io='threads'",
                   "model='nec-xhci'", "<model type='e1000e'", "<model type='bochs'", "passwd=",
                   "<sound model='sb16'", "<sound model='pcspk'"):
        assert needle in text, needle


def test_every_postparsed_xml_validates_against_libvirt_schema():
    schema_path = Path("/usr/share/libvirt/schemas/domain.rng")
    schema = etree.RelaxNG(etree.parse(str(schema_path), PARSER))
    for path in XMLS:
        dom = copy.deepcopy(postparse(_load(path), CAPS))
        assert schema.validate(dom), (path.name, schema.error_log.last_error)
