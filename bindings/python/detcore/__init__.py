"""detcore for Python: the Determined AI Core API (`determined.core`, 0.38.1) over libdetcore,
with ctypes (no compiled extension).

    import detcore

    with detcore.init(checkpoint_storage="/data/ckpts") as core_context:
        core_context.train.report_training_metrics(steps_completed=10, metrics={"loss": 0.5})
        with core_context.checkpoint.store_path({"steps_completed": 10}) as (path, storage_id):
            ...
        if core_context.preempt.should_preempt():
            ...

`detcore.core` is this module too, so `import detcore as det; det.core.init()` reads like
`import determined as det; det.core.init()`. libdetcore is loaded on first use from $DETCORE_LIB,
next to this package, or the system library path; a function missing from an older library raises
UnsupportedError when called, never at import.
"""
import sys as _sys

from detcore._checkpoint import CheckpointContext
from detcore._context import Context, init
from detcore._distributed import DistributedContext
from detcore._enums import (
    DownloadMode,
    EarlyExitReason,
    Launcher,
    PreemptMode,
    SearcherMode,
    TensorboardMode,
    Unit,
    UploadMode,
)
from detcore._errors import (
    BufferTooSmallError,
    ConflictError,
    DetcoreError,
    DetTimeoutError,
    DistributedError,
    InternalError,
    InvalidArgumentError,
    InvalidHP,
    LibraryNotFoundError,
    LocalIOError,
    MasterError,
    NotFoundError,
    StateError,
    StorageError,
    UnsupportedError,
    UploadArgumentError,
)
from detcore._experimental import ExperimentalContext
from detcore._info import ClusterInfo, Info, TrialInfo, get_cluster_info
from detcore._preempt import PreemptContext
from detcore._profiler import ProfilerContext
from detcore._searcher import SearcherContext, SearcherOperation
from detcore._tensorboard import TensorboardWriter
from detcore._train import TrainContext

__version__ = "0.1.0"

core = _sys.modules[__name__]


def library_path() -> str:
    """The file libdetcore was loaded from."""
    from detcore._lib import lib

    return lib().path


def library_version() -> str:
    """The loaded library's version, "MAJOR.MINOR.PATCH"."""
    from detcore._lib import lib

    return lib().fn("det_version")().decode()


def set_log_level(level: str) -> None:
    """Process-wide log threshold: "debug", "info", "warning", "error" or "off"."""
    from detcore._lib import lib

    levels = {"debug": 10, "info": 20, "warning": 30, "error": 40, "off": 255}
    if level.lower() not in levels:
        raise ValueError(f"level: {level!r} is not one of {', '.join(levels)}")
    lib().call("det_log_set_level", levels[level.lower()])


__all__ = [
    "BufferTooSmallError",
    "CheckpointContext",
    "ClusterInfo",
    "ConflictError",
    "Context",
    "DetTimeoutError",
    "DetcoreError",
    "DistributedContext",
    "DistributedError",
    "DownloadMode",
    "EarlyExitReason",
    "ExperimentalContext",
    "Info",
    "InternalError",
    "InvalidArgumentError",
    "InvalidHP",
    "Launcher",
    "LibraryNotFoundError",
    "LocalIOError",
    "MasterError",
    "NotFoundError",
    "PreemptContext",
    "PreemptMode",
    "ProfilerContext",
    "SearcherContext",
    "SearcherMode",
    "SearcherOperation",
    "StateError",
    "StorageError",
    "TensorboardMode",
    "TensorboardWriter",
    "TrainContext",
    "TrialInfo",
    "UnsupportedError",
    "Unit",
    "UploadArgumentError",
    "UploadMode",
    "core",
    "get_cluster_info",
    "init",
    "library_path",
    "library_version",
    "set_log_level",
]
