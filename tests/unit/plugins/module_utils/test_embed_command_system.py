"""Unit tests of the machine/system part of the embedded driver's command line and post-parse."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest
from lxml import etree
from qemu72_caps import CAPS

from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.cmdline import LaunchPaths, build_command
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.postparse import postparse
from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput

PATHS = LaunchPaths(monitor_socket="/r/mon.sock", pidfile="/r/pid", domain_dir="/r/d", log_file="/r/log")
SYS_CAPS = SimpleNamespace(**{**vars(CAPS), "cpu_models": {"qemu64", "max", "Skylake-Client"}})


def domain(body="", machine="pc", vcpu="<vcpu>2</vcpu>", features="<acpi/>", os_extra="", devices=""):
    return etree.fromstring(
        f"<domain type='qemu'><name>t</name><memory unit='MiB'>256</memory>{vcpu}"
        f"<os><type machine='{machine}'>hvm</type>{os_extra}</os><features>{features}</features>{body}"
        f"<devices>{devices}</devices></domain>")


def build(root):
    return build_command(postparse(root, SYS_CAPS), SYS_CAPS, PATHS, {})


def opts(argv, flag):
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag]


def objects(argv):
    return [json.loads(o) for o in opts(argv, "-object")]


def test_named_model_features_and_feature_driven_flags():
    body = ("<cpu mode='custom' match='exact'><model>Skylake-Client</model>"
            "<feature policy='require' name='pcid'/><feature policy='disable' name='hle'/>"
            "<feature policy='forbid' name='rtm'/><feature policy='force' name='vmx'/></cpu>")
    features = ("<acpi/><apic eoi='on'/><hyperv mode='custom'><relaxed state='on'/><vapic state='off'/>"
                "<spinlocks state='on' retries='8191'/><vendor_id state='on' value='KVMKVM'/></hyperv>"
                "<kvm><hidden state='on'/></kvm><pmu state='off'/>")
    argv = build(domain(body, features=features))[0]
    assert opts(argv, "-cpu") == [("Skylake-Client,pcid=on,hle=off,rtm=off,vmx=on,kvm-pv-eoi=on,hv-relaxed=on,"
                                  "hv-vapic=off,hv-spinlocks=0x1fff,hv-vendor-id=KVMKVM,kvm=off,pmu=off")]


def test_maximum_mode_and_kvmclock_timer():
    body = "<cpu mode='maximum'/><clock offset='utc'><timer name='kvmclock' present='no'/></clock>"
    assert opts(build(domain(body))[0], "-cpu") == ["max,kvmclock=off"]


def test_topology_with_dies_and_current_vcpus():
    body = "<cpu><topology sockets='2' cores='2' threads='1'/></cpu>"
    argv = build(domain(body, vcpu="<vcpu current='2'>4</vcpu>"))[0]
    assert opts(argv, "-smp") == ["2,maxcpus=4,sockets=2,dies=1,cores=2,threads=1"]


def test_topology_must_match_the_vcpu_count():
    with pytest.raises(InvalidInput, match="topology"):
        build(domain("<cpu><topology sockets='3' cores='1' threads='1'/></cpu>"))


def test_iothreads_become_objects_after_smp():
    argv = build(domain("<iothreads>2</iothreads>"))[0]
    assert [o for o in objects(argv) if o["qom-type"] == "iothread"] == [
        {"qom-type": "iothread", "id": "iothread1"}, {"qom-type": "iothread", "id": "iothread2"}]
    assert argv.index("-smp") < argv.index('{"qom-type":"iothread","id":"iothread1"}')


def test_numa_cells_get_a_backend_each_and_no_machine_memory_backend():
    body = ("<memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking>"
            "<cpu><numa><cell cpus='0' memory='128' unit='MiB'/>"
            "<cell cpus='1' memory='64' unit='MiB' memAccess='private'/></numa></cpu>")
    dom = postparse(domain(body), SYS_CAPS)
    assert dom.findtext("memory") == str(192 * 1024)
    argv = build_command(dom, SYS_CAPS, PATHS, {})[0]
    assert "memory-backend=pc.ram" not in opts(argv, "-machine")[0]
    assert objects(argv) == [
        {"qom-type": "memory-backend-memfd", "id": "ram-node0", "share": True, "size": 128 * 2 ** 20},
        {"qom-type": "memory-backend-memfd", "id": "ram-node1", "share": False, "size": 64 * 2 ** 20}]
    assert opts(argv, "-numa") == ["node,nodeid=0,cpus=0,memdev=ram-node0", "node,nodeid=1,cpus=1,memdev=ram-node1"]


@pytest.mark.parametrize("backing,expected,machine_extra,lock", [
    ("<source type='memfd'/><access mode='shared'/>",
     {"qom-type": "memory-backend-memfd", "id": "pc.ram", "share": True,
      "x-use-canonical-path-for-ramblock-id": False}, "", "off"),
    ("<source type='file'/><discard/><locked/>",
     {"qom-type": "memory-backend-file", "id": "pc.ram", "mem-path": "/r/d/pc.ram", "discard-data": True,
      "x-use-canonical-path-for-ramblock-id": False}, "", "on"),
    ("<nosharepages/>", {"qom-type": "memory-backend-ram", "id": "pc.ram"}, "mem-merge=off,", "off"),
])
def test_memory_backing(backing, expected, machine_extra, lock):
    argv = build(domain(f"<memoryBacking>{backing}</memoryBacking>"))[0]
    assert objects(argv) == [{**expected, "size": 256 * 2 ** 20}]
    assert opts(argv, "-machine") == [(f"pc-i440fx-7.2,usb=off,dump-guest-core=off,{machine_extra}"
                                      "memory-backend=pc.ram")]
    assert opts(argv, "-overcommit") == [f"mem-lock={lock}"]


def test_machine_features_smm_tseg_vmport_ioapic():
    features = "<acpi/><vmport state='off'/><smm state='on'><tseg unit='MiB'>48</tseg></smm><ioapic driver='qemu'/>"
    argv = build(domain(machine="q35", features=features))[0]
    assert opts(argv, "-machine") == [("pc-q35-7.2,usb=off,vmport=off,smm=on,kernel_irqchip=split,"
                                      "dump-guest-core=off,memory-backend=pc.ram")]
    assert opts(argv, "-global")[0] == "mch.extended-tseg-mbytes=48"
    assert argv.index("-accel") < argv.index("mch.extended-tseg-mbytes=48") < argv.index("-cpu")


def test_smbios_from_sysinfo():
    body = ("<sysinfo type='smbios'><bios><entry name='version'>1.2</entry><entry name='vendor'>V</entry></bios>"
            "<system><entry name='product'>Box, big</entry><entry name='manufacturer'>M</entry></system>"
            "<baseBoard><entry name='asset'>A</entry></baseBoard><chassis><entry name='sku'>S</entry></chassis>"
            "<oemStrings><entry>app:1</entry><entry>a,b</entry></oemStrings></sysinfo>")
    argv = build(domain(body, os_extra="<smbios mode='sysinfo'/>"))[0]
    assert opts(argv, "-smbios") == ["type=0,vendor=V,version=1.2", "type=1,manufacturer=M,product=Box,, big",
                                     "type=2,asset=A", "type=3,sku=S", "type=11,value=app:1,value=a,,b"]
    assert argv.index("-uuid") < argv.index("-smbios") < argv.index("-no-user-config")


def test_sysinfo_without_smbios_mode_is_not_on_the_command_line():
    body = "<sysinfo type='smbios'><bios><entry name='vendor'>V</entry></bios></sysinfo>"
    assert opts(build(domain(body))[0], "-smbios") == []


def test_clock_timers():
    body = ("<clock offset='localtime'><timer name='rtc' tickpolicy='catchup' track='guest'/>"
            "<timer name='pit' tickpolicy='discard'/><timer name='hpet' present='no'/></clock>")
    argv = build(domain(body))[0]
    assert opts(argv, "-rtc") == ["base=localtime,clock=vm,driftfix=slew"]
    assert opts(argv, "-global") == ["kvm-pit.lost_tick_policy=discard"]
    assert "-no-hpet" in argv


def test_variable_clock_starts_at_the_adjusted_time():
    argv = build(domain("<clock offset='variable' adjustment='3600' basis='utc'/>"))[0]
    base = opts(argv, "-rtc")[0]
    started = time.mktime(time.strptime(base, "base=%Y-%m-%dT%H:%M:%S")) - time.mktime(time.gmtime(0))
    assert abs(started - (time.time() + 3600)) < 5


def test_timezone_clock_sets_tz():
    argv, env = build(domain("<clock offset='timezone' timezone='Europe/Paris'/>"))
    assert opts(argv, "-rtc") == ["base=localtime"] and env["TZ"] == "Europe/Paris"


@pytest.mark.parametrize("machine,device", [("pc", "PIIX4_PM"), ("q35", "ICH9-LPC")])
def test_power_management(machine, device):
    body = "<pm><suspend-to-mem enabled='no'/><suspend-to-disk enabled='yes'/></pm>"
    expected = [f"{device}.disable_s3=1", f"{device}.disable_s4=0"]
    assert opts(build(domain(body, machine=machine))[0], "-global") == expected


def test_boot_menu_and_bios_options():
    os_extra = "<bootmenu enable='yes' timeout='3000'/><bios useserial='yes' rebootTimeout='0'/>"
    argv = build(domain(os_extra=os_extra, devices="<serial type='pty'/>"))[0]
    assert opts(argv, "-boot") == ["menu=on,reboot-timeout=0,splash-time=3000,strict=on"]
    assert opts(argv, "-machine")[0].endswith(",graphics=off")


def test_postparse_completes_cpu_like_libvirt():
    body = "<cpu><model>Skylake-Client</model><topology sockets='1' cores='2' threads='1'/></cpu>"
    cpu = postparse(domain(body), SYS_CAPS).find("cpu")
    assert dict(cpu.attrib) == {"mode": "custom", "match": "exact", "check": "none"}
    assert cpu.find("model").get("fallback") == "allow"
    assert dict(cpu.find("topology").attrib) == {"sockets": "1", "dies": "1", "cores": "2", "threads": "1"}
    assert postparse(domain("<cpu mode='maximum'/>"), SYS_CAPS).find("cpu").get("check") == "none"


def test_postparse_orders_os_features_and_memory_backing():
    root = domain("<memoryBacking><discard/><source type='memfd'/><nosharepages/></memoryBacking>",
                  features="<pmu state='off'/><apic/><acpi/>",
                  os_extra="<smbios mode='emulate'/><bios rebootTimeout='0'/><bootmenu enable='no'/>")
    dom = postparse(root, SYS_CAPS)
    assert [c.tag for c in dom.find("os")] == ["type", "boot", "bootmenu", "bios", "smbios"]
    assert [c.tag for c in dom.find("features")] == ["acpi", "apic", "pmu"]
    assert [c.tag for c in dom.find("memoryBacking")] == ["nosharepages", "source", "discard"]


@pytest.mark.parametrize("root,option", [
    (domain("<cpu mode='host-model'/>"), "cpu@mode"),
    (domain("<cpu><model>qemu64</model><feature policy='optional' name='pcid'/></cpu>"), "cpu/feature@policy"),
    (domain("<memoryBacking><hugepages/></memoryBacking>"), "memoryBacking/hugepages"),
    (domain("<maxMemory slots='16' unit='GiB'>4</maxMemory>"), "maxMemory"),
    (domain(os_extra="<smbios mode='host'/>"), "os/smbios@mode"),
    (domain("<sysinfo type='fwcfg'><entry name='opt/x'>y</entry></sysinfo>"), "sysinfo@type"),
    (domain("<clock offset='utc'><timer name='tsc' frequency='1000000000'/></clock>"), "clock/timer@name"),
    (domain("<clock offset='utc'><timer name='rtc' tickpolicy='merge'/></clock>"), "clock/timer@tickpolicy"),
    (domain(os_extra="<bios useserial='yes'/>"), "os/bios@useserial"),
    (domain(features="<gic version='3'/>"), "features/gic"),
    (domain(features="<hyperv mode='passthrough'/>"), "features/hyperv@mode"),
    (domain(vcpu="<vcpu placement='auto'>2</vcpu>"), "vcpu"),
    (domain(vcpu="<vcpu cpuset='0-1'>2</vcpu>"), "vcpu"),
    (domain("<cputune><vcpupin vcpu='0' cpuset='1'/></cputune>"), "cputune"),
    (domain("<memtune><hard_limit unit='MiB'>512</hard_limit></memtune>"), "memtune"),
    (domain("<vcpus><vcpu id='0' enabled='yes' hotpluggable='no'/><vcpu id='1' enabled='yes' "
            "hotpluggable='yes'/></vcpus>"), "vcpus/vcpu@hotpluggable"),
])
def test_define_refuses_what_needs_a_daemon_or_host_probing(root, option):
    with pytest.raises(InvalidInput) as err:
        postparse(root, SYS_CAPS)
    assert err.value.option == option


def test_host_passthrough_on_tcg_is_defined_but_refused_at_start():
    """As libvirt: the definition may later run on a KVM host; a TCG start cannot pass the host CPU through."""
    stored = postparse(domain("<cpu mode='host-passthrough'/>"), SYS_CAPS)
    with pytest.raises(InvalidInput) as err:
        build_command(stored, SYS_CAPS, PATHS, {})
    assert err.value.option == "cpu@mode" and "kvm" in str(err.value)


def test_numa_distances_and_per_cell_discard():
    body = ("<memoryBacking><source type='file'/></memoryBacking><cpu><numa>"
            "<cell cpus='0' memory='128' unit='MiB' discard='yes' memAccess='shared'><distances>"
            "<sibling id='0' value='10'/><sibling id='1' value='21'/></distances></cell>"
            "<cell cpus='1' memory='128' unit='MiB'><distances>"
            "<sibling id='0' value='21'/><sibling id='1' value='10'/></distances></cell></numa></cpu>")
    argv = build(domain(body))[0]
    assert objects(argv) == [
        {"qom-type": "memory-backend-file", "id": "ram-node0", "mem-path": "/r/d/ram-node0", "discard-data": True,
         "share": True, "size": 128 * 2 ** 20},
        {"qom-type": "memory-backend-file", "id": "ram-node1", "mem-path": "/r/d/ram-node1", "size": 128 * 2 ** 20}]
    assert opts(argv, "-numa")[2:] == ["dist,src=0,dst=0,val=10", "dist,src=0,dst=1,val=21",
                                       "dist,src=1,dst=0,val=21", "dist,src=1,dst=1,val=10"]


def test_kvm_and_pvspinlock_flags_and_vmcoreinfo():
    features = ("<acpi/><hap state='on'/><privnet/><kvm><hidden state='on'/><hint-dedicated state='on'/>"
                "<poll-control state='on'/><pv-ipi state='off'/></kvm><pvspinlock state='on'/>"
                "<vmcoreinfo state='on'/>")
    argv = build(domain(features=features))[0]
    assert opts(argv, "-cpu") == [("qemu64,kvm-pv-unhalt=on,kvm=off,kvm-hint-dedicated=on,kvm-poll-control=on,"
                                  "kvm-pv-ipi=off")]
    assert {"driver": "vmcoreinfo"} in [json.loads(d) for d in opts(argv, "-device")]


def test_unknown_kvm_feature_is_refused():
    with pytest.raises(InvalidInput) as err:
        postparse(domain(features="<kvm><dirty-ring state='on' size='4096'/></kvm>"), SYS_CAPS)
    assert err.value.option == "features/kvm/dirty-ring"


def test_numa_cell_cpu_list_gives_one_cpus_option_per_run():
    body = ("<cpu><numa><cell cpus='0,2-3,^3,5-6' memory='64' unit='MiB'/>"
            "<cell cpus='1,3-4' memory='64' unit='MiB'/></numa></cpu>")
    argv = build(domain(body, vcpu="<vcpu>7</vcpu>"))[0]
    assert opts(argv, "-numa") == ["node,nodeid=0,cpus=0,cpus=2,cpus=5-6,memdev=ram-node0",
                                   "node,nodeid=1,cpus=1,cpus=3-4,memdev=ram-node1"]


@pytest.mark.parametrize("cell,option", [
    ("<cell id='x' cpus='0' memory='64'/>", "cpu/numa/cell@id"),
    ("<cell cpus='0-' memory='64'/>", "cpu/numa/cell@cpus"),
    ("<cell cpus='1,^1' memory='64'/>", "cpu/numa/cell@cpus"),
])
def test_malformed_numa_cell_is_refused_at_define(cell, option):
    with pytest.raises(InvalidInput) as err:
        postparse(domain(f"<cpu><numa>{cell}</numa></cpu>"), SYS_CAPS)
    assert err.value.option == option


@pytest.mark.parametrize("offset", ["variable", "utc"])
def test_clock_adjustment_reset_is_no_adjustment(offset):
    argv = build(domain(f"<clock offset='{offset}' adjustment='reset'/>"))[0]
    base = opts(argv, "-rtc")[0]
    if offset == "utc":
        assert base == "base=utc"
        return
    started = time.mktime(time.strptime(base, "base=%Y-%m-%dT%H:%M:%S")) - time.mktime(time.gmtime(0))
    assert abs(started - time.time()) < 5


def test_utc_clock_with_seconds_becomes_variable_as_in_libvirt():
    clock = postparse(domain("<clock offset='utc' adjustment='60'/>"), SYS_CAPS).find("clock")
    assert dict(clock.attrib) == {"offset": "variable", "adjustment": "60", "basis": "utc"}


@pytest.mark.parametrize("offset", ["variable", "utc", "localtime"])
def test_clock_adjustment_not_a_number_is_refused_at_define(offset):
    with pytest.raises(InvalidInput) as err:
        postparse(domain(f"<clock offset='{offset}' adjustment='soon'/>"), SYS_CAPS)
    assert err.value.option == "clock@adjustment"


def test_spinlock_retries_not_a_number_is_invalid_input():
    features = "<acpi/><hyperv mode='custom'><spinlocks state='on' retries='lots'/></hyperv>"
    with pytest.raises(InvalidInput) as err:
        build(domain(features=features))
    assert err.value.option == "features/hyperv/spinlocks@retries"
