//! Rank information and collectives (Determined's `DistributedContext`, PROTOCOL.md §9).

use crate::bail;
use crate::error::Result;
use std::time::Duration;

/// Default port of the chief's collective server (Determined's `INTER_TRAIN_PROCESS_COMM_PORT_1`).
pub const DEFAULT_PORT: u16 = 12360;

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
            port: DEFAULT_PORT,
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
