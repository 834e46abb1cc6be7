"""What a second process, a kill -9, a corrupt index and a full disk do to an off-cluster run, through
the C ABI (tests/c/ckpt_worker.c, a training process that checkpoints and reports metrics):

- several processes checkpointing one run lose no index entry;
- a corrupt run index (garbage, truncated, empty, wrong types) is rebuilt: the run resumes from its
  newest complete checkpoint and the next store keeps every older entry;
- a corrupt newest checkpoint is skipped (named in the log), the next one is resumed from;
- a process killed (SIGKILL, by tests/c/killpoint.c) at each exact point of publication leaves a
  run that resumes from the newest complete checkpoint, and the next process removes the staging
  folder and temporary files it left;
- metrics.jsonl stays valid JSON, line by line, after any number of kills;
- a full disk (a 2 MiB tmpfs, where root or a user namespace can mount one) fails a checkpoint
  as one outcome: nothing published, nothing left, and the next smaller checkpoint works.
"""
import json
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import build_dir

UUID_LEN = 36


def program(name: str) -> pathlib.Path:
    p = build_dir() / "tests" / "c" / name
    if not p.exists():
        pytest.fail(f"{p} not built; run scripts/test.sh (or cmake --build build)")
    return p


def worker_env(storage, run, run_dir, **kw) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DET_", "DETCORE_"))}
    env.update({"WORKER_STORAGE": str(storage), "WORKER_RUN": run, "WORKER_RUN_DIR": str(run_dir),
                "DET_CLUSTER_INFO_DIR": "/nonexistent/detcore-test-info"})
    env.update({k: str(v) for k, v in kw.items()})
    return env


class Run:
    """What one worker process printed."""

    def __init__(self, proc_out: str, stderr: str, returncode: int):
        self.lines = proc_out.splitlines()
        self.stderr = stderr
        self.returncode = returncode
        self.ok = [(l.split()[1], int(l.split()[2])) for l in self.lines if l.startswith("ok ")]
        self.fails = [l for l in self.lines if l.startswith("fail ")]
        r = [l.split() for l in self.lines if l.startswith("resumed ")]
        self.resumed = (None if r[0][1] == "-" else r[0][1], int(r[0][2])) if r else None


def run_worker(storage, run, run_dir, env_extra=None, timeout=120, **kw) -> Run:
    env = worker_env(storage, run, run_dir, **kw)
    env.update(env_extra or {})
    p = subprocess.run([str(program("ckpt_worker"))], env=env, capture_output=True, text=True,
                       timeout=timeout)
    return Run(p.stdout, p.stderr, p.returncode)


def records(storage: pathlib.Path, run: str) -> set:
    d = storage / ".detcore" / "runs" / run / "checkpoints"
    return {p.name[:-len(".json")] for p in d.glob("*.json")} if d.exists() else set()


def summary_ids(storage: pathlib.Path, run: str) -> list:
    doc = json.loads((storage / ".detcore" / "runs" / run / "checkpoints.json").read_text())
    return [c["storage_id"] for c in doc["checkpoints"]]


def leftovers(storage: pathlib.Path) -> list:
    """Staging folders, lock files and temporary files: what a killed process leaves."""
    out = []
    staging = storage / ".detcore-staging"
    if staging.exists():
        out += [f".detcore-staging/{p.name}" for p in staging.iterdir()]
    runs = storage / ".detcore" / "runs"
    if runs.exists():
        out += [str(p.relative_to(storage)) for p in runs.rglob(".*.tmp-*")]
    return sorted(out)


def assert_jsonl_valid(path: pathlib.Path) -> int:
    text = path.read_text()
    assert text == "" or text.endswith("\n"), repr(text[-200:])
    for i, line in enumerate(text.splitlines()):
        try:
            json.loads(line)
        except ValueError as e:
            raise AssertionError(f"{path}:{i + 1} is not JSON ({e}): {line[:200]!r}") from None
    return len(text.splitlines())


# ---- several processes, one run --------------------------------------------------------------

