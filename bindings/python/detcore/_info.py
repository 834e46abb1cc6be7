"""`core_context.info` (det_info_*).

Python's `core_context.info` is None off-cluster. detcore has info off-cluster too: the
hyperparameters (init(hparams=...) or DET_HPARAMS) and the latest checkpoint of the run, so the
same code resumes on a laptop, a Slurm cluster or a Determined cluster. Test
`core_context.info.on_cluster` where Python code tests `info is None`."""
import ctypes
import pathlib
from typing import TYPE_CHECKING, Any, Dict, Optional

from detcore import _json
from detcore._lib import lib

if TYPE_CHECKING:
    from detcore._context import Context


class TrialInfo:
    """The part of Python's `ClusterInfo.trial` that detcore knows."""

    def __init__(self, ctx: "Context") -> None:
        self._ctx = ctx

    @property
    def hparams(self) -> Dict[str, Any]:
        return _json.loads(lib().string_out("det_info_hparams_json", self._ctx._handle()) or "{}")


class Info:
    def __init__(self, ctx: "Context") -> None:
        self._ctx = ctx
        self.trial = TrialInfo(ctx)

    @property
    def on_cluster(self) -> bool:
        return bool(lib().value_out("det_info_is_on_cluster", ctypes.c_bool, self._ctx._handle()))

    @property
    def latest_checkpoint(self) -> Optional[str]:
        """The storage id to resume from (None: a fresh start)."""
        return lib().string_out("det_info_latest_checkpoint", self._ctx._handle())

    @property
    def steps_completed(self) -> int:
        """`steps_completed` of the latest checkpoint (0 without one)."""
        return int(lib().value_out("det_info_steps_completed", ctypes.c_int64, self._ctx._handle()))

    @property
    def hparams(self) -> Dict[str, Any]:
        """Shortcut for `trial.hparams`."""
        return self.trial.hparams

    @property
    def run_name(self) -> Optional[str]:
        """Off-cluster run name (None on-cluster)."""
        return lib().string_out("det_info_run_name", self._ctx._handle())

    @property
    def run_dir(self) -> Optional[pathlib.Path]:
        """Off-cluster run folder with metrics.jsonl (None on-cluster)."""
        d = lib().string_out("det_info_run_dir", self._ctx._handle())
        return pathlib.Path(d) if d else None

    def __repr__(self) -> str:
        return f"Info(on_cluster={self.on_cluster}, latest_checkpoint={self.latest_checkpoint!r})"
