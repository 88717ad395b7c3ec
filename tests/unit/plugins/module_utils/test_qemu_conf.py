# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tests of the qemu.conf parser, editor and writer."""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.virtops.qemu.plugins.module_utils import qemu_conf
from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError, InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.qemu_conf import (
    KEYS,
    ConfSyntaxError,
    KeyType,
    QemuConf,
    apply_settings,
    read_conf,
    settings_from_text,
    update_conf,
    write_conf_atomic,
)
from harness.debian import FetchError, debian_qemu_conf_text

REPO = Path(__file__).resolve().parents[4]
DEBIAN_CACHE = REPO / "tests" / ".cache" / "debian-libvirt"
DEBIAN_QEMU_CONF = DEBIAN_CACHE / "etc" / "libvirt" / "qemu.conf"
KEYS_TSV = REPO / "tests" / "data" / "qemu_conf_keys.tsv"     # recent libvirt's keys (tests/data/README.md)
LENS = Path("/usr/share/augeas/lenses/libvirtd_qemu.aug")


# --- Debian's shipped qemu.conf ------------------------------------------

@pytest.fixture(scope="session")
def debian_text() -> str:
    """/etc/libvirt/qemu.conf of Debian's libvirt-daemon-system package."""
    try:
        return debian_qemu_conf_text()
    except FetchError as error:
        pytest.fail(str(error))


def _diff(before: str, after: str) -> tuple[list[str], list[str]]:
    """(removed lines, added lines) of a unified diff."""
    lines = list(difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0))
    removed = [line[1:] for line in lines if line.startswith("-") and not line.startswith("---")]
    added = [line[1:] for line in lines if line.startswith("+") and not line.startswith("+++")]
    return removed, added


def test_debian_file_round_trips_byte_for_byte(debian_text):
    assert len(debian_text) > 10000
    assert QemuConf.parse(debian_text).render() == debian_text


def test_debian_file_has_no_active_setting(debian_text):
    assert settings_from_text(debian_text) == {}
    assert QemuConf.parse(debian_text).get("user") is None


def test_every_key_documented_by_debian_is_known(debian_text):
    documented = set(re.findall(r"^#([a-z][a-z0-9_]*) = ", debian_text, re.M))
    assert len(documented) > 80
    assert documented - set(KEYS) == set()


@pytest.mark.parametrize("key, value, old_line, new_line", [
    ("user", "qemu", '#user = "libvirt-qemu"', 'user = "qemu"'),
    ("vnc_listen", "::", '#vnc_listen = "0.0.0.0"', 'vnc_listen = "::"'),
    ("security_driver", "apparmor", '#security_driver = "selinux"',
     'security_driver = "apparmor"'),
    ("dynamic_ownership", False, "#dynamic_ownership = 1", "dynamic_ownership = 0"),
    ("max_core", 0, '#max_core = "unlimited"', "max_core = 0"),
])
def test_setting_documented_key_uncomments_exactly_its_line(
        debian_text, key, value, old_line, new_line):
    conf = QemuConf.parse(debian_text)
    assert conf.set(key, value) is True
    after = conf.render()
    assert _diff(debian_text, after) == ([old_line], [new_line])
    old_index = debian_text.splitlines().index(old_line)
    assert after.splitlines()[old_index] == new_line
    assert QemuConf.parse(after).get(key) == value


def test_setting_a_list_replaces_its_commented_multiline_example(debian_text):
    conf = QemuConf.parse(debian_text)
    conf.set("cgroup_device_acl", ["/dev/null", "/dev/kvm", "/dev/net/tun"])
    removed, added = _diff(debian_text, conf.render())
    start = debian_text.splitlines().index("#cgroup_device_acl = [")
    assert removed == debian_text.splitlines()[start:start + 5]
    assert removed[-1] == "#]"
    assert added == ["cgroup_device_acl = [",
                     '    "/dev/null",', '    "/dev/kvm",', '    "/dev/net/tun"',
                     "]"]
    assert settings_from_text(conf.render()) == {
        "cgroup_device_acl": ["/dev/null", "/dev/kvm", "/dev/net/tun"]}


