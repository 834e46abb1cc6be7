"""The conformance scenario through the real Python client determined==0.38.1.

Run in a subprocess by tests/python/test_oncluster_conformance.py with:
  DETCORE_TEST_INFO_DIR     the fake master's info files (cluster.json, trial.json, ...)
  DETCORE_SHARED_FS_CONTAINER_PATH  where shared_fs host_path is "mounted" (instead of /determined_shared_fs)
  DET_SESSION_TOKEN, DET_USER, DET_RETRY_CONFIG
The same steps are in tests/c/oncluster_scenario.c; keep them in step.
"""
import json
import math
import os
import pathlib
import sys
import time
import types

import determined
from determined import _info, core
from determined.common import constants

info_dir = pathlib.Path(os.environ["DETCORE_TEST_INFO_DIR"])
constants.SHARED_FS_CONTAINER_PATH = os.environ["DETCORE_SHARED_FS_CONTAINER_PATH"]

# Determined reads /run/determined/info only; build its ClusterInfo from our folder instead.
with open(info_dir / "cluster.json") as f:
    cluster = json.load(f)
_info._info = _info.ClusterInfo(
    trial_info=_info.TrialInfo._from_file(str(info_dir / "trial.json")),
    rendezvous_info=_info.RendezvousInfo._from_file(str(info_dir / "rendezvous.json")),
    resources_info=_info.ResourcesInfo._from_file(str(info_dir / "resources.json")),
    **cluster,
)
assert determined.get_cluster_info() is _info._info

with core.init(tensorboard_mode=core.TensorboardMode.MANUAL) as ctx:
    ctx.train.report_training_metrics(
        steps_completed=10,
        metrics={"loss": 0.5, "nan": math.nan, "inf": math.inf, "ninf": -math.inf,
                 "cnan": -math.nan, "cinf": math.inf, "cninf": -math.inf,
                 "nested": {"a": 1, "b": [1, 2.5]}, "str": "x"},
        batch_metrics=[{"loss": 0.7}, {"loss": 0.6}],
    )
    ctx.train.report_validation_metrics(steps_completed=10, metrics={"val_loss": 0.25, "batches": 10})
    ctx.train.report_metrics(group="inf%er en/ce", steps_completed=10, metrics={"x": 1})
    ctx.train.report_training_metrics(steps_completed=20, metrics={"loss": 0.4, "acc": 0.75})
    ctx.train.report_progress(0.5)
    ctx.train.set_status("training")
    with ctx.checkpoint.store_path({"steps_completed": 20}) as (path, sid):
        (path / "model.bin").write_bytes(b"\x01" * 100)
        (path / "sub").mkdir()
        (path / "sub" / "opt.txt").write_text("momentum")
    md = ctx.checkpoint.get_metadata(sid)
    assert md == {"steps_completed": 20}, md
    for op in ctx.searcher.operations():
        assert op.length == 100, op.length
        op.report_progress(50)
        op.report_completed(0.25)
    assert ctx.searcher.get_configured_units() == core.Unit.BATCHES
    best = ctx.train.get_experiment_best_validation()
    print("best", best, flush=True)
    out = ctx.train.set_metadata({"note": "hello", "n": 1})
    got = ctx.train.get_metadata()
    assert got == {"note": "hello", "n": 1}, got
    ctx.alert(title="end of main", description="scenario", level="warn")
    # Only `.uuid` (and a model version's ids) are read from these objects.
    ctx.experimental.report_task_using_checkpoint(types.SimpleNamespace(uuid=sid))
    ctx.experimental.report_task_using_model_version(
        types.SimpleNamespace(checkpoint=types.SimpleNamespace(uuid=sid), model_id=4, model_version=2))
    ctx.checkpoint.delete(sid)
    # The fake master preempts once it has answered the PATCH of the delete.
    t0 = time.time()
    while not ctx.preempt.should_preempt():
        if time.time() - t0 > 20:
            print("no preemption", flush=True)
            sys.exit(3)
        time.sleep(0.05)
print("done", flush=True)
