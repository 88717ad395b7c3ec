"""The one masking step every module result and failure goes through (module_utils/secrets.py)."""

import pytest

from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError, InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.module_glue import run
from ansible_collections.virtops.qemu.plugins.module_utils.secrets import CHANGED_MASK, MASK, mask, mask_text, values_in

XML = ("<domain><name>vm</name><devices><graphics type='vnc' passwd='pw1'/>"
       "<graphics type=\"spice\" autoport=\"yes\" passwd=\"pw2\"/></devices></domain>")
CONF = '# vnc\nvnc_listen = "0.0.0.0"\nvnc_password = "pw1"\n#spice_password = "pw2"\nrdp_password="pw3"; user = "u"\n'


def test_xml_password_attributes_are_masked_and_nothing_else_changes():
    masked = mask_text(XML)
    assert masked == XML.replace("'pw1'", "'********'").replace('"pw2"', '"********"')


@pytest.mark.parametrize("text", [
    "<graphics type='vnc' passwd = 'pw1'/>",                      # blanks around '='
    "<graphics type='vnc'\n    passwd=\n'pw1'/>",                 # line breaks inside the tag
    "<!-- <graphics type='vnc' passwd='pw1'/> -->",               # a commented-out element
    "libvirt said: invalid <graphics passwd='pw1'> (fragment)",   # an error message quoting XML
])
def test_xml_password_is_masked_wherever_it_is_written(text):
    assert "pw1" not in mask_text(text) and MASK in mask_text(text)


def test_qemu_conf_passwords_are_masked_active_commented_and_after_a_semicolon():
    masked = mask_text(CONF)
    assert masked == ('# vnc\nvnc_listen = "0.0.0.0"\nvnc_password = "********"\n#spice_password = "********"\n'
                      'rdp_password="********"; user = "u"\n')


@pytest.mark.parametrize("value", ['"""multi\nline"""', "'single'", "12345", '[ "a", "b" ]'])
def test_every_qemu_conf_value_form_is_masked(value):
    masked = mask_text(f"vnc_password = {value}\nuser = 'x'\n")
    assert masked.startswith("vnc_password = ") and MASK in masked and masked.endswith("user = 'x'\n")
    assert not any(part in masked for part in ("multi", "single", "12345", '"a"'))


def test_a_key_of_a_newer_libvirt_that_names_a_password_is_masked_too():
    assert mask_text('foo_password = "pw"') == 'foo_password = "********"'
    assert mask_text('password_file = "/etc/pw"') == 'password_file = "/etc/pw"'
    assert mask_text('<graphics passwdValidTo="2030-01-01T00:00:00"/>') == \
        '<graphics passwdValidTo="2030-01-01T00:00:00"/>'


def test_text_without_passwords_is_returned_as_is():
    text = "<domain><name>vm</name><devices><graphics type='vnc' port='-1'/></devices></domain>"
    assert mask_text(text) is text and mask_text("") == ""


def test_a_changed_password_is_marked_on_the_after_side_of_a_diff():
    after = XML.replace("pw2", "pw3")
    diff = mask({"before": XML, "after": after})
    assert diff["before"] == mask_text(XML)
    assert "type='vnc' passwd='********'" in diff["after"]
    assert f'passwd="{CHANGED_MASK}"' in diff["after"] and "pw3" not in diff["after"]
    same = mask({"before": XML, "after": XML})
    assert same["before"] == same["after"]


def test_a_new_password_is_no_change_and_the_place_is_the_element_not_the_order():
    assert mask({"before": "", "after": XML})["after"] == mask_text(XML)
    # The vnc console removed: the spice one keeps its password and is not marked.
    only_spice = XML.replace("<graphics type='vnc' passwd='pw1'/>", "")
    assert CHANGED_MASK not in mask({"before": XML, "after": only_spice})["after"]


def test_a_password_uncommented_in_qemu_conf_is_new_not_changed():
    before = '#vnc_password = "XYZ12345"\n'
    diff = mask({"before": before, "after": 'vnc_password = "pw1"\n', "before_header": "/etc/libvirt/qemu.conf"})
    assert diff == {"before": f'#vnc_password = "{MASK}"\n', "after": f'vnc_password = "{MASK}"\n',
                    "before_header": "/etc/libvirt/qemu.conf"}
    changed = mask({"before": 'vnc_password = "pw1"\n', "after": 'vnc_password = "pw2"\n'})
    assert changed["after"] == f'vnc_password = "{CHANGED_MASK}"\n'


def test_results_are_masked_all_through():
    result = {"changed": True, "xml": XML, "settings": {"vnc_password": "pw1", "vnc_listen": "0.0.0.0"},
              "domains": [{"name": "vm", "xml": XML, "live_xml": None}], "msg": "passwd='pw2' refused",
              "count": 3, "flag": False}
    masked = mask(result)
    assert not any(pw in repr(masked) for pw in ("pw1", "pw2"))
    assert masked["settings"] == {"vnc_password": MASK, "vnc_listen": "0.0.0.0"}
    assert masked["domains"][0]["live_xml"] is None and masked["count"] == 3 and masked["flag"] is False
    assert result["settings"]["vnc_password"] == "pw1"      # the caller's result is left as it was


def test_values_in_options_are_found_for_no_log():
    params = {"xml": XML.replace("pw1", "a&amp;b"), "graphics": {"type": "vnc", "password": "pw3"},
              "settings": {"vnc_password": "pw4", "spice_password": "", "user": "qemu"}, "uri": "qemu:///system",
              "labels": [{"label": "vnc_password = 'pw5'"}], "name": None}
    assert values_in(params) == {"a&amp;b", "a&b", "pw2", "pw3", "pw4", "pw5"}
    assert values_in({"name": "vm", "state": "running"}) == set()


class Exit(Exception):
    pass


class Module:
    """What module_glue.run uses of AnsibleModule."""

    def __init__(self, params, diff=True):
        self.params, self._diff, self.no_log_values, self.warnings = params, diff, set(), []

    def exit_json(self, **result):
        raise Exit(("exit", result))

    def fail_json(self, **result):
        raise Exit(("fail", result))

    def warn(self, text):
        self.warnings.append(text)


def _run(module, action):
    with pytest.raises(Exit) as done:
        run(module, action)
    return done.value.args[0]


def test_module_glue_masks_results_warnings_and_diffs_and_hides_the_options_passwords():
    module = Module({"settings": {"vnc_password": "pw9"}})
    kind, result = _run(module, lambda: {"changed": True, "xml": XML, "warnings": ["kept passwd='pw1'"],
                                         "diff": {"before": XML, "after": XML.replace("pw1", "pw7")}})
    assert kind == "exit" and "pw9" in module.no_log_values
    assert not any(pw in repr(result) + repr(module.warnings) for pw in ("pw1", "pw2", "pw7"))
    assert f"passwd='{CHANGED_MASK}'" in result["diff"]["after"]


@pytest.mark.parametrize("error", [
    BackendError("start failed").after_changes("domain 'vm' was defined but failed to start",
                                               {"changed": True, "xml": XML, "diff": {"before": "", "after": XML}}),
    InvalidInput("bad <graphics passwd='pw1'/>", "xml"),
])
def test_module_glue_masks_failures(error):
    def action():
        raise error

    kind, result = _run(Module({}), action)
    assert kind == "fail" and "pw1" not in repr(result) and "pw2" not in repr(result)
