"""Embedded driver calls run inside a network namespace, one subprocess per call.

The driver makes bridges, nftables tables and dnsmasq in the namespace of
the process calling it, so tests call it through ``ip netns exec``:
``EmbedInNetns(netns, root).call("networks", "start", "net1")`` runs
``driver.networks.start("net1")`` on ``qemu:///embed?root=ROOT`` there and
returns ``{"value": ..., "warnings": [...]}`` or ``{"error": "Conflict",
"message": ..., "warnings": [...]}``.  Each call is a fresh process, as
each module run is.
"""

from __future__ import annotations

import json

_CALL = """
import json, sys
from ansible_collections.virtops.qemu.plugins.module_utils.driver.connect import open_driver
from ansible_collections.virtops.qemu.plugins.module_utils.errors import VirtError
root, kind, method, args = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
with open_driver("qemu:///embed?root=" + root) as drv:
    try:
        value = getattr(getattr(drv, kind), method)(*args)
        if isinstance(value, list):
            value = [v._asdict() if hasattr(v, "_asdict") else v for v in value]     # records: NamedTuples
        out = {"value": value, "warnings": drv.warnings}
    except VirtError as exc:
        out = {"error": type(exc).__name__, "message": str(exc), "warnings": drv.warnings}
print(json.dumps(out))
"""


class EmbedInNetns:
    def __init__(self, netns, root):
        self.netns = netns
        self.root = str(root)

    def call(self, kind: str, method: str, *args) -> dict:
        return json.loads(self.netns.python(_CALL, self.root, kind, method, json.dumps(list(args))))

    def net(self, method: str, *args):
        """A network call that must succeed: its value."""
        out = self.call("networks", method, *args)
        if "error" in out:
            raise AssertionError(f"networks.{method}{args!r}: {out['error']}: {out['message']}")
        return out["value"]
