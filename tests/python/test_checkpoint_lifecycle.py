"""Checkpoint lifecycle through the C ABI, on a folder and on S3 (moto), GCS (fake-gcs-server)
and Azure (Azurite): off-cluster retention (save_trial_latest / save_trial_best by a metric, from
init options, the storage dict or the environment), deletion in the background that never blocks
the loop nor outruns durability, kill -9 during deletions, and damaged checkpoints (a flipped
byte, a truncated file, a missing file): detected, named, and off-cluster resumes fall back to
the newest checkpoint that verifies, in one process and across the ranks of a job."""
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

import capi
import servers
from conftest import ROOT, Backend, build_dir
from distributed_launch import launch, results
from faultproxy import FaultProxy, Rule
from manifests import MANIFEST, check_folder

DET_ERR_STORAGE = 11
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
RUN = "life"


@pytest.fixture()
def lib(detcore_lib):
    return capi.load(detcore_lib)


class Folder:
    """A directory storage with the object-store helpers of conftest.Backend."""

    kind = "directory"
    env: dict = {}

    def __init__(self, root: pathlib.Path):
        self.root = root

    def config(self, prefix=None, **extra):
        base = self.root / prefix if prefix else self.root
        return {"type": "directory", "container_path": str(base), **extra} if extra else str(base)

    def _p(self, key, prefix=None):
        return (self.root / prefix if prefix else self.root) / key

    def put(self, key, data, prefix=None):
        self._p(key, prefix).write_bytes(data)

    def get(self, key, prefix=None):
        return self._p(key, prefix).read_bytes()

    def delete(self, key, prefix=None):
        self._p(key, prefix).unlink()

    def keys(self):
        if not self.root.exists():
            return []
        return sorted(p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file()
                      and ".detcore-staging" not in p.parts)


@pytest.fixture(params=["directory", "s3", "gcs", "azure"])
def store(request, monkeypatch, tmp_path):
    if request.param == "directory":
        return Folder(tmp_path / "ckpts")
    server = request.getfixturevalue(
        {"s3": "moto_server", "gcs": "gcs_server", "azure": "azurite_server"}[request.param])
    return Backend(request.param, server, monkeypatch)


def prefix_of(store):
    return None if store.kind in ("directory", "azure") else "pre"


def rel_keys(store, prefix):
    """Every key of the storage, relative to the prefix."""
    p = f"{prefix}/" if prefix else ""
    return [k[len(p):] for k in store.keys() if k.startswith(p)]


def checkpoints(store, prefix):
    """{storage id: sorted file names} of every checkpoint in the storage (complete or not)."""
    out = {}
    for k in rel_keys(store, prefix):
        head, _, rest = k.partition("/")
        if not UUID.fullmatch(head) or not rest or rest.endswith("/"):
            continue  # the run index, TensorBoard files, folder markers

        out.setdefault(head, []).append(rest)
    return {k: sorted(v) for k, v in out.items()}


def index_ids(store, prefix):
    doc = json.loads(store.get(f".detcore/runs/{RUN}/checkpoints.json", prefix))
    return [c["storage_id"] for c in doc["checkpoints"]], doc


def model_files(i):
    return {"model.bin": (f"weights of checkpoint {i} ".encode() * 300), "sub/opt.txt": f"opt {i}".encode()}


def write(d: pathlib.Path, files: dict):
    for name, data in files.items():
        p = d / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


# ---- retention -------------------------------------------------------------------------------------


