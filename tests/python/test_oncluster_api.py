"""On-cluster API behaviour and error paths through the C ABI (ctypes) against the fake master:
info getters, session and config errors, refusals surfacing on the next call, early exit,
the searcher, non-trial tasks, TLS (self-signed certificate, noverify, DET_MASTER_CERT_NAME),
preemption acknowledgement, and close interrupting the long poll."""
import ctypes
import json
import os
import pathlib
import subprocess
import time

import pytest

from oncluster_util import DetError, FakeMaster, Lib, default_experiment_config, setup_trial, in_process_task_env


@pytest.fixture()
def lib(detcore_lib):
    return Lib(detcore_lib)


@pytest.fixture()
def env(monkeypatch):
    in_process_task_env(monkeypatch)
    return monkeypatch


@pytest.fixture()
def master(tmp_path, env):
    m = FakeMaster().start()
    info, host, container = setup_trial(m, tmp_path)
    env.setenv("DETCORE_SHARED_FS_CONTAINER_PATH", str(container))
    m.info_dir, m.host, m.container = info, host, container
    yield m
    m.stop()


def close(lib, ctx):
    lib.call("det_core_close", ctx)


def test_info_getters(lib, master):
    ctx = lib.init(master.info_dir)
    try:
        assert lib.value("det_info_is_on_cluster", ctypes.c_bool, ctx) is True
        assert lib.value("det_info_trial_id", ctypes.c_int64, ctx) == 7
        assert lib.value("det_info_experiment_id", ctypes.c_int64, ctx) == 3
        assert lib.value("det_info_trial_seed", ctypes.c_uint32, ctx) == 1234
        assert lib.value("det_info_trial_run_id", ctypes.c_int64, ctx) == 2
        cfg = json.loads(lib.string("det_info_experiment_config_json", ctx))
        assert cfg["checkpoint_storage"]["type"] == "shared_fs"
        assert json.loads(lib.string("det_info_user_data_json", ctx)) == {"dataset": "fake"}
        assert json.loads(lib.string("det_info_hparams_json", ctx))["opt"] == {"name": "sgd"}
        assert lib.string("det_info_task_type", ctx) == "TRIAL"
        assert lib.string("det_info_task_id", ctx) == "7.abc123"
        assert lib.string("det_info_allocation_id", ctx) == "7.abc123.1"
        assert lib.string("det_info_cluster_id", ctx) == "fake-cluster"
        assert lib.string("det_info_agent_id", ctx) == "agent-1"
        assert lib.string("det_info_master_url", ctx) == master.url
        assert lib.value("det_info_container_count", ctypes.c_size_t, ctx) == 1
        assert lib.string("det_info_container_addr", ctx, ctypes.c_size_t(0)) == "127.0.0.1"
        assert lib.value("det_info_container_slot_count", ctypes.c_int32, ctx, ctypes.c_size_t(0)) == 1
        assert lib.value("det_info_container_rank", ctypes.c_int32, ctx) == 0
        assert lib.value("det_info_slot_id_count", ctypes.c_size_t, ctx) == 1
        assert lib.value("det_info_slot_id", ctypes.c_int32, ctx, ctypes.c_size_t(0)) == 0
        assert lib.value("det_info_gpu_uuid_count", ctypes.c_size_t, ctx) == 1
        assert lib.string("det_info_gpu_uuid", ctx, ctypes.c_size_t(0)) == "GPU-fake-0"
        assert lib.string("det_info_latest_checkpoint", ctx) is None
        assert lib.string("det_info_run_name", ctx) is None
        with pytest.raises(DetError) as e:
            lib.string("det_info_container_addr", ctx, ctypes.c_size_t(1))
        assert e.value.name == "DET_ERR_INVALID_ARGUMENT" and "index 1 is out of range (1 containers)" in e.value.message
        with pytest.raises(DetError) as e:
            lib.call("det_info_trial_id", ctx, None)
        assert e.value.name == "DET_ERR_INVALID_ARGUMENT" and "out is NULL" in e.value.message
    finally:
        close(lib, ctx)


