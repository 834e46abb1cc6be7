"""detcore under the real Open MPI `mpirun` (Debian 12: Open MPI 4.1), without any wrapper:
tests/c/dist_worker.c reads its ranks with det_distributed_from_env(DET_LAUNCHER_AUTO)."""
import json
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import (MPI_WORKER, WORKER, checkpoint_names, clean_env, finish, free_port, mpirun, need_mpirun,
                      read_until)

MiB = 1 << 20


@pytest.fixture(autouse=True)
def _need_mpirun():
    need_mpirun()


def results(out: str, what: str):
    """{rank: fields} from `RESULT <rank> <what> k=v ...` lines."""
    got = {}
    for m in re.finditer(rf"^RESULT (\d+) {what}\b(.*)$", out, re.M):
        got[int(m.group(1))] = dict(kv.split("=", 1) for kv in m.group(2).split() if "=" in kv)
    return got


def test_ranks_match_open_mpi(tmp_path):
    """Rank, size and local rank are Open MPI's; the four processes of one node are one node
    (OMPI_COMM_WORLD_NODE_RANK, 0…3 here, is not a node index), and one job identity."""
    out = finish(mpirun(4, ["ranks"], clean_env({"DIST_WORK": str(tmp_path)})))
    r = results(out, "ranks")
    assert sorted(r) == [0, 1, 2, 3], out
    for rank, f in r.items():
        assert f["rank"] == f["OMPI_COMM_WORLD_RANK"] == str(rank), f
        assert f["size"] == f["OMPI_COMM_WORLD_SIZE"] == "4", f
        assert f["local_rank"] == f["OMPI_COMM_WORLD_LOCAL_RANK"], f
        assert f["local_size"] == f["OMPI_COMM_WORLD_LOCAL_SIZE"] == "4", f
        assert (f["cross_rank"], f["cross_size"]) == ("0", "1"), f
        assert f["job"].startswith("openmpi:"), f
    assert len({f["job"] for f in r.values()}) == 1, r
    assert {f["OMPI_COMM_WORLD_NODE_RANK"] for f in r.values()} == {"0", "1", "2", "3"}


def test_collectives(tmp_path):
    out = finish(mpirun(4, ["collectives", str(4 * MiB)], clean_env({"DIST_WORK": str(tmp_path)})), 300)
    assert sorted(results(out, "ok")) == [0, 1, 2, 3], out


def _train_env(tmp_path, run="run"):
    return clean_env({"DIST_WORK": str(tmp_path), "DIST_STORAGE": str(tmp_path / "ckpts"), "DIST_RUN": run})


def _check_checkpoint(tmp_path, out, n=4):
    """Every rank stopped at the same step and stored the same checkpoint, which holds every
    rank's shard; returns (step, id)."""
    stopped = results(out, "preempted")
    assert sorted(stopped) == list(range(n)), out
    steps = {f["step"] for f in stopped.values()}
    assert len(steps) == 1, f"ranks stopped at different steps: {stopped}"
    stored = results(out, "stored")
    ids = {f["id"] for f in stored.values()}
    assert len(ids) == 1 and len(stored) == n, out
    sid = ids.pop()
    d = tmp_path / "ckpts" / sid
    assert checkpoint_names(d) == sorted(["metadata.json"] + [f"rank{r}.txt" for r in range(n)])
    step = int(steps.pop())
    assert json.loads((d / "metadata.json").read_text())["steps_completed"] == step
    for r in range(n):
        assert (d / f"rank{r}.txt").read_text() == f"step {step}\n"
    return step, sid


def _resume(tmp_path, step, sid, n=4, program=WORKER):
    """The same command again resumes every rank from its own shard, then finishes."""
    out = finish(mpirun(n, ["train", "+3", "5"], _train_env(tmp_path), program=program))
    resumed = results(out, "resumed")
    assert sorted(resumed) == list(range(n)), out
    assert all(f["step"] == str(step) and f["id"] == sid for f in resumed.values()), resumed
    assert {f["step"] for f in results(out, "finished").values()} == {str(step + 3)}, out


