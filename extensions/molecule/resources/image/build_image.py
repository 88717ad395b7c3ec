"""Build (once) the Debian 12 base image that molecule instances boot from.

The image is made from Debian packages only: ``mmdebstrap`` installs a minimal
bookworm with sshd, python3 and the cloud kernel into a directory, the
directory becomes an ext4 image with ``mkfs.ext4 -d``, and the kernel is booted
directly with a tiny initramfs (busybox plus the virtio modules that reach
/dev/vda).  The instance runs busybox init, not systemd: a boot script gets a
DHCP lease, starts sshd and then writes READY_MARKER to the serial console,
which the create playbook waits for.

The result is cached under ``--cache`` in a directory named after a key of
the package versions apt would install, the mirrors and this file's source,
so it is built again only when one of them changes.  A lock serialises
concurrent builders; a finished build appears by an atomic rename.

Prints one JSON object: kernel, initrd, image (raw), key, built (bool).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import gzip
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

SUITE = "bookworm"
MIRRORS = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
KERNEL_METAPACKAGE = "linux-image-cloud-amd64"
PACKAGES = (
    KERNEL_METAPACKAGE, "openssh-server", "python3", "python3-apt",
    "busybox-static", "iproute2", "kmod",
)
# Leave out what a test instance never reads; it keeps the image small.
DPKG_EXCLUDES = (
    "path-exclude=/usr/share/doc/*", "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*", "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
)
# What the initramfs loads to mount /dev/vda; ext4 is built into the cloud kernel.
ROOT_MODULES = ("virtio_pci", "virtio_blk")
FREE_SPACE = 1 << 30
READY_MARKER = "VIRTOPS-MOLECULE-READY"

INITRAMFS_INIT = """#!/bin/sh
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
for m in @MODULES@; do insmod /lib/modules/$m.ko || echo "virtops: insmod $m failed"; done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
mount -t ext4 -o rw /dev/vda /newroot || { echo "virtops: cannot mount /dev/vda"; sleep 5; poweroff -f; }
mount --move /dev /newroot/dev
exec switch_root /newroot /sbin/init
"""

INITTAB = """::sysinit:/etc/virtops/boot
::ctrlaltdel:/bin/busybox poweroff
::shutdown:/bin/busybox mount -o remount,ro /
"""

# Runs once as busybox init's sysinit step: everything a test instance needs,
# nothing it waits for.  virtops.hostname= and virtops.ssh_key= come from the
# kernel command line (the key's space is written as ':').
BOOT_SCRIPT = """#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -o remount,rw /
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620 devpts /dev/pts
mount -t tmpfs -o mode=755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
for arg in $(cat /proc/cmdline); do
    case "$arg" in
    virtops.hostname=*) hostname "${arg#*=}"; echo "${arg#*=}" >/etc/hostname ;;
    virtops.ssh_key=*) mkdir -p -m 700 /root/.ssh; echo "${arg#*=}" | tr ':' ' ' >/root/.ssh/authorized_keys ;;
    esac
done
printf '127.0.0.1 localhost\\n127.0.1.1 %s\\n' "$(hostname)" >/etc/hosts
modprobe virtio_net
ip link set lo up
for n in /sys/class/net/*; do
    n=${n##*/}
    [ "$n" = lo ] && continue
    ip link set "$n" up
    busybox udhcpc -i "$n" -s /etc/virtops/udhcpc -t 20 -T 1 -A 3 -b
done
[ -e /etc/ssh/ssh_host_ed25519_key ] || ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
mkdir -p -m 755 /run/sshd
/usr/sbin/sshd
i=0
while [ ! -e /run/sshd.pid ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
echo "@MARKER@ $(hostname) $(ip -4 -o addr show scope global | awk '{print $4}' | tr '\\n' ' ')" >/dev/console
"""

UDHCPC_SCRIPT = """#!/bin/sh
case "$1" in
deconfig)
    ip addr flush dev "$interface"
    ip link set "$interface" up
    ;;
bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
    [ -n "$dns" ] && printf 'nameserver %s\\n' $dns >/etc/resolv.conf
    ;;