def test_single_line_list_example_stays_single_line(debian_text):
    conf = QemuConf.parse(debian_text)
    conf.set("namespaces", [])
    assert _diff(debian_text, conf.render()) == (['#namespaces = [ "mount" ]'],
                                                 ["namespaces = []"])
    assert conf.get("namespaces") == []


def test_unset_after_set_restores_debian_file_but_for_comment_marker(debian_text):
    conf = QemuConf.parse(debian_text)
    conf.set("user", "libvirt-qemu")
    assert conf.unset("user") is True
    assert conf.render() == debian_text


# --- editing in place ------------------------------------------------------

def test_active_key_changes_only_its_value():
    text = '# head\n  user   =  "root"   # who runs qemu\ngroup = "kvm"\n'
    conf = QemuConf.parse(text)
    assert conf.set("user", "qemu") is True
    assert conf.render() == '# head\n  user   =  "qemu"   # who runs qemu\ngroup = "kvm"\n'


def test_active_key_wins_over_commented_example():
    text = '#user = "example"\nuser = "root"\n'
    conf = QemuConf.parse(text)
    conf.set("user", "qemu")
    assert conf.render() == '#user = "example"\nuser = "qemu"\n'


def test_set_of_current_value_changes_nothing():
    text = "user = 'qemu'\nvnc_tls = 1\nmax_files = +10\n"
    conf = QemuConf.parse(text)
    assert conf.set("user", "qemu") is False
    assert conf.set("vnc_tls", True) is False
    assert conf.set("max_files", 10) is False
    assert conf.render() == text


def test_first_occurrence_is_the_effective_one():
    text = 'user = "a"\nuser = "b"\n'
    conf = QemuConf.parse(text)
    assert conf.get("user") == "a"
    conf.set("user", "c")
    assert conf.render() == 'user = "c"\nuser = "b"\n'


def test_active_multiline_list_keeps_its_layout():
    text = 'cgroup_device_acl = [\n  "/dev/null",  # bits\n  "/dev/full",\n]\nuser = "x"\n'
    conf = QemuConf.parse(text)
    conf.set("cgroup_device_acl", ["/dev/zero", "/dev/kvm"])
    assert conf.render() == 'cgroup_device_acl = [\n  "/dev/zero",\n  "/dev/kvm"\n]\nuser = "x"\n'


def test_unknown_to_the_file_key_is_appended():
    assert _set("", "vnc_tls", True) == "vnc_tls = 1\n"
    assert _set("# no newline", "max_core", "unlimited") == '# no newline\nmax_core = "unlimited"\n'
    assert _set("a = 1\r\n", "user", "q") == 'a = 1\r\nuser = "q"\r\n'


def test_canonical_example_is_preferred_to_indented_ones():
    text = '#       user = "qemu"   # named qemu\n#\n#user = "default"\n#       user = "+0"\n'
    assert _set(text, "user", "x") == '#       user = "qemu"   # named qemu\n#\nuser = "x"\n#       user = "+0"\n'


def test_last_of_several_canonical_examples_is_used():
    text = '#vnc_listen = "0.0.0.0"\n# or, for IPv6:\n#vnc_listen = "::"\n# end\n'
    assert _set(text, "vnc_listen", "::1") == '#vnc_listen = "0.0.0.0"\n# or, for IPv6:\nvnc_listen = "::1"\n# end\n'


def test_indented_example_is_used_when_alone():
    text = '# example:\n#   security_driver = [ "selinux", "apparmor" ]   # both\n'
    assert _set(text, "security_driver", ["apparmor"]) == '# example:\nsecurity_driver = [ "apparmor" ]\n'


def test_prose_mentioning_a_key_is_not_an_example():
    text = "# user = is explained below\n"
    assert _set(text, "user", "x") == text + 'user = "x"\n'


def test_value_with_double_quote_is_single_quoted():
    text = _set("", "vnc_password", 'pa"ss')
    assert text == "vnc_password = 'pa\"ss'\n"
    assert QemuConf.parse(text).get("vnc_password") == 'pa"ss'


def _set(text: str, key: str, value) -> str:
    conf = QemuConf.parse(text)
    conf.set(key, value)
    return conf.render()


# --- unset -----------------------------------------------------------------

