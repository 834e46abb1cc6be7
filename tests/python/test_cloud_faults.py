"""Fault tests: detcore's S3 backend behind a fault-injecting proxy (faultproxy.py) in front of
moto's server. Transient faults (5xx, 429, connections reset mid-body, stalls) are retried and
the checkpoint completes intact; persistent faults fail cleanly: the error names the object
and the server's code, nothing is reported, nothing partial is left as a checkpoint, multipart
uploads are aborted, and no local copy is left behind (every test ends with an empty scratch
folder: failed uploads used to leave their staged files in $TMPDIR)."""
import json
import os
import pathlib

import boto3
import pytest

import capi
import servers
from faultproxy import FaultProxy, Rule


@pytest.fixture()
def lib(detcore_lib):
    return capi.load(detcore_lib)


@pytest.fixture()
def proxied(moto_server, tmp_path):
    proxy = FaultProxy(moto_server.port)
    bucket = f"f{os.urandom(6).hex()}"
    servers.make_bucket_s3(moto_server.url, bucket)
    s3 = boto3.client("s3", endpoint_url=moto_server.url, region_name="us-east-1")
    scratch = tmp_path / "scratch"
    cfg = {"type": "s3", "bucket": bucket, "endpoint_url": proxy.url, "prefix": "ck",
           "access_key": servers.S3_KEY, "secret_key": servers.S3_SECRET,
           "part_size": 5 << 20, "max_attempts": 4, "timeout_seconds": 2, "temp_dir": str(scratch)}
    yield proxy, s3, bucket, cfg
    proxy.stop()
    # Every staged copy and temporary restore is gone, whatever the test did.
    left = sorted(str(p.relative_to(scratch)) for p in scratch.rglob("*")) if scratch.exists() else []
    assert left in ([], [f"detcore-{os.getuid()}"]), left


def keys(s3, bucket, prefix=""):
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out += [o["Key"] for o in page.get("Contents", [])]
    return sorted(out)


def write_files(d: pathlib.Path, blobs: dict) -> None:
    for name, data in blobs.items():
        p = d / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


BLOBS = {"big.bin": os.urandom(11 << 20), "a/small.txt": b"small", "b.bin": os.urandom(300_000)}


def test_transient_faults_are_retried(lib, proxied, tmp_path):
    proxy, s3, bucket, cfg = proxied
    proxy.add(
        Rule("status", method="PUT", path=r"partNumber=2", status=503, code="SlowDown"),
        Rule("status", method="POST", path=r"uploads", status=500, code="InternalError"),
        Rule("reset_request", method="PUT", path=r"partNumber=1"),
        Rule("status", method="PUT", path=r"small\.txt", status=429, code="TooManyRequests"),
        Rule("stall", method="PUT", path=r"b\.bin", seconds=4),
        Rule("reset_response", method="GET", path=r"big\.bin"),
        Rule("status", method="GET", path=r"b\.bin", status=502, code="BadGateway"),
    )
    core = capi.Core(lib, cfg, tmp_path / "run")
    sid = core.store({"steps_completed": 1}, lambda d: write_files(d, BLOBS))
    dl = tmp_path / "dl"
    core.download(sid, dl)
    for name, data in BLOBS.items():
        assert (dl / name).read_bytes() == data, name
    core.close()
    assert sorted(set(proxy.actions())) == sorted(
        {"status", "reset_request", "stall", "reset_response"}
    ), proxy.log
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_interrupted_download_resumes_where_it_stopped(lib, proxied, tmp_path):
    """A connection lost in the middle of a ranged GET: the bytes that arrived are kept, and the
    next attempt asks only for the rest of that range."""
    proxy, s3, bucket, cfg = proxied
    core = capi.Core(lib, cfg, tmp_path / "run")
    sid = core.store({"steps_completed": 1}, lambda d: write_files(d, BLOBS))
    proxy.add(Rule("reset_response", method="GET", path=r"big\.bin"))
    dl = tmp_path / "dl"
    core.download(sid, dl)
    core.close()
    for name, data in BLOBS.items():
        assert (dl / name).read_bytes() == data, name
    gets = [rng for (m, path, rng) in proxy.ranges if m == "GET" and "big.bin" in path]
    spans = [tuple(int(x) for x in r.removeprefix("bytes=").split("-")) for r in gets]
    # The ranges asked first tile the file; one more asks for the tail of the interrupted one.
    assert len(spans) >= 2, gets
    first, retry = spans[:-1], spans[-1]
    assert sorted(first)[0][0] == 0 and max(e for _, e in first) == len(BLOBS["big.bin"]) - 1, gets
    cut = [s for s in first if s[1] == retry[1]]
    assert len(cut) == 1, gets
    start, end = cut[0]
    # At most half of the range was sent before the reset; at least the first bytes arrived.
    assert start < retry[0] <= start + (end - start + 1) // 2, gets


