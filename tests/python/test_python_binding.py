"""The Python package (bindings/python/detcore): the scenarios of the C tests (tests/c) through the
determined.core-shaped API — errors with status and message, bad options, bad strings and JSON,
unknown enum values, use after close, checkpoints (an exception never publishes), selectors,
metrics, searcher, single-rank collectives, launcher environments, preemption — plus what is
Python's own: exceptions that are also ValueError/RuntimeError, InvalidHP, closing at exit,
a library that lacks functions."""
import ctypes
import json
import math
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import pytest

import detcore
from detcore import _lib

from conftest import ROOT


@pytest.fixture()
def opts(tmp_path):
    """init() arguments for an isolated off-cluster context."""
    return dict(
        checkpoint_storage=tmp_path / "ckpts",
        run_dir=tmp_path / "run",
        run_name="py",
        cluster_info_dir="/nonexistent/detcore-test-info",
        disable_signal_handlers=True,
    )


def metrics_lines(run_dir):
    return [json.loads(x) for x in (pathlib.Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def run_python(code, env=None, cwd=None):
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT / "bindings" / "python")
    e.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=e, cwd=cwd, capture_output=True, text=True, timeout=120
    )


# ---- versions, errors, options ---------------------------------------------------------------------


def test_versions_and_status_names():
    assert detcore.library_version() == detcore.__version__
    assert pathlib.Path(detcore.library_path()).exists()
    assert detcore.core is detcore  # `det.core.init()` reads as with determined
    L = _lib.lib()
    assert L.missing == []  # this package binds exactly the functions of this library
    for status, name in detcore._errors.STATUS_NAMES.items():
        assert L.fn("det_status_name")(status).decode() == name


def test_errors_carry_status_and_message(opts):
    with pytest.raises(detcore.InvalidArgumentError) as e:
        detcore.init(**{**opts, "checkpoint_storage": "ftp://x"})
    assert isinstance(e.value, ValueError) and isinstance(e.value, detcore.DetcoreError)
    assert e.value.status == 1 and e.value.status_name == "DET_ERR_INVALID_ARGUMENT"
    assert 'det_core_init: checkpoint_storage: unknown scheme "ftp" in "ftp://x"' in str(e.value)

    cases = [
        ({"checkpoint_storage": '{"type": "directory"'}, "checkpoint_storage: malformed JSON"),
        ({"checkpoint_storage": {"type": "shared_fs", "host_path": "/tmp"}}, "shared_fs"),
        ({"hparams": [1, 2]}, "hparams_json: expected a JSON object, got array"),
        ({"run_name": "a/b"}, "run_name"),
        ({"searcher_max_length": -3}, "searcher_max_length"),
        ({"preempt_signals": [signal.SIGKILL], "disable_signal_handlers": False}, "SIGKILL cannot be caught"),
        (
            {"distributed": detcore.DistributedContext(rank=3, size=2, local_rank=0, local_size=2, cross_rank=0, cross_size=1)},
            "rank 3 must be less than size 2",
        ),
        ({"run_name": "a\0b"}, "run_name contains a NUL byte"),
        ({"run_name": "bad\udcffutf8"}, "run_name is not valid UTF-8"),
    ]
    for extra, needle in cases:
        try:
            detcore.init(**{**opts, **extra}).close()
            pytest.fail(f"init({extra}) did not raise")
        except detcore.InvalidArgumentError as e:
            assert needle in str(e), (extra, str(e))


def test_unknown_enum_values(opts):
    with pytest.raises(ValueError, match="preempt_mode: 7 is not a PreemptMode"):
        detcore.init(**{**opts, "preempt_mode": 7})
    with pytest.raises(ValueError, match="tensorboard_mode"):
        detcore.init(**{**opts, "tensorboard_mode": "SOMETIMES"})
    with detcore.init(**opts) as ctx:
        with pytest.raises(ValueError, match="download_mode"):
            ctx.checkpoint.download("x", "/tmp/x", download_mode="FAST")
        with pytest.raises(ValueError, match="searcher_mode"), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            next(iter(ctx.searcher.operations(searcher_mode=5)))
        with pytest.raises(ValueError, match="reason"):
            ctx.train.report_early_exit("USER_REQUESTED_STOP")


def test_determined_enums_are_accepted(opts):
    core = pytest.importorskip("determined.core")
    with detcore.init(**opts, preempt_mode=core.PreemptMode.ChiefOnly, tensorboard_mode=core.TensorboardMode.MANUAL) as ctx:
        assert ctx.preempt.should_preempt() is False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            for op in ctx.searcher.operations(searcher_mode=core.SearcherMode.ChiefOnly):
                op.report_completed(1.0)
        assert detcore.SearcherMode.ChiefOnly.value == core.SearcherMode.ChiefOnly.value


def test_on_cluster_info_is_refused_clearly(opts, tmp_path):
    info = tmp_path / "info"
    info.mkdir()
    (info / "cluster.json").write_text("{}")
    with pytest.raises(detcore.DetcoreError, match="cluster.json"):
        detcore.init(**{**opts, "cluster_info_dir": info})


