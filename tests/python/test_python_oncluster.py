"""The Python package on-cluster, against the fake master (tests/fake_master) and the info files a
Determined container has: `core_context.info` compared attribute by attribute with determined's
own ClusterInfo/TrialInfo read from the same files; alert() reaching the master's webhook
endpoint; a task that is not a trial; the profiler's groups reaching the master; the TensorBoard
folder and manual uploads in the experiment's storage layout; DistributedContext.from_env with
Determined's rendezvous files."""
import json
import os
import pathlib
import shutil
import tempfile
import time
import uuid

import pytest

import detcore

from oncluster_util import FakeMaster, setup_trial, in_process_task_env


@pytest.fixture()
def env(monkeypatch):
    in_process_task_env(monkeypatch)
    return monkeypatch


@pytest.fixture()
def master(tmp_path, env):
    # A unique allocation id: the on-cluster TensorBoard folder is $TMPDIR/tensorboard-<aid>-0.
    aid = f"7.py{uuid.uuid4().hex[:8]}.1"
    m = FakeMaster(allocation_id=aid).start()
    info, host, container = setup_trial(m, tmp_path)
    env.setenv("DETCORE_SHARED_FS_CONTAINER_PATH", str(container))
    m.info_dir, m.host, m.container = info, host, container
    yield m
    m.stop()
    shutil.rmtree(f"{tempfile.gettempdir()}/tensorboard-{aid}-0", ignore_errors=True)


def init(master, **kw):
    return detcore.init(cluster_info_dir=master.info_dir, disable_signal_handlers=True, close_timeout=30, **kw)


def rewrite(info_dir: pathlib.Path, name: str, **changes) -> None:
    p = info_dir / name
    d = json.loads(p.read_text())
    d.update(changes)
    p.write_text(json.dumps(d))


def reference_info(info_dir: pathlib.Path):
    """determined's own ClusterInfo, read from the same files."""
    _info = pytest.importorskip("determined._info")

    def load(name):
        p = info_dir / name
        return json.loads(p.read_text()) if p.exists() else None

    return _info.ClusterInfo(
        trial_info=_info.TrialInfo(**load("trial.json")),
        rendezvous_info=_info.RendezvousInfo(**load("rendezvous.json")),
        resources_info=_info.ResourcesInfo(**load("resources.json")),
        **load("cluster.json"),
    )


def test_info_matches_determineds_cluster_info(master):
    # Two GPUs, a seed above 2**31, a latest checkpoint. (Several containers would need a
    # distributed job; DistributedContext.from_env below reads such a rendezvous file.)
    master.write_info_dir(master.info_dir, storage_host_path=str(master.host), latest_checkpoint="ckpt-9",
                          steps_completed=40, hparams={"lr": 0.5, "opt": {"name": "adam"}}, slot_ids=(3,))
    rewrite(master.info_dir, "rendezvous.json", container_addrs=["10.0.0.1"], container_rank=0,
            container_slot_counts=[1])
    rewrite(master.info_dir, "resources.json", gpu_uuids=["GPU-aaaa", "GPU-bbbb"])
    rewrite(master.info_dir, "trial.json", trial_seed=4_000_000_000)
    ref = reference_info(master.info_dir)
    with init(master) as ctx:
        info = ctx.info
        assert info.on_cluster is True
        for name in ("master_url", "cluster_id", "agent_id", "slot_ids", "task_id", "allocation_id", "task_type",
                     "latest_checkpoint", "user_data", "container_addrs", "container_slot_counts", "container_rank",
                     "gpu_uuids"):
            assert getattr(info, name) == getattr(ref, name), name
        for name in ("trial_id", "experiment_id", "trial_seed", "hparams", "_config", "_steps_completed",
                     "_trial_run_id"):
            assert getattr(info.trial, name) == getattr(ref.trial, name), name
        assert info.trial.trial_seed == 4_000_000_000  # a uint32, not a negative int32
        assert info.trial.config == ref.trial._config and info.trial.trial_run_id == 2
        assert info.container_addrs == ["10.0.0.1"] and info.gpu_uuids == ["GPU-aaaa", "GPU-bbbb"]
        assert info.slot_ids == [3] and info.container_rank == 0
        assert info.hparams == {"lr": 0.5, "opt": {"name": "adam"}} and info.steps_completed == 40
        assert info.run_name is None and info.run_dir is None
        for name in ("_debug", "_inter_node_network_interface"):
            assert getattr(info.trial, name) == getattr(ref.trial, name), name
        assert info.trial.debug is False and info.trial.inter_node_network_interface is None
        for name in ("master_cert_name", "master_cert_file", "session_token"):
            assert getattr(info, name) == getattr(ref, name), name


