"""Baseline: Python determined==0.38.1 off-cluster doing what bench_core does.

    python py_offcluster.py should_preempt N | report N | init_close
"""
import sys
import time

import determined.core as core

mode = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 100000

if mode == "init_close":
    with core.init():
        pass
    sys.exit(0)

with core.init() as ctx:
    if mode == "should_preempt":
        t0 = time.perf_counter_ns()
        for _ in range(n):
            ctx.preempt.should_preempt()
        t1 = time.perf_counter_ns()
    elif mode == "report":
        t0 = time.perf_counter_ns()
        for i in range(n):
            ctx.train.report_training_metrics(steps_completed=i, metrics={"loss": float(i), "accuracy": 0.9})
        t1 = time.perf_counter_ns()
    else:
        sys.exit(2)
print(f"{(t1 - t0) / n:.2f}")
