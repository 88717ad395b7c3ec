# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""send-key resolution, the qemu: namespace sections and the monitor passthrough's change rules."""

from __future__ import annotations

import pytest
from fakes import MemoryDriver

from ansible_collections.virtops.qemu.plugins.module_utils.errors import Conflict, InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.manager import monitor
from ansible_collections.virtops.qemu.plugins.module_utils.model import qemu_ns, sendkey
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import parse, to_string
from ansible_collections.virtops.qemu.plugins.module_utils.qmp import QMPError

DOMAIN = """<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>d</name>
  <devices><disk type='file' device='disk'><target dev='vda'/><alias name='ua-disk0'/></disk></devices>
  <qemu:deprecation behavior='omit'/>
  <qemu:commandline><qemu:arg value='-a'/><qemu:arg value='-b'/><qemu:env name='E' value='1'/></qemu:commandline>
</domain>"""


# -- send-key ---------------------------------------------------------------------
@pytest.mark.parametrize("codeset,keys,codes", [
    ("linux", ["KEY_A", 48, "0x2e"], [30, 48, 46]),
    ("os_x", ["ANSI_A"], [0x00]),
    ("win32", ["VK_UP"], [0x26]),
    ("xt", ["KEY_A"], [0x1E]),          # a Linux name translated to the code set asked for
    ("qnum", ["KEY_RIGHTCTRL"], [0x9D]),
    ("atset2", [131], [131]),
])
def test_keys_resolve_to_codes_of_the_code_set(codeset, keys, codes):
    assert sendkey.resolve(keys, codeset) == codes


def test_qnum_numbers_follow_libvirts_known_translations():
    assert sendkey.to_qnum("linux", 88) == 88 and sendkey.to_qnum("linux", 160) == 163
    assert sendkey.to_qnum("atset2", 131) == sendkey.to_qnum("linux", 65)        # F7


@pytest.mark.parametrize("codeset,keys,message", [
    ("linux", [], "at least one key"),
    ("linux", ["KEY_A"] * 17, "at most 16"),
    ("linux", ["KEY_NOPE"], "keys[0]: no key is named 'KEY_NOPE'"),
    ("atset2", [259], "keys[0]: code 259 of code set atset2 has no mapping"),
    ("os_x", [3200], "code 3200 of code set os_x"),
    ("linux", [True], "neither a key name nor a number"),
    ("linux", [-1], "negative"),
    ("qnum", [0x7FFF], "not a QEMU key number"),
])
def test_bad_keys_fail_naming_the_key(codeset, keys, message):
    with pytest.raises(InvalidInput) as err:
        sendkey.resolve(keys, codeset)
    assert message in str(err.value)


def test_rfb_is_qnum_and_unknown_code_sets_fail():
    assert sendkey.codeset_name("rfb") == "qnum"
    with pytest.raises(InvalidInput, match="codeset"):
        sendkey.codeset_name("ebcdic")


# -- qemu: namespace --------------------------------------------------------------
def _edited(sections):
    return qemu_ns.edited(parse(DOMAIN, "domain"), sections)


def test_sections_come_in_libvirts_order_with_the_prefix_on_the_root():
    out = to_string(_edited({"override": {"devices": [{"alias": "ua-disk0", "properties": [
        {"name": "serial", "type": "string", "value": "S"}, {"name": "x", "type": "bool", "value": False},
        {"name": "y", "type": "remove", "value": None}]}]}}))
    assert out.startswith('<domain xmlns:qemu="http://libvirt.org/schemas/domain/qemu/1.0"')
    order = [out.index(f"<qemu:{s}") for s in ("commandline", "override", "deprecation")]
    assert order == sorted(order)
    assert '<qemu:property name="x" type="bool" value="false"/>' in out
    assert '<qemu:property name="y" type="remove"/>' in out


def test_a_shorter_args_list_shrinks_and_env_left_out_is_kept():
    sections = qemu_ns.sections_of(_edited({"commandline": {"args": ["-a"], "env": None}}))
    assert sections["commandline"].count("<qemu:arg") == 1 and 'name="E"' in sections["commandline"]


