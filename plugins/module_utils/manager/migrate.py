# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Moving a domain to another host: one phase of the move per call.

On libvirt the source libvirtd runs the whole move (phase ``managed``).  The
embedded driver has no daemon to talk to its peer, so Ansible runs the
phases on the two hosts in turn (the ``virtops.qemu.migrate`` role):
``prepare`` on the destination, ``perform`` on the source, ``finish`` on the
destination, ``confirm`` on the source, and ``cancel`` on both when any of
them failed (see driver/embed/migration.py).  Every phase is idempotent:
what is already done is reported unchanged.  Private to the collection.
"""

from __future__ import annotations

from ansible_collections.virtops.qemu.plugins.module_utils.driver.connect import open_driver
from ansible_collections.virtops.qemu.plugins.module_utils.errors import Conflict, InvalidInput, NotFound
from ansible_collections.virtops.qemu.plugins.module_utils.model.names import validate_name
from ansible_collections.virtops.qemu.plugins.module_utils.uri import parse_uri

PHASES = ("managed", "source", "prepare", "perform", "finish", "confirm", "cancel")
COPY_STORAGE = ("none", "all", "incremental")
EMBED_PHASES = ("source", "prepare", "perform", "finish", "confirm", "cancel")


def run(params: dict, check_mode: bool) -> dict:
    name = validate_name(params["name"], "domain")
    phase = params["phase"]
    backend = parse_uri(params["uri"]).backend
    if backend == "embed" and phase == "managed":
        raise InvalidInput("the embedded driver migrates in phases run on both hosts; use the "
                           "virtops.qemu.migrate role, or phase: prepare/perform/finish/confirm", "phase")
    if backend != "embed" and phase != "managed":
        raise InvalidInput(f"phase {phase!r} is for the embedded driver; libvirt migrates with phase: managed",
                           "phase")
    if phase == "managed":
        return _managed(name, params, check_mode)
    return _EMBED[phase](name, params, check_mode)


def _options(params: dict) -> dict:
    keys = ("live", "copy_storage", "persistent", "undefine_source", "bandwidth", "max_downtime", "auto_converge")
    return {key: params[key] for key in keys}


def _embed():
    from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import migration
    return migration


# -- embedded: source side ---------------------------------------------------------
def _source(name: str, params: dict, check_mode: bool) -> dict:
    """What the destination needs to prepare: the live definition and the size of each copied disk."""
    with open_driver(params["uri"], read_only=True) as driver:
        if not driver.domains.exists(name):
            return {"changed": False, "present": False}
        status = driver.domains.status(name)
        if params["live"] and status.state != "running":
            raise Conflict(f"domain {name!r} is {status.state}; a live migration moves a running domain "
                           "(live: false moves a shut-off one)")
        xml = driver.domains.xml(name, inactive=not params["live"])
        disks = _embed().disk_sizes(driver.domains, name) if params["copy_storage"] != "none" else {}
    return {"changed": False, "present": True, "state": status.state, "xml": xml, "disks": disks}


def _perform(name: str, params: dict, check_mode: bool) -> dict:
    incoming = params["incoming"]
    if not incoming:
        raise InvalidInput("perform needs the incoming result of the destination's prepare", "incoming")
    with open_driver(params["uri"], read_only=check_mode) as driver:
        if not driver.domains.exists(name):
            raise NotFound(f"domain {name!r} does not exist on the source")
        if check_mode:
            return {"changed": True}
        stats = _embed().perform(driver.domains, name, incoming, _options(params))
    return {"changed": True, "stats": stats}


def _confirm(name: str, params: dict, check_mode: bool) -> dict:
    with open_driver(params["uri"], read_only=check_mode) as driver:
        if check_mode:
            return {"changed": driver.domains.exists(name) and (driver.domains.status(name).active
                                                                or params["undefine_source"])}
        changed = _embed().confirm(driver.domains, name, params["undefine_source"])
        return {"changed": changed, "warnings": driver.warnings}


# -- embedded: destination side ------------------------------------------------------
def _prepare(name: str, params: dict, check_mode: bool) -> dict:
    migration = _embed()
    with open_driver(params["uri"], read_only=check_mode) as driver:
        here = migration.incoming_state(driver.domains, name)
        if here not in ("absent", "incoming"):
            return {"changed": False, "present": True, "state": here}
        if not params["xml"]:
            raise InvalidInput("prepare needs the domain's definition from the source", "xml")
        if check_mode:
            migration.preflight(driver.domains, params["xml"], params["copy_storage"],
                                {t: d["allocation"] for t, d in (params["disks"] or {}).items()})
            return {"changed": True, "present": False}
        if here == "incoming":
            migration.cancel_incoming(driver.domains, name)     # the leftover of an interrupted move
        incoming = migration.prepare(driver.domains, params["xml"], _listen_address(params),
                                     params["copy_storage"], params["disks"] or {})
        return {"changed": True, "present": False, "incoming": incoming, "warnings": driver.warnings}


def _listen_address(params: dict) -> str:
    if not params["listen_address"]:
        raise InvalidInput("the destination's address for the migration stream is needed", "listen_address")
    return params["listen_address"]


def _finish(name: str, params: dict, check_mode: bool) -> dict:
    migration = _embed()
    with open_driver(params["uri"], read_only=check_mode) as driver:
        if migration.incoming_state(driver.domains, name) != "incoming":
            if driver.domains.exists(name) and driver.domains.status(name).active:
                return {"changed": False}
            raise NotFound(f"domain {name!r} has no incoming migration to finish here")
        if check_mode:
            return {"changed": True}
        migration.finish(driver.domains, name, params["persistent"])
        return {"changed": True, "warnings": driver.warnings}


def _cancel(name: str, params: dict, check_mode: bool) -> dict:
    migration = _embed()
    with open_driver(params["uri"], read_only=check_mode) as driver:
        if check_mode:
            return {"changed": migration.incoming_state(driver.domains, name) == "incoming"}
        changed = migration.cancel_incoming(driver.domains, name) or migration.cancel_outgoing(driver.domains, name)
        return {"changed": changed, "warnings": driver.warnings}


_EMBED = {"source": _source, "prepare": _prepare, "perform": _perform, "finish": _finish,
          "confirm": _confirm, "cancel": _cancel}


# -- libvirt ---------------------------------------------------------------------------
def _managed(name: str, params: dict, check_mode: bool) -> dict:
    from ansible_collections.virtops.qemu.plugins.module_utils.driver import libvirt_migration as lm
    destination = params["destination"]
    if not destination:
        raise InvalidInput("the destination's libvirt URI is needed", "destination")
    options = _options(params)
    with open_driver(params["uri"]) as source, open_driver(destination) as dest:
        here, there = source.domains.exists(name), dest.domains.exists(name)
        if not here and there:
            return {"changed": False}
        if not here:
            raise NotFound(f"domain {name!r} exists on neither {params['uri']} nor {destination}")
        _check_source_state(source.domains.status(name).state, name, params["live"])
        if there and dest.domains.status(name).active:
            raise Conflict(f"domain {name!r} runs on both {params['uri']} and {destination}")
        _libvirt_preflight(source, dest, name)
        if check_mode:
            return {"changed": True}
        elapsed, disk_total = lm.migrate(source.conn, name, destination, options)
        return {"changed": True, "stats": lm.completed_stats(dest.conn, name, elapsed, disk_total)}


def _check_source_state(state: str, name: str, live: bool) -> None:
    if live and state != "running":
        raise Conflict(f"domain {name!r} is {state}; a live migration moves a running domain")
    if not live and state != "shutoff":
        raise Conflict(f"domain {name!r} is {state}; live: false moves a shut-off domain")


def _libvirt_preflight(source, dest, name: str) -> None:
    from ansible_collections.virtops.qemu.plugins.module_utils.driver import libvirt_migration as lm
    from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import parse
    domain = parse(source.domains.xml(name), "domain")
    networks = [s.get("network") for s in domain.findall("devices/interface[@type='network']/source")]
    pools = [s.get("pool") for s in domain.findall("devices/disk/source[@pool]")]
    lm.preflight(dest.conn, networks, pools)
