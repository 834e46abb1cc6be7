"""Checkpoints on S3 (moto), GCS (fake-gcs-server) and Azure (Azurite) through detcore's C ABI,
and interop with the reference client determined==0.38.1 on the same servers: it restores
detcore's checkpoints and detcore restores its."""
import json
import os
import pathlib

import pytest

import capi
from manifests import MANIFEST, check_tree

determined_core = pytest.importorskip("determined.core")


@pytest.fixture()
def lib(detcore_lib):
    return capi.load(detcore_lib)


def sample(d: pathlib.Path) -> None:
    (d / "sub" / "deeper").mkdir(parents=True)
    (d / "empty").mkdir()
    (d / "weights.bin").write_bytes(os.urandom(6 << 20 | 321))  # above the 5 MiB part size
    (d / "sub" / "opt.txt").write_text("momentum")
    (d / "sub" / "deeper" / "zero").write_bytes(b"")


def files_of(root: pathlib.Path) -> dict:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        out[rel + "/" if p.is_dir() else rel] = None if p.is_dir() else p.read_bytes()
    return out


def test_store_restore_download_delete(lib, backend, tmp_path):
    prefix = "pre/fix" if backend.kind != "azure" else "sub/path"
    core = capi.Core(lib, backend.config(prefix), tmp_path / "run")
    written = {}

    def write(d):
        sample(d)
        written.update(files_of(d))

    meta = {"steps_completed": 5, "loss": 0.25}
    sid = core.store(meta, write)
    base = f"{prefix}/{sid}/"
    keys = [k for k in backend.keys() if k.startswith(base)]
    assert f"{prefix}/.detcore/runs/cloudtest/checkpoints.json" in backend.keys()
    # Determined's layout: files and folder markers under <prefix>/<id>/, metadata.json included,
    # and detcore's manifest beside it.
    want = sorted(base + k for k in list(written) + ["metadata.json", MANIFEST])
    assert keys == want, keys
    assert core.metadata(sid) == meta

    def check(p):
        got = files_of(p)
        check_tree(got, sid)
        del got[MANIFEST]
        assert got.pop("metadata.json") == json.dumps(meta, indent=2).encode()
        assert got == written

    path = core.restore(sid, check)
    assert not path.exists(), "restore_path_end must remove the temporary download"

    dl = tmp_path / "dl"
    seen = []
    core.download(sid, dl, selector=lambda p: seen.append(p) or p.startswith("sub/"))
    assert "weights.bin" in seen and "empty/" in seen
    assert sorted(files_of(dl)) == ["sub/", "sub/deeper/", "sub/deeper/zero", "sub/opt.txt"]
    core.close()

    # The run index lives in the bucket: a new context resumes from it.
    core = capi.Core(lib, backend.config(prefix), tmp_path / "run")
    assert core.latest_checkpoint() == sid
    core.delete(sid)
    assert [k for k in backend.keys() if k.startswith(base)] == []
    with pytest.raises(capi.DetError) as e:
        core.download(sid, tmp_path / "gone")
    assert "not found" in e.value.message
    assert core.latest_checkpoint() == sid  # info is fixed at init
    core.close()
    core = capi.Core(lib, backend.config(prefix), tmp_path / "run")
    assert core.latest_checkpoint() is None
    core.close()


