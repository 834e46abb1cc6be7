//! The C ABI: the only place with `extern "C"`. Each file is a thin shell over the safe core:
//! check arguments, call the core, map the result (see `boundary`).
//!
//! Grammar: functions are `det_<area>_<verb>`, types `det_<noun>`, constants `DET_<NOUN>`; the
//! handle comes first, then inputs, then out-parameters. Every function returns a
//! [`det_status`]; out-parameters are written only on success.

#![allow(non_camel_case_types)]
#![allow(clippy::missing_safety_doc)]

mod boundary;
pub mod ckpt;
pub mod core;
pub mod dist;
pub mod handle;
pub mod info;
pub mod oncluster;
pub mod options;
pub mod preempt;
pub mod profiler;
pub mod searcher;
pub mod status;
pub mod tbwriter;
pub mod tensorboard;
pub mod train;

pub use status::det_status;
