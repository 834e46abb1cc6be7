//! Which job a process belongs to, and where that job's chief listens.
//!
//! Two jobs on one machine must never join each other. Every rank therefore carries a *job
//! identity* into the handshake (see [`super::star`]): the chief refuses a rank of another job,
//! and a rank refuses a chief of another job, with a message naming both identities. The identity
//! comes from, in this order:
//!
//! 1. `det_distributed_config.job_id` (or [`DistributedConfig::job_id`]) when the program sets it;
//! 2. `DETCORE_JOB_ID` (the same value on every rank of one job, a different one per job);
//! 3. the launcher whose variables gave the ranks ([`from_launcher`]): Slurm's job and step id,
//!    the PMIx namespace of an Open MPI job, torchrun's run id, Determined's allocation id, ...;
//! 4. otherwise none: the chief then makes one up for messages, and a rank without an identity
//!    is accepted only by a chief without one.
//!
//! The chief's port, unless pinned (`det_distributed_config.port`, `DETCORE_CHIEF_PORT`,
//! `INTER_TRAIN_PROCESS_COMM_PORT_1`), is derived from the identity: [`auto_ports`] gives a
//! window of [`PORT_WINDOW`] ports starting at a base spread by a hash of the identity over
//! [`AUTO_PORT_FIRST`]… The chief takes the first free port of the window and the workers try
//! them in order until a chief of *their* job accepts them, so two jobs starting on one host at
//! the same moment neither collide nor mix.
//!
//! [`DistributedConfig::job_id`]: super::DistributedConfig::job_id

use super::launcher::{Env, Launcher};

/// The longest identity accepted (bytes).
pub const MAX_LEN: usize = 256;

/// First port of the range automatic ports are spread over (below Linux's ephemeral range,
/// 32768–60999, so an outgoing connection never holds one by chance).
pub const AUTO_PORT_FIRST: u16 = 20000;
/// Number of window bases in the automatic range.
pub const AUTO_PORT_SPAN: u16 = 10000;
/// Ports the chief may take (and the workers try) when the port is automatic.
pub const PORT_WINDOW: u16 = 16;

/// The identity of the job as `launcher` exports it, if it exports one. Values are prefixed with
/// the launcher's name (`slurm:812.0`, `openmpi:2576285697`) so identities of different
/// launchers never compare equal.
pub fn from_launcher(launcher: Launcher, env: &Env<'_>) -> Option<String> {
    let get = |k: &str| env.get(k);
    let id = match launcher {
        // `TORCHELASTIC_RUN_ID` is the rendezvous id (`--rdzv-id`, a uuid with `--standalone`);
        // torchrun's default is the literal "none", which identifies nothing. The rendezvous
        // endpoint MASTER_ADDR:MASTER_PORT is the same on every worker of a job and cannot be
        // shared by two running jobs (rank 0's TCP store listens there).
        Launcher::Torch => match get("TORCHELASTIC_RUN_ID").filter(|v| v != "none") {
            Some(run) => Some(format!("torchrun:{run}")),
            None => endpoint(env).map(|e| format!("torchrun:{e}")),
        },
        // The DeepSpeed launcher passes --master_addr/--master_port to every node (PyTorch's
        // rendezvous endpoint for the job).
        Launcher::DeepSpeed => endpoint(env).map(|e| format!("deepspeed:{e}")),
        // horovodrun with Gloo: the driver's rendezvous server, one per running job.
        Launcher::Horovod => match (
            get("HOROVOD_GLOO_RENDEZVOUS_ADDR"),
            get("HOROVOD_GLOO_RENDEZVOUS_PORT"),
        ) {
            (Some(a), Some(p)) => Some(format!("horovod:{a}:{p}")),
            _ => None,
        },
        // The job's PMIx namespace (set by the PMIx server of mpirun, or of srun --mpi=pmix),
        // else Open MPI 4's own job id.
        Launcher::OpenMpi => get("PMIX_NAMESPACE")
            .or_else(|| get("OMPI_MCA_ess_base_jobid"))
            .map(|j| format!("openmpi:{j}")),
        // Hydra exports nothing that names the job.
        Launcher::Mpich => None,
        // srun: the job and the step (several steps of one job may run at once).
        Launcher::Slurm => match (get("SLURM_JOB_ID"), get("SLURM_STEP_ID")) {
            (Some(j), Some(s)) => Some(format!("slurm:{j}.{s}")),
            _ => None,
        },
        Launcher::Determined => get("DET_ALLOCATION_ID").map(|a| format!("determined:{a}")),
        Launcher::Auto => None,
    };
    id.map(|s| clip(&s))
}

