"""Baseline: determined==0.38.1's DistributedContext (ZMQ, pickle) doing what bench_dist does.
Run as one rank; ranks from torchrun-style variables; ports from
INTER_TRAIN_PROCESS_COMM_PORT_1/2 (read by determined at import)."""
import sys
import time

import determined.core as core

mode, n = sys.argv[1], int(sys.argv[2])
dist = core.DistributedContext.from_torch_distributed(chief_ip="127.0.0.1")
if mode == "allgather":
    payload = bytes([dist.get_rank()]) * 64
    for i in range(n + n // 10):
        if i == n // 10:
            t0 = time.perf_counter()
        dist.allgather(payload)
    t1 = time.perf_counter()
    print(f"{(t1 - t0) / n * 1e6:.3f}")
else:
    with core._dummy_init(distributed=dist) as ctx:
        for _ in range(n // 10):
            ctx.preempt.should_preempt()
        t0 = time.perf_counter()
        for _ in range(n):
            ctx.preempt.should_preempt()
        t1 = time.perf_counter()
    print(f"{(t1 - t0) / n * 1e9:.3f}")
dist.close()
