# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a host tool (qemu-img, mount, mkfs, ...) as an argv list, with a deadline.

Every failure is a BackendError that says what was being done, with the
tool's own words.  Private to the collection.
"""

from __future__ import annotations

import subprocess

from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError

TIMEOUT = 600


def run(argv: list[str], what: str, timeout: float = TIMEOUT) -> str:
    """``argv``'s standard output; ``what`` completes "cannot ..." in the error."""
    try:
        done = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError as exc:
        raise BackendError(f"cannot {what}: {argv[0]} is not installed") from exc
    except subprocess.CalledProcessError as exc:
        reason = (exc.stderr or exc.stdout or "").strip() or f"exit status {exc.returncode}"
        raise BackendError(f"cannot {what}: {reason}") from exc
    except subprocess.TimeoutExpired as exc:
        raise BackendError(f"cannot {what}: {argv[0]} did not finish in {timeout:.0f} s") from exc
    return done.stdout