def test_unset_comments_the_statement_out():
    conf = QemuConf.parse('user = "root"  # note\ngroup = "kvm"\n')
    assert conf.unset("user") is True
    assert conf.render() == '#user = "root"  # note\ngroup = "kvm"\n'
    assert conf.get("user") is None
    assert conf.get("group") == "kvm"


def test_unset_comments_out_every_line_of_a_multiline_value_and_all_duplicates():
    text = 'nvram = [\n  "a:b", # x\n  "c:d"\n]\nnvram = [ "e:f" ]\n'
    conf = QemuConf.parse(text)
    conf.unset("nvram")
    assert conf.render() == '#nvram = [\n#  "a:b", # x\n#  "c:d"\n#]\n#nvram = [ "e:f" ]\n'
    assert settings_from_text(conf.render()) == {}


def test_unset_keeps_other_statement_on_the_same_line():
    conf = QemuConf.parse('user = "a"; group = "b"\n')
    conf.unset("user")
    assert settings_from_text(conf.render()) == {"group": "b"}


def test_unset_of_absent_key_changes_nothing():
    conf = QemuConf.parse('#user = "a"\n')
    assert conf.unset("user") is False
    assert conf.render() == '#user = "a"\n'


# --- validation ------------------------------------------------------------

def test_unknown_key_is_rejected_by_name_and_text_is_unchanged():
    text = 'user = "a"\n'
    conf = QemuConf.parse(text)
    for action in (lambda: conf.set("vnc_lisen", "::"), lambda: conf.get("vnc_lisen"),
                   lambda: conf.unset("vnc_lisen")):
        with pytest.raises(InvalidInput) as caught:
            action()
        assert caught.value.option == "vnc_lisen"
        assert "vnc_lisen" in str(caught.value)
        assert "vnc_listen" in str(caught.value)
    assert conf.render() == text


@pytest.mark.parametrize("key, value, expected", [
    ("vnc_tls", "maybe", "boolean"),
    ("vnc_tls", 2, "boolean"),
    ("vnc_tls", None, "boolean"),
    ("max_files", "ten", "non-negative integer"),
    ("max_files", -1, "non-negative integer"),
    ("max_files", True, "non-negative integer"),
    ("max_files", 2**32, "non-negative integer"),
    ("keepalive_interval", 1.5, "an integer"),
    ("max_core", "lots", "unlimited"),
    ("user", 0, "a string"),
    ("user", ["qemu"], "a string"),
    ("cgroup_device_acl", "/dev/null", "list of strings"),
    ("cgroup_device_acl", ["/dev/null", 1], "list of strings"),
    ("security_driver", 7, "string or a list"),
])
def test_wrong_type_is_rejected_naming_key_and_type(key, value, expected):
    text = '#user = "a"\nvnc_tls = 0\n'
    conf = QemuConf.parse(text)
    with pytest.raises(InvalidInput) as caught:
        conf.set(key, value)
    assert caught.value.option == key
    assert str(caught.value).startswith(f"{key}: expected ")
    assert expected in str(caught.value)
    assert conf.render() == text


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "nul\x00", "both ' and \""])
def test_unwritable_strings_are_rejected(value):
    conf = QemuConf.parse("")
    with pytest.raises(InvalidInput) as caught:
        conf.set("vnc_listen", value)
    assert caught.value.option == "vnc_listen"
    assert conf.render() == ""


def test_secret_values_are_not_echoed_in_errors():
    with pytest.raises(InvalidInput) as caught:
        QemuConf.parse("").set("vnc_password", 12345678)
    assert "12345678" not in str(caught.value)
    assert "vnc_password" in str(caught.value)


@pytest.mark.parametrize("key, given, stored, written", [
    ("vnc_tls", True, True, "1"),
    ("vnc_tls", "yes", True, "1"),
    ("vnc_tls", "False", False, "0"),
    ("vnc_tls", 0, False, "0"),
    ("max_files", "4096", 4096, "4096"),
    ("keepalive_interval", -1, -1, "-1"),
    ("max_core", "unlimited", "unlimited", '"unlimited"'),
    ("max_core", 2**40, 2**40, str(2**40)),
    ("hugetlbfs_mount", "/dev/hugepages", "/dev/hugepages", '"/dev/hugepages"'),
    ("hugetlbfs_mount", ("/a", "/b"), ["/a", "/b"], '[ "/a", "/b" ]'),
])
def test_accepted_value_forms(key, given, stored, written):
    text = _set("", key, given)
    assert text == f"{key} = {written}\n"
    assert QemuConf.parse(text).get(key) == stored
    assert type(QemuConf.parse(text).get(key)) is type(stored)