def test_sigusr1_to_mpirun_preempts_every_rank_at_one_step(tmp_path):
    """mpirun forwards SIGUSR1 to every process: all stop at the same step, the sharded
    checkpoint has every rank's file, and the same command resumes from it."""
    p = mpirun(4, ["train", "1000000", "5"], _train_env(tmp_path))
    head = read_until(p, r"^READY", 4)
    time.sleep(0.5)
    p.send_signal(signal.SIGUSR1)
    out = "".join(head) + finish(p)
    assert p.returncode == 0, out
    step, sid = _check_checkpoint(tmp_path, out)
    _resume(tmp_path, step, sid)


def test_sigterm_to_mpirun_with_a_grace_period(tmp_path):
    """SIGTERM to mpirun: Open MPI 4.1 sends the processes SIGCONT, then SIGTERM
    odls_base_sigkill_timeout seconds later, then SIGKILL as long again. With a grace of 10 s
    every rank stops at the same step and the checkpoint is published before the SIGKILL."""
    p = mpirun(4, ["train", "1000000", "5"], _train_env(tmp_path), mca={"odls_base_sigkill_timeout": "10"})
    head = read_until(p, r"^READY", 4)
    time.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    out = "".join(head) + finish(p, 120)
    step, sid = _check_checkpoint(tmp_path, out)
    _resume(tmp_path, step, sid)


def test_mpi_init_and_finalize_around_detcore(tmp_path):
    """A program that calls MPI_Init before det_core_init and MPI_Finalize after det_core_close
    (and an MPI_Allreduce beside detcore's collectives): preempted by SIGUSR1, resumed."""
    if not MPI_WORKER.exists():
        pytest.skip(f"{MPI_WORKER} not built (CMake found no MPI; apt-get install libopenmpi-dev)")
    p = mpirun(4, ["train", "1000000", "5"], _train_env(tmp_path), program=MPI_WORKER)
    head = read_until(p, r"^READY", 4)
    p.send_signal(signal.SIGUSR1)
    out = "".join(head) + finish(p)
    assert p.returncode == 0, out
    step, sid = _check_checkpoint(tmp_path, out)
    _resume(tmp_path, step, sid, program=MPI_WORKER)


def _children(pid):
    """The processes whose parent is `pid` (from /proc: no procps needed)."""
    kids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = open(f"/proc/{d}/stat").read()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after the last ")".
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            kids.append(int(d))
    return kids


def _ranks_of(mpirun_pid):
    """{rank: pid} of mpirun's children (on one node it starts the processes itself)."""
    ranks = {}
    for pid in _children(mpirun_pid):
        try:
            env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        for kv in env:
            if kv.startswith(b"OMPI_COMM_WORLD_RANK="):
                ranks[int(kv.split(b"=", 1)[1])] = pid
    return ranks


@pytest.mark.parametrize("victim", [2, 0])
def test_killed_rank_fails_the_others_within_seconds(victim, tmp_path):
    """kill -9 of a worker, then of the chief: every other rank fails with DET_ERR_DISTRIBUTED
    naming it within seconds (mpirun would only signal them 30 s later here)."""
    p = mpirun(4, ["kill"], clean_env({"DIST_WORK": str(tmp_path), "DIST_TIMEOUT": "600"}),
               mca={"odls_base_sigkill_timeout": "30"})
    head = read_until(p, r"^READY", 4)
    ranks = _ranks_of(p.pid)
    assert sorted(ranks) == [0, 1, 2, 3], ranks
    time.sleep(0.3)
    t0 = time.time()
    os.kill(ranks[victim], signal.SIGKILL)
    # Each survivor writes its result to a file too: mpirun stops forwarding output once it
    # aborts the job.
    files = [tmp_path / f"kill-result-{r}.txt" for r in range(4) if r != victim]
    while not all(f.exists() and f.read_text().endswith("\n") for f in files) and time.time() - t0 < 30:
        time.sleep(0.05)
    elapsed = time.time() - t0
    os.killpg(p.pid, signal.SIGKILL)
    out = "".join(head) + p.communicate()[0]
    texts = "".join(f.read_text() for f in files if f.exists())
    assert elapsed < 10, f"the others took {elapsed:.1f} s:\n{texts}\n{out}"
    name = "the chief (rank 0)" if victim == 0 else f"rank {victim}"
    failed = re.findall(r"^RESULT (\d+) failed status=(\S+) after=\d+ msg=(.*)$", texts, re.M)
    assert sorted(int(r) for r, _, _ in failed) == sorted(set(range(4)) - {victim}), texts
    for r, status, msg in failed:
        assert status == "DET_ERR_DISTRIBUTED" and name in msg, f"rank {r}: {status} {msg}"