def test_resume_info(lib, master, tmp_path):
    master.write_info_dir(master.info_dir, storage_host_path=str(master.host), latest_checkpoint="ckpt-1",
                          steps_completed=120)
    ctx = lib.init(master.info_dir)
    try:
        assert lib.string("det_info_latest_checkpoint", ctx) == "ckpt-1"
        assert lib.value("det_info_steps_completed", ctypes.c_int64, ctx) == 120
    finally:
        close(lib, ctx)


@pytest.mark.parametrize("var,msg", [("DET_SESSION_TOKEN", "DET_SESSION_TOKEN environment variable not set."),
                                     ("DET_USER", "DET_USER environment variable not set.")])
def test_session_environment_is_required(lib, master, env, var, msg):
    env.delenv(var)
    with pytest.raises(DetError) as e:
        lib.init(master.info_dir)
    assert e.value.name == "DET_ERR_INVALID_ARGUMENT" and msg in e.value.message
    assert master.requests() == []


@pytest.mark.parametrize("var,value,msg", [
    ("DET_RETRY_CONFIG", '{"totl": 1}', 'DET_RETRY_CONFIG: unknown urllib3 Retry argument "totl"'),
    ("DET_RETRY_CONFIG", "{", "DET_RETRY_CONFIG"),
    ("DETCORE_MASTER_TIMEOUT", "soon", 'DETCORE_MASTER_TIMEOUT: "soon" is not a positive number'),
    ("DETCORE_MASTER_CONNECT_TIMEOUT", "-1", "DETCORE_MASTER_CONNECT_TIMEOUT"),
])
def test_bad_settings_are_named(lib, master, env, var, value, msg):
    env.setenv(var, value)
    with pytest.raises(DetError) as e:
        lib.init(master.info_dir)
    assert e.value.name == "DET_ERR_INVALID_ARGUMENT" and msg in e.value.message


def test_wrong_token_fails_init_without_logging_it(lib, master, env, capfd):
    env.setenv("DET_SESSION_TOKEN", "some-other-token-value")
    with pytest.raises(DetError) as e:
        lib.init(master.info_dir)
    assert e.value.name == "DET_ERR_MASTER" and "401" in e.value.message
    assert "some-other-token-value" not in e.value.message
    assert "some-other-token-value" not in capfd.readouterr().err


def test_stale_run_id_is_refused_and_surfaces(lib, master):
    master.trial_run_id = 3  # the master moved on: this allocation's run id (2) is stale
    ctx = lib.init(master.info_dir)
    try:
        lib.call("det_train_report_metrics", ctx, b"training", ctypes.c_int64(1), b'{"loss": 1}')
        with pytest.raises(DetError) as e:
            lib.call("det_train_flush", ctx, ctypes.c_double(10))
        assert "invalid run id, 2 (reported) != 3 (expected)" in e.value.message
        lib.call("det_train_report_metrics", ctx, b"training", ctypes.c_int64(2), b'{"loss": 1}')
        time.sleep(0.3)
        with pytest.raises(DetError) as e:
            lib.call("det_train_report_metrics", ctx, b"training", ctypes.c_int64(3), b'{"loss": 1}')
        assert e.value.name == "DET_ERR_MASTER"
        assert "an earlier report was not delivered" in e.value.message and "this report was queued" in e.value.message
    finally:
        with pytest.raises(DetError) as e:
            close(lib, ctx)
    assert "3 report(s) were not delivered (3 refused)" in e.value.message
    assert [r["outcome"] for r in master.requests() if r["path"].endswith("/metrics")] == ["refused"] * 3


def test_caller_side_validation_sends_nothing(lib, master):
    ctx = lib.init(master.info_dir)
    try:
        with pytest.raises(DetError) as e:
            lib.call("det_train_report_metrics", ctx, b"a.b", ctypes.c_int64(1), b'{"x": 1}')
        assert e.value.name == "DET_ERR_INVALID_ARGUMENT" and "'.'" in e.value.message
        store = ctypes.c_void_p()
        with pytest.raises(DetError) as e:
            lib.call("det_ckpt_store_path_begin", ctx, b'{"loss": 1}', False, ctypes.byref(store))
        assert "steps_completed" in e.value.message
        with pytest.raises(DetError) as e:
            lib.call("det_train_report_progress", ctx, ctypes.c_double(1.5))
        assert e.value.name == "DET_ERR_INVALID_ARGUMENT"
    finally:
        close(lib, ctx)
    paths = [r["path"] for r in master.requests()]
    assert not any(p.endswith(("/metrics", "/progress")) or p == "/api/v1/checkpoints" for p in paths)


