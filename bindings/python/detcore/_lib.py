"""Loading libdetcore and calling its C functions (ctypes; no compiled extension).

Every C function of detcore.h has one line in SIGNATURES. A function that the loaded library
does not export (an older libdetcore) is recorded as missing instead of failing the import;
calling it raises UnsupportedError naming the function and the library.

Adding a C function: add its line to SIGNATURES (same order as detcore.h), then call it with
``lib().call("det_x", ...)`` from the Python method that wraps it.
"""
import ctypes
import ctypes.util
import os
import pathlib
import threading
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from detcore import _errors

# ---- C types -----------------------------------------------------------------------------------
status_t = ctypes.c_int32
ptr = ctypes.c_void_p  # handles, and `char *` results we must free
cstr = ctypes.c_char_p  # NUL-terminated inputs
out_ptr = ctypes.POINTER(ctypes.c_void_p)
out_bool = ctypes.POINTER(ctypes.c_bool)
out_i32 = ctypes.POINTER(ctypes.c_int32)
out_i64 = ctypes.POINTER(ctypes.c_int64)
out_f64 = ctypes.POINTER(ctypes.c_double)
out_size = ctypes.POINTER(ctypes.c_size_t)
out_u32 = ctypes.POINTER(ctypes.c_uint32)
f64_array = ctypes.POINTER(ctypes.c_double)
i32, i64, f64, size_t, c_bool = ctypes.c_int32, ctypes.c_int64, ctypes.c_double, ctypes.c_size_t, ctypes.c_bool

#: det_selector_fn: bool (*)(const char *path, void *userdata)
SELECTOR = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_char_p, ctypes.c_void_p)

#: det_tb_mangler_fn: bool (*)(const char *path, int32_t rank, char *name, size_t name_size, void *userdata)
MANGLER = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_char_p, ctypes.c_int32, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)

STORAGE_ID_LEN = 37
TB_NAME_MAX = 4096


class DistributedConfig(ctypes.Structure):
    """det_distributed_config (fields appended only, as the C struct)."""

    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("rank", ctypes.c_int32),
        ("size", ctypes.c_int32),
        ("local_rank", ctypes.c_int32),
        ("local_size", ctypes.c_int32),
        ("cross_rank", ctypes.c_int32),
        ("cross_size", ctypes.c_int32),
        ("chief_ip", ctypes.c_char_p),
        ("port", ctypes.c_int32),
        ("connect_timeout_seconds", ctypes.c_double),
        ("collective_timeout_seconds", ctypes.c_double),
        ("job_id", ctypes.c_char_p),
    ]


class InitOptions(ctypes.Structure):
    """det_init_options (fields appended only, as the C struct)."""

    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("checkpoint_storage", ctypes.c_char_p),
        ("preempt_mode", ctypes.c_int32),
        ("tensorboard_mode", ctypes.c_int32),
        ("run_name", ctypes.c_char_p),
        ("run_dir", ctypes.c_char_p),
        ("hparams_json", ctypes.c_char_p),
        ("searcher_max_length", ctypes.c_int64),
        ("preempt_signals", ctypes.POINTER(ctypes.c_int32)),
        ("preempt_signals_len", ctypes.c_size_t),
        ("disable_signal_handlers", ctypes.c_bool),
        ("async_checkpoints", ctypes.c_bool),
        ("halt_file", ctypes.c_char_p),
        ("end_time", ctypes.c_double),
        ("halt_margin_seconds", ctypes.c_double),
        ("distributed", ctypes.POINTER(DistributedConfig)),
        ("cluster_info_dir", ctypes.c_char_p),
        ("report_queue_capacity", ctypes.c_size_t),
        ("close_timeout_seconds", ctypes.c_double),
        ("slurm_requeue", ctypes.c_bool),
        ("save_trial_latest", ctypes.c_int32),
        ("save_trial_best", ctypes.c_int32),
        ("searcher_metric", ctypes.c_char_p),
        ("smaller_is_better", ctypes.c_int32),
    ]


_D = ctypes.POINTER(DistributedConfig)
_O = ctypes.POINTER(InitOptions)