# --- parsing ---------------------------------------------------------------

def test_multiline_list_with_comments_and_trailing_comma():
    text = ('cgroup_device_acl = [  # devices\n'
            '    "/dev/null", "/dev/full",\n'
            '    # random sources\n'
            "    '/dev/urandom',\n"
            ']\n'
            'max_files = 3\n')
    conf = QemuConf.parse(text)
    assert conf.get("cgroup_device_acl") == ["/dev/null", "/dev/full", "/dev/urandom"]
    assert conf.get("max_files") == 3
    assert conf.render() == text


def test_other_syntax_forms():
    text = ("seccomp_sandbox = -1; keepalive_count = +5\r\n"
            'migration_host = """host.example.com"""\n'
            "  \t\n"
            "unknown_future_key = [ 1, [ 'x' ] ]\n"
            "log_timestamp = 0")
    conf = QemuConf.parse(text)
    assert conf.render() == text
    assert conf.settings() == {"seccomp_sandbox": -1, "keepalive_count": 5,
                               "migration_host": "host.example.com",
                               "unknown_future_key": [1, ["x"]], "log_timestamp": False}


@pytest.mark.parametrize("text, line, reason", [
    ('# one\n\nuser = "open\n', 3, "unterminated string"),
    ("user\n", 1, "expecting '='"),
    ("a = 1\nb = 2 c = 3\n", 2, "expecting a line break or ';'"),
    ("a = 1\nb = [ \"x\",\n  \"y\"\n", 4, "not closed"),
    ("a = [ \"x\" \"y\" ]\n", 1, "expecting ','"),
    ("\n\n\n= 3\n", 4, "expecting a setting name"),
    ("a = yes\n", 1, "expecting a value"),
    ("a = -\n", 1, "expecting digits"),
    ('a = """never closed\n\n', 1, "unterminated string"),
])
def test_parse_errors_name_the_line(text, line, reason):
    with pytest.raises(ConfSyntaxError) as caught:
        QemuConf.parse(text)
    assert isinstance(caught.value, InvalidInput)
    assert caught.value.line == line
    assert f"line {line}:" in str(caught.value)
    assert reason in str(caught.value)


# --- apply_settings / settings_from_text -----------------------------------

def test_apply_settings_reports_changes_and_is_idempotent(debian_text):
    wanted = {"user": "qemu", "vnc_tls": "yes", "cgroup_controllers": ["cpu", "memory"],
              "max_core": "unlimited"}
    once, changed = apply_settings(debian_text, wanted)
    assert changed == ["user", "vnc_tls", "cgroup_controllers", "max_core"]
    again, changed_again = apply_settings(once, wanted)
    assert (again, changed_again) == (once, [])
    assert settings_from_text(once) == {"user": "qemu", "vnc_tls": True,
                                        "cgroup_controllers": ["cpu", "memory"],
                                        "max_core": "unlimited"}


def test_apply_settings_none_unsets():
    text, changed = apply_settings('user = "a"\ngroup = "b"\n', {"user": None, "vnc_tls": None})
    assert (text, changed) == ('#user = "a"\ngroup = "b"\n', ["user"])


def test_apply_settings_validates_everything_before_editing():
    with pytest.raises(InvalidInput) as caught:
        apply_settings('user = "a"\n', {"user": "b", "max_files": "many"})
    assert caught.value.option == "max_files"


# --- key table ---------------------------------------------------------------

_TSV_TYPES = {
    "str": {KeyType.STR, KeyType.STR_OR_LIST},
    "bool": {KeyType.BOOL},
    "int": {KeyType.INT, KeyType.UINT},
    "str-list": {KeyType.STR_LIST},
    'int-or-"unlimited"': {KeyType.CORE},
}