def test_processes_sharing_a_run_lose_no_index_entry(tmp_path):
    storage = tmp_path / "ckpts"
    procs = []
    for k in range(3):
        env = worker_env(storage, "shared", tmp_path / f"run{k}", WORKER_N=30, WORKER_STEP0=1000 * k,
                         WORKER_REPORTS=0, WORKER_BYTES=100)
        procs.append(subprocess.Popen([str(program("ckpt_worker"))], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    runs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        runs.append(Run(out, err, p.returncode))
    ok = [sid for r in runs for sid, _ in r.ok]
    assert all(r.returncode == 0 and not r.fails for r in runs), [r.fails + [r.stderr[-2000:]] for r in runs]
    assert len(ok) == 90
    # Every checkpoint that returned DET_OK is indexed, in the summary and in the records (the
    # summary used to lose about a quarter of them).
    listed = summary_ids(storage, "shared")
    assert sorted(listed) == sorted(ok), f"{len(set(ok) - set(listed))} of 90 checkpoints lost"
    assert records(storage, "shared") == set(ok)
    last = run_worker(storage, "shared", tmp_path / "run-check", WORKER_N=0)
    assert last.resumed == (dict((s, sid) for sid, s in (x for r in runs for x in r.ok))[2030], 2030)


# ---- corrupt index, corrupt checkpoints ------------------------------------------------------

@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "wrong types", "not an object"])
def test_corrupt_index_is_rebuilt(tmp_path, damage):
    storage, run_dir = tmp_path / "ckpts", tmp_path / "run"
    first = run_worker(storage, "r", run_dir, WORKER_N=3)
    assert len(first.ok) == 3, first.lines + [first.stderr]
    index = storage / ".detcore" / "runs" / "r" / "checkpoints.json"
    text = index.read_text()
    index.write_text({
        "garbage": "\x00\x01 not json at all {{{",
        "truncated": text[: len(text) // 2],
        "empty": "",
        "wrong types": json.dumps({"run_name": 5, "checkpoints": [{"storage_id": 1, "steps_completed": "x"}]}),
        "not an object": "[1, 2, 3]",
    }[damage])
    second = run_worker(storage, "r", run_dir, WORKER_N=1)
    # It resumes from the newest complete checkpoint (it used to start from step 0)...
    assert second.resumed == first.ok[-1], second.lines + [second.stderr]
    assert "rebuilt it from the" in second.stderr, second.stderr
    # ...and the next store keeps every older entry (it used to erase them).
    want = [sid for sid, _ in first.ok + second.ok]
    assert sorted(summary_ids(storage, "r")) == sorted(want)
    # The unreadable file is kept beside the index.
    copies = list(index.parent.glob("checkpoints.json.unreadable-*"))
    assert len(copies) == 1


@pytest.mark.parametrize("damage", ["garbage", "empty", "array", "no steps"])
def test_corrupt_newest_checkpoint_is_skipped(tmp_path, damage):
    storage, run_dir = tmp_path / "ckpts", tmp_path / "run"
    first = run_worker(storage, "r", run_dir, WORKER_N=3)
    newest, _ = first.ok[-1]
    (storage / newest / "metadata.json").write_text(
        {"garbage": "{{{", "empty": "", "array": "[1]", "no steps": "{\"loss\": 1}"}[damage])
    second = run_worker(storage, "r", run_dir, WORKER_N=0)
    assert second.resumed == first.ok[-2], second.lines + [second.stderr]
    assert f"not resuming from checkpoint {newest}: its metadata.json" in second.stderr, second.stderr


def test_index_entries_that_escape_the_storage_are_refused(tmp_path):
    storage, run_dir = tmp_path / "ckpts", tmp_path / "run"
    first = run_worker(storage, "r", run_dir, WORKER_N=1)
    (sid, steps), = first.ok
    # An index of the first format (one file) naming paths outside the storage.
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "metadata.json").write_text("{\"steps_completed\": 99}")
    shutil.rmtree(storage / ".detcore")
    index = storage / ".detcore" / "runs" / "r" / "checkpoints.json"
    index.parent.mkdir(parents=True)
    index.write_text(json.dumps({"run_name": "r", "checkpoints": [
        {"storage_id": sid, "steps_completed": steps},
        {"storage_id": str(outside), "steps_completed": 99},
        {"storage_id": "../outside", "steps_completed": 98}]}))
    second = run_worker(storage, "r", run_dir, WORKER_N=0)
    assert second.resumed == (sid, steps), second.lines + [second.stderr]


# ---- kill -9 at exact publication points -----------------------------------------------------

# (name, rename to kill at, before/after, does the killed checkpoint count?)
KILL_POINTS = [
    ("staged, before publishing", {"KILLPOINT_OLD": ".detcore-staging/"}, "before", False),
    ("just published", {"KILLPOINT_OLD": ".detcore-staging/"}, "after", True),
    ("writing its index record", {"KILLPOINT_NEW": "/checkpoints/"}, "before", False),
    ("recorded, not published", {"KILLPOINT_NEW": "/checkpoints/"}, "after", False),
    ("rewriting the index summary", {"KILLPOINT_NEW": "checkpoints.json"}, "before", True),
]


