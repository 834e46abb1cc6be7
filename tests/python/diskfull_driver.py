"""Full-disk driver of tests/python/test_hardening.py (run as root, or under `unshare -rm`).

Mounts a 2 MiB tmpfs at <tmp>/small as the checkpoint storage and stores checkpoints whose file
leaves 0 to 12 pages free, so that storing fails at each step of publication: the file itself,
metadata.json, the run index record, the index summary. After every attempt it checks that the
outcome is one: a checkpoint that returned DET_OK is published and indexed; one that failed left
nothing (no folder, no staging, no record, the free space as before) and the next small
checkpoint works. Prints one JSON line of counts; exits 1 on a broken invariant, 77 when no tmpfs
can be mounted here."""
import ctypes
import json
import os
import pathlib
import subprocess
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import capi  # noqa: E402

PAGE = 4096


def main() -> int:
    tmp = pathlib.Path(sys.argv[1])
    mnt = tmp / "small"
    mnt.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        print(f"cannot mount a tmpfs here: {r.stderr.strip()}")
        return 77
    try:
        return run(mnt, tmp)
    finally:
        subprocess.run(["umount", str(mnt)])


def free(mnt: pathlib.Path) -> int:
    st = os.statvfs(mnt)
    return st.f_bavail * st.f_frsize


def published(storage: pathlib.Path) -> set:
    return {p.name for p in storage.iterdir() if len(p.name) == 36} if storage.exists() else set()


def records(storage: pathlib.Path) -> set:
    """The checkpoints the run index lists: its records, and its summary (which may lag behind
    the records when the disk is full)."""
    d = storage / ".detcore" / "runs" / "full"
    ids = {p.name[:-5] for p in (d / "checkpoints").glob("*.json")}
    try:
        ids |= {c["storage_id"] for c in json.loads((d / "checkpoints.json").read_text())["checkpoints"]}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return ids


def fail(msg: str) -> None:
    print(f"BROKEN: {msg}", flush=True)
    sys.exit(1)


def run(mnt: pathlib.Path, tmp: pathlib.Path) -> int:
    lib = capi.load(os.environ["DETCORE_LIB"])
    storage = mnt / "ckpts"
    core = capi.Core(lib, str(storage), tmp / "run", run_name="full")

    def store(steps: int, size: int):
        """(storage id, None) or (None, where it failed)."""
        h = ctypes.c_void_p()
        core.check(lib.det_ckpt_store_path_begin(core.ctx, json.dumps({"steps_completed": steps}).encode(),
                                                 False, ctypes.byref(h)))
        p = ctypes.c_char_p()
        core.check(lib.det_ckpt_store_path(h, ctypes.byref(p)))
        try:
            (pathlib.Path(p.value.decode()) / "state.bin").write_bytes(b"\x07" * size)
        except OSError:
            core.check(lib.det_ckpt_store_path_abort(h))
            return None, "data"
        sid = ctypes.create_string_buffer(37)
        st = lib.det_ckpt_store_path_end(h, sid)
        if st == 0:
            return sid.value.decode(), None
        return None, lib.det_last_error_message().decode()

    keep, err = store(1, 100)
    if err:
        fail(f"the first small checkpoint failed: {err}")
    counts = {"stored": 0, "failed": 0, "failed_at_data": 0, "failed_at_metadata": 0, "failed_at_index": 0}
    steps = 1
    for pages_left in range(12, -1, -1):
        before_free, before_pub, before_rec = free(mnt), published(storage), records(storage)
        size = max(before_free - pages_left * PAGE, 1)
        steps += 1
        sid, err = store(steps, size)
        if sid:
            counts["stored"] += 1
            if sid not in published(storage) or sid not in records(storage):
                fail(f"{sid} returned DET_OK but is not published and indexed")
            core.delete(sid)
        else:
            counts["failed"] += 1
            if err == "data":
                counts["failed_at_data"] += 1
            elif "run index" in err:
                counts["failed_at_index"] += 1
            elif "metadata.json" in err:
                counts["failed_at_metadata"] += 1
            if published(storage) != before_pub:
                fail(f"a failed checkpoint left a published folder ({err})")
            if records(storage) != before_rec:
                fail(f"a failed checkpoint left an index record ({err})")
            staging = storage / ".detcore-staging"
            left = [p.name for p in staging.iterdir()] if staging.exists() else []
            if left:
                fail(f"a failed checkpoint left {left} in the staging folder ({err})")
        if free(mnt) != before_free:
            fail(f"{before_free - free(mnt)} bytes stayed used after {'storing and deleting' if sid else 'a failure'} ({err})")
        # The next small checkpoint works.
        small, err2 = store(steps, 100)
        if not small:
            fail(f"a small checkpoint after {'a failure' if err else 'a success'} failed: {err2}")
        core.delete(small)
    core.close()
    # The run resumes from the one checkpoint kept.
    core = capi.Core(lib, str(storage), tmp / "run", run_name="full")
    latest = core.latest_checkpoint()
    core.close()
    if latest != keep:
        fail(f"resumes from {latest}, not {keep}")
    print(json.dumps(counts), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
