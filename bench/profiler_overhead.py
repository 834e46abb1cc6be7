#!/usr/bin/env python3
"""CPU cost of detcore's system profiler at a 0.1 s sampling interval.

Runs rounds of WINDOW seconds in which the process only sleeps, alternately with the profiler
off (the baseline: an idle detcore context) and on (det_profiler_on(ctx, 0.1, 10)), and measures
the CPU time of the whole process (getrusage, all threads). Prints the median over the rounds of
each, and the difference as a percentage of one core — the sampler's cost.

    python3 bench/profiler_overhead.py [--rounds 5] [--window 10]

Uses $DETCORE_LIB, else build/cargo/release/libdetcore.so (build it with scripts/test.sh or
cmake --build build).
"""
import argparse
import os
import pathlib
import resource
import statistics
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))
from capi import Lib  # noqa: E402


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def window(seconds: float) -> float:
    """CPU seconds used by the process per wall second while the caller sleeps."""
    c0, t0 = cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds() - c0) / (time.monotonic() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--window", type=float, default=10.0)
    ap.add_argument("--interval", type=float, default=0.1)
    a = ap.parse_args()
    lib_path = os.environ.get("DETCORE_LIB") or ROOT / "build" / "cargo" / "release" / "libdetcore.so"
    det = Lib(pathlib.Path(lib_path))
    det.lib.det_log_set_level(30)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        ctx = det.init(tmp / "ckpts", tmp / "run", "bench")
        off, on = [], []
        for _ in range(a.rounds):
            off.append(window(a.window))
            det.check(det.lib.det_profiler_on(ctx, a.interval, 10))
            on.append(window(a.window))
            det.check(det.lib.det_profiler_off(ctx))
        det.close(ctx)
    m_off, m_on = statistics.median(off), statistics.median(on)
    samples_per_s = 1.0 / a.interval
    print(f"rounds={a.rounds} window={a.window:.0f}s interval={a.interval}s cpus={os.cpu_count()}")
    print(f"profiler off (baseline): median {m_off * 100:.3f} % of one core   {['%.3f' % (x * 100) for x in off]}")
    print(f"profiler on:             median {m_on * 100:.3f} % of one core   {['%.3f' % (x * 100) for x in on]}")
    cost = m_on - m_off
    print(f"sampler cost: {cost * 100:.3f} % of one core "
          f"({cost / samples_per_s * 1e6:.0f} us of CPU per sample of all groups); target < 1 %")


if __name__ == "__main__":
    main()