@pytest.mark.parametrize("point", KILL_POINTS, ids=[p[0] for p in KILL_POINTS])
def test_kill_at_publication_point(tmp_path, point):
    name, match, when, counts = point
    storage, run_dir = tmp_path / "ckpts", tmp_path / "run"
    first = run_worker(storage, "r", run_dir, WORKER_N=2, WORKER_BYTES=200_000)
    assert len(first.ok) == 2, first.lines + [first.stderr]
    shim = build_dir() / "tests" / "c" / "libkillpoint.so"
    assert shim.exists(), f"{shim} not built"
    # The second checkpoint of the next process dies at that point (the first goes through).
    env = {"LD_PRELOAD": str(shim), "KILLPOINT_WHEN": when, "KILLPOINT_NTH": "2", **match}
    killed = run_worker(storage, "r", run_dir, env_extra=env, WORKER_N=3, WORKER_BYTES=200_000)
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.lines, killed.stderr[-2000:])
    assert len(killed.ok) == 1, killed.lines
    staged = [p.name for p in (storage / ".detcore-staging").iterdir() if not p.name.endswith(".lock")]
    new = [p.name for p in storage.iterdir() if len(p.name) == UUID_LEN
           and p.name not in {s for s, _ in first.ok + killed.ok}]
    killed_id = (staged + new)[0] if staged + new else None
    after = run_worker(storage, "r", run_dir, WORKER_N=0)
    if counts:
        # Complete and recorded: it is the newest checkpoint, although its process never heard.
        assert killed_id and after.resumed == (killed_id, killed.ok[0][1] + 1), (after.lines, after.stderr)
    else:
        assert after.resumed == killed.ok[-1], (after.lines, after.stderr)
    # The next process removed what the killed one left (staging folder, lock and temp files,
    # a record of a checkpoint never published).
    assert leftovers(storage) == [], leftovers(storage)
    if not counts and killed_id:
        assert killed_id not in records(storage, "r")
        assert not (storage / killed_id).exists()
    # And the run goes on.
    final = run_worker(storage, "r", run_dir, WORKER_N=1)
    assert len(final.ok) == 1 and final.resumed == after.resumed, final.lines
    assert_jsonl_valid(run_dir / "metrics.jsonl")


# ---- metrics.jsonl after kills ---------------------------------------------------------------

def test_metrics_jsonl_stays_valid_after_kills(tmp_path):
    storage, run_dir = tmp_path / "ckpts", tmp_path / "run"
    run_dir.mkdir()
    # A line cut short, as a kill in the middle of a write leaves it: the next run used to glue
    # its first record onto it.
    (run_dir / "metrics.jsonl").write_text('{"type": "metrics", "steps_completed": 1}\n{"type": "met')
    r = run_worker(storage, "r", run_dir, WORKER_N=1)
    assert r.returncode == 0, r.stderr
    assert "its last line was cut short" in r.stderr
    n = assert_jsonl_valid(run_dir / "metrics.jsonl")
    assert n >= 3
    # Processes killed at random moments while they report.
    rng = random.Random(11)
    kills = 0
    for _ in range(8):
        env = worker_env(storage, "r", run_dir, WORKER_N=200, WORKER_REPORTS=300, WORKER_BYTES=100)
        p = subprocess.Popen([str(program("ckpt_worker"))], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
        assert p.stdout.readline().startswith("resumed ")
        time.sleep(rng.uniform(0.01, 0.3))
        p.send_signal(signal.SIGKILL)
        p.communicate()
        kills += p.returncode == -signal.SIGKILL
    assert kills >= 6
    r = run_worker(storage, "r", run_dir, WORKER_N=1)
    assert r.returncode == 0 and len(r.ok) == 1, r.lines
    assert assert_jsonl_valid(run_dir / "metrics.jsonl") > n
    assert leftovers(storage) == []


# ---- a full disk -----------------------------------------------------------------------------

def test_full_disk_fails_as_one_outcome(tmp_path):
    """The driver mounts a 2 MiB tmpfs as the checkpoint storage (as root, or in a user namespace
    where it may) and walks checkpoint sizes across the free space, so that checkpoints fail at
    every step of publication, the index write included."""
    driver = pathlib.Path(__file__).with_name("diskfull_driver.py")
    cmd = [sys.executable, str(driver), str(tmp_path)]
    if os.geteuid() != 0:
        if shutil.which("unshare") is None or subprocess.run(
                ["unshare", "-rm", "true"], capture_output=True).returncode != 0:
            pytest.skip("a full-disk test needs root or user namespaces to mount a 2 MiB tmpfs")
        cmd = ["unshare", "-rm"] + cmd
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "DETCORE_LOG_LEVEL": "WARNING"})
    if p.returncode == 77:
        pytest.skip(p.stdout.strip())
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    res = json.loads(p.stdout.strip().splitlines()[-1])
    # Failures happened at every step, the run index write included (it used to leave a
    # published, unindexed checkpoint that kept the disk full).
    assert res["failed_at_index"] >= 1, res
    assert res["failed"] >= 2 and res["stored"] >= 2, res


