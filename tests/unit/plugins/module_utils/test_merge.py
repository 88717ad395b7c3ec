"""Desired-subset merge: properties over generated trees, plus domain rules."""

import copy

from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from ansible_collections.virtops.qemu.plugins.module_utils.model.merge import Rules, differs_in, match, merge, own_attr

RULES = Rules(identity={"r/item": own_attr("id")}, owned=frozenset({"r/owned"}))

names = st.sampled_from(["a", "b", "c"])
values = st.text(alphabet="xyz01", min_size=1, max_size=3)
attrs = st.dictionaries(names, values, max_size=3)


@st.composite
def trees(draw):
    root = etree.Element("r", draw(attrs))
    ids = draw(st.lists(st.sampled_from("pqrstu"), unique=True, max_size=4))
    for ident in ids:
        item = etree.SubElement(root, "item", draw(attrs))
        item.set("id", ident)
        if draw(st.booleans()):
            etree.SubElement(item, "leaf", draw(attrs)).text = draw(values)
    for tag in draw(st.lists(st.sampled_from(["single", "owned"]), unique=True)):
        etree.SubElement(root, tag, draw(attrs))
    return root


@st.composite
def pruned(draw, tree):
    """A random subset of ``tree``: dropped attributes, children and texts."""
    copy_ = copy.deepcopy(tree)
    for node in list(copy_.iter()):
        for name in list(node.attrib):
            if name != "id" and draw(st.booleans()):
                del node.attrib[name]
        if node is not copy_ and node.getparent() is not None and node.tag not in ("owned",) \
                and draw(st.booleans()):
            node.getparent().remove(node)
    return copy_


def xml(node):
    return etree.tostring(node)


@settings(max_examples=300, deadline=None)
@given(trees(), trees())
def test_merge_then_compare_is_stable(current, desired):
    merged = merge(current, desired, RULES).tree
    assert not merge(merged, desired, RULES).changed


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_subset_of_the_current_tree_changes_nothing(data):
    current = data.draw(trees())
    desired = data.draw(pruned(current))
    result = merge(current, desired, RULES)
    assert not result.changed, result.changes
    assert xml(result.tree) == xml(current)


@settings(max_examples=300, deadline=None)
@given(trees(), trees())
def test_unmentioned_values_survive(current, desired):
    merged = merge(current, desired, RULES).tree
    for name, value in current.attrib.items():
        if name not in desired.attrib:
            assert merged.get(name) == value
    desired_ids = {i.get("id") for i in desired.findall("item")}
    merged_ids = {i.get("id") for i in merged.findall("item")}
    assert {i.get("id") for i in current.findall("item")} <= merged_ids
    assert desired_ids <= merged_ids


@settings(max_examples=200, deadline=None)
@given(trees(), trees())
def test_merge_does_not_touch_its_inputs(current, desired):
    before = (xml(current), xml(desired))
    merge(current, desired, RULES)
    assert (xml(current), xml(desired)) == before


def test_owned_list_drops_unlisted_members():
    current = etree.fromstring("<r><owned n='1'/><owned n='2'/></r>")
    desired = etree.fromstring("<r><owned n='1'/></r>")
    result = merge(current, desired, RULES)
    assert [o.get("n") for o in result.tree.findall("owned")] == ["1"]
    assert result.changes == ["r/owned-"]


def test_owned_path_with_no_members_empties_the_list():
    current = etree.fromstring("<r><owned n='1'/><keep/></r>")
    result = merge(current, etree.fromstring("<r/>"), RULES, owned_paths={"r/owned"})
    assert result.tree.find("owned") is None and result.tree.find("keep") is not None


def test_match_by_identity_then_position():
    present = [etree.fromstring(f"<i id='{n}'/>") for n in "abc"]
    wanted = [etree.fromstring("<i/>"), etree.fromstring("<i id='c'/>")]
    pairs = match(present, wanted, own_attr("id"))
    assert [(p.get("id"), w.get("id")) for p, w in pairs] == [("a", None), ("c", "c")]


