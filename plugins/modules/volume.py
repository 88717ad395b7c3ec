#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: volume
short_description: Create, grow, clone and delete libvirt storage volumes
version_added: 0.2.0
description:
  - Manages one volume of an active libvirt storage pool.
  - A missing volume is created with O(capacity) and O(format), as a copy of O(clone_from),
    or on top of O(backing_store).
  - An existing volume with the desired properties is left alone. A larger O(capacity) grows
    it; a smaller one is refused unless O(allow_shrink=true). Its format and backing store
    cannot be changed; asking for another one is an error.
  - O(state=absent) deletes exactly the named volume; nothing else in the pool is touched.
  - The diff shows the part of the volume's XML this module manages - name, capacity, path,
    format, permissions and backing store.
author:
  - virtops.qemu maintainers (@virtops)
extends_documentation_fragment:
  - virtops.qemu.connection
  - virtops.qemu.attributes
options:
  pool:
    description: Name of the (active) pool.
    type: str
    required: true
  name:
    description: Name of the volume, the file name in the pool's directory; no C(/).
    type: str
    required: true
  state:
    description: V(present) creates or adjusts the volume, V(absent) deletes it.
    type: str
    choices: [present, absent]
    default: present
  capacity:
    description:
      - Size the guest sees, such as V(10GiB) or V(512MiB); a bare number is in bytes.
        C(KiB), C(MiB), C(GiB), C(TiB) are powers of 1024, C(KB), C(MB), C(GB), C(TB) of 1000.
      - Needed to create a volume unless it is cloned or has a backing volume.
    type: str
  allocation:
    description:
      - Space to reserve when the volume is created; the full O(capacity) preallocates the file,
        less leaves it sparse. Not compared afterwards.
    type: str
  format:
    description: Image format. Defaults to V(raw), or the format of the clone's source.
    type: str
    choices: [raw, qcow2]
  backing_store:
    description: A qcow2 volume on top of a backing image, which stays unchanged.
    type: dict
    suboptions:
      path:
        description: Absolute path of the backing image.
        type: path
      volume:
        description: The backing volume as V(name) (same pool) or V(pool/name).
        type: str
      format:
        description: Format of the backing image; needed with O(backing_store.path).
        type: str
        choices: [raw, qcow2]
  clone_from:
    description: A volume to copy into a new one, as V(name) (same pool) or V(pool/name).
    type: str
  owner:
    description: Numeric owner of the volume's file.
    type: int
  group:
    description: Numeric group of the volume's file.
    type: int
  mode:
    description:
      - Mode of the volume's file, as M(ansible.builtin.file) takes it - an octal string
        such as V('0640'), an unquoted YAML number such as C(0640), or a symbolic mode
        that sets every class, such as V(u=rw,g=r,o=).
      - Permission bits only; libvirt keeps no setuid, setgid or sticky bit.
      - New volumes get V('0600').
    type: raw
  allow_shrink:
    description: Allow a O(capacity) smaller than the volume's, which cuts off its end.
    type: bool
    default: false
  source:
    description:
      - An image to create the missing volume from - a file on the managed host or an http(s) URL.
      - The image's format is read with C(qemu-img info), never from its name. When it differs from
        O(format) (default V(raw)), the image is converted with C(qemu-img convert). A larger
        O(capacity) grows the volume after the import; a smaller one than the image's is refused.
      - A download streams into a temporary file, is checked against O(source.checksum), and the
        volume appears only when it is complete. A failed or interrupted import leaves no volume; the
        temporary file of a killed run is removed by the next import of the same volume.
      - An existing volume is never imported again, even when the source changed since; the module
        leaves its data alone. To import a new image, delete the volume (O(state=absent)) first.
      - An image that refers to another file (a qcow2 backing or data file) is refused.
      - Not with O(clone_from) or O(backing_store).
    type: dict
    version_added: 0.3.0
    suboptions:
      path:
        description: Absolute path of the image on the managed host (the host the module runs on).
        type: path
      url:
        description: http:// or https:// URL of the image, fetched by the managed host.
        type: str
      checksum:
        description:
          - Expected digest of the image (as downloaded or as the file is), as
            M(ansible.builtin.get_url) takes it - V(sha256:<hex>); the algorithm is one of
            V(sha1), V(sha224), V(sha256), V(sha384), V(sha512).
          - A mismatch fails the task and nothing is imported.
        type: str
      validate_certs:
        description: Verify the TLS certificate of an https O(source.url), as Ansible's URL modules do.
        type: bool
        default: true
