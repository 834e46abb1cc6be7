"""Sharded checkpoints and shared restores through the C ABI, with several processes, on each
object store (issue 5 + issue 6): every rank uploads its own part from its node's staging folder,
identical files from several nodes are stored once, the merged metadata.json is stored last and
listed, and a LocalWorkersShareDownload restore downloads once per node."""
import json
import os
import re

import pytest

import capi
import servers
from conftest import build_dir
from distributed_launch import launch, results
from manifests import check_folder

WORKER = str(build_dir() / "tests" / "c" / "dist_worker")


def run(backend, mode, tmp_path, size=4, nodes=2):
    cfg = json.dumps(backend.config())
    env = dict(backend.env)
    env.update({"DIST_STORAGE": cfg, "DIST_TIMEOUT": "120"})
    # Each "node" stages in its own temporary folder, as separate machines would.
    def rank_env(rank, node):
        d = tmp_path / f"node{node}-tmp"
        d.mkdir(exist_ok=True)
        return {"TMPDIR": str(d)}
    rs = results(launch(WORKER, ["shard", mode], size, "torch", nodes, env=env, work=str(tmp_path),
                        rank_env=rank_env), 300)
    for rank, (code, out, err) in enumerate(rs):
        assert code == 0, f"rank {rank} exited {code}: {err[-2000:]}"
        assert "failed" not in out, f"rank {rank}: {out}"
    outs = [o for _, o, _ in rs]
    ids = {re.search(r"id=(\S+)", o).group(1) for o in outs}
    assert len(ids) == 1, outs
    return ids.pop(), outs


def test_sharded_store_on_object_storage(backend, tmp_path, detcore_lib):
    sid, _ = run(backend, "store", tmp_path)
    keys = [k for k in backend.keys() if f"{sid}/" in k]
    names = sorted(k.split(f"{sid}/", 1)[1] for k in keys)
    want = ["common.txt", "metadata.json", ".detcore-manifest.json"] + [f"rank{r}.bin" for r in range(4)]
    assert names == sorted(want), names
    # The chief's manifest lists every rank's files with the checksums each rank computed while
    # uploading (checked here with another CRC32C implementation).
    core = capi.Core(capi.load(detcore_lib), backend.config(), tmp_path / "check")
    core.download(sid, tmp_path / "dl")
    core.close()
    check_folder(tmp_path / "dl", sid)
    # Nothing was left in the nodes' staging folders (not even a lock file).
    for node in range(2):
        left = [p.name for p in (tmp_path / f"node{node}-tmp").rglob("*") if p.name != f"detcore-{os.getuid()}"]
        assert left == [], left


def test_shared_restore_on_object_storage(backend, tmp_path):
    sid, outs = run(backend, "restore", tmp_path)
    dirs = [re.search(r"restored dir=(\S+)", o).group(1) for o in outs]
    # One download per node: the local ranks of a node share their local chief's folder...
    assert dirs[0] == dirs[1] and dirs[2] == dirs[3] and dirs[0] != dirs[2], dirs
    # ... which is gone once every local rank has ended.
    assert not any(os.path.exists(d) for d in dirs)


def _shard_failures(env, tmp_path, rank_env):
    """Four ranks on two "nodes" store a sharded checkpoint; returns every rank's output."""
    def per_rank(rank, node):
        d = tmp_path / f"node{node}-tmp"
        d.mkdir(exist_ok=True)
        e = {"TMPDIR": str(d)}
        e.update(rank_env(rank, node))
        return e
    rs = results(launch(WORKER, ["shard", "store"], 4, "torch", 2, env=env, work=str(tmp_path),
                        rank_env=per_rank), 300)
    return [(code, out + err) for code, out, err in rs]


def test_ranks_with_different_endpoints_fail_at_init(moto_server, s3s_server, tmp_path):
    """Half the ranks give the same bucket on another S3 endpoint: every rank's det_core_init
    fails naming both, instead of a checkpoint that lacks their files."""
    bucket = f"e{os.urandom(6).hex()}"
    for s in (moto_server, s3s_server):
        servers.make_bucket_s3(s.url, bucket)

    def cfg(url):
        return json.dumps({"type": "s3", "bucket": bucket, "endpoint_url": url, "access_key": servers.S3_KEY,
                           "secret_key": servers.S3_SECRET})
    outs = _shard_failures({"DIST_TIMEOUT": "60"}, tmp_path, lambda rank, node: {
        "DIST_STORAGE": cfg(moto_server.url if node == 0 else s3s_server.url)})
    for rank, (code, out) in enumerate(outs):
        assert code == 3 and "DET_ERR_INVALID_ARGUMENT" in out, f"rank {rank}: {out}"
        assert "do not use the same checkpoint storage" in out, out
        assert f"rank(s) [0, 1]: s3://{bucket} at {moto_server.url}" in out, out
        assert f"rank(s) [2, 3]: s3://{bucket} at {s3s_server.url}" in out, out
        assert servers.S3_SECRET not in out


def test_shard_the_storage_did_not_keep_fails_every_rank(moto_server, tmp_path):
    """The storage answers 200 to one rank's PUT but keeps nothing (a proxy in front of moto):
    the chief's check of the stored checkpoint finds that rank's file missing, every rank fails
    naming it, nothing is reported and nothing of the checkpoint is left."""
    from faultproxy import FaultProxy, Rule
    proxy = FaultProxy(moto_server.port)
    try:
        bucket = f"l{os.urandom(6).hex()}"
        servers.make_bucket_s3(moto_server.url, bucket)
        proxy.add(Rule("status", method="PUT", path=r"rank3\.bin", status=200, code="Ok", times=-1))
        cfg = json.dumps({"type": "s3", "bucket": bucket, "endpoint_url": proxy.url, "prefix": "ck",
                          "access_key": servers.S3_KEY, "secret_key": servers.S3_SECRET})
        outs = _shard_failures({"DIST_STORAGE": cfg, "DIST_TIMEOUT": "60"}, tmp_path, lambda rank, node: {})
    finally:
        proxy.stop()
    for rank, (code, out) in enumerate(outs):
        assert code == 0 and "failed status=DET_ERR_STORAGE" in out, f"rank {rank}: {out}"
        assert 'lacks 1 file(s) of rank(s) [2] (e.g. "rank3.bin")' in out, out
        metrics = tmp_path / f"rank{rank}" / "metrics.jsonl"
        assert not metrics.exists() or '"checkpoint"' not in metrics.read_text()
    import boto3
    s3 = boto3.client("s3", endpoint_url=moto_server.url, region_name="us-east-1")
    left = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert not [k for k in left if not k.startswith("ck/.detcore")], left
