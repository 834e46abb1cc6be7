"""Runs the storage-level Rust tests (tests/cloud_storage.rs: round trips, unsafe keys, and a
checkpoint sharded across several processes) against each real server started here."""
import json
import os
import subprocess

import pytest

import servers
from conftest import ROOT


@pytest.mark.parametrize("kind", ["s3", "s3s", "gcs", "azure"])
def test_storage_suite(kind, request, tmp_path):
    server = request.getfixturevalue(
        {"s3": "moto_server", "s3s": "s3s_server", "gcs": "gcs_server", "azure": "azurite_server"}[kind]
    )
    env = dict(os.environ)
    bucket = f"r{os.urandom(6).hex()}"
    skip = ["shard_child"]
    tuning = {"part_size": 5 << 20, "timeout_seconds": 20}
    if kind in ("s3", "s3s"):
        servers.make_bucket_s3(server.url, bucket)
        cfg = {"type": "s3", "bucket": bucket, "prefix": "pre/fix", "endpoint_url": server.url,
               "access_key": servers.S3_KEY, "secret_key": servers.S3_SECRET, **tuning}
        if kind == "s3s":
            # s3s-fs stores objects as files: it drops empty folder markers and cannot hold a
            # key with an empty path segment.
            env["DETCORE_TEST_NO_MARKERS"] = "1"
            skip.append("unsafe_keys_never_become_local_paths")
    elif kind == "gcs":
        servers.make_bucket_gcs(server.url, bucket)
        env["STORAGE_EMULATOR_HOST"] = server.url
        cfg = {"type": "gcs", "bucket": bucket, "prefix": "pre", **tuning}
    else:
        cfg = {"type": "azure", "container": f"{bucket}/sub", "connection_string": server.connection_string,
               **tuning}
    env["DETCORE_TEST_STORAGE"] = json.dumps(cfg)
    env["TMPDIR"] = str(tmp_path)
    args = ["cargo", "test", "--quiet", "--test", "cloud_storage", "--", "--ignored", "--test-threads=2"]
    for s in skip:
        args += ["--skip", s]
    r = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-6000:]
    assert "test result: ok. " in r.stdout and " 0 failed" in r.stdout, r.stdout
