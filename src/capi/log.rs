//! `det_log_*`: the library's log threshold.

use super::boundary::call;
use super::enums;
use super::status::det_status;

/// Set the log threshold for the whole process: one of `DET_LOG_LEVEL_*` (overrides
/// `DETCORE_LOG_LEVEL`). Log lines go to stderr as `LEVEL: [pid] detcore: message`.
#[no_mangle]
pub extern "C" fn det_log_set_level(level: i32) -> det_status {
    call("det_log_set_level", || {
        let l = enums::log_level(level, "level")?;
        crate::log::set_level(l);
        Ok(())
    })
}
