# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Security labels of a domain: ``<seclabel>`` of the domain and of its disk sources.

A label is identified by its model (selinux, apparmor, dac): the domain has
at most one ``<seclabel>`` per model, and so has each disk's ``<source>``.
Setting a label replaces the element of that model whole, so switching its
type (dynamic -> none) leaves nothing of the old one behind (no stale
``relabel`` or ``<label>``).  Private to the collection.
"""

from __future__ import annotations

import copy
import grp
import pwd
from dataclasses import dataclass, field

from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.model.request import ResourceRequest
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import element, sub

MODELS = ("selinux", "apparmor", "dac")
TYPES = ("dynamic", "static", "none")


@dataclass
class Label:
    """One domain label as the module's options give it."""
    model: str
    type: str = "dynamic"
    relabel: bool | None = None
    label: str | None = None
    imagelabel: str | None = None
    baselabel: str | None = None


@dataclass
class DiskLabel:
    model: str
    relabel: bool | None = None
    label: str | None = None


@dataclass
class DiskLabels:
    target: str
    labels: list[DiskLabel] = field(default_factory=list)


def label_from_options(options: dict, where: str) -> Label:
    model = _choice(options.get("model"), MODELS, f"{where}.model")
    kind = _choice(options.get("type") or "dynamic", TYPES, f"{where}.type")
    found = Label(model, kind, options.get("relabel"), options.get("label"), options.get("imagelabel"),
                  options.get("baselabel"))
    _check_label(found, where)
    return found


def disk_label_from_options(options: dict, where: str) -> DiskLabel:
    model = _choice(options.get("model"), MODELS, f"{where}.model")
    found = DiskLabel(model, options.get("relabel"), options.get("label"))
    if found.relabel is False and found.label:
        raise InvalidInput("a label that is not applied (relabel: false) cannot name one", f"{where}.label")
    return found


def _choice(value, choices: tuple[str, ...], option: str) -> str:
    if value not in choices:
        raise InvalidInput(f"{value!r} is not one of {', '.join(choices)}", option)
    return value


def _check_label(found: Label, where: str) -> None:
    if found.type == "static" and not found.label:
        raise InvalidInput("a static label needs the label itself", f"{where}.label")
    if found.type == "dynamic":
        if found.relabel is False:
            raise InvalidInput("a dynamic label always relabels resources; use type static or none",
                               f"{where}.relabel")
        if found.label or found.imagelabel:
            raise InvalidInput("a dynamic label is generated at start; give only its baselabel",
                               f"{where}.label")
    if found.type == "none":
        for name in ("relabel", "label", "imagelabel", "baselabel"):
            if getattr(found, name) is not None:
                raise InvalidInput(f"a label of type none takes no {name}", f"{where}.{name}")
    if found.type != "dynamic" and found.baselabel:
        raise InvalidInput("only a dynamic label has a baselabel", f"{where}.baselabel")
    if found.model == "dac" and found.label and ":" not in found.label:
        raise InvalidInput(f"a DAC label is 'USER:GROUP' or '+UID:+GID', not {found.label!r}", f"{where}.label")


def render_label(found: Label):
    node = element("seclabel", type=found.type, model=found.model)
    if found.relabel is not None:
        node.set("relabel", "yes" if found.relabel else "no")
    for name in ("label", "imagelabel", "baselabel"):
        if getattr(found, name):
            sub(node, name).text = getattr(found, name)
    return node


def render_disk_label(found: DiskLabel):
    node = element("seclabel", model=found.model)
    if found.relabel is not None:
        node.set("relabel", "yes" if found.relabel else "no")
    if found.label:
        sub(node, "label").text = found.label
    return node


def disk_source(domain, target: str, where: str):
    """The <source> of the disk with this target dev; InvalidInput naming the option when there is none."""
    for disk in domain.findall("devices/disk"):
        node = disk.find("target")
        if node is not None and node.get("dev") == target:
            source = disk.find("source")
            if source is None:
                raise InvalidInput(f"disk {target} has no source to label (an empty drive)", where)
            return source
    known = [d.get("dev") for d in domain.findall("devices/disk/target")]
    raise InvalidInput(f"the domain has no disk {target!r} (its disks: {', '.join(known) or 'none'})", where)


def apply(domain, labels: list[Label], disks: list[DiskLabels], present: bool):
    """A copy of the domain with the labels set (present) or removed (absent, by model)."""
    result = copy.deepcopy(domain)
    for found in labels:
        _replace(result, result.find(f"seclabel[@model='{found.model}']"),
                 render_label(found) if present else None, result)
    for index, entry in enumerate(disks):
        source = disk_source(result, entry.target, f"disks[{index}].target")
        for item in entry.labels:
            _replace(source, source.find(f"seclabel[@model='{item.model}']"),
                     render_disk_label(item) if present else None, None)
    return result