def test_retention_keeps_the_latest_and_the_best(lib, store, tmp_path, monkeypatch):
    """save_trial_latest=2, save_trial_best=1 over 20 checkpoints: exactly the 2 newest and the best
    remain, in the storage and in the run's index. The metric comes from the checkpoints' metadata
    (even ones) or from validations reported before or after them (odd ones). Each store gets the
    policy from another source: init options (folder, Azure), the storage dict (S3), the
    environment (GCS)."""
    prefix = prefix_of(store)
    policy = {"save_trial_latest": 2, "save_trial_best": 1, "metric": "val_loss"}
    opts = {}
    if store.kind == "s3":
        cfg = store.config(prefix, **policy)
    elif store.kind == "gcs":
        cfg = store.config(prefix)
        monkeypatch.setenv("DET_SAVE_TRIAL_LATEST", "2")
        monkeypatch.setenv("DET_SAVE_TRIAL_BEST", "1")
        monkeypatch.setenv("DET_SEARCHER_METRIC", "val_loss")
    else:
        cfg = store.config(prefix)
        opts = {"save_trial_latest": 2, "save_trial_best": 1, "searcher_metric": "val_loss"}
    core = capi.Core(lib, cfg, tmp_path / "run", run_name=RUN, **opts)
    ids = {}
    for i in range(1, 21):
        loss = 0.001 if i == 4 else 1.0 / i  # the best is early, far from the latest
        meta = {"steps_completed": i * 10}
        if i % 2 == 0:
            meta["val_loss"] = loss
        elif i % 4 == 1:
            core.report_validation(i * 10, {"val_loss": loss, "acc": 0.5})
        ids[i] = core.store(meta, lambda d, i=i: write(d, model_files(i)))
        if i % 4 == 3:
            core.report_validation(i * 10, {"acc": 0.5, "val_loss": loss})
    core.close()  # waits for the background deletions
    want = {ids[4], ids[19], ids[20]}
    found = checkpoints(store, prefix)
    assert set(found) == want, {i: s for i, s in ids.items() if s in found}
    for sid in want:
        assert found[sid] == sorted([MANIFEST, "metadata.json", "model.bin", "sub/opt.txt"]), found[sid]
    listed, doc = index_ids(store, prefix)
    assert sorted(listed) == sorted(want)
    assert {c["storage_id"]: c.get("metric") for c in doc["checkpoints"]}[ids[4]] == 0.001
    # Each deletion was recorded in metrics.jsonl.
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    deleted = {x["storage_id"] for x in lines if x.get("type") == "checkpoint_deleted"}
    assert deleted == set(ids.values()) - want, lines[-3:]
    # A restart resumes from the newest.
    core = capi.Core(lib, cfg, tmp_path / "run", run_name=RUN, **opts)
    assert core.latest_checkpoint() == ids[20]
    core.close()


def test_retention_needs_a_metric_for_best(lib, tmp_path):
    with pytest.raises(capi.DetError) as e:
        capi.Core(lib, str(tmp_path / "c"), tmp_path / "run", save_trial_best=1)
    assert "save_trial_best=1 needs a metric" in e.value.message


@pytest.fixture()
def proxied(moto_server):
    proxy = FaultProxy(moto_server.port)
    bucket = f"l{os.urandom(6).hex()}"
    servers.make_bucket_s3(moto_server.url, bucket)
    cfg = {"type": "s3", "bucket": bucket, "endpoint_url": proxy.url, "prefix": "ck",
           "access_key": servers.S3_KEY, "secret_key": servers.S3_SECRET, "part_size": 5 << 20,
           "max_attempts": 2, "timeout_seconds": 300}
    b = Backend.__new__(Backend)
    b.kind, b.server, b.bucket, b.env = "s3", moto_server, bucket, {}
    yield proxy, b, cfg
    for r in proxy.rules:
        r.release.set()
    proxy.stop()