esac
exit 0
"""

SSHD_CONFIG = """# virtops molecule instance: key login as root, no DNS lookups.
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
HostKey /etc/ssh/ssh_host_ed25519_key
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", required=True, type=Path, help="cache directory")
    args = parser.parse_args(argv)
    try:
        result = build(args.cache.absolute())
    except BuildError as e:
        print(f"build_image: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


class BuildError(Exception):
    pass


def build(cache: Path) -> dict[str, Any]:
    """The cached image for today's package versions, built first when missing."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        inputs = image_inputs()
        key = cache_key(inputs)
        target = cache / key
        built = not (target / "inputs.json").exists()
        if built:
            with tempfile.TemporaryDirectory(dir=cache, prefix=".build-") as tmp:
                _build(Path(tmp), inputs)
                (Path(tmp) / "out").rename(target)
            prune(cache, keep=key)
    return {"kernel": str(target / "vmlinuz"), "initrd": str(target / "initrd.img"),
            "image": str(target / "rootfs.raw"), "key": key, "built": built}


# -- inputs and cache -------------------------------------------------------------

def run(argv: list[str], **kwargs: Any) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    if proc.returncode != 0:
        raise BuildError(f"{argv[0]} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return str(proc.stdout)


def image_inputs() -> dict[str, Any]:
    kernel = kernel_package()
    versions = candidate_versions([*PACKAGES, kernel])
    source = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    return {"suite": SUITE, "mirrors": list(MIRRORS), "packages": versions, "source": source}


def cache_key(inputs: dict[str, Any]) -> str:
    return "image-" + hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def kernel_package() -> str:
    """The versioned kernel package the metapackage points at today."""
    for line in run(["apt-cache", "depends", "--important", KERNEL_METAPACKAGE]).splitlines():
        kind, _sep, name = line.strip().partition(": ")
        if kind == "Depends" and name.startswith("linux-image-"):
            return name
    raise BuildError(f"apt cannot resolve the kernel behind {KERNEL_METAPACKAGE}")


def candidate_versions(packages: list[str]) -> dict[str, str]:
    versions: dict[str, str] = {}
    package = ""
    for line in run(["apt-cache", "policy", *packages]).splitlines():
        if not line.startswith(" "):
            package = line.rstrip(":")
        elif line.strip().startswith("Candidate: "):
            versions[package] = line.split(": ", 1)[1]
    missing = [p for p in packages if versions.get(p, "(none)") == "(none)"]
    if missing:
        raise BuildError(f"apt has no installable version of {', '.join(missing)}")
    return versions


def prune(cache: Path, keep: str) -> None:
    """Images of older package versions: the cache keeps one."""
    for old in cache.glob("image-*"):
        if old.name != keep:
            shutil.rmtree(old, ignore_errors=True)


# -- build ------------------------------------------------------------------------

def _build(work: Path, inputs: dict[str, Any]) -> None:
    rootfs, out = work / "rootfs", work / "out"
    out.mkdir()
    bootstrap(rootfs)
    configure(rootfs)
    release = kernel_release(rootfs)
    shutil.copyfile(rootfs / "boot" / f"vmlinuz-{release}", out / "vmlinuz")
    (out / "initrd.img").write_bytes(gzip.compress(initramfs(rootfs, release), mtime=0))
    for path in (rootfs / "boot").iterdir():
        path.unlink()
    make_ext4(rootfs, out / "rootfs.raw")
    (out / "inputs.json").write_text(json.dumps(inputs, indent=1) + "\n", encoding="utf-8")
    for path in out.iterdir():
        path.chmod(0o644)


def bootstrap(rootfs: Path) -> None:
    # A private mount namespace: mmdebstrap's mounts in the chroot cannot outlive it.
    argv = ["unshare", "--mount", "--propagation", "private",
            "mmdebstrap", "--mode=root", "--variant=minbase", "--quiet",
            "--include=" + ",".join(PACKAGES)]
    argv += [f"--dpkgopt={opt}" for opt in DPKG_EXCLUDES]
    try:
        run(argv + [SUITE, str(rootfs), *MIRRORS])
    except BuildError as e:
        raise BuildError(f"{e}\nThe build needs the Debian mirror. In a network namespace without it, "
                         f"build the image once outside: python3 {__file__} --cache DIR") from e


def configure(rootfs: Path) -> None:
    write(rootfs / "etc/inittab", INITTAB, 0o644)
    write(rootfs / "etc/virtops/boot", BOOT_SCRIPT.replace("@MARKER@", READY_MARKER), 0o755)
    write(rootfs / "etc/virtops/udhcpc", UDHCPC_SCRIPT, 0o755)
    write(rootfs / "etc/ssh/sshd_config.d/virtops.conf", SSHD_CONFIG, 0o644)
    write(rootfs / "etc/fstab", "/dev/vda / ext4 rw,noatime 0 1\n", 0o644)
    init = rootfs / "sbin/init"
    with contextlib.suppress(FileNotFoundError):
        init.unlink()
    init.symlink_to("/bin/busybox")
    # Every instance makes its own host key at boot.
    for key in (rootfs / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    for stale in ("var/cache/apt", "var/lib/apt/lists"):
        for path in (rootfs / stale).glob("*"):
            if path.is_file():
                path.unlink()


def write(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)


def kernel_release(rootfs: Path) -> str:
    releases = [p.name for p in (rootfs / "lib/modules").iterdir()]
    if len(releases) != 1:
        raise BuildError(f"expected one kernel in the image, found {releases}")
    return releases[0]


def make_ext4(rootfs: Path, image: Path) -> None:
    used = int(run(["du", "-s", "-B1", "-x", str(rootfs)]).split()[0])
    size_mib = (used * 5 // 4 + FREE_SPACE) >> 20
    with open(image, "wb") as f:
        f.truncate(size_mib << 20)
    # Initialised inode tables and journal: no lazy init thread in the guest, which costs under TCG.
    run(["mkfs.ext4", "-q", "-F", "-m", "0", "-L", "virtops-root",
         "-E", "lazy_itable_init=0,lazy_journal_init=0", "-d", str(rootfs), str(image)])


# -- initramfs --------------------------------------------------------------------

def initramfs(rootfs: Path, release: str) -> bytes:
    moddir = rootfs / "lib/modules" / release
    modules = load_order(moddir, ROOT_MODULES)
    archive = Cpio()
    for d in ("bin", "dev", "proc", "sys", "newroot", "lib", "lib/modules"):
        archive.directory(d)
    archive.device("dev/console", 0o600, 5, 1)
    archive.file("bin/busybox", (rootfs / "bin/busybox").read_bytes(), 0o755)
    for applet in ("sh", "mount", "insmod", "sleep", "switch_root", "poweroff"):
        archive.symlink(f"bin/{applet}", "busybox")
    for relpath in modules:
        archive.file(f"lib/modules/{module_name(relpath)}.ko", (moddir / relpath).read_bytes(), 0o644)
    init = INITRAMFS_INIT.replace("@MODULES@", " ".join(module_name(m) for m in modules))
    archive.file("init", init.encode(), 0o755)
    return archive.finish()


def module_name(relpath: str) -> str:
    return Path(relpath).name.split(".ko", 1)[0].replace("-", "_")


def load_order(moddir: Path, wanted: tuple[str, ...]) -> list[str]:
    """Module files (relative to moddir) of ``wanted`` and their dependencies, dependencies first."""
    deps: dict[str, list[str]] = {}
    for line in (moddir / "modules.dep").read_text(encoding="utf-8").splitlines():
        path, _sep, rest = line.partition(":")
        deps[path] = rest.split()
    by_name = {module_name(path): path for path in deps}
    order: list[str] = []
    for name in wanted:
        if name not in by_name:
            raise BuildError(f"kernel module {name} is not in {moddir.name}")
        path = by_name[name]
        # modules.dep lists every dependency, the deepest last.
        for dep in [*reversed(deps[path]), path]:
            if dep.endswith((".xz", ".zst", ".gz")):
                raise BuildError(f"compressed kernel module {dep} is not supported")
            if dep not in order:
                order.append(dep)
    return order


class Cpio:
    """The newc archive format the kernel unpacks as initramfs."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._inode = 0

    def directory(self, name: str) -> None:
        self._entry(name, 0o040755, b"")

    def file(self, name: str, data: bytes, mode: int) -> None:
        self._entry(name, 0o100000 | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, 0o120777, target.encode())

    def device(self, name: str, mode: int, major: int, minor: int) -> None:
        self._entry(name, 0o020000 | mode, b"", (major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0, b"")
        return b"".join(self._chunks)

    def _entry(self, name: str, mode: int, data: bytes, rdev: tuple[int, int] = (0, 0)) -> None:
        self._inode += 1
        encoded = name.encode() + b"\0"
        fields = (self._inode, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
        header = b"070701" + b"".join(b"%08x" % f for f in fields)
        self._chunks += [header, encoded, pad(len(header) + len(encoded)), data, pad(len(data))]


def pad(length: int) -> bytes:
    return b"\0" * (-length % 4)


if __name__ == "__main__":
    sys.exit(main())
