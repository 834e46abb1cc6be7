"""detcore's C ABI through ctypes, for the tests: the options struct, a context wrapper that
raises on a non-OK status, and the checkpoint calls."""
from __future__ import annotations

import ctypes
import json
import pathlib
from typing import Callable, Optional


from abi_structs import Opts  # noqa: E402,F401


SELECTOR = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_char_p, ctypes.c_void_p)

DET_OK = 0
UPLOAD_DEFAULT, UPLOAD_SYNC, UPLOAD_ASYNC = 0, 1, 2
NO_SHARED_DOWNLOAD = 1


class DetError(RuntimeError):
    def __init__(self, status: int, message: str):
        super().__init__(f"status {status}: {message}")
        self.status = status
        self.message = message


def load(path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    lib.det_last_error_message.restype = ctypes.c_char_p
    lib.det_string_free.argtypes = [ctypes.c_void_p]
    lib.det_ckpt_wait.argtypes = [ctypes.c_void_p]
    lib.det_core_close.argtypes = [ctypes.c_void_p]
    return lib


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
        if status != DET_OK:
            raise DetError(status, self.lib.det_last_error_message().decode())

    def store(self, metadata: dict, write: Callable[[pathlib.Path], None], mode: Optional[int] = None) -> str:
        h = ctypes.c_void_p()
        self.check(self.lib.det_ckpt_store_path_begin(self.ctx, json.dumps(metadata).encode(), False, ctypes.byref(h)))
        p = ctypes.c_char_p()
        self.check(self.lib.det_ckpt_store_path(h, ctypes.byref(p)))
        write(pathlib.Path(p.value.decode()))
        sid = ctypes.create_string_buffer(37)
        if mode is None:
            self.check(self.lib.det_ckpt_store_path_end(h, sid))
        else:
            self.check(self.lib.det_ckpt_store_path_end_mode(h, mode, sid))
        return sid.value.decode()

    def upload(self, d: pathlib.Path, metadata: dict, selector=None) -> str:
        sid = ctypes.create_string_buffer(37)
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