def wait_for(cond, what, timeout=120):
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_deletion_never_blocks_the_training_loop(lib, proxied, tmp_path):
    """While the storage holds a DeleteObjects request, checkpoints keep being stored: the deletion
    runs in the background. It completes once the storage answers; close waits for it."""
    proxy, b, cfg = proxied
    hold = Rule("hold", method="POST", path=r"[?&]delete(=|&|$)", times=-1)
    proxy.add(hold)
    core = capi.Core(lib, cfg, tmp_path / "run", run_name=RUN, save_trial_latest=1)
    first = core.store({"steps_completed": 1}, lambda d: write(d, model_files(1)))
    core.store({"steps_completed": 2}, lambda d: write(d, model_files(2)))
    wait_for(lambda: "hold" in proxy.actions(), "the deletion of the first checkpoint")
    done = []

    def loop():
        for i in (3, 4):
            done.append(core.store({"steps_completed": i}, lambda d, i=i: write(d, model_files(i))))

    t = threading.Thread(target=loop)
    t.start()
    t.join(120)
    assert not t.is_alive() and len(done) == 2, "storing waited for the held deletion"
    assert first in checkpoints(b, "ck"), "the held deletion cannot have finished"
    hold.release.set()
    core.close()
    assert set(checkpoints(b, "ck")) == {done[-1]}
    assert index_ids(b, "ck")[0] == [done[-1]]


def test_a_failed_store_deletes_nothing(lib, proxied, tmp_path):
    """Retention runs only after a new checkpoint is durable: a store that fails deletes nothing,
    and the checkpoint a run resumed from stays until a newer one is stored."""
    proxy, b, cfg = proxied
    core = capi.Core(lib, cfg, tmp_path / "run", run_name=RUN, save_trial_latest=1)
    first = core.store({"steps_completed": 1}, lambda d: write(d, model_files(1)))
    proxy.add(Rule("status", method="PUT", times=-1, status=500, code="InternalError"))
    with pytest.raises(capi.DetError):
        core.store({"steps_completed": 2}, lambda d: write(d, model_files(2)))
    core.close()
    proxy.rules.clear()
    assert set(checkpoints(b, "ck")) == {first}
    core = capi.Core(lib, cfg, tmp_path / "run", run_name=RUN, save_trial_latest=1)
    assert core.latest_checkpoint() == first
    core.restore(first, lambda p: None)
    assert set(checkpoints(b, "ck")) == {first}
    third = core.store({"steps_completed": 3}, lambda d: write(d, model_files(3)))
    core.close()
    assert set(checkpoints(b, "ck")) == {third}


def test_retention_leaves_checkpoints_being_written_alone(lib, proxied, tmp_path):
    """A checkpoint is in the run's index before it is complete (its record is written before it is
    published). A retention pass that runs while one is still being uploaded (after a checkpoint of
    another process sharing the run was stored) deletes only complete checkpoints it does not keep:
    the one in flight completes intact and indexed."""
    proxy, b, cfg = proxied
    core = capi.Core(lib, cfg, tmp_path / "run", run_name=RUN, save_trial_latest=1, async_checkpoints=True)
    old = core.store({"steps_completed": 0}, lambda d: write(d, model_files(0)))
    core.wait()
    hold = Rule("hold", method="PUT", path=r"/model\.bin", times=1)
    proxy.add(hold)
    slow = core.store({"steps_completed": 2}, lambda d: write(d, model_files(2)))
    wait_for(lambda: "hold" in proxy.actions(), "the upload of the asynchronous checkpoint")
    # A second context on the same run (as a second process would be) stores a checkpoint; the
    # retention pass that follows deletes `old` and leaves `slow` (incomplete) alone.
    second = capi.Core(lib, cfg, tmp_path / "run2", run_name=RUN, save_trial_latest=1)
    other = second.store({"steps_completed": 1}, lambda d: write(d, model_files(1)))
    second.close()
    assert old not in checkpoints(b, "ck")
    assert "model.bin" not in checkpoints(b, "ck").get(slow, []), "the held upload cannot have finished"
    hold.release.set()
    core.wait()
    core.close()
    assert set(checkpoints(b, "ck")) == {slow}
    assert index_ids(b, "ck")[0] == [slow]
    core = capi.Core(lib, cfg, tmp_path / "run", run_name=RUN, save_trial_latest=1)
    assert core.latest_checkpoint() == slow
    core.restore(slow, lambda path: check_folder(path, slow))
    core.close()
    assert other != slow


