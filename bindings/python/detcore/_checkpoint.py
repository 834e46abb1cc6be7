"""`core_context.checkpoint` (det_ckpt_*)."""
import contextlib
import ctypes
import logging
import os
import pathlib
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, Optional, Tuple, Union

from detcore import _enums, _errors, _json
from detcore._lib import STORAGE_ID_LEN, Selector, from_c, lib, to_c

if TYPE_CHECKING:
    from detcore._context import Context

logger = logging.getLogger("detcore")


class CheckpointContext:
    """Checkpoints in the context's storage, with determined.core's API. Differences: metadata
    must hold an integer "steps_completed" (checked before anything is written; Python checks only
    on-cluster, after uploading); a `store_path` left by an exception is removed, never published;
    `get_metadata` works off-cluster too."""

    def __init__(self, ctx: "Context") -> None:
        self._ctx = ctx

    def upload(
        self,
        ckpt_dir: Optional[Union[str, os.PathLike]],
        metadata: Optional[Dict[str, Any]] = None,
        *,
        shard: bool = False,
        selector: Optional[Callable[[str], bool]] = None,
    ) -> str:
        """Store the files of `ckpt_dir` as a new checkpoint; returns its storage id.
        `metadata.json` is written into the checkpoint, never into `ckpt_dir`.

        With `shard=True` every rank calls; a rank with nothing to store passes `ckpt_dir=None`.
        `ckpt_dir=None` with `shard=False`, or on every rank of a sharded upload, raises
        RuntimeError as determined does (UploadArgumentError, also a ValueError)."""
        sel = Selector(selector)
        out = ctypes.create_string_buffer(STORAGE_ID_LEN)
        status = lib().fn("det_ckpt_upload")(
            self._ctx._handle(),
            None if ckpt_dir is None else to_c(ckpt_dir, "ckpt_dir"),
            to_c(_json.dumps(metadata or {}), "metadata"),
            bool(shard),
            sel.cfunc,
            None,
            out,
        )
        sel.raise_if_failed()
        try:
            lib().check(status)
        except _errors.InvalidArgumentError as e:
            if ckpt_dir is None:
                # determined raises RuntimeError for the arguments of an upload without a folder.
                raise _errors.UploadArgumentError(e.status, e.message) from None
            raise
        return out.value.decode()

    def download(
        self,
        storage_id: str,
        ckpt_dir: Union[str, os.PathLike],
        download_mode: _enums.DownloadMode = _enums.DownloadMode.LocalWorkersShareDownload,
        *,
        selector: Optional[Callable[[str], bool]] = None,
    ) -> None:
        """Copy the checkpoint's files into `ckpt_dir` (created if needed)."""
        mode = _enums.code(_enums.DownloadMode, download_mode, "download_mode")
        sel = Selector(selector)
        status = lib().fn("det_ckpt_download")(
            self._ctx._handle(), to_c(storage_id, "storage_id"), to_c(ckpt_dir, "ckpt_dir"), mode, sel.cfunc, None
        )
        sel.raise_if_failed()
        lib().check(status)

    def get_metadata(self, storage_id: str) -> Dict[str, Any]:
        """The checkpoint's metadata (non-finite numbers as "NaN"/"Infinity" strings)."""
        text = lib().string_out("det_ckpt_get_metadata", self._ctx._handle(), to_c(storage_id, "storage_id"))
        return _json.loads(text or "{}")

    @contextlib.contextmanager
    def store_path(
        self,
        metadata: Optional[Dict[str, Any]] = None,
        *,
        shard: bool = False,
        upload_mode: _enums.UploadMode = _enums.UploadMode.DEFAULT,
        steps_completed: Optional[int] = None,
    ) -> Iterator[Tuple[pathlib.Path, str]]:
        """`with store_path(metadata) as (path, storage_id):` write the checkpoint's files into
        `path`; leaving the block publishes the checkpoint. An exception discards it.

        (detcore) `upload_mode`: UploadMode.ASYNC leaves the block once the files are handed to
        the background uploader (do not touch `path` afterwards; `wait()` waits for the upload),
        SYNC once the checkpoint is stored and reported, DEFAULT as `init(async_checkpoints=)`.

        (detcore) `steps_completed`: `store_path(steps_completed=n)` is
        `store_path({"steps_completed": n})`; `metadata` then holds the other entries only."""
        mode = _enums.code(_enums.UploadMode, upload_mode, "upload_mode")
        L = lib()
        if mode != 0:
            L.fn("det_ckpt_store_path_end_mode")  # an older library: refuse before writing anything
        h = ctypes.c_void_p()
        if steps_completed is None:
            L.call(
                "det_ckpt_store_path_begin",
                self._ctx._handle(),
                to_c(_json.dumps(metadata or {}), "metadata"),
                bool(shard),
                ctypes.byref(h),
            )
        else:
            if isinstance(steps_completed, bool) or not isinstance(steps_completed, int):
                raise TypeError(f"steps_completed must be an int, got {type(steps_completed).__name__}")
            if not -(2**63) <= steps_completed < 2**63:
                raise _errors.InvalidArgumentError(
                    _errors.DET_ERR_INVALID_ARGUMENT, f"steps_completed: {steps_completed} is out of range"
                )
            L.call(
                "det_ckpt_store_path_begin_steps",
                self._ctx._handle(),
                steps_completed,
                None if metadata is None else to_c(_json.dumps(metadata), "metadata"),
                bool(shard),
                ctypes.byref(h),
            )
        try:
            path = ctypes.c_char_p()  # borrowed (`const char **`): valid until the scope ends
            sid = ctypes.c_char_p()
            L.call("det_ckpt_store_path", h, ctypes.byref(path))
            L.call("det_ckpt_store_storage_id", h, ctypes.byref(sid))
            storage_id = from_c(sid.value)
            yield pathlib.Path(from_c(path.value) or ""), storage_id or ""
        except BaseException:
            L.fn("det_ckpt_store_path_abort")(h)
            raise
        if mode == 0:
            L.call("det_ckpt_store_path_end", h, None)
        else:
            L.call("det_ckpt_store_path_end_mode", h, mode, None)

    @contextlib.contextmanager
    def restore_path(
        self,
        storage_id: str,
        download_mode: _enums.DownloadMode = _enums.DownloadMode.LocalWorkersShareDownload,
        *,
        selector: Optional[Callable[[str], bool]] = None,
    ) -> Iterator[pathlib.Path]:
        """`with restore_path(storage_id) as path:` the checkpoint's files under `path`.

        (detcore) Files are checked against the checkpoint's manifest first; a damaged one
        raises `StorageError` naming the file. Off-cluster, restoring the run's resume point
        (`info.latest_checkpoint`) that is damaged restores the newest older checkpoint that
        verifies instead; `info.latest_checkpoint` then names it."""
        L = lib()
        mode = _enums.code(_enums.DownloadMode, download_mode, "download_mode")
        sel = Selector(selector)
        h = ctypes.c_void_p()
        status = L.fn("det_ckpt_restore_path_begin")(
            self._ctx._handle(), to_c(storage_id, "storage_id"), mode, sel.cfunc, None, ctypes.byref(h)
        )
        if status == 0 and sel.error is not None:
            L.fn("det_ckpt_restore_path_end")(h)
        sel.raise_if_failed()
        L.check(status)
        try:
            path = ctypes.c_char_p()  # borrowed (`const char **`): valid until the scope ends
            L.call("det_ckpt_restore_path", h, ctypes.byref(path))
            restored = ctypes.c_char_p()
            L.call("det_ckpt_restore_storage_id", h, ctypes.byref(restored))
            if from_c(restored.value) != str(storage_id):
                logger.warning(
                    "restore_path: checkpoint %s is damaged; restored checkpoint %s, the newest "
                    "older one that verifies, instead", storage_id, from_c(restored.value)
                )
            yield pathlib.Path(from_c(path.value) or "")
        finally:
            L.call("det_ckpt_restore_path_end", h)

    def delete(self, storage_id: str) -> None:
        """Delete the checkpoint's files, then its record."""
        lib().call("det_ckpt_delete", self._ctx._handle(), to_c(storage_id, "storage_id"))

    def wait(self) -> None:
        """(detcore) Wait for asynchronous uploads (init(async_checkpoints=True))."""
        lib().call("det_ckpt_wait", self._ctx._handle())
