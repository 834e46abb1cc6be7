"""A thin ctypes view of libdetcore for the TensorBoard and profiler tests (no binding needed)."""
import ctypes
import pathlib

DET_TENSORBOARD_MODE_AUTO = 0
DET_TENSORBOARD_MODE_MANUAL = 1
DET_ERR_UNSUPPORTED = 5


from abi_structs import Opts  # noqa: E402,F401


class DetError(RuntimeError):
    def __init__(self, status: int, message: str):
        super().__init__(f"status {status}: {message}")
        self.status = status
        self.message = message


class Lib:
    def __init__(self, path: pathlib.Path):
        lib = ctypes.CDLL(str(path))
        lib.det_last_error_message.restype = ctypes.c_char_p
        lib.det_string_free.argtypes = [ctypes.c_void_p]
        lib.det_train_report_training_metrics.argtypes = [
            ctypes.c_void_p, ctypes.c_int64, ctypes.c_char_p, ctypes.c_char_p]
        lib.det_train_report_validation_metrics.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_char_p]
        lib.det_train_report_metrics.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int64, ctypes.c_char_p]
        lib.det_train_report_scalars.argtypes = [
            ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int64,
            ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_double), ctypes.c_size_t]
        lib.det_train_flush.argtypes = [ctypes.c_void_p, ctypes.c_double]
        lib.det_train_flush_tensorboard.argtypes = [ctypes.c_void_p, ctypes.c_double]
        lib.det_train_get_tensorboard_path.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]
        lib.det_profiler_on.argtypes = [ctypes.c_void_p, ctypes.c_double, ctypes.c_int32]
        lib.det_profiler_off.argtypes = [ctypes.c_void_p]
        lib.det_core_close.argtypes = [ctypes.c_void_p]
        self.lib = lib

    def check(self, status: int) -> None:
        if status != 0:
            raise DetError(status, self.lib.det_last_error_message().decode())

    def init(self, storage, run_dir: pathlib.Path, run_name: str = "run", mode: int = DET_TENSORBOARD_MODE_AUTO):
        o = Opts()
        self.check(self.lib.det_init_options_default(ctypes.byref(o), ctypes.sizeof(o)))
        o.checkpoint_storage = str(storage).encode()
        o.run_dir = str(run_dir).encode()
        o.run_name = run_name.encode()
        o.tensorboard_mode = mode
        o.disable_signal_handlers = True
        o.cluster_info_dir = b"/nonexistent/detcore-test-info"
        ctx = ctypes.c_void_p()
        self.check(self.lib.det_core_init(ctypes.byref(o), ctypes.byref(ctx)))
        return ctx

    def tensorboard_path(self, ctx) -> pathlib.Path:
        out = ctypes.c_void_p()
        self.check(self.lib.det_train_get_tensorboard_path(ctx, ctypes.byref(out)))
        s = ctypes.cast(out, ctypes.c_char_p).value.decode()
        self.lib.det_string_free(out)
        return pathlib.Path(s)

    def scalars(self, ctx, group: str, steps: int, values: dict) -> None:
        names = (ctypes.c_char_p * len(values))(*[k.encode() for k in values])
        vals = (ctypes.c_double * len(values))(*values.values())
        self.check(self.lib.det_train_report_scalars(ctx, group.encode(), steps, names, vals, len(values)))

    def close(self, ctx) -> None:
        self.check(self.lib.det_core_close(ctx))
