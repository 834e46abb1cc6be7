"""detcore's C ABI for the tests that drive it directly: a context wrapper that raises on a non-OK
status, the checkpoint calls, and `Lib` for the TensorBoard and profiler tests.

No C declaration is written here: every function comes typed from the Python package
(`detcore._lib.Library`, whose declarations are generated from include/detcore.h and checked by
tests/python/test_bindings_abi.py), so a test passes exactly what the header declares."""
from __future__ import annotations

import ctypes
import json
import os
import pathlib
import sys
from typing import Callable, Optional

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bindings", "python"))

from detcore import _abi  # noqa: E402
from detcore._lib import SELECTOR, InitOptions, Library  # noqa: E402

Opts = InitOptions

DET_OK = _abi.CONSTANTS["DET_OK"]
DET_ERR_UNSUPPORTED = _abi.CONSTANTS["DET_ERR_UNSUPPORTED"]
DET_TENSORBOARD_MODE_AUTO = _abi.CONSTANTS["DET_TENSORBOARD_MODE_AUTO"]
DET_TENSORBOARD_MODE_MANUAL = _abi.CONSTANTS["DET_TENSORBOARD_MODE_MANUAL"]
UPLOAD_DEFAULT = _abi.CONSTANTS["DET_UPLOAD_MODE_DEFAULT"]
UPLOAD_SYNC = _abi.CONSTANTS["DET_UPLOAD_MODE_SYNC"]
UPLOAD_ASYNC = _abi.CONSTANTS["DET_UPLOAD_MODE_ASYNC"]
NO_SHARED_DOWNLOAD = _abi.CONSTANTS["DET_DOWNLOAD_MODE_NO_SHARED_DOWNLOAD"]
STORAGE_ID_LEN = _abi.CONSTANTS["DET_STORAGE_ID_LEN"]


class DetError(RuntimeError):
    def __init__(self, status: int, message: str):
        super().__init__(f"status {status}: {message}")
        self.status = status
        self.message = message


def load(path) -> Library:
    """libdetcore at `path`, every function typed from the header (`lib.det_x(...)`)."""
    return Library(str(path))


def check(lib: Library, status: int) -> None:
    if status != DET_OK:
        raise DetError(status, lib.det_last_error_message().decode())


class Core:
    def __init__(self, lib, storage, run_dir: pathlib.Path, run_name="cloudtest", async_checkpoints=False,
                 **options):
        """`options`: other det_init_options fields by name (strings are encoded)."""
        self.lib = lib
        o = Opts()
        self.check(lib.det_init_options_default(ctypes.byref(o), ctypes.sizeof(o)))
        self._keep = []
        for k, v in options.items():
            if isinstance(v, str):
                v = v.encode()
                self._keep.append(v)
            setattr(o, k, v)
        self.storage_text = (json.dumps(storage) if isinstance(storage, dict) else str(storage)).encode()
        o.checkpoint_storage = self.storage_text
        o.run_dir = str(run_dir).encode()
        o.run_name = run_name.encode()
        o.disable_signal_handlers = True
        o.async_checkpoints = async_checkpoints
        o.cluster_info_dir = b"/nonexistent"
        self.ctx = ctypes.c_void_p()
        self.check(lib.det_core_init(ctypes.byref(o), ctypes.byref(self.ctx)))

    def check(self, status: int) -> None:
        check(self.lib, status)

    def store(self, metadata: dict, write: Callable[[pathlib.Path], None], mode: Optional[int] = None) -> str:
        h = ctypes.c_void_p()
        self.check(self.lib.det_ckpt_store_path_begin(self.ctx, json.dumps(metadata).encode(), False, ctypes.byref(h)))
        p = ctypes.c_char_p()
        self.check(self.lib.det_ckpt_store_path(h, ctypes.byref(p)))
        write(pathlib.Path(p.value.decode()))
        sid = ctypes.create_string_buffer(STORAGE_ID_LEN)
        if mode is None:
            self.check(self.lib.det_ckpt_store_path_end(h, sid))
        else:
            self.check(self.lib.det_ckpt_store_path_end_mode(h, mode, sid))
        return sid.value.decode()

    def upload(self, d: pathlib.Path, metadata: dict, selector=None) -> str:
        sid = ctypes.create_string_buffer(STORAGE_ID_LEN)
        cb = SELECTOR(lambda p, _: selector(p.decode())) if selector else None
        self.check(self.lib.det_ckpt_upload(self.ctx, str(d).encode(), json.dumps(metadata).encode(), False, cb, None, sid))
        return sid.value.decode()

    def download(self, sid: str, d: pathlib.Path, selector=None) -> None:
        cb = SELECTOR(lambda p, _: selector(p.decode())) if selector else None
        self.check(self.lib.det_ckpt_download(self.ctx, sid.encode(), str(d).encode(), NO_SHARED_DOWNLOAD, cb, None))

    def restore(self, sid: str, use: Callable[[pathlib.Path], None]) -> pathlib.Path:
        h = ctypes.c_void_p()
        self.check(self.lib.det_ckpt_restore_path_begin(self.ctx, sid.encode(), NO_SHARED_DOWNLOAD, None, None, ctypes.byref(h)))
        p = ctypes.c_char_p()
        self.check(self.lib.det_ckpt_restore_path(h, ctypes.byref(p)))
        path = pathlib.Path(p.value.decode())
        rid = ctypes.c_char_p()
        self.check(self.lib.det_ckpt_restore_storage_id(h, ctypes.byref(rid)))
        self.restored_id = rid.value.decode()
        try:
            use(path)
        finally:
            self.check(self.lib.det_ckpt_restore_path_end(h))
        return path

    def metadata(self, sid: str) -> dict:
        out = ctypes.c_void_p()
        self.check(self.lib.det_ckpt_get_metadata(self.ctx, sid.encode(), ctypes.byref(out)))
        try:
            return json.loads(ctypes.cast(out, ctypes.c_char_p).value.decode())
        finally:
            self.lib.det_string_free(out)

    def delete(self, sid: str) -> None:
        self.check(self.lib.det_ckpt_delete(self.ctx, sid.encode()))

    def report_validation(self, steps: int, metrics: dict) -> None:
        self.check(self.lib.det_train_report_validation_metrics(self.ctx, steps, json.dumps(metrics).encode()))

    def wait(self) -> None:
        self.check(self.lib.det_ckpt_wait(self.ctx))

    def latest_checkpoint(self) -> Optional[str]:
        out = ctypes.c_void_p()
        self.check(self.lib.det_info_latest_checkpoint(self.ctx, ctypes.byref(out)))
        if not out.value:
            return None
        try:
            return ctypes.cast(out, ctypes.c_char_p).value.decode()
        finally:
            self.lib.det_string_free(out)

    def close(self) -> None:
        if self.ctx:
            ctx, self.ctx = self.ctx, None
            self.check(self.lib.det_core_close(ctx))


class Lib:
    """The TensorBoard and profiler tests' view: `lib.det_x(...)`, `check`, and a context."""

    def __init__(self, path: pathlib.Path):
        self.lib = load(path)

    def check(self, status: int) -> None:
        check(self.lib, status)

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
