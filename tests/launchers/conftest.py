"""Fixtures for the tests under the real launchers: Open MPI's mpirun, and a one-node Slurm
cluster (munge with its own key and socket, slurmctld, slurmd) that these tests start in a
temporary folder and stop by PID. Run by scripts/launchers.sh; .ci/run installs the Debian
packages (openmpi-bin, libopenmpi-dev, slurm-wlm, munge)."""
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import Dict, List, Optional

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT / "tests" / "python"))
from manifests import MANIFEST, check_folder  # noqa: E402


def build_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("DETCORE_BUILD_DIR", ROOT / "build"))


WORKER = build_dir() / "tests" / "c" / "dist_worker"
MPI_WORKER = build_dir() / "tests" / "c" / "dist_worker_mpi"

# Variables a launcher sets, removed from the tests' own environment so that nothing leaks in.
LAUNCHER_VARS = re.compile(
    r"^(RANK|WORLD_SIZE|LOCAL_RANK|LOCAL_WORLD_SIZE|GROUP_RANK|GROUP_WORLD_SIZE|LOCAL_SIZE|CROSS_RANK|"
    r"CROSS_SIZE|MASTER_ADDR|MASTER_PORT|TORCHELASTIC_.*|DET_.*|DETCORE_.*|HOROVOD_.*|PMI_.*|PMIX_.*|"
    r"MPI_LOCAL.*|OMPI_.*|SLURM_.*|SBATCH_.*|SRUN_.*|SALLOC_.*)$"
)


def clean_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not LAUNCHER_VARS.match(k)}
    env["DETCORE_LOG_LEVEL"] = "warning"
    env.update(extra or {})
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def checkpoint_names(d: pathlib.Path) -> List[str]:
    """The file names of checkpoint folder `d` (named by its storage id), without detcore's
    manifest, which is checked against them first (sizes and CRC32C, computed independently)."""
    check_folder(d, d.name)
    return sorted(p.name for p in d.iterdir() if p.name != MANIFEST)


@pytest.fixture(autouse=True)
def _worker_built():
    if not WORKER.exists():
        pytest.fail(f"{WORKER} is not built; run the CMake build first")


# ---- Open MPI ---------------------------------------------------------------------------------

def need_mpirun():
    if not shutil.which("mpirun"):
        pytest.skip("Open MPI's mpirun is not installed (apt-get install openmpi-bin libopenmpi-dev)")


def mpirun(np_: int, args: List[str], env: Dict[str, str], mca: Optional[Dict[str, str]] = None,
           program: pathlib.Path = WORKER) -> subprocess.Popen:
    """`mpirun --allow-run-as-root --oversubscribe -np N program args`, stdout piped (line by line)."""
    cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", str(np_)]
    # Open MPI's session folders (left behind by the jobs the tests kill) go under the build
    # folder, not into $TMPDIR, which the suite checks for what detcore leaves.
    session = build_dir() / "tmp" / "ompi"
    session.mkdir(parents=True, exist_ok=True)
    cmd += ["--mca", "orte_tmpdir_base", str(session)]
    for k, v in (mca or {}).items():
        cmd += ["--mca", k, v]
    cmd += [str(program)] + args
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def finish(p: subprocess.Popen, timeout: float = 120) -> str:
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        raise AssertionError(f"mpirun did not finish within {timeout} s:\n{out[-4000:]}")
    return out


def read_until(p: subprocess.Popen, pattern: str, count: int, timeout: float = 60) -> List[str]:
    """Read p's output until `count` lines match `pattern`; returns every line read."""
    lines: List[str] = []
    deadline = time.time() + timeout
    seen = 0
    while seen < count:
        if time.time() > deadline:
            raise AssertionError(f"{count} lines matching {pattern!r} not seen within {timeout} s:\n" + "".join(lines))
        line = p.stdout.readline()
        if not line:
            raise AssertionError(f"output ended before {count} lines matching {pattern!r}:\n" + "".join(lines))
        lines.append(line)
        if re.search(pattern, line):
            seen += 1
    return lines


# ---- Slurm ------------------------------------------------------------------------------------

SLURM_PROGRAMS = ["munged", "slurmctld", "slurmd", "sbatch", "srun", "squeue", "scontrol", "sinfo"]