# ---- every C function: name -> (restype, argtypes), in detcore.h order ----------------------------
SIGNATURES: Dict[str, Tuple[Any, List[Any]]] = {
    # checkpoints
    "det_ckpt_store_path_begin": (status_t, [ptr, cstr, c_bool, out_ptr]),
    "det_ckpt_store_path_begin_steps": (status_t, [ptr, i64, cstr, c_bool, out_ptr]),
    "det_ckpt_store_path": (status_t, [ptr, out_ptr]),
    "det_ckpt_store_storage_id": (status_t, [ptr, out_ptr]),
    "det_ckpt_store_path_end": (status_t, [ptr, ctypes.c_char_p]),
    "det_ckpt_store_path_end_mode": (status_t, [ptr, i32, ctypes.c_char_p]),
    "det_ckpt_store_path_abort": (status_t, [ptr]),
    "det_ckpt_upload": (status_t, [ptr, cstr, cstr, c_bool, SELECTOR, ptr, ctypes.c_char_p]),
    "det_ckpt_download": (status_t, [ptr, cstr, cstr, i32, SELECTOR, ptr]),
    "det_ckpt_restore_path_begin": (status_t, [ptr, cstr, i32, SELECTOR, ptr, out_ptr]),
    "det_ckpt_restore_path": (status_t, [ptr, out_ptr]),
    "det_ckpt_restore_storage_id": (status_t, [ptr, out_ptr]),
    "det_ckpt_restore_path_end": (status_t, [ptr]),
    "det_ckpt_get_metadata": (status_t, [ptr, cstr, out_ptr]),
    "det_ckpt_delete": (status_t, [ptr, cstr]),
    "det_ckpt_wait": (status_t, [ptr]),
    # context, versions, strings, logging
    "det_core_init": (status_t, [_O, out_ptr]),
    "det_core_close": (status_t, [ptr]),
    "det_version": (ctypes.c_char_p, []),
    "det_version_number": (ctypes.c_uint32, []),
    "det_string_free": (None, [ptr]),
    "det_log_set_level": (status_t, [i32]),
    # distributed
    "det_distributed_from_env": (status_t, [i32, _D]),
    "det_dist_gather": (status_t, [ptr, ptr, size_t, out_ptr]),
    "det_dist_allgather": (status_t, [ptr, ptr, size_t, out_ptr]),
    "det_dist_broadcast": (status_t, [ptr, ptr, size_t, out_ptr]),
    "det_dist_gather_local": (status_t, [ptr, ptr, size_t, out_ptr]),
    "det_dist_allgather_local": (status_t, [ptr, ptr, size_t, out_ptr]),
    "det_dist_broadcast_local": (status_t, [ptr, ptr, size_t, out_ptr]),
    "det_dist_barrier": (status_t, [ptr]),
    "det_bytes_list_len": (status_t, [ptr, out_size]),
    "det_bytes_list_get": (status_t, [ptr, size_t, out_ptr, out_size]),
    "det_bytes_list_free": (status_t, [ptr]),
    # info
    "det_info_is_on_cluster": (status_t, [ptr, out_bool]),
    "det_info_latest_checkpoint": (status_t, [ptr, out_ptr]),
    "det_info_steps_completed": (status_t, [ptr, out_i64]),
    "det_info_hparams_json": (status_t, [ptr, out_ptr]),
    "det_info_get_hparam_f64": (status_t, [ptr, cstr, out_f64]),
    "det_info_get_hparam_i64": (status_t, [ptr, cstr, out_i64]),
    "det_info_get_hparam_str": (status_t, [ptr, cstr, out_ptr]),
    "det_info_get_hparam_f64_or": (status_t, [ptr, cstr, f64, out_f64]),
    "det_info_get_hparam_i64_or": (status_t, [ptr, cstr, i64, out_i64]),
    "det_info_get_hparam_str_or": (status_t, [ptr, cstr, cstr, out_ptr]),
    "det_info_run_name": (status_t, [ptr, out_ptr]),
    "det_info_run_dir": (status_t, [ptr, out_ptr]),
    "det_dist_rank": (status_t, [ptr, out_i32]),
    "det_dist_size": (status_t, [ptr, out_i32]),
    "det_dist_local_rank": (status_t, [ptr, out_i32]),
    "det_dist_local_size": (status_t, [ptr, out_i32]),
    "det_dist_cross_rank": (status_t, [ptr, out_i32]),
    "det_dist_cross_size": (status_t, [ptr, out_i32]),
    # on-cluster info, alerts
    "det_info_trial_id": (status_t, [ptr, out_i64]),
    "det_info_experiment_id": (status_t, [ptr, out_i64]),
    "det_info_trial_seed": (status_t, [ptr, out_u32]),
    "det_info_trial_run_id": (status_t, [ptr, out_i64]),
    "det_info_experiment_config_json": (status_t, [ptr, out_ptr]),
    "det_info_user_data_json": (status_t, [ptr, out_ptr]),
    "det_info_task_type": (status_t, [ptr, out_ptr]),
    "det_info_task_id": (status_t, [ptr, out_ptr]),
    "det_info_allocation_id": (status_t, [ptr, out_ptr]),
    "det_info_cluster_id": (status_t, [ptr, out_ptr]),
    "det_info_agent_id": (status_t, [ptr, out_ptr]),
    "det_info_master_url": (status_t, [ptr, out_ptr]),
    "det_info_container_count": (status_t, [ptr, out_size]),
    "det_info_container_addr": (status_t, [ptr, size_t, out_ptr]),
    "det_info_container_slot_count": (status_t, [ptr, size_t, out_i32]),
    "det_info_container_rank": (status_t, [ptr, out_i32]),
    "det_info_slot_id_count": (status_t, [ptr, out_size]),
    "det_info_slot_id": (status_t, [ptr, size_t, out_i32]),
    "det_info_gpu_uuid_count": (status_t, [ptr, out_size]),
    "det_info_gpu_uuid": (status_t, [ptr, size_t, out_ptr]),
    "det_info_trial_debug": (status_t, [ptr, out_bool]),
    "det_info_inter_node_network_interface": (status_t, [ptr, out_ptr]),
    "det_cluster_info_json": (status_t, [cstr, out_ptr]),
    "det_core_alert": (status_t, [ptr, cstr, cstr, i32]),
    "det_experimental_report_task_using_checkpoint": (status_t, [ptr, cstr]),
    "det_experimental_report_task_using_model_version": (status_t, [ptr, cstr, i32, i32]),
    # options
    "det_init_options_default": (status_t, [_O, size_t]),
    "det_distributed_config_default": (status_t, [_D, size_t]),
    # preemption
    "det_should_preempt": (status_t, [ptr, out_bool]),
    "det_should_preempt_ex": (status_t, [ptr, c_bool, out_bool]),
    "det_preempt_acknowledge": (status_t, [ptr]),
    "det_preempt_seconds_remaining": (status_t, [ptr, out_bool, out_f64]),
    # profiler
    "det_profiler_on": (status_t, [ptr, f64, i32]),
    "det_profiler_off": (status_t, [ptr]),
    # searcher
    "det_searcher_next_op": (status_t, [ptr, i32, out_ptr]),
    "det_searcher_op_length": (status_t, [ptr, out_i64]),
    "det_searcher_op_report_progress": (status_t, [ptr, f64]),
    "det_searcher_op_report_completed": (status_t, [ptr, f64]),
    "det_searcher_op_report_completed_json": (status_t, [ptr, cstr]),
    "det_searcher_op_free": (status_t, [ptr]),
    "det_searcher_get_configured_units": (status_t, [ptr, out_i32]),
    "det_searcher_acknowledge_out_of_ops": (status_t, [ptr]),
    # status and errors
    "det_status_name": (ctypes.c_char_p, [status_t]),
    "det_last_error_message": (ctypes.c_char_p, []),
    "det_last_error_copy": (status_t, [ctypes.c_char_p, size_t, out_size]),
    # TensorBoard event-file writer
    "det_tb_writer_open": (status_t, [cstr, out_ptr]),
    "det_tb_writer_add_scalar": (status_t, [ptr, cstr, i64, f64]),
    "det_tb_writer_add_histogram": (status_t, [ptr, cstr, i64, f64_array, size_t]),
    "det_tb_writer_flush": (status_t, [ptr]),
    "det_tb_writer_close": (status_t, [ptr]),
    # TensorBoard folder and uploads
    "det_train_get_tensorboard_path": (status_t, [ptr, out_ptr]),
    "det_train_upload_tensorboard_files": (status_t, [ptr, SELECTOR, ptr, MANGLER, ptr]),
    "det_train_flush_tensorboard": (status_t, [ptr, f64]),
    # training
    "det_train_report_training_metrics": (status_t, [ptr, i64, cstr, cstr]),
    "det_train_report_validation_metrics": (status_t, [ptr, i64, cstr]),
    "det_train_report_metrics": (status_t, [ptr, cstr, i64, cstr]),
    "det_train_report_scalars": (
        status_t,
        [ptr, cstr, i64, ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_double), size_t],
    ),
    "det_train_set_status": (status_t, [ptr, cstr]),
    "det_train_report_progress": (status_t, [ptr, f64]),
    "det_train_report_early_exit": (status_t, [ptr, i32]),
    "det_train_get_experiment_best_validation": (status_t, [ptr, out_bool, out_f64]),
    "det_train_set_run_metadata": (status_t, [ptr, cstr, out_ptr]),
    "det_train_get_run_metadata": (status_t, [ptr, out_ptr]),
    "det_train_flush": (status_t, [ptr, f64]),
}


