"""`core_context.distributed` (det_dist_*, det_distributed_*): where this process stands in the
job, and collectives over picklable objects.

As in Python, a DistributedContext describes the ranks and is passed to `detcore.init(distributed=...)`;
it then becomes `core_context.distributed` and its collectives run over detcore's transport (the
chief listens on `chief_ip:port`). Unlike Python, a DistributedContext that was never passed to
init() has no transport: its collectives raise StateError."""
import ctypes
import os
import pickle
from typing import TYPE_CHECKING, Any, List, Optional

from detcore import _enums, _errors
from detcore._lib import DistributedConfig, lib, to_c

if TYPE_CHECKING:
    from detcore._context import Context


class DistributedContext:
    def __init__(
        self,
        *,
        rank: int,
        size: int,
        local_rank: int,
        local_size: int,
        cross_rank: int,
        cross_size: int,
        chief_ip: Optional[str] = None,
        port: Optional[int] = None,
        connect_timeout: Optional[float] = None,
        collective_timeout: Optional[float] = None,
        pub_port: Optional[int] = None,
        pull_port: Optional[int] = None,
        port_offset: int = 0,
        force_tcp: bool = False,
        job_id: Optional[str] = None,
    ) -> None:
        """Python's arguments, plus detcore's. detcore uses one port (`port`, or Python's
        `pub_port`; None: pinned by DETCORE_CHIEF_PORT, else chosen from the job identity);
        `pull_port`, `port_offset` and `force_tcp` are accepted and ignored. `job_id` is the
        job's identity, the same on every rank (None: DETCORE_JOB_ID, else none); ranks and
        chiefs of different jobs refuse each other."""
        self.rank = int(rank)
        self.size = int(size)
        self.local_rank = int(local_rank)
        self.local_size = int(local_size)
        self.cross_rank = int(cross_rank)
        self.cross_size = int(cross_size)
        self.chief_ip = chief_ip
        self.port = port if port is not None else pub_port
        self.connect_timeout = connect_timeout
        self.collective_timeout = collective_timeout
        self.job_id = job_id
        self._ctx: Optional["Context"] = None

    # ---- construction from launchers ----
    @classmethod
    def from_env(
        cls, launcher: Any = _enums.Launcher.AUTO, chief_ip: Optional[str] = None
    ) -> "DistributedContext":
        """(detcore) The ranks as the launcher exported them: torchrun, DeepSpeed, Horovod, Open
        MPI, MPICH/PMI, Slurm, or DETERMINED (Determined's rendezvous files on-cluster: one
        container per node, LOCAL_RANK/LOCAL_WORLD_SIZE within it). AUTO: the first present;
        on-cluster without a launcher's variables DETERMINED; else rank 0 of 1. The job identity
        comes from DETCORE_JOB_ID, else the launcher (Slurm job and step, Open MPI's PMIx
        namespace, torchrun's run id, ...)."""
        cfg = DistributedConfig()
        L = lib()
        L.call("det_distributed_config_default", ctypes.byref(cfg), ctypes.sizeof(cfg))
        L.call("det_distributed_from_env", _enums.code(_enums.Launcher, launcher, "launcher"), ctypes.byref(cfg))
        return cls(
            rank=cfg.rank,
            size=cfg.size,
            local_rank=cfg.local_rank,
            local_size=cfg.local_size,
            cross_rank=cfg.cross_rank,
            cross_size=cfg.cross_size,
            chief_ip=chief_ip or (cfg.chief_ip.decode() if cfg.chief_ip else None),
            port=cfg.port or None,
            job_id=cfg.job_id.decode() if cfg.job_id else None,
        )

    @classmethod
    def from_torch_distributed(cls, chief_ip: Optional[str] = None) -> "DistributedContext":
        return cls.from_env(_enums.Launcher.TORCH, chief_ip)

    @classmethod
    def from_deepspeed(cls, chief_ip: Optional[str] = None) -> "DistributedContext":
        return cls.from_env(_enums.Launcher.DEEPSPEED, chief_ip)

    @classmethod
    def from_horovod(cls, hvd: Any = None, chief_ip: Optional[str] = None) -> "DistributedContext":
        """From the horovod module (as Python) or, without it, horovodrun's environment."""
        if hvd is None:
            return cls.from_env(_enums.Launcher.HOROVOD, chief_ip)
        return cls(
            rank=hvd.rank(),
            size=hvd.size(),
            local_rank=hvd.local_rank(),
            local_size=hvd.local_size(),
            cross_rank=hvd.cross_rank(),
            cross_size=hvd.cross_size(),
            chief_ip=chief_ip or os.environ.get("DET_CHIEF_IP"),
        )

    @classmethod
    def from_mpi(cls, chief_ip: Optional[str] = None) -> "DistributedContext":
        """(detcore) Open MPI's mpirun, else MPICH / Intel MPI (PMI)."""
        if "OMPI_COMM_WORLD_RANK" in os.environ:
            return cls.from_env(_enums.Launcher.OPENMPI, chief_ip)
        return cls.from_env(_enums.Launcher.MPICH, chief_ip)

    @classmethod
    def from_slurm(cls, chief_ip: Optional[str] = None) -> "DistributedContext":
        """(detcore) Slurm's srun."""
        return cls.from_env(_enums.Launcher.SLURM, chief_ip)

    def _c_config(self, keep: list) -> DistributedConfig:
        cfg = DistributedConfig()
        lib().call("det_distributed_config_default", ctypes.byref(cfg), ctypes.sizeof(cfg))
        cfg.rank, cfg.size = self.rank, self.size
        cfg.local_rank, cfg.local_size = self.local_rank, self.local_size
        cfg.cross_rank, cfg.cross_size = self.cross_rank, self.cross_size
        if self.chief_ip:
            b = to_c(self.chief_ip, "chief_ip")
            keep.append(b)
            cfg.chief_ip = b
        if self.port is not None:
            cfg.port = int(self.port)
        if self.job_id is not None:
            b = to_c(self.job_id, "job_id")
            keep.append(b)
            cfg.job_id = b
        if self.connect_timeout is not None:
            cfg.connect_timeout_seconds = float(self.connect_timeout)
        if self.collective_timeout is not None:
            cfg.collective_timeout_seconds = float(self.collective_timeout)
        return cfg

    def _bind(self, ctx: "Context") -> None:
        self._ctx = ctx
        L = lib()
        for attr, fn in (
            ("rank", "det_dist_rank"),
            ("size", "det_dist_size"),
            ("local_rank", "det_dist_local_rank"),
            ("local_size", "det_dist_local_size"),
            ("cross_rank", "det_dist_cross_rank"),
            ("cross_size", "det_dist_cross_size"),
        ):
            setattr(self, attr, int(L.value_out(fn, ctypes.c_int32, ctx._handle())))

    # ---- Python's accessors ----
    def get_rank(self) -> int:
        return self.rank

    def get_local_rank(self) -> int:
        return self.local_rank

    def get_size(self) -> int:
        return self.size

    def get_num_agents(self) -> int:
        return self.cross_size

    # ---- collectives (every rank must call them in the same order) ----
    def _collective(self, fn: str, data: bytes) -> Optional[List[bytes]]:
        if self._ctx is None:
            raise _errors.StateError(
                _errors.DET_ERR_STATE,
                f"{fn}: this DistributedContext was not passed to detcore.init(distributed=...); "
                "use core_context.distributed",
            )
        buf = ctypes.create_string_buffer(data, len(data)) if data else None
        out = ctypes.c_void_p()
        L = lib()
        L.call(fn, self._ctx._handle(), buf, len(data), ctypes.byref(out))
        return L.bytes_list(out)

    def gather(self, stuff: Any) -> Optional[List]:
        """Every rank's `stuff` (in rank order) on the chief; None on the other ranks."""
        items = self._collective("det_dist_gather", pickle.dumps(stuff))
        return None if items is None else [pickle.loads(b) for b in items]

    def gather_local(self, stuff: Any) -> Optional[List]:
        items = self._collective("det_dist_gather_local", pickle.dumps(stuff))
        return None if items is None else [pickle.loads(b) for b in items]

    def allgather(self, stuff: Any) -> List:
        return [pickle.loads(b) for b in self._collective("det_dist_allgather", pickle.dumps(stuff)) or []]

    def allgather_local(self, stuff: Any) -> List:
        return [pickle.loads(b) for b in self._collective("det_dist_allgather_local", pickle.dumps(stuff)) or []]

    def broadcast(self, stuff: Any) -> Any:
        """The chief's `stuff` on every rank."""
        data = pickle.dumps(stuff) if self.rank == 0 else b""
        return pickle.loads(self._one("det_dist_broadcast", data))

    def broadcast_local(self, stuff: Any = None) -> Any:
        data = pickle.dumps(stuff) if self.local_rank == 0 else b""
        return pickle.loads(self._one("det_dist_broadcast_local", data))

    def _one(self, fn: str, data: bytes) -> bytes:
        items = self._collective(fn, data) or []
        if len(items) != 1:
            raise _errors.InternalError(_errors.DET_ERR_INTERNAL, f"{fn} returned {len(items)} items, expected 1")
        return items[0]

    def barrier(self) -> None:
        """(detcore) Wait until every rank has called barrier()."""
        if self._ctx is None:
            raise _errors.StateError(_errors.DET_ERR_STATE, "det_dist_barrier: not bound to a context")
        lib().call("det_dist_barrier", self._ctx._handle())

    def close(self) -> None:
        """Nothing to do: the context owns the transport and closes it."""

    def __repr__(self) -> str:
        return (
            f"DistributedContext(rank={self.rank}, size={self.size}, local_rank={self.local_rank}, "
            f"local_size={self.local_size}, cross_rank={self.cross_rank}, cross_size={self.cross_size})"
        )
