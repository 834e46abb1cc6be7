"""Launch N copies of a test program with the environment a launcher would give them
(torchrun, Open MPI, Slurm), as if they ran on `nodes` machines (all on this one, on loopback)."""
import os
import socket
import subprocess
from typing import Dict, List


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launcher_env(launcher: str, rank: int, size: int, nodes: int) -> Dict[str, str]:
    """The variables each launcher's documentation says it exports (Open MPI: the
    OMPI_COMM_WORLD_* of mpirun(1), NODE_RANK being the process's rank among all processes on its
    node; Slurm: srun's output environment, SLURM_STEP_ID included). Placement is by blocks of
    `size // nodes` ranks, the default of mpirun and srun."""
    local_size = size // nodes
    local_rank = rank % local_size
    node = rank // local_size
    if launcher == "torch":
        return {
            "RANK": str(rank), "WORLD_SIZE": str(size), "LOCAL_RANK": str(local_rank),
            "LOCAL_WORLD_SIZE": str(local_size), "GROUP_RANK": str(node), "GROUP_WORLD_SIZE": str(nodes),
            "MASTER_ADDR": "127.0.0.1",
        }
    if launcher == "openmpi":
        return {
            "OMPI_COMM_WORLD_RANK": str(rank), "OMPI_COMM_WORLD_SIZE": str(size),
            "OMPI_COMM_WORLD_LOCAL_RANK": str(local_rank), "OMPI_COMM_WORLD_LOCAL_SIZE": str(local_size),
            "OMPI_COMM_WORLD_NODE_RANK": str(local_rank), "DET_CHIEF_IP": "127.0.0.1",
        }
    if launcher == "slurm":
        return {
            "SLURM_PROCID": str(rank), "SLURM_NTASKS": str(size), "SLURM_LOCALID": str(local_rank),
            "SLURM_NODEID": str(node), "SLURM_NNODES": str(nodes), "SLURM_JOB_NODELIST": "localhost",
            "SLURM_JOB_ID": "4242", "SLURM_STEP_ID": "0", "SLURM_STEP_NUM_TASKS": str(size),
            "SLURM_STEP_NUM_NODES": str(nodes),
        }
    raise ValueError(launcher)


LAUNCHER_VARS = [
    "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE", "LOCAL_SIZE",
    "CROSS_RANK", "CROSS_SIZE", "MASTER_ADDR", "DET_CHIEF_IP", "HOROVOD_RANK", "PMI_RANK",
    "OMPI_COMM_WORLD_RANK", "SLURM_PROCID", "SLURM_JOB_ID", "SLURM_STEP_ID", "SLURM_NTASKS", "SLURM_STEP_NUM_TASKS",
    "SLURM_STEP_NUM_NODES", "SLURM_NNODES", "PMIX_NAMESPACE", "TORCHELASTIC_RUN_ID", "MASTER_PORT", "DETCORE_JOB_ID",
    "DETCORE_CHIEF_PORT",
]


def launch(program: str, args: List[str], size: int, launcher: str = "torch", nodes: int = 1,
           env: Dict[str, str] = None, work: str = "/tmp", rank_env=None) -> List[subprocess.Popen]:
    """`rank_env(rank, node)` may add variables for one rank (e.g. a per-node TMPDIR)."""
    port = free_port()
    procs = []
    for rank in range(size):
        e = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS}
        e.update(launcher_env(launcher, rank, size, nodes))
        e["DETCORE_CHIEF_PORT"] = str(port)
        e["DIST_WORK"] = work
        e["DETCORE_LOG_LEVEL"] = "warning"
        e.update(env or {})
        if rank_env:
            e.update(rank_env(rank, rank // (size // nodes)))
        procs.append(subprocess.Popen([program] + args, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    return procs


def results(procs, timeout=300):
    """Wait for all; return [(returncode, stdout, stderr)] in rank order."""
    out = []
    for p in procs:
        try:
            o, e = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        out.append((p.returncode, o, e))
    return out
