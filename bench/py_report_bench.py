"""The Python client (determined==0.38.1) doing what bench/report_bench.c does: BENCH_REPORTS
two-scalar training reports, then close (which delivers them). Prints the same JSON line."""
import json
import os
import pathlib
import time

from determined import _info, core

info_dir = pathlib.Path(os.environ["DET_CLUSTER_INFO_DIR"])
from determined.common import constants  # noqa: E402

constants.SHARED_FS_CONTAINER_PATH = os.environ["DETCORE_SHARED_FS_CONTAINER_PATH"]
with open(info_dir / "cluster.json") as f:
    cluster = json.load(f)
_info._info = _info.ClusterInfo(
    trial_info=_info.TrialInfo._from_file(str(info_dir / "trial.json")),
    rendezvous_info=_info.RendezvousInfo._from_file(str(info_dir / "rendezvous.json")),
    resources_info=_info.ResourcesInfo._from_file(str(info_dir / "resources.json")),
    **cluster,
)
n = int(os.environ.get("BENCH_REPORTS", "10000"))
per = []
ctx = core.init(tensorboard_mode=core.TensorboardMode.MANUAL)
ctx.__enter__()
t0 = time.perf_counter()
for i in range(n):
    a = time.perf_counter()
    ctx.train.report_training_metrics(steps_completed=i, metrics={"loss": 1.0 / (i + 1), "accuracy": i / n})
    per.append(time.perf_counter() - a)
t1 = time.perf_counter()
ctx.__exit__(None, None, None)
t2 = time.perf_counter()
first = per[0]
per.sort()
print(json.dumps({"n": n, "first_ns": first * 1e9, "mean_ns": (t1 - t0) / n * 1e9, "median_ns": per[n // 2] * 1e9,
                  "p99_ns": per[int(n * 0.99)] * 1e9, "max_ns": per[-1] * 1e9, "loop_s": t1 - t0,
                  "close_s": t2 - t1, "total_s": t2 - t0, "close": "DET_OK"}))
