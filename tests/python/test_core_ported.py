"""Determined's own Core API unit tests (harness/tests/core of the 0.38.1 tag: test_preempt,
test_checkpoint, test_searcher, test_metrics) and its sharded storage tests
(harness/tests/storage/util.py, run for shared_fs and S3), ported to detcore's Python package.

Determined runs them with threads and mocks (a MagicMock session and storage manager); here every
rank is a process with a real detcore context (tests/python/ranks.py), the "dummy" variants are
off-cluster contexts with folder storage, and the others run on-cluster against the fake master,
which records what determined's mocks counted. The behaviours asserted are Determined's; where
detcore deliberately differs the test says so and asserts detcore's behaviour (see
docs/on-cluster.md, "Differences from the Python client"). Not ported: test_check_started
(detcore contexts are started by init, there is no start()), test_profiler (it mocks psutil;
detcore reads /proc, tested in test_profiler.py), test_metrics' direct use of the private
_MetricsContext (its behaviours are ported through train.report_*)."""
import os
import re
import pathlib
import signal
import threading
import time
import urllib.request

import pytest

import detcore
import ranks
from manifests import MANIFEST, check_tree
from oncluster_util import FakeMaster, in_process_task_env, setup_trial
from ranks import raises_when

# ---- helpers ----------------------------------------------------------------------------------


def off_cluster(tmp: str, rank: int, dist, **kw):
    """An off-cluster context of a rank (Determined's "dummy" contexts)."""
    kw.setdefault("disable_signal_handlers", True)
    return detcore.init(distributed=dist, checkpoint_storage=os.path.join(tmp, "ckpts"),
                        run_dir=os.path.join(tmp, f"run{rank}"), run_name="ported", cluster_info_dir="/nonexistent",
                        **kw)


def on_cluster(info: str, dist, **kw):
    return detcore.init(distributed=dist, cluster_info_dir=info, disable_signal_handlers=True, close_timeout=30,
                        **kw)


@pytest.fixture()
def master(tmp_path, monkeypatch):
    """The fake master and a trial's info files for a job of 2 ranks in one container."""
    in_process_task_env(monkeypatch)
    m = FakeMaster(allocation_id=f"7.p{os.getpid()}x{time.monotonic_ns() % 10**8}.1").start()
    info, host, container = setup_trial(m, tmp_path, slot_ids=(0, 1))
    monkeypatch.setenv("DETCORE_SHARED_FS_CONTAINER_PATH", str(container))
    m.info_dir, m.host, m.container = str(info), host, container
    yield m
    m.stop()


def fake_preempt(url: str) -> None:
    """Ask the fake master to preempt (from a rank's process)."""
    urllib.request.urlopen(urllib.request.Request(url + "/_fake/preempt", data=b"{}", method="POST")).read()


def signal_self(sig=signal.SIGUSR1) -> None:
    """Deliver `sig` to the calling thread: detcore's handler has run when this returns."""
    signal.pthread_kill(threading.main_thread().ident, sig)


# ---- test_preempt.py --------------------------------------------------------------------------


def _preempt_workers_ask_chief_off_cluster(rank, dist, tmp):
    with off_cluster(tmp, rank, dist, disable_signal_handlers=False) as ctx:
        if rank == 0:
            assert ctx.preempt.should_preempt() is False
            # The worker is receiving broadcasts.
            ctx.distributed.broadcast(False)
            signal_self()  # the preemption source fires (detcore's flag is set synchronously)
            assert ctx.preempt.should_preempt(auto_ack=True) is True
            assert ctx.preempt.should_preempt(auto_ack=True) is True
        else:
            assert ctx.distributed.broadcast(None) is False
            assert ctx.preempt.should_preempt() is False
            # The chief's first call after the signal said True: so does the worker's.
            assert ctx.preempt.should_preempt() is True


def test_preempt_workers_ask_chief(tmp_path):
    """Determined: the chief answers True at its first call after the signal, and the worker
    at the same call."""
    ranks.run(2, _preempt_workers_ask_chief_off_cluster, str(tmp_path))


def _preempt_until_true(ctx, auto_ack=True, limit=30.0):
    calls, t0 = 0, time.monotonic()
    while True:
        calls += 1
        if ctx.preempt.should_preempt(auto_ack=auto_ack):
            return calls
        assert time.monotonic() - t0 < limit, "no preemption"
        time.sleep(0.01)


def _preempt_workers_ask_chief_on_cluster(rank, dist, info, url, auto_ack):
    with on_cluster(info, dist) as ctx:
        assert ctx.preempt.should_preempt() is False
        ctx.distributed.broadcast(False)
        if rank == 0:
            fake_preempt(url)
        calls = _preempt_until_true(ctx, auto_ack)
        assert ctx.preempt.should_preempt(auto_ack=auto_ack) is True
        return calls