# ---- argument conversion ---------------------------------------------------------------------------
def to_c(value: Any, what: str) -> Optional[bytes]:
    """A str / os.PathLike / bytes as NUL-terminated UTF-8 for C (None stays None). NUL bytes and
    text that is not valid UTF-8 (lone surrogates) are refused, never truncated."""
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, str):
        try:
            b = value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise _errors.InvalidArgumentError(
                _errors.DET_ERR_INVALID_ARGUMENT, f"{what} is not valid UTF-8: {e}"
            ) from None
    elif isinstance(value, bytes):
        b = value
    else:
        raise TypeError(f"{what} must be a str or os.PathLike, not {type(value).__name__}")
    if b"\0" in b:
        raise _errors.InvalidArgumentError(_errors.DET_ERR_INVALID_ARGUMENT, f"{what} contains a NUL byte")
    return b


def from_c(p: Optional[int]) -> Optional[str]:
    """A borrowed C string (NULL -> None)."""
    if not p:
        return None
    return ctypes.string_at(p).decode("utf-8", "surrogateescape")


class _Callback:
    """A Python callable called from C: an exception cannot cross the C frames, so it is kept
    and re-raised by `raise_if_failed` once the C call has returned."""

    def __init__(self, fn: Optional[Callable[..., Any]]) -> None:
        self.fn = fn
        self.error: Optional[BaseException] = None

    def raise_if_failed(self) -> None:
        if self.error is not None:
            err, self.error = self.error, None
            raise err