def test_upload_with_selector(lib, backend, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    sample(src)
    core = capi.Core(lib, backend.config(), tmp_path / "run")
    sid = core.upload(src, {"steps_completed": 1}, selector=lambda p: p.startswith("sub"))
    assert not (src / "metadata.json").exists(), "upload must not write into the caller's folder"
    keys = backend.keys()
    assert sorted(k for k in keys if k.startswith(sid)) == sorted(
        f"{sid}/{k}" for k in ["sub/", "sub/deeper/", "sub/deeper/zero", "sub/opt.txt", "metadata.json", MANIFEST]
    )
    core.close()


def test_missing_checkpoint_and_bad_config(lib, backend, tmp_path):
    core = capi.Core(lib, backend.config(), tmp_path / "run")
    with pytest.raises(capi.DetError) as e:
        core.metadata("0b9b2b6c-4a8a-4f5e-9d3c-2a4f6c1b9e7d")
    assert "0b9b2b6c-4a8a-4f5e-9d3c-2a4f6c1b9e7d" in e.value.message
    core.close()
    bad = dict(backend.config(), part_size=1024)
    with pytest.raises(capi.DetError) as e:
        capi.Core(lib, bad, tmp_path / "run2")
    assert "part_size" in e.value.message


def test_async_checkpoints_are_reported_after_upload(lib, backend, tmp_path):
    core = capi.Core(lib, backend.config(), tmp_path / "run", async_checkpoints=True)
    ids = [core.store({"steps_completed": i}, sample) for i in range(3)]
    core.wait()
    for sid in ids:
        assert f"{sid}/metadata.json" in backend.keys()
    # Per call: a synchronous end on an async context.
    sid = core.store({"steps_completed": 9}, sample, mode=capi.UPLOAD_SYNC)
    assert f"{sid}/metadata.json" in backend.keys()
    sid2 = core.store({"steps_completed": 10}, sample, mode=capi.UPLOAD_ASYNC)
    core.close()  # waits for sid2
    assert f"{sid2}/metadata.json" in backend.keys()
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    reported = [x.get("storage_id") for x in lines if x.get("storage_id")]
    assert reported == ids + [sid, sid2]


def python_store(backend, prefix, tmp_path):
    with determined_core._dummy_init(checkpoint_storage=backend.python_config(prefix)) as core:
        with core.checkpoint.store_path({"steps_completed": 3, "acc": 0.5}) as (p, storage_id):
            (p / "model.pt").write_bytes(b"abc" * 1000)
            (p / "d").mkdir()
            (p / "d" / "x").write_text("y")
            (p / "emptydir").mkdir()
    return str(storage_id)


@pytest.mark.parametrize("prefix", [None, "a/b"])
def test_detcore_restores_python_checkpoint(lib, backend, tmp_path, prefix):
    if backend.kind == "azure" and prefix:
        pytest.skip("Determined's Azure manager cannot list a container sub-path")
    sid = python_store(backend, prefix, tmp_path)
    core = capi.Core(lib, backend.config(prefix), tmp_path / "run")
    assert core.metadata(sid) == {"steps_completed": 3, "acc": 0.5}

    def check(p):
        assert (p / "model.pt").read_bytes() == b"abc" * 1000
        assert (p / "d" / "x").read_text() == "y"
        assert (p / "emptydir").is_dir()

    core.restore(sid, check)
    core.delete(sid)
    assert [k for k in backend.keys() if sid in k] == []
    core.close()


@pytest.mark.parametrize("prefix", [None, "a/b"])
def test_python_restores_detcore_checkpoint(lib, backend, tmp_path, prefix):
    if backend.kind == "azure" and prefix:
        pytest.skip("Determined's Azure manager cannot list a container sub-path")
    core = capi.Core(lib, backend.config(prefix), tmp_path / "run")
    written = {}

    def write(d):
        sample(d)
        written.update(files_of(d))

    meta = {"steps_completed": 7, "name": "é"}
    sid = core.store(meta, write)
    core.close()
    with determined_core._dummy_init(checkpoint_storage=backend.python_config(prefix)) as pc:
        with pc.checkpoint.restore_path(sid) as p:
            got = files_of(pathlib.Path(p))
            # Determined's client copies the manifest like any file of the checkpoint, intact.
            check_tree(got, sid)
            del got[MANIFEST]
            assert json.loads(got.pop("metadata.json")) == meta
            assert got == written
        out = tmp_path / "pydl"
        pc.checkpoint.download(sid, str(out), selector=lambda x: x.startswith("sub"))
        assert (out / "sub" / "opt.txt").read_text() == "momentum"
        assert not (out / "weights.bin").exists()
        pc.checkpoint.delete(sid)
    # Only detcore's run index still names it (another program deleted it; detcore skips a
    # record whose checkpoint is gone).
    assert [k for k in backend.keys() if sid in k and ".detcore/runs/" not in k] == []
