//! `det_profiler_*`: system metrics profiling.

use super::boundary::with_ctx;
use super::handle::det_context;
use super::status::det_status;

/// `profiler.on(sampling_interval, samples_per_report)`: start sampling the machine every
/// `sampling_interval` seconds (Python's default 1; at least 0.1) and report the mean of every
/// `samples_per_report` samples (default 10; at least 1) as Determined's profiler groups `gpu`,
/// `cpu`, `memory`, `disk`, `network` (on-cluster to the master, shown in the WebUI; off-cluster
/// to `metrics.jsonl` and TensorBoard). Sampling runs on a background thread and costs well
/// under 1 % of a core at 0.1 s. GPUs are read through NVML when the NVIDIA driver's
/// `libnvidia-ml.so.1` can be loaded, else the `gpu` group is left out.
///
/// Idempotent: while on, another call does nothing (its arguments are not checked, as in
/// Python). Only the local chief (local rank 0) samples; on other ranks this returns `DET_OK` and
/// does nothing. Bad arguments: `DET_ERR_INVALID_ARGUMENT` with Python's message.
#[no_mangle]
pub extern "C" fn det_profiler_on(
    ctx: *mut det_context,
    sampling_interval: f64,
    samples_per_report: i32,
) -> det_status {
    with_ctx("det_profiler_on", ctx, |c| {
        c.profiler()
            .on(sampling_interval, i64::from(samples_per_report))
    })
}

/// `profiler.off()`: stop sampling. The samples of the unfinished period are reported (a last
/// sample is taken first), and the call returns when the sampling thread has ended. Idempotent.
/// `det_core_close` does the same, before delivering the last reports.
#[no_mangle]
pub extern "C" fn det_profiler_off(ctx: *mut det_context) -> det_status {
    with_ctx("det_profiler_off", ctx, |c| {
        c.profiler().off();
        Ok(())
    })
}
