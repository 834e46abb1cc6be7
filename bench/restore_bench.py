"""Checksums and restores (not a test): what CRC32C manifests cost on store and on restore, and
how fast a restore is beside the raw server, as ratios of medians measured in the same run.

    scripts/venv.sh && cmake --build build          # build/cargo/release/libdetcore.so
    .venv/bin/python bench/restore_bench.py [--repeat 5] [--gib 1] [--big-gib 4] [--ranks 4]

Data: checkpoints of 16 files of random bytes (1 GiB by default). S3 server: s3s-fs on
127.0.0.1 (as bench/cloud_bench.py). Everything lives under $DETCORE_BENCH_DIR (default
$TMPDIR); about 4 x --big-gib GiB must be free there.

Measured (each round runs every contender once, in turn; medians over the rounds):
  1. Store, checksums on vs off (two contexts of the same storage, "checksums": true/false):
     a. folder storage, det_ckpt_store_path_end (the files copied into the staging folder
        untimed before: the publish pass fsyncs, and with checksums reads and sums, each file),
        and the whole store (copying the files into the scope's folder, then the end);
     b. folder storage, det_ckpt_upload (a copy: copy_file_range without checksums, a copy
        through a buffer summed on the way with them);
     c. S3, det_ckpt_upload (checksums computed from the request bodies).
  2. Restore, checksums on vs off, of a checkpoint that has a manifest:
     a. folder storage, restore_path_begin + reading every file (what a restart does) + end,
        with the files in the page cache (warm) and evicted from it before each run
        (posix_fadvise DONTNEED; cold, as after a reboot or on another node);
     b. S3, det_ckpt_restore_path_begin (download into a temporary folder, each file checked
        as it is written) beside raw parallel curl GETs of the same 16 objects.
  3. Growth: the S3 restore (checksums on) and raw curl at --gib and --big-gib; and --ranks
     processes on one node restoring the same checkpoint with LocalWorkersShareDownload (one
     download, shared) and with NoSharedDownload (one download each), beside one process
     (bench/restore_worker.c; the slowest rank's restore_path_begin counts).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))
import capi  # noqa: E402
import servers  # noqa: E402
from distributed_launch import launch  # noqa: E402

BUILD = pathlib.Path(os.environ.get("DETCORE_BUILD_DIR", ROOT / "build"))
LIB = pathlib.Path(os.environ.get("DETCORE_LIB", BUILD / "cargo" / "release" / "libdetcore.so"))
FILES = 16


def make_data(d: pathlib.Path, total: int) -> list:
    d.mkdir(parents=True)
    per = total // FILES
    chunk = os.urandom(min(per, 256 << 20))
    for i in range(FILES):
        with open(d / f"shard-{i:02d}.bin", "wb") as f:
            left = per
            while left > 0:
                n = min(left, len(chunk))
                f.write(chunk[i:n] + chunk[:i] if n == len(chunk) else chunk[:n])
                left -= n
    return sorted(d.iterdir())


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def own_cpu() -> float:
    """CPU seconds of this process (detcore's threads included) and of its finished children."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def rounds(n: int, contenders: dict) -> dict:
    """Each contender `(fn, before, after)` once per round, in turn; `before`/`after` untimed. The
    order rotates from round to round, so that none always runs first (after another's cleanup).
    Per contender: the median wall time, and the median CPU seconds of the client (this process
    and the curl processes; not the server's), which the machine's load disturbs much less."""
    runs = {name: [] for name in contenders}
    names = list(contenders)
    for i in range(n):
        for name in names[i % len(names):] + names[:i % len(names)]:
            fn, before, after = contenders[name]
            if before:
                before()
            c0 = own_cpu()
            t = timed(fn)
            runs[name].append((t, own_cpu() - c0))
            if after:
                after()
    return {name: {"median_s": statistics.median(x[0] for x in r),
                   "cpu_s": statistics.median(x[1] for x in r),
                   "runs_s": [round(x[0], 3) for x in r]} for name, r in runs.items()}


def evict(paths) -> None:
    """Drop the files' pages from the page cache (clean pages only: they were fsynced)."""
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def read_all(d: pathlib.Path) -> None:
    for p in d.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                while f.read(1 << 20):
                    pass


def curl_get(url: str, out: pathlib.Path) -> list:
    return ["curl", "-sS", "-f", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user",
            f"{servers.S3_KEY}:{servers.S3_SECRET}", "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD",
            "-o", str(out), url]


def parallel(cmds: list) -> None:
    procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL) for c in cmds]
    for p in procs:
        if p.wait() != 0:
            raise RuntimeError(f"{p.args} failed")