CLUSTER_INFO_ATTRS = ("master_url", "cluster_id", "agent_id", "slot_ids", "task_id", "allocation_id",
                      "session_token", "task_type", "master_cert_name", "master_cert_file", "latest_checkpoint",
                      "user_data", "container_addrs", "container_slot_counts", "container_rank", "gpu_uuids")
TRIAL_INFO_ATTRS = ("trial_id", "experiment_id", "trial_seed", "hparams", "_config", "_steps_completed",
                    "_trial_run_id", "_debug", "_inter_node_network_interface")


def test_get_cluster_info_matches_determineds(master, env):
    """detcore.get_cluster_info() against determined's ClusterInfo read from the same files,
    attribute by attribute: a trial with a debug flag, an inter-node interface, a certificate name
    and file, several containers; then a task that is not a trial."""
    master.write_info_dir(master.info_dir, storage_host_path=str(master.host), latest_checkpoint="ckpt-3",
                          slot_ids=(0, 1))
    rewrite(master.info_dir, "cluster.json", master_cert_name="master.internal", master_cert_file="/certs/m.pem",
            master_url=master.url.replace("http://", "") + "/")
    rewrite(master.info_dir, "trial.json", debug=True, inter_node_network_interface="ib0")
    rewrite(master.info_dir, "rendezvous.json", container_addrs=["10.0.0.1", "10.0.0.2"], container_rank=1,
            container_slot_counts=[2, 2])
    ref = reference_info(master.info_dir)
    got = detcore.get_cluster_info(master.info_dir)
    assert isinstance(got, detcore.ClusterInfo)
    for name in CLUSTER_INFO_ATTRS:
        assert getattr(got, name) == getattr(ref, name), name
    for name in TRIAL_INFO_ATTRS:
        assert getattr(got.trial, name) == getattr(ref.trial, name), name
    assert got.trial._debug is True and got.trial.inter_node_network_interface == "ib0"
    assert got.master_url == master.url  # canonical, as Python makes it
    # From $DET_CLUSTER_INFO_DIR, as init() finds the files.
    env.setenv("DET_CLUSTER_INFO_DIR", str(master.info_dir))
    assert detcore.get_cluster_info().allocation_id == ref.allocation_id
    # The context's info has the same, and the trial's flags (one container with one slot: a
    # context of several would need a distributed job).
    rewrite(master.info_dir, "cluster.json", slot_ids=[0])
    rewrite(master.info_dir, "rendezvous.json", container_addrs=["10.0.0.1"], container_rank=0,
            container_slot_counts=[1])
    with init(master) as ctx:
        assert ctx.info.trial._debug is True and ctx.info.trial._inter_node_network_interface == "ib0"
        assert ctx.info.master_cert_name == "master.internal" and ctx.info.session_token == ref.session_token

    master.write_info_dir(master.info_dir, storage_host_path=str(master.host), task_type="NOTEBOOK",
                          latest_checkpoint="ckpt-3")
    ref = reference_info(master.info_dir)
    got = detcore.get_cluster_info(master.info_dir)
    for name in CLUSTER_INFO_ATTRS:
        assert getattr(got, name) == getattr(ref, name), name
    assert got.latest_checkpoint is None
    with pytest.raises(RuntimeError, match=r'you cannot use the \.trial property when \.task_type \("NOTEBOOK"\)'):
        got.trial