notes:
  - O(owner), O(group) and O(mode) of an existing volume are changed on the file itself;
    through libvirt that works only for a local V(uri).
  - Through libvirt, O(source) is read (downloaded, and converted when needed) on the managed host into
    its temporary directory, then uploaded with libvirt's volume upload stream into a hidden volume of
    the pool that libvirt copies into the volume, so a remote V(uri) such as C(qemu+ssh://) works; the
    host libvirt runs on needs room for the image twice while it is imported. A hidden volume a
    killed run left is removed by the next import of the same volume from the same managed host. The embedded driver
    downloads and converts in the pool's directory and renames the result into place.
  - In check mode a O(source.url) is not fetched, so the predicted capacity is O(capacity) or 0.
seealso:
  - module: virtops.qemu.pool
  - module: virtops.qemu.pool_info
"""

EXAMPLES = r"""
- name: A 10 GiB qcow2 disk
  virtops.qemu.volume:
    pool: images
    name: web01.qcow2
    capacity: 10GiB
    format: qcow2

- name: Grow it
  virtops.qemu.volume:
    pool: images
    name: web01.qcow2
    capacity: 20GiB

- name: A copy of a golden image
  virtops.qemu.volume:
    pool: images
    name: web02.qcow2
    clone_from: golden.qcow2

- name: A thin overlay on the golden image
  virtops.qemu.volume:
    pool: images
    name: web03.qcow2
    backing_store:
      volume: images/golden.qcow2

- name: A raw disk imported from a qcow2 cloud image, checked and grown to 20 GiB
  virtops.qemu.volume:
    pool: images
    name: web04.raw
    format: raw
    capacity: 20GiB
    source:
      url: https://cloud.example.org/images/debian-12-genericcloud-amd64.qcow2
      checksum: "sha256:5d1c0e3f0b6b6f9a2e8f4b7f37c3f0a2d0e4f2c1b9e6a8d7c5b3a1f0e9d8c7b6"

- name: A qcow2 volume from an image already on the host
  virtops.qemu.volume:
    pool: images
    name: web05.qcow2
    format: qcow2
    source:
      path: /srv/golden/web.qcow2

- name: Delete one volume
  virtops.qemu.volume:
    pool: images
    name: web03.qcow2
    state: absent
"""

RETURN = r"""
pool:
  description: The pool.
  returned: always
  type: str
name:
  description: The volume.
  returned: always
  type: str
state:
  description: V(present) or V(absent) after the task.
  returned: always
  type: str
path:
  description:
    - Path of the volume on the host.
    - The same as the C(path) of the volume in its pool's volumes listed by M(virtops.qemu.pool_info).
  returned: when the volume exists
  type: str
  sample: /srv/images/web01.qcow2
format:
  description: Image format.
  returned: when the volume exists
  type: str
capacity:
  description: Capacity in bytes (predicted in check mode).
  returned: when the volume exists
  type: int
allocation:
  description: Bytes the volume occupies on the host (0 for a volume a check run would create).
  returned: when the volume exists
  type: int
xml:
  description: The managed part of the volume's XML after the task.
  returned: always
  type: str
checksum:
  description:
    - Digest of the image this run imported, as V(algorithm:hex) (the algorithm of O(source.checksum),
      V(sha256) without one); null when nothing was imported.
  returned: always
  type: str
  sample: sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
  version_added: 0.3.0
"""


from typing import TYPE_CHECKING

# First: the imports below then load through its compiled-code cache.
from ansible_collections.virtops.qemu.plugins.module_utils import bytecode  # noqa: F401  # pylint: disable=unused-import
from ansible_collections.virtops.qemu.plugins.module_utils.driver.connect import open_driver
from ansible_collections.virtops.qemu.plugins.module_utils.manager.volume import VolumeManager
from ansible_collections.virtops.qemu.plugins.module_utils.model import kinds
from ansible_collections.virtops.qemu.plugins.module_utils.module_glue import MaskingModule, argument_spec, run

# Never run: ansible-core reads this import and ships in the payload the parts
# the driver loads on demand for this module's calls (module_utils/lazy.py).
if TYPE_CHECKING:
    from ansible_collections.virtops.qemu.plugins.module_utils.payload import storage  # noqa: F401  # pylint: disable=unused-import

FORMATS = ["raw", "qcow2"]
OPTIONS = dict(
    pool=dict(type="str", required=True),
    name=dict(type="str", required=True),
    state=dict(type="str", default="present", choices=["present", "absent"]),
    capacity=dict(type="str"),
    allocation=dict(type="str"),
    format=dict(type="str", choices=FORMATS),
    backing_store=dict(type="dict", options=dict(path=dict(type="path"), volume=dict(type="str"),
                                                 format=dict(type="str", choices=FORMATS))),
    clone_from=dict(type="str"),
    owner=dict(type="int"),
    group=dict(type="int"),
    mode=dict(type="raw"),
    allow_shrink=dict(type="bool", default=False),
    source=dict(type="dict", options=dict(path=dict(type="path"), url=dict(type="str"), checksum=dict(type="str"),
                                          validate_certs=dict(type="bool", default=True))),
)
# The seconds a download may wait for the server before it fails.
URL_TIMEOUT = 60


def open_image(url: str, validate_certs: bool):
    from ansible.module_utils.urls import open_url  # only a download needs it, and it is slow to import
    return open_url(url, validate_certs=validate_certs, timeout=URL_TIMEOUT)


def ensure(module):
    request = kinds.VOLUME.request(module.params)
    with open_driver(module.params["uri"], read_only=module.check_mode) as driver:
        result = VolumeManager(driver.pools, driver.volumes, open_image).ensure(request, module.check_mode)
        return dict(result, warnings=driver.warnings)


def main():
    module = MaskingModule(argument_spec=argument_spec(**OPTIONS), supports_check_mode=True)
    run(module, lambda: ensure(module))


if __name__ == "__main__":
    main()