def test_bad_arguments_in_calls(opts):
    with detcore.init(**opts) as ctx:
        with pytest.raises(detcore.InvalidArgumentError, match="steps_completed"):
            with ctx.checkpoint.store_path({"loss": 1.0}):
                pass
        with pytest.raises(detcore.InvalidArgumentError, match="group"):
            ctx.train.report_metrics("a.b", 1, {"x": 1})
        with pytest.raises(ValueError, match="progress"):
            ctx.train.report_progress(2.0)
        with pytest.raises(TypeError, match="Unserializable"):
            ctx.train.report_training_metrics(1, {"x": object()})
        with pytest.raises(detcore.InvalidArgumentError, match="not allowed|null|None"):
            ctx.train.report_validation_metrics(1, {"x": None})
        with pytest.raises(detcore.NotFoundError) as e:
            with ctx.checkpoint.restore_path("00000000-0000-0000-0000-000000000000"):
                pass
        assert isinstance(e.value, LookupError) and "det_ckpt_restore_path_begin" in str(e.value)
        with pytest.raises(detcore.InvalidArgumentError, match="storage_id contains a NUL byte"):
            ctx.checkpoint.delete("a\0b")


def test_use_after_close(opts):
    ctx = detcore.init(**opts)
    gen = ctx.checkpoint.store_path({"steps_completed": 3})
    path, sid = gen.__enter__()
    ctx.close()
    ctx.close()  # closing twice does nothing
    with pytest.raises(detcore.StateError, match="closed by det_core_close") as e:
        ctx.preempt.should_preempt()
    assert isinstance(e.value, RuntimeError)
    with pytest.raises(detcore.StateError, match="closed"):
        ctx.train.report_training_metrics(1, {})
    with pytest.raises(detcore.StateError, match="closed"):
        ctx.info.hparams
    with pytest.raises(detcore.StateError, match="closed"):
        gen.__exit__(None, None, None)  # the store of a closed context cannot be published


def test_strings_are_owned(opts):
    with detcore.init(**opts, hparams={"lr": 0.5, "name": "mlp", "n": 4, "nested": {"é": [1, 2.5]}}) as ctx:
        assert ctx.info.hparams == {"lr": 0.5, "name": "mlp", "n": 4, "nested": {"é": [1, 2.5]}}
        assert ctx.info.trial.hparams == ctx.info.hparams
        assert ctx.info.run_name == "py"
        assert ctx.info.run_dir == pathlib.Path(opts["run_dir"])
        assert ctx.info.on_cluster is False
        assert ctx.info.latest_checkpoint is None and ctx.info.steps_completed == 0


# ---- checkpoints ---------------------------------------------------------------------------------


def test_store_restore_and_exceptions(opts):
    storage = pathlib.Path(opts["checkpoint_storage"])
    with detcore.init(**opts) as ctx:
        meta = {"steps_completed": 5, "loss": float("nan"), "name": "é", "nested": {"a": [1, 2.5]}}
        with ctx.checkpoint.store_path(meta) as (path, storage_id):
            assert isinstance(path, pathlib.Path) and path.is_dir() and len(storage_id) == 36
            (path / "model.bin").write_bytes(b"\x00\x01" * 100)
            (path / "sub").mkdir()
            (path / "sub" / "opt.txt").write_text("momentum")
        # byte-identical to Python's json.dump(metadata, f, indent=2)
        assert (storage / storage_id / "metadata.json").read_text() == json.dumps(meta, indent=2)
        got = ctx.checkpoint.get_metadata(storage_id)
        assert got["steps_completed"] == 5 and got["name"] == "é" and got["loss"] == "NaN"

        # An exception inside store_path: nothing published, the folder removed, re-raised as is.
        class Boom(Exception):
            pass

        with pytest.raises(Boom):
            with ctx.checkpoint.store_path({"steps_completed": 6}) as (half, half_id):
                (half / "model.bin").write_bytes(b"half")
                raise Boom()
        assert not half.exists() and not (storage / half_id).exists()

        with ctx.checkpoint.restore_path(storage_id) as p:
            assert (p / "model.bin").read_bytes() == b"\x00\x01" * 100
            assert (p / "sub" / "opt.txt").read_text() == "momentum"

    with detcore.init(**opts) as ctx:  # the same run resumes from the published one only
        assert ctx.info.latest_checkpoint == storage_id
        assert ctx.info.steps_completed == 5
        ctx.checkpoint.delete(storage_id)
        assert not (storage / storage_id).exists()


def test_retention_and_verified_resume(opts, caplog):
    storage = pathlib.Path(opts["checkpoint_storage"])
    for bad in (-1, 2**31, 1.5, True):
        with pytest.raises(ValueError):
            detcore.init(save_trial_latest=bad, **opts)
    with pytest.raises(detcore.InvalidArgumentError) as e:
        detcore.init(save_trial_best=1, **opts)
    assert "needs a metric" in str(e.value)
    ids = []
    with detcore.init(save_trial_latest=1, save_trial_best=1, searcher_metric="loss", smaller_is_better=True,
                      **opts) as ctx:
        for step, loss in ((1, 0.1), (2, 0.5), (3, 0.7)):
            with ctx.checkpoint.store_path({"steps_completed": step, "loss": loss}) as (path, sid):
                (path / "model.bin").write_text(f"model {step}")
            ids.append(sid)
    # Kept: the newest and the best (step 1).
    assert sorted(p.name for p in storage.iterdir() if not p.name.startswith(".")) == sorted([ids[0], ids[2]])
    # A damaged resume point: restore_path gives the newest checkpoint that verifies, and says so.
    (storage / ids[2] / "model.bin").write_text("model 9")
    with detcore.init(**opts) as ctx:
        with caplog.at_level("WARNING", logger="detcore"):
            with ctx.checkpoint.restore_path(ctx.info.latest_checkpoint) as p:
                assert (p / "model.bin").read_text() == "model 1"
        assert ctx.info.latest_checkpoint == ids[0]
        assert f"checkpoint {ids[2]} is damaged; restored checkpoint {ids[0]}" in caplog.text
        with pytest.raises(detcore.StorageError) as e:
            with ctx.checkpoint.restore_path(ids[2]):
                pass
        assert 'file "model.bin" is corrupt' in str(e.value)
