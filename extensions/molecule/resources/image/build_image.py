"""Build (once) a Debian 12 image from Debian packages: the molecule base image or a cloud image.

Both kinds start the same way: ``mmdebstrap`` installs a minimal bookworm
with the kind's packages into a directory, and the directory becomes an ext4
filesystem with ``mkfs.ext4 -d`` (nothing is mounted).

``--kind minimal`` (the default): the kernel is booted directly with a tiny
initramfs (busybox plus the virtio modules that reach /dev/vda).  The
instance runs busybox init, not systemd: a boot script gets a DHCP lease,
starts sshd and then writes READY_MARKER to the serial console, which the
create playbook waits for.

``--kind cloud``: a qcow2 disk that behaves like a distribution's
genericcloud image.  systemd, cloud-init (NoCloud data source only),
qemu-guest-agent, sshd, python3 and the cloud kernel; no key and no
password.  The UEFI firmware boots it with its own boot loader: a GPT disk
with an EFI System Partition holding a standalone GRUB (its grub.cfg built
in) that loads /vmlinuz and /initrd.img from the root filesystem, found by
its UUID.  See cloud_disk for why it is made that way.

Each kind is cached under ``--cache`` in a directory named after the kind
and a key of the package versions apt would install, the mirrors and this
file's source, so it is built again only when one of them changes.  A lock
serialises concurrent builders; a finished build appears by an atomic rename.

Prints one JSON object.  minimal: kernel, initrd, image (raw), key, built
(bool).  cloud: image (qcow2), format, firmware, checksum
(``sha256:<hex>`` of the qcow2 file), key, built.
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
import uuid
from pathlib import Path
from typing import Any

SUITE = "bookworm"
MIRRORS = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
KERNEL_METAPACKAGE = "linux-image-cloud-amd64"
KINDS = ("minimal", "cloud")
# The key of each kind starts with its prefix; the cache keeps one image per kind.
PREFIXES = {"minimal": "image-", "cloud": "cloud-"}
PACKAGES = (
    KERNEL_METAPACKAGE, "openssh-server", "python3", "python3-apt",
    "busybox-static", "iproute2", "kmod",
)
# What a genericcloud image has, without recommends: the init, the cloud
# kernel and its initramfs, cloud-init (growpart from cloud-guest-utils
# grows the root into a larger disk), the guest agent, sshd, Python for
# Ansible (python3-apt for its apt module), sudo for cloud-init's default user.
CLOUD_PACKAGES = (
    KERNEL_METAPACKAGE, "systemd-sysv", "udev", "dbus", "initramfs-tools", "cloud-init",
    "cloud-guest-utils", "qemu-guest-agent", "openssh-server", "python3", "python3-apt",
    "sudo", "iproute2", "kmod", "netbase", "systemd-resolved",
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
MIB = 1 << 20
SECTOR = 512
CLOUD_IMAGE = "disk.qcow2"
CHECKSUM_FILE = CLOUD_IMAGE + ".sha256"
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

# -- the cloud image's configuration ------------------------------------------------

# Beside what the initramfs-tools default (MODULES=most) takes: the root disk on
# virtio-blk or virtio-scsi, and ext4, named so that a change there cannot drop them.
CLOUD_INITRAMFS_MODULES = ("virtio_pci", "virtio_blk", "virtio_scsi", "sd_mod", "ext4")
CLOUD_INIT_CONFIG = """# A genericcloud image: the seed comes from a NoCloud disk (label cidata), or there is none.
datasource_list: [NoCloud, None]
# Without a network-config in the seed, cloud-init's fallback: DHCP on the first NIC,
# written for systemd-networkd (the image has no ifupdown and no netplan).
system_info:
  network:
    renderers: [networkd]
# As Debian's genericcloud images: the hostname resolves (sudo needs it), and
# C.UTF-8, the one locale that needs no generating.
manage_etc_hosts: true
locale: C.UTF-8
# There is no grub-pc whose install device it could record.
grub_dpkg:
  enabled: false
