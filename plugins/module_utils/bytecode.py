# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""A compiled-code cache for this collection's module_utils inside an AnsiballZ payload.

Ansible ships a module and its module_utils as Python source in a zip, and
Python's zipimport compiles every imported source on every run: about 40 ms
of each module call here, more than the call's own work. Every module of
the collection imports this one first. Loaded from a zip, it puts a finder
in front of zipimport for the package's other modules, which loads each one
from a cache of compiled code keyed by the SHA-256 of its source and
compiles and stores it on a miss. The source in the zip stays the
authority: an entry is used only for exactly the same source under the same
Python bytecode version. Imported from files, it installs nothing: Python's
own ``__pycache__`` does the same there.

The cache lives in ``$VIRTOPS_QEMU_BYTECODE_CACHE``, else
``${XDG_CACHE_HOME:-~/.cache}/virtops.qemu/bytecode``; the value ``off``
turns it off. Code in it runs as the module's user, so it is used only as a
directory of that user's own that no one else can write to (mode 0700,
created so). Anything else (another owner, a group- or world-writable
directory, a symlink, a full disk, a damaged entry) makes the import compile
from the zip as it would without the cache: the cache can only save time,
never fail a call.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import marshal
import os
import sys
import zipimport

try:
    from _imp import _fix_co_filename  # type: ignore[attr-defined]  # what importlib itself uses
except ImportError:     # not CPython: tracebacks may then name the zip of the run that compiled
    def _fix_co_filename(code, path):
        return None

ENV = "VIRTOPS_QEMU_BYTECODE_CACHE"
HEADER = importlib.util.MAGIC_NUMBER
DIGEST_SIZE = 32


def cache_dir() -> int | None:
    """A descriptor of the cache directory, made private if missing; None when it is off or not safe to use.

    Entries are read and written through the descriptor, so the directory
    checked is the one used, whatever happens to its path meanwhile.
    """
    chosen = os.environ.get(ENV)
    if chosen == "off":
        return None
    if not chosen:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        chosen = os.path.join(base, "virtops.qemu", "bytecode")
    if not os.path.isabs(chosen):
        return None
    try:
        os.makedirs(chosen, mode=0o700, exist_ok=True)
        fd = os.open(chosen, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    info = os.fstat(fd)
    if info.st_uid != os.geteuid() or info.st_mode & 0o077:
        os.close(fd)
        return None
    return fd


def entry_name(fullname: str, digest: bytes) -> str:
    return f"{fullname}.{digest.hex()[:32]}.{sys.implementation.cache_tag}"


def read_entry(directory: int, name: str, digest: bytes):
    """The code stored for ``digest`` as ``name``, or None when there is none or it is unusable."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=directory)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as stored:
            data = stored.read()
        head = len(HEADER) + DIGEST_SIZE
        if data[:head] != HEADER + digest:
            return None
        return marshal.loads(data[head:])
    except Exception:   # a damaged entry is a miss
        return None


def write_entry(directory: int, name: str, digest: bytes, code) -> None:
    """Store ``code`` atomically as ``name``; a failure only costs the next run a compile."""
    temporary = f"{name}.{os.getpid()}.tmp"
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=directory)
        with os.fdopen(fd, "wb") as out:
            out.write(HEADER + digest + marshal.dumps(code))
        os.replace(temporary, name, src_dir_fd=directory, dst_dir_fd=directory)
    except OSError:
        try:
            os.unlink(temporary, dir_fd=directory)
        except OSError:
            pass


class CachedLoader:
    """Loads one module of the package from the zip, its code from the cache when it has it."""

    def __init__(self, path: str, directory: int, source: bytes):
        self.path = path
        self.directory = directory
        self.source = source

    def create_module(self, spec):
        return None

    def exec_module(self, module) -> None:
        exec(self.get_code(module.__name__), module.__dict__)  # noqa: S102 - the module's own code, as import runs it

    def get_code(self, fullname: str):
        source = self.source
        digest = hashlib.sha256(source).digest()
        name = entry_name(fullname, digest)
        code = read_entry(self.directory, name, digest)
        if code is None:
            code = compile(source, self.path, "exec", dont_inherit=True)
            write_entry(self.directory, name, digest, code)
        else:
            _fix_co_filename(code, self.path)
        return code

    def get_filename(self, fullname: str) -> str:
        return self.path

    def get_source(self, fullname: str) -> str:
        return self.source.decode()


class CachedFinder:
    """Finds the package's modules in the zip it came from and hands them to CachedLoader.

    zipimport's own ``find_spec`` compiles a module to learn its file name and
    its loader compiles it again; this finder reads the module's source from
    the zip once, for the loader, and compiles nothing.
    """

    def __init__(self, package: str, archive: str, directory: int):
        self.prefix = package + "."
        self.archive = zipimport.zipimporter(archive)   # the zip's directory, as zipimport has already read it
        self.root = archive + os.sep
        self.directory = directory

    def find_spec(self, fullname, path=None, target=None):
        if not fullname.startswith(self.prefix):
            return None
        inner = fullname.replace(".", "/")
        for candidate, is_package in ((inner + "/__init__.py", True), (inner + ".py", False)):
            location = self.root + candidate
            try:
                source = self.archive.get_data(location)
            except OSError:     # not in the zip
                continue
            spec = importlib.machinery.ModuleSpec(
                fullname, CachedLoader(location, self.directory, source), origin=location,
                is_package=is_package)
            if is_package:
                spec.submodule_search_locations = [self.root + inner]
            spec.has_location = True
            return spec
        return None

    def invalidate_caches(self) -> None:
        return None


def install(package: str, archive: str) -> None:
    """Serve ``package``'s modules in the zip ``archive`` from the cache, when a safe cache directory is at hand."""
    if any(isinstance(finder, CachedFinder) for finder in sys.meta_path):
        return
    directory = cache_dir()
    if directory is not None:
        sys.meta_path.insert(0, CachedFinder(package, archive, directory))


_LOADED_BY = getattr(__spec__, "loader", None)
if isinstance(_LOADED_BY, zipimport.zipimporter):
    install(__name__.rpartition(".")[0], _LOADED_BY.archive)
