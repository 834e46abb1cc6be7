"""Sharded checkpoints and shared restores through the C ABI, with several processes, on each
object store (issue 5 + issue 6): every rank uploads its own part from its node's staging folder,
identical files from several nodes are stored once, the merged metadata.json is stored last and
listed, and a LocalWorkersShareDownload restore downloads once per node."""
import json
import os
import re

import pytest

from conftest import build_dir
from distributed_launch import launch, results

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


def test_sharded_store_on_object_storage(backend, tmp_path):
    sid, _ = run(backend, "store", tmp_path)
    keys = [k for k in backend.keys() if f"{sid}/" in k]
    names = sorted(k.split(f"{sid}/", 1)[1] for k in keys)
    assert names == sorted(["common.txt", "metadata.json"] + [f"rank{r}.bin" for r in range(4)]), names
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
