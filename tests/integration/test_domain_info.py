"""What domain_info reports about running domains and about a listing with a broken domain.

Runs on both backends (the ``backend`` fixture); the checks compare the
module's answer with the host: the QEMU process, the live definition, the
persistent one.
"""

from __future__ import annotations

import os

import pytest
from test_domain import domain, guest_options, parsed

from harness.ansible import run_module, run_module_calls

pytestmark = [pytest.mark.guest]

QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"


def info(backend, name: str | None = None) -> dict:
    """The listing, or the domain named ``name`` (which must exist)."""
    answer = run_module("domain_info", {"uri": backend.uri, **({"name": name} if name else {})})
    if name is None or answer.get("failed"):
        return answer
    assert answer["exists"], answer
    return answer["domain"]


def qemu_cmdline(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as handle:
        return handle.read().decode().split("\0")


def test_running_domain_shows_its_live_side(backend, guest, workdir, vm):
    domain(backend, guest_options(vm, guest, workdir))
    stopped = info(backend, vm)
    assert (stopped["pid"], stopped["id"], stopped["taints"], stopped["live_xml"]) == (None, None, [], None)
    assert stopped["restart_required"] is False
    domain(backend, {"name": vm, "state": "running"})
    running = info(backend, vm)
    assert running["id"] > 0 and running["taints"] == []
    assert "qemu-system-x86_64" in qemu_cmdline(running["pid"])[0]
    assert f"guest={vm}" in ",".join(qemu_cmdline(running["pid"]))
    live = parsed(running["live_xml"])
    assert live.get("id") == str(running["id"]) and live.findtext("name") == vm
    assert running["restart_required"] is False
    assert domain(backend, {"name": vm, "vcpus": 2})["restart_required"]
    assert info(backend, vm)["restart_required"] is True


def test_qemu_commandline_taints_the_domain(backend, guest, workdir, vm):
    domain(backend, guest_options(vm, guest, workdir))
    tree = parsed(backend.stored_xml(vm))
    commandline = tree.makeelement(f"{{{QEMU_NS}}}commandline", nsmap={"qemu": QEMU_NS})
    commandline.append(tree.makeelement(f"{{{QEMU_NS}}}env", {"name": "VIRTOPS_TAINT", "value": "1"}))
    tree.append(commandline)
    from lxml import etree
    result = domain(backend, {"name": vm, "xml": etree.tostring(tree, encoding="unicode"), "state": "running"})
    assert result["changed"] and result["state"] == "running", result
    assert "custom-argv" in info(backend, vm)["taints"]


def test_listing_survives_a_domain_that_cannot_be_read(embed_backend, guest, workdir):
    good = "virtops-info-good"
    domain(embed_backend, guest_options(good, guest, workdir))
    broken = os.path.join(embed_backend.root, "etc", "qemu", "virtops-info-broken.xml")
    with open(broken, "w", encoding="utf-8") as handle:
        handle.write("<domain><name>virtops-info-broken</name>")
    try:
        listed = info(embed_backend)
        assert not listed.get("failed"), listed
        by_name = {d["name"]: d for d in listed["domains"]}
        assert by_name[good]["state"] == "shutoff"
        assert set(by_name["virtops-info-broken"]) == {"name", "error"}
        assert "malformed XML" in by_name["virtops-info-broken"]["error"]
    finally:
        os.remove(broken)
        embed_backend.remove(good)


def test_a_listing_leaves_out_the_command_line_unless_asked(backend, vm):
    domain(backend, {"name": vm, "type": "qemu", "memory": "64MiB"})
    listed, asked, named, named_without = run_module_calls([
        ("domain_info", {"uri": backend.uri}),
        ("domain_info", {"uri": backend.uri, "qemu_argv": True}),
        ("domain_info", {"uri": backend.uri, "name": vm}),
        ("domain_info", {"uri": backend.uri, "name": vm, "qemu_argv": False})])
    mine = {answer_name: next(d for d in answer["domains"] if d["name"] == vm)
            for answer_name, answer in (("listed", listed), ("asked", asked))}
    assert not {"qemu_argv", "qemu_env", "qemu_argv_error"} & set(mine["listed"]), mine["listed"]
    assert mine["listed"]["state"] == "shutoff" and "<name>" in mine["listed"]["xml"]
    assert "-S" in mine["asked"]["qemu_argv"] and mine["asked"]["qemu_env"]["LC_ALL"] == "C"
    assert named["domain"]["qemu_argv"] == mine["asked"]["qemu_argv"]
    assert "qemu_argv" not in named_without["domain"] and "qemu_argv" not in named_without
    assert named_without["domain"]["state"] == "shutoff"


def test_reading_shut_off_domains_writes_nothing_to_the_root(embed_backend):
    """Neither a lock file nor anything else: a shut-off domain is read without its lock."""
    vm = "virtops-info-quiet"
    domain(embed_backend, {"name": vm, "type": "qemu", "memory": "64MiB"})
    locks = os.path.join(embed_backend.root, "run", "qemu", "locks", "domain")
    os.remove(os.path.join(locks, f"{vm}.lock"))
    before = sorted(os.walk(embed_backend.root))
    listed, named = run_module_calls([("domain_info", {"uri": embed_backend.uri}),
                                      ("domain_info", {"uri": embed_backend.uri, "name": vm})])
    assert [d["state"] for d in listed["domains"] if d["name"] == vm] == ["shutoff"], listed
    assert named["domain"]["state"] == "shutoff" and named["domain"]["qemu_argv"], named
    assert sorted(os.walk(embed_backend.root)) == before
    assert not os.path.exists(os.path.join(locks, f"{vm}.lock"))


# -- one answer for every *_info module -----------------------------------------------------
INFO_KINDS = [("domain_info", "domain", "domains"), ("network_info", "network", "networks"),
              ("pool_info", "pool", "pools")]


def test_an_unknown_name_is_an_answer_not_a_failure_and_no_name_lists_every_object(backend):
    # one playbook: each *_info module asked for an unknown name, then for everything
    calls = [(module, {"uri": backend.uri, "name": "virtops-no-such-object"}) for module, _key, _plural in INFO_KINDS]
    calls += [(module, {"uri": backend.uri}) for module, _key, _plural in INFO_KINDS]
    results = run_module_calls(calls)
    unknown, listed = results[:len(INFO_KINDS)], results[len(INFO_KINDS):]
    for (module, key, plural), answer in zip(INFO_KINDS, unknown, strict=True):
        assert not answer.get("failed") and not answer["changed"], (module, answer)
        assert answer["exists"] is False and key not in answer and plural not in answer, (module, answer)
    for (module, key, plural), answer in zip(INFO_KINDS, listed, strict=True):
        assert not answer.get("failed") and isinstance(answer[plural], list), (module, answer)
        assert "exists" not in answer and key not in answer, (module, answer)


def test_domain_info_answers_under_the_domain_key_only(backend, guest, workdir, vm):
    domain(backend, guest_options(vm, guest, workdir))
    answer = run_module("domain_info", {"uri": backend.uri, "name": vm})
    assert answer["exists"] and answer["domain"]["name"] == vm, answer
    # The copies at the top level, deprecated in 0.3.0, went in 0.5.0.
    assert not {"name", "state", "xml", "guest_agent"} & set(answer) and "deprecations" not in answer, answer
    assert vm in [d["name"] for d in info(backend)["domains"]]
