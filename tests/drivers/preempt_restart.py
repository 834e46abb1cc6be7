#!/usr/bin/env python3
"""Preempt → restart check for a detcore training program (run by ctest for the examples).

1. Runs the program uninterrupted in a fresh run (its own checkpoint storage and run folder).
2. Runs it again in a second fresh run, waits for its first "checkpoint ..." line on stdout and
   sends it SIGTERM (detcore's default preemption signal); the program must save a checkpoint and
   exit 0 ("preempted at step ...").
3. Restarts it in that run; it must resume from the checkpoint ("resumed from checkpoint ...")
   and finish.
4. The final result of 2+3 must equal that of 1: the "... checksum <hex>" on the last line, and
   every --artifact file byte for byte.
5. metrics.jsonl of 2+3 holds two runs, each opened by a "run_start" record: the first starting
   fresh, the second resuming from the preemption checkpoint. Steps reported twice (after the
   checkpoint, before the preemption) are read as a reader should: the last record per step wins.

Usage: preempt_restart.py [--hparams JSON] [--artifact NAME]... [--expect-metric NAME]... PROGRAM [ARGS...]
"""
import argparse
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

CHECKSUM = re.compile(r"checksum\s+([0-9a-fA-F]+)")


def fail(msg: str) -> None:
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def env_for(run: pathlib.Path, name: str, hparams: str) -> dict:
    env = dict(os.environ)
    for k in ("DET_HALT_FILE", "DET_END_TIME", "SLURM_JOB_END_TIME", "SLURM_JOB_ID", "DET_CLUSTER_INFO_DIR"):
        env.pop(k, None)
    env.update(
        XDG_DATA_HOME=str(run / "data"),
        DET_RUN_NAME=name,
        DETCORE_RUN_DIR=str(run / "run"),
        DET_HPARAMS=hparams,
        DET_CLUSTER_INFO_DIR=str(run / "no-cluster-info"),
        DETCORE_LOG_LEVEL="warning",
    )
    return env


SKIP = 77  # a program that cannot run here (e.g. no GPU) exits 77; so does this driver


def run_to_end(cmd, cwd, env, timeout):
    p = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
    sys.stdout.write(f"--- {' '.join(cmd)} (exit {p.returncode})\n{p.stdout}")
    if p.stderr.strip():
        sys.stdout.write(f"--- stderr\n{p.stderr}")
    if p.returncode == SKIP:
        print("SKIPPED: the program cannot run on this machine")
        sys.exit(SKIP)
    if p.returncode != 0:
        fail(f"{cmd[0]} exited with {p.returncode}")
    return p.stdout


def run_and_preempt(cmd, cwd, env, timeout):
    """Start the program, SIGTERM it after its first checkpoint line, return its output."""
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    out = []
    sent = False
    deadline = time.monotonic() + timeout
    for line in p.stdout:
        out.append(line)
        if not sent and line.startswith("checkpoint "):
            p.send_signal(signal.SIGTERM)
            sent = True
        if time.monotonic() > deadline:
            p.kill()
            fail("the preempted run took too long")
    rc = p.wait()
    err = p.stderr.read()
    text = "".join(out)
    sys.stdout.write(f"--- {' '.join(cmd)} (SIGTERM after its first checkpoint; exit {rc})\n{text}")
    if err.strip():
        sys.stdout.write(f"--- stderr\n{err}")
    if not sent:
        fail("the program printed no 'checkpoint ...' line to preempt after")
    if rc != 0:
        fail(f"the preempted program exited with {rc}, expected 0 after saving a checkpoint")
    if "preempted at step" not in text:
        fail("the program finished before the preemption reached it; give it more steps (hparams)")
    return text


def read_metrics(path: pathlib.Path):
    """metrics.jsonl as (run_start records, {(group, steps_completed): metrics}) where a step
    reported by several runs keeps the record of the last run (a restarted run repeats the steps
    since its checkpoint)."""
    starts, latest = [], {}
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if rec["type"] == "run_start":
            starts.append(rec)
        elif rec["type"] == "metrics":
            latest[(rec["group"], rec["steps_completed"])] = rec["metrics"]
    return starts, latest


def checksum(text: str) -> str:
    found = CHECKSUM.findall(text)
    if not found:
        fail("no 'checksum <hex>' in the output")
    return found[-1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hparams", default="{}")
    ap.add_argument("--artifact", action="append", default=[], help="a file the program writes into its cwd")
    ap.add_argument("--expect-metric", action="append", default=[], help="a metric name metrics.jsonl must hold")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--keep", action="store_true", help="keep the temporary folders")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    if not a.cmd:
        ap.error("no program given")
    json.loads(a.hparams)  # fail early on a typo
    cmd = [str(pathlib.Path(a.cmd[0]).resolve())] + a.cmd[1:]

    base = pathlib.Path(tempfile.mkdtemp(prefix="detcore-preempt-", dir=os.environ.get("TMPDIR")))
    try:
        full, split = base / "uninterrupted", base / "preempted"
        for d in (full, split):
            d.mkdir()
        ref = run_to_end(cmd, full, env_for(full, "uninterrupted", a.hparams), a.timeout)
        if "resumed from checkpoint" in ref:
            fail("the uninterrupted run resumed from an old checkpoint; its storage was not fresh")

        env = env_for(split, "preempted", a.hparams)
        first = run_and_preempt(cmd, split, env, a.timeout)
        second = run_to_end(cmd, split, env, a.timeout)
        m = re.search(r"checkpoint (\S+) at step (\d+) \(preempted\)", first)
        if not m:
            fail("the preempted run printed no 'checkpoint <id> at step <n> (preempted)' line")
        if f"resumed from checkpoint {m.group(1)}" not in second:
            fail(f"the restart did not resume from the preemption checkpoint {m.group(1)}")

        want, got = checksum(ref), checksum(second)
        if want != got:
            fail(f"checksum after preempt+restart {got} != uninterrupted {want}")
        for name in a.artifact:
            x, y = full / name, split / name
            if not x.exists() or not y.exists():
                fail(f"artifact {name} missing (uninterrupted: {x.exists()}, restarted: {y.exists()})")
            if x.read_bytes() != y.read_bytes():
                fail(f"artifact {name} differs between the uninterrupted and the restarted run")
        starts, latest = read_metrics(split / "run" / "metrics.jsonl")
        resumed = [s["resumes_from"] for s in starts]
        if len(starts) != 2 or resumed[0] is not None or (resumed[1] or {}).get("storage_id") != m.group(1):
            fail(f"metrics.jsonl should hold two run_start records, fresh then resuming from {m.group(1)}: {resumed}")
        if resumed[1].get("steps_completed") != int(m.group(2)):
            fail(f"the second run_start says steps_completed={resumed[1].get('steps_completed')}, expected {m.group(2)}")
        for metric in a.expect_metric:
            if not any(metric in metrics for metrics in latest.values()):
                fail(f"metric {metric!r} not in {split / 'run' / 'metrics.jsonl'}")
        print(f"OK: preempted at step {m.group(2)}, resumed, final checksum {got} equals the uninterrupted run's")
    finally:
        if a.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
