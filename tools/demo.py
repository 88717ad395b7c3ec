"""Prepare the demo (a tiny guest, libvirtd when asked for) and run playbooks/demo.yml.

By default the VM runs on the daemonless embedded driver, under
/var/tmp/virtops-demo/root.  With --libvirt it runs on qemu:///system; a
libvirtd is then started, in a network namespace of its own, only when none
runs, and stopped afterwards (the harness prepares the host for it first).  The guest is built from Debian packages by
the test harness and cached in tests/.cache/guest.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from harness.guest import build_guest  # noqa: E402  pylint: disable=wrong-import-position
from harness.libvirtd import Libvirtd  # noqa: E402  pylint: disable=wrong-import-position

DEMO_DIR = Path("/var/tmp/virtops-demo")


def stage_guest() -> None:
    guest = build_guest()
    DEMO_DIR.mkdir(mode=0o755, exist_ok=True)
    for source, name in ((guest.kernel, "vmlinuz"), (guest.initrd, "initrd.img")):
        shutil.copyfile(source, DEMO_DIR / name)
        (DEMO_DIR / name).chmod(0o644)
    (DEMO_DIR / "serial.log").unlink(missing_ok=True)


def run_playbook(args: list) -> int:
    env = dict(os.environ,
               ANSIBLE_COLLECTIONS_PATH=str(REPO / "tests" / ".cache" / "collections"),
               ANSIBLE_PYTHON_INTERPRETER=sys.executable)
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,",
            str(REPO / "playbooks" / "demo.yml"), "-e", f"demo_dir={DEMO_DIR}", *args]
    return subprocess.run(argv, env=env, check=False).returncode


def main(args: list) -> int:
    stage_guest()
    if "--libvirt" not in args:
        return run_playbook(args)
    daemon = Libvirtd.start()
    try:
        return run_playbook([a for a in args if a != "--libvirt"] + ["-e", f"demo_uri={daemon.uri}"])
    finally:
        daemon.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