def test_early_exit(lib, master):
    ctx = lib.init(master.info_dir)
    try:
        lib.call("det_train_report_metrics", ctx, b"training", ctypes.c_int64(1), b'{"loss": 1}')
        lib.call("det_train_report_early_exit", ctx, 1)
        # The queued report reached the master before the exit reason.
        paths = [r["path"] for r in master.requests() if r["method"] == "POST"]
        assert paths[-2:] == ["/api/v1/trials/7/metrics", "/api/v1/trials/7/early_exit"]
        assert master.early_exits == ["EXITED_REASON_INVALID_HP"]
        with pytest.raises(DetError) as e:
            lib.call("det_train_report_early_exit", ctx, 1)
        assert e.value.name == "DET_ERR_MASTER" and "already been reported" in e.value.message
        with pytest.raises(DetError) as e:
            lib.call("det_train_report_early_exit", ctx, 7)
        assert e.value.name == "DET_ERR_INVALID_ARGUMENT"
    finally:
        close(lib, ctx)


def test_best_validation(lib, master):
    ctx = lib.init(master.info_dir)
    try:
        found, val = ctypes.c_bool(True), ctypes.c_double(1)
        lib.call("det_train_get_experiment_best_validation", ctx, ctypes.byref(found), ctypes.byref(val))
        assert found.value is False
        lib.call("det_train_report_validation_metrics", ctx, ctypes.c_int64(5), b'{"val_loss": 0.125}')
        lib.call("det_train_flush", ctx, ctypes.c_double(10))
        lib.call("det_train_get_experiment_best_validation", ctx, ctypes.byref(found), ctypes.byref(val))
        assert found.value is True and val.value == 0.125
    finally:
        close(lib, ctx)


def test_multi_slot_needs_distributed(lib, master):
    master.write_info_dir(master.info_dir, storage_host_path=str(master.host), slot_ids=(0, 1))
    with pytest.raises(DetError) as e:
        lib.init(master.info_dir)
    assert e.value.name == "DET_ERR_INVALID_ARGUMENT"
    assert "you must provide a valid DistributedContext for a multi-slot task" in e.value.message


def test_missing_searcher(lib, master):
    cfg = default_experiment_config(str(master.host))
    del cfg["searcher"]["max_length"]
    master.write_info_dir(master.info_dir, storage_host_path=str(master.host), config=cfg)
    ctx = lib.init(master.info_dir)
    try:
        op = ctypes.c_void_p()
        with pytest.raises(DetError) as e:
            lib.call("det_searcher_next_op", ctx, 0, ctypes.byref(op))
        assert e.value.name == "DET_ERR_UNSUPPORTED"
        assert "does not have the searcher.max_length set" in e.value.message
        unit = ctypes.c_int32()
        with pytest.raises(DetError) as e:
            lib.call("det_searcher_get_configured_units", ctx, ctypes.byref(unit))
        assert "searcher.max_length" in e.value.message
    finally:
        close(lib, ctx)


def test_storage_path_and_user_storage(lib, master, tmp_path):
    cfg = default_experiment_config(str(master.host))
    cfg["checkpoint_storage"]["storage_path"] = "sub/dir"
    master.write_info_dir(master.info_dir, storage_host_path=str(master.host), config=cfg)
    ctx = lib.init(master.info_dir)
    try:
        store = ctypes.c_void_p()
        lib.call("det_ckpt_store_path_begin", ctx, b'{"steps_completed": 3}', False, ctypes.byref(store))
        sid = ctypes.create_string_buffer(37)
        lib.call("det_ckpt_store_path_end", store, sid)
        sid = sid.value.decode()
        assert (master.host / "sub" / "dir" / sid / "metadata.json").is_file()
        assert master.checkpoints[sid]["metadata"] == {"steps_completed": 3}
    finally:
        close(lib, ctx)
    user = tmp_path / "user-ckpts"
    ctx = lib.init(master.info_dir, checkpoint_storage=str(user))
    close(lib, ctx)
    starts = [r["json"] for r in master.requests() if r["path"] == "/api/v1/runs/start"]
    assert starts[0]["checkpointStorage"]["storage_path"] == "sub/dir"
    assert starts[1] == {"runId": 7, "checkpointStorage": {"type": "shared_fs", "host_path": str(user)}}


