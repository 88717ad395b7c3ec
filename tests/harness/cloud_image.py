"""The Debian 12 cloud image, the "distribution's cloud image" of the tests.

Built by extensions/molecule/resources/image/build_image.py --kind cloud
(mmdebstrap, needs the Debian mirror) and cached in tests/.cache/molecule/
next to the Molecule base image: built once per package versions and
builder source.  Boot it through a qcow2 overlay with UEFI firmware (OVMF);
it reads a NoCloud seed and answers the guest agent.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass

from . import CACHE, REPO

BUILDER = REPO / "extensions" / "molecule" / "resources" / "image" / "build_image.py"
IMAGE_CACHE = CACHE / "molecule"
OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"
DEFAULT_USER = "debian"     # cloud-init's default user in Debian's cloud.cfg


@dataclass(frozen=True)
class CloudImage:
    path: str           # the qcow2 file
    checksum: str       # "sha256:<hex>" of that file
    key: str


def build_cloud_image() -> CloudImage:
    """The cached image, built first when the cache has none for today's packages."""
    proc = subprocess.run([sys.executable, str(BUILDER), "--cache", str(IMAGE_CACHE), "--kind", "cloud"],
                          capture_output=True, text=True, timeout=1800, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"building the cloud image failed: {proc.stderr.strip()[-4000:]}")
    result = json.loads(proc.stdout)
    return CloudImage(path=result["image"], checksum=result["checksum"], key=result["key"])
