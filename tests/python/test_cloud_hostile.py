"""A bucket is not trusted: objects whose keys would place a file outside the download folder
(`..` components, an absolute path after the checkpoint's prefix) make download and restore fail
with DET_ERR_STORAGE naming the key, before anything is written, on S3, GCS and Azure."""
import os
import pathlib
import urllib.parse
import urllib.request

import pytest

import capi

DET_ERR_STORAGE = 11  # include/detcore.h


@pytest.fixture()
def lib(detcore_lib):
    return capi.load(detcore_lib)


def put_raw(backend, key: str, data: bytes) -> None:
    """Create an object with exactly this key, bypassing every client-side check."""
    if backend.kind in ("s3", "s3s"):
        import boto3

        s3 = boto3.client("s3", endpoint_url=backend.server.url, region_name="us-east-1")
        s3.put_object(Bucket=backend.bucket, Key=key, Body=data)
    elif backend.kind == "gcs":
        q = urllib.parse.urlencode({"uploadType": "media", "name": key})
        req = urllib.request.Request(f"{backend.server.url}/upload/storage/v1/b/{backend.bucket}/o?{q}",
                                     data=data, method="POST")
        urllib.request.urlopen(req).read()
    else:
        from azure.storage.blob import BlobServiceClient

        c = BlobServiceClient.from_connection_string(backend.server.connection_string)
        from azure.core.exceptions import HttpResponseError

        try:
            c.get_container_client(backend.bucket).upload_blob(key, data)
        except HttpResponseError as e:
            # Azure normalises `..` in request paths, so such a blob cannot be created at all.
            pytest.skip(f"Azure Blob Storage refuses the name {key!r}: {e.error_code}")


@pytest.mark.parametrize("rel", ["../../escaped.txt", "sub/../../../escaped.txt", "/abs/escaped.txt"])
def test_keys_escaping_the_destination_are_refused(lib, backend, rel, tmp_path):
    core = capi.Core(lib, backend.config("ck"), tmp_path / "run")
    sid = core.store({"steps_completed": 1}, lambda d: (d / "w.bin").write_bytes(b"weights"))
    key = f"ck/{sid}/{rel}"
    put_raw(backend, key, b"evil")
    if key not in backend.keys():
        pytest.skip(f"the {backend.kind} emulator does not keep the key {key!r} as given")
    dst = tmp_path / "a" / "b" / "dl"
    with pytest.raises(capi.DetError) as e:
        core.download(sid, dst)
    assert e.value.status == DET_ERR_STORAGE, e.value
    assert rel in e.value.message, e.value.message
    with pytest.raises(capi.DetError) as e:
        core.restore(sid, lambda p: None)
    assert e.value.status == DET_ERR_STORAGE, e.value
    escaped = [p for p in tmp_path.rglob("escaped.txt")] + list(pathlib.Path("/abs").glob("escaped.txt"))
    assert escaped == [], escaped
    assert not (dst / "w.bin").exists(), "files were written before the listing was checked"
    core.close()
