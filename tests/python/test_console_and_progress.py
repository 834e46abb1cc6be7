"""What a long job prints on the console (stderr) off-cluster: a summary of its reports every few
seconds at INFO instead of one line per report (every report is still in metrics.jsonl, and on
the console at DEBUG), and progress lines for transfers that last more than a few seconds."""
import json
import os
import re
import subprocess
import sys
import textwrap

import servers
from conftest import ROOT
from faultproxy import FaultProxy, Rule

LINE = re.compile(r"^(DEBUG|INFO|WARNING|ERROR): \[\d+\] detcore: (.*)$")

REPORTS = textwrap.dedent(
    """
    import sys, time, detcore
    n, pause = int(sys.argv[1]), float(sys.argv[2])
    with detcore.init(checkpoint_storage=sys.argv[3], run_dir=sys.argv[4], run_name="console") as ctx:
        for step in range(1, n + 1):
            ctx.train.report_training_metrics(steps_completed=step, metrics={"loss": 1.0 / step, "acc": 0.5})
            if step % 500 == 0:
                ctx.train.report_validation_metrics(steps_completed=step, metrics={"val_loss": 2.0 / step})
            if pause:
                time.sleep(pause)
    """
)


def run_reports(tmp_path, n, pause, level=None):
    env = {k: v for k, v in os.environ.items() if k != "DETCORE_LOG_LEVEL"}
    env.update(PYTHONPATH=str(ROOT / "bindings" / "python"), DET_CLUSTER_INFO_DIR=str(tmp_path / "none"))
    if level:
        env["DETCORE_LOG_LEVEL"] = level
    run_dir = tmp_path / f"run-{n}-{level}"
    r = subprocess.run([sys.executable, "-c", REPORTS, str(n), str(pause), str(tmp_path / "ckpts"), str(run_dir)],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = [LINE.match(x) for x in r.stderr.splitlines()]
    assert all(lines), r.stderr  # nothing but detcore's log lines
    jsonl = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    # The run's line at init (which run, what it resumes) comes first; the rest is about reports.
    assert lines[0].group(2).startswith('run "console" (name from det_init_options.run_name): '), r.stderr
    return [(m.group(1), m.group(2)) for m in lines[1:]], jsonl, run_dir


def test_a_burst_of_reports_is_summarised(tmp_path):
    lines, jsonl, run_dir = run_reports(tmp_path, 1000, 0)
    # Every report is in the file ...
    assert sum(1 for m in jsonl if m["type"] == "metrics" and m["group"] == "training") == 1000
    # ... but the console has a handful of lines, not 1002: the file's path at the first report,
    # (a summary every 5 s,) and the last state at close.
    assert len(lines) <= 4, lines
    assert str(run_dir / "metrics.jsonl") in lines[0][1], lines
    last = lines[-1][1]
    assert lines[-1][0] == "INFO", lines
    assert "training step 1000: loss=0.001, acc=0.5" in last, last
    assert "validation step 1000: val_loss=0.002" in last, last
    assert "1002 report(s) in all" in last, last


def test_every_report_at_debug(tmp_path):
    lines, _, _ = run_reports(tmp_path, 600, 0, level="debug")
    each = [text for level, text in lines if level == "DEBUG" and text.startswith("report_training_metrics(")]
    assert len(each) == 600
    assert "report_training_metrics(steps_completed=600, metrics={\"loss\": " in each[-1]


def test_a_slow_job_gets_a_line_every_few_seconds(tmp_path):
    # 70 reports over ~7 s: the first, one after 5 s, the last at close.
    lines, jsonl, _ = run_reports(tmp_path, 70, 0.1)
    assert sum(1 for m in jsonl if m["type"] == "metrics") == 70
    info = [text for level, text in lines if level == "INFO"]
    assert 2 <= len(info) <= 4, info
    assert any(re.search(r"report\(s\) in all, \d+\.\d/s over the last [4-9]\.\d s", t) for t in info), info
    assert "training step 70:" in info[-1], info


UPLOAD = textwrap.dedent(
    """
    import json, os, pathlib, sys, detcore
    cfg, big, run_dir = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    with detcore.init(checkpoint_storage=cfg, run_dir=run_dir, run_name="progress") as ctx:
        with ctx.checkpoint.store_path({"steps_completed": 1}) as (path, sid):
            (path / "model.bin").write_bytes(os.urandom(big))
        with ctx.checkpoint.restore_path(sid) as path:
            assert (pathlib.Path(path) / "model.bin").stat().st_size == big
    print(sid)
    """
)


def test_long_transfers_log_their_progress(tmp_path, moto_server):
    bucket = f"p{os.urandom(6).hex()}"
    servers.make_bucket_s3(moto_server.url, bucket)
    proxy = FaultProxy(moto_server.port)
    try:
        cfg = {"type": "s3", "bucket": bucket, "endpoint_url": proxy.url, "prefix": "ck",
               "access_key": servers.S3_KEY, "secret_key": servers.S3_SECRET, "part_size": 64 << 20,
               "timeout_seconds": 60}
        env = {k: v for k, v in os.environ.items() if k != "DETCORE_LOG_LEVEL"}
        env.update(PYTHONPATH=str(ROOT / "bindings" / "python"), DET_CLUSTER_INFO_DIR=str(tmp_path / "none"))

        def run(size):
            r = subprocess.run([sys.executable, "-c", UPLOAD, json.dumps(cfg), str(size), str(tmp_path / "run")],
                               env=env, capture_output=True, text=True, timeout=300)
            assert r.returncode == 0, r.stderr
            return r.stdout.strip(), r.stderr

        # Fast: not a word about progress.
        _, err = run(100_000)
        assert "upload to" not in err and "download from" not in err, err
        # A slow link (2.5 MiB/s each way) and 16 MiB: ~6 s up, ~6 s down.
        proxy.add(Rule("throttle", path=r"model\.bin", times=-1, rate=int(2.5 * (1 << 20))))
        sid, err = run(16 << 20)
        where = f"s3://{bucket}/ck/{sid}/"
        up = [x for x in err.splitlines() if f"upload to {where}:" in x]
        down = [x for x in err.splitlines() if f"download from {where}:" in x]
        pat = r"INFO: \[\d+\] detcore: (upload to|download from) \S+: [\d.]+ [KM]iB of 16\.0 MiB \(\d+%\), " \
              r"[\d.]+ [KM]iB/s, about \d+ (s|min \d+ s) left"
        for lines in (up, down):
            assert len(lines) >= 2, err  # at least one progress line and the last one
            assert any(re.fullmatch(pat, x) for x in lines[:-1]), lines
            assert re.search(r": done, 16\.0 MiB in \d+ s \([\d.]+ [KM]iB/s\)$", lines[-1]), lines
            assert len(lines) <= 4, lines  # at most one line every 5 s
    finally:
        proxy.stop()
