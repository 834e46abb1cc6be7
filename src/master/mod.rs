//! The Determined master client (on-cluster): URL, TLS, retry policy, timeouts, typed calls.
//!
//! One [`MasterClient`] per context, shared by the caller's thread (synchronous calls), the
//! metrics shipper, the preemption watcher and the acknowledgement thread.

pub mod api;
pub mod client;
pub mod longpoll;
pub mod retry;
pub mod tls;

pub use crate::cluster_info::MasterUrl;
pub use api::AlertLevel;
pub use client::{CallOpts, MasterClient, Timeouts};
pub use retry::RetryPolicy;
pub use tls::TlsSettings;