@pytest.mark.parametrize("auto_ack", [False, True], ids=lambda x: f"auto_ack:{x}")
def test_preempt_workers_ask_chief_on_cluster(master, auto_ack):
    """The master's preemption reaches both ranks at the same call; only the chief acknowledges,
    once with auto_ack (however often it is called), never without. (Determined waits for its
    watcher, then expects True at the next call; detcore's watcher is not observable without a
    call, so the ranks call until True and must agree on the call.)"""
    calls = ranks.run(2, _preempt_workers_ask_chief_on_cluster, master.info_dir, master.url, auto_ack)
    assert calls[0] == calls[1], calls
    assert master.acks == (1 if auto_ack else 0)
    polls = [r for r in master.requests() if r["path"].endswith("/signals/preemption")]
    assert polls, "the chief long-polls the master"


def _preempt_chief_only(rank, dist, tmp, info, url, auto_ack):
    ctx = on_cluster(info, dist, preempt_mode=detcore.PreemptMode.ChiefOnly) if info else off_cluster(
        tmp, rank, dist, preempt_mode=detcore.PreemptMode.ChiefOnly, disable_signal_handlers=False)
    with ctx:
        if rank == 0:
            assert ctx.preempt.should_preempt() is False
            fake_preempt(url) if info else signal_self()
            _preempt_until_true(ctx, auto_ack) if info else None
            assert ctx.preempt.should_preempt(auto_ack=auto_ack) is True
            assert ctx.preempt.should_preempt(auto_ack=auto_ack) is True
        else:
            with pytest.raises(RuntimeError, match="should_preempt.*called from non-chief"):
                ctx.preempt.should_preempt()


@pytest.mark.parametrize("on", ["off_cluster", "on_cluster"])
@pytest.mark.parametrize("auto_ack", [False, True], ids=lambda x: f"auto_ack:{x}")
def test_preempt_chief_only(on, auto_ack, tmp_path, request):
    m = request.getfixturevalue("master") if on == "on_cluster" else None
    ranks.run(2, _preempt_chief_only, str(tmp_path), m and m.info_dir, m and m.url, auto_ack)
    if m:
        assert m.acks == (1 if auto_ack else 0)


def _preempt_workers_ask_master(rank, dist, tmp, info, url, auto_ack):
    mode = detcore.PreemptMode.WorkersAskMaster
    ctx = on_cluster(info, dist, preempt_mode=mode) if info else off_cluster(
        tmp, rank, dist, preempt_mode=mode, disable_signal_handlers=False)
    with ctx:
        assert ctx.preempt.should_preempt() is False
        # No collective: each rank asks its own sources (rank 1 sees the master's preemption,
        # or its own signal, without rank 0 calling anything).
        if info:
            if rank == 0:
                fake_preempt(url)
            _preempt_until_true(ctx, auto_ack)
        else:
            signal_self()
        assert ctx.preempt.should_preempt(auto_ack=auto_ack) is True
        ctx.distributed.barrier()


@pytest.mark.parametrize("on", ["off_cluster", "on_cluster"])
@pytest.mark.parametrize("auto_ack", [False, True], ids=lambda x: f"auto_ack:{x}")
def test_preempt_workers_ask_master(on, auto_ack, tmp_path, request):
    """Each rank asks its own sources; on-cluster each rank acknowledges for itself (Determined's
    test expects one acknowledgement per rank's context)."""
    m = request.getfixturevalue("master") if on == "on_cluster" else None
    ranks.run(2, _preempt_workers_ask_master, str(tmp_path), m and m.info_dir, m and m.url, auto_ack)
    if m:
        assert m.acks == (2 if auto_ack else 0)


# ---- test_checkpoint.py -----------------------------------------------------------------------


