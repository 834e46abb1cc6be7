"""The enums of `determined.core`, with the same names and values, and their C codes.

Wherever detcore takes one of these it also accepts the same-named member of determined's own
enum (e.g. `determined.core.PreemptMode.ChiefOnly`), so code can pass either."""
import enum
from typing import Any, Dict, Type, TypeVar

E = TypeVar("E", bound=enum.Enum)


class PreemptMode(enum.Enum):
    WorkersAskChief = "WORKERS_ASK_CHIEF"
    ChiefOnly = "CHIEF_ONLY"
    WorkersAskMaster = "WORKERS_ASK_MASTER"


class TensorboardMode(enum.Enum):
    AUTO = "AUTO"
    MANUAL = "MANUAL"


class DownloadMode(enum.Enum):
    LocalWorkersShareDownload = "LOCAL_WORKERS_SHARE_DOWNLOAD"
    NoSharedDownload = "NO_SHARED_DOWNLOAD"


class SearcherMode(enum.Enum):
    WorkersAskChief = "WORKERS_ASK_CHIEF"
    ChiefOnly = "CHEIF_ONLY"  # sic: determined 0.38.1's value, kept so values compare equal


class Unit(enum.Enum):
    EPOCHS = "EPOCHS"
    RECORDS = "RECORDS"
    BATCHES = "BATCHES"


class EarlyExitReason(enum.Enum):
    INVALID_HP = "EXITED_REASON_INVALID_HP"
    # determined's USER_REQUESTED_STOP is left out: the 0.38.1 master rejects it.


class Launcher(enum.Enum):
    """Whose environment describes the ranks (detcore's DET_LAUNCHER_*)."""

    AUTO = "auto"
    TORCH = "torch"
    DEEPSPEED = "deepspeed"
    HOROVOD = "horovod"
    OPENMPI = "openmpi"
    MPICH = "mpich"
    SLURM = "slurm"
    DETERMINED = "determined"


class UploadMode(enum.Enum):
    """(detcore) How `store_path` hands a checkpoint over (DET_UPLOAD_MODE_*): DEFAULT as
    `init(async_checkpoints=...)` says, SYNC stored and reported before the block ends, ASYNC
    handed to the background uploader (`checkpoint.wait()` waits for it)."""

    DEFAULT = "DEFAULT"
    SYNC = "SYNC"
    ASYNC = "ASYNC"


C_CODES: Dict[Any, int] = {
    PreemptMode.WorkersAskChief: 0,
    PreemptMode.ChiefOnly: 1,
    PreemptMode.WorkersAskMaster: 2,
    TensorboardMode.AUTO: 0,
    TensorboardMode.MANUAL: 1,
    DownloadMode.LocalWorkersShareDownload: 0,
    DownloadMode.NoSharedDownload: 1,
    SearcherMode.WorkersAskChief: 0,
    SearcherMode.ChiefOnly: 1,
    EarlyExitReason.INVALID_HP: 1,
    Launcher.AUTO: 0,
    Launcher.TORCH: 1,
    Launcher.DEEPSPEED: 2,
    Launcher.HOROVOD: 3,
    Launcher.OPENMPI: 4,
    Launcher.MPICH: 5,
    Launcher.SLURM: 6,
    Launcher.DETERMINED: 7,
    UploadMode.DEFAULT: 0,
    UploadMode.SYNC: 1,
    UploadMode.ASYNC: 2,
}
UNITS = {0: None, 1: Unit.EPOCHS, 2: Unit.RECORDS, 3: Unit.BATCHES}


def coerce(cls: Type[E], value: Any, what: str) -> E:
    """`value` as a member of `cls`: a member, a value, or a same-named member of another enum."""
    if isinstance(value, cls):
        return value
    name = getattr(value, "name", None)
    if isinstance(value, enum.Enum) and name in cls.__members__:
        return cls[name]
    try:
        return cls(value)
    except ValueError:
        raise ValueError(
            f"{what}: {value!r} is not a {cls.__name__} (expected one of {', '.join(cls.__members__)})"
        ) from None


def code(cls: Type[E], value: Any, what: str) -> int:
    return C_CODES[coerce(cls, value, what)]