def _replace(parent, old, new, domain) -> None:
    if old is not None and new is not None:
        new.tail = old.tail
        parent.replace(old, new)
    elif old is not None:
        parent.remove(old)
    elif new is not None:
        anchor = (parent.findall("seclabel") or parent.findall("devices") or [None])[-1] \
            if domain is not None else None
        if anchor is not None:
            anchor.addnext(new)
        else:
            parent.append(new)


def summary(domain) -> dict:
    """The labels of a definition as plain data: the domain's and those of each disk."""
    disks = {}
    for disk in domain.findall("devices/disk"):
        target = disk.find("target")
        labels = disk.findall("source/seclabel")
        if target is not None and labels:
            disks[target.get("dev")] = [_as_dict(node) for node in labels]
    return {"labels": [_as_dict(node) for node in domain.findall("seclabel")], "disks": disks}


def _as_dict(node) -> dict:
    found = {key: node.get(key) for key in ("model", "type", "relabel") if node.get(key) is not None}
    for name in ("label", "imagelabel", "baselabel"):
        if node.findtext(name):
            found[name] = node.findtext(name)
    return found


def differs_from_live(config, live) -> bool:
    """The labels of the definition are not those in force on the running domain."""
    for node in config.findall("seclabel"):
        model = node.get("model")
        running = live.find(f"seclabel[@model='{model}']")
        if running is None:
            if node.get("type") != "none":
                return True
            continue
        if running.get("type") != node.get("type"):
            return True
        if node.get("type") == "static" and running.findtext("label") != node.findtext("label"):
            return True
        if node.get("relabel") is not None and running.get("relabel") != node.get("relabel"):
            return True
    for disk in config.findall("devices/disk"):
        target = disk.find("target")
        if target is None:
            continue
        shown = live.find(f"devices/disk/target[@dev='{target.get('dev')}']/..")
        if shown is None or summary_of_source(disk) != summary_of_source(shown):
            return True
    return False


def summary_of_source(disk) -> list[dict]:
    return [_as_dict(node) for node in disk.findall("source/seclabel")]


def parse_dac_label(text: str, option: str) -> tuple[int, int]:
    """(uid, gid) of a DAC label: ``+UID:+GID``, or ``USER:GROUP`` resolved on this host."""
    user, sep, group = (text or "").strip().partition(":")
    if not sep or not user or not group:
        raise InvalidInput(f"a DAC label is 'USER:GROUP' or '+UID:+GID', not {text!r}", option)
    try:
        uid = int(user[1:]) if user.startswith("+") else pwd.getpwnam(user).pw_uid
        gid = int(group[1:]) if group.startswith("+") else grp.getgrnam(group).gr_gid
    except (KeyError, ValueError) as exc:
        raise InvalidInput(f"DAC label {text!r} names no user or group of this host", option) from exc
    return uid, gid


# -- the module's request ---------------------------------------------------------
@dataclass
class LabelRequest(ResourceRequest):
    """The labels of the domain ``name``, which stays as it is otherwise (its ``state`` is always present)."""

    remove: bool = False                # the module's state=absent: remove the labels of the listed models
    labels: list[Label] = field(default_factory=list)
    disks: list[DiskLabels] = field(default_factory=list)
    check_access: bool = True

    def reads_definition(self) -> bool:
        return True


def request_from_params(params: dict) -> LabelRequest:
    remove = (params.get("state") or "present") == "absent"
    if remove:
        params = _models_only(params)
    labels = [label_from_options(item, f"labels[{index}]") for index, item in enumerate(params.get("labels") or [])]
    _unique([x.model for x in labels], "labels", "model")
    disks = []
    for index, entry in enumerate(params.get("disks") or []):
        items = [disk_label_from_options(item, f"disks[{index}].labels[{number}]")
                 for number, item in enumerate(entry.get("labels") or [])]
        _unique([x.model for x in items], f"disks[{index}].labels", "model")
        disks.append(DiskLabels(entry["target"], items))
    _unique([d.target for d in disks], "disks", "target")
    return LabelRequest(params["name"], remove=remove, labels=labels, disks=disks,
                        check_access=params.get("check_access", True))


def _models_only(params: dict) -> dict:
    """Only the models matter when removing; the other options' defaults must not fail validation."""
    return dict(params, labels=[{"model": item["model"], "type": "none"} for item in params.get("labels") or []],
                disks=[{"target": d["target"], "labels": [{"model": x["model"]} for x in d.get("labels") or []]}
                       for d in params.get("disks") or []])


def _unique(values: list[str], option: str, key: str) -> None:
    for value in values:
        if values.count(value) > 1:
            raise InvalidInput(f"{key} {value!r} is given twice", option)
