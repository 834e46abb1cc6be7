"""`core_context.train` (det_train_*)."""
import ctypes
import os
import pathlib
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Union

from detcore import _enums, _json
from detcore._lib import Mangler, Selector, lib, to_c

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

    # ---- TensorBoard ----
    def get_tensorboard_path(self) -> pathlib.Path:
        """The local TensorBoard folder: `$TMPDIR/tensorboard-<allocation_id>-<rank>` on-cluster,
        `<run_dir>/tensorboard` off-cluster (Python's dummy context returns None there). Files
        written into it (a `detcore.TensorboardWriter`'s, profiler traces) are uploaded with the
        metrics' event files in TensorboardMode.AUTO, or by `upload_tensorboard_files()`."""
        return pathlib.Path(lib().string_out("det_train_get_tensorboard_path", self._ctx._handle()) or "")

    def upload_tensorboard_files(
        self,
        selector: Optional[Callable[[pathlib.Path], bool]] = None,
        mangler: Optional[Callable[[pathlib.Path, int], Union[str, "os.PathLike[str]"]]] = None,
    ) -> None:
        """TensorboardMode.MANUAL only (else StateError, a RuntimeError as Python's): upload the
        files of the TensorBoard folder that `selector(path)` accepts (it gets the absolute path,
        as Python's; default: all), each under the name `mangler(relative_path, rank)` returns
        (default: unchanged; a relative path, no `..`). Returns once the files are listed; the
        upload runs in the background (`flush_tensorboard()` waits for it). Unlike Python, a
        second call within a second is not ignored, and failed uploads are retried.

        An exception from `mangler` abandons the call (nothing is queued) and is re-raised; one
        from `selector` stops the selection (files it accepted before are still queued) and is
        re-raised."""
        base: Optional[pathlib.Path] = None
        sel_fn = None
        if selector is not None:
            base = self.get_tensorboard_path()

            def sel_fn(rel: str) -> bool:
                return bool(selector(base / rel))  # type: ignore[misc,operator]

        man_fn = None
        if mangler is not None:

            def man_fn(rel: str, rank: int) -> Any:
                return mangler(pathlib.Path(rel), rank)  # type: ignore[misc]

        sel, man = Selector(sel_fn), Mangler(man_fn)
        status = lib().fn("det_train_upload_tensorboard_files")(self._ctx._handle(), sel.cfunc, None, man.cfunc, None)
        sel.raise_if_failed()
        man.raise_if_failed()
        lib().check(status)

    def flush_tensorboard(self, timeout: float = 60.0) -> None:
        """(detcore) Wait until the TensorBoard files are in the checkpoint storage (AUTO: the
        reports so far are written and synced; MANUAL: the uploads so far are done)."""
        lib().call("det_train_flush_tensorboard", self._ctx._handle(), float(timeout))