def test_store_path_with_steps_completed(opts):
    """(detcore) store_path(steps_completed=n): det_ckpt_store_path_begin_steps, no JSON to write."""
    with detcore.init(**opts) as ctx:
        with ctx.checkpoint.store_path(steps_completed=3) as (path, sid3):
            (path / "m").write_text("3")
        assert ctx.checkpoint.get_metadata(sid3) == {"steps_completed": 3}
        with ctx.checkpoint.store_path({"reason": "typed", "loss": math.inf}, steps_completed=4) as (path, sid4):
            (path / "m").write_text("4")
        assert ctx.checkpoint.get_metadata(sid4) == {"steps_completed": 4, "reason": "typed", "loss": "Infinity"}
        with pytest.raises(ValueError, match='extra_metadata_json holds "steps_completed"'):
            with ctx.checkpoint.store_path({"steps_completed": 5}, steps_completed=5):
                pytest.fail("not reached")
        with pytest.raises(ValueError, match="steps_completed: must be between 0 and 2147483647, got -1"):
            with ctx.checkpoint.store_path(steps_completed=-1):
                pytest.fail("not reached")
        with pytest.raises(ValueError, match="out of range"):
            with ctx.checkpoint.store_path(steps_completed=2**64):
                pytest.fail("not reached")
        with pytest.raises(TypeError, match="steps_completed must be an int"):
            with ctx.checkpoint.store_path(steps_completed=1.5):
                pytest.fail("not reached")
    with detcore.init(**opts) as ctx:
        assert ctx.info.latest_checkpoint == sid4 and ctx.info.steps_completed == 4
    # Two runs: each starts metrics.jsonl's part with a run_start record naming its resume point.
    starts = [x for x in metrics_lines(opts["run_dir"]) if x["type"] == "run_start"]
    assert [s["resumes_from"] for s in starts] == [None, {"storage_id": sid4, "steps_completed": 4}]
    assert all(s["run_name"] == "py" and s["pid"] == os.getpid() and s["host"] for s in starts)


def test_upload_download_selectors(opts, tmp_path):
    src = tmp_path / "src"
    (src / "keep").mkdir(parents=True)
    (src / "keep" / "a.txt").write_text("a")
    (src / "drop.txt").write_text("d")
    storage = pathlib.Path(opts["checkpoint_storage"])
    with detcore.init(**opts) as ctx:
        seen = []

        def sel(p):
            seen.append(p)
            return p.startswith("keep")

        sid = ctx.checkpoint.upload(src, {"steps_completed": 1}, selector=sel)
        assert "drop.txt" in seen
        assert (storage / sid / "keep" / "a.txt").read_text() == "a"
        assert not (storage / sid / "drop.txt").exists()
        assert not (src / "metadata.json").exists()  # never written into the caller's folder

        ctx.checkpoint.download(sid, tmp_path / "dl", detcore.DownloadMode.NoSharedDownload)
        assert (tmp_path / "dl" / "keep" / "a.txt").read_text() == "a"

        # A selector that raises: the call raises that very exception, after one callback.
        class SelectorFailed(Exception):
            pass

        calls = []

        def bad(p):
            calls.append(p)
            raise SelectorFailed(p)

        with pytest.raises(SelectorFailed):
            ctx.checkpoint.download(sid, tmp_path / "dl2", selector=bad)
        with pytest.raises(SelectorFailed):
            ctx.checkpoint.upload(src, {"steps_completed": 2}, selector=bad)
        assert len(calls) == 2

        # No folder: determined's RuntimeError, nothing stored (with shard=True every rank passed
        # None, this process being the only rank).
        before = sorted(os.listdir(storage))
        with pytest.raises(RuntimeError, match=r"cannot call \.upload\(ckpt_dir=None, shard=False\), which would "
                                               r"result in doing nothing at all"):
            ctx.checkpoint.upload(None, {"steps_completed": 3})
        with pytest.raises(RuntimeError, match=r"cannot call \.upload\(ckpt_dir=None, shard=True\), from all ranks; "
                                               r"at least one rank must have a valid ckpt_dir") as e:
            ctx.checkpoint.upload(None, {"steps_completed": 3}, shard=True)
        assert isinstance(e.value, detcore.InvalidArgumentError) and e.value.status_name == "DET_ERR_INVALID_ARGUMENT"
        assert sorted(os.listdir(storage)) == before


# ---- metrics ---------------------------------------------------------------------------------------


