//! Rank information and collectives: Determined's `DistributedContext`, see
//! docs/protocol.md#distributed-rendezvous.

pub mod env;
pub mod identity;
pub mod launcher;
pub mod star;
pub mod wire;
use crate::error::Result;
use star::{Group, Member, Star};
use std::sync::Arc;
use std::time::Duration;
pub use wire::ByteList;

/// The chief's port for a job without an identity and without a pinned port (Determined's
/// default `INTER_TRAIN_PROCESS_COMM_PORT_1`).
pub const DEFAULT_PORT: u16 = 12360;

/// A port pinned by the environment: `DETCORE_CHIEF_PORT`, else `INTER_TRAIN_PROCESS_COMM_PORT_1`
/// (which the master sets per allocation on-cluster, and Determined's Python reads too).
pub fn env_port() -> Result<Option<u16>> {
    let get = |k: &str| std::env::var(k).ok();
    env::pinned_port(&env::Env::new(&get))
}

/// Where a process stands in the job.
#[derive(Debug, Clone, PartialEq)]
pub struct DistributedConfig {
    pub rank: u32,
    pub size: u32,
    pub local_rank: u32,
    pub local_size: u32,
    pub cross_rank: u32,
    pub cross_size: u32,
    /// The chief's address; required when the job spans several nodes.
    pub chief_ip: Option<String>,
    /// The chief's listening port; 0: pinned by the environment ([`env_port`]), else chosen
    /// from the job identity (see [`identity`]).
    pub port: u16,
    /// The job's identity, compared in the handshake (see [`identity`]); `None`: `DETCORE_JOB_ID`,
    /// else none (the chief makes one up).
    pub job_id: Option<String>,
    /// How long workers keep trying to reach the chief.
    pub connect_timeout: Duration,
    /// How long a collective may wait for peers before failing.
    pub collective_timeout: Duration,
}

impl Default for DistributedConfig {
    fn default() -> Self {
        DistributedConfig::single()
    }
}

impl DistributedConfig {
    /// Rank 0 of 1.
    pub fn single() -> DistributedConfig {
        DistributedConfig {
            rank: 0,
            size: 1,
            local_rank: 0,
            local_size: 1,
            cross_rank: 0,
            cross_size: 1,
            chief_ip: None,
            port: 0,
            job_id: None,
            connect_timeout: Duration::from_secs(300),
            collective_timeout: Duration::from_secs(1800),
        }
    }

    /// True for rank 0.
    pub fn is_chief(&self) -> bool {
        self.rank == 0
    }

    /// True for local rank 0.
    pub fn is_local_chief(&self) -> bool {
        self.local_rank == 0
    }

    /// Check the numbers agree with each other; messages name the field.
    pub fn validate(&self) -> Result<()> {
        if self.size == 0 {
            bail!(InvalidArgument, "distributed: size must be at least 1");
        }
        if self.rank >= self.size {
            bail!(
                InvalidArgument,
                "distributed: rank {} must be less than size {}",
                self.rank,
                self.size
            );
        }
        if self.local_size == 0 || self.local_rank >= self.local_size {
            bail!(
                InvalidArgument,
                "distributed: local_rank {} must be less than local_size {}",
                self.local_rank,
                self.local_size
            );
        }
        if self.cross_size == 0 || self.cross_rank >= self.cross_size {
            bail!(
                InvalidArgument,
                "distributed: cross_rank {} must be less than cross_size {}",
                self.cross_rank,
                self.cross_size
            );
        }
        if !self.size.is_multiple_of(self.local_size) {
            bail!(
                InvalidArgument,
                "distributed: local_size {} does not divide size {}",
                self.local_size,
                self.size
            );
        }
        if self.local_size * self.cross_size != self.size {
            bail!(
                InvalidArgument,
                "distributed: local_size {} × cross_size {} must equal size {}",
                self.local_size,
                self.cross_size,
                self.size
            );
        }
        if self.cross_size > 1 && self.chief_ip.as_deref().is_none_or(str::is_empty) {
            bail!(
                InvalidArgument,
                "distributed: chief_ip is required when cross_size ({}) > 1",
                self.cross_size
            );
        }
        if let Some(j) = &self.job_id {
            if j.is_empty() || j.len() > identity::MAX_LEN || j.chars().any(char::is_control) {
                bail!(
                    InvalidArgument,
                    "distributed: job_id {j:?} must be 1 to {} bytes of printable text",
                    identity::MAX_LEN
                );
            }
        }
        if self.connect_timeout.is_zero() || self.collective_timeout.is_zero() {
            bail!(InvalidArgument, "distributed: timeouts must be positive");
        }
        Ok(())
    }
}

