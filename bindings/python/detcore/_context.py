"""`detcore.init()` and the Context (det_core_init / det_core_close)."""
import ctypes
import logging
import os
import sys
import types
import weakref
from typing import Any, Dict, Optional, Sequence, Union

from detcore import _enums, _errors, _json
from detcore._checkpoint import CheckpointContext
from detcore._distributed import DistributedContext
from detcore._experimental import ExperimentalContext
from detcore._info import Info
from detcore._lib import InitOptions, Library, lib, signals_array, to_c
from detcore._preempt import PreemptContext
from detcore._profiler import ProfilerContext
from detcore._searcher import SearcherContext
from detcore._train import TrainContext

logger = logging.getLogger("detcore")


def _close_handle(L: Library, handle: int) -> None:
    """Close a context the program did not close (at garbage collection or interpreter exit), so
    that queued metrics are still delivered."""
    status = L.fn("det_core_close")(handle)
    if status != 0:
        sys.stderr.write(f"detcore: closing an unclosed context: {L.last_error()}\n")


class Context:
    """A Core API context: `checkpoint`, `train`, `preempt`, `searcher`, `distributed`, `info`,
    `profiler`, `experimental`, and `alert()`.
    Use it as `with detcore.init(...) as core_context:`; it is closed when the block ends (queued
    reports delivered, threads joined). Thread-safe."""

    def __init__(
        self,
        handle: int,
        distributed: Optional[DistributedContext],
        cluster_info_dir: Optional[Union[str, os.PathLike]] = None,
    ) -> None:
        self._h = handle
        self._closed = False
        self._cluster_info_dir = cluster_info_dir
        self._finalizer = weakref.finalize(self, _close_handle, lib(), handle)
        self.checkpoint = CheckpointContext(self)
        self.train = TrainContext(self)
        self.preempt = PreemptContext(self)
        self.searcher = SearcherContext(self)
        self.info = Info(self)
        self.profiler = ProfilerContext(self)
        self.experimental = ExperimentalContext(self)
        d = distributed if distributed is not None else DistributedContext(
            rank=0, size=1, local_rank=0, local_size=1, cross_rank=0, cross_size=1
        )
        d._bind(self)
        self.distributed = d

    def _handle(self) -> int:
        # After close() the (closed) handle is still passed: detcore answers StateError
        # "ctx was closed by det_core_close", which is the message users need.
        return self._h

    @property
    def handle(self) -> int:
        """The raw `det_context*` (for calling the C API directly)."""
        return self._h

    def alert(
        self,
        title: Optional[str] = None,
        description: Optional[str] = None,
        level: Optional[str] = "info",
    ) -> None:
        """Fire the experiment's custom webhooks (`level`: "info", "warn", "debug" or "error";
        None is "info"); returns once the master accepted it. Differences from Python: off-cluster
        the alert is logged at its level (Python raises ValueError), tasks that are not trials get
        UnsupportedError (Python: ValueError), and an unknown level raises ValueError (Python
        sends it as "info", so a typo like "warning" would go unnoticed)."""
        levels = {"info": 0, "warn": 1, "debug": 2, "error": 3}
        key = "info" if level is None else level
        if key not in levels:
            raise ValueError(f"level: {level!r} is not one of {', '.join(repr(k) for k in levels)}")
        lib().call(
            "det_core_alert",
            self._handle(),
            to_c(title, "title"),
            to_c(description, "description"),
            levels[key],
        )

    def close(self) -> None:
        """Deliver queued reports, join threads, release the context. Closing twice does nothing."""
        if self._closed:
            return
        self._closed = True
        self._finalizer.detach()
        lib().call("det_core_close", self._h)

    def __enter__(self) -> "Context":
        return self

    def __exit__(
        self,
        exc_type: Optional[type],
        exc_val: Optional[BaseException],
        exc_tb: Optional[types.TracebackType],
    ) -> None:
        invalid_hp = exc_val is not None and (
            isinstance(exc_val, _errors.InvalidHP)
            or (type(exc_val).__name__ == "InvalidHP" and type(exc_val).__module__.startswith("determined"))
        )
        if invalid_hp and not self._closed:
            # Python reports after close() over a fresh connection; detcore reports before.
            self.train.report_early_exit(_enums.EarlyExitReason.INVALID_HP)
        self.close()
        if invalid_hp:
            logger.info("InvalidHP detected during Trial init, converting InvalidHP to exit(0)")
            sys.exit(0)


#: The off-cluster run name of `python -c ...`, and of interactive use (REPL, stdin, Jupyter).
RUN_NAME_COMMAND = "python-c"
RUN_NAME_INTERACTIVE = "python-interactive"


def default_run_name(argv0: Optional[str] = None) -> Optional[str]:
    """The off-cluster run name `init()` uses when it is given none (and detcore's own choice
    does not apply because neither DET_RUN_NAME nor SLURM_JOB_ID is set, in which case None).

    The script's name without its suffix (`sys.argv[0]`'s stem: `python train.py` and
    `python -m pkg.train` run `train`), not the interpreter's (`python3.11`), so that two scripts
    sharing the default storage never resume each other's checkpoints; `python -c` runs
    `python-c`, interactive use (REPL, stdin, Jupyter) `python-interactive`."""
    if os.environ.get("DET_RUN_NAME") or os.environ.get("SLURM_JOB_ID"):
        return None
    if argv0 is None:
        argv0 = sys.argv[0] if sys.argv else ""
    if argv0 == "-c":
        return RUN_NAME_COMMAND
    stem = os.path.splitext(os.path.basename(argv0))[0]
    if argv0 in ("", "-") or stem in ("", ".", "..", "ipykernel_launcher"):
        return RUN_NAME_INTERACTIVE
    # detcore's rules for a run name: 1 to 200 bytes, no '/', NUL or '\\'.
    name = stem.replace("\\", "_").replace("\0", "_")
    return name.encode("utf-8", "surrogateescape")[:200].decode("utf-8", "ignore") or RUN_NAME_INTERACTIVE