"""
# cloud-init makes the host keys at first boot; sshd starts after it, so it never
# runs with keys cloud-init is about to replace.  Where cloud-init made none
# (disabled by the user), sshd makes its own rather than fail its config test.
SSH_AFTER_CLOUD_INIT = """[Unit]
After=cloud-init.service

[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
"""
CLOUD_ROOT_LABEL = "cloudimg-rootfs"
ESP_START = MIB
ESP_SIZE = 32 * MIB
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
ROOT_TYPE = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"    # Linux root (x86-64)
KERNEL_CMDLINE = "ro console=tty0 console=ttyS0,115200n8"
# Embedded in the GRUB EFI binary: no probing, no menu, no file on the ESP to keep in sync.
# /vmlinuz and /initrd.img are the links the kernel package keeps on the newest kernel.
GRUB_CFG = """set timeout=0
search --no-floppy --fs-uuid --set=root @UUID@
linux /vmlinuz root=UUID=@UUID@ @CMDLINE@
initrd /initrd.img
boot
"""
GRUB_MODULES = ("part_gpt", "ext2", "search", "search_fs_uuid", "linux", "gzio", "normal", "configfile", "echo")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", required=True, type=Path, help="cache directory")
    parser.add_argument("--kind", choices=KINDS, default="minimal",
                        help="minimal: the molecule base image (direct kernel boot); cloud: a bootable qcow2 disk")
    args = parser.parse_args(argv)
    try:
        result = build(args.cache.absolute(), args.kind)
    except BuildError as e:
        print(f"build_image: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


class BuildError(Exception):
    pass


def build(cache: Path, kind: str = "minimal") -> dict[str, Any]:
    """The cached image of ``kind`` for today's package versions, built first when missing."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        inputs = image_inputs(kind)
        key = cache_key(inputs, PREFIXES[kind])
        target = cache / key
        built = not (target / "inputs.json").exists()
        if built:
            with tempfile.TemporaryDirectory(dir=cache, prefix=".build-") as tmp:
                (build_cloud if kind == "cloud" else _build)(Path(tmp), inputs)
                (Path(tmp) / "out").rename(target)
            prune(cache, PREFIXES[kind], keep=key)
    if kind == "cloud":
        return {"image": str(target / CLOUD_IMAGE), "format": "qcow2", "firmware": "efi",
                "checksum": "sha256:" + (target / CHECKSUM_FILE).read_text(encoding="utf-8").split()[0],
                "key": key, "built": built}
    return {"kernel": str(target / "vmlinuz"), "initrd": str(target / "initrd.img"),
            "image": str(target / "rootfs.raw"), "key": key, "built": built}


# -- inputs and cache -------------------------------------------------------------

def run(argv: list[str], **kwargs: Any) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    if proc.returncode != 0:
        raise BuildError(f"{argv[0]} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return str(proc.stdout)


def image_inputs(kind: str = "minimal") -> dict[str, Any]:
    kernel = kernel_package()
    versions = candidate_versions([*(CLOUD_PACKAGES if kind == "cloud" else PACKAGES), kernel])
    source = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    return {"kind": kind, "suite": SUITE, "mirrors": list(MIRRORS), "packages": versions, "source": source}


def cache_key(inputs: dict[str, Any], prefix: str = "image-") -> str:
    return prefix + hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


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


def prune(cache: Path, prefix: str, keep: str) -> None:
    """Images of the same kind for older package versions: the cache keeps one per kind."""
    for old in cache.glob(prefix + "*"):
        if old.name != keep:
            shutil.rmtree(old, ignore_errors=True)


# -- build ------------------------------------------------------------------------

def _build(work: Path, inputs: dict[str, Any]) -> None:
    rootfs, out = work / "rootfs", work / "out"
    out.mkdir()
    bootstrap(rootfs, PACKAGES)
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


def bootstrap(rootfs: Path, packages: tuple[str, ...], setup_tree: Path | None = None) -> None:
    """mmdebstrap into ``rootfs``; ``setup_tree`` is copied in before any package is installed."""
    # A private mount namespace: mmdebstrap's mounts in the chroot cannot outlive it.
    argv = ["unshare", "--mount", "--propagation", "private",
            "mmdebstrap", "--mode=root", "--variant=minbase", "--quiet",
            "--include=" + ",".join(packages)]
    argv += [f"--dpkgopt={opt}" for opt in DPKG_EXCLUDES]
    if setup_tree is not None:
        argv.append(f"--setup-hook=sync-in {setup_tree} /")
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


def make_ext4(rootfs: Path, image: Path, label: str = "virtops-root", fs_uuid: str | None = None) -> None:
    used = int(run(["du", "-s", "-B1", "-x", str(rootfs)]).split()[0])
    size_mib = (used * 5 // 4 + FREE_SPACE) >> 20
    with open(image, "wb") as f:
        f.truncate(size_mib << 20)
    # Initialised inode tables and journal: no lazy init thread in the guest, which costs under TCG.
    argv = ["mkfs.ext4", "-q", "-F", "-m", "0", "-L", label,
            "-E", "lazy_itable_init=0,lazy_journal_init=0", "-d", str(rootfs), str(image)]
    if fs_uuid:
        argv[1:1] = ["-U", fs_uuid]
    run(argv)


# -- cloud image ----------------------------------------------------------------------

def build_cloud(work: Path, inputs: dict[str, Any]) -> None:
    rootfs, out = work / "rootfs", work / "out"
    out.mkdir()
    bootstrap(rootfs, CLOUD_PACKAGES, cloud_setup_tree(work / "setup"))
    fs_uuid = str(uuid.uuid4())
    configure_cloud(rootfs, fs_uuid)
    check_initramfs(rootfs)
    cloud_disk(rootfs, work, fs_uuid, out / CLOUD_IMAGE)
    digest = sha256_file(out / CLOUD_IMAGE)
    (out / CHECKSUM_FILE).write_text(f"{digest}  {CLOUD_IMAGE}\n", encoding="utf-8")
    (out / "inputs.json").write_text(json.dumps(inputs, indent=1) + "\n", encoding="utf-8")
    for path in out.iterdir():
        path.chmod(0o644)


def cloud_setup_tree(tree: Path) -> Path:
    """Files in place before the packages: the kernel's initramfs is made with them."""
    write(tree / "usr/share/initramfs-tools/modules.d/virtops", "\n".join(CLOUD_INITRAMFS_MODULES) + "\n", 0o644)
    return tree


def configure_cloud(rootfs: Path, fs_uuid: str) -> None:
    # The kernel mounts the root read-only (KERNEL_CMDLINE); systemd-fsck-root checks it, then it goes rw.
    write(rootfs / "etc/fstab", f"UUID={fs_uuid} / ext4 rw,discard,errors=remount-ro 0 1\n", 0o644)
    write(rootfs / "etc/cloud/cloud.cfg.d/99_virtops.cfg", CLOUD_INIT_CONFIG, 0o644)
    write(rootfs / "etc/systemd/system/ssh.service.d/virtops.conf", SSH_AFTER_CLOUD_INIT, 0o644)
    # mmdebstrap leaves the build host's name and resolver behind.
    write(rootfs / "etc/hostname", "localhost\n", 0o644)
    write(rootfs / "etc/hosts", "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n", 0o644)
    resolv = rootfs / "etc/resolv.conf"
    for path in (resolv, rootfs / "etc/.resolv.conf.systemd-resolved.bak"):
        path.unlink(missing_ok=True)
    resolv.symlink_to("../run/systemd/resolve/stub-resolv.conf")
    # cloud-init's networkd renderer writes the .network files; networkd must run to read them.
    run(["systemctl", f"--root={rootfs}", "enable", "systemd-networkd.service"])
    # Each instance gets its own identity at first boot: machine id, host keys.
    write(rootfs / "etc/machine-id", "", 0o444)
    with contextlib.suppress(FileNotFoundError):
        (rootfs / "var/lib/dbus/machine-id").unlink()
    for key in (rootfs / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    for stale in ("var/cache/apt", "var/lib/apt/lists", "var/log"):
        for path in (rootfs / stale).rglob("*"):
            if path.is_file():
                path.unlink()
    for link in ("vmlinuz", "initrd.img"):
        if not (rootfs / link).is_symlink():
            raise BuildError(f"the kernel package left no /{link} link, which the boot loader reads")


def check_initramfs(rootfs: Path) -> None:
    """The root disk's drivers are in the initramfs or built into the kernel (ext4 is, in the cloud kernel)."""
    release = kernel_release(rootfs)
    listing = run(["chroot", str(rootfs), "lsinitramfs", f"/boot/initrd.img-{release}"]).splitlines()
    builtin = (rootfs / "lib/modules" / release / "modules.builtin").read_text(encoding="utf-8").splitlines()
    names = {module_name(line) for line in [*listing, *builtin] if ".ko" in line}
    missing = [m for m in CLOUD_INITRAMFS_MODULES if m not in names]
    if missing:
        raise BuildError(f"the initramfs lacks the modules {', '.join(missing)}")


def cloud_disk(rootfs: Path, work: Path, fs_uuid: str, image: Path) -> None:
    """A GPT disk: an EFI System Partition with a standalone GRUB, and the root filesystem.

    Nothing is mounted and no block device is needed: the partitions are
    filesystem images made in files (mtools for FAT, ``mkfs.ext4 -d``),
    sfdisk writes the partition table into a plain file, and the partitions
    are copied in at their offsets.  UEFI rather than BIOS because a BIOS
    GRUB has to be installed onto a device (grub-install), while the UEFI
    firmware just runs \\EFI\\BOOT\\BOOTX64.EFI from the ESP.
    """
    esp, root, raw = work / "esp.img", work / "root.img", work / "disk.raw"
    make_esp(esp, grub_efi(work, fs_uuid))
    make_ext4(rootfs, root, CLOUD_ROOT_LABEL, fs_uuid)
    esp_start = ESP_START
    root_start = esp_start + ESP_SIZE
    size = root_start + root.stat().st_size + MIB      # the backup GPT at the end
    with open(raw, "wb") as f:
        f.truncate(size)
    table = partition_table(root_start, root.stat().st_size)
    run(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", str(raw)], input=table)
    for part, offset in ((esp, esp_start), (root, root_start)):
        run(["dd", f"if={part}", f"of={raw}", "bs=1M", f"seek={offset // MIB}", "conv=notrunc,sparse",
             "status=none"])
        part.unlink()
    run(["qemu-img", "convert", "-q", "-c", "-f", "raw", "-O", "qcow2", str(raw), str(image)])
    raw.unlink()


def partition_table(root_start: int, root_size: int) -> str:
    """sfdisk's script of the disk: the ESP first, then the root, sizes in bytes."""
    return ("label: gpt\n"
            f"start={ESP_START // SECTOR}, size={ESP_SIZE // SECTOR}, type={ESP_TYPE}, name=\"EFI System\"\n"
            f"start={root_start // SECTOR}, size={root_size // SECTOR}, type={ROOT_TYPE}, name=root\n")


def grub_config(fs_uuid: str) -> str:
    return GRUB_CFG.replace("@UUID@", fs_uuid).replace("@CMDLINE@", KERNEL_CMDLINE)


def grub_efi(work: Path, fs_uuid: str) -> Path:
    config = work / "grub.cfg"
    config.write_text(grub_config(fs_uuid), encoding="utf-8")
    binary = work / "BOOTX64.EFI"
    modules = " ".join(GRUB_MODULES)
    run(["grub-mkstandalone", "--format=x86_64-efi", f"--output={binary}", f"--modules={modules}",
         f"--install-modules={modules}", "--locales=", "--fonts=", "--themes=",
         f"boot/grub/grub.cfg={config}"])
    return binary


def make_esp(esp: Path, boot_efi: Path) -> None:
    with open(esp, "wb") as f:
        f.truncate(ESP_SIZE)
    image = str(esp)
    # mtools picks FAT16 for this size, which every UEFI firmware reads.
    run(["mformat", "-i", image, "-v", "ESP", "::"])
    run(["mmd", "-i", image, "::/EFI", "::/EFI/BOOT"])
    run(["mcopy", "-i", image, str(boot_efi), "::/EFI/BOOT/BOOTX64.EFI"])


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(MIB), b""):
            digest.update(chunk)
    return digest.hexdigest()


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