/// Collectives over the processes of a job. Every rank must call the same collectives in the
/// same order, as in Determined. With more than one process, ranks talk over TCP: every rank
/// connects to the chief (`chief_ip:port`), and the ranks of a node to their local chief (an
/// ephemeral loopback port exchanged at start-up); see [`star`].
pub struct DistributedContext {
    cfg: DistributedConfig,
    global: Option<Arc<Star>>,
    local: Option<Arc<Star>>,
}

impl DistributedContext {
    /// Connect to the other ranks (a collective: every rank must call it; it returns when all
    /// have joined, or fails after `connect_timeout` naming the ranks that did not). Only ranks
    /// of the same job join (see [`identity`]).
    pub fn new(mut cfg: DistributedConfig) -> Result<DistributedContext> {
        if cfg.job_id.is_none() {
            let get = |k: &str| std::env::var(k).ok();
            cfg.job_id = identity::from_env_var(&env::Env::new(&get));
            if cfg.job_id.is_some() {
                cfg.validate().map_err(|e| e.context("DETCORE_JOB_ID"))?;
            }
        }
        cfg.validate()?;
        if cfg.size == 1 {
            return Ok(DistributedContext {
                cfg,
                global: None,
                local: None,
            });
        }
        let job = cfg.job_id.clone().unwrap_or_default();
        let me = Member {
            group: Group::Global,
            group_rank: cfg.rank,
            group_size: cfg.size,
            global_rank: cfg.rank,
            job: job.clone(),
        };
        // The chief's port: pinned (by the program, then the environment), else a window
        // derived from the job identity, else Determined's default.
        let (ports, pinned) = match (cfg.port, env_port()?) {
            (0, None) if !job.is_empty() => (identity::auto_ports(&job), false),
            (0, None) => (vec![DEFAULT_PORT], true),
            (0, Some(p)) | (p, _) => (vec![p], true),
        };
        if job.is_empty() && cfg.rank == 0 {
            log_warn!(
                "this job has no identity (its launcher exports none, and DETCORE_JOB_ID is not set): a rank of another \
                 job started on this machine with the same port could join it. Give every rank the same DETCORE_JOB_ID, \
                 unique to the job (e.g. DETCORE_JOB_ID=$JOBNAME-$(date +%s) exported before launching)"
            );
        }
        // As in Determined: on one node the chief is always reached on loopback.
        let chief = if cfg.local_size == cfg.size {
            "127.0.0.1".to_owned()
        } else {
            cfg.chief_ip.clone().unwrap_or_else(|| "127.0.0.1".into())
        };
        let global = if cfg.rank == 0 {
            let deadline = crate::time::deadline(cfg.connect_timeout);
            let (listener, port) = star::listen(&ports, !job.is_empty(), deadline)?;
            if !pinned {
                log_debug!(
                    "the chief of {} listens on port {port}",
                    star::job_name(&job)
                );
            }
            cfg.port = port;
            Star::serve(listener, me, cfg.connect_timeout, cfg.collective_timeout)?
        } else {
            let host = if chief.contains(':') && !chief.starts_with('[') {
                format!("[{chief}]") // an IPv6 literal
            } else {
                chief.clone()
            };
            let addrs: Vec<String> = ports.iter().map(|p| format!("{host}:{p}")).collect();
            Star::join(&addrs, me, cfg.connect_timeout, cfg.collective_timeout)?
        };
        if cfg.job_id.is_none() {
            // The chief made one up: every rank goes by it.
            cfg.job_id = Some(global.job_id().to_owned());
        }
        let global = Arc::new(global);
        let local = if cfg.local_size > 1 {
            // The local chief listens on loopback; everyone learns its port from a global
            // allgather, with the host it runs on: the ranks of a node must share loopback.
            let listener = if cfg.local_rank == 0 {
                Some(star::listen_local()?)
            } else {
                None
            };
            let mut mine = cfg.cross_rank.to_le_bytes().to_vec();
            mine.extend_from_slice(&listener.as_ref().map_or(0u16, |l| l.1).to_le_bytes());
            mine.extend_from_slice(identity::host_key().as_bytes());
            let all = global.allgather(mine)?.into_vecs();
            check_nodes(&all)?;
            let lm = Member {
                group: Group::Local,
                group_rank: cfg.local_rank,
                group_size: cfg.local_size,
                global_rank: cfg.rank,
                job: global.job_id().to_owned(),
            };
            let star = match listener {
                Some((l, _)) => Star::serve(l, lm, cfg.connect_timeout, cfg.collective_timeout)?,
                None => {
                    let ports: Vec<u16> = all
                        .iter()
                        .filter(|b| {
                            b.len() >= 6
                                && u32::from_le_bytes(b[..4].try_into().expect("4"))
                                    == cfg.cross_rank
                        })
                        .map(|b| u16::from_le_bytes(b[4..6].try_into().expect("2")))
                        .filter(|&p| p != 0)
                        .collect();
                    if ports.len() != 1 {
                        bail!(
                            Distributed,
                            "found {} local chiefs for cross_rank {} (expected exactly one rank with local_rank 0 per node): check local_rank/cross_rank",
                            ports.len(),
                            cfg.cross_rank
                        );
                    }
                    Star::join(
                        &[format!("127.0.0.1:{}", ports[0])],
                        lm,
                        cfg.connect_timeout,
                        cfg.collective_timeout,
                    )?
                }
            };
            Some(Arc::new(star))
        } else {
            // Keep the same sequence of global collectives on every rank (as Determined does).
            global.allgather(Vec::new())?;
            None
        };
        Ok(DistributedContext {
            cfg,
            global: Some(global),
            local,
        })
    }

