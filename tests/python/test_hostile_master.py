"""A hostile (or misconfigured) master, through the C ABI: redirects and oversized answers.

- A 301/302 (a load balancer moving http to https, or an attacker) is never followed: the request
  would carry the task's token to another address, and a POST turned into a GET would look
  delivered. The call fails with DET_ERR_MASTER naming the status and the Location; reports stay
  queued and are delivered once the master answers again; nothing reaches the other address.
- Every answer is capped: a `runs/start` answer over 64 MiB is an error (it used to be cut and
  accepted), and a huge long-poll answer does not take the process's memory with it.
"""
import ctypes
import json
import os
import resource
import subprocess
import sys
import textwrap

import pytest

from oncluster_util import TOKEN, DetError, FakeMaster, Lib, base_env, in_process_task_env, setup_trial

MIB = 1 << 20


@pytest.fixture()
def lib(detcore_lib):
    return Lib(detcore_lib)


@pytest.fixture()
def master(tmp_path, monkeypatch):
    in_process_task_env(monkeypatch)
    # Quick retries: a report kept after its retry budget is retried every backoff_max seconds.
    monkeypatch.setenv("DET_RETRY_CONFIG", '{"total": 1, "backoff_factor": 0.05, "backoff_max": 0.5}')
    m = FakeMaster().start()
    info, host, container = setup_trial(m, tmp_path)
    monkeypatch.setenv("DETCORE_SHARED_FS_CONTAINER_PATH", str(container))
    m.info_dir, m.container = info, container
    yield m
    m.stop()


@pytest.fixture()
def elsewhere():
    """Where the redirects point: it must never see a request."""
    m = FakeMaster().start()
    yield m
    m.stop()


def report(lib, ctx, step):
    names = (ctypes.c_char_p * 1)(b"loss")
    vals = (ctypes.c_double * 1)(1.0 / (step + 1))
    lib.call("det_train_report_scalars", ctx, b"training", step, names, vals, 1)


def flush(lib, ctx, seconds):
    lib.call("det_train_flush", ctx, ctypes.c_double(seconds))


def store(lib, ctx, steps):
    h = ctypes.c_void_p()
    lib.call("det_ckpt_store_path_begin", ctx, json.dumps({"steps_completed": steps}).encode(), False,
             ctypes.byref(h))
    sid = ctypes.create_string_buffer(37)
    lib.call("det_ckpt_store_path_end", h, sid)
    return sid.value.decode()


@pytest.mark.parametrize("code", [301, 302, 307, 308])
def test_redirects_are_refused_and_reports_kept(lib, master, elsewhere, code):
    for path in ("/api/v1/trials/7/metrics", "/api/v1/checkpoints"):
        master.script(fail={"status": code, "count": -1, "method": "POST", "path": path,
                            "headers": {"Location": f"{elsewhere.url}{path}"}})
    ctx = lib.init(master.info_dir)
    try:
        for step in range(3):
            report(lib, ctx, step)
        # The reports are not delivered...
        with pytest.raises(DetError) as e:
            flush(lib, ctx, 1)
        assert e.value.name == "DET_ERR_TIMEOUT", e.value
        # ...and the next report call says why (the master's status and Location); that report
        # is queued too.
        with pytest.raises(DetError) as e:
            report(lib, ctx, 3)
        assert e.value.name == "DET_ERR_MASTER", e.value
        assert f"answered {code}" in e.value.message and elsewhere.url in e.value.message, e.value.message
        assert "this report was queued" in e.value.message
        # The checkpoint is stored but not reported: DET_ERR_MASTER, naming the redirect.
        with pytest.raises(DetError) as e:
            store(lib, ctx, 1)
        assert e.value.name == "DET_ERR_MASTER", e.value
        assert f"answered {code}" in e.value.message and elsewhere.url in e.value.message, e.value.message
        assert "does not follow redirects" in e.value.message
        assert master.metrics == [] and master.checkpoints == {}
        # The master is fixed: the kept reports arrive, once each, in order.
        master.clear_failures()
        flush(lib, ctx, 30)
        assert [m["metrics"]["stepsCompleted"] for m in master.metrics] == [0, 1, 2, 3]
    finally:
        lib.call("det_core_close", ctx)
    # Nothing, and no token, went to the other address.
    assert elsewhere.requests() == []


def test_oversized_runs_start_answer_is_an_error(lib, master):
    # A valid answer followed by blanks past the cap: cut at 64 MiB it would parse (it did).
    master.script(fail={"status": "huge", "count": 1, "method": "POST", "path": "/api/v1/runs/start",
                        "prefix": '{"storageId": 1}', "bytes": 64 * MIB, "suffix": "x"})
    with pytest.raises(DetError) as e:
        lib.init(master.info_dir)
    assert e.value.name == "DET_ERR_MASTER", e.value
    assert "larger than 64 MiB" in e.value.message, e.value.message
    assert TOKEN not in e.value.message


@pytest.mark.parametrize("length", [True, False], ids=["content-length", "until-close"])
def test_huge_long_poll_answer_does_not_take_the_memory(tmp_path, master, length):
    """The preemption long poll used to read a whole answer into memory (1 GiB took a process to
    2 GiB). A 512 MiB answer now stops at the cap: the process stays small and goes on."""
    child = textwrap.dedent(f"""
        import ctypes, json, resource, sys
        sys.path.insert(0, {str(os.path.dirname(__file__))!r})
        from oncluster_util import Lib
        lib = Lib({os.environ["DETCORE_LIB"]!r})
        ctx = lib.init({str(master.info_dir)!r})
        lib.call("det_core_close", ctx)
        print(json.dumps({{"maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}}))
    """)
    env = base_env(master.info_dir, master.container)

    def peak_mib():
        p = subprocess.run([sys.executable, "-c", child], env=env, capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr[-3000:]
        return json.loads(p.stdout.strip().splitlines()[-1])["maxrss_kb"] / 1024, p.stderr

    # The same process with an ordinary answer, then with a 512 MiB one.
    baseline, _ = peak_mib()
    master.script(fail={"status": "huge", "count": 1, "method": "GET", "path": r".*/signals/preemption",
                        "prefix": '{"preempt": false', "bytes": 512 * MIB, "suffix": "}", "length": length})
    rss_mib, err = peak_mib()
    # At most the cap (64 MiB, whose buffer may double once) more than the baseline.
    assert rss_mib < baseline + 140, f"peak memory {rss_mib:.0f} MiB, {baseline:.0f} MiB without the huge answer"
    assert "larger than 64 MiB" in err, err[-3000:]
    huge = [r for r in master.requests() if r["outcome"] == "huge"]
    assert len(huge) == 1
