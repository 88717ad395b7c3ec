import pytest

from ansible_collections.virtops.qemu.plugins.module_utils.errors import InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.uri import parse_uri


@pytest.mark.parametrize("raw, backend, transport, host, instance", [
    ("qemu:///system", "libvirt", None, None, "system"),
    ("qemu:///session", "libvirt", None, None, "session"),
    ("qemu+unix:///system", "libvirt", "unix", None, "system"),
    ("qemu+unix:///session?socket=/run/user/1000/libvirt/libvirt-sock", "libvirt", "unix", None, "session"),
    ("qemu://example.com/system", "libvirt", None, "example.com", "system"),
    ("qemu+tcp://example.com/system", "libvirt", "tcp", "example.com", "system"),
    ("qemu+tls://example.com:16514/system", "libvirt", "tls", "example.com", "system"),
    ("qemu+ssh://root@example.com/system", "libvirt", "ssh", "example.com", "system"),
    ("qemu:///embed?root=/var/lib/app", "embed", None, None, "embed"),
])
def test_documented_forms(raw, backend, transport, host, instance):
    uri = parse_uri(raw)
    assert (uri.backend, uri.transport, uri.host, uri.instance) == (backend, transport, host, instance)


def test_ssh_user_and_port():
    uri = parse_uri("qemu+ssh://admin@host.example:2222/system?keyfile=/k")
    assert (uri.user, uri.port, uri.params["keyfile"]) == ("admin", 2222, "/k")
    assert not uri.is_local


def test_embed_root():
    assert parse_uri("qemu:///embed?root=/srv/vms").embed_root == "/srv/vms"


@pytest.mark.parametrize("raw, words", [
    ("qemu:///embed?root=relative/dir", "must be an absolute path"),
    ("qemu:///embed", "needs a root"),
    ("qemu:///embed?root=", "needs a root"),
    ("qemu+ssh://host/embed?root=/x", "runs locally"),
    ("xen:///system", "unknown scheme"),
    ("lxc:///system", "unknown scheme"),
    ("qemu+carrier-pigeon://host/system", "unknown transport"),
    ("qemu:///", "must be /system, /session or /embed"),
    ("qemu:///other", "must be /system, /session or /embed"),
    ("qemu+ssh:///system", "names no host"),
    ("not a uri", "not a connection URI"),
    ("qemu://host:notaport/system", "bad port"),
])
def test_bad_uris_name_the_option_and_reason(raw, words):
    with pytest.raises(InvalidInput) as err:
        parse_uri(raw)
    assert str(err.value).startswith("uri: ")
    assert words in str(err.value)


def test_qemu_conf_locations():
    assert parse_uri("qemu:///system").qemu_conf_path() == "/etc/libvirt/qemu.conf"
    assert parse_uri("qemu:///embed?root=/r").qemu_conf_path() == "/r/etc/qemu.conf"
    session = parse_uri("qemu:///session")
    assert session.qemu_conf_path({"XDG_CONFIG_HOME": "/x", "HOME": "/h"}) == "/x/libvirt/qemu.conf"
    assert session.qemu_conf_path({"HOME": "/h"}) == "/h/.config/libvirt/qemu.conf"


@pytest.mark.parametrize("root", ["/", "//", "//.", "///", "/../", "/./..", "/tmp/..", "%2F", "/%2F/"])
def test_embed_root_that_is_the_host_root_is_refused(root):
    with pytest.raises(InvalidInput) as err:
        parse_uri(f"qemu:///embed?root={root}")
    assert str(err.value).startswith("uri: ") and "cannot be / itself" in str(err.value)


def test_embed_root_symlinked_to_the_host_root_is_refused(tmp_path):
    (tmp_path / "slash").symlink_to("/")
    with pytest.raises(InvalidInput, match="cannot be / itself"):
        parse_uri(f"qemu:///embed?root={tmp_path}/slash")


@pytest.mark.parametrize("root, normal", [
    ("//srv/vms", "/srv/vms"), ("/srv/./vms/", "/srv/vms"), ("/srv/x/../vms", "/srv/vms"),
])
def test_embed_root_is_normalised(root, normal):
    uri = parse_uri(f"qemu:///embed?root={root}")
    assert uri.embed_root == normal
    assert uri.qemu_conf_path() == f"{normal}/etc/qemu.conf"


@pytest.mark.parametrize("query, words", [
    ("root=/a&root=/b", "root more than once"),
    ("root=/a&rot=/b", "unknown parameter 'rot'"),
    ("root=/a%00b", "control character"),
    ("root=/a%0Ab", "control character"),
])
def test_embed_query_is_strict(query, words):
    with pytest.raises(InvalidInput) as err:
        parse_uri(f"qemu:///embed?{query}")
    assert str(err.value).startswith("uri: ") and words in str(err.value)