DRIVER = """
import json, os, pathlib, sys, time
sys.path.insert(0, {tests!r})
import capi
lib = capi.load(os.environ["DETCORE_LIB"])
core = capi.Core(lib, json.loads(sys.argv[1]), pathlib.Path(sys.argv[2]), run_name={run!r}, save_trial_latest=1)
files = {{"model.bin": os.urandom(4096)}}
files.update({{f"part/{{i:04d}}": b"x" * 64 for i in range(int(sys.argv[3]))}})
def write(d):
    for k, v in files.items():
        p = d / k
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(v)
i = 0
while True:
    i += 1
    print("stored", core.store({{"steps_completed": i}}, write), flush=True)
    if i >= int(sys.argv[4]):
        time.sleep(3600)
"""


def driver(cfg, run_dir, files, count):
    code = DRIVER.format(tests=str(ROOT / "tests" / "python"), run=RUN)
    return subprocess.Popen([sys.executable, "-c", code, json.dumps(cfg), str(run_dir), str(files), str(count)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_kill_during_an_object_store_deletion(lib, proxied, tmp_path):
    """kill -9 between the deletion of a checkpoint's metadata.json and of its other objects: what
    is left never looks complete, a restart resumes from the complete one, and the next pass
    removes the rest."""
    proxy, b, cfg = proxied
    # The first DeleteObjects (metadata.json alone) goes through; the second is held.
    hold = Rule("hold", method="POST", path=r"[?&]delete(=|&|$)", times=-1, then="reset")
    proxy.add(Rule("forward", method="POST", path=r"[?&]delete(=|&|$)", times=1), hold)
    p = driver(cfg, tmp_path / "run", 3, 2)
    try:
        wait_for(lambda: "hold" in proxy.actions(), "the deletion of the first checkpoint")
    finally:
        p.send_signal(signal.SIGKILL)
        out, err = p.communicate(timeout=60)
    hold.release.set()
    stored = re.findall(r"stored (\S+)", out)
    assert len(stored) == 2, err
    first, second = stored
    found = checkpoints(b, "ck")
    assert "metadata.json" not in found[first] and "model.bin" in found[first], found
    assert "metadata.json" in found[second]
    proxy.rules.clear()
    core = capi.Core(lib, cfg, tmp_path / "run", run_name=RUN, save_trial_latest=1)
    assert core.latest_checkpoint() == second
    core.restore(second, lambda path: check_folder(path, second))
    third = core.store({"steps_completed": 3}, lambda d: write(d, model_files(3)))
    core.close()
    assert set(checkpoints(b, "ck")) == {third}
    assert index_ids(b, "ck")[0] == [third]


def test_kill_at_any_point_of_folder_deletions(lib, tmp_path):
    """A process storing checkpoints of 400 files with save_trial_latest=1 (a deletion after each)
    is killed with SIGKILL at several moments: every checkpoint folder left is complete and
    verifies, and the run resumes from one."""
    base = tmp_path / "ckpts"
    for round_, delay in enumerate([0.4, 0.9, 1.5, 2.2]):
        p = driver(str(base), tmp_path / "run", 400, 10_000)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.communicate(timeout=60)
        for d in base.iterdir():
            if d.name.startswith("."):
                continue
            assert (d / "metadata.json").is_file(), f"round {round_}: {d.name} looks partial"
            check_folder(d, d.name)
        core = capi.Core(lib, str(base), tmp_path / "run", run_name=RUN, save_trial_latest=1)
        latest = core.latest_checkpoint()
        if latest:
            core.restore(latest, lambda path: None)
        core.close()
    core = capi.Core(lib, str(base), tmp_path / "run", run_name=RUN, save_trial_latest=1)
    # (Each killed process counted its steps from 1; this one is newer than all of them.)
    last = core.store({"steps_completed": 10**6}, lambda d: write(d, model_files(1)))
    core.close()
    # Only the newest is kept, in the index and in the storage: every checkpoint a killed process
    # completed was indexed (its record is written before it is published), so none is left
    # behind unindexed, and interrupted deletions were finished.
    assert index_ids(Folder(base), None)[0] == [last]
    assert [d.name for d in base.iterdir() if not d.name.startswith(".")] == [last]


# ---- damaged checkpoints ---------------------------------------------------------------------------


DAMAGE = {
    "flipped": ("model.bin", lambda data: data[:100] + bytes([data[100] ^ 0x10]) + data[101:],
                'file "model.bin" is corrupt: its CRC32C is'),
    "truncated": ("sub/opt.txt", lambda data: data[:-1], 'file "sub/opt.txt" is 4 bytes, its manifest says 5'),
    "missing": ("model.bin", None, 'file "model.bin" is missing'),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_newest_checkpoint(lib, store, tmp_path, damage, capfd):
    prefix = prefix_of(store)
    cfg = store.config(prefix)
    core = capi.Core(lib, cfg, tmp_path / "run", run_name=RUN)
    ids = [core.store({"steps_completed": i * 10}, lambda d, i=i: write(d, model_files(i))) for i in (1, 2, 3)]
    core.close()
    name, change, message = DAMAGE[damage]
    key = f"{ids[2]}/{name}"
    if change is None:
        store.delete(key, prefix)
    else:
        store.put(key, change(store.get(key, prefix)), prefix)

    # Named explicitly (here by another run, whose resume point it is not): an error naming the
    # checkpoint and the file, and nothing of it downloaded.
    other = capi.Core(lib, cfg, tmp_path / "other", run_name="other")
    for call in (lambda: other.restore(ids[2], lambda p: None),
                 lambda: other.download(ids[2], tmp_path / "dl")):
        with pytest.raises(capi.DetError) as e:
            call()
        assert e.value.status == DET_ERR_STORAGE
        assert f"checkpoint {ids[2]} failed verification: {message}" in e.value.message, e.value.message
    assert not [p for p in (tmp_path / "dl").rglob("*") if p.is_file()]
    # A selector that leaves the damaged file out downloads the rest.
    other.download(ids[2], tmp_path / "dl2", selector=lambda p: p != name)
    other.close()

    # Resuming the run: the newest fails, the one before it is restored, and the log says so.
    capfd.readouterr()
    core = capi.Core(lib, cfg, tmp_path / "run", run_name=RUN)
    assert core.latest_checkpoint() == ids[2]

    def use(path):
        assert (path / "model.bin").read_bytes() == model_files(2)["model.bin"]

    core.restore(ids[2], use)
    assert core.restored_id == ids[1]
    assert core.latest_checkpoint() == ids[1]
    err = capfd.readouterr().err
    assert f"checkpoint {ids[2]} failed verification: {message}" in err, err
    assert f"resuming from checkpoint {ids[1]} (steps_completed=20) instead of {ids[2]}" in err, err
    core.close()
    # The damaged checkpoint left the index (its files stay for inspection).
    assert index_ids(store, prefix)[0] == ids[:2]
    assert ids[2] in checkpoints(store, prefix)
    core = capi.Core(lib, cfg, tmp_path / "run", run_name=RUN)
    assert core.latest_checkpoint() == ids[1]
    core.close()


def test_checksums_off_restores_unchecked(lib, tmp_path):
    base = tmp_path / "ckpts"
    core = capi.Core(lib, str(base), tmp_path / "run", run_name=RUN)
    sid = core.store({"steps_completed": 1}, lambda d: write(d, model_files(1)))
    core.close()
    (base / sid / "model.bin").write_bytes(b"changed")
    cfg = {"type": "directory", "container_path": str(base), "checksums": False}
    core = capi.Core(lib, cfg, tmp_path / "run", run_name=RUN)
    core.restore(sid, lambda p: None)
    second = core.store({"steps_completed": 2}, lambda d: write(d, model_files(2)))
    core.close()
    assert not (base / second / MANIFEST).exists()


# ---- several processes -----------------------------------------------------------------------------

WORKER = str(build_dir() / "tests" / "c" / "dist_worker")


def dist_config(kind, request, monkeypatch, tmp_path):
    if kind == "directory":
        return str(tmp_path / "ckpts"), Folder(tmp_path / "ckpts"), None, {}
    b = Backend("s3", request.getfixturevalue("moto_server"), monkeypatch)
    return json.dumps(b.config("pre")), b, "pre", b.env


@pytest.mark.parametrize("kind", ["directory", "s3"])
def test_resume_fallback_across_ranks(lib, kind, request, monkeypatch, tmp_path):
    """4 ranks on 2 "nodes" resume with LocalWorkersShareDownload from a run whose newest
    checkpoint is damaged: every rank restores the same older checkpoint."""
    cfg, st, prefix, env = dist_config(kind, request, monkeypatch, tmp_path)
    core = capi.Core(lib, json.loads(cfg) if cfg.startswith("{") else cfg, tmp_path / "prep", run_name="dist")
    ids = [core.store({"steps_completed": i}, lambda d, i=i: write(d, model_files(i))) for i in (1, 2)]
    core.close()
    key = f"{ids[1]}/model.bin"
    data = st.get(key, prefix)
    st.put(key, data[:50] + b"?" + data[51:], prefix)
    env = dict(env, DIST_STORAGE=cfg, DIST_TIMEOUT="120")
    rs = results(launch(WORKER, ["lifecycle", "resume"], 4, "torch", 2, env=env, work=str(tmp_path)), 300)
    want_content = model_files(1)["model.bin"].decode()[:127]
    for rank, (code, out, err) in enumerate(rs):
        assert code == 0, f"rank {rank}: {err[-2000:]}"
        m = re.search(r"asked=(\S+) restored=(\S+) latest=(\S+) content=(.*)", out)
        assert m, out
        assert m.groups()[:3] == (ids[1], ids[0], ids[0]), out
        assert m.group(4) == want_content
    assert index_ids_named(st, prefix, "dist") == [ids[0]]


def index_ids_named(st, prefix, run):
    doc = json.loads(st.get(f".detcore/runs/{run}/checkpoints.json", prefix))
    return [c["storage_id"] for c in doc["checkpoints"]]


@pytest.mark.parametrize("kind", ["directory", "s3"])
def test_retention_with_sharded_checkpoints(kind, request, monkeypatch, tmp_path):
    """A sharded checkpoint per iteration with save_trial_latest=1 (from the environment): the
    chief deletes the previous checkpoint in the background while the ranks write the next; the
    last one is whole (every rank's file, a manifest that verifies) and the only one left."""
    cfg, st, prefix, env = dist_config(kind, request, monkeypatch, tmp_path)
    env = dict(env, DIST_STORAGE=cfg, DIST_TIMEOUT="120", DET_SAVE_TRIAL_LATEST="1")
    rs = results(launch(WORKER, ["lifecycle", "retain", "4"], 4, "torch", 2, env=env, work=str(tmp_path)), 300)
    for rank, (code, out, err) in enumerate(rs):
        assert code == 0, f"rank {rank}: {err[-2000:]}"
    (sid,) = {re.search(r"stored id=(\S+)", o).group(1) for _, o, _ in rs}
    found = checkpoints(st, prefix)
    assert list(found) == [sid], found
    assert found[sid] == sorted([MANIFEST, "metadata.json"] + [f"rank{r}.bin" for r in range(4)])
    assert index_ids_named(st, prefix, "dist") == [sid]
    files = {name: st.get(f"{sid}/{name}", prefix) for name in found[sid]}
    from manifests import check_tree

    check_tree(files, sid)