def test_get_cluster_info_off_cluster_and_broken_files(tmp_path, env):
    assert detcore.get_cluster_info(tmp_path) is None
    env.setenv("DET_CLUSTER_INFO_DIR", str(tmp_path / "absent"))
    assert detcore.get_cluster_info() is None
    (tmp_path / "cluster.json").write_text('{"master_url": "http://m:8080"')
    with pytest.raises(detcore.InvalidArgumentError, match="cluster.json: broken JSON"):
        detcore.get_cluster_info(tmp_path)
    (tmp_path / "cluster.json").write_text(json.dumps({"master_url": "http://m:8080"}))
    with pytest.raises(ValueError, match='cluster.json: required key "cluster_id" is missing'):
        detcore.get_cluster_info(tmp_path)


def test_experimental_reports_reach_the_master(master):
    """core_context.experimental: report_task_using_checkpoint / _model_version link the
    checkpoint to the trial (the bodies determined sends are checked by the conformance test);
    a refusal is a MasterError; off-cluster nothing is sent and a line says so."""
    from types import SimpleNamespace

    with init(master) as ctx:
        with ctx.checkpoint.store_path({"steps_completed": 1}) as (path, sid):
            (path / "w").write_text("1")
        ctx.experimental.report_task_using_checkpoint(SimpleNamespace(uuid=sid))
        ctx.experimental.report_task_using_checkpoint(sid)
        ctx.experimental.report_task_using_model_version(
            SimpleNamespace(checkpoint=SimpleNamespace(uuid=sid), model_id=5, model_version=3))
        with pytest.raises(detcore.NotFoundError, match=r"report_task_using_checkpoint\(nope\).*404 Not Found: checkpoint nope"):
            ctx.experimental.report_task_using_checkpoint("nope")
        with pytest.raises(ValueError, match="no checkpoint"):
            ctx.experimental.report_task_using_model_version(
                SimpleNamespace(checkpoint=None, model_id=5, model_version=3))
        with pytest.raises(TypeError, match="uuid"):
            ctx.experimental.report_task_using_checkpoint(42)
        with pytest.raises(ValueError, match="checkpoint uuid is empty"):
            ctx.experimental.report_task_using_checkpoint("")
    base = {"checkpointUuid": sid, "trialId": 7, "trialSourceInfoType": "TRIAL_SOURCE_INFO_TYPE_INFERENCE"}
    assert master.trial_source_infos == [base, base, {**base, "modelId": 5, "modelVersion": 3}]


def test_experimental_off_cluster_is_logged(tmp_path, capfd):
    detcore.set_log_level("info")  # the default, which other tests of this process may have raised
    with detcore.init(checkpoint_storage=tmp_path / "c", run_dir=tmp_path / "r", cluster_info_dir="/nonexistent",
                      disable_signal_handlers=True) as ctx:
        ctx.experimental.report_task_using_checkpoint("0b0e8b1c-6c0e-4d8f-a3b8-0c5b8e0b0f00")
    err = capfd.readouterr().err
    assert "report_task_using_checkpoint(0b0e8b1c-6c0e-4d8f-a3b8-0c5b8e0b0f00): not recorded: off-cluster" in err


def test_alert_reaches_the_masters_webhooks(master):
    with init(master) as ctx:
        ctx.alert(title="end of main", level="debug")
        ctx.alert("t", "something happened", "warn")
        ctx.alert()
        with pytest.raises(ValueError, match="level"):
            ctx.alert("t", level="warning")
    assert master.alerts == [
        {"data": {"description": "", "level": "LOG_LEVEL_DEBUG", "title": "end of main"}, "experimentId": 3,
         "trialId": 7},
        {"data": {"description": "something happened", "level": "LOG_LEVEL_WARNING", "title": "t"},
         "experimentId": 3, "trialId": 7},
        {"data": {"description": "", "level": "LOG_LEVEL_INFO", "title": ""}, "experimentId": 3, "trialId": 7},
    ]


