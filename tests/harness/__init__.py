"""Test harness for virtops.qemu integration tests.

- guest: builds the tiny TCG test guest (kernel + busybox initramfs) from
  Debian packages and caches it under tests/.cache/guest/.
- host: the accounts and directories libvirtd and QEMU need, created when
  missing (tools/setup and the libvirtd start both use it).
- libvirtd: reuses a running libvirtd or starts one in a private network
  namespace, and renders domain XML for the test guest.
- fresh: runs a command on a throwaway view of the host without libvirt's
  accounts and directories (tests of host and libvirtd).
- ansible: runs modules ad hoc and playbooks, returning structured results.
- payloads: builds modules' AnsiballZ payloads with ansible-core's builder
  (what each one ships; bench/ansiballz_build.py times it).
- cloud_image: the Debian 12 cloud image (qcow2, UEFI, cloud-init, guest
  agent), built once and cached under tests/.cache/molecule/.
- ci_gate: under CI=true, a skipped test fails the pytest run.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / "tests" / ".cache"
