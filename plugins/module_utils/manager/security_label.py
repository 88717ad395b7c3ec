# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bring a domain's security labels to the request, and report those in force.

The generic ResourceManager's life cycle, narrowed to one part of an
existing domain: read the persistent definition -> set or remove the
labels (model/seclabel.py) -> pre-flight access check -> define unless
check mode -> re-read -> result with diff.  Labels never change on a running
domain: a change to one is reported as ``restart_required``, as is a
definition whose labels differ from those in force.  Backend-agnostic: it
speaks only the driver's ``Domains``.  Private to the collection.
"""

from __future__ import annotations

import os
import pwd
import stat
from dataclasses import dataclass, field

from ansible_collections.virtops.qemu.plugins.module_utils.driver.base import Domains
from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput, NotFound
from ansible_collections.virtops.qemu.plugins.module_utils.manager.resource import Plan, ResourceManager
from ansible_collections.virtops.qemu.plugins.module_utils.model import seclabel
from ansible_collections.virtops.qemu.plugins.module_utils.model.merge import Rules
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import parse, to_string


@dataclass
class LabelRequest:
    name: str
    state: str = "present"              # present: set the labels; absent: remove those of the listed models
    labels: list[seclabel.Label] = field(default_factory=list)
    disks: list[seclabel.DiskLabels] = field(default_factory=list)
    check_access: bool = True


def request_from_params(params: dict) -> LabelRequest:
    labels = [seclabel.label_from_options(item, f"labels[{index}]")
              for index, item in enumerate(params.get("labels") or [])]
    _unique([x.model for x in labels], "labels", "model")
    disks = []
    for index, entry in enumerate(params.get("disks") or []):
        items = [seclabel.disk_label_from_options(item, f"disks[{index}].labels[{number}]")
                 for number, item in enumerate(entry.get("labels") or [])]
        _unique([x.model for x in items], f"disks[{index}].labels", "model")
        disks.append(seclabel.DiskLabels(entry["target"], items))
    _unique([d.target for d in disks], "disks", "target")
    return LabelRequest(params["name"], params.get("state") or "present", labels, disks,
                        params.get("check_access", True))


def _unique(values: list[str], option: str, key: str) -> None:
    for value in values:
        if values.count(value) > 1:
            raise InvalidInput(f"{key} {value!r} is given twice", option)


class SecurityLabelManager(ResourceManager):
    """The labels of one domain; ``caps_xml`` gives the QEMU user for the access check."""

    def __init__(self, domains: Domains, caps_xml=None):
        super().__init__(domains, Rules())
        self.domains = domains
        self._caps_xml = caps_xml

    def ensure_labels(self, req: LabelRequest, check_mode: bool) -> dict:
        if not self.objects.exists(req.name):
            raise NotFound(f"domain {req.name!r} is not defined")
        before, before_xml = self._stored(req.name)
        after = seclabel.apply(before, req.labels, req.disks, req.state == "present")
        after_xml = to_string(after)
        plan = Plan(before_xml, after_xml, after_xml != before_xml, "", [], False)
        if plan.define and req.check_access and req.state == "present":
            self.check_access(after)
        if plan.define and not check_mode:
            self._apply(_define_only(req), plan)
        return self._labels_result(req, plan, parse(plan.after_xml, "domain"))

    def _labels_result(self, req: LabelRequest, plan: Plan, after) -> dict:
        active = self.objects.active(req.name)
        in_force = self.domains.security_labels(req.name) if active else []
        live = parse(self.objects.xml(req.name, inactive=False), "domain") if active else None
        restart = active and (plan.define or seclabel.differs_from_live(after, live))
        return {
            "changed": plan.define,
            "name": req.name,
            "xml": plan.after_xml,
            **seclabel.summary(after),
            "live_labels": [{"model": x.model, "label": x.label, "enforcing": x.enforcing} for x in in_force],
            "restart_required": restart,
            "diff": {"before": plan.before_xml, "after": plan.after_xml},
        }

    # -- pre-flight ---------------------------------------------------------------
    def check_access(self, domain) -> None:
        """Fail naming the first path QEMU's user could not reach (a parent without search permission)."""
        owner = self._qemu_owner(domain)
        if owner is None or owner[0] == 0:
            return
        uid, gid = owner
        groups = _groups(uid, gid)
        for option, path, need in _domain_paths(domain):
            problem = blocked(path, uid, groups, need)
            if problem:
                raise InvalidInput(f"QEMU runs as {uid}:{gid} and cannot reach {path}: {problem}; give it "
                                   "access (chmod o+x on the directories) or set check_access: false", option)

    def _qemu_owner(self, domain) -> tuple[int, int] | None:
        label = domain.find("seclabel[@model='dac']")
        if label is not None and label.get("type") == "static" and label.findtext("label"):
            return _numeric(label.findtext("label"))
        if self._caps_xml is None:
            return None
        caps = parse(self._caps_xml(), "capabilities", "capabilities")
        base = caps.find(f"host/secmodel[model='dac']/baselabel[@type='{domain.get('type') or 'qemu'}']")
        return _numeric(base.text) if base is not None and base.text else None