def test_non_trial_task(lib, master, tmp_path, env):
    master.write_info_dir(master.info_dir, storage_host_path=str(master.host), task_type="COMMAND")
    env.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    ctx = lib.init(master.info_dir, run_dir=str(tmp_path / "run"))
    try:
        assert lib.value("det_info_is_on_cluster", ctypes.c_bool, ctx) is True
        assert lib.string("det_info_task_type", ctx) == "COMMAND"
        with pytest.raises(DetError) as e:
            lib.value("det_info_trial_id", ctypes.c_int64, ctx)
        assert e.value.name == "DET_ERR_UNSUPPORTED" and "COMMAND" in e.value.message
        with pytest.raises(DetError) as e:
            lib.call("det_core_alert", ctx, b"t", None, 0)
        assert e.value.name == "DET_ERR_UNSUPPORTED" and "alert() only works for trial type of task." in e.value.message
    finally:
        close(lib, ctx)
    assert master.requests() == []


def test_manual_ack_and_delivery_before_close(lib, master):
    ctx = lib.init(master.info_dir)
    master.preempt()
    got = ctypes.c_bool(False)
    t0 = time.time()
    while not got.value and time.time() - t0 < 10:
        lib.call("det_should_preempt_ex", ctx, False, ctypes.byref(got))
        time.sleep(0.01)
    assert got.value
    time.sleep(0.2)
    assert master.acks == 0  # auto_ack off: nothing sent
    lib.call("det_preempt_acknowledge", ctx)
    lib.call("det_preempt_acknowledge", ctx)
    close(lib, ctx)
    assert master.acks == 1  # delivered, once, before close returned


def test_ack_is_delivered_before_close_returns(lib, master):
    master.script(latency=0.3)
    ctx = lib.init(master.info_dir)
    master.preempt()
    got = ctypes.c_bool(False)
    t0 = time.time()
    while not got.value and time.time() - t0 < 10:
        lib.call("det_should_preempt", ctx, ctypes.byref(got))
    assert got.value
    close(lib, ctx)
    assert master.acks == 1


def test_close_interrupts_the_long_poll(lib, master):
    ctx = lib.init(master.info_dir)
    time.sleep(0.5)  # the 60 s poll is in flight
    t0 = time.time()
    close(lib, ctx)
    assert time.time() - t0 < 1.5
    polls = [r["query"] for r in master.requests() if r["path"].endswith("/signals/preemption")]
    assert polls[:2] == ["timeout_seconds=0", "timeout_seconds=60"]


def test_initial_preemption_is_known_after_init(lib, master):
    master.preempt()
    ctx = lib.init(master.info_dir)
    got = ctypes.c_bool(False)
    lib.call("det_should_preempt", ctx, ctypes.byref(got))
    assert got.value
    close(lib, ctx)
    assert master.acks == 1


# ---- TLS --------------------------------------------------------------------------------------
def make_cert(d: pathlib.Path, name: str, san: str, ca: bool):
    key, crt = d / f"{name}.key", d / f"{name}.crt"
    ext = ["-addext", f"subjectAltName={san}"]
    if not ca:
        ext += ["-addext", "basicConstraints=critical,CA:FALSE"]
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(crt), "-days", "2", "-subj", f"/CN={name}", *ext],
                   check=True, capture_output=True)
    return crt, key


@pytest.fixture()
def tls_master(tmp_path, env):
    def start(name, san, ca=True):
        crt, key = make_cert(tmp_path, name, san, ca)
        m = FakeMaster(tls=(str(crt), str(key))).start()
        info, host, container = setup_trial(m, tmp_path / name)
        env.setenv("DETCORE_SHARED_FS_CONTAINER_PATH", str(container))
        m.info_dir, m.crt = info, crt
        started.append(m)
        return m

    started = []
    yield start
    for m in started:
        m.stop()