# ---- who may write what ----------------------------------------------------------------------

def modes_under(root: pathlib.Path) -> dict:
    return {str(p.relative_to(root)): p.stat().st_mode & 0o7777 for p in [root, *root.rglob("*")]}


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_off_cluster_modes_follow_the_umask_and_protect_the_index(tmp_path, umask):
    storage, run_dir = tmp_path / "ckpts", tmp_path / "run"
    env = worker_env(storage, "r", run_dir, WORKER_N=2)
    p = subprocess.run([str(program("ckpt_worker"))], env=env, capture_output=True, text=True, timeout=120,
                       preexec_fn=lambda: os.umask(umask))
    r = Run(p.stdout, p.stderr, p.returncode)
    assert len(r.ok) == 2, r.lines + [r.stderr]
    modes = modes_under(storage)
    for sid, _ in r.ok:
        # Checkpoint folders and files: the user's umask decides (no 0777 forced off-cluster).
        assert modes[sid] == 0o777 & ~umask, (sid, oct(modes[sid]))
        assert modes[f"{sid}/state.bin"] == 0o666 & ~umask
    assert modes["."] == 0o777 & ~umask
    # The run index is never writable by other users, whatever the umask.
    index = {k: v for k, v in modes.items() if k.startswith(".detcore")}
    assert index and all(v & 0o002 == 0 for v in index.values()), {k: oct(v) for k, v in index.items()}
    # A run index folder another process left writable by everyone is corrected.
    runs = storage / ".detcore" / "runs" / "r"
    os.chmod(runs, 0o777)
    r = run_worker(storage, "r", run_dir, WORKER_N=1)
    assert len(r.ok) == 1 and runs.stat().st_mode & 0o002 == 0, oct(runs.stat().st_mode)
    assert "was writable by every user" in r.stderr


def test_on_cluster_modes_are_determined_s(tmp_path, monkeypatch, detcore_lib):
    """On a cluster the shared_fs base is created as Determined creates it (0777 whatever the
    umask: every user's trials share it), checkpoint folders with the umask, and detcore's
    staging area 1777 (others may create in it, not remove)."""
    import ctypes

    from oncluster_util import FakeMaster, Lib, default_experiment_config, in_process_task_env, setup_trial

    in_process_task_env(monkeypatch)
    lib = Lib(detcore_lib)
    m = FakeMaster().start()
    old = os.umask(0o022)
    try:
        cfg = default_experiment_config(str(tmp_path / "host_shared_fs"))
        cfg["checkpoint_storage"]["storage_path"] = "team/ckpts"
        info, host, container = setup_trial(m, tmp_path, config=cfg)
        monkeypatch.setenv("DETCORE_SHARED_FS_CONTAINER_PATH", str(container))
        ctx = lib.init(info)
        h = ctypes.c_void_p()
        lib.call("det_ckpt_store_path_begin", ctx, b'{"steps_completed": 1}', False, ctypes.byref(h))
        base = host / "team" / "ckpts"
        staging_mode = (base / ".detcore-staging").stat().st_mode & 0o7777
        sid = ctypes.create_string_buffer(37)
        lib.call("det_ckpt_store_path_end", h, sid)
        lib.call("det_core_close", ctx)
    finally:
        os.umask(old)
        m.stop()
    assert base.stat().st_mode & 0o7777 == 0o777
    assert staging_mode == 0o1777, oct(staging_mode)
    assert (base / sid.value.decode()).stat().st_mode & 0o7777 == 0o755