def test_metrics(opts):
    np = pytest.importorskip("numpy")
    with detcore.init(**opts) as ctx:
        t = ctx.train
        t.report_training_metrics(steps_completed=10, metrics={"loss": 0.5, "n": np.int64(3), "v": np.arange(3)})
        t.report_training_metrics(20, {"loss": float("inf")}, batch_metrics=[{"loss": 0.1}, {"loss": 0.2}])
        t.report_validation_metrics(steps_completed=20, metrics={"validation_loss": np.float32(0.25)})
        t.report_metrics("custom", 20, {"lr": 1e-3})
        t.report_scalars("training", 30, {"loss": 0.125, "acc": 1})
        t.set_status("testing")
        t.report_progress(0.5)
        assert t.get_experiment_best_validation() is None
        assert t.set_metadata({"a": 1}) == {"a": 1}
        assert t.set_metadata({"b": {"c": 2}}) == {"a": 1, "b": {"c": 2}}
        assert t.get_metadata() == {"a": 1, "b": {"c": 2}}
        t.flush(30)
        lines = [x for x in metrics_lines(opts["run_dir"]) if x["type"] == "metrics"]
    assert lines[0]["metrics"] == {"loss": 0.5, "n": 3, "v": [0, 1, 2]} and lines[0]["steps_completed"] == 10
    assert lines[1]["metrics"] == {"loss": "Infinity"} and lines[1]["batch_metrics"] == [{"loss": 0.1}, {"loss": 0.2}]
    assert lines[2]["group"] == "validation" and lines[2]["metrics"] == {"validation_loss": 0.25}
    assert lines[3]["group"] == "custom"
    assert lines[4]["metrics"] == {"loss": 0.125, "acc": 1.0} and lines[4]["steps_completed"] == 30


# ---- searcher ------------------------------------------------------------------------------------------


def test_searcher(opts):
    with detcore.init(**opts, searcher_max_length=25) as ctx:
        assert ctx.searcher.get_configured_units() == detcore.Unit.EPOCHS
        with pytest.warns(FutureWarning, match="deprecated in Determined 0.38.0"):
            ops = []
            for op in ctx.searcher.operations():
                assert op.length == 25
                op.report_progress(10)
                op.report_completed({"loss": 0.5})  # any JSON value
                ops.append(op)
        assert len(ops) == 1
        ctx.searcher.acknowledge_out_of_ops()

    with detcore.init(**{**opts, "run_name": "py2"}) as ctx:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            it = ctx.searcher.operations()
            op = next(it)
            assert op.length == 1
            with pytest.raises(detcore.StateError, match="you must call op.report_completed"):
                next(it)


# ---- distributed, one rank --------------------------------------------------------------------------------


def test_single_rank_collectives(opts):
    with detcore.init(**opts) as ctx:
        d = ctx.distributed
        assert (d.rank, d.size, d.local_rank, d.local_size, d.cross_rank, d.cross_size) == (0, 1, 0, 1, 0, 1)
        assert (d.get_rank(), d.get_size(), d.get_local_rank(), d.get_num_agents()) == (0, 1, 0, 1)
        obj = {"a": [1, 2.5, None], "b": ("x", b"\x00")}
        assert d.allgather(obj) == [obj]
        assert d.gather(obj) == [obj]
        assert d.broadcast(obj) == obj
        assert d.allgather_local(3) == [3] and d.gather_local(3) == [3] and d.broadcast_local(4) == 4
        assert d.broadcast_local() is None
        d.barrier()
        d.close()
    with pytest.raises(detcore.StateError, match="closed"):
        d.allgather(1)
    loose = detcore.DistributedContext(rank=0, size=1, local_rank=0, local_size=1, cross_rank=0, cross_size=1)
    with pytest.raises(detcore.StateError, match="not passed to detcore.init"):
        loose.allgather(1)


LAUNCHER_VARS = [
    "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE", "LOCAL_SIZE",
    "CROSS_RANK", "CROSS_SIZE", "MASTER_ADDR", "DET_CHIEF_IP", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID",
    "SLURM_NODEID", "SLURM_NNODES", "SLURM_JOB_NODELIST", "SLURM_STEP_NODELIST", "OMPI_COMM_WORLD_RANK", "PMI_RANK",
    "HOROVOD_RANK", "DETCORE_CHIEF_PORT", "INTER_TRAIN_PROCESS_COMM_PORT_1", "SLURM_JOB_ID", "SLURM_STEP_ID",
    "SLURM_STEP_NUM_TASKS", "SLURM_STEP_NUM_NODES", "DETCORE_JOB_ID", "PMIX_NAMESPACE", "TORCHELASTIC_RUN_ID",
]  # fmt: skip


