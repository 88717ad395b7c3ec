"""Bind-mount directories in the current (private) mount namespace, then exec a command.

Usage: python bind_exec.py SRC=DST [SRC=DST ...] -- ARGV...

Run under ``unshare --mount --propagation private``: the mounts are seen by
the command and its children only, never by the host.
"""

from __future__ import annotations

import os
import subprocess
import sys


def main(args: list[str]) -> None:
    split = args.index("--")
    for pair in args[:split]:
        source, target = pair.split("=", 1)
        subprocess.run(["mount", "--bind", source, target], check=True)
    os.execvp(args[split + 1], args[split + 1:])


if __name__ == "__main__":
    main(sys.argv[1:])
