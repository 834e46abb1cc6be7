"""Exceptions: every detcore failure is a DetcoreError carrying the C status code and detcore's
message. Each status has its own class, which also derives from the built-in exception Python's
`determined.core` raises in the same situation (ValueError for bad arguments, RuntimeError for
calls in the wrong state, ...), so `except ValueError:` keeps working."""
from typing import Dict, Type

DET_OK = 0
DET_ERR_INVALID_ARGUMENT = 1
DET_ERR_STATE = 2
DET_ERR_NOT_FOUND = 3
DET_ERR_CONFLICT = 4
DET_ERR_UNSUPPORTED = 5
DET_ERR_BUFFER_TOO_SMALL = 6
DET_ERR_IO = 10
DET_ERR_STORAGE = 11
DET_ERR_MASTER = 12
DET_ERR_TIMEOUT = 13
DET_ERR_DISTRIBUTED = 14
DET_ERR_INTERNAL = 99

STATUS_NAMES = {
    DET_OK: "DET_OK",
    DET_ERR_INVALID_ARGUMENT: "DET_ERR_INVALID_ARGUMENT",
    DET_ERR_STATE: "DET_ERR_STATE",
    DET_ERR_NOT_FOUND: "DET_ERR_NOT_FOUND",
    DET_ERR_CONFLICT: "DET_ERR_CONFLICT",
    DET_ERR_UNSUPPORTED: "DET_ERR_UNSUPPORTED",
    DET_ERR_BUFFER_TOO_SMALL: "DET_ERR_BUFFER_TOO_SMALL",
    DET_ERR_IO: "DET_ERR_IO",
    DET_ERR_STORAGE: "DET_ERR_STORAGE",
    DET_ERR_MASTER: "DET_ERR_MASTER",
    DET_ERR_TIMEOUT: "DET_ERR_TIMEOUT",
    DET_ERR_DISTRIBUTED: "DET_ERR_DISTRIBUTED",
    DET_ERR_INTERNAL: "DET_ERR_INTERNAL",
}


class DetcoreError(Exception):
    """A failed detcore call. `status` is the DET_ERR_* code, `message` detcore's text."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    @property
    def status_name(self) -> str:
        return STATUS_NAMES.get(self.status, "DET_UNKNOWN_STATUS")

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):  # picklable (e.g. across multiprocessing)
        return (type(self), (self.status, self.message))


class InvalidArgumentError(DetcoreError, ValueError):
    """DET_ERR_INVALID_ARGUMENT: a bad argument (malformed JSON, unknown value, out of range)."""


class UploadArgumentError(InvalidArgumentError, RuntimeError):
    """`upload(ckpt_dir=None)` where that cannot work (`shard=False`, or every rank of a sharded
    upload, or a selector without a folder): a RuntimeError, as determined raises, and a
    DET_ERR_INVALID_ARGUMENT."""


class StateError(DetcoreError, RuntimeError):
    """DET_ERR_STATE: a call out of order, twice, after close, or on the wrong rank."""


class NotFoundError(DetcoreError, LookupError):
    """DET_ERR_NOT_FOUND: no such checkpoint, hyperparameter or file."""


class ConflictError(DetcoreError, RuntimeError):
    """DET_ERR_CONFLICT: ranks' files or metadata disagree."""


class UnsupportedError(DetcoreError, NotImplementedError):
    """DET_ERR_UNSUPPORTED: not available in this library, mode or configuration."""


class BufferTooSmallError(DetcoreError):
    """DET_ERR_BUFFER_TOO_SMALL."""


class LocalIOError(DetcoreError, OSError):
    """DET_ERR_IO: local file-system I/O failed."""


class StorageError(DetcoreError, OSError):
    """DET_ERR_STORAGE: the checkpoint storage failed."""


class MasterError(DetcoreError, RuntimeError):
    """DET_ERR_MASTER: the Determined master refused a request or could not be reached."""


class DetTimeoutError(DetcoreError, TimeoutError):
    """DET_ERR_TIMEOUT: a deadline passed."""


class DistributedError(DetcoreError, RuntimeError):
    """DET_ERR_DISTRIBUTED: a collective failed (a peer died, ranks disagree)."""


class InternalError(DetcoreError, RuntimeError):
    """DET_ERR_INTERNAL: a bug in detcore."""


class LibraryNotFoundError(OSError):
    """libdetcore could not be loaded."""


_BY_STATUS: Dict[int, Type[DetcoreError]] = {
    DET_ERR_INVALID_ARGUMENT: InvalidArgumentError,
    DET_ERR_STATE: StateError,
    DET_ERR_NOT_FOUND: NotFoundError,
    DET_ERR_CONFLICT: ConflictError,
    DET_ERR_UNSUPPORTED: UnsupportedError,
    DET_ERR_BUFFER_TOO_SMALL: BufferTooSmallError,
    DET_ERR_IO: LocalIOError,
    DET_ERR_STORAGE: StorageError,
    DET_ERR_MASTER: MasterError,
    DET_ERR_TIMEOUT: DetTimeoutError,
    DET_ERR_DISTRIBUTED: DistributedError,
    DET_ERR_INTERNAL: InternalError,
}


def error_for(status: int, message: str) -> DetcoreError:
    return _BY_STATUS.get(status, DetcoreError)(status, message)


class InvalidHP(Exception):
    """Raise inside `with detcore.init() as ctx:` when the hyperparameters cannot work: the
    context reports an early exit (EXITED_REASON_INVALID_HP) and the program exits 0, as with
    `determined.InvalidHP`."""