def _define_only(req: LabelRequest):
    """A ResourceRequest for the generic define step (the plan is made; only acting remains)."""
    from ansible_collections.virtops.qemu.plugins.module_utils.manager.resource import ResourceRequest

    return ResourceRequest(name=req.name)


def _numeric(label: str) -> tuple[int, int] | None:
    try:
        return seclabel.parse_dac_label(label, "seclabel")
    except InvalidInput:
        return None


def _groups(uid: int, gid: int) -> set[int]:
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        return {gid}
    return set(os.getgrouplist(entry.pw_name, gid)) | {gid}


def _domain_paths(domain) -> list[tuple[str, str, str]]:
    """(option, path, permission needed on the file: "" when DAC will give QEMU the file) of each file."""
    dac = domain.find("seclabel[@model='dac']")
    relabel = not (dac is not None and (dac.get("relabel") == "no" or dac.get("type") == "none"))
    found = []
    for disk in domain.findall("devices/disk"):
        source, target = disk.find("source"), disk.find("target")
        path = source.get("file") or source.get("dev") if source is not None else None
        if not path:
            continue
        own = source.find("seclabel[@model='dac']")
        readonly = disk.find("readonly") is not None
        keeps = not relabel or (own is not None and own.get("relabel") == "no")
        need = ("r" if readonly else "rw") if keeps else ""
        found.append((f"disks[{target.get('dev') if target is not None else '?'}]", path, need))
    for tag in ("kernel", "initrd", "dtb"):
        path = (domain.findtext(f"os/{tag}") or "").strip()
        if path:
            found.append((f"os/{tag}", path, "" if relabel else "r"))
    nvram = (domain.findtext("os/nvram") or "").strip()
    if nvram and os.path.exists(nvram):
        found.append(("os/nvram", nvram, "" if relabel else "rw"))
    return found


_BITS = {"r": 4, "w": 2, "x": 1}


def blocked(path: str, uid: int, groups: set[int], need: str) -> str:
    """Why ``uid`` with ``groups`` cannot reach ``path`` and use it as ``need`` says; "" when it can."""
    parts = os.path.abspath(path).split(os.sep)[1:]
    directory = os.sep
    for part in parts[:-1]:
        problem = _lacks(directory, uid, groups, "x", "search")
        if problem:
            return problem
        directory = os.path.join(directory, part)
    problem = _lacks(directory, uid, groups, "x", "search") if directory != os.sep else ""
    if problem:
        return problem
    if not os.path.lexists(path):
        return f"{path} does not exist"
    return _lacks(path, uid, groups, need, "read" if need == "r" else "read and write") if need else ""


def _lacks(path: str, uid: int, groups: set[int], need: str, words: str) -> str:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return f"{path} does not exist"
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid == uid:
        granted = mode >> 6
    elif info.st_gid in groups:
        granted = mode >> 3
    else:
        granted = mode
    wanted = sum(_BITS[c] for c in need)
    if granted & wanted == wanted:
        return ""
    kind = "directory" if stat.S_ISDIR(info.st_mode) else "file"
    return f"no {words} permission on {kind} {path} (mode {mode:04o}, owner {info.st_uid}:{info.st_gid})"
