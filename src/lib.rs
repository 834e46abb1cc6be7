//! detcore: the Determined AI Core API as a native library.
//!
//! The safe Rust core lives in the modules below and is usable as a Rust crate on its own; the C
//! ABI (`det_*` functions, `include/detcore.h`) is in [`capi`] and only converts and checks.
//! See `README.md` for the C API grammar and `docs/protocol.md` for what the core relies on from
//! Determined.

#![deny(unsafe_op_in_unsafe_fn)]

// The macros (`err!`, `bail!`, `log_*!`, `obj!`) are in scope in every module declared after
// these three, without an import.
#[macro_use]
pub mod error;
#[macro_use]
pub mod log;
#[macro_use]
pub mod json;
pub mod intern;
pub mod percent;
pub mod time;

pub mod checkpoint;
pub mod cluster_info;
pub mod context;
pub mod distributed;
pub(crate) mod env;
pub mod host;
pub mod info;
pub mod master;
pub mod preempt;
pub mod profiler;
pub mod searcher;
pub mod storage;
pub mod tensorboard;
pub mod train;

pub mod capi;

#[cfg(test)]
pub(crate) mod testutil;

pub use context::{Context, InitOptions};
pub use error::{Error, Kind, Result};
pub use tensorboard::TensorboardMode;

/// The crate version, `MAJOR.MINOR.PATCH`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
