# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Machine and system settings of the embedded driver against the real QEMU 7.2 (TCG).

Firmware auto-selection uses the host's own descriptors (Debian's ovmf
package); OVMF runs under TCG into its shell, which is enough to show that
QEMU accepts the pflash, SMM and secure-boot arguments.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import firmware
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import parse
from harness.embed import qemu_cmdlines
from harness.guest import MARKER
from harness.libvirtd import wait_for_line

pytestmark = pytest.mark.embed


def efi_xml(name: str, machine: str, os_extra: str = "") -> str:
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>256</memory>
  <os firmware='efi'><type arch='x86_64' machine='{machine}'>hvm</type>{os_extra}</os>
  <features><acpi/><apic/></features>
  <devices><serial type='pty'/></devices>
</domain>"""


def _descriptor(name: str) -> firmware.Descriptor:
    return firmware.load(os.path.join("/usr/share/qemu/firmware", name))


def _run_briefly(driver, name: str) -> None:
    driver.domains.start(name)
    time.sleep(2)
    assert driver.domains.monitor(name, {"execute": "query-status"})["status"] == "running"


def test_efi_auto_selection_starts_secure_firmware_on_q35(driver, root):
    expected = _descriptor("40-edk2-x86_64-secure-enrolled.json")
    driver.domains.define(efi_xml("efi", "q35"))
    assert parse(driver.domains.xml("efi"), "domain").find("os").get("firmware") == "efi"
    _run_briefly(driver, "efi")

    live = parse(driver.domains.xml("efi", inactive=False), "domain")
    loader, nvram = live.find("os/loader"), live.find("os/nvram")
    assert live.find("os").get("firmware") is None
    assert dict(loader.attrib) == {"readonly": "yes", "secure": "yes", "type": "pflash"}
    assert loader.text == expected.executable
    assert nvram.get("template") == expected.nvram_template
    assert nvram.text == str(root / "lib" / "qemu" / "nvram" / "efi_VARS.fd")
    assert os.path.getsize(nvram.text) == os.path.getsize(expected.nvram_template)
    assert live.find("features/smm").get("state") == "on"
    cmdlines = list(qemu_cmdlines(root).values())
    assert len(cmdlines) == 1
    cmdline = cmdlines[0]
    assert b"driver=cfi.pflash01,property=secure,value=on" in cmdline and b"smm=on" in cmdline
    # the stored definition still asks for auto-selection, as libvirt 9.0 keeps it
    assert parse(driver.domains.xml("efi"), "domain").find("os/loader") is None
    driver.domains.destroy("efi")


def test_efi_without_secure_boot_on_pc(driver, root):
    expected = _descriptor("60-edk2-x86_64.json")
    driver.domains.define(efi_xml("plain", "pc", "<firmware><feature enabled='no' name='secure-boot'/></firmware>"))
    _run_briefly(driver, "plain")
    live = parse(driver.domains.xml("plain", inactive=False), "domain")
    assert live.find("os/loader").text == expected.executable
    assert live.find("os/loader").get("secure") is None and live.find("features/smm") is None
    driver.domains.destroy("plain")


def test_system_settings_boot_the_test_guest(driver, guest_build, root):
    """NUMA, memfd memory, SMBIOS, CPU model flags, timers, iothreads: QEMU takes them and the guest boots."""
    driver.domains.define(f"""<domain type='qemu'>
  <name>sys</name>
  <memory unit='MiB'>256</memory>
  <vcpu current='2'>4</vcpu>
  <iothreads>1</iothreads>
  <memoryBacking><source type='memfd'/><access mode='shared'/><nosharepages/></memoryBacking>
  <sysinfo type='smbios'>
    <system><entry name='manufacturer'>Virtops</entry><entry name='product'>Test, box</entry></system>
    <oemStrings><entry>virtops:test</entry></oemStrings>
  </sysinfo>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>{guest_build.kernel}</kernel>
    <initrd>{guest_build.initrd}</initrd>
    <cmdline>{guest_build.cmdline}</cmdline>
    <smbios mode='sysinfo'/>
  </os>
  <features><acpi/><apic/><pmu state='off'/><vmport state='off'/></features>
  <cpu mode='custom' match='exact'>
    <model>qemu64</model>
    <topology sockets='2' cores='2' threads='1'/>
    <feature policy='require' name='x2apic'/>
    <numa>
      <cell cpus='0-1' memory='128' unit='MiB'/>
      <cell cpus='2-3' memory='128' unit='MiB'/>
    </numa>
  </cpu>
  <clock offset='variable' adjustment='-3600' basis='utc'>
    <timer name='rtc' tickpolicy='catchup'/>
    <timer name='pit' tickpolicy='delay'/>
    <timer name='hpet' present='no'/>
  </clock>
  <pm><suspend-to-mem enabled='no'/><suspend-to-disk enabled='no'/></pm>
  <devices>
    <serial type='file'><source path='{root}/sys-serial.log'/><target port='0'/></serial>
  </devices>
</domain>""")
    driver.domains.start("sys")
    wait_for_line(root / "sys-serial.log", MARKER, timeout=120)
    numa = driver.domains.monitor("sys", {"execute": "query-memdev"})
    assert sorted((m["id"], m["size"], m["share"]) for m in numa) == [
        ("ram-node0", 128 * 2 ** 20, True), ("ram-node1", 128 * 2 ** 20, True)]
    cpus = driver.domains.monitor("sys", {"execute": "query-cpus-fast"})
    assert len(cpus) == 2
    driver.domains.destroy("sys")


def test_machine_features_and_file_backed_memory_accepted_by_qemu(driver, root):
    driver.domains.define("""<domain type='qemu'>
  <name>mach</name>
  <memory unit='MiB'>128</memory>
  <vcpu>2</vcpu>
  <memoryBacking><locked/><source type='file'/><discard/></memoryBacking>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <features>
    <acpi/><apic/>
    <hyperv mode='custom'><relaxed state='on'/></hyperv>
    <kvm><hidden state='on'/></kvm><pvspinlock state='on'/>
    <smm state='on'><tseg unit='MiB'>48</tseg></smm><ioapic driver='qemu'/><vmcoreinfo state='on'/>
  </features>
  <clock offset='timezone' timezone='Europe/Paris'><timer name='pit' tickpolicy='discard'/></clock>
  <pm><suspend-to-mem enabled='no'/></pm>
  <devices/>
</domain>""")
    _run_briefly(driver, "mach")
    (memdev,) = driver.domains.monitor("mach", {"execute": "query-memdev"})
    assert memdev["id"] == "pc.ram" and memdev["size"] == 128 * 2 ** 20
    assert (root / "lib" / "qemu" / "domain-1-mach" / "pc.ram").exists()
    pids = list(qemu_cmdlines(root))
    assert len(pids) == 1
    pid = pids[0]
    assert b"TZ=Europe/Paris" in Path(f"/proc/{pid}/environ").read_bytes()
    driver.domains.destroy("mach")
    assert not (root / "lib" / "qemu" / "domain-1-mach").exists()
