//! Rank information from the environment a launcher sets (torchrun, DeepSpeed, Horovod, Open MPI,
//! MPICH/Intel MPI, Slurm). Errors name the variable that is missing or wrong.

pub use super::launcher::{detect, Env, Launcher};
use super::DistributedConfig;
use crate::error::{Error, Kind, Result};

/// Fill `cfg` (ports, timeouts) with the ranks of `launcher`'s environment.
pub fn from_env(
    launcher: Launcher,
    env: &Env<'_>,
    base: &DistributedConfig,
) -> Result<DistributedConfig> {
    from_env_or_info(launcher, env, base, None)
}

/// As [`from_env`], with the Determined info folder to read for [`Launcher::Determined`] (and
/// for `Auto` when no launcher's variables are set and the info folder exists).
pub fn from_env_or_info(
    launcher: Launcher,
    env: &Env<'_>,
    base: &DistributedConfig,
    info_dir: Option<&std::path::Path>,
) -> Result<DistributedConfig> {
    let launcher = match (launcher, info_dir) {
        (Launcher::Auto, Some(d))
            if detect(env).is_none() && crate::cluster_info::is_on_cluster(d) =>
        {
            Launcher::Determined
        }
        (l, _) => l,
    };
    if launcher == Launcher::Determined {
        let dir = info_dir
            .map(std::path::Path::to_path_buf)
            .unwrap_or_else(|| crate::cluster_info::info_dir(None));
        return from_rendezvous(env, base, &dir);
    }
    let l = match launcher {
        Launcher::Auto => match detect(env) {
            Some(l) => l,
            None => {
                let mut c = base.clone();
                c.rank = 0;
                c.size = 1;
                c.local_rank = 0;
                c.local_size = 1;
                c.cross_rank = 0;
                c.cross_size = 1;
                c.chief_ip = chief_ip(env, None);
                c.port = port(env)?.unwrap_or(base.port);
                return Ok(c);
            }
        },
        l => l,
    };
    let (rank, size, local_rank, local_size, cross_rank, cross_size, vars, fallback_chief) = match l {
        Launcher::Torch => (
            env.int(l, "RANK")?,
            env.int(l, "WORLD_SIZE")?,
            env.int(l, "LOCAL_RANK")?,
            env.int(l, "LOCAL_WORLD_SIZE")?,
            env.int(l, "GROUP_RANK")?,
            match env.opt_int(l, "GROUP_WORLD_SIZE")? {
                Some(v) => v,
                None => cross_size_from(l, env.int(l, "WORLD_SIZE")?, env.int(l, "LOCAL_WORLD_SIZE")?, "LOCAL_WORLD_SIZE")?,
            },
            "RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK, GROUP_WORLD_SIZE",
            env.raw("MASTER_ADDR"),
        ),
        Launcher::DeepSpeed => (
            env.int(l, "RANK")?,
            env.int(l, "WORLD_SIZE")?,
            env.int(l, "LOCAL_RANK")?,
            env.int(l, "LOCAL_SIZE")?,
            env.int(l, "CROSS_RANK")?,
            env.int(l, "CROSS_SIZE")?,
            "RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_SIZE, CROSS_RANK, CROSS_SIZE",
            env.raw("MASTER_ADDR"),
        ),
        Launcher::Horovod => (
            env.int(l, "HOROVOD_RANK")?,
            env.int(l, "HOROVOD_SIZE")?,
            env.int(l, "HOROVOD_LOCAL_RANK")?,
            env.int(l, "HOROVOD_LOCAL_SIZE")?,
            env.int(l, "HOROVOD_CROSS_RANK")?,
            env.int(l, "HOROVOD_CROSS_SIZE")?,
            "HOROVOD_RANK, HOROVOD_SIZE, HOROVOD_LOCAL_RANK, HOROVOD_LOCAL_SIZE, HOROVOD_CROSS_RANK, HOROVOD_CROSS_SIZE",
            None,
        ),
        Launcher::OpenMpi => {
            // OMPI_COMM_WORLD_NODE_RANK is *not* the node index: Open MPI defines it as the
            // process's rank among all processes of all jobs on its node. Open MPI exports no
            // node index; it follows from the placement (see `node_from_placement`).
            let rank = env.int(l, "OMPI_COMM_WORLD_RANK")?;
            let size = env.int(l, "OMPI_COMM_WORLD_SIZE")?;
            let local_rank = env.int(l, "OMPI_COMM_WORLD_LOCAL_RANK")?;
            let local_size = env.int(l, "OMPI_COMM_WORLD_LOCAL_SIZE")?;
            let (cross_rank, cross_size) = node_from_placement(
                l,
                [rank, size, local_rank, local_size],
                ["OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"],
                "mpirun's default --map-by slot (or core, socket), or --map-by node",
            )?;
            (
                rank,
                size,
                local_rank,
                local_size,
                cross_rank,
                cross_size,
                "OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK, _LOCAL_SIZE",
                None,
            )
        }
        Launcher::Mpich => {
            let rank = env.int(l, "PMI_RANK")?;
            let size = env.int(l, "PMI_SIZE")?;
            let local_size = env.opt_int(l, "MPI_LOCALNRANKS")?.unwrap_or(size);
            let local_rank = match env.opt_int(l, "MPI_LOCALRANKID")? {
                Some(v) => v,
                None if local_size == size => rank,
                None => bail!(InvalidArgument, "MPI_LOCALRANKID is not set (reading the MPICH/PMI environment)"),
            };
            // PMI does not export the node index either.
            let (cross_rank, cross_size) = node_from_placement(
                l,
                [rank, size, local_rank, local_size],
                ["PMI_RANK", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"],
                "Hydra's default block placement (-ppn N), or round robin (-rr)",
            )?;
            (rank, size, local_rank, local_size, cross_rank, cross_size, "PMI_RANK, PMI_SIZE, MPI_LOCALRANKID, MPI_LOCALNRANKS", None)
        }
        Launcher::Slurm => {
            // In a step (srun) the step's counts; SLURM_NTASKS/SLURM_NNODES otherwise.
            let size = match env.opt_int(l, "SLURM_STEP_NUM_TASKS")? {
                Some(n) => n,
                None => env.int(l, "SLURM_NTASKS")?,
            };
            if size > 1 && !env.has("SLURM_STEP_ID") {
                bail!(
                    InvalidArgument,
                    "this process runs in the batch script of Slurm job {} (SLURM_NTASKS={size} but no SLURM_STEP_ID): \
                     Slurm runs the batch script once, not once per task, so the other {} rank(s) would never come. \
                     Start the ranks with srun (`srun ./program` in the script), or run a single process with `srun -n 1 ./program`",
                    env.raw("SLURM_JOB_ID").unwrap_or_else(|| "?".into()),
                    size - 1
                );
            }
            let nodes = match env.opt_int(l, "SLURM_STEP_NUM_NODES")? {
                Some(n) => n,
                None => match env.opt_int(l, "SLURM_NNODES")? {
                    Some(n) => n,
                    None => env.int(l, "SLURM_JOB_NUM_NODES")?,
                },
            };
            if nodes == 0 || size % nodes != 0 {
                bail!(
                    InvalidArgument,
                    "SLURM_NTASKS={size} is not a multiple of SLURM_NNODES={nodes}: detcore needs the same number of tasks on every node"
                );
            }
            (
                env.int(l, "SLURM_PROCID")?,
                size,
                env.int(l, "SLURM_LOCALID")?,
                size / nodes,
                env.int(l, "SLURM_NODEID")?,
                nodes,
                "SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NODEID, SLURM_NNODES",
                env.raw("SLURM_STEP_NODELIST").or_else(|| env.raw("SLURM_JOB_NODELIST")).and_then(|n| first_host(&n)),
            )
        }
        Launcher::Auto | Launcher::Determined => unreachable!("resolved above"),
    };
    let mut c = base.clone();
    c.rank = rank;
    c.size = size;
    c.local_rank = local_rank;
    c.local_size = local_size;
    c.cross_rank = cross_rank;
    c.cross_size = cross_size;
    c.chief_ip = chief_ip(env, fallback_chief).or_else(|| base.chief_ip.clone());
    if c.cross_size <= 1 && c.chief_ip.is_none() {
        c.chief_ip = Some("127.0.0.1".into());
    }
    c.port = port(env)?.unwrap_or(base.port);
    c.job_id = job_id(l, env, base);
    // `validate` also refuses a job spanning several nodes without a chief address.
    validated(c, format_args!("{} environment ({vars})", l.name()))
}

fn from_rendezvous(
    env: &Env<'_>,
    base: &DistributedConfig,
    dir: &std::path::Path,
) -> Result<DistributedConfig> {
    let l = Launcher::Determined;
    let ci = crate::cluster_info::ClusterInfo::load(dir)?;
    let addrs = ci.container_addrs();
    let crank = ci.container_rank();
    let cross_size = addrs.len().max(1) as u32;
    let local_size = match (
        env.opt_int(l, "LOCAL_WORLD_SIZE")?,
        env.opt_int(l, "LOCAL_SIZE")?,
    ) {
        (Some(n), _) | (None, Some(n)) => n,
        (None, None) => 1,
    };
    let local_rank = env.opt_int(l, "LOCAL_RANK")?.unwrap_or(0);
    let cross_rank = u32::try_from(crank).map_err(|_| {
        err!(
            InvalidArgument,
            "rendezvous.json: container_rank {crank} is negative"
        )
    })?;
    let mut c = base.clone();
    c.rank = cross_rank * local_size + local_rank;
    c.size = cross_size * local_size;
    c.local_rank = local_rank;
    c.local_size = local_size;
    c.cross_rank = cross_rank;
    c.cross_size = cross_size;
    c.chief_ip = chief_ip(env, addrs.first().cloned());
    c.port = port(env)?.unwrap_or(base.port);
    c.job_id = job_id(l, env, base).or_else(|| Some(format!("determined:{}", ci.allocation_id)));
    validated(c, format_args!("{} in {}", l.name(), dir.display()))
}

/// `c` if [`DistributedConfig::validate`] accepts it, else its error (an invalid argument)
/// after `source`, the environment or file the numbers came from.
fn validated(c: DistributedConfig, source: std::fmt::Arguments<'_>) -> Result<DistributedConfig> {
    match c.validate() {
        Ok(()) => Ok(c),
        Err(e) => Err(Error::new(
            Kind::InvalidArgument,
            format!(
                "{source}: {}",
                e.message().trim_start_matches("distributed: ")
            ),
        )),
    }
}

/// The job identity: the program's (`base.job_id`), else `DETCORE_JOB_ID`, else the launcher's.
fn job_id(l: Launcher, env: &Env<'_>, base: &DistributedConfig) -> Option<String> {
    base.job_id
        .clone()
        .or_else(|| super::identity::from_env_var(env))
        .or_else(|| super::identity::from_launcher(l, env))
}

/// The node index and node count of a process when the launcher exports only its rank and
/// local rank (`vals` = rank, size, local rank, local size; `names` = the variables of rank,
/// local rank and local size). Two placements are recognised: blocks (node n runs ranks n·L …
/// n·L+L−1, L ranks per node) and round robin (rank r runs on node r mod N, N nodes). A process
/// whose numbers fit neither is refused rather than given a wrong node: the ranks of a node
/// meet on loopback, so two hosts taken for one would fail later with a worse message.
fn node_from_placement(
    l: Launcher,
    vals: [u32; 4],
    names: [&str; 3],
    how: &str,
) -> Result<(u32, u32)> {
    let [rank, size, local_rank, local_size] = vals;
    let nodes = cross_size_from(l, size, local_size, names[2])?;
    if rank % local_size == local_rank {
        Ok((rank / local_size, nodes))
    } else if rank / nodes == local_rank {
        Ok((rank % nodes, nodes))
    } else {
        bail!(
            InvalidArgument,
            "{}={rank} and {}={local_rank} fit neither block placement ({local_size} consecutive ranks per node) \
             nor round-robin placement over {nodes} nodes ({} environment): launch with {how}, \
             or set the ranks in det_distributed_config yourself",
            names[0],
            names[1],
            l.name()
        )
    }
}

fn cross_size_from(l: Launcher, size: u32, local_size: u32, local_var: &str) -> Result<u32> {
    if local_size == 0 || !size.is_multiple_of(local_size) {
        bail!(
            InvalidArgument,
            "{local_var}={local_size} does not divide the world size {size} ({} environment)",
            l.name()
        );
    }
    Ok(size / local_size)
}

fn chief_ip(env: &Env<'_>, fallback: Option<String>) -> Option<String> {
    env.raw("DET_CHIEF_IP").or(fallback)
}

fn port(env: &Env<'_>) -> Result<Option<u16>> {
    pinned_port(env)
}

/// A chief port pinned by `DETCORE_CHIEF_PORT`, else `INTER_TRAIN_PROCESS_COMM_PORT_1`.
pub fn pinned_port(env: &Env<'_>) -> Result<Option<u16>> {
    for k in ["DETCORE_CHIEF_PORT", "INTER_TRAIN_PROCESS_COMM_PORT_1"] {
        if let Some(v) = env.raw(k) {
            return match v.trim().parse::<u16>() {
                Ok(p) if p > 0 => Ok(Some(p)),
                _ => Err(err!(InvalidArgument, "{k}={v:?} is not a TCP port")),
            };
        }
    }
    Ok(None)
}

/// The first host of a Slurm node list: `node[01-04,07],gpu2` → `node01`.
pub fn first_host(list: &str) -> Option<String> {
    let first = {
        let mut depth = 0;
        let mut end = list.len();
        for (i, c) in list.char_indices() {
            match c {
                '[' => depth += 1,
                ']' => depth -= 1,
                ',' if depth == 0 => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        &list[..end]
    };
    match first.find('[') {
        None => (!first.is_empty()).then(|| first.to_owned()),
        Some(i) => {
            let prefix = &first[..i];
            let inner = first[i + 1..].trim_end_matches(']');
            let range = inner.split(',').next()?;
            let start = range.split('-').next()?;
            Some(format!("{prefix}{start}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn read(l: Launcher, pairs: &[(&str, &str)]) -> Result<DistributedConfig> {
        let m = env_of(pairs);
        let get = |k: &str| m.get(k).cloned();
        from_env(l, &Env::new(&get), &DistributedConfig::single())
    }

    #[test]
    fn torchrun() {
        let c = read(
            Launcher::Auto,
            &[
                ("RANK", "3"),
                ("WORLD_SIZE", "4"),
                ("LOCAL_RANK", "1"),
                ("LOCAL_WORLD_SIZE", "2"),
                ("GROUP_RANK", "1"),
                ("GROUP_WORLD_SIZE", "2"),
                ("MASTER_ADDR", "10.0.0.1"),
            ],
        )
        .unwrap();
        assert_eq!(
            (
                c.rank,
                c.size,
                c.local_rank,
                c.local_size,
                c.cross_rank,
                c.cross_size
            ),
            (3, 4, 1, 2, 1, 2)
        );
        assert_eq!(c.chief_ip.as_deref(), Some("10.0.0.1"));
    }

    #[test]
    fn openmpi_and_slurm() {
        let c = read(
            Launcher::Auto,
            &[
                ("OMPI_COMM_WORLD_RANK", "5"),
                ("OMPI_COMM_WORLD_SIZE", "8"),
                ("OMPI_COMM_WORLD_LOCAL_RANK", "1"),
                ("OMPI_COMM_WORLD_LOCAL_SIZE", "4"),
                ("OMPI_COMM_WORLD_NODE_RANK", "1"),
                ("PMIX_NAMESPACE", "2576285697"),
                ("DET_CHIEF_IP", "n0"),
            ],
        )
        .unwrap();
        assert_eq!(
            (c.rank, c.local_rank, c.cross_rank, c.cross_size),
            (5, 1, 1, 2)
        );
        assert_eq!(c.job_id.as_deref(), Some("openmpi:2576285697"));
        let c = read(
            Launcher::Slurm,
            &[
                ("SLURM_PROCID", "2"),
                ("SLURM_NTASKS", "4"),
                ("SLURM_LOCALID", "0"),
                ("SLURM_NODEID", "1"),
                ("SLURM_NNODES", "2"),
                ("SLURM_JOB_NODELIST", "gpu[07-08]"),
                ("SLURM_JOB_ID", "77"),
                ("SLURM_STEP_ID", "3"),
            ],
        )
        .unwrap();
        assert_eq!((c.rank, c.local_size, c.cross_rank), (2, 2, 1));
        assert_eq!(c.chief_ip.as_deref(), Some("gpu07"));
        assert_eq!(c.job_id.as_deref(), Some("slurm:77.3"));
    }

    /// What `mpirun -np 4` on one node exports (Open MPI 4.1): OMPI_COMM_WORLD_NODE_RANK counts
    /// the processes of the node (0…3), so it cannot be the node index.
    #[test]
    fn openmpi_one_node_is_one_node() {
        for r in 0..4 {
            let r = r.to_string();
            let c = read(
                Launcher::Auto,
                &[
                    ("OMPI_COMM_WORLD_RANK", &r),
                    ("OMPI_COMM_WORLD_SIZE", "4"),
                    ("OMPI_COMM_WORLD_LOCAL_RANK", &r),
                    ("OMPI_COMM_WORLD_LOCAL_SIZE", "4"),
                    ("OMPI_COMM_WORLD_NODE_RANK", &r),
                ],
            )
            .unwrap();
            assert_eq!((c.cross_rank, c.cross_size, c.local_size), (0, 1, 4));
            assert_eq!(c.chief_ip.as_deref(), Some("127.0.0.1"));
        }
    }

    /// Block placement (mpirun's default, Hydra's default) and round robin (`--map-by node`,
    /// `-rr`) give the node index; anything else is refused, naming the variables.
    #[test]
    fn node_index_from_placement() {
        let ompi = |rank: &str, local: &str| {
            read(
                Launcher::OpenMpi,
                &[
                    ("OMPI_COMM_WORLD_RANK", rank),
                    ("OMPI_COMM_WORLD_SIZE", "8"),
                    ("OMPI_COMM_WORLD_LOCAL_RANK", local),
                    ("OMPI_COMM_WORLD_LOCAL_SIZE", "4"),
                    ("DET_CHIEF_IP", "n0"),
                ],
            )
        };
        // Round robin over 2 nodes: rank 5 is the third process of node 1.
        let c = ompi("5", "2").unwrap();
        assert_eq!((c.cross_rank, c.cross_size), (1, 2));
        let c = ompi("6", "3").unwrap();
        assert_eq!(c.cross_rank, 0);
        let e = ompi("5", "0").unwrap_err();
        assert_eq!(e.kind(), Kind::InvalidArgument);
        assert!(
            e.message().contains("OMPI_COMM_WORLD_RANK=5 and OMPI_COMM_WORLD_LOCAL_RANK=0 fit neither block placement"),
            "{e}"
        );
        let c = read(
            Launcher::Mpich,
            &[
                ("PMI_RANK", "3"),
                ("PMI_SIZE", "4"),
                ("MPI_LOCALRANKID", "1"),
                ("MPI_LOCALNRANKS", "2"),
                ("DET_CHIEF_IP", "n0"),
            ],
        )
        .unwrap();
        assert_eq!((c.cross_rank, c.cross_size), (1, 2));
        assert_eq!(c.job_id, None);
    }

    /// `sbatch --ntasks=2` runs the batch script once, with SLURM_NTASKS=2 and SLURM_PROCID=0
    /// but no step: refused at once instead of waiting for a rank 1 that never starts.
    #[test]
    fn slurm_batch_script_of_several_tasks() {
        let batch = [
            ("SLURM_JOB_ID", "12"),
            ("SLURM_NTASKS", "2"),
            ("SLURM_NPROCS", "2"),
            ("SLURM_PROCID", "0"),
            ("SLURM_LOCALID", "0"),
            ("SLURM_NODEID", "0"),
            ("SLURM_NNODES", "1"),
            ("SLURM_JOB_NUM_NODES", "1"),
            ("SLURM_JOB_NODELIST", "vm"),
        ];
        let e = read(Launcher::Auto, &batch).unwrap_err();
        assert_eq!(e.kind(), Kind::InvalidArgument);
        assert!(
            e.message().contains("batch script of Slurm job 12") && e.message().contains("srun"),
            "{e}"
        );
        // One task: the batch script is the whole job.
        let mut one = batch.to_vec();
        one[1] = ("SLURM_NTASKS", "1");
        let c = read(Launcher::Auto, &one).unwrap();
        assert_eq!((c.rank, c.size), (0, 1));
        // `srun -n 1` inside an allocation of 2 tasks: the step's count wins.
        let mut step = batch.to_vec();
        step.extend([
            ("SLURM_STEP_ID", "0"),
            ("SLURM_STEP_NUM_TASKS", "1"),
            ("SLURM_STEP_NUM_NODES", "1"),
        ]);
        let c = read(Launcher::Auto, &step).unwrap();
        assert_eq!((c.rank, c.size), (0, 1));
        assert_eq!(c.job_id.as_deref(), Some("slurm:12.0"));
    }

    /// The program's job id wins over DETCORE_JOB_ID, which wins over the launcher's.
    #[test]
    fn job_id_precedence() {
        let vars = [
            ("RANK", "0"),
            ("WORLD_SIZE", "2"),
            ("LOCAL_RANK", "0"),
            ("LOCAL_WORLD_SIZE", "2"),
            ("GROUP_RANK", "0"),
            ("TORCHELASTIC_RUN_ID", "r1"),
        ];
        assert_eq!(
            read(Launcher::Auto, &vars).unwrap().job_id.as_deref(),
            Some("torchrun:r1")
        );
        let mut pinned = vars.to_vec();
        pinned.push(("DETCORE_JOB_ID", "mine"));
        assert_eq!(
            read(Launcher::Auto, &pinned).unwrap().job_id.as_deref(),
            Some("mine")
        );
        let m = env_of(&pinned);
        let get = |k: &str| m.get(k).cloned();
        let base = DistributedConfig {
            job_id: Some("program".into()),
            ..DistributedConfig::single()
        };
        let c = from_env(Launcher::Auto, &Env::new(&get), &base).unwrap();
        assert_eq!(c.job_id.as_deref(), Some("program"));
        // The port is left to the job identity unless pinned.
        assert_eq!(c.port, 0);
    }

    #[test]
    fn errors_name_the_variable() {
        let e = read(Launcher::Torch, &[("RANK", "0")]).unwrap_err();
        assert!(e.message().contains("WORLD_SIZE is not set"), "{e}");
        let e = read(Launcher::DeepSpeed, &[("RANK", "x")]).unwrap_err();
        assert!(
            e.message()
                .contains("RANK=\"x\" is not a non-negative integer"),
            "{e}"
        );
        let e = read(
            Launcher::Horovod,
            &[
                ("HOROVOD_RANK", "4"),
                ("HOROVOD_SIZE", "4"),
                ("HOROVOD_LOCAL_RANK", "0"),
                ("HOROVOD_LOCAL_SIZE", "4"),
                ("HOROVOD_CROSS_RANK", "0"),
                ("HOROVOD_CROSS_SIZE", "1"),
            ],
        )
        .unwrap_err();
        assert!(
            e.message().contains("rank 4 must be less than size 4"),
            "{e}"
        );
        let e = read(
            Launcher::OpenMpi,
            &[
                ("OMPI_COMM_WORLD_RANK", "0"),
                ("OMPI_COMM_WORLD_SIZE", "6"),
                ("OMPI_COMM_WORLD_LOCAL_RANK", "0"),
                ("OMPI_COMM_WORLD_LOCAL_SIZE", "4"),
                ("OMPI_COMM_WORLD_NODE_RANK", "0"),
            ],
        )
        .unwrap_err();
        assert!(
            e.message()
                .contains("OMPI_COMM_WORLD_LOCAL_SIZE=4 does not divide"),
            "{e}"
        );
        let e = read(
            Launcher::DeepSpeed,
            &[
                ("RANK", "0"),
                ("WORLD_SIZE", "4"),
                ("LOCAL_RANK", "0"),
                ("LOCAL_SIZE", "2"),
                ("CROSS_RANK", "0"),
                ("CROSS_SIZE", "2"),
            ],
        )
        .unwrap_err();
        assert!(e.message().contains("chief_ip"), "{e}");
        let e = read(
            Launcher::Slurm,
            &[
                ("SLURM_PROCID", "0"),
                ("SLURM_NTASKS", "3"),
                ("SLURM_LOCALID", "0"),
                ("SLURM_NODEID", "0"),
                ("SLURM_NNODES", "2"),
            ],
        )
        .unwrap_err();
        assert!(e.message().contains("SLURM_NTASKS=3"), "{e}");
    }

    /// Validation errors say where the numbers came from, without the `distributed: ` prefix.
    #[test]
    fn validation_errors_name_the_source() {
        let e = read(
            Launcher::DeepSpeed,
            &[
                ("RANK", "0"),
                ("WORLD_SIZE", "4"),
                ("LOCAL_RANK", "0"),
                ("LOCAL_SIZE", "2"),
                ("CROSS_RANK", "0"),
                ("CROSS_SIZE", "2"),
            ],
        )
        .unwrap_err();
        assert_eq!(e.kind(), Kind::InvalidArgument);
        assert_eq!(
            e.message(),
            "deepspeed environment (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_SIZE, CROSS_RANK, CROSS_SIZE): \
             chief_ip is required when cross_size (2) > 1"
        );
    }

    #[test]
    fn auto_without_launcher_is_single() {
        let c = read(Launcher::Auto, &[]).unwrap();
        assert_eq!((c.rank, c.size), (0, 1));
    }

    #[test]
    fn determined_rendezvous_files() {
        let dir = std::env::temp_dir().join(format!("detcore-rdv-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let w = |n: &str, t: &str| std::fs::write(dir.join(n), t).unwrap();
        w(
            "cluster.json",
            r#"{"master_url": "http://m:8080", "cluster_id": "c", "agent_id": "a", "slot_ids": [0, 1],
            "task_id": "t", "allocation_id": "al", "session_token": "s", "task_type": "TRIAL",
            "master_cert_name": null, "master_cert_file": null, "latest_checkpoint": null}"#,
        );
        w(
            "trial.json",
            r#"{"trial_id": 1, "experiment_id": 2, "trial_seed": 3, "hparams": {}, "config": {},
            "steps_completed": 0, "trial_run_id": 1, "debug": false, "inter_node_network_interface": null}"#,
        );
        w(
            "rendezvous.json",
            r#"{"container_addrs": ["10.0.0.5", "10.0.0.6"], "container_rank": 1, "container_slot_counts": [2, 2]}"#,
        );
        let m = env_of(&[
            ("LOCAL_RANK", "1"),
            ("LOCAL_WORLD_SIZE", "2"),
            ("INTER_TRAIN_PROCESS_COMM_PORT_1", "23000"),
        ]);
        let get = |k: &str| m.get(k).cloned();
        let c = from_env_or_info(
            Launcher::Auto,
            &Env::new(&get),
            &DistributedConfig::single(),
            Some(&dir),
        )
        .unwrap();
        assert_eq!(
            (
                c.rank,
                c.size,
                c.local_rank,
                c.local_size,
                c.cross_rank,
                c.cross_size
            ),
            (3, 4, 1, 2, 1, 2)
        );
        assert_eq!(c.chief_ip.as_deref(), Some("10.0.0.5"));
        assert_eq!(c.port, 23000);
        let m = env_of(&[("LOCAL_RANK", "2"), ("LOCAL_WORLD_SIZE", "2")]);
        let get = |k: &str| m.get(k).cloned();
        let e = from_env_or_info(
            Launcher::Determined,
            &Env::new(&get),
            &DistributedConfig::single(),
            Some(&dir),
        )
        .unwrap_err();
        assert!(
            e.message().contains("rank 4 must be less than size 4"),
            "{e}"
        );
        assert_eq!(
            e.message(),
            format!(
                "Determined (rendezvous.json) in {}: rank 4 must be less than size 4",
                dir.display()
            )
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn nodelists() {
        assert_eq!(first_host("node[01-04,07],gpu2").as_deref(), Some("node01"));
        assert_eq!(first_host("a1,a2").as_deref(), Some("a1"));
        assert_eq!(first_host("single").as_deref(), Some("single"));
        assert_eq!(first_host("").as_deref(), None);
    }
}
