"""TensorBoard and the profiler on-cluster, against the fake master (issue 7): the profiler's
groups arrive as one metrics POST per group, as Python sends them (`stepsCompleted: null`, a
`reportTime`, the body keyed by the agent id) — including the final report that Python loses at
close — and AUTO mode syncs event files to the experiment storage's TensorBoard layout."""
import ctypes
import os
import pathlib
import shutil
import tempfile
import time

import pytest

from oncluster_util import FakeMaster, Lib, setup_trial, in_process_task_env

AGENT = "agent-1"
GROUP_KEYS = {
    "cpu": {"cpu_util_simple"},
    "memory": {"memory_free"},
    "network": {"net_throughput_sent", "net_throughput_recv"},
}


@pytest.fixture()
def master(tmp_path, monkeypatch):
    in_process_task_env(monkeypatch)
    m = FakeMaster().start()
    info, host, container = setup_trial(m, tmp_path)
    monkeypatch.setenv("DETCORE_SHARED_FS_CONTAINER_PATH", str(container))
    m.info_dir, m.host = info, host
    yield m
    m.stop()


@pytest.fixture()
def lib(detcore_lib):
    return Lib(detcore_lib)


def profiler_posts(m):
    return [r["json"] for r in m.requests() if r["path"].endswith("/metrics") and r["method"] == "POST"
            and r["json"]["group"] in ("cpu", "memory", "disk", "network", "gpu")]


def test_profiler_posts_one_report_per_group(lib, master):
    ctx = lib.init(master.info_dir)
    lib.call("det_profiler_on", ctx, ctypes.c_double(0.1), ctypes.c_int32(3))
    time.sleep(1.2)
    lib.call("det_core_close", ctx)
    posts = profiler_posts(master)
    groups = {p["group"] for p in posts}
    assert {"cpu", "memory", "disk", "network"} <= groups, groups
    assert "gpu" not in groups  # no NVIDIA GPU here: skipped, not faked
    for p in posts:
        tm = p["metrics"]
        assert tm["stepsCompleted"] is None
        assert isinstance(tm["reportTime"], str) and tm["reportTime"].endswith("+00:00")
        assert tm["trialId"] == master.trial_id and tm["trialRunId"] == master.trial_run_id
        assert tm["metrics"]["batchMetrics"] is None
        avg = tm["metrics"]["avgMetrics"]
        assert list(avg) == [AGENT], avg
        keys = GROUP_KEYS.get(p["group"])
        if keys:
            assert keys <= set(avg[AGENT]), (p["group"], avg)
        if p["group"] == "disk":
            assert {"disk_iops", "disk_throughput_read", "disk_throughput_write"} <= set(avg[AGENT])
            assert avg[AGENT]["/"]["disk_util"] >= 0
    # Several periods of 3 samples at 0.1 s in 1.2 s: more than one report per group.
    assert sum(1 for p in posts if p["group"] == "cpu") >= 2


def test_final_profiler_report_is_delivered_at_close(lib, master):
    """Python stops its metrics shipper before the profiler, so the last period is lost."""
    ctx = lib.init(master.info_dir)
    lib.call("det_profiler_on", ctx, ctypes.c_double(0.1), ctypes.c_int32(1000))
    time.sleep(0.5)
    assert profiler_posts(master) == []  # the period is not over
    lib.call("det_core_close", ctx)
    groups = [p["group"] for p in profiler_posts(master)]
    assert sorted(groups) == ["cpu", "disk", "memory", "network"], groups


def test_auto_tensorboard_syncs_to_the_experiment_storage(lib, master):
    local = pathlib.Path(f"{tempfile.gettempdir()}/tensorboard-{master.allocation_id}-0")
    shutil.rmtree(local, ignore_errors=True)
    try:
        ctx = lib.init(master.info_dir, tensorboard_mode=0)
        out = ctypes.c_void_p()
        lib.call("det_train_get_tensorboard_path", ctx, ctypes.byref(out))
        path = ctypes.cast(out, ctypes.c_char_p).value.decode()
        lib.lib.det_string_free(out)
        assert path == str(local)
        lib.call("det_train_report_training_metrics", ctx, ctypes.c_int64(5), b'{"loss": 0.5}', None)
        lib.call("det_train_report_validation_metrics", ctx, ctypes.c_int64(5), b'{"loss": 0.25}')
        lib.call("det_core_close", ctx)
        synced = master.host / "fake-cluster" / "tensorboard" / "experiment" / str(master.experiment_id) / \
            "trial" / str(master.trial_id)
        files = sorted(p.name for p in synced.iterdir())
        assert files and all(f.startswith("events.out.tfevents.") for f in files), files
        assert sorted(p.name for p in local.iterdir()) == files
        for f in files:
            assert (synced / f).read_bytes() == (local / f).read_bytes()
    finally:
        shutil.rmtree(local, ignore_errors=True)