class Slurm:
    """A one-node Slurm: munge with its own key and socket, slurmctld and slurmd in the
    foreground (-D), everything under `base`; the node is this host with 6 CPUs (whatever the
    hardware: SlurmdParameters=config_overrides), so that the batch jobs of the tests (three of
    one task, one of two) run at once."""

    def __init__(self, base: pathlib.Path):
        self.base = base
        self.procs: Dict[str, subprocess.Popen] = {}
        self.conf = base / "slurm.conf"
        self.env = clean_env({"SLURM_CONF": str(self.conf)})

    def _log(self, name: str) -> str:
        p = self.base / "log" / name
        return p.read_text(errors="replace")[-3000:] if p.exists() else "(no log)"

    def logs(self) -> str:
        return "\n".join(f"--- {n}\n{self._log(n)}" for n in ("munged.log", "slurmctld.log", "slurmd.log"))

    def start(self):
        b = self.base
        for d in ("log", "state", "spool"):
            (b / d).mkdir(parents=True, exist_ok=True)
        key = b / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        sock = b / "munge.sock"
        self.procs["munged"] = subprocess.Popen(
            ["munged", "--foreground", "--force", f"--socket={sock}", f"--key-file={key}",
             f"--log-file={b / 'log' / 'munged.log'}", f"--pid-file={b / 'munged.pid'}",
             f"--seed-file={b / 'munged.seed'}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while not sock.exists():
            if time.time() > deadline or self.procs["munged"].poll() is not None:
                raise RuntimeError(f"munged did not start:\n{self.logs()}")
            time.sleep(0.05)
        host = socket.gethostname().split(".")[0]
        ctl_port = free_port()
        slurmd_port = free_port()
        self.conf.write_text(f"""\
ClusterName=detcoretest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctl_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire: how long a requeued job waits before it may run again (default 120 s).
AuthInfo=socket={sock},cred_expire=5
StateSaveLocation={b / 'state'}
SlurmdSpoolDir={b / 'spool'}
SlurmctldPidFile={b / 'slurmctld.pid'}
SlurmdPidFile={b / 'slurmd.pid'}
SlurmctldLogFile={b / 'log' / 'slurmctld.log'}
SlurmdLogFile={b / 'log' / 'slurmd.log'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
SlurmdParameters=config_overrides
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
KillWait=5
MinJobAge=600
NodeName={host} NodeAddr=127.0.0.1 CPUs=6 State=UNKNOWN
PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP
""")
        self.procs["slurmctld"] = subprocess.Popen(
            ["slurmctld", "-D", "-i", "-f", str(self.conf)], env=self.env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs["slurmd"] = subprocess.Popen(
            ["slurmd", "-D", "-f", str(self.conf)], env=self.env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while True:
            r = subprocess.run(["sinfo", "-h", "-o", "%T"], env=self.env, capture_output=True, text=True)
            if r.returncode == 0 and r.stdout.strip() == "idle":
                return
            for n, p in self.procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"{n} exited with {p.returncode}:\n{self.logs()}")
            if time.time() > deadline:
                raise RuntimeError(f"the Slurm node did not become idle: {r.stdout} {r.stderr}\n{self.logs()}")
            time.sleep(0.5)

    def stop(self):
        subprocess.run(["scancel", "--full", "--user=root"], env=self.env, capture_output=True)
        for name in ("slurmd", "slurmctld", "munged"):
            p = self.procs.get(name)
            if p is None or p.poll() is not None:
                continue
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    # -- jobs --
    def sbatch(self, script: str, args: List[str], env: Optional[Dict[str, str]] = None) -> int:
        path = self.base / f"job{time.time_ns()}.sh"
        path.write_text(script)
        path.chmod(0o755)
        e = dict(self.env)
        e.update(env or {})
        r = subprocess.run(["sbatch", "--parsable"] + args + [str(path)], env=e, capture_output=True, text=True)
        assert r.returncode == 0, f"sbatch failed: {r.stderr}\n{self.logs()}"
        return int(r.stdout.strip().split(";")[0])

    def job(self, job_id: int) -> Dict[str, str]:
        r = subprocess.run(["scontrol", "show", "job", "-o", str(job_id)], env=self.env, capture_output=True,
                           text=True)
        assert r.returncode == 0, r.stderr
        return dict(kv.split("=", 1) for kv in r.stdout.split() if "=" in kv)

    def wait(self, job_id: int, timeout: float, until=None) -> Dict[str, str]:
        """Wait until the job ends (or `until(job)` holds); returns scontrol's view of it."""
        deadline = time.time() + timeout
        while True:
            j = self.job(job_id)
            done = j.get("JobState") in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL",
                                         "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL", "DEADLINE")
            if (until(j) if until else done):
                return j
            if time.time() > deadline:
                raise AssertionError(f"job {job_id} not done after {timeout} s: {j}\n{self.logs()}")
            time.sleep(0.5)


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    missing = [p for p in SLURM_PROGRAMS if not shutil.which(p)]
    if missing:
        pytest.skip(f"Slurm/munge not installed ({', '.join(missing)} missing): apt-get install slurm-wlm munge")
    if os.geteuid() != 0:
        pytest.skip("the one-node Slurm of these tests runs its daemons as root (SlurmUser=root)")
    base = pathlib.Path(tmp_path_factory.mktemp("slurm"))
    s = Slurm(base)
    try:
        s.start()
        yield s
    finally:
        s.stop()
