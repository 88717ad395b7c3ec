# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The security of the embedded driver's domains: which managers are in force, and what they do.

The managers are picked from ``ROOT/etc/qemu.conf`` and the host, as
libvirt's QEMU driver picks them: ``security_driver`` (unset: the first of
SELinux and AppArmor the host has, else none; ``"none"``: no LSM) and, when
the driver runs as root, DAC stacked after it.  An LSM the configuration or
a domain's ``<seclabel>`` asks for that the host lacks fails the start with
a clear error.

At start (``prepare``): the QEMU user and group (qemu.conf ``user`` and
``group``, or a domain's static DAC label) get search access to the root's
state directories and their own domain directory; DAC gives them the
domain's files (dac.py); the LSM labels are allocated; the device cgroup is
made (cgroup.py).  QEMU is spawned from inside its cgroup (``spawning``)
and through ``setpriv`` (``exec_prefix``), which enters the LSM label, then
drops to the QEMU user and group with their supplementary groups before it
executes QEMU: no code of ours runs between fork and exec.  At stop, or when a crash is
cleaned up (``release``), everything is given back from what the status
record says was done, so a changed qemu.conf cannot make a stop forget.
Private to the collection.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.security import apparmor, dac, selinux
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.security.dac import Owner
from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError, InvalidInput, host_error
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import sub

if TYPE_CHECKING:
    from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.security.cgroup import Spawner

LSMS = ("selinux", "apparmor")
SETPRIV = "setpriv"     # util-linux
DRIVERS = (*LSMS, "none")
# What a host without the LSM lacks, for the error message.
_MISSING = {"selinux": f"SELinux is not enabled ({selinux.SELINUXFS}/enforce does not exist)",
            "apparmor": f"AppArmor is not enabled ({apparmor.ENABLED} is not Y or "
                        f"{apparmor.SECURITYFS} is missing)"}


def host_lsms() -> list[str]:
    """The LSMs this host has, in the order libvirt tries them."""
    found = []
    if selinux.available():
        found.append("selinux")
    if apparmor.available():
        found.append("apparmor")
    return found


@dataclass
class Policy:
    """The security configuration of one root, read from its qemu.conf."""

    models: list[str]                   # the stack, primary first: "selinux"/"apparmor"/"none", then "dac"
    owner: Owner | None                 # qemu.conf user/group; None: QEMU runs as the caller
    groups: list[int] = field(default_factory=list)     # supplementary groups of that user
    dynamic_ownership: bool = True
    remember_owner: bool = True
    device_acl: list[str] | None = None
    cgroup_devices: bool = True
    refused: str = ""                   # why the configured LSM cannot be used on this host


def policy(conf: dict, privileged: bool | None = None, lsms: list[str] | None = None) -> Policy:
    privileged = os.geteuid() == 0 if privileged is None else privileged
    lsms = host_lsms() if lsms is None else lsms
    models, refused = _stack(conf.get("security_driver"), lsms)
    owner, groups = _identity(conf) if privileged else (None, [])
    controllers = conf.get("cgroup_controllers")
    return Policy(
        models=models + ["dac"] * privileged, owner=owner, groups=groups,
        dynamic_ownership=conf.get("dynamic_ownership", True) is not False,
        remember_owner=conf.get("remember_owner", True) is not False,
        device_acl=conf.get("cgroup_device_acl"),
        cgroup_devices=privileged and (controllers is None or "devices" in controllers),
        refused=refused)


def _stack(setting, lsms: list[str]) -> tuple[list[str], str]:
    if setting is None:
        return (lsms[:1] or ["none"]), ""
    names = [setting] if isinstance(setting, str) else list(setting)
    for name in names:
        if name not in DRIVERS:
            raise InvalidInput(f"unknown security driver {name!r}; known: {', '.join(DRIVERS)}",
                               "qemu.conf security_driver")
    missing = [n for n in names if n in LSMS and n not in lsms]
    refused = "; ".join(f"security_driver {n!r} is set in qemu.conf but {_MISSING[n]}" for n in missing)
    return [n for n in names if n not in missing] or ["none"], refused


def _identity(conf: dict) -> tuple[Owner | None, list[int]]:
    user, group = conf.get("user"), conf.get("group")
    if user is None and group is None:
        return None, []
    entry = _user(user) if user is not None else None
    uid = entry.pw_uid if entry else os.getuid()
    gid = _group(group) if group is not None else (entry.pw_gid if entry else os.getgid())
    groups = os.getgrouplist(entry.pw_name, gid) if entry else [gid]
    return Owner(uid, gid), groups


def _user(text: str):
    try:
        return pwd.getpwuid(int(text[1:])) if text.startswith("+") else pwd.getpwnam(text)
    except (KeyError, ValueError) as exc:
        raise InvalidInput(f"no user {text!r} on this host", "qemu.conf user") from exc


def _group(text: str) -> int:
    try:
        return int(text[1:]) if text.startswith("+") else grp.getgrnam(text).gr_gid
    except (KeyError, ValueError) as exc:
        raise InvalidInput(f"no group {text!r} on this host", "qemu.conf group") from exc


# -- one domain ------------------------------------------------------------------
@dataclass
class Launch:
    """What the start of one domain did and what its QEMU process must do before exec."""

    owner: Owner | None = None          # QEMU runs as this; None: as the caller
    groups: list[int] = field(default_factory=list)
    relabelled: bool = False            # DAC gave the domain's files to ``owner``
    remember: bool = True
    cgroup: str = ""                    # the device cgroup, as /proc/PID/cgroup names it
    spawner: Spawner | None = None      # the thread in that cgroup that forks QEMU
    selinux_label: str = ""
    apparmor_profile: str = ""
    warnings: list[str] = field(default_factory=list)

    def record(self) -> dict[str, str]:
        """The status record's view of it (``release`` needs nothing else)."""
        found = {"remember": "yes" if self.remember else "no"}
        if self.cgroup:
            found["cgroup"] = self.cgroup
        if self.apparmor_profile:
            found["apparmor"] = self.apparmor_profile
        return found

    def close(self) -> None:
        """Let go of what only the QEMU process being started needed."""
        if self.spawner is not None:
            self.spawner.cancel()
        self.spawner = None


def check_domain(pol: Policy, config) -> None:
    """Refuse a domain whose seclabels ask for a model this host or configuration does not have."""
    if pol.refused:
        raise BackendError(f"cannot start the domain: {pol.refused}; set security_driver = \"none\" "
                           "to run without it")
    for label in config.findall("seclabel"):
        model = label.get("model") or pol.models[0]
        if label.get("type") == "none" or model in pol.models or model == "none":
            continue
        reason = _MISSING.get(model, "it is not a security model this driver knows")
        raise InvalidInput(f"the domain asks for the {model} security model, which is not in force on this "
                           f"host ({reason}); the models in force are {', '.join(pol.models)}",
                           f"seclabel[@model='{model}']")


def launch_owner(pol: Policy, config) -> Owner | None:
    """The QEMU user and group: a static DAC label of the domain, else qemu.conf's."""
    label = _dac_label(config)
    if label is not None and label.get("type") == "static" and (label.findtext("label") or "").strip():
        return dac.parse_label(label.findtext("label"), "seclabel[@model='dac']/label")
    return pol.owner


def _dac_label(config):
    return config.find("seclabel[@model='dac']")


def prepare(pol: Policy, live, layout, name: str, domain_dir: str, others: list) -> Launch:
    """Everything before QEMU starts; ``others`` are the live XMLs of the root's other running domains."""
    check_domain(pol, live)
    owner = launch_owner(pol, live)
    static = owner is not None and owner != pol.owner
    launch = Launch(owner=owner, groups=[owner.gid] if owner is not None and static else list(pol.groups),
                    remember=pol.remember_owner)
    if pol.cgroup_devices:
        _device_cgroup(pol, live, layout.root, name, launch)     # first: it is made while the rest goes on
    try:
        if owner is not None and "dac" in pol.models:
            open_state_dirs(layout, domain_dir, owner)
            launch.relabelled = _relabel(pol, live, layout.nvram_file(name), owner)
        _label_lsm(pol, live, launch, others)
        _write_live_labels(live, pol, launch)
    except BaseException:
        launch.close()
        raise
    return launch


def _device_cgroup(pol: Policy, live, root: str, name: str, launch: Launch) -> None:
    """Have the domain's device cgroup made (by the thread that will spawn QEMU in it); a host without a
    v1 devices controller gets a warning instead.  A cgroup that cannot be made fails the spawn."""
    from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.security import cgroup
    hierarchy = cgroup.open_hierarchy()
    if hierarchy is None:
        launch.warnings.append(f"domain {name!r} runs without a device ACL (cgroup_device_acl): this host has no "
                               "cgroup v1 devices controller")
        return
    try:
        group = cgroup.DomainCgroup.of(hierarchy, root, name)
        launch.spawner = cgroup.Spawner(group, cgroup.domain_rules(live, pol.device_acl))
    except BaseException:
        os.close(hierarchy)
        raise
    launch.cgroup = group.name


def _relabel(pol: Policy, live, nvram: str, owner: Owner) -> bool:
    label = _dac_label(live)
    if not pol.dynamic_ownership or (label is not None and label.get("relabel") == "no"):
        return False
    for item in dac.domain_files(live, nvram, owner):
        dac.set_owner(item, pol.remember_owner)
    return True


def _label_lsm(pol: Policy, live, launch: Launch, others: list) -> None:
    primary = pol.models[0]
    label = live.find(f"seclabel[@model='{primary}']")
    if label is not None and label.get("type") == "none":
        return
    if primary == "selinux":
        used = {selinux.mcs_of(found) for other in others
                for found in [other.findtext("seclabel[@model='selinux']/label") or ""] if found}
        launch.selinux_label, image = selinux.dynamic_labels(used)
        for item in dac.domain_files(live, "", launch.owner or Owner(os.getuid(), os.getgid())):
            selinux.set_file_label(item.path, image)
    elif primary == "apparmor":
        uuid = (live.findtext("uuid") or "").strip()
        files = [(item.path, "rw") for item in dac.domain_files(live, "", Owner(0, 0))]
        emulator = (live.findtext("devices/emulator") or "").strip()
        apparmor.load(apparmor.profile_text(uuid, emulator, files, os.path.exists(apparmor.ABSTRACTION)))
        launch.apparmor_profile = apparmor.profile_name(uuid)


def _write_live_labels(live, pol: Policy, launch: Launch) -> None:
    """The labels in force, in the live XML as libvirt shows them (one per model acted on).

    Static labels and ``type='none'`` (no labelling by that model) stay as
    defined, as in libvirt's live XML; dynamic ones are replaced by what was used.
    """
    for old in live.findall("seclabel"):
        if old.get("type") not in ("static", "none"):
            live.remove(old)
    if launch.selinux_label:
        _live_label(live, "selinux", launch.selinux_label, True)
    if launch.apparmor_profile:
        _live_label(live, "apparmor", launch.apparmor_profile, True)
    if launch.owner is not None and live.find("seclabel[@model='dac']") is None:
        _live_label(live, "dac", launch.owner.label, launch.relabelled)


def _live_label(live, model: str, label: str, relabel: bool) -> None:
    anchor = (live.findall("seclabel") or live.findall("devices") or [None])[-1]
    node = sub(live, "seclabel", type="dynamic", model=model, relabel="yes" if relabel else "no")
    sub(node, "label").text = label
    if model != "apparmor":
        sub(node, "imagelabel").text = label
    if anchor is not None:
        anchor.addnext(node)


def open_state_dirs(layout, domain_dir: str, owner: Owner) -> None:
    """Let QEMU's user reach its monitor, pidfile, trace file and NVRAM under the root.

    The root's directories are private to the caller (0700): QEMU's group
    gets search permission on the way down, write on ``run/qemu`` (sticky,
    so it can remove only its own pidfile), and the domain's directory is
    QEMU's own.
    """
    for directory in (layout.root, layout.path("run"), layout.path("lib"), layout.lib_dir, layout.nvram_dir):
        _grant(directory, owner.gid, 0o010)
    _grant(layout.domains.run_dir, owner.gid, 0o1070)
    try:
        os.chown(domain_dir, owner.uid, owner.gid)
    except OSError as exc:
        raise host_error(exc, "give QEMU's user its directory", domain_dir) from exc


def _grant(directory: str, gid: int, bits: int) -> None:
    try:
        info = os.stat(directory)
        if info.st_gid != gid:
            os.chown(directory, -1, gid)
        if stat.S_IMODE(info.st_mode) & bits != bits:
            os.chmod(directory, stat.S_IMODE(info.st_mode) | bits)
    except OSError as exc:
        raise host_error(exc, "open to QEMU's group", directory) from exc


def exec_prefix(launch: Launch) -> list[str]:
    """The ``setpriv`` command QEMU runs under: LSM label, then user, group and groups; [] for none."""
    args = []
    if launch.selinux_label:
        args += ["--selinux-label", launch.selinux_label]
    if launch.apparmor_profile:
        args += ["--apparmor-profile", launch.apparmor_profile]
    if launch.owner is not None:
        groups = ",".join(str(gid) for gid in launch.groups)
        args += ["--reuid", str(launch.owner.uid), "--regid", str(launch.owner.gid),
                 *(["--groups", groups] if groups else ["--clear-groups"])]
    return [SETPRIV, *args, "--"] if args else []


def spawning(launch: Launch):
    """What QEMU must be spawned by: the thread in its device cgroup (cgroup.Spawner), None for any."""
    return launch.spawner


def release(live, recorded: dict[str, str], layout, name: str) -> list[str]:
    """Give back what ``prepare`` took, from the status record; the errors, as messages."""
    errors = []
    label = live.find("seclabel[@model='dac']") if live is not None else None
    if label is not None and label.get("relabel") == "yes" and label.get("type") == "dynamic":
        owner = dac.parse_label(label.findtext("label") or "", "seclabel")
        for item in dac.domain_files(live, layout.nvram_file(name), owner):
            try:
                dac.restore_owner(item, recorded.get("remember", "yes") == "yes")
            except (BackendError, InvalidInput) as exc:
                errors.append(str(exc))
    if recorded.get("cgroup"):
        try:
            _remove_device_cgroup(recorded["cgroup"])
        except BackendError as exc:
            errors.append(str(exc))
    if recorded.get("apparmor"):
        try:
            apparmor.unload(recorded["apparmor"][len("libvirt-"):])
        except BackendError as exc:
            errors.append(str(exc))
    return errors


def _remove_device_cgroup(recorded: str) -> None:
    from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.security import cgroup
    hierarchy = cgroup.open_hierarchy()
    if hierarchy is None:
        raise BackendError(f"cannot remove the device cgroup {recorded}: this host shows no cgroup v1 devices "
                           "controller")
    try:
        cgroup.DomainCgroup.recorded(hierarchy, recorded).remove()
    finally:
        os.close(hierarchy)


def secmodels(pol: Policy) -> list[dict]:
    """libvirt's <secmodel> entries of the capabilities: model, doi and base labels."""
    out = []
    for model in pol.models:
        entry = {"model": model, "doi": "0", "baselabels": {}}
        if model == "dac":
            owner = pol.owner or Owner(os.getuid(), os.getgid())
            entry["baselabels"] = {"kvm": owner.label, "qemu": owner.label}
        elif model == "selinux":
            entry["baselabels"] = {"kvm": selinux.BASE_PROCESS, "qemu": selinux.BASE_PROCESS}
        out.append(entry)
    return out