def ratio(r: dict, a: str, b: str) -> float:
    return r[a]["median_s"] / r[b]["median_s"]


def cpu_note(r: dict) -> str:
    """Client CPU seconds, checksums vs off."""
    return f"client CPU {r['checksums']['cpu_s']:.2f} s vs {r['off']['cpu_s']:.2f} s"


def store_path_end(core, files) -> callable:
    """(before, timed end): copy `files` into a new store_path scope, then end it."""
    import ctypes

    lib = core.lib
    state = {}

    def before():
        h = ctypes.c_void_p()
        core.check(lib.det_ckpt_store_path_begin(core.ctx, b'{"steps_completed": 1}', False, ctypes.byref(h)))
        p = ctypes.c_char_p()
        core.check(lib.det_ckpt_store_path(h, ctypes.byref(p)))
        dst = pathlib.Path(p.value.decode())
        for f in files:
            shutil.copyfile(f, dst / f.name)
        state["h"] = h

    def end():
        sid = ctypes.create_string_buffer(37)
        core.check(lib.det_ckpt_store_path_end(state["h"], sid))
        state["id"] = sid.value.decode()

    def after():
        core.delete(state["id"])

    return before, end, after


def bench_dir(a, lib, work: pathlib.Path, src: pathlib.Path, files: list, out: dict) -> None:
    """1a, 1b, 2a: folder storage."""
    base = work / "dir"
    dirs = {on: capi.Core(lib, {"type": "directory", "container_path": str(base), "checksums": on},
                          work / f"run-dir-{on}", run_name=f"bench-{on}") for on in (True, False)}
    on_b, on_e, on_a = store_path_end(dirs[True], files)
    off_b, off_e, off_a = store_path_end(dirs[False], files)
    out["dir_store_path"] = r = rounds(a.repeat, {"checksums": (on_e, on_b, on_a), "off": (off_e, off_b, off_a)})
    out["dir_store_path"]["overhead"] = ratio(r, "checksums", "off") - 1
    # The whole checkpoint as the training loop sees it: writing the files, then the end.
    whole = lambda b, e: (lambda: (b(), e()))  # noqa: E731
    out["dir_store_path_whole"] = r = rounds(a.repeat, {"checksums": (whole(on_b, on_e), None, on_a),
                                                       "off": (whole(off_b, off_e), None, off_a)})
    out["dir_store_path_whole"]["overhead"] = ratio(r, "checksums", "off") - 1
    ids = []
    drop = lambda: [dirs[True].delete(ids.pop()) for _ in list(ids)]  # noqa: E731
    out["dir_upload"] = r = rounds(a.repeat, {
        "checksums": (lambda: ids.append(dirs[True].upload(src, {"steps_completed": 1})), None, drop),
        "off": (lambda: ids.append(dirs[False].upload(src, {"steps_completed": 1})), None, drop)})
    out["dir_upload"]["overhead"] = ratio(r, "checksums", "off") - 1
    sid = dirs[True].upload(src, {"steps_completed": 1})  # has a manifest
    ckfiles = [p for p in (base / sid).rglob("*") if p.is_file()]
    restore = {on: (lambda on=on: dirs[on].restore(sid, read_all)) for on in (True, False)}
    out["dir_restore_warm"] = r = rounds(a.repeat, {
        "checksums": (restore[True], lambda: read_all(base / sid), None),
        "off": (restore[False], lambda: read_all(base / sid), None)})
    out["dir_restore_warm"]["overhead"] = ratio(r, "checksums", "off") - 1
    try:
        evict(ckfiles)
        cold_ok = True
    except OSError as e:
        cold_ok = False
        out["dir_restore_cold"] = {"skipped": f"posix_fadvise: {e}"}
    if cold_ok:
        out["dir_restore_cold"] = r = rounds(a.repeat, {
            "checksums": (restore[True], lambda: evict(ckfiles), None),
            "off": (restore[False], lambda: evict(ckfiles), None)})
        out["dir_restore_cold"]["overhead"] = ratio(r, "checksums", "off") - 1
    for c in dirs.values():
        c.close()
    shutil.rmtree(base)


