"""Boot the test guest under bare QEMU (no libvirt) and talk QMP to it."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

from .guest import Guest

QEMU = "qemu-system-x86_64"


class Qmp:
    """Just enough QMP for tests: greeting, capabilities, commands."""

    def __init__(self, path: str | Path, timeout: float = 10) -> None:
        self._sock = socket.socket(socket.AF_UNIX)
        self._sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._sock.connect(str(path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)
        self._file = self._sock.makefile("rw", encoding="utf-8")
        self.greeting = self._read()
        self.execute("qmp_capabilities")

    def execute(self, command: str, **arguments) -> object:
        request = {"execute": command}
        if arguments:
            request["arguments"] = arguments
        self._file.write(json.dumps(request) + "\n")
        self._file.flush()
        while True:
            reply = self._read()
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise RuntimeError(f"QMP {command}: {reply['error']}")

    def _read(self) -> dict:
        line = self._file.readline()
        if not line:
            raise ConnectionError("QMP connection closed")
        return json.loads(line)

    def close(self) -> None:
        self._file.close()
        self._sock.close()


class BareQemu:
    """A TCG QEMU running the guest; a context manager that never leaks it.

    ``extra_args`` adds devices, e.g. ``["-device", "virtio-blk-pci,..."]``.
    """

    def __init__(self, guest: Guest, workdir: Path, extra_args=(),
                 memory_mib: int = 256) -> None:
        self.serial_log = workdir / "serial.log"
        self.qmp_socket = workdir / "qmp.sock"
        self.argv = [
            QEMU, "-accel", "tcg", "-m", str(memory_mib), "-nodefaults",
            "-nographic", "-no-user-config",
            "-serial", f"file:{self.serial_log}",
            "-qmp", f"unix:{self.qmp_socket},server=on,wait=off",
            "-kernel", str(guest.kernel), "-initrd", str(guest.initrd),
            "-append", guest.cmdline, *extra_args,
        ]
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> BareQemu:
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        return self

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
        if self.proc:
            self.proc.wait()
            self.proc.stdout.close()

    def qmp(self) -> Qmp:
        return Qmp(self.qmp_socket)

    def wait_exit(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)
