# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The record of each kind, and the managers built on it: one description that every layer reads."""

from __future__ import annotations

import ast
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fakes import Exit, FakeModule, MemoryDriver
from lxml import etree
from test_storage_model import _existing, manager_of, volumes_of

from ansible_collections.virtops.qemu.plugins.module_utils.driver import base
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import layout
from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError, NotFound
from ansible_collections.virtops.qemu.plugins.module_utils.manager import (
    domain,
    network,
    pool,
    qemu_override,
    resource,
    security_label,
)
from ansible_collections.virtops.qemu.plugins.module_utils.model import domain as domain_model
from ansible_collections.virtops.qemu.plugins.module_utils.model import domain_options, kinds, schema, seclabel
from ansible_collections.virtops.qemu.plugins.module_utils.model import network as network_model
from ansible_collections.virtops.qemu.plugins.module_utils.model import pool as pool_model
from ansible_collections.virtops.qemu.plugins.module_utils.model import snapshot as snapshot_model
from ansible_collections.virtops.qemu.plugins.module_utils.model import volume as volume_model
from ansible_collections.virtops.qemu.plugins.module_utils.model.volume import VolumeFacts
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import parse
from ansible_collections.virtops.qemu.plugins.module_utils.module_glue import run
from ansible_collections.virtops.qemu.plugins.module_utils.secrets import MASK

MODULES = Path(__file__).resolve().parents[3].parent / "plugins" / "modules"
# The kinds a module of the same name manages, through the record's request builder.
MODULE_OF = {"domain": "domain", "network": "network", "pool": "pool", "volume": "volume", "snapshot": "snapshot",
             "security_label": "security_label"}


def test_every_kind_has_a_record_and_every_parent_is_one():
    assert set(kinds.KINDS) == set(MODULE_OF)
    for word, kind in kinds.KINDS.items():
        assert kind.word == word and kind.plural.startswith(word)
        assert kind.parent is None or kind.parent in kinds.KINDS
    assert {kind.word for kind in kinds.top_level()} == {"domain", "network", "pool"}
    assert kinds.VOLUME.parent == "pool" and kinds.SNAPSHOT.parent == "domain"


@pytest.mark.parametrize("kind", [k for k in kinds.KINDS.values() if k.schema], ids=lambda k: k.word)
def test_each_schema_is_one_libvirt_ships(kind):
    assert os.path.exists(os.path.join(schema.SCHEMA_DIR, f"{kind.schema}.rng"))
    assert schema.schema(kind.schema) is not None


DOMAIN_XML = ("<domain type='qemu'><name>vm</name><memory unit='MiB'>64</memory>"
              "<os><type arch='x86_64'>hvm</type></os><devices><disk type='file' device='disk'>"
              "<source file='/i.img'/><target dev='vda' bus='virtio'/></disk></devices></domain>")


def _rendered() -> dict:
    """The XML each kind's model makes, as it would go to the driver."""
    facts = VolumeFacts(name="v", path="/p/v", format="qcow2", capacity=1 << 20, mode="0600", owner=0, group=0)
    labels = seclabel.request_from_params({"name": "vm", "labels": [{"model": "dac", "type": "none"}]})
    return {
        "domain": domain_model.with_creation_defaults(domain_options.render({"name": "vm", "memory": "64MiB"})[0]),
        "network": network_model.render({"name": "n", "bridge": {"name": "virbr9"}})[0],
        "pool": pool_model.render({"name": "p", "type": "dir", "target": {"path": "/p"}})[0],
        "volume": etree.fromstring(volume_model.creation_xml(facts, None)),
        "snapshot": etree.fromstring(snapshot_model.creation_xml("s", "first", True)),
        "security_label": seclabel.apply(parse(DOMAIN_XML, "domain"), labels.labels, labels.disks, True),
    }


@pytest.mark.parametrize("word", sorted(MODULE_OF))
def test_the_tag_is_what_the_model_renders_and_the_schema_takes_it(word):
    kind, tree = kinds.KINDS[word], _rendered()[word]
    assert tree.tag == kind.tag
    schema.validate(tree, kind.schema or "domain")     # labels live in a domain, checked as one