class Selector(_Callback):
    """A Python selector as a det_selector_fn. Exceptions it raises stop the selection and are
    re-raised by `raise_if_failed` after the C call returns."""

    def __init__(self, fn: Optional[Callable[[str], bool]]) -> None:
        super().__init__(fn)
        self.cfunc = SELECTOR(self._call) if fn is not None else SELECTOR()

    def _call(self, path: bytes, _userdata: Any) -> bool:
        if self.error is not None:
            return False
        try:
            return bool(self.fn(path.decode("utf-8", "surrogateescape")))  # type: ignore[misc]
        except BaseException as e:  # noqa: B902 - re-raised by raise_if_failed
            self.error = e
            return False


class Mangler(_Callback):
    """A Python name mangler `fn(relative_name, rank) -> new_name` as a det_tb_mangler_fn. An
    exception it raises (or a name that does not fit) abandons the upload call; `raise_if_failed`
    re-raises it after the C call returns."""

    def __init__(self, fn: Optional[Callable[[str, int], Any]]) -> None:
        super().__init__(fn)
        self.cfunc = MANGLER(self._call) if fn is not None else MANGLER()

    def _call(self, path: bytes, rank: int, name: int, name_size: int, _userdata: Any) -> bool:
        if self.error is not None:
            return False
        rel = path.decode("utf-8", "surrogateescape")
        try:
            new = self.fn(rel, rank)  # type: ignore[misc]
            if new is None:
                raise TypeError(f"the mangler returned None for {rel!r}; return the name to store it under")
            b = to_c(new, f"the mangler's name for {rel!r}")
            assert b is not None
            if len(b) >= name_size:
                raise _errors.InvalidArgumentError(
                    _errors.DET_ERR_INVALID_ARGUMENT,
                    f"the mangler's name for {rel!r} is {len(b)} bytes; at most {name_size - 1} "
                    "(DET_TB_NAME_MAX - 1) fit",
                )
            ctypes.memmove(name, b + b"\0", len(b) + 1)
            return True
        except BaseException as e:  # noqa: B902 - re-raised by raise_if_failed
            self.error = e
            return False