    /// The job identity the ranks agreed on (`None` with one process and no identity given).
    pub fn job_id(&self) -> Option<&str> {
        self.cfg.job_id.as_deref()
    }

    /// This process's place in the job.
    pub fn config(&self) -> &DistributedConfig {
        &self.cfg
    }

    /// The job-wide group (None with one process).
    pub fn global(&self) -> Option<&Arc<Star>> {
        self.global.as_ref()
    }

    /// `gather(x)`: the chief receives every rank's bytes in rank order; other ranks get `None`.
    pub fn gather(&self, data: Vec<u8>) -> Result<Option<ByteList>> {
        match &self.global {
            Some(g) => g.gather(data).map_err(|e| e.context("gather")),
            None => Ok(Some(ByteList::Vecs(vec![data]))),
        }
    }

    /// `allgather(x)`: every rank receives every rank's bytes in rank order.
    pub fn allgather(&self, data: Vec<u8>) -> Result<ByteList> {
        match &self.global {
            Some(g) => g.allgather(data).map_err(|e| e.context("allgather")),
            None => Ok(ByteList::Vecs(vec![data])),
        }
    }

    /// `broadcast(x)`: every rank receives the chief's bytes (the others' `data` is ignored).
    pub fn broadcast(&self, data: Vec<u8>) -> Result<Vec<u8>> {
        match &self.global {
            Some(g) => g.broadcast(data).map_err(|e| e.context("broadcast")),
            None => Ok(data),
        }
    }

    /// `gather_local(x)`: the local chief receives the bytes of every rank of its node.
    pub fn gather_local(&self, data: Vec<u8>) -> Result<Option<ByteList>> {
        match &self.local {
            Some(l) => l.gather(data).map_err(|e| e.context("gather_local")),
            None => Ok(Some(ByteList::Vecs(vec![data]))),
        }
    }

    /// `allgather_local(x)`: every rank receives the bytes of every rank of its node.
    pub fn allgather_local(&self, data: Vec<u8>) -> Result<ByteList> {
        match &self.local {
            Some(l) => l.allgather(data).map_err(|e| e.context("allgather_local")),
            None => Ok(ByteList::Vecs(vec![data])),
        }
    }

    /// `broadcast_local(x)`: every rank receives its local chief's bytes.
    pub fn broadcast_local(&self, data: Vec<u8>) -> Result<Vec<u8>> {
        match &self.local {
            Some(l) => l.broadcast(data).map_err(|e| e.context("broadcast_local")),
            None => Ok(data),
        }
    }

