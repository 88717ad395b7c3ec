"""A tiny HTTP(S) file server inside a test's network namespace, for image downloads.

It serves one directory on 127.0.0.1 of the namespace (never outside it).
A request whose query is ``?slow`` gets its body in small pieces with
pauses, so a test can catch a download in the middle.  ``https=True``
serves TLS with a self-signed certificate made by the openssl CLI.
"""

from __future__ import annotations

import contextlib
import hashlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from .netns import Netns

SERVER = r"""
import http.server, shutil, ssl, sys, time
directory, certificate = sys.argv[1], sys.argv[2]

class Handler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, directory=directory, **kwargs)

    def log_message(self, *args):
        pass

    def copyfile(self, source, target):
        if not self.path.endswith("?slow"):
            shutil.copyfileobj(source, target)
            return
        for piece in iter(lambda: source.read(4096), b""):
            target.write(piece)
            target.flush()
            time.sleep(0.1)

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
if certificate:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate)
    server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def served_image(workdir: Path, name: str = "disk.qcow2") -> Path:
    """A 16 MiB qcow2 image with known content at 0 and 8 MiB, in ``workdir/served`` to serve."""
    served = workdir / "served"
    served.mkdir(exist_ok=True)
    path = served / name
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "16M"], check=True)
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0xab 0 1M", "-c", "write -P 0xcd 8M 512k",
                    str(path)], check=True, capture_output=True)
    return path


def sha256(path: Path) -> str:
    """The file's checksum as source.checksum takes it."""
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def self_signed(directory: Path) -> Path:
    """A PEM file with a key and a self-signed certificate for 127.0.0.1."""
    pem, key = directory / "server.pem", directory / "server.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(pem), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    pem.write_text(pem.read_text() + key.read_text())
    return pem


@contextlib.contextmanager
def image_server(netns: Netns, directory: Path, https: bool = False) -> Iterator[str]:
    """The base URL (``http://127.0.0.1:PORT``) of a server in ``netns`` for ``directory``."""
    certificate = str(self_signed(directory.parent)) if https else ""
    proc = subprocess.Popen(netns.exec_argv([sys.executable, "-c", SERVER, str(directory), certificate]),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = (proc.stdout.readline() if proc.stdout else "").strip()
        if not port:
            raise RuntimeError(f"the image server did not start: {proc.stderr.read() if proc.stderr else ''}")
        yield f"{'https' if https else 'http'}://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()
