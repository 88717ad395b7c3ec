"""Unit tests of the embedded driver's QEMU command line."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from lxml import etree
from qemu72_caps import CAPS

from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.cmdline import (
    LaunchPaths,
    build_command,
    record_channel_paths,
    taints,
)
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.cmdline.qemu_ns import namespace_capabilities
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.cmdline.system import lifecycle_action
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.postparse import postparse
from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput

NS = "xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'"
PATHS = LaunchPaths(monitor_socket="/r/lib/qemu/domain-1-t/monitor.sock", pidfile="/r/run/qemu/t.pid",
                    domain_dir="/r/lib/qemu/domain-1-t", log_file="/r/log/qemu/t.log", vnc_port=5907)


def xml(devices="", machine="pc", extra="", dtype="qemu", tail=""):
    return etree.fromstring(
        f"<domain type='{dtype}' {NS}><name>t</name><memory unit='MiB'>64</memory><vcpu>2</vcpu>"
        f"<os><type machine='{machine}'>hvm</type></os>{extra}<devices>{devices}</devices>{tail}</domain>")


def build(root, conf=None, paths=PATHS):
    return build_command(postparse(root, CAPS), CAPS, paths, conf or {})


def opts(argv, flag):
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag]


def devices(argv):
    return [json.loads(d) for d in opts(argv, "-device") if d.startswith("{")]


def test_fixed_part_of_the_command_line():
    argv, env = build(xml())
    assert argv[0] == CAPS.binary
    assert opts(argv, "-name") == ["guest=t,debug-threads=on"]
    assert "-S" in argv and "-no-user-config" in argv and "-nodefaults" in argv
    assert opts(argv, "-machine") == ["pc-i440fx-7.2,usb=off,dump-guest-core=off,memory-backend=pc.ram"]
    assert opts(argv, "-accel") == ["tcg"]
    assert opts(argv, "-m") == ["64"]
    assert json.loads(opts(argv, "-object")[0]) == {"qom-type": "memory-backend-ram", "id": "pc.ram",
                                                    "size": 64 * 2 ** 20}
    assert opts(argv, "-smp") == ["2,sockets=2,cores=1,threads=1"]
    assert opts(argv, "-chardev")[0] == f"socket,id=charmonitor,path={PATHS.monitor_socket},server=on,wait=off"
    assert opts(argv, "-mon") == ["chardev=charmonitor,id=monitor,mode=control"]
    assert opts(argv, "-display") == ["none"]
    assert argv[-4:] == ["-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
                         "-msg", "timestamp=on"]
    assert env["HOME"] == PATHS.domain_dir and env["LC_ALL"] == "C"
    assert "-no-shutdown" not in argv


def test_monitor_listening_socket_is_inherited_by_fd():
    argv = build(xml(), paths=PATHS._replace(monitor_fd=7))[0]
    assert opts(argv, "-chardev")[0] == "socket,id=charmonitor,fd=7,server=on,wait=off"


def test_seccomp_sandbox_off_and_kvm():
    argv = build(xml(dtype="kvm"), conf={"seccomp_sandbox": 0})[0]
    assert "-sandbox" not in argv and opts(argv, "-accel") == ["kvm"]


@pytest.mark.parametrize("poweroff,reboot,crash,expected", [
    ("destroy", "restart", "destroy", "reboot=reset,shutdown=poweroff,panic=exit-failure"),
    ("destroy", "destroy", "destroy", "reboot=shutdown,shutdown=poweroff,panic=exit-failure"),
    ("preserve", "preserve", "preserve", "reboot=shutdown,shutdown=pause,panic=pause"),
    ("preserve", "restart", "restart", "reboot=reset,shutdown=pause,panic=none"),
])
def test_lifecycle_maps_onto_action(poweroff, reboot, crash, expected):
    root = xml(extra=f"<on_poweroff>{poweroff}</on_poweroff><on_reboot>{reboot}</on_reboot>"
                     f"<on_crash>{crash}</on_crash>")
    argv = build(root)[0]
    assert opts(argv, "-action") == [expected]


def test_panic_destroy_on_old_qemu_falls_back_to_shutdown():
    old = SimpleNamespace(**{**vars(CAPS), "version": (7, 0, 0)})
    assert lifecycle_action(xml(), old).endswith("panic=shutdown")


@pytest.mark.parametrize("extra,option", [
    ("<on_poweroff>restart</on_poweroff>", "on_poweroff"),
    ("<on_reboot>destroy</on_reboot><on_poweroff>preserve</on_poweroff>", "on_reboot"),
    ("<on_crash>coredump-destroy</on_crash>", "on_crash"),
])
def test_lifecycle_needing_a_daemon_is_rejected(extra, option):
    with pytest.raises(InvalidInput) as err:
        lifecycle_action(xml(extra=extra), CAPS)
    assert err.value.option == option


def test_virtio_disk_user_net_serial_kernel_vnc_on_pc():
    root = xml("<disk type='file'><driver name='qemu' type='qcow2' cache='none'/><source file='/d.qcow2'/>"
               "<target dev='vda' bus='virtio'/></disk>"
               "<interface type='user'><mac address='52:54:00:00:00:01'/><model type='virtio'/></interface>"
               "<serial type='pty'/><graphics type='vnc' autoport='yes'/>",
               extra="<features><acpi/></features>")
    root.find("os").extend([etree.fromstring("<kernel>/k</kernel>"), etree.fromstring("<initrd>/i</initrd>"),
                            etree.fromstring("<cmdline>console=ttyS0</cmdline>")])
    argv = build(root, conf={"vnc_listen": "0.0.0.0"})[0]
    assert [opts(argv, f) for f in ("-kernel", "-initrd", "-append")] == [["/k"], ["/i"], ["console=ttyS0"]]
    assert "-no-acpi" not in argv
    storage, fmt = (json.loads(b) for b in opts(argv, "-blockdev"))
    assert storage["driver"] == "file" and storage["filename"] == "/d.qcow2"
    assert storage["cache"] == {"direct": True, "no-flush": False}
    assert fmt["driver"] == "qcow2" and fmt["read-only"] is False and fmt["file"] == storage["node-name"]
    devs = {d["driver"]: d for d in devices(argv)}
    blk = devs["virtio-blk-pci"]
    assert (blk["bus"], blk["addr"], blk["drive"], blk["bootindex"], blk["write-cache"]) == (
        "pci.0", "0x4", fmt["node-name"], 1, "on")
    assert json.loads(opts(argv, "-netdev")[0]) == {"type": "user", "id": "hostnet0"}
    assert devs["virtio-net-pci"] == {"driver": "virtio-net-pci", "netdev": "hostnet0", "id": "net0",
                                      "mac": "52:54:00:00:00:01", "bus": "pci.0", "addr": "0x3"}
    assert devs["piix3-usb-uhci"]["addr"] == "0x1.0x2"
    assert devs["isa-serial"] == {"driver": "isa-serial", "chardev": "charserial0", "id": "serial0", "index": 0}
    assert "pty,id=charserial0" in opts(argv, "-chardev")
    assert opts(argv, "-vnc") == ["0.0.0.0:7,audiodev=audio1"]
    assert devs["cirrus-vga"]["addr"] == "0x2"
    assert devs["virtio-balloon-pci"]["addr"] == "0x5"


def test_q35_devices_sit_on_root_ports():
    argv = build(xml("<interface type='user'><model type='virtio'/></interface>", machine="q35"))[0]
    devs = devices(argv)
    ports = [d for d in devs if d["driver"] == "pcie-root-port"]
    assert ports[0] == {"driver": "pcie-root-port", "port": 8, "chassis": 1, "id": "pci.1", "bus": "pcie.0",
                        "multifunction": True, "addr": "0x1"}
    net = next(d for d in devs if d["driver"] == "virtio-net-pci")
    assert (net["bus"], net["addr"]) == ("pci.1", "0x0")


def test_cdrom_without_media_has_no_drive():
    argv = build(xml("<disk type='file' device='cdrom'><target dev='hdc' bus='ide'/></disk>"))[0]
    assert opts(argv, "-blockdev") == []
    cd = next(d for d in devices(argv) if d["driver"] == "ide-cd")
    assert cd == {"driver": "ide-cd", "bus": "ide.1", "unit": 0, "id": "ide0-1-0"}


def test_bridge_interface_uses_the_named_tap():
    root = postparse(xml("<interface type='bridge'><source bridge='br0'/><model type='virtio'/></interface>"), CAPS)
    with pytest.raises(InvalidInput, match="target dev"):
        build_command(root, CAPS, PATHS, {})
    root.find("devices/interface/mac").addnext(etree.Element("target", dev="vo-tap0"))
    argv = build_command(root, CAPS, PATHS, {})[0]
    assert json.loads(opts(argv, "-netdev")[0]) == {"type": "tap", "ifname": "vo-tap0", "script": "no",
                                                    "downscript": "no", "id": "hostnet0"}


def test_serial_backends():
    argv = build(xml("<serial type='file'><source path='/l,og'/></serial>"
                     "<serial type='unix'><source mode='bind' path='/s.sock'/></serial>"
                     "<serial type='tcp'><source mode='connect' host='127.0.0.1' service='9'/>"
                     "<protocol type='telnet'/></serial><serial type='null'/>"))[0]
    assert opts(argv, "-chardev")[1:] == [
        "file,id=charserial0,path=/l,,og", "socket,id=charserial1,path=/s.sock,server=on,wait=off",
        "socket,id=charserial2,host=127.0.0.1,port=9,telnet=on", "null,id=charserial3"]


def test_vnc_socket_and_password_and_autoport_without_port():
    argv = build(xml("<graphics type='vnc'><listen type='socket'/></graphics>"), conf={"vnc_password": "x"})[0]
    assert opts(argv, "-vnc") == [f"vnc=unix:{PATHS.domain_dir}/vnc.sock,password=on,audiodev=audio1"]
    no_port = PATHS._replace(vnc_port=None)
    with pytest.raises(InvalidInput, match="vnc_port"):
        build(xml("<graphics type='vnc'/>"), paths=no_port)


def test_efi_pflash():
    root = xml(extra="")
    root.find("os").extend([
        etree.fromstring("<loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader>"),
        etree.fromstring("<nvram>/r/lib/qemu/nvram/t_VARS.fd</nvram>")])
    argv = build(root)[0]
    nodes = [json.loads(b) for b in opts(argv, "-blockdev")]
    assert [n.get("filename") for n in nodes[::2]] == ["/usr/share/OVMF/OVMF_CODE_4M.fd", "/r/lib/qemu/nvram/t_VARS.fd"]
    assert [n["read-only"] for n in nodes[1::2]] == [True, False]
    assert opts(argv, "-machine")[0].endswith(",pflash0=libvirt-pflash0-format,pflash1=libvirt-pflash1-format")
    assert argv.index("-blockdev") < argv.index("-machine")


NS_TAIL = """
  <qemu:commandline><qemu:arg value='-trace'/><qemu:arg value='kvm_*'/>
    <qemu:env name='FOO' value='bar'/><qemu:env name='EMPTY'/></qemu:commandline>
  <qemu:capabilities><qemu:add capability='compat-deprecated'/><qemu:del capability='seccomp-sandbox'/>
  </qemu:capabilities>
  <qemu:deprecation behavior='crash'/>"""


def test_qemu_namespace_commandline_env_deprecation_caps_taints():
    root = xml(tail=NS_TAIL)
    argv, env = build(root)
    assert argv[-4:-2] == ["-trace", "kvm_*"]
    assert "-sandbox" not in argv        # seccomp-sandbox removed
    assert env["FOO"] == "bar" and env["EMPTY"] == ""
    assert json.loads(opts(argv, "-compat")[0]) == {"deprecated-output": "hide", "deprecated-input": "crash"}
    assert namespace_capabilities(root) == {"add": ["compat-deprecated"], "del": ["seccomp-sandbox"]}
    assert taints(root) == ["custom-argv", "custom-hypervisor-feature"]
    assert taints(xml()) == []


def test_removing_compat_deprecated_drops_compat_as_libvirt_ignores_deprecation_then():
    tail = ("<qemu:capabilities><qemu:del capability='compat-deprecated'/></qemu:capabilities>"
            "<qemu:deprecation behavior='reject'/>")
    argv = build(xml(tail=tail))[0]
    assert "-compat" not in argv and "-sandbox" in argv


@pytest.mark.parametrize("kind", ["add", "del"])
def test_a_capability_the_builder_does_not_model_is_refused(kind):
    tail = f"<qemu:capabilities><qemu:{kind} capability='blockdev'/></qemu:capabilities>"
    with pytest.raises(InvalidInput, match="does not model capability blockdev") as err:
        build(xml(tail=tail))
    assert err.value.option == f"qemu:capabilities/qemu:{kind}"


OVERRIDE = """<qemu:override><qemu:device alias='{alias}'><qemu:frontend>{props}</qemu:frontend>
  </qemu:device></qemu:override>"""
NET = "<interface type='user'><mac address='52:54:00:00:00:02'/><model type='virtio'/><alias name='ua-n'/></interface>"


def test_qemu_override_applies_each_type():
    props = ("<qemu:property name='mac' type='string' value='52:54:00:de:ad:01'/>"
             "<qemu:property name='host_mtu' type='unsigned' value='1400'/>"
             "<qemu:property name='x-txburst' type='signed' value='-1'/>"
             "<qemu:property name='mrg_rxbuf' type='bool' value='false'/>"
             "<qemu:property name='addr' type='remove'/>")
    root = xml(NET, tail=OVERRIDE.format(alias="ua-n", props=props))
    argv = build(root)[0]
    net = next(d for d in devices(argv) if d["driver"] == "virtio-net-pci")
    assert net["id"] == "ua-n" and net["mac"] == "52:54:00:de:ad:01"
    assert net["host_mtu"] == 1400 and net["x-txburst"] == -1 and net["mrg_rxbuf"] is False
    assert "addr" not in net
    assert "custom-device" in taints(root)


@pytest.mark.parametrize("alias,props,message", [
    ("ua-missing", "<qemu:property name='x' type='string' value='y'/>", "no device with alias"),
    ("ua-n", "<qemu:property name='bootindex' type='remove'/>", "no property 'bootindex' to remove"),
    ("ua-n", "<qemu:property name='x' type='unsigned' value='-3'/>", "not unsigned"),
    ("ua-n", "<qemu:property name='x' type='signed' value='1.5'/>", "not an integer"),
    ("ua-n", "<qemu:property name='x' type='bool' value='yes'/>", "bool"),
])
def test_qemu_override_errors(alias, props, message):
    with pytest.raises(InvalidInput, match=message) as err:
        build(xml(NET, tail=OVERRIDE.format(alias=alias, props=props)))
    assert err.value.option.startswith("qemu:override")


def test_unsupported_xml_names_the_element():
    with pytest.raises(InvalidInput) as err:
        build(xml("<disk type='network'><source protocol='nbd' name='x'/><target dev='vda'/></disk>"))
    assert err.value.option == "devices/disk/source@protocol" and "iscsi only" in str(err.value)


def test_iscsi_disk_is_a_user_space_iscsi_blockdev():
    argv = build(xml("<disk type='network' device='disk'><driver name='qemu' type='raw'/>"
                     "<source protocol='iscsi' name='iqn.2024-01.org.example:t/1'>"
                     "<host name='10.0.0.1' port='3260'/><initiator><iqn name='iqn.2024-01.org.example:i'/>"
                     "</initiator></source><target dev='vda' bus='virtio'/></disk>"))[0]
    nodes = [json.loads(argv[i + 1]) for i, word in enumerate(argv) if word == "-blockdev"]
    storage = next(n for n in nodes if n.get("driver") == "iscsi")
    assert storage["portal"] == "10.0.0.1:3260" and storage["target"] == "iqn.2024-01.org.example:t"
    assert storage["lun"] == 1 and storage["initiator-name"] == "iqn.2024-01.org.example:i"
    assert any(n.get("file") == storage["node-name"] and n["driver"] == "raw" for n in nodes)


# -- device families ----------------------------------------------------------

def by_driver(argv, driver):
    return [d for d in devices(argv) if d["driver"] == driver]


def test_rng_backends_and_rate():
    argv = build(xml("<rng model='virtio'><backend model='random'>/dev/random</backend></rng>"
                     "<rng model='virtio'><rate bytes='1234'/><backend model='builtin'/></rng>"
                     "<rng model='virtio'><backend model='egd' type='tcp'>"
                     "<source mode='connect' host='127.0.0.1' service='1234'/></backend></rng>"))[0]
    assert [json.loads(o) for o in opts(argv, "-object")[1:]] == [
        {"qom-type": "rng-random", "filename": "/dev/random", "id": "objrng0"},
        {"qom-type": "rng-builtin", "id": "objrng1"},
        {"qom-type": "rng-egd", "chardev": "charrng2", "id": "objrng2"}]
    assert "socket,id=charrng2,host=127.0.0.1,port=1234" in opts(argv, "-chardev")
    rngs = by_driver(argv, "virtio-rng-pci")
    assert [r["rng"] for r in rngs] == ["objrng0", "objrng1", "objrng2"]
    assert (rngs[1]["max-bytes"], rngs[1]["period"]) == (1234, 1000) and "max-bytes" not in rngs[0]


def test_guest_agent_channel_gets_a_socket_in_the_domain_dir():
    argv = build(xml("<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>"
                     "<channel type='pty'><target type='virtio' name='org.example.b'/></channel>"))[0]
    assert opts(argv, "-chardev")[1:] == [
        f"socket,id=charchannel0,path={PATHS.domain_dir}/channel/org.qemu.guest_agent.0,server=on,wait=off",
        "pty,id=charchannel1"]
    assert by_driver(argv, "virtio-serial-pci")[0]["id"] == "virtio-serial0"
    ports = by_driver(argv, "virtserialport")
    assert ports[0] == {"driver": "virtserialport", "bus": "virtio-serial0.0", "nr": 1, "chardev": "charchannel0",
                        "id": "channel0", "name": "org.qemu.guest_agent.0"}
    assert ports[1]["nr"] == 2


def test_live_xml_records_generated_channel_sockets(short_tmp_path):
    paths = PATHS._replace(domain_dir=str(short_tmp_path / "domain-1-t"))
    live = postparse(xml("<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>"
                         "<channel type='unix'><source mode='connect' path='/s'/><target type='virtio' name='b'/>"
                         "</channel>"), CAPS)
    record_channel_paths(live, paths.domain_dir)
    first, second = (c.find("source").attrib for c in live.findall("devices/channel"))
    assert first == {"mode": "bind", "path": f"{paths.domain_dir}/channel/org.qemu.guest_agent.0"}
    assert second == {"mode": "connect", "path": "/s"}
    assert (short_tmp_path / "domain-1-t" / "channel").is_dir()  # QEMU binds the socket there
    argv = build_command(live, CAPS, paths, {})[0]
    assert f"socket,id=charchannel0,path={paths.domain_dir}/channel/org.qemu.guest_agent.0,server=on,wait=off" in \
        opts(argv, "-chardev")


def test_channel_socket_path_too_long_is_refused():
    long_dir = PATHS._replace(domain_dir="/r" + "/x" * 50)
    with pytest.raises(InvalidInput, match="107 bytes") as err:
        build(xml("<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>"),
              paths=long_dir)
    assert err.value.option == "devices/channel/source@path"


def test_guestfwd_channel_is_refused():
    with pytest.raises(InvalidInput, match="guestfwd"):
        build(xml("<channel type='pty'><target type='guestfwd' address='10.0.2.1' port='4600'/></channel>"))


def test_watchdog_panic_balloon_iommu():
    argv = build(xml("<watchdog model='i6300esb' action='poweroff'/><panic model='isa'/>"
                     "<memballoon model='virtio' autodeflate='on' freePageReporting='off'/>"
                     "<iommu model='intel'><driver intremap='on' caching_mode='on' aw_bits='48'/></iommu>",
                     machine="q35", extra="<features><acpi/><ioapic driver='qemu'/></features>"))[0]
    bridge = by_driver(argv, "pcie-pci-bridge")[0]
    assert bridge["bus"] == "pci.1"  # the first root port is kept for the bridge
    assert by_driver(argv, "i6300esb")[0]["bus"] == bridge["id"]
    assert opts(argv, "-watchdog-action") == ["poweroff"]
    assert by_driver(argv, "pvpanic") == [{"driver": "pvpanic"}]
    balloon = by_driver(argv, "virtio-balloon-pci")[0]
    assert (balloon["deflate-on-oom"], balloon["free-page-reporting"]) == (True, False)
    assert by_driver(argv, "intel-iommu") == [{"driver": "intel-iommu", "id": "iommu0", "intremap": "on",
                                               "caching-mode": True, "aw-bits": 48}]
    assert "kernel_irqchip=split" in opts(argv, "-machine")[0].split(",")


def test_ib700_and_refused_watchdog_action():
    argv = build(xml("<watchdog model='ib700'/>"))[0]
    assert by_driver(argv, "ib700") == [{"driver": "ib700", "id": "watchdog0"}]
    assert opts(argv, "-watchdog-action") == ["reset"]
    with pytest.raises(InvalidInput, match="dump") as err:
        build(xml("<watchdog model='ib700' action='dump'/>"))
    assert err.value.option == "devices/watchdog@action"


def test_sound_models_carry_the_audio_backend():
    argv = build(xml("<sound model='ich6'><codec type='micro'/></sound><sound model='ac97'/>"
                     "<sound model='usb'/>"))[0]
    assert by_driver(argv, "intel-hda")[0]["id"] == "sound0"
    assert by_driver(argv, "hda-micro") == [{"driver": "hda-micro", "id": "sound0-codec0", "bus": "sound0.0",
                                             "cad": 0, "audiodev": "audio1"}]
    assert by_driver(argv, "AC97")[0]["audiodev"] == "audio1"
    assert by_driver(argv, "usb-audio")[0] == {"driver": "usb-audio", "id": "sound2", "audiodev": "audio1",
                                               "bus": "usb.0", "port": "1"}


def test_isa_sound_cards_have_no_pci_address():
    argv = build(xml("<sound model='sb16'/><sound model='pcspk'/>"))[0]
    assert by_driver(argv, "sb16") == [{"driver": "sb16", "id": "sound0", "audiodev": "audio1"}]
    assert opts(argv, "-soundhw") == ["pcspk"]
    with pytest.raises(InvalidInput) as err:
        build(xml("<sound model='ich7'/>"))
    assert err.value.option == "devices/sound@model"


def test_disk_options_usb_and_floppy():
    argv = build(xml("<disk type='file'><driver name='qemu' type='raw' io='threads' discard='unmap' "
                     "detect_zeroes='unmap'/><source file='/a'/><target dev='sda' bus='scsi'/><serial>S1</serial>"
                     "<wwn>5000c50015ea71ac</wwn><shareable/></disk>"
                     "<disk type='file'><source file='/b'/><target dev='sdb' bus='usb'/></disk>"
                     "<disk type='file' device='floppy'><source file='/c'/><target dev='fda'/></disk>"))[0]
    storage, fmt = (json.loads(b) for b in opts(argv, "-blockdev")[:2])
    assert storage["aio"] == "threads" and storage["cache"] == {"direct": True, "no-flush": False}
    assert (fmt["discard"], fmt["detect-zeroes"]) == ("unmap", "unmap")
    hd = by_driver(argv, "scsi-hd")[0]
    assert (hd["serial"], hd["wwn"], hd["share-rw"], hd["write-cache"]) == ("S1", 0x5000c50015ea71ac, True, "on")
    assert by_driver(argv, "usb-storage")[0] | {"drive": None} == {
        "driver": "usb-storage", "id": "usb-disk1", "removable": False, "bus": "usb.0", "port": "1", "drive": None}
    assert by_driver(argv, "floppy")[0]["id"] == "fdc0-0-0"


def test_ehci_with_uhci_companions_share_one_slot():
    argv = build(xml("<controller type='usb' model='ich9-ehci1'/><controller type='usb' model='ich9-uhci1'/>"
                     "<controller type='usb' model='ich9-uhci2'/>"))[0]
    ehci = by_driver(argv, "ich9-usb-ehci1")[0]
    uhci1, uhci2 = by_driver(argv, "ich9-usb-uhci1")[0], by_driver(argv, "ich9-usb-uhci2")[0]
    assert (ehci["id"], ehci["addr"]) == ("usb", "0x2.0x7")
    assert uhci1 == {"driver": "ich9-usb-uhci1", "masterbus": "usb.0", "firstport": 0, "bus": "pci.0",
                     "multifunction": True, "addr": "0x2"}
    assert (uhci2["firstport"], uhci2["addr"]) == (2, "0x2.0x1")


def test_parallel_udp_spicevmc_hub_redirdev_shmem_vsock():
    argv = build(xml("<parallel type='null'/>"
                     "<serial type='udp'><source mode='bind' host='127.0.0.1' service='5'/>"
                     "<source mode='connect' host='10.0.0.1' service='6'/></serial>"
                     "<channel type='spicevmc'><target type='virtio' name='com.redhat.spice.0'/></channel>"
                     "<hub type='usb'/><redirdev bus='usb' type='spicevmc'/>"
                     "<shmem name='sh'><model type='ivshmem-plain'/><size unit='M'>8</size></shmem>"
                     "<vsock model='virtio'><cid auto='no' address='5'/></vsock>"
                     "<graphics type='spice' port='5901'/>"))[0]
    chardevs = opts(argv, "-chardev")
    assert "null,id=charparallel0" in chardevs and "spicevmc,id=charchannel0,name=vdagent" in chardevs
    assert "udp,id=charserial0,host=10.0.0.1,port=6,localaddr=127.0.0.1,localport=5" in chardevs
    assert "spicevmc,id=charredir0,name=usbredir" in chardevs
    assert by_driver(argv, "isa-parallel") == [{"driver": "isa-parallel", "chardev": "charparallel0",
                                                "id": "parallel0"}]
    assert (by_driver(argv, "usb-hub")[0]["port"], by_driver(argv, "usb-redir")[0]["port"]) == ("1", "2")
    assert json.loads(opts(argv, "-object")[-1]) == {"qom-type": "memory-backend-file", "id": "shmmem-shmem0",
                                                     "mem-path": "/dev/shm/sh", "size": 8 << 20, "share": True}
    assert by_driver(argv, "vhost-vsock-pci")[0]["guest-cid"] == 5


def test_vsock_without_a_fixed_cid_is_refused():
    root = postparse(xml("<vsock model='virtio'><cid auto='no' address='3'/></vsock>"), CAPS)
    root.find("devices/vsock/cid").attrib.pop("address")
    with pytest.raises(InvalidInput, match="fixed guest CID"):
        build_command(root, CAPS, PATHS, {})