def _two_jobs(tmp_path, env_of):
    """Two 2-rank jobs started at the same moment, each storing a sharded checkpoint."""
    procs = []
    for job in ("a", "b"):
        e = _train_env(tmp_path / job, run=f"job-{job}")
        e.update(env_of(job))
        procs.append(mpirun(2, ["train", "20", "5"], e))
    outs = [finish(p, 180) for p in procs]
    for job, p, out in zip("ab", procs, outs):
        assert p.returncode == 0, f"job {job}:\n{out}"
        stored = results(out, "stored")
        ids = {f["id"] for f in stored.values()}
        assert len(stored) == 2 and len(ids) == 1, out
        d = tmp_path / job / "ckpts" / ids.pop()
        assert checkpoint_names(d) == ["metadata.json", "rank0.txt", "rank1.txt"]
    return outs


def test_two_jobs_same_moment_same_port(tmp_path):
    """Two mpirun jobs on one machine at the same moment with the same DETCORE_CHIEF_PORT: the
    second chief waits for the port, each rank joins only its own job's chief (refused by the
    other's, naming both jobs), and both jobs complete with every shard."""
    port = str(free_port())
    _two_jobs(tmp_path, lambda job: {"DETCORE_CHIEF_PORT": port})


def test_two_jobs_same_moment_automatic_ports(tmp_path):
    """Without a pinned port each job's chief listens on a port derived from its identity."""
    _two_jobs(tmp_path, lambda job: {})


def test_ranks_with_different_storage_all_fail(tmp_path):
    """Every rank errors at init, naming what each uses; nothing is stored or reported."""
    cmd = f'DIST_STORAGE={tmp_path}/ckpts-$OMPI_COMM_WORLD_RANK exec {WORKER} train 5 1'
    p = subprocess.Popen(["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "2", "sh", "-c", cmd],
                         env=clean_env({"DIST_WORK": str(tmp_path)}), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, start_new_session=True)
    out = finish(p)
    assert p.returncode != 0, out
    fails = re.findall(r"rank -?\d+: det_core_init\(&o, &ctx\): DET_ERR_INVALID_ARGUMENT: .*$", out, re.M)
    assert len(fails) == 2, out
    for f in fails:
        assert "do not use the same checkpoint storage" in f, f
        assert f"rank(s) [0]: folder {tmp_path}/ckpts-0" in f and f"rank(s) [1]: folder {tmp_path}/ckpts-1" in f, f
    for r in (0, 1):
        d = tmp_path / f"ckpts-{r}"
        assert not d.exists() or not [x for x in d.iterdir() if not x.name.startswith(".")], list(d.iterdir())


def test_node_local_folders_lose_no_shard_silently(tmp_path):
    """Ranks whose storage path is the same but node-local (here: each rank in its own mount
    namespace with a tmpfs at that path): the sharded store fails on every rank, naming the
    ranks whose files the chief cannot publish, and nothing is reported."""
    base = tmp_path / "nodelocal"
    base.mkdir()
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs none {base}"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make mount namespaces here: {probe.stderr.decode().strip()}")
    cmd = f'mount -t tmpfs none {base} && exec {WORKER} train 3 1'
    p = subprocess.Popen(["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "3",
                          "unshare", "-m", "sh", "-c", cmd],
                         env=clean_env({"DIST_WORK": str(tmp_path), "DIST_STORAGE": str(base / "ckpts")}),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    out = finish(p)
    failed = results(out, "failed")
    assert sorted(failed) == [0, 1, 2], out
    assert results(out, "stored") == {}, out
    for r in range(3):
        line = re.search(rf"^RESULT {r} failed (.*)$", out, re.M).group(1)
        assert "lacks 2 file(s) of rank(s) [1, 2]" in line and '"rank1.txt"' in line, line
        metrics = tmp_path / f"rank{r}" / "metrics.jsonl"
        assert "checkpoint" not in (metrics.read_text() if metrics.exists() else ""), metrics.read_text()