def test_absent_sections_go_and_the_prefix_with_the_last():
    out = to_string(_edited({"commandline": {"state": "absent"}, "deprecation": {"state": "absent"}}))
    assert "qemu:" not in out and "xmlns" not in out


@pytest.mark.parametrize("sections,message", [
    ({"override": {"devices": [{"alias": "disk0", "properties": []}]}}, "is not a user alias"),
    ({"override": {"devices": [{"alias": "ua-x", "properties": []}]}}, "user aliases: ua-disk0"),
    ({"override": {"devices": [{"alias": "ua-disk0", "properties": [
        {"name": "n", "type": "unsigned", "value": "-1"}]}]}}, "not an unsigned integer"),
    ({"override": {"devices": [{"alias": "ua-disk0", "properties": [
        {"name": "n", "type": "bool", "value": "yes"}]}]}}, "not a bool"),
    ({"override": {"devices": [{"alias": "ua-disk0", "properties": [
        {"name": "n", "type": "remove", "value": "1"}]}]}}, "takes no value"),
    ({"commandline": {"env": {"BAD-NAME": "x"}}}, "not a valid environment variable name"),
    ({"capabilities": {"add": ["Not A Cap"]}}, "capabilities.add[0]"),
])
def test_bad_sections_fail_naming_the_option(sections, message):
    with pytest.raises(InvalidInput, match=message.replace("[", r"\[").replace("]", r"\]")):
        _edited(sections)


# -- monitor passthrough ----------------------------------------------------------
def _driver(active=True, error=None):
    """A driver with one domain, "d", running unless ``active`` is false; its monitor raises ``error``."""
    driver = MemoryDriver()
    driver.domains.define("<domain type='qemu'><name>d</name><memory>65536</memory></domain>")
    if active:
        driver.domains.start("d")
    if error is not None:
        driver.domains.fail("monitor", error)
    return driver


@pytest.mark.parametrize("execute,hmp,reading", [
    ("query-status", None, True), ("qom-get", None, True), ("stop", None, False),
    (None, "info status", True), (None, "savevm x", False),
])
def test_only_reading_commands_report_no_change(execute, hmp, reading):
    assert monitor.reads_only(execute, hmp) is reading


def test_check_mode_runs_reads_and_skips_the_rest():
    driver = _driver()
    read = monitor.run_command(driver, {"name": "d", "command": "query-status"}, check_mode=True)
    act = monitor.run_command(driver, {"name": "d", "command": "stop"}, check_mode=True)
    assert (read["changed"], read["return"]) == (False, {"status": "running"})
    assert (act["changed"], act["return"]) == (True, None)
    assert driver.domains.sent == [{"execute": "query-status"}]


def test_check_mode_on_a_stopped_domain_fails_as_the_real_run():
    with pytest.raises(Conflict, match="not running"):
        monitor.run_command(_driver(active=False), {"name": "d", "command": "stop"}, check_mode=True)
    with pytest.raises(Conflict, match="not running"):
        monitor.send_keys(_driver(active=False), {"name": "d", "keys": ["KEY_A"]}, check_mode=True)


def test_qemus_error_class_joins_the_failure():
    driver = _driver(error=QMPError("nope", "CommandNotFound", "The command nope has not been found"))
    with pytest.raises(QMPError) as err:
        monitor.run_command(driver, {"name": "d", "command": "nope"}, check_mode=False)
    assert err.value.result["error_class"] == "CommandNotFound"


def test_keys_are_checked_before_any_is_sent():
    driver = _driver()
    with pytest.raises(InvalidInput):
        monitor.send_keys(driver, {"name": "d", "keys": ["KEY_A", "KEY_NOPE"]}, check_mode=False)
    assert driver.domains.sent == []
    result = monitor.send_keys(driver, {"name": "d", "keys": ["KEY_A"], "codeset": "rfb", "holdtime": 5}, False)
    assert result["codeset"] == "qnum" and driver.domains.sent == [("qnum", [0x1E], 5)]
