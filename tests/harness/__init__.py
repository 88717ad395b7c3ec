"""Test harness for virtops.qemu integration tests.

- guest: builds the tiny TCG test guest (kernel + busybox initramfs) from
  Debian packages and caches it under tests/.cache/guest/.
- libvirtd: reuses a running libvirtd or starts one in a private network
  namespace, and renders domain XML for the test guest.
- ansible: runs modules ad hoc and playbooks, returning structured results.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / "tests" / ".cache"