def test_launcher_environments(monkeypatch):
    for v in LAUNCHER_VARS:
        monkeypatch.delenv(v, raising=False)
    d = detcore.DistributedContext.from_env()
    assert (d.rank, d.size) == (0, 1)
    for k, v in dict(RANK="3", WORLD_SIZE="4", LOCAL_RANK="1", LOCAL_WORLD_SIZE="2", GROUP_RANK="1",
                     GROUP_WORLD_SIZE="2", MASTER_ADDR="10.1.2.3", INTER_TRAIN_PROCESS_COMM_PORT_1="23456").items():  # fmt: skip
        monkeypatch.setenv(k, v)
    d = detcore.DistributedContext.from_torch_distributed()
    assert (d.rank, d.size, d.local_rank, d.local_size, d.cross_rank, d.cross_size) == (3, 4, 1, 2, 1, 2)
    assert d.chief_ip == "10.1.2.3" and d.port == 23456
    assert detcore.DistributedContext.from_torch_distributed(chief_ip="10.9.9.9").chief_ip == "10.9.9.9"
    monkeypatch.delenv("WORLD_SIZE")
    with pytest.raises(detcore.InvalidArgumentError, match="WORLD_SIZE is not set"):
        detcore.DistributedContext.from_torch_distributed()
    for v in LAUNCHER_VARS:
        monkeypatch.delenv(v, raising=False)
    # What srun exports (SLURM_STEP_ID included: the batch script of a 2-task job has none).
    for k, v in dict(SLURM_PROCID="1", SLURM_NTASKS="2", SLURM_LOCALID="1", SLURM_NODEID="0", SLURM_NNODES="1",
                     SLURM_JOB_ID="81", SLURM_STEP_ID="2").items():  # fmt: skip
        monkeypatch.setenv(k, v)
    d = detcore.DistributedContext.from_slurm()
    assert (d.rank, d.size, d.local_rank, d.local_size, d.cross_size) == (1, 2, 1, 2, 1)
    assert d.job_id == "slurm:81.2" and d.port is None
    monkeypatch.setenv("DETCORE_JOB_ID", "pinned")
    assert detcore.DistributedContext.from_slurm().job_id == "pinned"
    monkeypatch.delenv("DETCORE_JOB_ID")
    monkeypatch.delenv("SLURM_STEP_ID")
    with pytest.raises(detcore.InvalidArgumentError, match="batch script of Slurm job 81.*srun"):
        detcore.DistributedContext.from_slurm()
    monkeypatch.setenv("SLURM_STEP_ID", "2")
    monkeypatch.setenv("SLURM_PROCID", "7")
    with pytest.raises(detcore.InvalidArgumentError, match="rank 7 must be less than size 2"):
        detcore.DistributedContext.from_env(detcore.Launcher.SLURM)
    with pytest.raises(ValueError, match="launcher"):
        detcore.DistributedContext.from_env("pbs")


# ---- preemption ---------------------------------------------------------------------------------------------


def test_preemption_signal_and_halt_file(opts, tmp_path):
    halt = tmp_path / "halt"
    o = {**opts, "disable_signal_handlers": False, "preempt_signals": [signal.SIGUSR2], "halt_file": halt}
    with detcore.init(**o) as ctx:
        assert ctx.preempt.should_preempt() is False
        assert ctx.preempt.seconds_remaining() is None or ctx.preempt.seconds_remaining() > 0
        os.kill(os.getpid(), signal.SIGUSR2)  # handled by detcore, not fatal
        deadline = time.monotonic() + 10
        while not ctx.preempt.should_preempt(auto_ack=False) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ctx.preempt.should_preempt() is True
        ctx.preempt.acknowledge_preemption_signal()
    with detcore.init(**{**o, "preempt_signals": [signal.SIGUSR2], "end_time": time.time() + 3600}) as ctx:
        assert 3500 < ctx.preempt.seconds_remaining() <= 3600
        assert ctx.preempt.should_preempt() is False
        halt.write_text("")
        deadline = time.monotonic() + 10
        while not ctx.preempt.should_preempt() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ctx.preempt.should_preempt() is True


# ---- process-level behaviour ------------------------------------------------------------------------------


def test_invalid_hp_exits_zero_and_reports(tmp_path):
    r = run_python(
        f"""
        import detcore
        with detcore.init(checkpoint_storage={str(tmp_path / 'c')!r}, run_dir={str(tmp_path / 'run')!r},
                          cluster_info_dir="/nonexistent") as ctx:
            raise detcore.InvalidHP("lr too large")
        print("not reached")
        """
    )
    assert r.returncode == 0, r.stderr
    assert "not reached" not in r.stdout
    kinds = [x["type"] for x in metrics_lines(tmp_path / "run")]
    assert "early_exit" in kinds


def test_unclosed_context_is_closed_at_exit(tmp_path):
    r = run_python(
        f"""
        import detcore
        ctx = detcore.init(checkpoint_storage={str(tmp_path / 'c')!r}, run_dir={str(tmp_path / 'run')!r},
                           cluster_info_dir="/nonexistent")
        for i in range(1, 501):
            ctx.train.report_training_metrics(i, {{"loss": 1.0 / i}})
        # no close(): the reports must still reach metrics.jsonl
        """
    )
    assert r.returncode == 0, r.stderr
    steps = [x["steps_completed"] for x in metrics_lines(tmp_path / "run") if x["type"] == "metrics"]
    assert steps == list(range(1, 501))


def test_older_library_degrades_gracefully(tmp_path):
    # A "libdetcore" that exports nothing of detcore (libm): import works, calls say what is missing.
    import ctypes.util

    libm = ctypes.util.find_library("m")
    r = run_python(
        """
        import detcore
        from detcore import _lib
        assert len(_lib.lib().missing) == len(_lib.SIGNATURES)
        try:
            detcore.init()
        except detcore.UnsupportedError as e:
            assert isinstance(e, NotImplementedError)
            print("OK", e)
        """,
        env={"DETCORE_LIB": libm},
    )
    assert r.returncode == 0, r.stderr
    assert "OK det_init_options_default: libdetcore at" in r.stdout and "does not export" in r.stdout

    r = run_python("import detcore\ndetcore.init()\n", env={"DETCORE_LIB": str(tmp_path / "nope.so")})
    assert r.returncode != 0
    assert "LibraryNotFoundError" in r.stderr and "nope.so" in r.stderr and "DETCORE_LIB" in r.stderr


