"""Build the tiny test guest: Debian cloud kernel + busybox initramfs.

The guest boots under TCG in a few seconds, prints MARKER on the serial
console followed by VIRTOPS-DISK / VIRTOPS-NIC lines describing its hardware,
and powers off when the ACPI power button is pressed.  Before MARKER it opens
the AT keyboard's /dev/input/eventN and says ``VIRTOPS-KEYBOARD eventN``;
from then on every key press prints ``VIRTOPS-KEY <linux code>`` (parse_keys).

With ``virtops.dhcp`` on the kernel command line (DHCP_CMDLINE) the guest
also runs busybox ``udhcpc`` on every NIC but lo; each lease it binds or
renews is configured and printed as ``VIRTOPS-LEASE <iface> <ip>/<prefix>
<mac>`` (parse_leases reads them back).

Everything comes from Debian packages fetched with ``apt-get download`` and
unpacked with ``dpkg-deb -x``; the result is cached in tests/.cache/guest/
under a key derived from the package versions and this file's source, so it
is rebuilt only when one of those changes.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import json
import lzma
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import CACHE

GUEST_CACHE = CACHE / "guest"
KERNEL_METAPACKAGE = "linux-image-cloud-amd64"
BUSYBOX_PACKAGE = "busybox-static"
MARKER = "VIRTOPS-GUEST-READY"
POWEROFF_MARKER = "VIRTOPS-GUEST-POWEROFF"
CMDLINE = "console=ttyS0 panic=-1 quiet"
DHCP_CMDLINE = CMDLINE + " virtops.dhcp"
LEASE_PREFIX = "VIRTOPS-LEASE"
# The AT keyboard's event device is held open from before MARKER; each key press prints its Linux code.
KEYBOARD_PREFIX = "VIRTOPS-KEYBOARD"
KEY_PREFIX = "VIRTOPS-KEY"
# With ``virtops.tick`` the guest writes DISK_MARKER to the start of /dev/vda, then prints
# ``VIRTOPS-TICK <count> <uptime>`` every half second (parse_ticks): a migrated guest's count goes on.
TICK_CMDLINE = CMDLINE + " virtops.tick"
TICK_PREFIX = "VIRTOPS-TICK"
DISK_MARKER = "VIRTOPS-DISK-MARKER"
UDHCPC_SCRIPT_PATH = "/etc/udhcpc.script"
# Under TCG the first DISCOVER often goes out before the bridge port forwards:
# retry every 2 s for a minute, then keep trying in the background.
UDHCPC_ARGS = "-t 30 -T 2 -A 5 -b"
# Load order matters: busybox insmod does not resolve dependencies.
MODULES = (
    "virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev",
    "virtio_pci", "failover", "net_failover", "virtio_net", "virtio_blk",
    "evdev", "button",
)

# The opening of every busybox init of the test guests: the mounts, the console and
# the kernel modules, loaded in the order given.
INIT_PRELUDE = """#!/bin/sh
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
for m in {modules}; do
    insmod {module_dir}/$m.ko || echo "{error} insmod $m"
done
"""

INIT_SCRIPT = """acpid -c /etc/acpi -l /var/log/acpid.log
for e in /sys/class/input/event*; do
    case "$(cat $e/device/name 2>/dev/null)" in "AT "*) kbd=/dev/input/${{e##*/}};; esac
done
for i in 1 2 3 4 5 6 7 8 9 10; do
    [ -z "$kbd" ] || [ -c "$kbd" ] && break
    sleep 0.2
done
if [ -n "$kbd" ] && [ -c "$kbd" ]; then
    exec 3<"$kbd"
    echo "{keyboard_prefix} ${{kbd##*/}}"
    while ev=$(dd bs=24 count=1 <&3 2>/dev/null | od -An -tu2 -v -w24) && [ -n "$ev" ]; do
        set -- $ev
        [ "$9" = 1 ] && [ "${{11}}" = 1 ] && echo "{key_prefix} ${{10}}"
    done &
fi
echo {marker}
for d in /sys/block/vd* /sys/block/sd*; do
    [ -e "$d/size" ] && echo "VIRTOPS-DISK ${{d##*/}} $(cat $d/size)"
done
for n in /sys/class/net/*; do
    [ "${{n##*/}}" = lo ] && continue
    [ -e "$n/address" ] && echo "VIRTOPS-NIC ${{n##*/}} $(cat $n/address)"