def test_tls_with_the_masters_self_signed_certificate(lib, tls_master, env):
    m = tls_master("selfsigned", "IP:127.0.0.1", ca=True)
    env.setenv("DET_MASTER_CERT_FILE", str(m.crt))
    ctx = lib.init(m.info_dir)
    lib.call("det_train_report_metrics", ctx, b"training", ctypes.c_int64(1), b'{"loss": 1}')
    close(lib, ctx)
    assert len(m.metrics) == 1 and m.url.startswith("https://")
    polls = [r for r in m.requests() if r["path"].endswith("/signals/preemption")]
    assert polls[0]["query"] == "timeout_seconds=0" and polls[0]["outcome"] == "ok"  # the long poll's own TLS connection


def test_tls_refuses_an_unknown_certificate_at_once(lib, tls_master, env):
    m = tls_master("unknown", "IP:127.0.0.1")
    t0 = time.time()
    with pytest.raises(DetError) as e:
        lib.init(m.info_dir)
    assert time.time() - t0 < 5  # not retried
    assert e.value.name == "DET_ERR_MASTER" and "certificate" in e.value.message
    env.setenv("DET_MASTER_CERT_FILE", "NoVerify")
    close(lib, lib.init(m.info_dir))


def test_tls_cert_name(lib, tls_master, env):
    m = tls_master("named", "DNS:master.example", ca=False)
    env.setenv("DET_MASTER_CERT_FILE", str(m.crt))
    with pytest.raises(DetError) as e:
        lib.init(m.info_dir)
    assert "NotValidForName" in e.value.message
    env.setenv("DET_MASTER_CERT_NAME", "master.example")
    close(lib, lib.init(m.info_dir))


def test_tls_missing_cert_file_warns_like_python(lib, tls_master, env, capfd):
    m = tls_master("missing", "IP:127.0.0.1")
    env.setenv("DET_MASTER_CERT_FILE", "/nonexistent/master.crt")
    with pytest.raises(DetError):
        lib.init(m.info_dir)
    assert "DET_MASTER_CERT_FILE=/nonexistent/master.crt path not found; continuing without cert" in capfd.readouterr().err


def test_full_queue_blocks_instead_of_dropping(lib, master, capfd):
    master.script(latency=0.05)
    ctx = lib.init(master.info_dir, report_queue_capacity=4)
    t0 = time.time()
    for i in range(20):
        lib.call("det_train_report_metrics", ctx, b"training", ctypes.c_int64(i), b'{"loss": 1}')
    waited = time.time() - t0
    close(lib, ctx)
    assert waited > 0.5  # the caller waited for room rather than dropping
    assert [m["metrics"]["stepsCompleted"] for m in master.metrics] == list(range(20))
    err = capfd.readouterr().err
    assert err.count("the report queue is full (4 reports waiting to be delivered)") == 1


def test_a_poison_report_does_not_block_the_others(lib, master, env):
    """The master answers one report with 500 forever while answering everything else: after the
    poison check the report is given up (and named by the next call), later reports are
    delivered; during an outage (every request failing) nothing is given up."""
    env.setenv("DETCORE_MASTER_POISON_SECONDS", "1")
    env.setenv("DET_RETRY_CONFIG", '{"total": 3, "backoff_factor": 0.05, "backoff_max": 0.2}')
    master.script(fail={"count": -1, "status": 500, "method": "POST", "path": r"/api/v1/trials/\d+/metrics",
                        "body": "poison"})
    ctx = lib.init(master.info_dir)
    try:
        lib.call("det_train_report_training_metrics", ctx, ctypes.c_int64(1), b'{"loss": 1}', None)
        lib.call("det_train_report_training_metrics", ctx, ctypes.c_int64(2), b'{"poison": 1}', None)
        lib.call("det_train_report_training_metrics", ctx, ctypes.c_int64(3), b'{"loss": 3}', None)
        deadline = time.time() + 30
        while time.time() < deadline:
            steps = [m["metrics"]["stepsCompleted"] for m in master.metrics]
            if 3 in steps:
                break
            time.sleep(0.1)
        assert [m["metrics"]["stepsCompleted"] for m in master.metrics] == [1, 3]
        assert any(r["path"] == "/info" for r in master.requests())
        with pytest.raises(DetError) as e:
            lib.call("det_train_report_training_metrics", ctx, ctypes.c_int64(4), b'{"loss": 4}', None)
        assert e.value.name == "DET_ERR_MASTER" and "giving it up" in e.value.message, e.value.message
    finally:
        with pytest.raises(DetError) as e:
            close(lib, ctx)
        assert "1 report(s) were not delivered" in e.value.message