def test_unknown_function_names(monkeypatch):
    L = _lib.lib()
    with pytest.raises(detcore.UnsupportedError, match="det_not_a_function is not bound"):
        L.fn("det_not_a_function")
    # A binding for a function a newer header has but this library lacks: recorded, not fatal.
    monkeypatch.setitem(_lib.SIGNATURES, "det_future_function", (ctypes.c_int32, [ctypes.c_void_p]))
    fresh = _lib.Library(L.path)
    assert fresh.missing == ["det_future_function"] and not fresh.has("det_future_function")
    with pytest.raises(detcore.UnsupportedError, match="does not export det_future_function"):
        fresh.call("det_future_function", None)


def test_library_search_order(monkeypatch, tmp_path):
    monkeypatch.setenv("DETCORE_LIB", "/x/libdetcore.so")
    assert list(_lib.candidates()) == ["/x/libdetcore.so"]
    monkeypatch.delenv("DETCORE_LIB")
    c = list(_lib.candidates())
    assert c[-2:] == ["libdetcore.so.1", "libdetcore.so"]


# ---- cluster info, alerts, profiler, TensorBoard, upload modes -------------------------------------


def test_cluster_info_off_cluster(opts):
    ctx = detcore.init(**opts)
    info = ctx.info
    # What only a cluster knows: None and [] (Python's whole `info` is None off-cluster).
    for name in ("master_url", "cluster_id", "agent_id", "task_id", "allocation_id", "task_type", "user_data",
                 "container_rank"):
        assert getattr(info, name) is None, name
    for name in ("slot_ids", "container_addrs", "container_slot_counts", "gpu_uuids"):
        assert getattr(info, name) == [], name
    for name in ("trial_id", "experiment_id", "trial_seed", "trial_run_id", "config", "_config", "_trial_run_id"):
        assert getattr(info.trial, name) is None, name
    assert info.trial._steps_completed == 0
    ctx.close()
    # Only "unknown here" becomes None: a closed context raises.
    with pytest.raises(detcore.StateError, match="closed by det_core_close"):
        info.cluster_id
    with pytest.raises(detcore.StateError, match="closed"):
        info.trial.trial_id
    with pytest.raises(detcore.StateError, match="closed"):
        info.container_addrs


def test_alert_off_cluster_is_logged(opts, capfd):
    with detcore.init(**opts) as ctx:
        ctx.alert(title="end of main", level="debug")
        ctx.alert("t", "d", "warn")
        ctx.alert("t", "d", level="error")
        ctx.alert(description="only a description", level=None)
        err = capfd.readouterr().err
        assert "WARNING: " in err and "detcore: alert: t: d" in err and "ERROR: " in err
        with pytest.raises(ValueError, match="level: 'warning' is not one of 'info', 'warn', 'debug', 'error'"):
            ctx.alert("t", level="warning")
        with pytest.raises(detcore.InvalidArgumentError, match="title contains a NUL byte"):
            ctx.alert("a\0b")
    with pytest.raises(detcore.StateError, match="closed"):
        ctx.alert("after close")


def test_profiler_on_off(opts):
    core = pytest.importorskip("determined.core")
    ref = core.ProfilerContext(agent_id="a", metrics=None, distributed=core.DummyDistributedContext())
    with detcore.init(**opts) as ctx:
        # Bad arguments: ValueError with determined's own messages.
        for args in [(0.05,), (1, 0), (1, 1.5), (1, "2")]:
            with pytest.raises(ValueError) as ours:
                ctx.profiler.on(*args)
            with pytest.raises(ValueError) as theirs:
                ref.on(*args)
            assert str(ours.value).split(": ", 1)[-1] == str(theirs.value), args
        ctx.profiler.on(sampling_interval=0.1, samples_per_report=2)
        ctx.profiler.on(0.1, 2)  # idempotent
        time.sleep(0.6)
        ctx.profiler.off()
        ctx.profiler.off()  # idempotent
        ctx.train.flush()
    groups = [x["group"] for x in metrics_lines(opts["run_dir"]) if x["type"] == "metrics" and x["steps_completed"] is None]
    assert {"cpu", "memory", "disk", "network"} <= set(groups), groups
    with pytest.raises(detcore.StateError, match="closed"):
        ctx.profiler.on()