done
if grep -qw virtops.tick /proc/cmdline; then
    [ -b /dev/vda ] && echo "{disk_marker} $(cut -d' ' -f1 /proc/uptime)" | dd of=/dev/vda conv=sync,fsync 2>/dev/null \
        && echo "{disk_marker} written"
    (n=0; while true; do n=$((n+1)); echo "{tick_prefix} $n $(cut -d' ' -f1 /proc/uptime)"; sleep 0.5; done) &
fi
if grep -qw virtops.dhcp /proc/cmdline; then
    for n in /sys/class/net/*; do
        [ "${{n##*/}}" = lo ] && continue
        ip link set "${{n##*/}}" up
        udhcpc -i "${{n##*/}}" -s {udhcpc_script} {udhcpc_args}
    done
fi
while true; do sleep 3600; done
"""

# udhcpc's event script: $1 is the event, the lease comes in the environment.
UDHCPC_SCRIPT = """#!/bin/sh
case "$1" in
deconfig)
    ip addr flush dev "$interface"
    ip link set "$interface" up
    ;;
bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$router" ] && ip route replace default via "${{router%% *}}" dev "$interface"
    echo "{prefix} $interface $ip/$mask $(cat /sys/class/net/$interface/address)" >/dev/console
    ;;
esac
exit 0
"""

POWEROFF_SCRIPT = """#!/bin/sh
echo {marker} >/dev/console
poweroff -f
"""


@dataclass(frozen=True)
class Lease:
    """One VIRTOPS-LEASE line of the serial console."""

    iface: str
    ip: str
    prefix: int
    mac: str


def busybox_init(modules: str, module_dir: str, error: str, body: str) -> str:
    """An init script: INIT_PRELUDE loading ``modules`` from ``module_dir``, then ``body``."""
    return INIT_PRELUDE.format(modules=modules, module_dir=module_dir, error=error) + body


def init_script(modules: str) -> str:
    """The test guest's own init."""
    return busybox_init(modules, "/lib/modules", "VIRTOPS-ERROR", INIT_SCRIPT.format(
        marker=MARKER, disk_marker=DISK_MARKER, tick_prefix=TICK_PREFIX, udhcpc_script=UDHCPC_SCRIPT_PATH,
        udhcpc_args=UDHCPC_ARGS, keyboard_prefix=KEYBOARD_PREFIX, key_prefix=KEY_PREFIX))


def with_init(guest: Guest, directory: Path, name: str, script: str, marker: str,
              files: tuple[tuple[str, bytes], ...] = ()) -> Guest:
    """``guest`` booting ``/name`` (``script``) instead of its init, with ``files`` added beside it.

    The script and files go into a second archive appended to the guest's initramfs.
    """
    archive = Cpio()
    for path, data in files:
        archive.file(path, data, 0o644)
    archive.file(name, script.encode(), 0o755)
    first = guest.initrd.read_bytes()
    initrd = directory / f"{name}.img"
    # Each archive of an initramfs starts on a 4-byte boundary.
    initrd.write_bytes(first + bytes(-len(first) % 4) + gzip.compress(archive.finish(), mtime=0))
    initrd.chmod(0o644)
    return Guest(guest.kernel, initrd, f"{CMDLINE} rdinit=/{name}", marker)


def parse_keys(console: str) -> list[int]:
    """The Linux key codes of every key press the guest printed, in order."""
    codes = []
    for line in console.splitlines():
        fields = line.strip().split()
        if len(fields) == 2 and fields[0] == KEY_PREFIX and fields[1].isdigit():
            codes.append(int(fields[1]))
    return codes


def parse_ticks(console: str) -> list[tuple[int, float]]:
    """(count, uptime in seconds) of every tick the guest printed, in order."""
    ticks = []
    for line in console.splitlines():
        fields = line.strip().split()
        if len(fields) == 3 and fields[0] == TICK_PREFIX and fields[1].isdigit():
            ticks.append((int(fields[1]), float(fields[2])))
    return ticks


def parse_leases(console: str) -> list[Lease]:
    """Every lease the guest printed, in order (a renewal repeats its lease)."""
    leases = []
    for line in console.splitlines():
        fields = line.strip().split()
        if len(fields) == 4 and fields[0] == LEASE_PREFIX:
            address, _slash, prefix = fields[2].partition("/")
            leases.append(Lease(fields[1], address, int(prefix or 32), fields[3].lower()))
    return leases


@dataclass(frozen=True)
class Guest:
    kernel: Path
    initrd: Path
    cmdline: str
    marker: str = MARKER