fn endpoint(env: &Env<'_>) -> Option<String> {
    Some(format!(
        "{}:{}",
        env.get("MASTER_ADDR")?,
        env.get("MASTER_PORT")?
    ))
}

/// `s` cut to [`MAX_LEN`] bytes at a character boundary.
pub fn clip(s: &str) -> String {
    let mut end = s.len().min(MAX_LEN);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// `DETCORE_JOB_ID`, if set and not empty.
pub fn from_env_var(env: &Env<'_>) -> Option<String> {
    env.get("DETCORE_JOB_ID").map(|s| clip(&s))
}

/// 64-bit FNV-1a: a stable hash (the same in every process and release), unlike std's.
fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The automatic window of chief ports for job `id`: [`PORT_WINDOW`] consecutive ports from a
/// base in `AUTO_PORT_FIRST .. AUTO_PORT_FIRST + AUTO_PORT_SPAN`.
pub fn auto_ports(id: &str) -> Vec<u16> {
    let base = AUTO_PORT_FIRST + (fnv1a(id) % u64::from(AUTO_PORT_SPAN)) as u16;
    (0..PORT_WINDOW).map(|i| base + i).collect()
}

/// A name for this machine that tells two ranks whether they can reach each other on loopback:
/// the host name and the network namespace (two containers, or `ip netns`, may share a name).
pub fn host_key() -> String {
    let ns = std::fs::read_link("/proc/self/ns/net")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("{} {ns}", crate::host::hostname())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with<T>(pairs: &[(&str, &str)], f: impl FnOnce(&Env<'_>) -> T) -> T {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let get = |k: &str| m.get(k).cloned();
        f(&Env::new(&get))
    }

    #[test]
    fn launcher_identities() {
        let id = |l, p: &[(&str, &str)]| with(p, |e| from_launcher(l, e));
        assert_eq!(
            id(
                Launcher::Slurm,
                &[("SLURM_JOB_ID", "812"), ("SLURM_STEP_ID", "0")]
            )
            .as_deref(),
            Some("slurm:812.0")
        );
        // The batch script (no step) has no identity of its own.
        assert_eq!(id(Launcher::Slurm, &[("SLURM_JOB_ID", "812")]), None);
        assert_eq!(
            id(
                Launcher::OpenMpi,
                &[
                    ("PMIX_NAMESPACE", "2576285697"),
                    ("OMPI_MCA_ess_base_jobid", "1")
                ]
            )
            .as_deref(),
            Some("openmpi:2576285697")
        );
        assert_eq!(
            id(Launcher::OpenMpi, &[("OMPI_MCA_ess_base_jobid", "77")]).as_deref(),
            Some("openmpi:77")
        );
        assert_eq!(
            id(
                Launcher::Torch,
                &[
                    ("TORCHELASTIC_RUN_ID", "none"),
                    ("MASTER_ADDR", "n1"),
                    ("MASTER_PORT", "29500")
                ]
            )
            .as_deref(),
            Some("torchrun:n1:29500")
        );
        assert_eq!(
            id(Launcher::Torch, &[("TORCHELASTIC_RUN_ID", "abc")]).as_deref(),
            Some("torchrun:abc")
        );
        assert_eq!(
            id(Launcher::Determined, &[("DET_ALLOCATION_ID", "t.1")]).as_deref(),
            Some("determined:t.1")
        );
        assert_eq!(id(Launcher::Mpich, &[("PMI_RANK", "0")]), None);
        let long = "x".repeat(1000);
        assert_eq!(
            with(&[("DETCORE_JOB_ID", &long)], from_env_var)
                .unwrap()
                .len(),
            MAX_LEN
        );
    }

    #[test]
    fn auto_ports_are_stable_and_in_range() {
        let a = auto_ports("slurm:1.0");
        assert_eq!(a, auto_ports("slurm:1.0"));
        assert_eq!(a.len(), PORT_WINDOW as usize);
        assert!(a[0] >= AUTO_PORT_FIRST && *a.last().unwrap() < 32768);
        // Different jobs mostly start elsewhere.
        let bases: std::collections::BTreeSet<u16> = (0..100)
            .map(|i| auto_ports(&format!("slurm:{i}.0"))[0])
            .collect();
        assert!(bases.len() > 90, "{}", bases.len());
    }
}
