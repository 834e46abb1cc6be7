"""`detcore.TensorboardWriter` (det_tb_writer_*): TensorBoard event files for your own scalars and
histograms, without TensorFlow or PyTorch."""
import ctypes
import os
import sys
import types
import weakref
from typing import Any, Iterable, Optional, Union

from detcore._lib import Library, lib, to_c


def _close_handle(L: Library, handle: int) -> None:
    if L.fn("det_tb_writer_close")(handle) != 0:
        sys.stderr.write(f"detcore: closing an unclosed TensorboardWriter: {L.last_error()}\n")


class TensorboardWriter:
    """A writer of TensorBoard event files in `log_dir` (created at the first write), with the
    methods of `torch.utils.tensorboard.SummaryWriter` that detcore supports. Write into
    `core_context.train.get_tensorboard_path()` and the files are uploaded with the metrics'
    event files (TensorboardMode.AUTO) or by `upload_tensorboard_files()` (MANUAL). Events reach
    the file at the first add a second or more after the previous write (no background thread),
    on `flush()` and on `close()`.

        with detcore.TensorboardWriter(core_context.train.get_tensorboard_path()) as tb:
            tb.add_scalar("lr", 0.01, global_step=step)
            tb.add_histogram("weights", weights, global_step=step)   # any numbers, or a numpy array

    Thread-safe. `close()` is idempotent; any other call after it raises StateError."""

    def __init__(self, log_dir: Union[str, os.PathLike]) -> None:
        self._h: Optional[int] = None
        self._closed = False
        self.log_dir = os.fspath(log_dir)
        h = ctypes.c_void_p()
        lib().call("det_tb_writer_open", to_c(log_dir, "log_dir"), ctypes.byref(h))
        self._h = h.value
        # A writer the program drops (or leaves open at exit) is closed, its events written.
        self._finalizer = weakref.finalize(self, _close_handle, lib(), self._h)

    def _handle(self) -> Optional[int]:
        # After close() the (closed) handle is still passed: detcore answers StateError.
        return self._h

    def add_scalar(self, tag: str, scalar_value: float, global_step: int = 0) -> None:
        """The scalar `tag` = `scalar_value` at `global_step` (stored as float32; NaN and ±inf
        kept)."""
        lib().call("det_tb_writer_add_scalar", self._handle(), to_c(tag, "tag"), int(global_step), float(scalar_value))

    def add_histogram(self, tag: str, values: Any, global_step: int = 0) -> None:
        """The histogram of `values` (an iterable of numbers, or a numpy array of any shape) at
        `global_step`, with TensorFlow's default buckets. Non-finite values are not counted."""
        arr, n = _doubles(values)
        lib().call("det_tb_writer_add_histogram", self._handle(), to_c(tag, "tag"), int(global_step), arr, n)

    def flush(self) -> None:
        """Write the events added so far."""
        lib().call("det_tb_writer_flush", self._handle())

    def close(self) -> None:
        """Write what is buffered and close the file. Closing twice does nothing."""
        if self._closed or self._h is None:
            return
        self._closed = True
        self._finalizer.detach()
        lib().call("det_tb_writer_close", self._h)

    def __enter__(self) -> "TensorboardWriter":
        return self

    def __exit__(
        self,
        exc_type: Optional[type],
        exc_val: Optional[BaseException],
        exc_tb: Optional[types.TracebackType],
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TensorboardWriter({self.log_dir!r}{', closed' if self._closed else ''})"


def _doubles(values: Any) -> "tuple[Any, int]":
    """`values` as a C double array and its length (a numpy array is read without a copy when it
    is already contiguous float64)."""
    np = sys.modules.get("numpy")
    if np is not None and isinstance(values, np.ndarray):
        a = np.ascontiguousarray(values, dtype=np.float64).reshape(-1)
        return a.ctypes.data_as(ctypes.POINTER(ctypes.c_double)), int(a.size)
    items = [float(v) for v in _iterate(values)]
    return (ctypes.c_double * max(1, len(items)))(*items), len(items)


def _iterate(values: Any) -> Iterable[Any]:
    if isinstance(values, (str, bytes)):
        raise TypeError("values must be numbers, not a string")
    try:
        return iter(values)
    except TypeError:
        return iter([values])  # a single number, as SummaryWriter accepts