# ---- the library -------------------------------------------------------------------------------------
class Library:
    """A loaded libdetcore with its functions typed."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.cdll = ctypes.CDLL(path)
        self.functions: Dict[str, Any] = {}
        self.missing: List[str] = []
        for name, (restype, argtypes) in SIGNATURES.items():
            try:
                f = getattr(self.cdll, name)
            except AttributeError:
                self.missing.append(name)
                continue
            f.restype = restype
            f.argtypes = argtypes
            self.functions[name] = f

    def fn(self, name: str) -> Any:
        f = self.functions.get(name)
        if f is None:
            if name in SIGNATURES:
                why = f"libdetcore at {self.path} does not export {name} (an older library?)"
            else:
                why = f"{name} is not bound by this detcore Python package"
            raise _errors.UnsupportedError(_errors.DET_ERR_UNSUPPORTED, f"{name}: {why}")
        return f

    def has(self, name: str) -> bool:
        return name in self.functions

    def last_error(self) -> str:
        f = self.functions.get("det_last_error_message")
        if f is None:
            return "(libdetcore gives no error message)"
        return (f() or b"").decode("utf-8", "replace")

    def check(self, status: int) -> None:
        if status != 0:
            raise _errors.error_for(status, self.last_error())

    def call(self, name: str, *args: Any) -> None:
        """Call a function that returns det_status; raise its error on failure."""
        self.check(self.fn(name)(*args))

    def take_string(self, p: ctypes.c_void_p) -> Optional[str]:
        """Copy and free a `char **out` result (NULL -> None)."""
        if not p.value:
            return None
        try:
            return ctypes.string_at(p.value).decode("utf-8", "surrogateescape")
        finally:
            self.fn("det_string_free")(p)

    def string_out(self, name: str, *args: Any) -> Optional[str]:
        """Call `name(*args, char **out)` and return the string."""
        out = ctypes.c_void_p()
        self.call(name, *args, ctypes.byref(out))
        return self.take_string(out)

    def value_out(self, name: str, ctype: Any, *args: Any) -> Any:
        """Call `name(*args, T *out)` and return the value."""
        out = ctype()
        self.call(name, *args, ctypes.byref(out))
        return out.value

    def bytes_list(self, list_ptr: ctypes.c_void_p) -> Optional[List[bytes]]:
        """Copy and free a det_bytes_list (NULL -> None)."""
        if not list_ptr.value:
            return None
        try:
            n = self.value_out("det_bytes_list_len", ctypes.c_size_t, list_ptr)
            items = []
            for i in range(n):
                data, length = ctypes.c_void_p(), ctypes.c_size_t()
                self.call("det_bytes_list_get", list_ptr, i, ctypes.byref(data), ctypes.byref(length))
                items.append(ctypes.string_at(data.value, length.value) if length.value else b"")
            return items
        finally:
            self.fn("det_bytes_list_free")(list_ptr)


def candidates() -> Iterator[str]:
    """Where libdetcore is looked for, in order: $DETCORE_LIB (only there, when set), next to
    this package, then the system's library search path."""
    env = os.environ.get("DETCORE_LIB")
    if env:
        yield env
        return
    here = pathlib.Path(__file__).resolve().parent
    for d in (here, here / "lib"):
        for name in ("libdetcore.so", "libdetcore.so.1", "libdetcore.dylib"):
            if (d / name).exists():
                yield str(d / name)
    found = ctypes.util.find_library("detcore")
    if found:
        yield found
    yield "libdetcore.so.1"
    yield "libdetcore.so"


_lock = threading.Lock()
_lib: Optional[Library] = None


def lib() -> Library:
    """The loaded library (loaded on first use)."""
    global _lib
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is None:
            tried = []
            for c in candidates():
                try:
                    _lib = Library(c)
                    break
                except OSError as e:
                    tried.append(f"{c} ({e})")
            else:
                raise _errors.LibraryNotFoundError(
                    "cannot load libdetcore; set DETCORE_LIB to its path, put libdetcore.so next to "
                    "the detcore package, or add its folder to LD_LIBRARY_PATH. Tried: " + "; ".join(tried)
                )
    return _lib


def signals_array(signals: Sequence[int]) -> Any:
    return (ctypes.c_int32 * max(1, len(signals)))(*[int(s) for s in signals])
