"""Run a command on a throwaway view of this host that never had libvirt.

``fresh_host_argv(workdir, argv)`` wraps ``argv`` in new mount, network and
PID namespaces. Inside them, before ``argv`` runs:

- /etc is a copy (under ``workdir``) without the accounts harness.host
  creates, so useradd and groupadd work on the copy;
- /run, /var/lib, /var/cache and /var/log are empty tmpfs, so neither the
  libvirt directories nor a running libvirtd's sockets are visible; only
  apt's and dpkg's state under /var/lib is there, read-only;
- harness.host prepares a root-only stand-in file instead of /dev/kvm, so
  the view's own ``kvm`` group never lands on the host's device.

The host's own accounts, directories and daemons are untouched. This module
is the namespace's init: it reaps orphans while ``argv`` runs, and when it
exits, the kernel ends every process started inside (virtlogd, libvirtd,
QEMU).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from . import host

EMPTIED = ("/run", "/var/lib", "/var/cache", "/var/log")
# The package state stays visible, read-only: apt-get download builds the guest.
KEPT = ("/var/lib/apt", "/var/lib/dpkg")
ACCOUNT_FILES = {"passwd": host.USERS, "shadow": host.USERS,
                 "group": host.GROUPS, "gshadow": host.GROUPS}
TESTS = Path(__file__).resolve().parents[1]


def fresh_host_argv(workdir: Path, argv: list[str]) -> list[str]:
    return ["unshare", "--mount", "--propagation", "private", "--net", "--pid", "--kill-child", "--mount-proc",
            sys.executable, "-m", "harness.fresh", str(workdir), *argv]


def fresh_host_env() -> dict[str, str]:
    """The environment for fresh_host_argv: harness importable inside."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), *sys.path]))


def strip_accounts(etc: Path) -> None:
    """Remove harness.host's users and groups, and their memberships, from a copy of /etc."""
    for name, removed in ACCOUNT_FILES.items():
        path = etc / name
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        path.write_text("".join(_without(line, removed) for line in lines), encoding="utf-8")


def _without(line: str, removed: tuple[str, ...]) -> str:
    fields = line.rstrip("\n").split(":")
    if fields[0] in removed:
        return ""
    if len(fields) == 4 and fields[3]:
        # group and gshadow end with the member list
        fields[3] = ",".join(m for m in fields[3].split(",") if m not in host.USERS)
    return ":".join(fields) + "\n"


def copy_etc(etc: Path) -> None:
    """cp -a of /etc.  A file that goes while cp runs (the libvirtd of a test running beside this one
    renames its domain XML files) is not copied; cp copies the rest, and any other error fails."""
    proc = subprocess.run(["cp", "-a", "/etc", str(etc)], capture_output=True, text=True, check=False)
    errors = [line for line in proc.stderr.splitlines() if line]
    vanished = [line for line in errors if line.startswith("cp: cannot stat") and "No such file" in line]
    if proc.returncode != 0 and (not errors or vanished != errors):
        raise RuntimeError(f"cp -a /etc {etc} failed: {proc.stderr.strip()}")


def _enter(workdir: Path) -> None:
    etc = workdir / "etc"
    copy_etc(etc)
    strip_accounts(etc)
    _mount("--bind", str(etc), "/etc")
    staged = {path: workdir / "kept" / Path(path).name for path in KEPT}
    for path, stage in staged.items():
        stage.mkdir(parents=True)
        _mount("--bind", path, str(stage))
    for path in EMPTIED:
        _mount("-t", "tmpfs", "-o", "mode=0755", "tmpfs", path)
    for path, stage in staged.items():
        Path(path).mkdir(parents=True)
        _mount("--bind", str(stage), path)
        _mount("-o", "remount,bind,ro", path)
    stand_in = workdir / "kvm"
    stand_in.touch(mode=0o600)
    os.environ[host.KVM_DEVICE_VARIABLE] = str(stand_in)


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def _init(argv: list[str]) -> int:
    """Run argv and reap every orphan until it exits, as an init does.

    libvirtd daemonizes the QEMU it probes; an orphan nobody reaps stays a
    zombie, and libvirtd then waits in vain for it to die.
    """
    child = subprocess.Popen(argv)  # pylint: disable=consider-using-with
    while True:
        pid, status = os.wait()
        if pid == child.pid:
            return os.waitstatus_to_exitcode(status)


def main(args: list[str]) -> int | str:
    if os.getpid() != 1:
        return "harness.fresh runs as the init of a new PID namespace: use fresh_host_argv()"
    workdir, argv = Path(args[0]), args[1:]
    _enter(workdir)
    return _init(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
