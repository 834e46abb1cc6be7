"""Reliability through the C ABI against a misbehaving fake master.

- 503s, 500s, reset and dropped connections, then a 60-second outage (connections refused), then
  recovery: every metric arrives exactly once and in order, the checkpoint is reported, no report
  call ever waited on the network (the longest one is asserted), and the token is never logged.
  DETCORE_TEST_DOWN_SECONDS shortens the outage for quick local runs (default 60).
- A master that hangs without answering: every call returns an error within the configured
  timeouts and close returns within its deadline, naming the reports it could not deliver.
"""
import json
import os
import subprocess
import threading
import time

from oncluster_util import FakeMaster, TOKEN, base_env, program, setup_trial

DOWN = float(os.environ.get("DETCORE_TEST_DOWN_SECONDS", "60"))


def test_outage_and_recovery(tmp_path):
    m = FakeMaster().start()
    try:
        info, host, container = setup_trial(m, tmp_path)
        interval_ms = 20
        n = int((DOWN + 22) * 1000 / interval_ms)
        env = base_env(
            info, container,
            DET_RETRY_CONFIG='{"total": 8, "backoff_factor": 0.05, "backoff_max": 1, "allowed_methods": false}',
            DETCORE_MASTER_TIMEOUT="5", DETCORE_MASTER_CONNECT_TIMEOUT="2",
            DETCORE_TEST_REPORTS=n, DETCORE_TEST_INTERVAL_MS=interval_ms, DETCORE_TEST_CKPT_AT=100,
            DETCORE_TEST_CLOSE_SECONDS=120)
        # Reports meet 503s, 500s, resets and drops first; the checkpoint report (after 100
        # reports) a 503, a 500 and a reset...
        for status, count in ((503, 4), (500, 4), ("reset", 3), ("drop", 3), (503, 2)):
            m.script(fail={"status": status, "count": count, "method": "POST", "path": "/api/v1/trials/7/metrics"})
        for status in (503, 500, "reset"):
            m.script(fail={"status": status, "count": 1, "method": "POST", "path": "/api/v1/checkpoints"})
        proc = subprocess.Popen([str(program("oncluster_reliability"))], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # ...then the master goes away for DOWN seconds.
        time.sleep(12)
        m.go_down(DOWN)
        out, err = proc.communicate(timeout=DOWN + 200)
        assert proc.returncode == 0, err[-3000:]
        res = json.loads(out.strip().splitlines()[-1])
    finally:
        m.stop()

    assert res["close"] == "DET_OK", err[-3000:]
    steps = [r["metrics"]["stepsCompleted"] for r in m.metrics]
    assert steps == list(range(n)), "metrics lost, duplicated or out of order"
    (ck,) = m.checkpoints.values()
    assert ck["metadata"] == {"steps_completed": 100} and ck["uuid"] == res["checkpoint"]
    outcomes = {}
    for r in m.requests():
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    assert outcomes.get("failed", 0) == 12 and outcomes.get("reset", 0) == 4 and outcomes.get("drop", 0) == 3, outcomes
    # The training loop never waited on the network (the queue holds 16384 reports).
    assert res["max_call_us"] < 50_000, res
    assert TOKEN not in out + err
    # The outage was seen, and reported to the caller as it lasted past the retry budget.
    assert "reports are kept in memory and retried" in err
    print(res)
    print("\n".join(l for l in err.splitlines() if "report_training_metrics" not in l)[-4000:])


def test_hung_master(tmp_path):
    m = FakeMaster().start()
    try:
        info, host, container = setup_trial(m, tmp_path)
        env = base_env(info, container, DETCORE_MASTER_TIMEOUT="2",
                       DET_RETRY_CONFIG='{"total": 1, "backoff_factor": 0.1}')
        proc = subprocess.Popen([str(program("oncluster_hang"))], env=env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        m.script(hang=True)
        t0 = time.monotonic()
        proc.stdin.write("go\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=60)
        total = time.monotonic() - t0
        assert proc.returncode == 0, err
        res = json.loads(out.strip().splitlines()[-1])
    finally:
        m.stop()
    # POST: a lost answer is not replayed under this DET_RETRY_CONFIG (urllib3's default
    # allowed methods), so one 2 s attempt; GET: one retry, two attempts.
    assert res["metadata"][0] == "DET_ERR_TIMEOUT" and res["metadata"][1] < 3.5, res
    assert res["best"][0] == "DET_ERR_TIMEOUT" and res["best"][1] < 6, res
    assert res["checkpoint"][0] == "DET_ERR_TIMEOUT" and res["checkpoint"][1] < 3.5, res
    assert "is stored but the master was not told" in err
    assert res["report"][0] == "DET_OK" and res["report"][1] < 0.05, res
    assert res["close"][0] == "DET_ERR_TIMEOUT" and res["close"][1] < 3 + 2.5, res
    assert "5 report(s) were not delivered" in err, err
    assert total < 25
    print(res)
    print(err)