@pytest.mark.parametrize("word", sorted(MODULE_OF))
def test_each_module_builds_its_request_with_the_records_builder(word):
    tree = ast.parse((MODULES / f"{MODULE_OF[word]}.py").read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names}
    calls = {ast.unparse(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    assert f"kinds.{word.upper()}.request" in calls
    assert "request_from_params" not in imported


def test_the_managers_builders_are_the_records():
    assert domain.request_from_params is kinds.DOMAIN.request
    assert network.request_from_params is kinds.NETWORK.request
    assert pool.request_from_params is kinds.POOL.request
    assert security_label.request_from_params is kinds.SECURITY_LABEL.request


def test_drivers_and_the_embedded_layout_read_the_records():
    for driver_kind in (base.Domains, base.Networks, base.Pools, base.Volumes, base.Snapshots):
        assert driver_kind.kind in kinds.KINDS
    assert layout.KIND_DIRS == {"domain": "qemu", "network": "network", "pool": "storage"}


def _hooks() -> set[str]:
    return set(re.findall(r"^``(_\w+)\(", inspect.getdoc(resource.ResourceManager) or "", re.M))


def test_a_manager_overrides_only_the_documented_hooks():
    hooks = _hooks()
    assert len(hooks) <= 8 and {"_shape", "_steps", "_transition", "_finish"} <= hooks
    shared = {name for name, _function in inspect.getmembers(resource.ResourceManager, inspect.isfunction)}
    for manager in (domain.BaseDomainManager, domain.DomainManager, network.NetworkManager, pool.PoolManager,
                    security_label.SecurityLabelManager, qemu_override.QemuOverrideManager):
        overridden = {name for name in vars(manager) if name in shared and name != "__init__"}
        assert overridden <= hooks, (manager.__name__, overridden - hooks)
        # A method of its own is a helper the manager calls, not a hook the base no longer has.
        source = inspect.getsource(manager)
        for name, member in vars(manager).items():
            if callable(member) and name.startswith("_") and not name.startswith("__") and name not in shared:
                assert re.search(rf"\b{name}\(", source.replace(f"def {name}(", "")), (manager.__name__, name)


# -- security labels go through ensure and module_glue ------------------------------------------
def _labelled_domain() -> MemoryDriver:
    d = MemoryDriver()
    d.domains.define(DOMAIN_XML.replace("</devices>", "<graphics type='vnc' port='-1' passwd='sekrit'/></devices>"))
    d.calls.clear()
    return d


def _labels(d: MemoryDriver, check: bool, **params) -> dict:
    req = kinds.SECURITY_LABEL.request({"name": "vm", "check_access": False, **params})
    return security_label.SecurityLabelManager(d.domains).ensure(req, check)


def test_labels_are_set_once_and_check_mode_predicts_it():
    d = _labelled_domain()
    dac = {"labels": [{"model": "dac", "type": "static", "label": "+0:+0", "relabel": False}]}
    predicted = _labels(d, True, **dac)
    assert predicted["changed"] and d.calls == [] and "seclabel" not in d.domains.xml("vm")
    done = _labels(d, False, **dac)
    assert done["changed"] and done["xml"] == predicted["xml"] and "seclabel" in d.domains.xml("vm")
    assert set(done) == {"changed", "name", "xml", "labels", "disks", "live_labels", "restart_required", "diff"}
    assert not _labels(d, False, **dac)["changed"]
    removed = _labels(d, False, state="absent", labels=[{"model": "dac"}])
    assert removed["changed"] and "seclabel" not in d.domains.xml("vm") and d.domains.exists("vm")


def test_a_label_result_is_masked_by_module_glue():
    d = _labelled_domain()
    result = _labels(d, False, labels=[{"model": "dac", "type": "none"}])
    assert "passwd='sekrit'" in result["xml"].replace('"', "'")
    module = FakeModule(True)
    with pytest.raises(Exit) as done:
        run(module, lambda: result)
    shown = done.value.result
    assert "sekrit" not in str(shown) and f'passwd="{MASK}"' in shown["xml"]


# -- volumes run on the common step loop ------------------------------------------------------
def test_a_volume_failing_after_a_first_change_says_what_was_done_with_the_common_partial_result():
    volumes = volumes_of(_existing())

    def refuse(*_args):
        raise BackendError("chown: not permitted")
    volumes.set_permissions = refuse
    req = volume_model.request_from_params({"pool": "p", "name": "v", "capacity": "32MiB", "mode": "0644"})
    with pytest.raises(BackendError) as caught:
        manager_of(volumes).ensure(req, False)
    error = caught.value
    assert str(error) == "volume 'v' was resized but its permissions could not be set: chown: not permitted"
    assert set(error.result) == {"changed", "pool", "name", "xml", "diff"} and error.result["changed"] is True
    assert "33554432" in error.result["diff"]["after"] and "16777216" in error.result["diff"]["before"]


# -- qemu_override: a manager of one part of a domain, on the same hooks ---------------------------
def _override(d: MemoryDriver, check: bool = False, **params) -> dict:
    req = qemu_override.request_from_params({"name": "vm", **params})
    return qemu_override.QemuOverrideManager(d).ensure(req, check)


def test_qemu_override_changes_a_running_domain_once_and_restarts_it_when_asked():
    d = MemoryDriver()
    d.domains.define(DOMAIN_XML)
    d.domains.start("vm")
    first = _override(d, commandline={"args": ["-no-shutdown"]})
    assert first["changed"] and first["restart_required"] and "qemu:commandline" in d.domains.xml("vm")
    again = _override(d, commandline={"args": ["-no-shutdown"]})
    assert not again["changed"] and again["restart_required"]
    restarted = _override(d, commandline={"args": ["-no-shutdown"]}, restart=True)
    assert restarted["changed"] and not restarted["restart_required"]
    assert "qemu:commandline" in d.domains.xml("vm", inactive=False)
    with pytest.raises(NotFound, match="^domain 'other' is not defined; qemu_override changes existing domains"):
        _override(d, name="other", commandline={"args": []})


def test_the_registry_loads_no_kind_model_until_a_record_is_used():
    """Reading the records costs a module call nothing: a kind's model loads when its builder or rules are asked."""
    package = "ansible_collections.virtops.qemu.plugins.module_utils.model"
    code = ("import sys\n"
            f"from {package} import kinds\n"
            "assert kinds.KINDS['volume'].tag == 'volume'\n"
            f"models = [m for m in ('domain', 'domain_request', 'network', 'pool', 'volume', 'seclabel', 'snapshot')"
            f" if '{package}.' + m in sys.modules]\n"
            "assert not models, models\n"
            "kinds.VOLUME.request\n"
            f"assert '{package}.volume' in sys.modules and '{package}.domain' not in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert proc.returncode == 0, proc.stderr
