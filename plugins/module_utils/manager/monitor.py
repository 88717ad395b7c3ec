# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Monitor passthrough (QMP or HMP) and key presses on a running domain.

Both are actions rather than states: a command that only reads runs even in
check mode and reports no change; anything else is skipped in check mode
and reported as a change.  Private to the collection.
"""

from __future__ import annotations

from ansible_collections.virtops.qemu.plugins.module_utils.errors import Conflict, InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.lazy import load_part
from ansible_collections.virtops.qemu.plugins.module_utils.model.names import validate_name
from ansible_collections.virtops.qemu.plugins.module_utils.qmp import QMPError

# QMP commands that only read QEMU's state, besides every query-*.
READING_COMMANDS = frozenset({"qom-get", "qom-list", "qom-list-types", "qom-list-properties",
                              "device-list-properties"})


def reads_only(execute: str | None, hmp: str | None) -> bool:
    """Whether a QMP command or an HMP command line only reads (query-*, qom-get, HMP info ...)."""
    if hmp is not None:
        words = hmp.split()
        return bool(words) and words[0] == "info"
    return execute is not None and (execute.startswith("query-") or execute in READING_COMMANDS)


def run_command(driver, params: dict, check_mode: bool) -> dict:
    """What the qmp module returns: QEMU's reply in ``return``; QEMU's error fails with its class."""
    name = validate_name(params["name"], "domain")
    execute, arguments, hmp = params.get("command"), params.get("arguments"), params.get("hmp")
    if execute == "human-monitor-command" and arguments:
        hmp, execute, arguments = str(arguments.get("command-line", "")), None, None
    if hmp is not None and not hmp.strip():
        raise InvalidInput("give an HMP command line, e.g. 'info status'", "hmp")
    if arguments is not None and not isinstance(arguments, dict):
        raise InvalidInput("must be a dict of the command's arguments", "arguments")
    reading = reads_only(execute, hmp)
    result = {"changed": not reading, "name": name, "return": None}
    if check_mode and not reading:
        if not driver.domains.active(name):
            raise Conflict(f"cannot run {execute or hmp!r} on domain {name!r}: it is not running")
        return result
    try:
        if hmp is not None:
            result["return"] = driver.domains.human_monitor(name, hmp)
        else:
            command: dict = {"execute": execute}
            if arguments is not None:
                command["arguments"] = arguments
            result["return"] = driver.domains.monitor(name, command)
    except QMPError as e:
        e.result = {"changed": False, "name": name, "error_class": e.error_class, "error_desc": e.desc}
        raise
    return result


def send_keys(driver, params: dict, check_mode: bool) -> dict:
    """What the send_key module returns; every key is checked before any is sent."""
    name = validate_name(params["name"], "domain")
    sendkey = load_part("model.sendkey")
    codeset = sendkey.codeset_name(params.get("codeset") or "linux")
    codes = sendkey.resolve(params.get("keys") or [], codeset)
    holdtime = params.get("holdtime") or 0
    if holdtime < 0:
        raise InvalidInput(f"must be 0 or more milliseconds, got {holdtime}", "holdtime")
    if not check_mode:
        driver.domains.send_key(name, codeset, codes, holdtime)
    elif not driver.domains.active(name):
        raise Conflict(f"cannot send keys to domain {name!r}: it is not running")
    return {"changed": True, "name": name, "codeset": codeset, "codes": codes}