def bench_s3(a, lib, work: pathlib.Path, src: pathlib.Path, files: list, out: dict) -> None:
    """1c, 2b, 3: S3."""
    srv = servers.start_s3s_fs(work / "s3data")
    try:
        bucket = "bench"
        servers.make_bucket_s3(srv.url, bucket)
        cfg = {"type": "s3", "bucket": bucket, "endpoint_url": srv.url, "access_key": servers.S3_KEY,
               "secret_key": servers.S3_SECRET}
        s3 = {on: capi.Core(lib, dict(cfg, checksums=on), work / f"run-s3-{on}", run_name=f"s3-{on}")
              for on in (True, False)}
        ids = []
        drop = lambda: [s3[True].delete(ids.pop()) for _ in list(ids)]  # noqa: E731
        out["s3_upload"] = r = rounds(a.repeat, {
            "checksums": (lambda: ids.append(s3[True].upload(src, {"steps_completed": 1})), None, drop),
            "off": (lambda: ids.append(s3[False].upload(src, {"steps_completed": 1})), None, drop)})
        out["s3_upload"]["overhead"] = ratio(r, "checksums", "off") - 1

        def restore_contenders(sid, files_of, dl):
            import ctypes

            def begin(core):
                def go():
                    h = ctypes.c_void_p()
                    core.check(core.lib.det_ckpt_restore_path_begin(
                        core.ctx, sid.encode(), capi.NO_SHARED_DOWNLOAD, None, None, ctypes.byref(h)))
                    go.h = h
                return go

            b_on, b_off = begin(s3[True]), begin(s3[False])
            end_on = lambda: s3[True].check(s3[True].lib.det_ckpt_restore_path_end(b_on.h))  # noqa: E731
            end_off = lambda: s3[False].check(s3[False].lib.det_ckpt_restore_path_end(b_off.h))  # noqa: E731
            clear = lambda: shutil.rmtree(dl, ignore_errors=True)  # noqa: E731

            def raw():
                dl.mkdir(parents=True, exist_ok=True)
                parallel([curl_get(f"{srv.url}/{bucket}/{sid}/{f.name}", dl / f.name) for f in files_of])

            return {"checksums": (b_on, None, end_on), "off": (b_off, None, end_off), "raw_curl": (raw, clear, clear)}

        sid = s3[True].upload(src, {"steps_completed": 1})
        out["s3_restore"] = r = rounds(a.repeat, restore_contenders(sid, files, work / "rawdl"))
        out["s3_restore"]["overhead"] = ratio(r, "checksums", "off") - 1
        out["s3_restore"]["checksums_over_raw"] = ratio(r, "checksums", "raw_curl")
        out["s3_restore"]["off_over_raw"] = ratio(r, "off", "raw_curl")

        # ---- 3. growth with ranks (same 1 GiB checkpoint) -----------------------------------
        prog = ROOT / "bench" / "out" / "restore_worker"
        prog.parent.mkdir(exist_ok=True)
        rel = LIB.parent
        subprocess.check_call(["cc", "-O2", "-std=c11", f"-I{ROOT / 'include'}", "-o", str(prog),
                               str(ROOT / "bench" / "restore_worker.c"), f"-L{rel}", "-ldetcore",
                               f"-Wl,-rpath,{rel}"])

        def ranks(n, mode):
            def go():
                procs = launch(str(prog), [json.dumps(cfg), sid, mode], n, "torch", 1,
                               env={"BENCH_WORK": str(work)}, work=str(work))
                times = []
                for p in procs:
                    o, e = p.communicate(timeout=1200)
                    if p.returncode != 0:
                        raise SystemExit(f"restore_worker failed: {e[-2000:]}")
                    times.append(float(o.strip().splitlines()[-1]))
                go.slowest = max(times)
            return go

        contenders = {"1": ranks(1, "noshared"), f"{a.ranks}_shared": ranks(a.ranks, "shared"),
                      f"{a.ranks}_noshared": ranks(a.ranks, "noshared")}
        runs = {k: [] for k in contenders}
        for _ in range(a.repeat):
            for k, fn in contenders.items():
                fn()
                runs[k].append(fn.slowest)
        out["s3_restore_ranks"] = {k: {"median_s": statistics.median(v), "runs_s": [round(x, 3) for x in v]}
                                   for k, v in runs.items()}
        s3[True].delete(sid)

        # ---- 3. growth with size ----------------------------------------------------------
        big_src = work / "big"
        big_files = make_data(big_src, int(a.big_gib * (1 << 30)))
        big_id = s3[True].upload(big_src, {"steps_completed": 2})
        shutil.rmtree(big_src)
        c = restore_contenders(big_id, big_files, work / "rawdl")
        del c["off"]
        out["s3_restore_big"] = r = rounds(max(3, a.repeat // 2), c)
        out["s3_restore_big"]["checksums_over_raw"] = ratio(r, "checksums", "raw_curl")
        s3[True].delete(big_id)
        for c in s3.values():
            c.close()
    finally:
        srv.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--gib", type=float, default=1.0)
    ap.add_argument("--big-gib", type=float, default=4.0)
    ap.add_argument("--ranks", type=int, default=4)
    ap.add_argument("--only", choices=["all", "dir", "s3"], default="all",
                    help="only the folder or only the S3 measurements")
    a = ap.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="detcore-restore-bench-", dir=os.environ.get("DETCORE_BENCH_DIR")))
    lib = capi.load(LIB)
    out = {"setup": {"gib": a.gib, "big_gib": a.big_gib, "files": FILES, "repeat": a.repeat,
                     "cpus": os.cpu_count(), "dir": str(work)}}
    try:
        src = work / "src"
        files = make_data(src, int(a.gib * (1 << 30)))
        if a.only in ("all", "dir"):
            bench_dir(a, lib, work, src, files, out)
        if a.only in ("all", "s3"):
            bench_s3(a, lib, work, src, files, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out, indent=2))
    if a.only in ("all", "dir"):
        summary_dir(a, out)
    if a.only in ("all", "s3"):
        summary_s3(a, out)