def test_tensorboard_writer_reads_back(opts):
    np = pytest.importorskip("numpy")
    ea = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    with detcore.init(**opts) as ctx:
        tb_path = ctx.train.get_tensorboard_path()
        assert isinstance(tb_path, pathlib.Path) and tb_path == pathlib.Path(opts["run_dir"]) / "tensorboard"
        assert tb_path.is_dir()
        with detcore.TensorboardWriter(tb_path / "mine") as tb:
            tb.add_scalar("train/lr", 0.25, global_step=1)
            tb.add_scalar("train/lr", float("nan"), 2)
            tb.add_scalar("train/lr", 3, 3)  # an int value
            tb.add_histogram("weights", [0.0, 1.0, 1.0, 2.5, -3.0, float("inf")], global_step=2)
            tb.add_histogram("matrix", np.arange(6, dtype=np.float32).reshape(2, 3)[:, ::2], 2)  # strided, float32
            tb.add_histogram("one", 4.0, 2)
            tb.add_histogram("empty", [], 2)
            tb.flush()
            assert len(list((tb_path / "mine").glob("events.out.tfevents.*"))) == 1
            assert "mine" in repr(tb)
    acc = ea.EventAccumulator(str(tb_path / "mine"), size_guidance={ea.SCALARS: 0, ea.HISTOGRAMS: 0})
    acc.Reload()
    lr = [(e.step, e.value) for e in acc.Scalars("train/lr")]
    assert lr[0] == (1, 0.25) and lr[1][0] == 2 and math.isnan(lr[1][1]) and lr[2] == (3, 3.0)
    assert sorted(acc.Tags()["histograms"]) == ["empty", "matrix", "one", "weights"]
    w = acc.Histograms("weights")[0].histogram_value
    assert (w.min, w.max, w.num, w.sum) == (-3.0, 2.5, 5, 1.5)  # inf is not counted
    m = acc.Histograms("matrix")[0].histogram_value
    assert (m.min, m.max, m.num, m.sum) == (0.0, 5.0, 4, 0 + 2 + 3 + 5)
    assert acc.Histograms("one")[0].histogram_value.num == 1
    assert acc.Histograms("empty")[0].histogram_value.num == 0


def test_tensorboard_writer_errors_and_lifecycle(opts, tmp_path):
    tb = detcore.TensorboardWriter(tmp_path / "w")
    with pytest.raises(detcore.InvalidArgumentError, match="tag contains a NUL byte"):
        tb.add_scalar("a\0b", 1.0)
    with pytest.raises(TypeError, match="not a string"):
        tb.add_histogram("h", "123")
    with pytest.raises(ValueError):
        tb.add_histogram("h", [1.0, "x"])
    tb.add_scalar("kept", 1.0, 1)
    tb.close()
    tb.close()  # closing twice does nothing
    with pytest.raises(detcore.StateError, match="writer is not open") as e:
        tb.add_scalar("x", 1.0)
    assert isinstance(e.value, RuntimeError)
    with pytest.raises(detcore.StateError, match="writer is not open"):
        tb.flush()
    assert "kept" in b"".join(p.read_bytes() for p in (tmp_path / "w").iterdir()).decode("latin-1")
    with pytest.raises(detcore.InvalidArgumentError, match="dir is empty"):
        detcore.TensorboardWriter("")
    with pytest.raises(detcore.InvalidArgumentError, match="log_dir contains a NUL byte"):
        detcore.TensorboardWriter("a\0b")
    # A writer the program drops, or leaves open at exit, is closed: its events reach the file.
    r = run_python(
        f"""
        import gc, detcore
        w = detcore.TensorboardWriter({str(tmp_path / "dropped")!r})
        w.add_scalar("dropped", 1.0, 1)
        del w
        gc.collect()
        keep = detcore.TensorboardWriter({str(tmp_path / "at_exit")!r})
        keep.add_scalar("at_exit", 1.0, 1)
        """
    )
    assert r.returncode == 0, r.stderr
    for name in ("dropped", "at_exit"):
        data = b"".join(p.read_bytes() for p in (tmp_path / name).iterdir())
        assert name.encode() in data, name


def test_manual_tensorboard_upload(opts):
    storage = pathlib.Path(opts["checkpoint_storage"])
    synced = storage / "local" / "tensorboard" / "experiment" / "runs" / "trial" / "py"
    with detcore.init(**opts) as ctx:  # AUTO mode: uploads happen by themselves
        with pytest.raises(detcore.StateError, match="can only be used in MANUAL mode") as e:
            ctx.train.upload_tensorboard_files()
        assert isinstance(e.value, RuntimeError)  # Python raises RuntimeError too
        with pytest.raises(detcore.InvalidArgumentError, match="timeout_seconds"):
            ctx.train.flush_tensorboard(timeout=-1)
    with detcore.init(**opts, tensorboard_mode=detcore.TensorboardMode.MANUAL) as ctx:
        tb = ctx.train.get_tensorboard_path()
        (tb / "sub").mkdir()
        (tb / "sub" / "a.txt").write_text("a")
        (tb / "b.txt").write_text("b")
        (tb / "skip.log").write_text("s")

        class ManglerFailed(Exception):
            pass

        def failing(p, rank):
            raise ManglerFailed(str(p))

        with pytest.raises(ManglerFailed):
            ctx.train.upload_tensorboard_files(mangler=failing)
        with pytest.raises(TypeError, match="returned None"):
            ctx.train.upload_tensorboard_files(mangler=lambda p, rank: None)
        with pytest.raises(detcore.InvalidArgumentError, match="DET_TB_NAME_MAX"):
            ctx.train.upload_tensorboard_files(mangler=lambda p, rank: "x" * 5000)
        with pytest.raises(detcore.InvalidArgumentError, match="mangler"):
            ctx.train.upload_tensorboard_files(mangler=lambda p, rank: pathlib.Path("..") / p)
        ctx.train.flush_tensorboard()
        assert not synced.exists()  # nothing was queued by the failed calls

        seen = []

        def selector(p):
            seen.append(p)
            return p.suffix != ".log"

        ctx.train.upload_tensorboard_files(selector=selector, mangler=lambda p, rank: pathlib.Path(f"rank{rank}") / p)
        ctx.train.flush_tensorboard()
        assert sorted(seen) == sorted([tb / "b.txt", tb / "skip.log", tb / "sub" / "a.txt"])  # absolute, as Python
        assert (synced / "rank0" / "sub" / "a.txt").read_text() == "a"
        assert (synced / "rank0" / "b.txt").read_text() == "b"
        assert not (synced / "rank0" / "skip.log").exists()
        # determined's default arguments, spelled out; a str from the mangler works too.
        ctx.train.upload_tensorboard_files(selector=lambda p: True, mangler=lambda p, rank: p)
        ctx.train.upload_tensorboard_files(selector=lambda p: p.name == "b.txt", mangler=lambda p, rank: f"str/{p}")
        ctx.train.flush_tensorboard(timeout=30)
        assert (synced / "skip.log").read_text() == "s" and (synced / "str" / "b.txt").read_text() == "b"

        def boom(p):
            raise KeyError("selector failed")

        with pytest.raises(KeyError, match="selector failed"):
            ctx.train.upload_tensorboard_files(selector=boom)


