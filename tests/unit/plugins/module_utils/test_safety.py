"""Input checks, file errors and lock files that keep the driver core from harming the host."""

from __future__ import annotations

import errno
import os
import threading
import time

import pytest
from fakes import Exit, FakeModule

from ansible_collections.virtops.qemu.plugins.module_utils import fileio
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import caps, process
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed.layout import Layout
from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError, InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.fileio import make_private_dir
from ansible_collections.virtops.qemu.plugins.module_utils.model.domain_options import render
from ansible_collections.virtops.qemu.plugins.module_utils.model.names import validate_name
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import element
from ansible_collections.virtops.qemu.plugins.module_utils.module_glue import run


@pytest.mark.parametrize("name", ["vm1\n", "vm1\n\n", "\nvm1", "vm\n1", "vm1\r"])
def test_names_with_line_breaks_are_refused(name):
    with pytest.raises(InvalidInput) as err:
        validate_name(name, "domain")
    assert str(err.value).startswith("name: ")


# -- lock files -------------------------------------------------------------------
def test_no_domain_name_reaches_the_root_lock():
    layout = Layout("/r")
    assert layout.driver_lock_file() == "/r/run/qemu/locks/driver.lock"
    assert layout.domains.lock_file("driver") == "/r/run/qemu/locks/domain/driver.lock"
    for name in ("driver", "locks", "domain", "..", "driver.lock"):
        assert os.path.dirname(layout.domains.lock_file(name)) == "/r/run/qemu/locks/domain"


def test_a_removed_lock_file_is_not_locked_twice(tmp_path):
    """A run waiting on a lock file its holder removes must not share the lock with a newcomer."""
    path = str(tmp_path / "d.lock")
    events = []
    newcomer_holds, newcomer_may_go = threading.Event(), threading.Event()

    def waiter():
        with fileio.file_lock(path, "domain d"):
            events.append(("waiter", newcomer_holds.is_set() and not newcomer_may_go.is_set()))

    def newcomer():
        with fileio.file_lock(path, "domain d"):
            newcomer_holds.set()
            newcomer_may_go.wait(5)
            time.sleep(0.2)       # the waiter must still be waiting here

    with fileio.file_lock(path, "domain d"):
        late = threading.Thread(target=waiter)
        late.start()
        time.sleep(0.2)                         # the waiter now polls the old file
        fileio.remove_lock_file(path)
        fresh = threading.Thread(target=newcomer)
        fresh.start()
        assert newcomer_holds.wait(5)           # a new file, locked by the newcomer
    time.sleep(0.3)                             # the old file is free now
    newcomer_may_go.set()
    for thread in (late, fresh):
        thread.join(10)
    assert events == [("waiter", False)]


# -- file errors name the path ----------------------------------------------------------
def _denying(real, denied_path: str):
    """``real``, except that it fails with EACCES on ``denied_path`` as it would for a non-root user."""
    def call(path, *args, **kwargs):
        if os.fspath(path) == denied_path:
            raise PermissionError(errno.EACCES, "Permission denied", denied_path)
        return real(path, *args, **kwargs)
    return call


def test_write_below_a_file_names_the_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(BackendError, match=f"cannot write {blocker}/a.xml: {blocker} is not a directory"):
        fileio.atomic_write(str(blocker / "a.xml"), "text")


def test_unreadable_file_names_the_path(monkeypatch):
    monkeypatch.setattr("builtins.open", _denying(open, "/r/etc/qemu/a.xml"))
    with pytest.raises(BackendError, match="cannot read /r/etc/qemu/a.xml: Permission denied"):
        fileio.read_text("/r/etc/qemu/a.xml")


def test_unlistable_directory_names_the_path(tmp_path, monkeypatch):
    assert fileio.list_dir(str(tmp_path / "missing")) == []
    monkeypatch.setattr("os.listdir", _denying(os.listdir, str(tmp_path)))
    with pytest.raises(BackendError, match=f"cannot list directory {tmp_path}: Permission denied"):
        fileio.list_dir(str(tmp_path))


