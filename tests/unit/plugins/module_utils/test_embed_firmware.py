"""Unit tests of firmware auto-selection from QEMU firmware descriptors."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from lxml import etree
from qemu72_caps import CAPS

from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import firmware
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.cmdline import LaunchPaths, build_command
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.postparse import postparse
from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput

PATHS = LaunchPaths(monitor_socket="/r/mon.sock", pidfile="/r/pid", domain_dir="/r/d", log_file="/r/log",
                    nvram="/r/nvram/t_VARS.fd")
SMM_FEATURES = ["acpi-s3", "amd-sev", "requires-smm", "secure-boot", "verbose-dynamic"]


def descriptor(code, template, machines, features, interface="uefi", device="flash"):
    mapping = {"device": device}
    if device == "flash":
        mapping.update(executable={"filename": code, "format": "raw"},
                       **{"nvram-template": {"filename": template, "format": "raw"}})
    else:
        mapping["filename"] = code
    return {"interface-types": [interface], "mapping": mapping,
            "targets": [{"architecture": "x86_64", "machines": machines}], "features": features}


DEBIAN = {
    "40-edk2-x86_64-secure-enrolled.json": descriptor("/fw/CODE.ms.fd", "/fw/VARS.ms.fd", ["pc-q35-*"],
                                                      ["enrolled-keys", *SMM_FEATURES]),
    "50-edk2-x86_64-secure.json": descriptor("/fw/CODE.secboot.fd", "/fw/VARS.fd", ["pc-q35-*"], SMM_FEATURES),
    "60-edk2-x86_64.json": descriptor("/fw/CODE.fd", "/fw/VARS.fd", ["pc-i440fx-*", "pc-q35-*"],
                                      ["acpi-s3", "amd-sev", "verbose-dynamic"]),
}


@pytest.fixture
def fwdirs(tmp_path, monkeypatch):
    system, etc = tmp_path / "share", tmp_path / "etc"
    system.mkdir()
    etc.mkdir()
    for name, doc in DEBIAN.items():
        (system / name).write_text(json.dumps(doc))
    monkeypatch.setattr(firmware, "SYSTEM_DIRS", (str(system), str(etc)))
    return SimpleNamespace(system=system, etc=etc)


def domain(machine="q35", os_attrs="firmware='efi'", os_extra="", features="<acpi/>", tail=""):
    return etree.fromstring(
        f"<domain type='qemu'><name>t</name><memory unit='MiB'>64</memory>"
        f"<os {os_attrs}><type machine='{machine}'>hvm</type>{os_extra}</os><features>{features}</features>"
        f"<devices/>{tail}</domain>")


def live(root):
    dom = postparse(root, CAPS)
    firmware.fill(dom, PATHS.nvram)
    return dom


def opts(argv, flag):
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag]


def test_descriptor_paths_override_by_name_mask_and_sort(fwdirs):
    (fwdirs.etc / "50-edk2-x86_64-secure.json").write_text(json.dumps(DEBIAN["60-edk2-x86_64.json"]))
    (fwdirs.etc / "40-edk2-x86_64-secure-enrolled.json").write_text("")     # masks the packaged one
    (fwdirs.etc / "10-notes.txt").write_text("not a descriptor")
    paths = firmware.descriptor_paths(firmware.search_dirs(privileged=True))
    assert paths == [str(fwdirs.etc / "50-edk2-x86_64-secure.json"), str(fwdirs.system / "60-edk2-x86_64.json")]


def test_unprivileged_search_includes_xdg_config_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert firmware.search_dirs(privileged=False)[-1] == str(tmp_path / "qemu" / "firmware")
    assert str(tmp_path) not in " ".join(firmware.search_dirs(privileged=True))


@pytest.mark.parametrize("machine,requested,code", [
    ("q35", "", "/fw/CODE.ms.fd"),
    ("q35", "<feature enabled='no' name='enrolled-keys'/>", "/fw/CODE.secboot.fd"),
    ("q35", "<feature enabled='no' name='secure-boot'/>", "/fw/CODE.fd"),
    ("pc", "", "/fw/CODE.fd"),
])
def test_selection_follows_machine_and_requested_features(fwdirs, machine, requested, code):
    root = domain(machine, os_extra=f"<firmware>{requested}</firmware>" if requested else "")
    assert firmware.select(postparse(root, CAPS)).executable == code


def test_fill_secure_firmware_like_libvirt_at_start(fwdirs):
    dom = live(domain("q35"))
    os_elem = dom.find("os")
    assert os_elem.get("firmware") is None
    loader = os_elem.find("loader")
    assert dict(loader.attrib) == {"readonly": "yes", "secure": "yes", "type": "pflash"}
    assert loader.text == "/fw/CODE.ms.fd"
    assert os_elem.find("nvram").get("template") == "/fw/VARS.ms.fd"
    assert os_elem.find("nvram").text == PATHS.nvram
    assert dom.find("features/smm").get("state") == "on"


def test_fill_plain_firmware_on_pc_needs_no_smm(fwdirs):
    dom = live(domain("pc"))
    assert dom.find("os/loader").get("secure") is None
    assert dom.find("features/smm") is None


def test_firmware_that_needs_smm_refuses_smm_off(fwdirs):
    with pytest.raises(InvalidInput, match="SMM"):
        live(domain("q35", features="<acpi/><smm state='off'/>"))


def test_no_matching_descriptor_is_an_error_naming_the_firmware(fwdirs):
    with pytest.raises(InvalidInput, match="'bios'") as err:
        live(domain("pc", os_attrs="firmware='bios'"))
    assert err.value.option == "os@firmware"
    with pytest.raises(InvalidInput, match="'efi'"):
        live(domain("pc", os_extra="<firmware><feature enabled='yes' name='secure-boot'/></firmware>"))


def test_suspend_to_disk_needs_a_firmware_with_s4(fwdirs):
    with pytest.raises(InvalidInput):
        live(domain("pc", tail="<pm><suspend-to-disk enabled='yes'/></pm>"))


def test_bios_from_a_memory_descriptor_becomes_a_rom_loader(fwdirs):
    (fwdirs.etc / "70-seabios.json").write_text(json.dumps(
        descriptor("/fw/bios-256k.bin", None, ["pc-*"], [], interface="bios", device="memory")))
    dom = live(domain("pc", os_attrs="firmware='bios'"))
    assert dom.find("os/loader").get("type") == "rom" and dom.find("os/loader").text == "/fw/bios-256k.bin"
    argv = build_command(dom, CAPS, PATHS, {})[0]
    assert opts(argv, "-bios") == ["/fw/bios-256k.bin"]


def test_old_style_loader_gets_its_template_from_the_descriptor(fwdirs):
    root = domain("q35", os_attrs="", os_extra="<loader readonly='yes' type='pflash'>/fw/CODE.fd</loader>")
    dom = live(root)
    assert dom.find("os/nvram").get("template") == "/fw/VARS.fd"
    assert dom.find("os/nvram").text == PATHS.nvram


def test_argv_of_auto_selected_secure_firmware(fwdirs):
    argv = build_command(postparse(domain("q35"), CAPS), CAPS, PATHS, {})[0]
    nodes = [json.loads(n) for n in opts(argv, "-blockdev")]
    assert [n.get("filename") for n in nodes[::2]] == ["/fw/CODE.ms.fd", PATHS.nvram]
    assert [n["read-only"] for n in nodes[1::2]] == [True, False]
    assert opts(argv, "-machine") == [("pc-q35-7.2,usb=off,smm=on,dump-guest-core=off,memory-backend=pc.ram,"
                                      "pflash0=libvirt-pflash0-format,pflash1=libvirt-pflash1-format")]
    assert opts(argv, "-global") == ["driver=cfi.pflash01,property=secure,value=on"]
    assert argv.index("-global") > argv.index("-cpu")


def test_build_command_leaves_the_callers_definition_alone(fwdirs):
    dom = postparse(domain("q35"), CAPS)
    build_command(dom, CAPS, PATHS, {})
    assert dom.find("os").get("firmware") == "efi" and dom.find("os/loader") is None


@pytest.mark.parametrize("os_attrs,os_extra,machine,features,message", [
    ("firmware='efi'", "<loader secure='no'/>", "q35", "<acpi/>", "secure"),
    ("firmware='efi'", "<loader readonly='yes'/>", "q35", "<acpi/>", "readonly"),
    ("firmware='efi'", "<loader type='pflash'/>", "q35", "<acpi/>", "type"),
    ("firmware='efi'", "<nvram template='/fw/VARS.fd'/>", "q35", "<acpi/>", "template"),
    ("firmware='efi'", "<loader secure='yes'/>", "pc", "<acpi/>", "q35"),
    ("", "<loader readonly='yes' type='pflash' secure='yes'>/fw/CODE.secboot.fd</loader>", "q35", "<acpi/>",
     "SMM"),
    ("firmware='efi'",
     "<firmware><feature enabled='yes' name='enrolled-keys'/><feature enabled='no' name='secure-boot'/></firmware>",
     "q35", "<acpi/>", "enrolled-keys"),
    ("", "<firmware><feature enabled='yes' name='secure-boot'/></firmware>", "q35", "<acpi/>", "auto-selection"),
    ("firmware='uboot'", "", "q35", "<acpi/>", "unknown firmware"),
])
def test_define_time_checks(os_attrs, os_extra, machine, features, message):
    with pytest.raises(InvalidInput, match=message):
        postparse(domain(machine, os_attrs, os_extra, features), CAPS)


def test_enrolled_keys_implies_secure_boot_at_define():
    root = domain("q35", os_extra="<firmware><feature enabled='yes' name='enrolled-keys'/></firmware>")
    features = postparse(root, CAPS).findall("os/firmware/feature")
    assert [(f.get("enabled"), f.get("name")) for f in features] == [("yes", "enrolled-keys"), ("yes", "secure-boot")]


def test_define_keeps_auto_selection_unresolved():
    dom = postparse(domain("q35", os_extra="<loader secure='yes'/>"), CAPS)
    assert dom.find("os").get("firmware") == "efi"
    assert dict(dom.find("os/loader").attrib) == {"secure": "yes"}


def test_explicit_secure_loader_with_smm():
    root = domain("q35", os_attrs="", features="<acpi/><smm state='on'/>", os_extra=(
        "<loader readonly='yes' secure='yes' type='pflash'>/fw/CODE.secboot.fd</loader>"
        "<nvram template='/fw/VARS.fd'>/r/vars.fd</nvram>"))
    argv = build_command(postparse(root, CAPS), CAPS, PATHS, {})[0]
    assert opts(argv, "-global") == ["driver=cfi.pflash01,property=secure,value=on"]
    assert ",smm=on," in opts(argv, "-machine")[0]


def test_selected_firmware_in_qcow2_is_refused(fwdirs):
    doc = descriptor("/fw/CODE.qcow2", "/fw/VARS.qcow2", ["pc-*"], [])
    doc["mapping"]["executable"]["format"] = "qcow2"
    (fwdirs.etc / "10-qcow2.json").write_text(json.dumps(doc))
    with pytest.raises(InvalidInput, match="raw"):
        live(domain("pc"))