def summary_dir(a, out) -> None:
    pct = lambda x: f"{100 * x:+.1f} %"  # noqa: E731
    print(f"\ncheckpoints of {a.gib} GiB in {FILES} files, medians of {a.repeat} rounds, {os.cpu_count()} CPUs")
    for key, what in (("dir_store_path", "store, folder, store_path_end"), ("dir_store_path_whole", "store, folder, write + end   "),
                      ("dir_upload", "store, folder, upload        "), ("dir_restore_warm", "restore, folder, warm cache  "),
                      ("dir_restore_cold", "restore, folder, cold cache  ")):
        r = out[key]
        if "overhead" in r:
            print(f"{what} : checksums {pct(r['overhead'])} wall (target <= +5 %), {cpu_note(r)}")


def summary_s3(a, out) -> None:
    pct = lambda x: f"{100 * x:+.1f} %"  # noqa: E731
    r = out["s3_upload"]
    print(f"store, S3, upload             : checksums {pct(r['overhead'])} wall (target <= +5 %), {cpu_note(r)}")
    r = out["s3_restore"]
    print(f"restore, S3                   : checksums {pct(r['overhead'])} wall (target <= +5 %), {cpu_note(r)}; "
          f"{r['checksums_over_raw']:.2f}x raw curl with checksums (target <= 1.2), {r['off_over_raw']:.2f}x without")
    b = out["s3_restore_big"]
    print(f"restore, S3, {a.big_gib} GiB            : {b['checksums']['median_s']:.2f} s "
          f"({b['checksums']['median_s'] / a.big_gib:.2f} s/GiB vs {r['checksums']['median_s'] / a.gib:.2f} s/GiB), "
          f"{b['checksums_over_raw']:.2f}x raw curl")
    k = out["s3_restore_ranks"]
    print("restore, S3, ranks            : " + ", ".join(f"{n}: {v['median_s']:.2f} s" for n, v in k.items()))


if __name__ == "__main__":
    main()
