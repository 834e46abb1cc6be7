"""`core_context.train` (det_train_*)."""
import ctypes
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional

from detcore import _enums, _json
from detcore._lib import lib, to_c

if TYPE_CHECKING:
    from detcore._context import Context


class TrainContext:
    """Metrics and trial state, with determined.core's API. Reports are queued and delivered by a
    background thread (the master on-cluster; metrics.jsonl and a log line off-cluster)."""

    def __init__(self, ctx: "Context") -> None:
        self._ctx = ctx

    def report_training_metrics(
        self,
        steps_completed: int,
        metrics: Dict[str, Any],
        batch_metrics: Optional[List[Dict[str, Any]]] = None,
    ) -> None:
        lib().call(
            "det_train_report_training_metrics",
            self._ctx._handle(),
            int(steps_completed),
            to_c(_json.dumps(metrics), "metrics"),
            None if batch_metrics is None else to_c(_json.dumps(batch_metrics), "batch_metrics"),
        )

    def report_validation_metrics(self, steps_completed: int, metrics: Dict[str, Any]) -> None:
        lib().call(
            "det_train_report_validation_metrics",
            self._ctx._handle(),
            int(steps_completed),
            to_c(_json.dumps(metrics), "metrics"),
        )

    def report_metrics(self, group: str, steps_completed: int, metrics: Dict[str, Any]) -> None:
        lib().call(
            "det_train_report_metrics",
            self._ctx._handle(),
            to_c(group, "group"),
            int(steps_completed),
            to_c(_json.dumps(metrics), "metrics"),
        )

    def report_scalars(self, group: str, steps_completed: int, metrics: Mapping[str, float]) -> None:
        """(detcore) The typed path: float metrics without JSON (det_train_report_scalars)."""
        names = [to_c(k, "metric name") for k in metrics]
        n = len(names)
        lib().call(
            "det_train_report_scalars",
            self._ctx._handle(),
            to_c(group, "group"),
            int(steps_completed),
            (ctypes.c_char_p * max(n, 1))(*names),
            (ctypes.c_double * max(n, 1))(*[float(v) for v in metrics.values()]),
            n,
        )

    def set_status(self, status: str) -> None:
        lib().call("det_train_set_status", self._ctx._handle(), to_c(status, "status"))

    def report_progress(self, progress: float) -> None:
        lib().call("det_train_report_progress", self._ctx._handle(), float(progress))

    def report_early_exit(self, reason: _enums.EarlyExitReason) -> None:
        lib().call(
            "det_train_report_early_exit", self._ctx._handle(), _enums.code(_enums.EarlyExitReason, reason, "reason")
        )

    def get_experiment_best_validation(self) -> Optional[float]:
        found, value = ctypes.c_bool(), ctypes.c_double()
        lib().call(
            "det_train_get_experiment_best_validation", self._ctx._handle(), ctypes.byref(found), ctypes.byref(value)
        )
        return value.value if found.value else None

    def set_metadata(self, metadata: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        """Merge `metadata` into the run's metadata; returns the result. (Off-cluster it is kept
        in the run folder; Python's dummy context raises AttributeError here.)"""
        text = lib().string_out("det_train_set_run_metadata", self._ctx._handle(), to_c(_json.dumps(metadata), "metadata"))
        return _json.loads(text) if text else None

    def get_metadata(self) -> Optional[Dict[str, Any]]:
        text = lib().string_out("det_train_get_run_metadata", self._ctx._handle())
        return _json.loads(text) if text else None

    def flush(self, timeout: float = 60.0) -> None:
        """(detcore) Wait until every report so far is delivered."""
        lib().call("det_train_flush", self._ctx._handle(), float(timeout))
