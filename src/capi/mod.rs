//! The C ABI: the only place with `extern "C"`. Each file is a thin shell over the safe core:
//! check arguments, call the core, map the result (see `boundary`).
//!
//! Grammar: functions are `det_<area>_<verb>`, types `det_<noun>`, constants `DET_<NOUN>`; the
//! handle comes first, then inputs, then out-parameters. Every function returns a
//! [`det_status`]; out-parameters are written only on success.

#![allow(non_camel_case_types)]
#![allow(clippy::missing_safety_doc)]

// The layers, bottom up (no file imports one above it): `status` (codes, last error) →
// `handle` (det_context, registries of short-lived handles) → `boundary` (the panic boundary,
// argument and out-parameter helpers) → the areas. `enums` (every DET_* enumeration and its
// conversion) imports nothing from capi; the areas use it.
//
// One area per file, named after its prefix: `det_core_*` in core.rs, `det_info_*` in info.rs,
// and so on. The modules are listed in the order the header presents them.
mod boundary;
pub mod ckpt;
pub mod cluster_info;
pub mod core;
pub mod dist;
pub mod enums;
pub mod experimental;
pub mod handle;
pub mod info;
pub mod log;
pub mod options;
pub mod preempt;
pub mod profiler;
pub mod searcher;
pub mod status;
pub mod tb_writer;
pub mod train;

pub use status::det_status;