# The entry kinds of libvirt's own augeas lens for qemu.conf, in the TSV's words.
_LENS_KINDS = {"str": "str", "bool": "bool", "int": "int", "str_array": "str-list", "limits": 'int-or-"unlimited"'}


def test_key_table_covers_the_installed_libvirt_lens():
    """Every key libvirt 9.0's lens knows (package libvirt-daemon-driver-qemu), with its type."""
    reference: dict[str, set[str]] = {}
    for kind, key in re.findall(r'\b(str|bool|int|str_array|limits)_entry\s+"(\w+)"', LENS.read_text(encoding="utf-8")):
        reference.setdefault(key, set()).add(_LENS_KINDS[kind])
    assert len(reference) > 80
    assert set(reference) - set(KEYS) == set()
    mismatched = {key: (kinds, KEYS[key]) for key, kinds in reference.items()
                  if not any(KEYS[key] in _TSV_TYPES[kind] for kind in kinds)}
    assert mismatched == {}


def test_key_table_matches_reference_tsv():
    reference = {}
    for line in KEYS_TSV.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            key, kind = line.split("\t")[:2]
            reference[key] = kind.split()[0].rstrip("*")
    assert len(reference) > 100
    assert set(reference) - set(KEYS) == set()
    assert set(KEYS) - set(reference) <= {"clear_emulator_capabilities"}
    mismatched = {key: (kind, KEYS[key]) for key, kind in reference.items()
                  if KEYS[key] not in _TSV_TYPES[kind]}
    assert mismatched == {}


# --- property tests ----------------------------------------------------------

_blank = st.text(alphabet=" \t", max_size=3)
_comment = st.text(alphabet=st.characters(blacklist_characters="\r\n", max_codepoint=0x2FF),
                   max_size=20).map(lambda body: "#" + body)
_name = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,12}", fullmatch=True)
_string_value = st.one_of(
    st.text(alphabet=st.characters(blacklist_characters="\"\r\n", max_codepoint=0x2FF),
            max_size=12).map(lambda s: f'"{s}"'),
    st.text(alphabet=st.characters(blacklist_characters="'\r\n", max_codepoint=0x2FF),
            max_size=12).map(lambda s: f"'{s}'"),
)
_number_value = st.tuples(st.sampled_from(["", "-", "+"]),
                          st.integers(0, 2**40)).map(lambda t: f"{t[0]}{t[1]}")
_gap = st.lists(st.one_of(_blank, st.just("\n"), _comment.map(lambda c: " " + c + "\n")),
                max_size=3).map("".join)


@st.composite
def _list_value(draw):
    items = draw(st.lists(st.one_of(_string_value, _number_value), max_size=4))
    text = "[" + draw(_gap)
    for index, item in enumerate(items):
        text += item + draw(_gap)
        if index < len(items) - 1 or draw(st.booleans()):
            text += "," + draw(_gap)
    return text + "]"


@st.composite
def _config_line(draw):
    kind = draw(st.sampled_from(["blank", "comment", "assignment", "two"]))
    if kind == "blank":
        return draw(_blank)
    if kind == "comment":
        return draw(_blank) + draw(_comment)
    value = draw(st.one_of(_string_value, _number_value, _list_value()))
    line = draw(_blank) + draw(_name) + draw(_blank) + "=" + draw(_blank) + value + draw(_blank)
    if kind == "two":
        line += ";" + draw(_blank) + draw(_name) + " = " + draw(_number_value)
    if draw(st.booleans()):
        line += draw(_comment)
    return line


_configs = st.tuples(st.lists(_config_line(), max_size=12), st.sampled_from(["\n", "\r\n"]),
                     st.booleans()).map(lambda t: t[1].join(t[0]) + (t[1] if t[2] else ""))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_configs)
def test_render_of_parse_is_identity(text):
    assert QemuConf.parse(text).render() == text


def _value_for(kind: KeyType):
    safe = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs"),
                                          blacklist_characters="'"), max_size=15)
    return {
        KeyType.STR: safe,
        KeyType.BOOL: st.booleans(),
        KeyType.INT: st.integers(-(2**31), 2**31 - 1),
        KeyType.UINT: st.integers(0, 2**32 - 1),
        KeyType.CORE: st.one_of(st.just("unlimited"), st.integers(0, 2**64 - 1)),
        KeyType.STR_LIST: st.lists(safe, max_size=4),
        KeyType.STR_OR_LIST: st.one_of(safe, st.lists(safe, max_size=4)),
    }[kind]