def test_new_list_member_is_reported_and_placed_after_its_siblings():
    current = etree.fromstring("<r><item id='p'/><other/></r>")
    desired = etree.fromstring("<r><item id='q' a='1'/></r>")
    result = merge(current, desired, RULES)
    assert [c.tag for c in result.tree] == ["item", "item", "other"]
    assert result.changes == ["r/item+"]


# -- replacing an element whole ----------------------------------------------------------
NETWORK_RULES = Rules(identity={"network/ip": own_attr("address")},
                      replace={"network/forward": differs_in("mode")})
NAT = ("<network><name>n</name><uuid>u-1</uuid><forward mode='nat'><nat><port start='1024' end='65535'/>"
       "</nat></forward><ip address='10.0.0.1'/></network>")


def test_a_replace_rule_swaps_the_element_whole():
    current = etree.fromstring(NAT)
    desired = etree.fromstring("<network><name>n</name><forward mode='bridge' dev='eth0'/></network>")
    result = merge(current, desired, NETWORK_RULES)
    forward = result.tree.find("forward")
    assert forward.attrib == {"mode": "bridge", "dev": "eth0"} and len(forward) == 0
    assert result.changes == ["network/forward="]
    assert result.tree.findtext("uuid") == "u-1" and result.tree.find("ip") is not None
    assert [c.tag for c in result.tree] == ["name", "uuid", "forward", "ip"]
    assert not merge(result.tree, desired, NETWORK_RULES).changed


def test_a_replace_rule_that_does_not_fire_merges_as_usual():
    current = etree.fromstring(NAT)
    desired = etree.fromstring("<network><forward mode='nat' dev='eth1'/></network>")
    result = merge(current, desired, NETWORK_RULES)
    assert result.changes == ["network/forward@dev"]
    assert result.tree.find("forward/nat/port").get("start") == "1024"
    assert not merge(current, etree.fromstring("<network><forward/></network>"), NETWORK_RULES).changed


# -- namespaced lists -------------------------------------------------------------------
QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"


def _with_args(*values, env=()):
    args = "".join(f"<qemu:arg value='{v}'/>" for v in values)
    envs = "".join(f"<qemu:env name='{n}' value='1'/>" for n in env)
    return etree.fromstring(f"<domain xmlns:qemu='{QEMU_NS}'><name>d</name>"
                            f"<qemu:commandline>{args}{envs}</qemu:commandline></domain>")


def test_a_shorter_namespaced_list_shrinks_the_current_one():
    result = merge(_with_args("-device", "isa-debug-exit", "-S", "-no-hpet"), _with_args("-device", "pci-testdev"),
                   Rules())
    args = result.tree.findall(f"{{{QEMU_NS}}}commandline/{{{QEMU_NS}}}arg")
    assert [a.get("value") for a in args] == ["-device", "pci-testdev"]
    assert sorted(set(result.changes)) == [f"domain/{{{QEMU_NS}}}commandline/{{{QEMU_NS}}}arg-",
                                           f"domain/{{{QEMU_NS}}}commandline/{{{QEMU_NS}}}arg@value"]
    assert not merge(result.tree, _with_args("-device", "pci-testdev"), Rules()).changed


def test_a_namespaced_element_is_described_completely_by_the_desired_one():
    current = _with_args("-S", env=("A", "B"))
    result = merge(current, _with_args(env=("B",)), Rules())
    node = result.tree.find(f"{{{QEMU_NS}}}commandline")
    assert [(c.tag.split("}")[1], c.get("name")) for c in node] == [("env", "B")]


def test_a_namespaced_element_left_out_is_kept():
    current = _with_args("-S")
    result = merge(current, etree.fromstring("<domain><name>d</name></domain>"), Rules())
    assert not result.changed and result.tree.find(f"{{{QEMU_NS}}}commandline/{{{QEMU_NS}}}arg") is not None