def test_store_path_upload_modes(opts):
    storage = pathlib.Path(opts["checkpoint_storage"])
    with detcore.init(**opts) as ctx:
        with ctx.checkpoint.store_path({"steps_completed": 1}, upload_mode=detcore.UploadMode.SYNC) as (path, sid1):
            (path / "m").write_text("1")
        assert (storage / sid1 / "m").read_text() == "1"
        with ctx.checkpoint.store_path({"steps_completed": 2}, upload_mode="ASYNC") as (path, sid2):
            (path / "m").write_text("2")
        ctx.checkpoint.wait()
        assert (storage / sid2 / "m").read_text() == "2"
        assert ctx.checkpoint.get_metadata(sid2)["steps_completed"] == 2
        with pytest.raises(ValueError, match="upload_mode: 'FAST' is not a UploadMode"):
            with ctx.checkpoint.store_path({"steps_completed": 3}, upload_mode="FAST"):
                pytest.fail("not reached: the mode is checked before the scope opens")
    with detcore.init(**opts, async_checkpoints=True) as ctx:
        with ctx.checkpoint.store_path({"steps_completed": 4}) as (path, sid4):  # DEFAULT: async
            (path / "m").write_text("4")
        with ctx.checkpoint.store_path({"steps_completed": 5}, upload_mode=detcore.UploadMode.SYNC) as (path, sid5):
            (path / "m").write_text("5")
        # A synchronous end waits for the pending asynchronous one (reports stay in order).
        assert (storage / sid4 / "m").read_text() == "4" and (storage / sid5 / "m").read_text() == "5"
    assert [x["storage_id"] for x in metrics_lines(opts["run_dir"]) if x["type"] == "checkpoint"][-2:] == [sid4, sid5]


def test_launcher_determined_off_cluster(monkeypatch, tmp_path):
    monkeypatch.setenv("DET_CLUSTER_INFO_DIR", str(tmp_path / "no-info"))
    with pytest.raises(detcore.DetcoreError, match="no-info"):
        detcore.DistributedContext.from_env(detcore.Launcher.DETERMINED)


def test_new_functions_missing_from_an_older_library(opts, monkeypatch):
    # A library built before these functions existed: everything else works; each missing one is
    # an UnsupportedError naming it (not a None, not a crash), raised before anything is written.
    older = _lib.Library(_lib.lib().path)
    new = [n for n in _lib.SIGNATURES if n.startswith(("det_info_trial", "det_info_c", "det_tb_", "det_profiler_"))]
    new += ["det_ckpt_store_path_end_mode", "det_core_alert", "det_train_get_tensorboard_path"]
    for n in new:
        older.functions.pop(n)
    monkeypatch.setattr(_lib, "_lib", older)
    with detcore.init(**opts) as ctx:
        ctx.train.report_training_metrics(1, {"loss": 1.0})
        for call, name in [
            (lambda: ctx.info.cluster_id, "det_info_cluster_id"),
            (lambda: ctx.info.trial.trial_id, "det_info_trial_id"),
            (lambda: ctx.info.container_addrs, "det_info_container_count"),
            (lambda: ctx.alert("t"), "det_core_alert"),
            (lambda: ctx.profiler.on(), "det_profiler_on"),
            (lambda: detcore.TensorboardWriter(opts["run_dir"]), "det_tb_writer_open"),
            (lambda: ctx.train.get_tensorboard_path(), "det_train_get_tensorboard_path"),
        ]:
            with pytest.raises(detcore.UnsupportedError, match=f"does not export {name}"):
                call()
        with pytest.raises(detcore.UnsupportedError, match="det_ckpt_store_path_end_mode"):
            with ctx.checkpoint.store_path({"steps_completed": 1}, upload_mode=detcore.UploadMode.ASYNC):
                pytest.fail("not reached")
        with ctx.checkpoint.store_path({"steps_completed": 2}) as (path, sid):
            (path / "m").write_text("2")
    assert (pathlib.Path(opts["checkpoint_storage"]) / sid / "m").is_file()
    ckpts = [p.name for p in pathlib.Path(opts["checkpoint_storage"]).iterdir() if len(p.name) == 36]
    assert ckpts == [sid]  # the refused ASYNC scope never began
