//! Rank information and collectives: Determined's `DistributedContext`, see
//! docs/protocol.md#distributed-rendezvous.

pub mod env;
pub mod star;
pub mod wire;

use crate::bail;
use crate::error::Result;
use star::{Group, Member, Star};
use std::sync::Arc;
use std::time::Duration;
pub use wire::ByteList;

/// Default port of the chief's collective server (Determined's `INTER_TRAIN_PROCESS_COMM_PORT_1`).
pub const DEFAULT_PORT: u16 = 12360;

/// The chief's port when none is given: `INTER_TRAIN_PROCESS_COMM_PORT_1` (which the master
/// sets per allocation on-cluster, and Determined's Python reads too), else [`DEFAULT_PORT`].
pub fn default_port() -> u16 {
    std::env::var("INTER_TRAIN_PROCESS_COMM_PORT_1")
        .ok()
        .and_then(|v| v.trim().parse::<u16>().ok())
        .filter(|p| *p > 0)
        .unwrap_or(DEFAULT_PORT)
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
    /// The chief's listening port.
    pub port: u16,
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
            port: default_port(),
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
    /// have joined, or fails after `connect_timeout` naming the ranks that did not).
    pub fn new(cfg: DistributedConfig) -> Result<DistributedContext> {
        cfg.validate()?;
        if cfg.size == 1 {
            return Ok(DistributedContext {
                cfg,
                global: None,
                local: None,
            });
        }
        let me = Member {
            group: Group::Global,
            group_rank: cfg.rank,
            group_size: cfg.size,
            global_rank: cfg.rank,
        };
        // As in Determined: on one node the chief is always reached on loopback.
        let chief = if cfg.local_size == cfg.size {
            "127.0.0.1".to_owned()
        } else {
            cfg.chief_ip.clone().unwrap_or_else(|| "127.0.0.1".into())
        };
        let global = if cfg.rank == 0 {
            Star::serve(
                star::listen(cfg.port)?,
                me,
                cfg.connect_timeout,
                cfg.collective_timeout,
            )?
        } else {
            Star::join(
                &format!("{chief}:{}", cfg.port),
                me,
                cfg.connect_timeout,
                cfg.collective_timeout,
            )?
        };
        let global = Arc::new(global);
        let local = if cfg.local_size > 1 {
            // The local chief listens on loopback; everyone learns its port from a global allgather.
            let listener = if cfg.local_rank == 0 {
                Some(star::listen_local()?)
            } else {
                None
            };
            let mut mine = cfg.cross_rank.to_le_bytes().to_vec();
            mine.extend_from_slice(&listener.as_ref().map_or(0u16, |l| l.1).to_le_bytes());
            let all = global.allgather(mine)?.into_vecs();
            let lm = Member {
                group: Group::Local,
                group_rank: cfg.local_rank,
                group_size: cfg.local_size,
                global_rank: cfg.rank,
            };
            let star = match listener {
                Some((l, _)) => Star::serve(l, lm, cfg.connect_timeout, cfg.collective_timeout)?,
                None => {
                    let ports: Vec<u16> = all
                        .iter()
                        .filter(|b| {
                            b.len() == 6
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
                        &format!("127.0.0.1:{}", ports[0]),
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

impl Drop for DistributedContext {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