@st.composite
def _key_and_value(draw):
    key = draw(st.sampled_from(sorted(KEYS)))
    return key, draw(_value_for(KEYS[key]))


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(base=_configs, edits=st.lists(_key_and_value(), min_size=1, max_size=4))
def test_set_then_get_returns_the_value(base, edits):
    conf = QemuConf.parse(base)
    for key, value in edits:
        conf.set(key, value)
        assert conf.get(key) == value
    reparsed = QemuConf.parse(conf.render())
    for key, value in dict(edits).items():
        assert reparsed.get(key) == value
        assert reparsed.set(key, value) is False


@settings(max_examples=50, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(edits=st.lists(_key_and_value(), min_size=1, max_size=3))
def test_set_then_get_on_debian_file(debian_text, edits):
    conf = QemuConf.parse(debian_text)
    for key, value in edits:
        conf.set(key, value)
    reparsed = QemuConf.parse(conf.render())
    for key, value in dict(edits).items():
        assert reparsed.get(key) == value


# --- files -------------------------------------------------------------------

def test_read_missing_file_is_empty_config(tmp_path):
    assert read_conf(str(tmp_path / "absent.conf")) == ""


def test_atomic_write_keeps_mode_and_owner_and_leaves_no_temp(tmp_path):
    path = tmp_path / "qemu.conf"
    path.write_bytes(b'user = "a"\r\n# odd \xff byte\n')
    os.chmod(path, 0o640)
    if os.geteuid() == 0:
        os.chown(path, 4242, 4343)
    text = read_conf(str(path))
    assert text.encode("utf-8", "surrogateescape") == path.read_bytes()
    new_text, changed = apply_settings(text, {"user": "b"})
    write_conf_atomic(str(path), new_text)
    assert path.read_bytes() == b'user = "b"\r\n# odd \xff byte\n'
    status = path.stat()
    assert status.st_mode & 0o7777 == 0o640
    if os.geteuid() == 0:
        assert (status.st_uid, status.st_gid) == (4242, 4343)
    assert sorted(os.listdir(tmp_path)) == [".qemu.conf.lock", "qemu.conf"]


def test_atomic_write_creates_private_file(tmp_path):
    path = tmp_path / "qemu.conf"
    write_conf_atomic(str(path), "vnc_tls = 1\n")
    assert path.read_text() == "vnc_tls = 1\n"
    assert path.stat().st_mode & 0o7777 == 0o600
    assert path.stat().st_uid == os.geteuid()


def test_failed_write_keeps_old_file_and_removes_temp(tmp_path, monkeypatch):
    path = tmp_path / "qemu.conf"
    path.write_text("vnc_tls = 0\n")

    def refuse(*_args):
        raise OSError("disk on fire")

    monkeypatch.setattr(qemu_conf.os, "replace", refuse)
    with pytest.raises(BackendError, match=r"cannot write .*qemu.conf: disk on fire"):
        write_conf_atomic(str(path), "vnc_tls = 1\n")
    assert path.read_text() == "vnc_tls = 0\n"
    assert sorted(os.listdir(tmp_path)) == [".qemu.conf.lock", "qemu.conf"]


def test_write_through_symlink_updates_target(tmp_path):
    target = tmp_path / "real.conf"
    target.write_text("a = 1\n")
    link = tmp_path / "qemu.conf"
    link.symlink_to(target)
    write_conf_atomic(str(link), "a = 2\n")
    assert link.is_symlink()
    assert target.read_text() == "a = 2\n"


def test_update_conf_writes_only_on_change(tmp_path):
    path = tmp_path / "qemu.conf"
    before, after, changed = update_conf(str(path), {"user": "qemu"}, write=False)
    assert (before, changed) == ("", ["user"])
    assert not path.exists()
    update_conf(str(path), {"user": "qemu"})
    assert path.read_text() == 'user = "qemu"\n'
    mtime = path.stat().st_mtime_ns
    assert update_conf(str(path), {"user": "qemu"})[2] == []
    assert path.stat().st_mtime_ns == mtime