def test_alert_refused_by_the_master(master):
    master.script(fail={"method": "POST", "path": "/api/v1/webhooks/custom", "status": 400, "count": -1})
    with init(master) as ctx:
        with pytest.raises(detcore.MasterError, match="det_core_alert") as e:
            ctx.alert("t")
        assert isinstance(e.value, RuntimeError)


def test_task_that_is_not_a_trial(master, tmp_path, env):
    master.write_info_dir(master.info_dir, storage_host_path=str(master.host), task_type="COMMAND")
    env.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    ref = reference_info(master.info_dir)
    with init(master, run_dir=tmp_path / "run") as ctx:
        info = ctx.info
        assert info.task_type == "COMMAND"
        for name in ("user_data", "container_addrs", "container_slot_counts", "container_rank", "latest_checkpoint",
                     "slot_ids", "cluster_id"):
            assert getattr(info, name) == getattr(ref, name), name
        with pytest.raises(RuntimeError):
            ref.trial  # Python raises here; detcore's trial values are None
        assert info.trial.trial_id is None and info.trial.experiment_id is None and info.trial.config is None
        with pytest.raises(detcore.UnsupportedError, match="alert\\(\\) only works for trial type of task."):
            ctx.alert("t")
    assert master.alerts == []


def test_profiler_reports_reach_the_master(master):
    with init(master) as ctx:
        ctx.profiler.on(sampling_interval=0.1, samples_per_report=2)
        time.sleep(0.6)
        ctx.profiler.off()
        ctx.train.flush()
    prof = [m for m in master.metrics if m["metrics"]["stepsCompleted"] is None]
    groups = {m["group"] for m in prof}
    assert {"cpu", "memory", "disk", "network"} <= groups, groups
    for m in prof:  # Python's shape: {<agent_id>: aggregate}
        assert list(m["metrics"]["metrics"]["avgMetrics"]) == ["agent-1"], m


def test_tensorboard_on_cluster(master):
    synced = master.host / "fake-cluster" / "tensorboard" / "experiment" / "3" / "trial" / "7"
    with init(master, tensorboard_mode=detcore.TensorboardMode.MANUAL) as ctx:
        tb = ctx.train.get_tensorboard_path()
        assert tb == pathlib.Path(f"{tempfile.gettempdir()}/tensorboard-{master.allocation_id}-0") and tb.is_dir()
        with detcore.TensorboardWriter(tb) as w:
            w.add_scalar("custom/lr", 0.5, 3)
        (tb / "trace.json").write_text("{}")
        ctx.train.upload_tensorboard_files(
            selector=lambda p: p.name.startswith("events.out.tfevents.") or p.suffix == ".json",
            mangler=lambda p, rank: pathlib.Path(f"rank{rank}") / p,
        )
        ctx.train.flush_tensorboard()
    uploaded = sorted(p.relative_to(synced).as_posix() for p in synced.rglob("*") if p.is_file())
    assert uploaded[-1] == "rank0/trace.json" and len(uploaded) == 2, uploaded
    assert uploaded[0].startswith("rank0/events.out.tfevents.")
    assert b"custom/lr" in (synced / uploaded[0]).read_bytes()


def test_distributed_from_determineds_rendezvous_files(master, env):
    rewrite(master.info_dir, "rendezvous.json", container_addrs=["10.0.0.1", "10.0.0.2"], container_rank=1,
            container_slot_counts=[2, 2])
    env.setenv("DET_CLUSTER_INFO_DIR", str(master.info_dir))
    env.setenv("LOCAL_RANK", "1")
    env.setenv("LOCAL_WORLD_SIZE", "2")
    d = detcore.DistributedContext.from_env(detcore.Launcher.DETERMINED)
    assert (d.rank, d.size, d.local_rank, d.local_size, d.cross_rank, d.cross_size) == (3, 4, 1, 2, 1, 2)
    assert d.chief_ip == "10.0.0.1"
    env.setenv("LOCAL_WORLD_SIZE", "x")
    with pytest.raises(detcore.InvalidArgumentError, match="LOCAL_WORLD_SIZE"):
        detcore.DistributedContext.from_env(detcore.Launcher.DETERMINED)
