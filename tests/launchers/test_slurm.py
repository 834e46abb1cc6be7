"""detcore under a real one-node Slurm (Debian 12: Slurm 22.05) started by the `slurm` fixture:
srun steps, a batch script of several tasks without srun, preemption from `--signal` and from
the job's time limit (Slurm 22.05 exports no SLURM_JOB_END_TIME), and opt-in requeue."""
import json
import re
import subprocess
import time

import pytest

from conftest import WORKER, checkpoint_names, free_port


def results(out: str, what: str):
    got = {}
    for m in re.finditer(rf"^RESULT (\d+) {what}\b(.*)$", out, re.M):
        got[int(m.group(1))] = dict(kv.split("=", 1) for kv in m.group(2).split() if "=" in kv)
    return got


def srun(slurm, args, tmp_path, timeout=120):
    env = dict(slurm.env)
    env.update({"DIST_WORK": str(tmp_path)})
    r = subprocess.run(["srun", "-n", "2", "--time=2"] + args, env=env, capture_output=True, text=True,
                       timeout=timeout)
    return r.returncode, r.stdout + r.stderr


def test_srun_ranks_and_collectives(slurm, tmp_path):
    """`srun -n 2`: ranks are Slurm's, the job identity is the job and step, and the
    collectives work."""
    rc, out = srun(slurm, [str(WORKER), "ranks"], tmp_path)
    assert rc == 0, out + slurm.logs()
    r = results(out, "ranks")
    assert sorted(r) == [0, 1], out
    for rank, f in r.items():
        assert f["rank"] == f["SLURM_PROCID"] == str(rank), f
        assert f["local_rank"] == f["SLURM_LOCALID"], f
        assert (f["size"], f["local_size"], f["cross_rank"], f["cross_size"]) == ("2", "2", "0", "1"), f
    jobs = {f["job"] for f in r.values()}
    assert len(jobs) == 1 and re.fullmatch(r"slurm:\d+\.0", jobs.pop()), r
    rc, out = srun(slurm, [str(WORKER), "collectives", str(1 << 20)], tmp_path)
    assert rc == 0, out
    assert sorted(results(out, "ok")) == [0, 1], out


