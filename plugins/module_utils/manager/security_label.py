# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bring a domain's security labels to the request, and report those in force.

The generic ResourceManager's life cycle, narrowed to one part of an
existing domain: read the persistent definition -> set or remove the
labels (model/seclabel.py, in the ``_shape`` hook) -> pre-flight access
check -> define unless check mode -> re-read -> result with diff.  Labels
never change on a running domain: a change to one is reported as
``restart_required``, as is a definition whose labels differ from those in
force.  Backend-agnostic: it speaks only the driver's ``Domains``.  Private
to the collection.
"""

from __future__ import annotations

import os
import pwd
import stat

from ansible_collections.virtops.qemu.plugins.module_utils.driver.base import Domains
from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.manager.resource import Plan, ResourceManager
from ansible_collections.virtops.qemu.plugins.module_utils.model import kinds, seclabel
from ansible_collections.virtops.qemu.plugins.module_utils.model.seclabel import (  # noqa: F401  # pylint: disable=unused-import
    LabelRequest,
    request_from_params,
)
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import XmlNode, parse

# The generic result's keys that say nothing of labels: the domain's own state, uuid and autostart.
_NOT_LABELS = ("state", "uuid", "autostart")


class SecurityLabelManager(ResourceManager[LabelRequest]):
    """The labels of one domain; ``caps_xml`` gives the QEMU user for the access check."""

    MISSING = ""

    def __init__(self, domains: Domains, caps_xml=None):
        super().__init__(domains, record=kinds.SECURITY_LABEL)
        self.domains = domains
        self._caps_xml = caps_xml

    def _shape(self, tree: XmlNode, req: LabelRequest, new: bool) -> XmlNode:
        return seclabel.apply(tree, req.labels, req.disks, not req.remove)

    def _plan_live(self, req: LabelRequest, plan: Plan) -> None:
        """A running domain keeps its labels until it restarts."""
        live = self.parse(self.objects.xml(req.name, inactive=False))
        plan.restart_required = plan.define or seclabel.differs_from_live(self.parse(plan.after_xml), live)

    def _check_plan(self, req: LabelRequest, plan: Plan) -> None:
        if plan.define and req.check_access and not req.remove:
            self.check_access(self.parse(plan.after_xml))

    def _finish(self, req: LabelRequest, plan: Plan, result: dict, check_mode: bool) -> None:
        active = self.objects.active(req.name)
        in_force = self.domains.security_labels(req.name) if active else []
        for key in _NOT_LABELS:
            del result[key]
        result.update(seclabel.summary(self.parse(plan.after_xml)))
        result["live_labels"] = [{"model": x.model, "label": x.label, "enforcing": x.enforcing} for x in in_force]
        result["restart_required"] = active and (plan.define or plan.restart_required)

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
