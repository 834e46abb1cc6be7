"""Distributed benchmarks (issue 5), detcore beside determined==0.38.1 in the same run:

- allgather of 64 bytes with 2 and 4 processes: mean latency per collective;
- det_should_preempt per call in WorkersAskChief mode with 4 processes (steady state), against
  Python's should_preempt, which is a ZMQ broadcast per call.

Also measures the floor of any 2-process collective here, the round trip of 64 bytes over loopback
TCP between two processes (bench/tcp_pingpong.c), and prints allgather times as multiples of it.

Prints medians of --repeat runs and the ratios. Targets: allgather <= 20 us (>= 10x Python);
should_preempt <= 100 ns.

    .venv/bin/python bench/dist_bench.py --repeat 5
"""
import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))
from distributed_launch import free_port, launch  # noqa: E402


def run_detcore(prog, mode, n, size, work):
    procs = launch(str(prog), [mode, str(n)], size, "torch", env={"BENCH_WORK": work}, work=work)
    vals = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        if p.returncode != 0:
            raise SystemExit(f"detcore rank failed: {err}")
        vals.append(float(out.strip()))
    return max(vals)


def run_python(mode, n, size):
    p1 = free_port()
    p2 = free_port()
    procs = []
    for rank in range(size):
        env = dict(os.environ)
        env.update({"RANK": str(rank), "WORLD_SIZE": str(size), "LOCAL_RANK": str(rank),
                    "LOCAL_WORLD_SIZE": str(size), "GROUP_RANK": "0", "GROUP_WORLD_SIZE": "1",
                    "INTER_TRAIN_PROCESS_COMM_PORT_1": str(p1), "INTER_TRAIN_PROCESS_COMM_PORT_2": str(p2),
                    "PYTHONWARNINGS": "ignore"})
        procs.append(subprocess.Popen([sys.executable, str(ROOT / "bench" / "py_dist.py"), mode, str(n)],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    vals = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        if p.returncode != 0:
            raise SystemExit(f"python rank failed: {err[-2000:]}")
        vals.append(float(out.strip().splitlines()[-1]))
    return max(vals)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--build", default=os.environ.get("DETCORE_BUILD_DIR", str(ROOT / "build")))
    a = ap.parse_args()
    lib = pathlib.Path(a.build) / "cargo" / "release"
    prog = ROOT / "bench" / "out" / "bench_dist"
    prog.parent.mkdir(exist_ok=True)
    subprocess.check_call(["cc", "-O2", "-std=c11", f"-I{ROOT / 'include'}", "-o", str(prog),
                           str(ROOT / "bench" / "bench_dist.c"), f"-L{lib}", "-ldetcore", f"-Wl,-rpath,{lib}"])
    pingpong = ROOT / "bench" / "out" / "tcp_pingpong"
    subprocess.check_call(["cc", "-O2", "-std=c11", "-o", str(pingpong), str(ROOT / "bench" / "tcp_pingpong.c")])
    work = tempfile.mkdtemp()
    rows = []
    rtt = statistics.median(float(subprocess.check_output([str(pingpong), "20000"], text=True))
                            for _ in range(a.repeat))
    for size in (2, 4):
        d = statistics.median(run_detcore(prog, "allgather", 5000, size, work) for _ in range(a.repeat))
        p = statistics.median(run_python("allgather", 2000, size) for _ in range(a.repeat))
        rows.append((f"allgather 64 B, {size} processes", d, p, "us", "<= 20 us, >= 10x"))
    d = statistics.median(run_detcore(prog, "should_preempt", 2_000_000, 4, work) for _ in range(a.repeat))
    # Python's chief may run at most ~1000 broadcasts ahead before ZMQ drops messages and the
    # workers fail ("Out-of-order server message detected"), so its loop stays below that.
    p = statistics.median(run_python("should_preempt", 800, 4) for _ in range(a.repeat))
    rows.append(("should_preempt, WorkersAskChief, 4 processes", d, p, "ns", "<= 100 ns"))
    print(f"detcore distributed bench, median of {a.repeat} runs, {os.cpu_count()} CPUs (slowest rank of each run)")
    for name, d, p, unit, target in rows:
        print(f"{name:<46} detcore {d:10.2f} {unit:<3} python {p:12.2f} {unit:<3} python/detcore = {p / d:8.1f}x  (target {target})")
    # The floor: no 2-process collective can beat one round trip of the transport.
    d2 = rows[0][1]
    print(f"{'raw TCP round trip, 64 B, 2 processes':<46} raw     {rtt:10.2f} us  "
          f"detcore allgather (2) / raw = {d2 / rtt:5.2f}  python allgather (2) / raw = {rows[0][2] / rtt:5.2f}")


if __name__ == "__main__":
    main()