def test_persistent_failure_is_clean(lib, proxied, tmp_path):
    proxy, s3, bucket, cfg = proxied
    proxy.add(Rule("status", method="PUT", path=r"partNumber=2", status=500, code="InternalError", times=-1))
    core = capi.Core(lib, cfg, tmp_path / "run")
    with pytest.raises(capi.DetError) as e:
        core.store({"steps_completed": 1}, lambda d: write_files(d, BLOBS))
    msg = e.value.message
    assert "big.bin" in msg and "InternalError" in msg and "500" in msg, msg
    assert "gave up after 4 attempts" in msg, msg
    # Nothing is left under the prefix but (at most) the run index, which lists nothing.
    assert [k for k in keys(s3, bucket, "ck/") if not k.startswith("ck/.detcore/")] == []
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    core.close()
    core = capi.Core(lib, cfg, tmp_path / "run")
    assert core.latest_checkpoint() is None
    core.close()
    metrics = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert "storage_id" not in metrics


def test_failed_metadata_upload_leaves_no_checkpoint(lib, proxied, tmp_path):
    proxy, s3, bucket, cfg = proxied
    proxy.add(Rule("status", method="PUT", path=r"metadata\.json", status=403, code="AccessDenied", times=-1))
    core = capi.Core(lib, cfg, tmp_path / "run")
    with pytest.raises(capi.DetError) as e:
        core.store({"steps_completed": 1}, lambda d: write_files(d, BLOBS))
    assert "metadata.json" in e.value.message and "AccessDenied" in e.value.message
    # 403 is not retried.
    assert proxy.actions().count("status") == 1
    assert [k for k in keys(s3, bucket, "ck/") if not k.startswith("ck/.detcore/")] == []
    core.close()


def test_async_failure_is_never_reported_and_surfaces_later(lib, proxied, tmp_path):
    proxy, s3, bucket, cfg = proxied
    rule = Rule("status", method="PUT", path=r"small\.txt", status=500, code="InternalError", times=-1)
    proxy.add(rule)
    core = capi.Core(lib, cfg, tmp_path / "run", async_checkpoints=True)
    staged = {}

    def write(d):
        staged["dir"] = d
        write_files(d, BLOBS)

    sid = core.store({"steps_completed": 1}, write)  # returns before the upload ends
    with pytest.raises(capi.DetError) as e:
        core.wait()
    assert sid in e.value.message and "InternalError" in e.value.message
    # Its local copy is removed (a job whose storage is down must not fill its disk).
    assert "staged files were removed" in e.value.message and not staged["dir"].exists()
    core.wait()  # the failure was returned once
    # The next failure comes back from the next checkpoint call.
    sid2 = core.store({"steps_completed": 2}, lambda d: write_files(d, BLOBS))
    import time

    time.sleep(5)  # its retries (under 2 s here) are over
    with pytest.raises(capi.DetError) as e2:
        core.store({"steps_completed": 3}, lambda d: write_files(d, {"x": b"x"}))
    assert sid2 in e2.value.message and "InternalError" in e2.value.message
    rule.times = 0
    sid3 = core.store({"steps_completed": 3}, lambda d: write_files(d, {"x": b"x"}))
    core.close()
    assert [k for k in keys(s3, bucket, f"ck/{sid}/")] == []
    assert f"ck/{sid3}/metadata.json" in keys(s3, bucket)
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [x.get("storage_id") for x in lines if x.get("storage_id")] == [sid3]


def test_minio_servers_get_no_folder_markers(lib, proxied, tmp_path):
    proxy, s3, bucket, cfg = proxied
    proxy.add(Rule("server", method="GET", path=r"^/$", value="MinIO", times=-1))
    core = capi.Core(lib, cfg, tmp_path / "run")
    sid = core.store({"steps_completed": 1}, lambda d: (d / "emptydir").mkdir() or write_files(d, {"f/g": b"1"}))
    core.close()
    assert keys(s3, bucket, f"ck/{sid}/") == [f"ck/{sid}/.detcore-manifest.json", f"ck/{sid}/f/g",
                                               f"ck/{sid}/metadata.json"]
