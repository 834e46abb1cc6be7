"""`core_context.profiler` (det_profiler_*)."""
from typing import TYPE_CHECKING

from detcore._lib import lib

if TYPE_CHECKING:
    from detcore._context import Context

_I32_MAX = 2**31 - 1


class ProfilerContext:
    """System metrics with determined.core's API: CPU, memory, disk, network and (through NVML)
    GPUs, sampled on a background thread of each node's local chief and reported as Determined's
    profiler groups (shown in the WebUI on-cluster; off-cluster in metrics.jsonl and TensorBoard,
    where Python's dummy profiler does nothing)."""

    def __init__(self, ctx: "Context") -> None:
        self._ctx = ctx

    def on(self, sampling_interval: float = 1, samples_per_report: int = 10) -> None:
        """Start sampling every `sampling_interval` seconds (at least 0.1) and report the mean of
        every `samples_per_report` samples (an int, at least 1); bad values raise ValueError with
        Python's messages. Idempotent: while on, another call does nothing. Only the local chief
        (local rank 0) samples; on other ranks this does nothing."""
        if not isinstance(samples_per_report, int) or not -_I32_MAX - 1 <= samples_per_report <= _I32_MAX:
            raise ValueError(
                "Samples per report specifies the number of samples to aggregate before reporting the "
                f"metric. It must be an int > 1, but was specified as {samples_per_report}."
            )
        lib().call("det_profiler_on", self._ctx._handle(), float(sampling_interval), samples_per_report)

    def off(self) -> None:
        """Stop sampling; the unfinished period is reported. Idempotent; `close()` does it too."""
        lib().call("det_profiler_off", self._ctx._handle())

    def __repr__(self) -> str:
        return "ProfilerContext()"