def build_guest(cache_dir: Path = GUEST_CACHE) -> Guest:
    """Return the cached guest, building it first if its inputs changed."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        inputs = _inputs()
        build_dir = cache_dir / _key(inputs)
        if not (build_dir / "inputs.json").exists():
            _build(cache_dir, build_dir, inputs)
            _prune(cache_dir, keep=build_dir.name)
    return Guest(build_dir / "vmlinuz", build_dir / "initrd.img", CMDLINE)


# -- inputs and cache -------------------------------------------------------

def _run(argv: list[str], **kwargs) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv!r} failed ({proc.returncode}): "
                           f"{proc.stderr.strip()}")
    return proc.stdout


def _inputs() -> dict:
    kernel_pkg = _kernel_package()
    versions = _candidate_versions([kernel_pkg, BUSYBOX_PACKAGE])
    return {
        "kernel": [kernel_pkg, versions[kernel_pkg]],
        "busybox": [BUSYBOX_PACKAGE, versions[BUSYBOX_PACKAGE]],
        "source": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
    }


def _key(inputs: dict) -> str:
    blob = json.dumps(inputs, sort_keys=True).encode()
    return "build-" + hashlib.sha256(blob).hexdigest()[:16]


def _kernel_package() -> str:
    out = _run(["apt-cache", "depends", "--important", KERNEL_METAPACKAGE])
    for line in out.splitlines():
        kind, _sep, name = line.strip().partition(": ")
        if kind == "Depends" and name.startswith("linux-image-"):
            return name
    raise RuntimeError(f"cannot resolve the kernel behind {KERNEL_METAPACKAGE}")


def _candidate_versions(packages: list[str]) -> dict[str, str]:
    versions, package = {}, None
    for line in _run(["apt-cache", "policy"] + packages).splitlines():
        if not line.startswith(" "):
            package = line.rstrip(":")
        elif line.strip().startswith("Candidate: "):
            versions[package] = line.split(": ", 1)[1]
    for package in packages:
        if versions.get(package, "(none)") == "(none)":
            raise RuntimeError(f"no installable version of {package}")
    return versions


def _download(package: str, version: str, debs: Path) -> Path:
    debs.mkdir(parents=True, exist_ok=True)
    argv = ["apt-get", "download", "-q"]
    if os.geteuid() == 0:
        # _apt cannot write into the cache dir; download as root instead.
        argv += ["-o", "APT::Sandbox::User=root"]
    _run(argv + [f"{package}={version}"], cwd=debs)
    arch_version = version.split(":", 1)[-1]
    found = sorted(debs.glob(f"{package}_*{arch_version}_*.deb"))
    if not found:
        raise RuntimeError(f"apt-get download {package} produced no .deb")
    return found[-1]


def _prune(cache_dir: Path, keep: str) -> None:
    for old in cache_dir.glob("build-*"):
        if old.name != keep:
            shutil.rmtree(old, ignore_errors=True)


# -- build ------------------------------------------------------------------

def _build(cache_dir: Path, build_dir: Path, inputs: dict) -> None:
    debs = cache_dir / "debs"
    for stale in debs.glob("*.deb"):
        stale.unlink()
    kernel_deb = _download(*inputs["kernel"], debs)
    busybox_deb = _download(*inputs["busybox"], debs)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        root = Path(tmp)
        kroot, broot, out = root / "kernel", root / "busybox", root / "out"
        out.mkdir()
        _run(["dpkg-deb", "-x", str(kernel_deb), str(kroot)])
        _run(["dpkg-deb", "-x", str(busybox_deb), str(broot)])
        vmlinuz = next((kroot / "boot").glob("vmlinuz-*"))
        shutil.copyfile(vmlinuz, out / "vmlinuz")
        modules = _collect_modules(kroot)
        initrd = _initramfs(broot / "bin" / "busybox", modules)
        (out / "initrd.img").write_bytes(gzip.compress(initrd, mtime=0))
        (out / "inputs.json").write_text(json.dumps(inputs, indent=1) + "\n")
        for path in out.iterdir():
            path.chmod(0o644)
        out.rename(build_dir)


def _module_dir(kroot: Path) -> Path:
    dirs = list((kroot / "lib" / "modules").iterdir())
    if len(dirs) != 1:
        raise RuntimeError(f"expected one module tree, found {dirs}")
    return dirs[0]


def _modname(path: str) -> str:
    name = Path(path).name.split(".ko", 1)[0]
    return name.replace("-", "_")


def _collect_modules(kroot: Path, names: tuple[str, ...] = MODULES) -> list[tuple[str, bytes]]:
    """Return [(name, uncompressed .ko)] of ``names`` and their dependencies in load order, builtins skipped."""
    moddir = _module_dir(kroot)
    builtin = {_modname(line) for line in
               (moddir / "modules.builtin").read_text().split()}
    files = {_modname(str(p)): p for p in (moddir / "kernel").rglob("*.ko*")}
    ordered: list[tuple[str, bytes]] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen or name in builtin:
            return
        seen.add(name)
        if name not in files:
            raise RuntimeError(f"kernel module {name} is neither built in "
                               "nor shipped")
        data = _decompress(files[name])
        for dep in _depends(data):
            visit(dep)
        ordered.append((name, data))

    for name in names:
        visit(name)
    return ordered


def _decompress(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".ko.xz"):
        return lzma.decompress(data)
    if path.name.endswith(".ko.gz"):
        return gzip.decompress(data)
    if path.name.endswith(".ko.zst"):
        return subprocess.run(["zstd", "-dc", str(path)], check=True,
                              capture_output=True).stdout
    return data


def _depends(ko: bytes) -> list[str]:
    """The depends= entry of a module's .modinfo section."""
    start = ko.find(b"\0depends=")
    if start < 0:
        return []
    end = ko.index(b"\0", start + 1)
    value = ko[start + len(b"\0depends="):end].decode()
    return [_modname(d) for d in value.split(",") if d]


