"""Off-cluster interop with the reference client determined==0.38.1: checkpoints written by
detcore into a directory are read by Python's `determined.core`, and the other way round.

detcore is driven through its C ABI with ctypes (no binding needed), so this also checks the
exported symbols and the metadata.json byte format."""
import ctypes
import json
import os
import pathlib

import pytest

determined_core = pytest.importorskip("determined.core")


from capi import Opts, load  # noqa: E402,F401
from manifests import MANIFEST, check_folder  # noqa: E402


@pytest.fixture()
def lib(detcore_lib):
    return load(detcore_lib)


def check(lib, status):
    if status != 0:
        raise RuntimeError(lib.det_last_error_message().decode())


def open_ctx(lib, storage: pathlib.Path, run_dir: pathlib.Path):
    o = Opts()
    check(lib, lib.det_init_options_default(ctypes.byref(o), ctypes.sizeof(o)))
    o.checkpoint_storage = str(storage).encode()
    o.run_dir = str(run_dir).encode()
    o.run_name = b"interop"
    o.disable_signal_handlers = True
    o.cluster_info_dir = b"/nonexistent"
    ctx = ctypes.c_void_p()
    check(lib, lib.det_core_init(ctypes.byref(o), ctypes.byref(ctx)))
    return ctx


def test_python_restores_detcore_checkpoint(lib, tmp_path):
    storage = tmp_path / "ckpts"
    ctx = open_ctx(lib, storage, tmp_path / "run")
    store = ctypes.c_void_p()
    meta = {"steps_completed": 7, "loss": float("nan"), "name": "é", "nested": {"a": [1, 2.5]}}
    # NaN is not JSON; detcore accepts Python's extension literal, as json.dumps writes it.
    check(lib, lib.det_ckpt_store_path_begin(ctx, json.dumps(meta).encode(), False, ctypes.byref(store)))
    path = ctypes.c_char_p()
    check(lib, lib.det_ckpt_store_path(store, ctypes.byref(path)))
    d = pathlib.Path(path.value.decode())
    (d / "weights.bin").write_bytes(b"\x00\x01" * 1000)
    (d / "sub").mkdir()
    (d / "sub" / "opt.txt").write_text("momentum")
    sid = ctypes.create_string_buffer(37)
    check(lib, lib.det_ckpt_store_path_end(store, sid))
    check(lib, lib.det_core_close(ctx))
    storage_id = sid.value.decode()

    # Byte-identical to what Python's json.dump(metadata, f, indent=2) writes, and beside it
    # detcore's manifest: every file's size and CRC32C.
    written = (storage / storage_id / "metadata.json").read_text()
    assert written == json.dumps(meta, indent=2)
    check_folder(storage / storage_id, storage_id)

    with determined_core._dummy_init(checkpoint_storage=str(storage)) as core:
        with core.checkpoint.restore_path(storage_id) as p:
            assert (p / MANIFEST).is_file()
            assert (p / "weights.bin").read_bytes() == b"\x00\x01" * 1000
            assert (p / "sub" / "opt.txt").read_text() == "momentum"
            assert json.loads((p / "metadata.json").read_text())["steps_completed"] == 7
        out = tmp_path / "dl"
        core.checkpoint.download(storage_id, str(out), selector=lambda x: x.startswith("sub"))
        assert sorted(str(x.relative_to(out)) for x in out.rglob("*")) == ["sub", "sub/opt.txt"]
        # A whole download carries the manifest intact, and uploading that folder as a new
        # checkpoint with Determined's client gives a checkpoint whose (copied) manifest names
        # the old one: detcore restores it unchecked rather than calling it damaged.
        whole = tmp_path / "whole"
        core.checkpoint.download(storage_id, str(whole))
        check_folder(whole, storage_id)
        (whole / "weights.bin").write_bytes(b"changed by the user")
        copied = core.checkpoint.upload(str(whole), {"steps_completed": 8})
    ctx = open_ctx(lib, storage, tmp_path / "run")
    restore = ctypes.c_void_p()
    check(lib, lib.det_ckpt_restore_path_begin(ctx, str(copied).encode(), 1, None, None, ctypes.byref(restore)))
    check(lib, lib.det_ckpt_restore_path_end(restore))
    check(lib, lib.det_core_close(ctx))


def test_detcore_restores_python_checkpoint(lib, tmp_path):
    storage = tmp_path / "ckpts"
    with determined_core._dummy_init(checkpoint_storage=str(storage)) as core:
        with core.checkpoint.store_path({"steps_completed": 3, "acc": 0.5}) as (p, storage_id):
            (p / "model.pt").write_bytes(b"abc")
            (p / "d").mkdir()
            (p / "d" / "x").write_text("y")

    ctx = open_ctx(lib, storage, tmp_path / "run")
    out = ctypes.c_void_p()  # `char **out`: ours to free
    check(lib, lib.det_ckpt_get_metadata(ctx, str(storage_id).encode(), ctypes.byref(out)))
    assert json.loads(ctypes.string_at(out.value)) == {"steps_completed": 3, "acc": 0.5}
    lib.det_string_free(out)
    restore = ctypes.c_void_p()
    check(lib, lib.det_ckpt_restore_path_begin(ctx, str(storage_id).encode(), 0, None, None, ctypes.byref(restore)))
    rp = ctypes.c_char_p()
    check(lib, lib.det_ckpt_restore_path(restore, ctypes.byref(rp)))
    assert (pathlib.Path(rp.value.decode()) / "model.pt").read_bytes() == b"abc"
    check(lib, lib.det_ckpt_restore_path_end(restore))

    dl = tmp_path / "dl"
    check(lib, lib.det_ckpt_download(ctx, str(storage_id).encode(), str(dl).encode(), 1, None, None))
    assert (dl / "d" / "x").read_text() == "y"
    check(lib, lib.det_ckpt_delete(ctx, str(storage_id).encode()))
    assert not (storage / str(storage_id)).exists()
    check(lib, lib.det_core_close(ctx))