def test_lock_file_that_cannot_be_created_names_the_path(tmp_path):
    with pytest.raises(BackendError, match=f"cannot open lock file {tmp_path}/no/d.lock"), \
            fileio.file_lock(str(tmp_path / "no" / "d.lock"), "domain d"):
        pass


def test_tree_below_a_file_names_the_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(BackendError, match=f"{blocker} exists and is not a directory"):
        make_private_dir(str(blocker / "root" / "etc"))
    with pytest.raises(BackendError, match=f"{blocker} exists and is not a directory"):
        make_private_dir(str(blocker))


def test_unwritable_parent_names_the_directory(tmp_path, monkeypatch):
    monkeypatch.setattr("os.mkdir", _denying(os.mkdir, str(tmp_path / "r")))
    with pytest.raises(BackendError, match=f"cannot create directory {tmp_path}/r: Permission denied"):
        make_private_dir(str(tmp_path / "r" / "etc"))


@pytest.mark.parametrize("kind", ["file", "below a file"])
def test_root_that_is_no_directory_is_refused_on_open(tmp_path, kind):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    root = blocker if kind == "file" else blocker / "root"
    with pytest.raises(InvalidInput) as err:
        Layout(str(root)).check_root()
    assert err.value.option == "uri" and str(root) in str(err.value) and "not a directory" in str(err.value)


def test_unreadable_root_is_refused_on_open(monkeypatch):
    monkeypatch.setattr("os.stat", _denying(os.stat, "/r"))
    with pytest.raises(BackendError, match="cannot access the embed root /r: Permission denied"):
        Layout("/r").check_root()


# -- XML text from options ----------------------------------------------------------------
@pytest.mark.parametrize("title", ["a\x01b", "nul\x00", "esc\x1b[0m"])
def test_control_characters_in_text_name_the_option(title):
    params = {"name": "vm1", "title": title, "memory": "256 MiB"}
    with pytest.raises(InvalidInput) as err:
        render(params)
    assert str(err.value).startswith("title: ")


def test_control_characters_in_attributes_name_the_element():
    with pytest.raises(InvalidInput, match="^source@file: "):
        element("source", file="/a\x02b")
    assert element("title", "tab\tnew\nline").text == "tab\tnew\nline"


# -- the last safety net of every module ------------------------------------------------------
@pytest.mark.parametrize("error, words, kind", [
    (PermissionError(errno.EACCES, "Permission denied", "/r/etc/qemu"), "Permission denied (/r/etc/qemu)", "OSError"),
    (FileExistsError(errno.EEXIST, "File exists", "/r/etc"), "File exists (/r/etc)", "OSError"),
    (ValueError("All strings must be XML compatible"), "All strings must be XML compatible", "ValueError"),
])
def test_unexpected_errors_are_one_failure_naming_the_path(error, words, kind):
    def action():
        raise error

    with pytest.raises(Exit) as done:
        run(FakeModule(), action)
    result = done.value.result
    assert (result["msg"], result["error"]) == (words, kind)
    assert "Traceback" in result["exception"]


# -- probe directories of dead runs -------------------------------------------------------
def test_probe_directories_of_dead_runs_are_removed(tmp_path):
    me = os.getpid()
    dead = tmp_path / "virtops-caps-999999999-12-abcd"      # no such pid
    reused = tmp_path / f"virtops-caps-{me}-1-abcd"          # this pid, but another start time
    live = tmp_path / f"virtops-caps-{me}-{process.start_time(me)}-abcd"
    foreign = tmp_path / "virtops-caps-999999999-13-efgh"
    other = tmp_path / "unrelated-999999999-12-x"
    for path in (dead, reused, live, foreign, other):
        path.mkdir()
        (path / "qemu.pid").write_text(f"{me}\n")       # a pid that is no probe QEMU: never signalled
    kept = [live, other]
    if os.geteuid() == 0:
        os.chown(foreign, 65534, 65534)     # another user's directory is not ours to remove
        kept.append(foreign)
    caps.reap_stale_probes(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in kept)