def test_two_steps_at_once_on_one_port(slurm, tmp_path):
    """Two `srun -n 2` steps started at the same moment on one machine with the same
    DETCORE_CHIEF_PORT: each rank joins only its own step's chief (the job identity is the job
    and step), so both complete, each checkpoint with both of its shards and nothing of the
    other's."""
    port = str(free_port())
    procs = {}
    for name in ("a", "b"):
        d = tmp_path / name
        d.mkdir()
        env = dict(slurm.env)
        # DET_HALT_SECONDS=0: the 2-minute limit is within the default 120 s margin.
        env.update({"DIST_WORK": str(d), "DIST_STORAGE": str(tmp_path / "ckpts"), "DIST_RUN": f"step-{name}",
                    "DETCORE_CHIEF_PORT": port, "DET_HALT_SECONDS": "0"})
        procs[name] = subprocess.Popen(["srun", "-n", "2", "--time=2", str(WORKER), "train", "30", "5"], env=env,
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for name, p in procs.items():
        out, _ = p.communicate(timeout=180)
        assert p.returncode == 0, f"step {name}:\n{out}"
        stored = results(out, "stored")
        ids = {f["id"] for f in stored.values()}
        assert sorted(stored) == [0, 1] and len(ids) == 1, out
        ck = tmp_path / "ckpts" / ids.pop()
        assert checkpoint_names(ck) == ["metadata.json", "rank0.txt", "rank1.txt"], out
        assert {(ck / f"rank{r}.txt").read_text() for r in (0, 1)} == {"step 30\n"}


def test_batch_script_of_two_tasks_without_srun_fails_fast(slurm, tmp_path):
    """`sbatch --ntasks=2` whose script runs the program itself (no srun): refused at once,
    saying to use srun, instead of waiting for a rank that never starts."""
    out_file = tmp_path / "out.txt"
    t0 = time.time()
    job = slurm.sbatch(f"#!/bin/bash\nexec {WORKER} ranks\n",
                       ["--ntasks=2", "--time=1", f"--output={out_file}"], {"DIST_WORK": str(tmp_path)})
    j = slurm.wait(job, 60)
    elapsed = time.time() - t0
    out = out_file.read_text()
    assert j["JobState"] == "FAILED", (j, out)
    assert elapsed < 30, f"{elapsed:.0f} s"
    assert f"runs in the batch script of Slurm job {job} (SLURM_NTASKS=2 but no SLURM_STEP_ID)" in out, out
    assert "srun" in out, out


TRAIN = f"""#!/bin/bash
# `exec`: the program replaces the batch shell, so --signal=B: reaches it.
exec {WORKER} train "$@"
"""

# First run: preempted (by its end time) after ~10 s, with a margin of 50 s of the 60 s limit.
# Later runs (requeued): a few more steps and done (margin 0: no preemption, no requeue).
REQUEUE = f"""#!/bin/bash
if [ "${{SLURM_RESTART_COUNT:-0}}" = 0 ]; then
  export DET_HALT_SECONDS=50
  exec {WORKER} train 1000000 10
else
  export DET_HALT_SECONDS=0
  exec {WORKER} train +5 10
fi
"""


# Several tasks: srun starts them; with `exec`, srun is the batch step and forwards the signal.
SRUN_TRAIN = f"""#!/bin/bash
exec srun {WORKER} train "$@"
"""


@pytest.fixture(scope="module")
def batch_jobs(slurm, tmp_path_factory):
    """The batch jobs, submitted together (the node has room for them all) so that their minute
    of run time is spent once."""
    base = tmp_path_factory.mktemp("batch")
    jobs = {}

    def submit(name, script, args, env):
        d = base / name
        d.mkdir()
        e = {"DIST_WORK": str(d), "DIST_STORAGE": str(d / "ckpts"), "DIST_RUN": name,
             "DETCORE_LOG_LEVEL": "info"}
        e.update(env)
        out = d / "out.txt"
        jobs[name] = (slurm.sbatch(script, ["--time=1", f"--output={out}", "--open-mode=append"] + args, e), d, out,
                      time.time())

    # Preempted by Slurm's signal to the batch step: sent when at most 10 s are left (Slurm
    # checks every 30 s, so up to 40 s before the end).
    submit("signal", TRAIN, ["--ntasks=1", "--signal=B:USR1@10", "--no-requeue"], {"DET_HALT_SECONDS": "0"})
    submit("srun-signal", SRUN_TRAIN, ["--ntasks=2", "--signal=B:USR1@10", "--no-requeue"], {"DET_HALT_SECONDS": "0"})
    submit("endtime", TRAIN, ["--ntasks=1", "--no-requeue"], {"DET_HALT_SECONDS": "45"})
    submit("requeue", REQUEUE, ["--ntasks=1", "--requeue"], {"DETCORE_SLURM_REQUEUE": "1"})
    return jobs


def _stopped(d, out_text, how, n=1):
    """The n ranks stopped by preemption at one step, with a sharded checkpoint holding every
    rank's shard."""
    stopped = results(out_text, how)
    assert sorted(stopped) == list(range(n)), out_text
    steps = {int(f["step"]) for f in stopped.values()}
    assert len(steps) == 1, f"ranks stopped at different steps: {stopped}"
    step = steps.pop()
    sid = re.search(rf"^RESULT 0 stored step={step} id=(\S+)$", out_text, re.M).group(1)
    ck = d / "ckpts" / sid
    assert checkpoint_names(ck) == sorted(["metadata.json"] + [f"rank{r}.txt" for r in range(n)])
    for r in range(n):
        assert (ck / f"rank{r}.txt").read_text() == f"step {step}\n"
    assert json.loads((ck / "metadata.json").read_text())["steps_completed"] == step
    return step, sid


def test_signal_to_batch_step_preempts_and_checkpoints(slurm, batch_jobs):
    """`sbatch --signal=B:USR1@10` with `exec` in the script: the program checkpoints and exits
    0 before the time limit; without opt-in requeue the job is not requeued."""
    job, d, out, t0 = batch_jobs["signal"]
    j = slurm.wait(job, 120)
    text = out.read_text()
    assert j["JobState"] == "COMPLETED", (j, text)
    assert "received SIGUSR1" in text, text
    _stopped(d, text, "preempted")
    assert j["Restarts"] == "0", j


def test_signal_reaches_every_srun_task(slurm, batch_jobs):
    """A two-task job run by `exec srun` in the batch script: srun forwards the batch step's
    SIGUSR1 to both tasks, which stop at the same step with both shards in the checkpoint."""
    job, d, out, t0 = batch_jobs["srun-signal"]
    j = slurm.wait(job, 120)
    text = out.read_text()
    assert j["JobState"] == "COMPLETED", (j, text)
    _stopped(d, text, "preempted", n=2)


def test_end_time_from_slurm_without_det_end_time(slurm, batch_jobs):
    """No DET_END_TIME and no SLURM_JOB_END_TIME (Slurm 22.05 sets none): detcore asks squeue
    for the end time at init and preempts DET_HALT_SECONDS=45 before it, ~15 s into the job."""
    job, d, out, t0 = batch_jobs["endtime"]
    j = slurm.wait(job, 120)
    text = out.read_text()
    assert j["JobState"] == "COMPLETED", (j, text)
    assert "(from squeue; SLURM_JOB_END_TIME is not set)" in text, text
    assert "the job's end time is near" in text, text
    _stopped(d, text, "preempted")
    assert time.time() - t0 < 55, "preempted only at the time limit"


def test_opt_in_requeue_resumes(slurm, batch_jobs):
    """DETCORE_SLURM_REQUEUE=1: after its preemption checkpoint the job asks Slurm to requeue
    it; it runs again under the same job id and resumes from that checkpoint."""
    job, d, out, t0 = batch_jobs["requeue"]
    j = slurm.wait(job, 240, until=lambda j: j.get("JobState") == "COMPLETED" and j.get("Restarts") != "0")
    text = out.read_text()
    assert j["Restarts"] == "1", (j, text)
    assert f"asking Slurm to requeue job {job} after its preemption checkpoint" in text, text
    assert "DUE TO JOB REQUEUE" in text, text
    step, sid = _stopped(d, text, "preempted")
    resumed = results(text, "resumed")
    assert resumed[0]["step"] == str(step) and resumed[0]["id"] == sid, text
    assert results(text, "finished")[0]["step"] == str(step + 5), text
