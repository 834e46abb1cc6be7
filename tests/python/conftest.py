"""Shared pytest fixtures: where the built library and programs are, fresh temp folders."""
import os
import pathlib
import shutil
import sys
import tempfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def build_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("DETCORE_BUILD_DIR", ROOT / "build"))


def lib_path() -> pathlib.Path:
    p = os.environ.get("DETCORE_LIB")
    return pathlib.Path(p) if p else build_dir() / "cargo" / "release" / "libdetcore.so"


@pytest.fixture(scope="session")
def detcore_lib() -> pathlib.Path:
    p = lib_path()
    if not p.exists():
        pytest.fail(f"libdetcore not built at {p}; run scripts/test.sh (or set DETCORE_LIB)")
    return p


# The Python package is tested from the working tree (tests/python/test_python_package.py also
# pip-installs it); it finds the built library through DETCORE_LIB.
sys.path.insert(0, str(ROOT / "bindings" / "python"))
os.environ.setdefault("DETCORE_LIB", str(lib_path()))

@pytest.fixture(autouse=True)
def _remove_on_cluster_tensorboard_folders():
    """On-cluster, detcore leaves its TensorBoard folder $TMPDIR/tensorboard-<allocation>-<rank>
    behind, as Determined does, for the task's container to discard. Here the tests are that
    container: the folders of the fake master's allocations (`7.*`) a test created go with it."""
    tmp = pathlib.Path(tempfile.gettempdir())
    before = set(tmp.glob("tensorboard-7.*"))
    yield
    for p in set(tmp.glob("tensorboard-7.*")) - before:
        shutil.rmtree(p, ignore_errors=True)


# ---- object-store servers (see servers.py) -------------------------------------------------
import uuid  # noqa: E402

import servers  # noqa: E402

# Nothing may reach for cloud metadata addresses or a developer's real credentials.
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
os.environ["AWS_ACCESS_KEY_ID"] = servers.S3_KEY
os.environ["AWS_SECRET_ACCESS_KEY"] = servers.S3_SECRET
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
os.environ.pop("AWS_PROFILE", None)
os.environ.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
os.environ["NO_PROXY"] = "127.0.0.1,localhost"


@pytest.fixture(scope="session")
def moto_server():
    s = servers.start_moto()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def s3s_server(tmp_path_factory):
    s = servers.start_s3s_fs(tmp_path_factory.mktemp("s3s") / "data")
    yield s
    s.stop()


@pytest.fixture(scope="session")
def gcs_server():
    s = servers.start_fake_gcs()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def azurite_server(tmp_path_factory):
    s = servers.start_azurite(tmp_path_factory.mktemp("azurite"))
    yield s
    s.stop()


