"""Tests of the qemu_conf manager: which file, typed settings, check mode, diff, restart."""

from __future__ import annotations

import os

import pytest

from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.manager.qemu_conf import ConfRequest, ensure

SHIPPED = '# VNC\n#\n#vnc_listen = "0.0.0.0"\n\n# user\n#user = "qemu"   # a user\n#dynamic_ownership = 1\n'


@pytest.fixture
def conf(tmp_path):
    path = tmp_path / "qemu.conf"
    path.write_text(SHIPPED)
    return path


def _request(path, **settings) -> ConfRequest:
    return ConfRequest(uri="qemu:///system", path=str(path), settings=settings)


def test_set_uncomments_example_and_needs_restart(conf):
    result = ensure(_request(conf, vnc_listen="127.0.0.2", dynamic_ownership=True), check_mode=False)
    assert result["changed"] and result["restart_required"]
    assert result["changed_keys"] == ["vnc_listen", "dynamic_ownership"]
    assert conf.read_text() == SHIPPED.replace('#vnc_listen = "0.0.0.0"', 'vnc_listen = "127.0.0.2"') \
        .replace("#dynamic_ownership = 1", "dynamic_ownership = 1")
    assert result["settings"] == {"vnc_listen": "127.0.0.2", "dynamic_ownership": True}
    assert result["diff"]["before"] == SHIPPED and result["diff"]["after"] == conf.read_text()
    again = ensure(_request(conf, vnc_listen="127.0.0.2", dynamic_ownership=True), check_mode=False)
    assert not again["changed"] and not again["restart_required"] and again["changed_keys"] == []


def test_check_mode_predicts_and_writes_nothing(conf):
    predicted = ensure(_request(conf, user="libvirt-qemu"), check_mode=True)
    assert conf.read_text() == SHIPPED
    real = ensure(_request(conf, user="libvirt-qemu"), check_mode=False)
    assert predicted == real


def test_absent_comments_out_and_ignores_values(conf):
    ensure(_request(conf, vnc_listen="1.2.3.4"), check_mode=False)
    result = ensure(ConfRequest(path=str(conf), settings={"vnc_listen": "whatever"}, state="absent"), False)
    assert result["changed"] and "vnc_listen" not in result["settings"]
    assert "#vnc_listen = " in conf.read_text()


def test_null_value_returns_key_to_default(conf):
    ensure(_request(conf, vnc_listen="1.2.3.4"), check_mode=False)
    assert ensure(_request(conf, vnc_listen=None), check_mode=False)["changed_keys"] == ["vnc_listen"]


@pytest.mark.parametrize(("settings", "needle"), [
    ({"dynamic_ownership": "maybe"}, "settings.dynamic_ownership: expected a boolean"),
    ({"cgroup_device_acl": "/dev/null"}, "settings.cgroup_device_acl: expected a list of strings"),
    ({"vnc_lisen": "x"}, "settings.vnc_lisen: unknown qemu.conf setting (did you mean vnc_listen?)"),
    ({"max_files": -1}, "settings.max_files: expected a non-negative integer"),
])
def test_bad_settings_name_the_key_and_change_nothing(conf, settings, needle):
    with pytest.raises(InvalidInput) as error:
        ensure(ConfRequest(path=str(conf), settings={"user": "x", **settings}), check_mode=False)
    assert needle in str(error.value)
    assert conf.read_text() == SHIPPED


def test_unknown_key_allowed_as_string(conf):
    result = ensure(ConfRequest(path=str(conf), settings={"future_knob": "on"}, allow_unknown_keys=True), False)
    assert result["changed"] and conf.read_text().endswith('future_knob = "on"\n')


def test_remote_uri_is_refused(conf):
    with pytest.raises(InvalidInput, match="^uri: .*remote URI"):
        ensure(ConfRequest(uri="qemu+ssh://host/system", path=str(conf), settings={"user": "x"}), False)


def test_embed_root_file_is_created_and_needs_no_restart(tmp_path):
    root = tmp_path / "root"
    settings = {"vnc_listen": "127.0.0.3", "mac_filter": True}
    result = ensure(ConfRequest(uri=f"qemu:///embed?root={root}", settings=settings), False)
    assert result["path"] == str(root / "etc" / "qemu.conf")
    assert (root / "etc" / "qemu.conf").read_text() == 'vnc_listen = "127.0.0.3"\nmac_filter = 1\n'
    assert not result["restart_required"]
    assert result["warnings"] == ["the embedded driver ignores mac_filter"]
    assert oct(os.stat(root / "etc").st_mode & 0o777) == "0o700"


def test_a_password_is_written_and_unset_leaves_no_copy_of_it(conf):
    ensure(_request(conf, vnc_password="s3cret"), check_mode=False)
    assert 'vnc_password = "s3cret"' in conf.read_text()
    removed = ensure(ConfRequest(path=str(conf), settings={"vnc_password": None}, state="absent"), False)
    assert removed["changed_keys"] == ["vnc_password"] and "vnc_password" not in removed["settings"]
    assert "s3cret" not in conf.read_text() and '#vnc_password = ""' in conf.read_text()


def test_backup_is_taken_before_a_change(conf):
    copies = []
    ensure(ConfRequest(path=str(conf), settings={"user": "u"}, backup=True), False,
           backup=lambda path: copies.append(open(path).read()) or path + ".bak")
    assert copies == [SHIPPED]
