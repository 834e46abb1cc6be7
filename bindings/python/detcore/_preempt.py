"""`core_context.preempt` (det_should_preempt*, det_preempt_*)."""
import ctypes
from typing import TYPE_CHECKING, Optional

from detcore._lib import lib

if TYPE_CHECKING:
    from detcore._context import Context


class PreemptContext:
    """Preemption: the master's request on-cluster, and everywhere the preemption signals
    (SIGTERM, SIGUSR1 by default), DET_HALT_FILE and the job's end time. `should_preempt()` reads
    an atomic flag (no network, no collective), so calling it every batch is fine."""

    def __init__(self, ctx: "Context") -> None:
        self._ctx = ctx

    def should_preempt(self, auto_ack: bool = True) -> bool:
        out = ctypes.c_bool()
        lib().call("det_should_preempt_ex", self._ctx._handle(), bool(auto_ack), ctypes.byref(out))
        return bool(out.value)

    def acknowledge_preemption_signal(self) -> None:
        lib().call("det_preempt_acknowledge", self._ctx._handle())

    def seconds_remaining(self) -> Optional[float]:
        """(detcore) Seconds until the job's end time (Slurm, DET_END_TIME), or None."""
        known, seconds = ctypes.c_bool(), ctypes.c_double()
        lib().call("det_preempt_seconds_remaining", self._ctx._handle(), ctypes.byref(known), ctypes.byref(seconds))
        return seconds.value if known.value else None