    /// Wait until every rank reaches the barrier.
    pub fn barrier(&self) -> Result<()> {
        self.allgather(Vec::new())
            .map(|_| ())
            .map_err(|e| e.context("barrier"))
    }

    /// Close the connections (bounded; see [`Star::close`]).
    pub fn close(&self) {
        if let Some(l) = &self.local {
            l.close();
        }
        if let Some(g) = &self.global {
            g.close();
        }
    }
}

/// Every rank's (cross_rank, local chief port, host) from the start-up allgather: the ranks
/// given one node index must run on one host (they meet on loopback). Every rank checks the
/// same data, so all fail alike, naming the node and the hosts.
fn check_nodes(all: &[Vec<u8>]) -> Result<()> {
    let mut hosts: std::collections::BTreeMap<u32, Vec<(usize, String)>> = Default::default();
    for (rank, b) in all.iter().enumerate() {
        if b.len() < 6 {
            continue;
        }
        let node = u32::from_le_bytes(b[..4].try_into().expect("4"));
        let host = String::from_utf8_lossy(&b[6..]).into_owned();
        hosts.entry(node).or_default().push((rank, host));
    }
    for (node, ranks) in &hosts {
        let first = &ranks[0].1;
        if let Some((r, h)) = ranks.iter().find(|(_, h)| h != first) {
            bail!(
                Distributed,
                "ranks {} and {r} have the same node index (cross_rank {node}) but run on different hosts ({:?} and {:?}): \
                 the launcher's placement is not the one detcore assumed; see docs/launchers.md",
                ranks[0].0,
                first.split(' ').next().unwrap_or_default(),
                h.split(' ').next().unwrap_or_default()
            );
        }
    }
    Ok(())
}

impl Drop for DistributedContext {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rank_of(r: u32, job: &str, port: u16) -> DistributedConfig {
        DistributedConfig {
            rank: r,
            size: 2,
            local_rank: r,
            local_size: 2,
            port,
            job_id: Some(job.into()),
            connect_timeout: Duration::from_secs(60),
            ..DistributedConfig::single()
        }
    }

    /// Two jobs of two ranks start on one machine at the same moment with the same port: the
    /// second chief waits for the port, the ranks only join their own chief, and each job's
    /// collectives see only its own ranks.
    #[test]
    fn two_jobs_same_port_never_mix() {
        let port = star::listen_local().unwrap().1; // free a moment ago
        let mut threads = Vec::new();
        for job in ["job-a", "job-b"] {
            for r in 0..2 {
                let cfg = rank_of(r, job, port);
                threads.push(std::thread::spawn(move || {
                    let d = DistributedContext::new(cfg)?;
                    let all = d.allgather(format!("{job}/{r}").into_bytes())?.into_vecs();
                    Ok::<_, crate::error::Error>((d.job_id().unwrap().to_owned(), all))
                }));
            }
        }
        for t in threads {
            let (job, all) = t.join().unwrap().unwrap();
            assert_eq!(
                all,
                vec![
                    format!("{job}/0").into_bytes(),
                    format!("{job}/1").into_bytes()
                ]
            );
        }
    }

    /// Without a pinned port the chief's port comes from the job identity.
    #[test]
    fn automatic_port_follows_the_job() {
        let mut threads = Vec::new();
        for r in 0..2 {
            let mut cfg = rank_of(r, "auto-port-test", 0);
            cfg.port = 0;
            threads.push(std::thread::spawn(move || DistributedContext::new(cfg)));
        }
        let ds: Vec<_> = threads
            .into_iter()
            .map(|t| t.join().unwrap().unwrap())
            .collect();
        assert!(identity::auto_ports("auto-port-test").contains(&ds[0].config().port));
    }

    #[test]
    fn validation_names_fields() {
        assert!(DistributedConfig::single().validate().is_ok());
        let mut c = DistributedConfig::single();
        c.rank = 1;
        assert!(c.validate().unwrap_err().message().contains("rank 1"));
        let c = DistributedConfig {
            size: 4,
            local_size: 3,
            cross_size: 1,
            ..DistributedConfig::single()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .message()
            .contains("does not divide"));
        let c = DistributedConfig {
            size: 4,
            local_size: 2,
            cross_size: 2,
            ..DistributedConfig::single()
        };
        assert!(c.validate().unwrap_err().message().contains("chief_ip"));
    }
}
