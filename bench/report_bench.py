"""Metric reports on-cluster, detcore vs the Python client determined==0.38.1.

    python bench/report_bench.py            # 10 000 reports, 2 ms master latency, 3 runs each

Both clients report BENCH_REPORTS two-scalar training metrics to the same fake master (one
process, a fresh master state per run) that answers every request after --latency seconds, then
close (delivering everything). Printed: medians over the runs of the caller-side cost per report
call (mean over the loop, median/p99/max of individually timed calls) and of the total wall time
from the first report to the end of close, and the ratios Python / detcore.

Needs the CMake build (build/, or DETCORE_BUILD_DIR) and the test venv (scripts/venv.sh)."""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from fake_master import TOKEN, FakeMaster  # noqa: E402


def one(cmd, m, tmp, n):
    info = tmp / "info"
    host = tmp / "shared"
    host.mkdir(exist_ok=True)
    m.write_info_dir(info, storage_host_path=str(host))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DET_")}
    env.update({"DET_CLUSTER_INFO_DIR": str(info), "DETCORE_SHARED_FS_CONTAINER_PATH": str(host),
                "DET_SESSION_TOKEN": TOKEN, "DET_USER": "bench", "BENCH_REPORTS": str(n),
                "DETCORE_LOG_LEVEL": "warning"})
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed:\n{r.stderr[-2000:]}")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    got = [x["metrics"]["stepsCompleted"] for x in m.metrics]
    if got != list(range(n)):
        raise SystemExit(f"{cmd[0]}: the master did not receive the {n} reports in order")
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reports", type=int, default=10000)
    ap.add_argument("--latency", type=float, default=0.002)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    build = pathlib.Path(os.environ.get("DETCORE_BUILD_DIR", ROOT / "build"))
    exe = build / "bench" / "report_bench"
    if not exe.exists():
        raise SystemExit(f"{exe} missing: build with cmake (cmake --build build)")
    venv_py = pathlib.Path(os.environ.get("DETCORE_VENV", ROOT / ".venv")) / "bin" / "python"
    clients = {"detcore": [str(exe)], "python": [str(venv_py), str(ROOT / "bench" / "py_report_bench.py")]}
    results = {k: [] for k in clients}
    for run in range(a.runs):
        for name, cmd in clients.items():
            with tempfile.TemporaryDirectory() as d, FakeMaster() as m:
                m.script(latency=a.latency)
                results[name].append(one(cmd, m, pathlib.Path(d), a.reports))
                print(f"run {run + 1} {name}: {json.dumps(results[name][-1])}", file=sys.stderr)
    med = {k: {f: statistics.median(r[f] for r in v) for f in ("mean_ns", "median_ns", "p99_ns", "max_ns", "total_s")}
           for k, v in results.items()}
    print(f"{a.reports} two-scalar reports, master latency {a.latency * 1000:.1f} ms per request, "
          f"medians of {a.runs} runs")
    print(f"{'':22}{'detcore':>14}{'python 0.38.1':>16}{'python/detcore':>16}")
    for f, unit in (("mean_ns", "ns"), ("median_ns", "ns"), ("p99_ns", "ns"), ("max_ns", "ns"), ("total_s", "s")):
        d, p = med["detcore"][f], med["python"][f]
        label = {"mean_ns": "caller cost, mean", "median_ns": "caller cost, median", "p99_ns": "caller cost, p99",
                 "max_ns": "caller cost, max", "total_s": "total wall time"}[f]
        print(f"{label:22}{d:>12.1f}{unit:>2}{p:>14.1f}{unit:>2}{p / d:>15.1f}x")


if __name__ == "__main__":
    main()