class Backend:
    """One object store with a fresh bucket (or container) for one test.

    `config(prefix)` is detcore's storage config (a dict; detcore-only tuning keys included when
    `tuned`), `python_config(prefix)` the same for determined's `storage.build`, `env` what both
    processes need in their environment, `keys()` every object in the bucket."""

    def __init__(self, kind: str, server, monkeypatch):
        self.kind = kind
        self.server = server
        self.bucket = f"b{uuid.uuid4().hex[:12]}"
        self.env = {}
        if kind in ("s3", "s3s"):
            servers.make_bucket_s3(server.url, self.bucket)
        elif kind == "gcs":
            servers.make_bucket_gcs(server.url, self.bucket)
            self.env["STORAGE_EMULATOR_HOST"] = server.url
        for k, v in self.env.items():
            monkeypatch.setenv(k, v)

    def python_config(self, prefix=None) -> dict:
        if self.kind in ("s3", "s3s"):
            return {"type": "s3", "bucket": self.bucket, "endpoint_url": self.server.url,
                    "access_key": servers.S3_KEY, "secret_key": servers.S3_SECRET,
                    "prefix": prefix}
        if self.kind == "gcs":
            return {"type": "gcs", "bucket": self.bucket, "prefix": prefix}
        container = self.bucket if prefix is None else f"{self.bucket}/{prefix}"
        return {"type": "azure", "container": container,
                "connection_string": self.server.connection_string}

    def config(self, prefix=None, **tuning) -> dict:
        c = {k: v for k, v in self.python_config(prefix).items() if v is not None}
        c.update({"part_size": 5 << 20, "timeout_seconds": 20})
        c.update(tuning)
        return c

    def _full(self, key: str, prefix=None) -> str:
        """The object name of `key` (relative to the storage prefix `prefix`)."""
        if self.kind == "azure":  # the prefix is part of the container argument
            return key if prefix is None else f"{prefix}/{key}"
        return key if not prefix else f"{prefix}/{key}"

    def put(self, key: str, data: bytes, prefix=None) -> None:
        """Store an object behind detcore's back (e.g. a damaged copy of a checkpoint file)."""
        name = self._full(key, prefix)
        if self.kind in ("s3", "s3s"):
            import boto3

            boto3.client("s3", endpoint_url=self.server.url, region_name="us-east-1").put_object(
                Bucket=self.bucket, Key=name, Body=data)
        elif self.kind == "gcs":
            import urllib.parse
            import urllib.request

            url = (f"{self.server.url}/upload/storage/v1/b/{self.bucket}/o?uploadType=media&name="
                   f"{urllib.parse.quote(name, safe='')}")
            req = urllib.request.Request(url, data=data, method="POST",
                                         headers={"Content-Type": "application/octet-stream"})
            urllib.request.urlopen(req, timeout=30).read()
        else:
            from azure.storage.blob import BlobServiceClient

            c = BlobServiceClient.from_connection_string(self.server.connection_string)
            c.get_container_client(self.bucket).upload_blob(name, data, overwrite=True)

    def get(self, key: str, prefix=None) -> bytes:
        name = self._full(key, prefix)
        if self.kind in ("s3", "s3s"):
            import boto3

            s3 = boto3.client("s3", endpoint_url=self.server.url, region_name="us-east-1")
            return s3.get_object(Bucket=self.bucket, Key=name)["Body"].read()
        if self.kind == "gcs":
            import urllib.parse
            import urllib.request

            url = (f"{self.server.url}/storage/v1/b/{self.bucket}/o/"
                   f"{urllib.parse.quote(name, safe='')}?alt=media")
            return urllib.request.urlopen(url, timeout=30).read()
        from azure.storage.blob import BlobServiceClient

        c = BlobServiceClient.from_connection_string(self.server.connection_string)
        return c.get_container_client(self.bucket).download_blob(name).readall()

    def delete(self, key: str, prefix=None) -> None:
        name = self._full(key, prefix)
        if self.kind in ("s3", "s3s"):
            import boto3

            boto3.client("s3", endpoint_url=self.server.url, region_name="us-east-1").delete_object(
                Bucket=self.bucket, Key=name)
        elif self.kind == "gcs":
            import urllib.parse
            import urllib.request

            url = f"{self.server.url}/storage/v1/b/{self.bucket}/o/{urllib.parse.quote(name, safe='')}"
            urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=30).read()
        else:
            from azure.storage.blob import BlobServiceClient

            c = BlobServiceClient.from_connection_string(self.server.connection_string)
            c.get_container_client(self.bucket).delete_blob(name)

    def keys(self) -> list:
        if self.kind in ("s3", "s3s"):
            import boto3

            s3 = boto3.client("s3", endpoint_url=self.server.url, region_name="us-east-1")
            out = []
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
                out += [o["Key"] for o in page.get("Contents", [])]
            return sorted(out)
        if self.kind == "gcs":
            import json
            import urllib.request

            url = f"{self.server.url}/storage/v1/b/{self.bucket}/o"
            return sorted(i["name"] for i in json.load(urllib.request.urlopen(url)).get("items", []))
        from azure.storage.blob import BlobServiceClient

        c = BlobServiceClient.from_connection_string(self.server.connection_string)
        return sorted(b.name for b in c.get_container_client(self.bucket).list_blobs())


BACKENDS = ["s3", "gcs", "azure"]


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    server = request.getfixturevalue(
        {"s3": "moto_server", "s3s": "s3s_server", "gcs": "gcs_server", "azure": "azurite_server"}[
            request.param
        ]
    )
    return Backend(request.param, server, monkeypatch)
