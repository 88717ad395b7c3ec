"""The NoCloud seed's files: user-data as given or as cloud-config, meta-data defaults, network-config, errors."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.seed.nocloud import (
    USER_DATA_HEADERS,
    build_seed,
    write_seed,
)

CONFIG = {"users": [{"name": "ansible", "ssh_authorized_keys": ["ssh-ed25519 AAAAC3Nza ansible@control"]}],
          "package_update": False}


def body(data: bytes) -> str:
    """A cloud-config file without its header line."""
    header, _newline, rest = data.decode().partition("\n")
    assert header == "#cloud-config"
    return rest


def meta(seed) -> dict:
    return yaml.safe_load(seed.files["meta-data"].decode())


def test_a_string_is_written_verbatim():
    text = "#cloud-config\nusers: [default]\n# no newline at the end"
    assert build_seed("vm1", text).files["user-data"] == text.encode()


@pytest.mark.parametrize("start", [*USER_DATA_HEADERS, "  #Cloud-Config", "#!/bin/sh", "#include-once",
                                   "#cloud-config-archive", "MIME-Version: 1.0"])
def test_every_user_data_start_cloud_init_knows(start):
    text = f"{start}\nsomething\n"
    assert build_seed("vm1", text).files["user-data"] == text.encode()


@pytest.mark.parametrize("text", ["users: [default]\n", "cloud-config\n", "# cloud-config\n", "{}"])
def test_a_string_cloud_init_would_ignore_is_refused(text):
    with pytest.raises(InvalidInput, match=r"^cloud_init\.user_data: a string must start like") as caught:
        build_seed("vm1", text)
    assert caught.value.option == "cloud_init.user_data"
    assert "'#cloud-config'" in str(caught.value)


def test_no_user_data_is_an_empty_file():
    assert build_seed("vm1").files["user-data"] == b""
    assert build_seed("vm1", "").files["user-data"] == b""


def test_a_mapping_is_cloud_config_that_json_and_yaml_read_alike():
    data = build_seed("vm1", CONFIG).files["user-data"]
    assert json.loads(body(data)) == CONFIG
    assert yaml.safe_load(data.decode()) == CONFIG


@pytest.mark.parametrize("value", [
    1e20, 1.5e-7, -0.0, 0.1, 2 ** 70, True, None, [], {},
    "a\x85b", "line\u2028separator", "\x7f\x9f", "\ufeff\ufffe\uffff", "tab\tnewline\n", "\U0001f600 \u00e9",
    "yes", "no", "on", "off", "~", "null", "0x10", "010", "1e3", "1_000", "2001-12-14", "12:30", "<<",
])
def test_values_yaml_reads_back_unchanged(value):
    config = {"write_files": [{"content": value}], "key-" + str(value): 1} if isinstance(value, str) else \
        {"write_files": [{"content": value}]}
    data = build_seed("vm1", config).files["user-data"]
    assert yaml.safe_load(data.decode()) == config
    assert json.loads(body(data)) == config


@pytest.mark.parametrize(("config", "option", "reason"), [
    ({"users": [{"name": b"x"}]}, "cloud_init.user_data.users[0].name", "cannot be written as YAML: bytes"),
    ({"write_files": [{1: "x"}]}, "cloud_init.user_data.write_files[0]", "keys must be strings"),
    ({"bootcmd": [float("nan")]}, "cloud_init.user_data.bootcmd[0]", "cannot be written in JSON"),
    ({"runcmd": {"x", "y"}}, "cloud_init.user_data.runcmd", "cannot be written as YAML: set"),
    ({"k" * 1100: 1}, "cloud_init.user_data", "keys longer than 1024"),
    ({"bad": "\udcff"}, "cloud_init.user_data", "is not valid Unicode text"),
])
def test_a_mapping_that_cannot_be_written_names_the_spot(config, option, reason):
    with pytest.raises(InvalidInput, match=reason) as caught:
        build_seed("vm1", config)
    assert caught.value.option == option


@pytest.mark.parametrize("value", [42, ["#cloud-config"], b"#cloud-config\n"])
def test_user_data_of_another_type_is_refused(value):
    with pytest.raises(InvalidInput, match="must be a string or a mapping") as caught:
        build_seed("vm1", value)
    assert caught.value.option == "cloud_init.user_data"


def test_meta_data_defaults():
    seed = build_seed("vm1", CONFIG)
    assert meta(seed) == {"instance-id": seed.instance_id, "local-hostname": "vm1"}
    assert list(meta(seed)) == ["instance-id", "local-hostname"]
    assert seed.instance_id.startswith("iid-") and len(seed.instance_id) == 24


def test_the_instance_id_stays_while_the_content_does():
    first = build_seed("vm1", CONFIG, {"public-keys": ["k"]}, {"version": 2})
    assert build_seed("vm1", dict(CONFIG), {"public-keys": ["k"]}, {"version": 2}).instance_id == first.instance_id
    changes = [
        build_seed("vm2", CONFIG, {"public-keys": ["k"]}, {"version": 2}),
        build_seed("vm1", {**CONFIG, "package_update": True}, {"public-keys": ["k"]}, {"version": 2}),
        build_seed("vm1", CONFIG, {"public-keys": ["k2"]}, {"version": 2}),
        build_seed("vm1", CONFIG, {"public-keys": ["k"]}, {"version": 1}),
        build_seed("vm1", CONFIG, {"public-keys": ["k"]}),
    ]
    assert len({first.instance_id} | {seed.instance_id for seed in changes}) == 6


def test_meta_data_given_adds_to_and_overrides_the_defaults():
    seed = build_seed("vm1", None, {"instance-id": "i-1", "local-hostname": "web", "public-keys": ["k"]})
    assert seed.instance_id == "i-1"
    assert meta(seed) == {"instance-id": "i-1", "local-hostname": "web", "public-keys": ["k"]}


@pytest.mark.parametrize(("meta_data", "option"), [
    ({"instance-id": ""}, "cloud_init.meta_data.instance-id"),
    ({"instance-id": 7}, "cloud_init.meta_data.instance-id"),
    ({"local-hostname": None}, "cloud_init.meta_data.local-hostname"),
    ({"tags": {"a": object()}}, "cloud_init.meta_data.tags.a"),
    ("instance-id: x", "cloud_init.meta_data"),
])
def test_bad_meta_data_names_the_option(meta_data, option):
    with pytest.raises(InvalidInput) as caught:
        build_seed("vm1", None, meta_data)
    assert caught.value.option == option


def test_network_config_is_written_only_when_given():
    assert sorted(build_seed("vm1").files) == ["meta-data", "user-data"]
    config = {"version": 2, "ethernets": {"eth0": {"match": {"macaddress": "52:54:00:12:34:56"}, "dhcp4": True}}}
    seed = build_seed("vm1", None, None, config)
    assert yaml.safe_load(seed.files["network-config"].decode()) == config
    wrapped = {"network": {"version": 1, "config": [{"type": "physical", "name": "eth0"}]}}
    assert yaml.safe_load(build_seed("vm1", None, None, wrapped).files["network-config"].decode()) == wrapped


@pytest.mark.parametrize(("config", "option"), [
    ({"ethernets": {}}, "cloud_init.network_config.version"),
    ({"version": 3}, "cloud_init.network_config.version"),
    ({"version": "2"}, "cloud_init.network_config.version"),
    ({"version": True}, "cloud_init.network_config.version"),
    ({"version": 2.0}, "cloud_init.network_config.version"),
    ({"network": {"version": 0}}, "cloud_init.network_config.network.version"),
    ({"version": 2, "ethernets": {"eth0": {"mtu": 1e400}}}, "cloud_init.network_config.ethernets.eth0.mtu"),
    (["version", 2], "cloud_init.network_config"),
])
def test_bad_network_config_names_the_option(config, option):
    with pytest.raises(InvalidInput) as caught:
        build_seed("vm1", None, None, config)
    assert caught.value.option == option


def test_the_option_prefix_is_the_callers():
    with pytest.raises(InvalidInput) as caught:
        build_seed("vm1", "plain text", option="seeds[2]")
    assert caught.value.option == "seeds[2].user_data"


def test_a_name_is_required():
    with pytest.raises(InvalidInput) as caught:
        build_seed("", CONFIG)
    assert caught.value.option == "name"


def test_the_image_is_the_same_for_the_same_input():
    assert build_seed("vm1", CONFIG).image() == build_seed("vm1", dict(CONFIG)).image()
    assert build_seed("vm1", CONFIG).image() != build_seed("vm2", CONFIG).image()


def test_write_seed_writes_atomically_and_only_on_change(tmp_path):
    path = str(tmp_path / "seed.iso")
    image = build_seed("vm1", CONFIG).image()
    assert write_seed(path, image) is True
    assert open(path, "rb").read() == image
    assert os.stat(path).st_mode & 0o777 == 0o600
    inode = os.stat(path).st_ino
    assert write_seed(path, image) is False
    assert os.stat(path).st_ino == inode
    other = build_seed("vm1", {"package_update": True}).image()
    assert write_seed(path, other) is True
    assert open(path, "rb").read() == other
    assert os.stat(path).st_ino != inode
    assert os.listdir(tmp_path) == ["seed.iso"]


def test_write_seed_keeps_every_byte(tmp_path):
    path = str(tmp_path / "bytes.img")
    data = bytes(range(256)) * 8 + b"\xed\xa0\x80\xc3\x28\xf0\x9f\x98\x80\xff\xfe"
    assert write_seed(path, data, mode=0o644) is True
    assert open(path, "rb").read() == data
    assert os.stat(path).st_mode & 0o777 == 0o644
    assert write_seed(path, data) is False