def _initramfs(busybox: Path, modules: list[tuple[str, bytes]]) -> bytes:
    cpio = Cpio()
    for d in ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "proc", "sys",
              "dev", "tmp", "root", "var", "var/log", "var/run", "etc",
              "etc/acpi", "etc/acpi/PWRF", "etc/acpi/PWRF/00000080",
              "lib", "lib/modules"):
        cpio.directory(d)
    cpio.device("dev/console", 0o600, 5, 1)
    cpio.file("bin/busybox", busybox.read_bytes(), 0o755)
    for applet in _applets(busybox):
        if applet != "bin/busybox":
            cpio.symlink(applet, "/bin/busybox")
    for name, data in modules:
        cpio.file(f"lib/modules/{name}.ko", data, 0o644)
    cpio.file("init", init_script(" ".join(name for name, _data in modules)).encode(), 0o755)
    cpio.file(UDHCPC_SCRIPT_PATH.lstrip("/"), UDHCPC_SCRIPT.format(prefix=LEASE_PREFIX).encode(), 0o755)
    cpio.file("etc/acpi/PWRF/00000080/poweroff",
              POWEROFF_SCRIPT.format(marker=POWEROFF_MARKER).encode(), 0o755)
    return cpio.finish()


def _applets(busybox: Path) -> list[str]:
    return _run([str(busybox), "--list-full"]).split()


class Cpio:
    """Minimal writer for the newc cpio format the kernel unpacks."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._ino = 0
        self._dirs: set[str] = set()

    def directory(self, name: str, mode: int = 0o755) -> None:
        self._dirs.add(name)
        self._entry(name, 0o040000 | mode, b"")

    def file(self, name: str, data: bytes, mode: int) -> None:
        self._parents(name)
        self._entry(name, 0o100000 | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._parents(name)
        self._entry(name, 0o120000 | 0o777, target.encode())

    def device(self, name: str, mode: int, major: int, minor: int) -> None:
        self._entry(name, 0o020000 | mode, b"", rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0, b"", nlink=1)
        return b"".join(self._chunks)

    def _parents(self, name: str) -> None:
        parent = str(Path(name).parent)
        if parent != "." and parent not in self._dirs:
            self._parents(parent)
            self.directory(parent)

    def _entry(self, name: str, mode: int, data: bytes, nlink: int = 1,
               rdev: tuple[int, int] = (0, 0)) -> None:
        self._ino += 1
        encoded = name.encode() + b"\0"
        fields = (self._ino, mode, 0, 0, nlink, 0, len(data), 0, 0,
                  rdev[0], rdev[1], len(encoded), 0)
        header = b"070701" + b"".join(b"%08x" % f for f in fields)
        self._chunks += [header, encoded, _pad(len(header) + len(encoded)),
                         data, _pad(len(data))]


def _pad(length: int) -> bytes:
    return b"\0" * (-length % 4)
