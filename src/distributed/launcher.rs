//! The launchers detcore reads ranks from, and the environment they are read through: below both
//! the rank reading ([`super::env`]) and the job identity ([`super::identity`]).
use crate::error::Result;

/// Which launcher's variables to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launcher {
    /// The first launcher whose variables are present, else rank 0 of 1.
    Auto,
    /// `torchrun` / `torch.distributed.run`: RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
    /// GROUP_RANK, GROUP_WORLD_SIZE (as Determined's `from_torch_distributed`).
    Torch,
    /// The DeepSpeed launcher: RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_SIZE, CROSS_RANK, CROSS_SIZE.
    DeepSpeed,
    /// horovodrun: HOROVOD_RANK, _SIZE, _LOCAL_RANK, _LOCAL_SIZE, _CROSS_RANK, _CROSS_SIZE.
    Horovod,
    /// Open MPI's mpirun: OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK, _LOCAL_SIZE; the node index
    /// follows from block or round-robin placement (Open MPI exports none: its
    /// `OMPI_COMM_WORLD_NODE_RANK` counts the processes of all jobs on a node).
    OpenMpi,
    /// MPICH / Intel MPI (Hydra, PMI): PMI_RANK, PMI_SIZE, MPI_LOCALRANKID, MPI_LOCALNRANKS; the
    /// node index from block or round-robin placement.
    Mpich,
    /// Slurm's srun: SLURM_PROCID, SLURM_STEP_NUM_TASKS (else SLURM_NTASKS), SLURM_LOCALID,
    /// SLURM_NODEID, SLURM_STEP_NUM_NODES (else SLURM_NNODES). A batch script of several tasks
    /// (no SLURM_STEP_ID) is refused: its other ranks never start.
    Slurm,
    /// Determined's own files (on-cluster): the containers and this container's rank from
    /// `rendezvous.json`, the chief at the first container's address, the port from
    /// `INTER_TRAIN_PROCESS_COMM_PORT_1`; processes per container from LOCAL_WORLD_SIZE /
    /// LOCAL_SIZE (else 1) and this process's index from LOCAL_RANK (else 0).
    Determined,
}

impl Launcher {
    /// A name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Launcher::Auto => "auto",
            Launcher::Torch => "torchrun",
            Launcher::DeepSpeed => "deepspeed",
            Launcher::Horovod => "horovod",
            Launcher::OpenMpi => "Open MPI",
            Launcher::Mpich => "MPICH/PMI",
            Launcher::Slurm => "Slurm",
            Launcher::Determined => "Determined (rendezvous.json)",
        }
    }
}

/// Read variables through a lookup function (the process environment in production).
pub struct Env<'a> {
    get: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Env<'a> {
    /// An environment backed by `get`.
    pub fn new(get: &'a dyn Fn(&str) -> Option<String>) -> Env<'a> {
        Env { get }
    }

    pub(super) fn raw(&self, k: &str) -> Option<String> {
        (self.get)(k).filter(|v| !v.trim().is_empty())
    }

    /// The value of `k`, `None` when unset or blank.
    pub fn get(&self, k: &str) -> Option<String> {
        self.raw(k)
    }

    pub(super) fn has(&self, k: &str) -> bool {
        self.raw(k).is_some()
    }

    pub(super) fn int(&self, launcher: Launcher, k: &str) -> Result<u32> {
        let v = self.raw(k).ok_or_else(|| {
            err!(
                InvalidArgument,
                "{k} is not set (reading the {} environment)",
                launcher.name()
            )
        })?;
        v.trim().parse::<u32>().map_err(|_| {
            err!(
                InvalidArgument,
                "{k}={v:?} is not a non-negative integer ({} environment)",
                launcher.name()
            )
        })
    }

    pub(super) fn opt_int(&self, launcher: Launcher, k: &str) -> Result<Option<u32>> {
        if self.has(k) {
            self.int(launcher, k).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// The launcher whose variables are present, in a fixed order of precedence.
pub fn detect(env: &Env<'_>) -> Option<Launcher> {
    if env.has("GROUP_RANK") && env.has("LOCAL_WORLD_SIZE") {
        Some(Launcher::Torch)
    } else if env.has("CROSS_RANK") && env.has("LOCAL_SIZE") && env.has("RANK") {
        Some(Launcher::DeepSpeed)
    } else if env.has("HOROVOD_RANK") {
        Some(Launcher::Horovod)
    } else if env.has("OMPI_COMM_WORLD_RANK") {
        Some(Launcher::OpenMpi)
    } else if env.has("PMI_RANK") {
        Some(Launcher::Mpich)
    } else if env.has("SLURM_PROCID") && env.has("SLURM_NTASKS") && env.has("SLURM_LOCALID") {
        Some(Launcher::Slurm)
    } else {
        None
    }
}