def listing(root) -> dict:
    """determined's StorageManager._list_directory: relative names, folders with a trailing /.
    detcore's manifest (beside metadata.json in a whole checkpoint, absent from a selection that
    leaves it out) is checked against the other files and left out of the listing, which is then
    what Determined's tests expect."""
    root = pathlib.Path(root)
    out, data = {}, {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        data[rel] = None if p.is_dir() else p.read_bytes()
        out[rel + "/" if p.is_dir() else rel] = None if p.is_dir() else data[rel].decode()
    if MANIFEST in out:
        check_tree(data, None)
        del out[MANIFEST]
    return out


def _checkpoint_context(rank, dist, tmp, info, mode):
    ckpt_dir = pathlib.Path(tmp) / "ckpt-dir"
    ctx = on_cluster(info, dist) if info else off_cluster(tmp, rank, dist)
    with ctx:
        if rank == 0:
            ckpt_dir.mkdir(exist_ok=True)
            (ckpt_dir / "one").write_text("1")
            (ckpt_dir / "two").write_text("2")
        ctx.distributed.barrier()
        # upload: chief only.
        with raises_when(rank == 1, RuntimeError, match="upload.*non-chief"):
            uploaded = ctx.checkpoint.upload(ckpt_dir, metadata={"steps_completed": 1})
        # store_path: chief only.
        with raises_when(rank == 1, RuntimeError, match=r"\.store_path.*non-chief"):
            with ctx.checkpoint.store_path(metadata={"steps_completed": 1}) as (path, _):
                (path / "three").write_text("3")
        uploaded = ctx.distributed.broadcast(uploaded if rank == 0 else None)

        # download: with NoSharedDownload the ranks do not wait for each other (the worker
        # receives the chief's broadcast_local before it downloads, after the chief downloaded).
        unique = "arbitrary-string"
        target = pathlib.Path(tmp) / f"download-{rank if mode == detcore.DownloadMode.NoSharedDownload else 'node'}"
        if rank == 0:
            ctx.checkpoint.download(uploaded, target, mode)
            if mode == detcore.DownloadMode.NoSharedDownload:
                ctx.distributed.broadcast_local(unique)
        else:
            if mode == detcore.DownloadMode.NoSharedDownload:
                assert ctx.distributed.broadcast_local(unique) == unique
            ctx.checkpoint.download(uploaded, target, mode)
        assert listing(target) == {"one": "1", "two": "2", "metadata.json": '{\n  "steps_completed": 1\n}'}

        # restore_path, likewise.
        if rank == 0:
            with ctx.checkpoint.restore_path(uploaded, mode) as p:
                assert (p / "two").read_text() == "2"
            if mode == detcore.DownloadMode.NoSharedDownload:
                ctx.distributed.broadcast_local(unique)
        else:
            if mode == detcore.DownloadMode.NoSharedDownload:
                assert ctx.distributed.broadcast_local(unique) == unique
            with ctx.checkpoint.restore_path(uploaded, mode) as p:
                assert (p / "one").read_text() == "1"
        ctx.distributed.barrier()

        # delete: the chief's.
        if rank == 0:
            ctx.checkpoint.delete(uploaded)
        ctx.distributed.barrier()
        with pytest.raises(detcore.NotFoundError):
            ctx.checkpoint.download(uploaded, pathlib.Path(tmp) / f"gone-{rank}", detcore.DownloadMode.NoSharedDownload)


@pytest.mark.parametrize("mode", [detcore.DownloadMode.LocalWorkersShareDownload, detcore.DownloadMode.NoSharedDownload],
                         ids=lambda x: f"mode={x.name}")
@pytest.mark.parametrize("on", ["off_cluster", "on_cluster"])
def test_checkpoint_context(on, mode, tmp_path, request):
    m = request.getfixturevalue("master") if on == "on_cluster" else None
    ranks.run(2, _checkpoint_context, str(tmp_path), m and m.info_dir, mode)
    if m:
        # One report per checkpoint, from the chief; one delete.
        reports = [r for r in m.requests() if r["method"] == "POST" and r["path"] == "/api/v1/checkpoints"]
        assert len(reports) == 2
        assert [r["method"] for r in m.requests() if r["path"] == "/api/v1/checkpoints"].count("PATCH") == 1


# Determined's test_merge_files cases: (names per rank, merged names, conflicts).
MERGE_FILES = [
    ([["file0"], ["file1"]], ["file0", "file1"], {}),
    ([["file0"], ["file0"]], ["file0"], {"file0": [0, 1]}),
    ([["dir1/"], ["dir1/"]], ["dir1/"], {}),
    ([["file1/"], ["file1"]], None, {"file1": [0, 1]}),
    ([["dir1/file1"], ["file1"]], ["dir1/", "dir1/file1", "file1"], {}),
    ([["dir1/file1"], ["dir1/file1/"]], None, {"dir1/file1": [0, 1]}),
]
# Determined's test_merge_metadata cases: (metadata per rank, merged, conflicts).
MERGE_METADATA = [
    ([{"a": 0}, {"b": 0}], {"a": 0, "b": 0}, {}),
    ([{"a": 0}, {"a": 0}], {"a": 0}, {}),
    ([{"a": 1, "b": 0}, {"a": 0}], {"a": 1, "b": 0}, {"/a": [0, 1]}),
    ([{"a": {"c": 1}}, {"a": {"d": 2}}], {"a": {"c": 1, "d": 2}}, {}),
    ([{"a": {"c": 1}}, {"a": 2}], {"a": {"c": 1}}, {"/a": [0, 1]}),
    ([{"a": {"c": 1}}, {"a": [2]}], {"a": {"c": 1}}, {"/a": [0, 1]}),
    ([{"a": {"c": 1}}, {"a": {"c": 2}}], {"a": {"c": 1}}, {"/a/c": [0, 1]}),
    ([{"a": {"c": {"d": 1}}}, {"a": {"d": 2}}], {"a": {"c": {"d": 1}, "d": 2}}, {}),
    (
        [
            {"a": 1, "d": {"a": 1, "d": {"a": 1}}},
            {"b": 2, "d": {"b": 2, "d": {"a": 1}}},
            {"c": 3, "d": {"c": 3, "d": {"a": 1}}},
        ],
        {"c": 3, "d": {"c": 3, "d": {"a": 1}, "b": 2, "a": 1}, "b": 2, "a": 1},
        {},
    ),
    (
        [
            {"a": 1, "d": {"a": 1, "d": {"a": 1}}},
            {"b": 2, "d": {"b": 2, "d": {"b": 1, "c": 1}}},
            {"c": 3, "d": {"b": 3, "d": {"c": 2, "a": 2}}},
        ],
        {"a": 1, "d": {"a": 1, "d": {"a": 1, "b": 1, "c": 1}, "b": 2}, "b": 2, "c": 3},
        {"/d/b": [1, 2], "/d/d/c": [1, 2], "/d/d/a": [0, 2]},
    ),
    # The ranks listed are every rank that had the key, as in Determined ([0, 1, 2], not [0, 2]).
    ([{"s": 3}, {"s": 3}, {"s": 4}], {"s": 3}, {"/s": [0, 1, 2]}),
]


def conflict_lines(kind, conflicts):
    """Determined's message (the chief's form), as a pattern ending the error's text."""
    return re.escape(f"refusing to upload with {kind} conflicts:\n" + "\n".join(
        f"    {k} uploaded by ranks {v}" for k, v in sorted(conflicts.items()))) + "$"


def _merge(rank, dist, tmp):
    out = {"files": [], "metadata": []}
    with off_cluster(tmp, rank, dist) as ctx:
        for i, (per_rank, _, conflicts) in enumerate(MERGE_FILES):
            d = pathlib.Path(tmp) / f"files{i}-rank{rank}"
            names = per_rank[rank] if rank < len(per_rank) else None
            for name in names or []:
                p = d / name
                if name.endswith("/"):
                    p.mkdir(parents=True, exist_ok=True)
                else:
                    p.parent.mkdir(parents=True, exist_ok=True)
                    p.write_text(f"rank {rank}")  # different on every rank: a conflict stays one
            with raises_when(bool(conflicts), RuntimeError, match=conflict_lines("files", conflicts)):
                sid = ctx.checkpoint.upload(d if names is not None else None, {"steps_completed": 1}, shard=True)
                target = pathlib.Path(tmp) / f"files{i}-download-{rank}"
                ctx.checkpoint.download(sid, target, detcore.DownloadMode.NoSharedDownload)
                out["files"].append(sorted(listing(target)))
        for i, (per_rank, merged, conflicts) in enumerate(MERGE_METADATA):
            meta = dict(per_rank[rank]) if rank < len(per_rank) else {}
            meta["steps_completed"] = 1
            d = pathlib.Path(tmp) / f"meta{i}-rank{rank}"
            d.mkdir()
            with raises_when(bool(conflicts), RuntimeError, match=conflict_lines("metadata", conflicts)):
                sid = ctx.checkpoint.upload(d, meta, shard=True)
                out["metadata"].append(ctx.checkpoint.get_metadata(sid))
    return out


def test_merge_files_and_metadata(tmp_path):
    """Determined's test_merge_files and test_merge_metadata through sharded uploads of 3 ranks
    (a rank that a case does not use passes no folder / no metadata): conflicts fail every rank
    with Determined's message and ranks; the rest store the union."""
    outs = ranks.run(3, _merge, str(tmp_path))
    assert outs[0] == outs[1] == outs[2]
    want_files = [sorted(m + ["metadata.json"]) for _, m, c in MERGE_FILES if not c]
    assert outs[0]["files"] == want_files
    want_meta = [{**m, "steps_completed": 1} for _, m, c in MERGE_METADATA if not c]
    assert outs[0]["metadata"] == want_meta


CKPT_FILES = {0: ["worker0-0", "worker0-1"], 1: ["worker1-0", "worker1-1"]}
ALL_WORKERS_FILES = ["metadata.json", "file2", "file3"]


def _checkpoint_upload(rank, dist, tmp, sharded):
    ckpt_dir = pathlib.Path(tmp) / "ckpt-dir"
    with off_cluster(tmp, rank, dist) as ctx:
        # Both ranks put their files (and identical common ones) into the same folder.
        ckpt_dir.mkdir(exist_ok=True)
        for f in CKPT_FILES[rank] + ALL_WORKERS_FILES:
            (ckpt_dir / f).write_text("common" if f in ALL_WORKERS_FILES else f)
        ctx.distributed.barrier()
        sid = None
        with raises_when(not sharded and rank != 0, RuntimeError, match="upload.*non-chief"):
            sid = ctx.checkpoint.upload(ckpt_dir, metadata={"steps_completed": 1}, shard=sharded,
                                        selector=lambda _: True)
        sid = ctx.distributed.broadcast(sid)
        return listing(pathlib.Path(tmp) / "ckpts" / sid)


@pytest.mark.parametrize("sharded", [True, False])
def test_checkpoint_upload(sharded, tmp_path):
    """Every rank's files end up in the checkpoint, identical common files once; the checkpoint's
    metadata.json is the (merged) metadata, never the caller's file of that name."""
    stored = ranks.run(2, _checkpoint_upload, str(tmp_path), sharded)[0]
    files = CKPT_FILES[0] + CKPT_FILES[1] + ALL_WORKERS_FILES  # one shared folder holds both
    assert sorted(stored) == sorted(files)
    assert stored["metadata.json"] == '{\n  "steps_completed": 1\n}'
    assert stored["file2"] == "common" and stored["worker1-0"] == "worker1-0"


def _upload_without_a_folder(rank, dist, tmp):
    with off_cluster(tmp, rank, dist) as ctx:
        # CheckpointContext.upload: shard=False with ckpt_dir=None on the chief...
        with raises_when(rank == 0, RuntimeError, match=re.escape(
                "cannot call .upload(ckpt_dir=None, shard=False), which would result in doing nothing at all")):
            with raises_when(rank != 0, RuntimeError, match="upload.*non-chief"):
                ctx.checkpoint.upload(None, {"steps_completed": 1})
        # ... and shard=True with ckpt_dir=None on every rank (every rank fails: Determined's
        # other ranks would go on to the next collective).
        with pytest.raises(RuntimeError, match=re.escape(
                "cannot call .upload(ckpt_dir=None, shard=True), from all ranks; "
                "at least one rank must have a valid ckpt_dir")):
            ctx.checkpoint.upload(None, {"steps_completed": 1}, shard=True)
        # A selector without a folder.
        with pytest.raises(RuntimeError, match=re.escape("ckpt_dir has to be provided if selector is not None")):
            ctx.checkpoint.upload(None, {"steps_completed": 1}, shard=True, selector=lambda _: True)
        ctx.distributed.barrier()
        base = pathlib.Path(tmp) / "ckpts"
        return sorted(p.name for p in base.iterdir()) if base.exists() else []


def test_upload_without_a_folder(tmp_path):
    """Determined's RuntimeErrors for uploads of nothing; nothing is stored."""
    assert ranks.run(2, _upload_without_a_folder, str(tmp_path))[0] in ([], [".detcore"])


def _store_path(rank, dist, tmp, sharded):
    with off_cluster(tmp, rank, dist) as ctx:
        sid = None
        with raises_when(not sharded and rank != 0, RuntimeError, match=r"\.store_path.*non-chief"):
            with ctx.checkpoint.store_path(metadata={"steps_completed": 1}, shard=sharded) as (path, sid):
                for f in CKPT_FILES[rank] + ALL_WORKERS_FILES:
                    (path / f).write_text("common" if f in ALL_WORKERS_FILES else f)
        sid = ctx.distributed.broadcast(sid)
        return listing(pathlib.Path(tmp) / "ckpts" / sid)


@pytest.mark.parametrize("sharded", [True, False])
def test_store_path(sharded, tmp_path):
    stored = ranks.run(2, _store_path, str(tmp_path), sharded)[0]
    want = CKPT_FILES[0] + ALL_WORKERS_FILES + (CKPT_FILES[1] if sharded else [])
    assert sorted(stored) == sorted(want)
    assert stored["metadata.json"] == '{\n  "steps_completed": 1\n}'


# ---- test_searcher.py -------------------------------------------------------------------------


def _searcher_workers_ask_chief(rank, dist, tmp, info):
    ctx = on_cluster(info, dist) if info else off_cluster(tmp, rank, dist, searcher_max_length=5)
    with ctx:
        epochs_trained = 0
        for op in ctx.searcher.operations():
            assert ctx.distributed.allgather(op.length) == [op.length] * 2
            while epochs_trained < op.length:
                epochs_trained += 1
                assert ctx.distributed.allgather(epochs_trained) == [epochs_trained] * 2
                with raises_when(rank != 0, RuntimeError, match="op.report_progress.*chief"):
                    op.report_progress(epochs_trained)
            with raises_when(rank != 0, RuntimeError, match="op.report_completed.*chief"):
                op.report_completed(0.0)
        return epochs_trained


@pytest.mark.parametrize("on", ["off_cluster", "on_cluster"])
def test_searcher_workers_ask_chief(on, tmp_path, request):
    m = None
    if on == "on_cluster":
        from oncluster_util import default_experiment_config

        m = request.getfixturevalue("master")
        m.write_info_dir(m.info_dir, storage_host_path=str(m.host), slot_ids=(0, 1),
                         config=default_experiment_config(str(m.host), searcher_max_length={"epochs": 5}))
    assert ranks.run(2, _searcher_workers_ask_chief, str(tmp_path), m and m.info_dir) == [5, 5]
    if m:
        # The chief reported its progress 5 times; the workers made no call to the master about it.
        assert m.progress == [0.2, 0.4, 0.6, 0.8, 1.0]


def _completion_check(rank, dist, tmp):
    with off_cluster(tmp, rank, dist, searcher_max_length=5) as ctx:
        ops = iter(ctx.searcher.operations())
        next(ops)
        # The operation is not completed.
        if rank == 0:
            with pytest.raises(RuntimeError, match="must call op.report_completed"):
                next(ops)
        else:
            # Determined's worker hangs here until its test wakes it with a broadcast; detcore
            # fails the workers with the chief's error.
            with pytest.raises(RuntimeError, match="must call op.report_completed"):
                next(ops)


def test_completion_check(tmp_path):
    ranks.run(2, _completion_check, str(tmp_path))


def _searcher_chief_only(rank, dist, tmp):
    with off_cluster(tmp, rank, dist, searcher_max_length=1) as ctx:
        with raises_when(rank != 0, RuntimeError, match="searcher.operations.*chief"):
            next(iter(ctx.searcher.operations(detcore.SearcherMode.ChiefOnly)))


def test_searcher_chief_only(tmp_path):
    ranks.run(2, _searcher_chief_only, str(tmp_path))


# ---- test_metrics.py --------------------------------------------------------------------------

METRICS = [
    {"loss": 0.10, "accuracy": 0.90},
    {"loss": 0.20, "accuracy": 0.91},
    {"loss": 0.30, "accuracy": 0.92},
    {"loss": 0.40, "accuracy": 0.93},
    {"loss": 0.50, "accuracy": 0.94},
]


@pytest.fixture()
def one_rank_master(tmp_path, monkeypatch):
    in_process_task_env(monkeypatch)
    m = FakeMaster().start()
    info, host, container = setup_trial(m, tmp_path)
    monkeypatch.setenv("DETCORE_SHARED_FS_CONTAINER_PATH", str(container))
    m.info_dir = str(info)
    yield m
    m.stop()


def test_metrics_report(one_rank_master):
    m = one_rank_master
    with detcore.init(cluster_info_dir=m.info_dir, disable_signal_handlers=True, close_timeout=30) as ctx:
        for idx, metric in enumerate(METRICS):
            ctx.train.report_metrics(group="training", metrics=metric, steps_completed=idx + 1)
    assert len(m.metrics) == len(METRICS)
    for idx, (body, metric) in enumerate(zip(m.metrics, METRICS)):
        assert body["group"] == "training"
        assert body["metrics"]["metrics"]["avgMetrics"] == metric
        assert body["metrics"]["trialId"] == m.trial_id and body["metrics"]["trialRunId"] == m.trial_run_id
        assert body["metrics"]["stepsCompleted"] == idx + 1


def test_metrics_report_raises_exception(one_rank_master):
    """A report the master refuses is an error for the program. Determined raises it from the
    report call itself; detcore queues reports (a training loop never waits on the master) and
    raises it from the next report call, or from close."""
    m = one_rank_master
    m.script(fail={"method": "POST", "path": "/api/v1/trials/7/metrics", "status": 400, "count": -1})
    ctx = detcore.init(cluster_info_dir=m.info_dir, disable_signal_handlers=True, close_timeout=30)
    with pytest.raises(RuntimeError, match="400"):
        try:
            ctx.train.report_metrics(group="training", metrics={"loss": 0.10, "accuracy": 0.90}, steps_completed=1)
            ctx.train.flush()
            ctx.train.report_metrics(group="training", metrics={"loss": 0.10}, steps_completed=2)
        finally:
            ctx.close()
    posts = [r for r in m.requests() if r["path"] == "/api/v1/trials/7/metrics"]
    assert len(posts) >= 1 and posts[0]["json"]["metrics"]["metrics"]["avgMetrics"] == {"loss": 0.10, "accuracy": 0.90}


# ---- harness/tests/storage: the sharded tests (test_shared_fs.py; test_s3.py's live S3 ones) --

EXPECTED_FILES_N0 = {
    "file0_0": "file 0 node 0",
    "file_repeated": "file repeated",
    "file1_0": "file 1 node 0",
    "subdir/": None,
    "subdir/file3_0": "nested file node 0",
    "subdir/file_repeated": "nested file repeated",
    "metadata.json": '{\n  "steps_completed": 1\n}',
}
EXPECTED_FILES_N1 = {
    "file0_1": "file 0 node 1",
    "file1_1": "file 1 node 1",
    "file_repeated1": "file repeated 1",
    "subdir/": None,
    "subdir/file3_1": "nested file node 1",
    "subdir/file_repeated": "nested file repeated",
    "another_subdir/": None,
    "another_subdir/file": "file in another subdir",
    "metadata.json": '{\n  "steps_completed": 1\n}',
}
META = '{\n  "steps_completed": 1\n}'


def create_checkpoint(d: pathlib.Path, files: dict) -> None:
    for name, content in files.items():
        p = d / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            p.mkdir(exist_ok=True)
        else:
            p.write_text(content)


def validate_checkpoint(d: pathlib.Path, expected: dict) -> None:
    assert d.exists(), f"{d} should exist"
    assert listing(d) == expected


def storage_for(kind: str, tmp: str, s3_config):
    return os.path.join(tmp, "shared_fs") if kind == "shared_fs" else s3_config


def _sharded_upload_download(rank, dist, tmp, kind, s3_config):
    tmp_path = pathlib.Path(tmp)
    node = rank // 2
    metadata = {"steps_completed": 1}
    with detcore.init(distributed=dist, checkpoint_storage=storage_for(kind, tmp, s3_config),
                      run_dir=os.path.join(tmp, f"run{rank}"), cluster_info_dir="/nonexistent",
                      disable_signal_handlers=True) as ctx:
        d = ctx.distributed

        def sync_and_clean(sid):
            d.allgather(None)
            if rank == 0:
                ctx.checkpoint.delete(sid)
            d.allgather(None)

        ckpt_dir = tmp_path / f"ckpt_dir_{node}"
        if rank == 0:
            create_checkpoint(ckpt_dir, EXPECTED_FILES_N0)
        elif rank == 2:
            create_checkpoint(ckpt_dir, EXPECTED_FILES_N1)
        d.allgather(None)

        # 1. Every node's files are in the checkpoint (ranks 0 and 1, 2 and 3 share a folder,
        # uploaded once); LocalWorkersShareDownload: one folder per node.
        sid = ctx.checkpoint.upload(ckpt_dir, metadata, shard=True)
        target = tmp_path / f"test1_download{node}"
        ctx.checkpoint.download(sid, target)
        validate_checkpoint(target, {**EXPECTED_FILES_N0, **EXPECTED_FILES_N1})
        d.allgather(None)

        # 2. Downloads with a selector per node.
        selector = (lambda x: x == "subdir/file3_0") if rank in (0, 1) else (lambda x: x == "file1_1")
        target = tmp_path / f"test2_download_{node}"
        ctx.checkpoint.download(sid, target, selector=selector)
        if rank in (0, 1):
            validate_checkpoint(target, {"subdir/file3_0": "nested file node 0", "subdir/": None})
        else:
            validate_checkpoint(target, {"file1_1": "file 1 node 1"})
        d.allgather(None)

        # 3. With and without a selector.
        selector = (lambda x: x in EXPECTED_FILES_N0) if rank in (0, 1) else None
        target = tmp_path / f"test3_download_{node}"
        ctx.checkpoint.download(sid, target, selector=selector)
        validate_checkpoint(target, EXPECTED_FILES_N0 if rank in (0, 1) else {**EXPECTED_FILES_N0, **EXPECTED_FILES_N1})
        d.allgather(None)

        # 4. The same with NoSharedDownload, one folder per rank.
        target = tmp_path / f"test4_download_{rank}"
        ctx.checkpoint.download(sid, target, selector=selector, download_mode=detcore.DownloadMode.NoSharedDownload)
        validate_checkpoint(target, EXPECTED_FILES_N0 if rank in (0, 1) else {**EXPECTED_FILES_N0, **EXPECTED_FILES_N1})
        d.allgather(None)

        # 5. A selector that excludes everything: nothing is created.
        target = tmp_path / f"test5_download_{node}"
        ctx.checkpoint.download(sid, target, selector=lambda x: False)
        assert not target.exists(), f"{target} should not exist"
        sync_and_clean(sid)

        # 6. Only rank 2 uploads; the metadata is stored too.
        sid = ctx.checkpoint.upload(ckpt_dir if rank == 2 else None, metadata, shard=True)
        target = tmp_path / f"test6_download_{node}"
        ctx.checkpoint.download(sid, target)
        validate_checkpoint(target, {**EXPECTED_FILES_N1, "metadata.json": META})
        sync_and_clean(sid)

        # 7. Ranks 0 and 1 upload a selection of their (shared) folder, ranks 2 and 3 all of theirs.
        if rank == 0:
            selector = lambda x: x in ["file_repeated", "subdir/file_repeated"]  # noqa: E731
        elif rank == 1:
            selector = lambda x: x == "file0_0"  # noqa: E731
        else:
            selector = None
        sid = ctx.checkpoint.upload(ckpt_dir, metadata, shard=True, selector=selector)
        target = tmp_path / f"test7_download_{node}"
        ctx.checkpoint.download(sid, target)
        validate_checkpoint(target, {**EXPECTED_FILES_N1, "file_repeated": "file repeated", "file0_0": "file 0 node 0",
                                     "subdir/": None, "subdir/file_repeated": "nested file repeated"})
        sync_and_clean(sid)

        # 8. Ranks 0 and 1 upload nothing, rank 2 a folder inside its ckpt_dir, rank 3 one
        # selected file of its ckpt_dir.
        if rank in (0, 1):
            sid = ctx.checkpoint.upload(None, metadata, shard=True, selector=None)
        elif rank == 2:
            sid = ctx.checkpoint.upload(ckpt_dir / "another_subdir", metadata, shard=True, selector=None)
        else:
            sid = ctx.checkpoint.upload(ckpt_dir, metadata, shard=True, selector=lambda x: x == "subdir/file_repeated")
        target = tmp_path / f"test8_download_{node}"
        ctx.checkpoint.download(sid, target)
        validate_checkpoint(target, {"file": "file in another subdir", "subdir/": None,
                                     "subdir/file_repeated": "nested file repeated", "metadata.json": META})
        sync_and_clean(sid)

        # 9. Selectors that select nothing: only the metadata.
        sid = ctx.checkpoint.upload(ckpt_dir, metadata, shard=True, selector=lambda x: False)
        target = tmp_path / f"test9_download_{node}"
        ctx.checkpoint.download(sid, target)
        validate_checkpoint(target, {"metadata.json": META})
        sync_and_clean(sid)

        # 10. Two files of the same name with different contents: every rank fails.
        with pytest.raises(RuntimeError, match=r"refusing to upload with files conflicts:"):
            if rank == 0:
                create_checkpoint(ckpt_dir, {"filename": "content 1"})
            elif rank == 2:
                create_checkpoint(ckpt_dir, {"filename": "content 2"})
            d.allgather(None)
            ctx.checkpoint.upload(ckpt_dir, metadata, shard=True)

        # 11. A folder and a file of the same name.
        with pytest.raises(RuntimeError, match=r"refusing to upload with files conflicts:"):
            if rank == 0:
                os.makedirs(ckpt_dir / "abc")
            elif rank == 2:
                (ckpt_dir / "abc").write_text("test")
            d.allgather(None)
            ctx.checkpoint.upload(ckpt_dir, metadata, shard=True)


def _sharded_store_restore(rank, dist, tmp, kind, s3_config):
    metadata = {"steps_completed": 1}
    local_rank = rank % 2
    # Each "node" stages in its own temporary folder, as separate machines would (detcore's
    # ranks of one node share their staging folder on object storage; Determined's test gives
    # every rank its own).
    node_tmp = os.path.join(tmp, f"node{rank // 2}-tmp")
    os.makedirs(node_tmp, exist_ok=True)
    os.environ["TMPDIR"] = node_tmp
    with detcore.init(distributed=dist, checkpoint_storage=storage_for(kind, tmp, s3_config),
                      run_dir=os.path.join(tmp, f"run{rank}"), cluster_info_dir="/nonexistent",
                      disable_signal_handlers=True) as ctx:
        d = ctx.distributed
        with ctx.checkpoint.store_path(metadata, shard=True) as (path, sid):
            create_checkpoint(path, EXPECTED_FILES_N0 if rank in (0, 1) else EXPECTED_FILES_N1)

        # 1. Every rank's files were stored.
        with ctx.checkpoint.restore_path(sid) as path:
            validate_checkpoint(path, {**EXPECTED_FILES_N0, **EXPECTED_FILES_N1})
            d.allgather(None)

        if kind == "shared_fs":
            # As Determined: shared_fs restores in place, without selectors; the ranks write
            # straight into the checkpoint's folder (no conflict detection), so stop here.
            return
        # 2. A selector per node.
        selector = (lambda x: x == "subdir/file3_0") if rank in (0, 1) else (lambda x: x == "file1_1")
        with ctx.checkpoint.restore_path(sid, selector=selector) as path:
            if rank in (0, 1):
                validate_checkpoint(path, {"subdir/file3_0": "nested file node 0", "subdir/": None})
            else:
                validate_checkpoint(path, {"file1_1": "file 1 node 1"})
            d.allgather(None)

        # 3. The local ranks of a node get the union of their selections.
        selector = (lambda x: x == "subdir/file3_0") if local_rank == 0 else (lambda x: x == "file1_1")
        with ctx.checkpoint.restore_path(sid, selector=selector) as path:
            validate_checkpoint(path, {"subdir/file3_0": "nested file node 0", "subdir/": None,
                                       "file1_1": "file 1 node 1"})
            d.allgather(None)

        # 4. A selection on node 0, everything on node 1.
        selector = (lambda x: x in list(EXPECTED_FILES_N0)) if rank in (0, 1) else None
        with ctx.checkpoint.restore_path(sid, selector=selector) as path:
            validate_checkpoint(path, EXPECTED_FILES_N0 if rank in (0, 1)
                                else {**EXPECTED_FILES_N0, **EXPECTED_FILES_N1})
            d.allgather(None)

        if rank == 0:
            ctx.checkpoint.delete(sid)

        # 5. Files of the same name with different contents.
        with pytest.raises(RuntimeError, match=r"refusing to upload with files conflicts:"):
            with ctx.checkpoint.store_path(metadata, shard=True) as (path, sid):
                create_checkpoint(path, {"filename": "content 1" if rank in (0, 1) else "content 2"})

        # 6. A file and a folder of the same name.
        with pytest.raises(RuntimeError, match=r"refusing to upload with files conflicts:"):
            with ctx.checkpoint.store_path(metadata, shard=True) as (path, sid):
                if rank in (0, 1):
                    os.makedirs(os.path.join(path, "abc"), exist_ok=True)  # the node's ranks share `path`
                else:
                    (path / "abc").write_text("test")


@pytest.fixture(params=["shared_fs", "s3"])
def storage_kind(request, monkeypatch):
    if request.param == "shared_fs":
        return request.param, None
    from conftest import Backend

    b = Backend("s3s", request.getfixturevalue("s3s_server"), monkeypatch)
    return request.param, b.config()


def test_checkpoint_sharded_upload_download(storage_kind, tmp_path):
    kind, s3 = storage_kind
    ranks.run(4, _sharded_upload_download, str(tmp_path), kind, s3, local_size=2, timeout=300)


def test_checkpoint_sharded_store_restore(storage_kind, tmp_path):
    kind, s3 = storage_kind
    ranks.run(4, _sharded_store_restore, str(tmp_path), kind, s3, local_size=2, timeout=300)
