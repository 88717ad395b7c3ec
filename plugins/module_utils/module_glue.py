# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every module of the collection shares: connection options, error handling, masked passwords.

The only part of module_utils that knows about AnsibleModule.  Every result
and every failure leaves through here, so this is where passwords are masked
(module_utils/secrets.py).  Private to the collection.
"""

from __future__ import annotations

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.virtops.qemu.plugins.module_utils import secrets
from ansible_collections.virtops.qemu.plugins.module_utils.errors import MissingDependency, VirtError
from ansible_collections.virtops.qemu.plugins.module_utils.model.xmltree import HAS_LXML, LXML_IMPORT_ERROR

COLLECTION = "virtops.qemu"

CONNECTION_OPTIONS = {
    "uri": {"type": "str", "default": "qemu:///system"},
}


class MaskingModule(AnsibleModule):
    """AnsibleModule whose passwords are hidden from the managed host's log as well.

    AnsibleModule logs its options (syslog, journal) while it is made, before ``run`` is
    called; the passwords among them join ``no_log_values`` just before that log entry.
    """

    def _log_invocation(self):
        self.no_log_values.update(secrets.values_in(self.params))
        super()._log_invocation()


def argument_spec(**options) -> dict:
    """The module's own options plus the shared connection options."""
    spec = dict(CONNECTION_OPTIONS)
    spec.update(options)
    return spec


def run(module, action) -> None:
    """Call ``action()`` and exit: its dict becomes the result, a VirtError one fail_json.

    The result's ``warnings`` (strings) and ``deprecations`` (dicts of ``msg`` and the
    collection ``version`` that removes the feature) are shown as Ansible's warnings.
    Passwords are masked in results and failures; those among the module's options are
    also hidden by Ansible wherever they appear, its ``invocation`` included.
    """
    module.no_log_values.update(secrets.values_in(module.params))
    if not HAS_LXML:
        _fail(module, msg=missing_required_lib("lxml"), exception=str(LXML_IMPORT_ERROR))
    try:
        result = action()
    except MissingDependency as e:
        _fail(module, msg=missing_required_lib(e.library, reason=str(e).split(" is required ", 1)[1]),
              exception=traceback.format_exc())
    except VirtError as e:
        _fail(module, msg=str(e), error=type(e).__name__, **_shown(module, e.result))
    except OSError as e:
        # A file error the driver did not anticipate: still one message naming the path.
        where = f" ({e.filename})" if e.filename else ""
        _fail(module, msg=f"{e.strerror or e}{where}", error="OSError", exception=traceback.format_exc())
    except ValueError as e:
        # lxml refuses text it cannot store in XML (NUL, control characters) with ValueError.
        _fail(module, msg=str(e), error="ValueError", exception=traceback.format_exc())
    result = secrets.mask(_shown(module, result))
    for warning in result.pop("warnings", []):
        module.warn(warning)
    for deprecation in result.pop("deprecations", []):
        module.deprecate(deprecation["msg"], version=deprecation["version"], collection_name=COLLECTION)
    module.exit_json(**result)


def _fail(module, **result) -> None:
    module.fail_json(**secrets.mask(result))


def _shown(module, result: dict) -> dict:
    """The result without its diff unless the user asked for one."""
    return result if module._diff else {k: v for k, v in result.items() if k != "diff"}
