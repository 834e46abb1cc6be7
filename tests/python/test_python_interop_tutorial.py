"""One determined.core tutorial-style script (tests/python/core_tutorial.py) run against
determined==0.38.1 off-cluster and against detcore's Python package: each resumes from the
checkpoints the other wrote, in the same storage folder, and the checkpoint folders they write
are the same (file names, file bytes, metadata.json bytes), except for detcore's manifest."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

from conftest import ROOT
from manifests import MANIFEST, check_folder

pytest.importorskip("determined.core")
SCRIPT = ROOT / "tests" / "python" / "core_tutorial.py"


def run(impl, storage, cwd, latest=None, stop_after=-1):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "bindings" / "python")
    env["DET_RUN_NAME"] = "tutorial"
    env["DETCORE_LOG_LEVEL"] = "warning"
    env.pop("DET_CLUSTER_INFO_DIR", None)
    cmd = [sys.executable, str(SCRIPT), "--impl", impl, "--storage", str(storage), "--stop-after", str(stop_after)]
    if latest:
        cmd += ["--latest", latest]
    r = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{impl}: {r.stderr}"
    return json.loads(r.stdout.strip().splitlines()[-1])


def tree(d: pathlib.Path):
    return {str(p.relative_to(d)): (p.read_bytes() if p.is_file() else None) for p in sorted(d.rglob("*"))}


def test_checkpoints_are_interchangeable(tmp_path):
    ref = run("determined", tmp_path / "ref", tmp_path)
    assert ref["x"] == 150

    # determined starts, detcore resumes from its checkpoint and finishes.
    storage = tmp_path / "shared"
    first = run("determined", storage, tmp_path, stop_after=20)
    assert first["x"] == 60
    second = run("detcore", storage, tmp_path, latest=first["last"])
    assert second["x"] == ref["x"] and second["last"] != first["last"]
    # ... and determined restores detcore's final checkpoint.
    again = run("determined", storage, tmp_path, latest=second["last"])
    assert again["x"] == ref["x"]

    # detcore starts, determined resumes.
    storage2 = tmp_path / "shared2"
    first = run("detcore", storage2, tmp_path, stop_after=30)
    assert first["x"] == 90
    second = run("determined", storage2, tmp_path, latest=first["last"])
    assert second["x"] == ref["x"]
    again = run("detcore", storage2, tmp_path, latest=second["last"])
    assert again["x"] == ref["x"]

    # The same checkpoint written by each: step 20 by determined in `storage` and by detcore in
    # `storage2`; step 50 by detcore in `storage` and by determined in `storage2`. They hold the
    # same files with the same bytes, metadata.json included.
    def by_step(storage_dir, step):
        for d in storage_dir.iterdir():
            m = d / "metadata.json"
            if m.exists() and json.loads(m.read_text())["steps_completed"] == step:
                return d
        raise AssertionError(f"no checkpoint of step {step} in {storage_dir}")

    for step in (20, 50):
        da, db = by_step(storage, step), by_step(storage2, step)
        a, b = tree(da), tree(db)
        # detcore's copy also has its manifest (the size and CRC32C of every file); Determined's
        # has none.
        for d, t in ((da, a), (db, b)):
            if MANIFEST in t:
                check_folder(d, d.name)
                del t[MANIFEST]
        assert sorted(a) == ["metadata.json", "state", "weights", "weights/w.bin"]
        assert a == b, step