def init(
    *,
    distributed: Optional[DistributedContext] = None,
    checkpoint_storage: Optional[Union[str, os.PathLike, Dict[str, Any]]] = None,
    preempt_mode: _enums.PreemptMode = _enums.PreemptMode.WorkersAskChief,
    tensorboard_mode: _enums.TensorboardMode = _enums.TensorboardMode.AUTO,
    run_name: Optional[str] = None,
    run_dir: Optional[Union[str, os.PathLike]] = None,
    hparams: Optional[Dict[str, Any]] = None,
    searcher_max_length: Optional[int] = None,
    preempt_signals: Optional[Sequence[int]] = None,
    disable_signal_handlers: bool = False,
    async_checkpoints: bool = False,
    halt_file: Optional[Union[str, os.PathLike]] = None,
    end_time: Optional[float] = None,
    halt_margin_seconds: Optional[float] = None,
    cluster_info_dir: Optional[Union[str, os.PathLike]] = None,
    report_queue_capacity: Optional[int] = None,
    close_timeout: Optional[float] = None,
    slurm_requeue: bool = False,
    save_trial_latest: Optional[int] = None,
    save_trial_best: Optional[int] = None,
    searcher_metric: Optional[str] = None,
    smaller_is_better: Optional[bool] = None,
) -> Context:
    """`determined.core.init()`: on-cluster under a Determined master, else off-cluster.

    The first four arguments are Python's (off-cluster, detcore honours `preempt_mode` and
    `tensorboard_mode`, which Python drops). `checkpoint_storage` is a path, `s3://`/`gs://` URL
    or a dict like the experiment config's. The others are detcore's (see det_init_options in
    detcore.h): off-cluster run name/folder, hyperparameters and searcher length, preemption
    sources (signals, halt file, end time), asynchronous checkpoint uploads, limits,
    `slurm_requeue` (requeue a preempted Slurm job at close, as DETCORE_SLURM_REQUEUE=1), and
    off-cluster checkpoint retention (`save_trial_latest`, `save_trial_best` by
    `searcher_metric`, `smaller_is_better`; unset everywhere: every checkpoint is kept).

    Off-cluster, a run resumes from the latest checkpoint of its name: `run_name`, else
    DET_RUN_NAME, else `slurm-$SLURM_JOB_ID`, else the script's name (see `default_run_name`)."""
    L = lib()
    o = InitOptions()
    L.call("det_init_options_default", ctypes.byref(o), ctypes.sizeof(o))
    keep: list = []  # keeps the C strings alive during det_core_init (which copies them)

    def s(value: Any, what: str) -> Optional[bytes]:
        b = to_c(value, what)
        keep.append(b)
        return b

    if isinstance(checkpoint_storage, dict):
        o.checkpoint_storage = s(_json.dumps(checkpoint_storage), "checkpoint_storage")
    else:
        o.checkpoint_storage = s(checkpoint_storage, "checkpoint_storage")
    o.preempt_mode = _enums.code(_enums.PreemptMode, preempt_mode, "preempt_mode")
    o.tensorboard_mode = _enums.code(_enums.TensorboardMode, tensorboard_mode, "tensorboard_mode")
    o.run_name = s(run_name if run_name is not None else default_run_name(), "run_name")
    o.run_dir = s(run_dir, "run_dir")
    if hparams is not None:
        o.hparams_json = s(_json.dumps(hparams), "hparams")
    if searcher_max_length is not None:
        o.searcher_max_length = int(searcher_max_length)
    if preempt_signals is not None:
        arr = signals_array(preempt_signals)
        keep.append(arr)
        o.preempt_signals = arr
        o.preempt_signals_len = len(preempt_signals)
    o.disable_signal_handlers = bool(disable_signal_handlers)
    o.async_checkpoints = bool(async_checkpoints)
    o.halt_file = s(halt_file, "halt_file")
    if end_time is not None:
        o.end_time = float(end_time)
    if halt_margin_seconds is not None:
        o.halt_margin_seconds = float(halt_margin_seconds)
    if distributed is not None:
        cfg = distributed._c_config(keep)
        keep.append(cfg)
        o.distributed = ctypes.pointer(cfg)
    o.cluster_info_dir = s(cluster_info_dir, "cluster_info_dir")
    if report_queue_capacity is not None:
        o.report_queue_capacity = int(report_queue_capacity)
    if close_timeout is not None:
        o.close_timeout_seconds = float(close_timeout)
    o.slurm_requeue = bool(slurm_requeue)
    for name, value in (("save_trial_latest", save_trial_latest), ("save_trial_best", save_trial_best)):
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**31:
                raise ValueError(f"{name} must be an integer from 0 to {2**31 - 1}, got {value!r}")
            setattr(o, name, value)
    o.searcher_metric = s(searcher_metric, "searcher_metric")
    if smaller_is_better is not None:
        o.smaller_is_better = 1 if smaller_is_better else 0

    h = ctypes.c_void_p()
    L.call("det_core_init", ctypes.byref(o), ctypes.byref(h))
    return Context(h.value, distributed, cluster_info_dir)  # type: ignore[arg-type]
