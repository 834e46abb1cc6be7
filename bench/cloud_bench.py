"""Checkpoint transfer benchmark (not a test): detcore against its baselines, measured in the
same run, on the same machine, as ratios of medians.

    scripts/venv.sh && cargo build --release --lib
    .venv/bin/python bench/cloud_bench.py [--repeat 3] [--gib 1] [--rss-gib 4]

Server: s3s-fs (a Rust S3 server that checks SigV4 signatures and stores objects as files) on
127.0.0.1, built by tests/python/servers.py into .cache/. Data: a checkpoint of 16 files
(1 GiB by default) of random bytes. Everything lives in a temporary folder under
$DETCORE_BENCH_DIR (default $TMPDIR): on a disk, the disk's write rate bounds every client
alike; on a tmpfs (`DETCORE_BENCH_DIR=/dev/shm`, ~4 GiB free needed) the clients differ.

Measured:
  1. S3 upload and download: detcore (det_ckpt_upload / det_ckpt_download through the C ABI)
     beside determined==0.38.1's S3StorageManager (boto3) and beside the server's raw rate
     with a parallel client (16 curl processes, one per file, SigV4-signed PUT/GET).
  2. upload() to a directory storage beside `cp -r` of the same folder (and beside `cp -r` +
     `sync`, as durable as detcore's publish); then the same with 1000 files of 64 KiB.
  3. The training-visible stall of det_ckpt_store_path_end: asynchronous beside synchronous.
  4. Peak RSS growth of a process uploading a 4 GiB checkpoint (VmHWM, beside the same
     process initialising detcore and closing it without uploading).

Each round runs every contender of a measurement once, one after the other, so that a change in
the machine's load during the run falls on all of them alike; the medians over the rounds are
compared. Beside the wall time, the CPU seconds of the client (this process, or the curl
processes) and of the S3 server (from /proc) are recorded for every S3 transfer: they show how
much of a transfer's cost is the client's, and the least time any client could take on this
machine (the server's CPU seconds divided by the number of cores).
"""
from __future__ import annotations

import argparse
import ctypes
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

LIB = pathlib.Path(os.environ.get("DETCORE_LIB", ROOT / "target" / "release" / "libdetcore.so"))
FILES = 16
SMALL_FILES = 1000


def make_data(d: pathlib.Path, total: int) -> None:
    d.mkdir(parents=True)
    per = total // FILES
    chunk = os.urandom(per)
    for i in range(FILES):
        (d / f"shard-{i:02d}.bin").write_bytes(chunk[i:] + chunk[:i])  # distinct contents


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def own_cpu() -> float:
    """CPU seconds of this process and of its finished children."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def proc_cpu(pid: int) -> float:
    """CPU seconds of process `pid` (all its threads) so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rounds(n: int, contenders: dict, server_pid=None) -> dict:
    """Run each contender `(fn, before)` once per round, in turn, for `n` rounds; `before` runs
    untimed. Returns, per contender, the median wall time and the median client and server CPU
    seconds (server only with `server_pid`), and the wall times of every round."""
    runs = {name: [] for name in contenders}
    for _ in range(n):
        for name, (fn, before) in contenders.items():
            if before:
                before()
            c0 = own_cpu()
            s0 = proc_cpu(server_pid) if server_pid else 0.0
            t = timed(fn)
            runs[name].append((t, own_cpu() - c0, (proc_cpu(server_pid) - s0) if server_pid else None))
    out = {}
    for name, r in runs.items():
        out[name] = {"wall_s": statistics.median(x[0] for x in r),
                     "client_cpu_s": statistics.median(x[1] for x in r),
                     "walls_s": [round(x[0], 3) for x in r]}
        if server_pid:
            out[name]["server_cpu_s"] = statistics.median(x[2] for x in r)
            out[name]["server_cpu_min_s"] = min(x[2] for x in r)
    return out


def curl(args: list) -> list:
    return ["curl", "-sS", "-f", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user",
            f"{servers.S3_KEY}:{servers.S3_SECRET}", "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"] + args


def parallel(cmds: list) -> None:
    procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL) for c in cmds]
    for p in procs:
        if p.wait() != 0:
            raise RuntimeError(f"{p.args} failed")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--gib", type=float, default=1.0)
    ap.add_argument("--rss-gib", type=float, default=4.0)
    a = ap.parse_args()
    total = int(a.gib * (1 << 30))
    work = pathlib.Path(tempfile.mkdtemp(prefix="detcore-bench-", dir=os.environ.get("DETCORE_BENCH_DIR")))
    src = work / "src"
    make_data(src, total)
    lib = capi.load(LIB)
    results = {}
    srv = servers.start_s3s_fs(work / "s3data")
    try:
        bucket = "detcore-bench"
        servers.make_bucket_s3(srv.url, bucket)
        cfg = {"type": "s3", "bucket": bucket, "endpoint_url": srv.url, "access_key": servers.S3_KEY,
               "secret_key": servers.S3_SECRET}
        core = capi.Core(lib, cfg, work / "run", run_name="bench")

        # 1. Upload. Each upload is deleted (untimed) before the next, so the server holds one
        # copy at most.
        from determined.common.storage import S3StorageManager

        py = S3StorageManager(bucket, servers.S3_KEY, servers.S3_SECRET, srv.url)
        ids, pyids = [], []
        files = sorted(src.iterdir())

        def drop_uploads():
            while ids:
                core.delete(ids.pop())
            while pyids:
                py.delete(pyids.pop(), ["**/*"])

        def py_up():
            pyids.append(f"py-{time.time_ns()}")
            py.upload(src, pyids[-1])

        up = rounds(a.repeat, {
            "detcore": (lambda: ids.append(core.upload(src, {"steps_completed": 1})), drop_uploads),
            "python": (py_up, drop_uploads),
            "raw": (lambda: parallel([curl(["-T", str(f), f"{srv.url}/{bucket}/raw/{f.name}"]) for f in files]),
                    drop_uploads),
        }, srv.proc.pid)
        drop_uploads()

        # Download (of one checkpoint stored by detcore; the raw client reads the raw/ objects).
        sid = core.upload(src, {"steps_completed": 1})
        dl = work / "dl"
        clear = lambda: shutil.rmtree(dl, ignore_errors=True)  # noqa: E731

        def raw_dn():
            dl.mkdir(parents=True, exist_ok=True)
            parallel([curl(["-o", str(dl / f.name), f"{srv.url}/{bucket}/raw/{f.name}"]) for f in files])

        dn = rounds(a.repeat, {
            "detcore": (lambda: core.download(sid, dl), clear),
            "python": (lambda: py.download(sid, str(dl)), clear),
            "raw": (raw_dn, clear),
        }, srv.proc.pid)
        clear()
        core.delete(sid)
        ncpu = os.cpu_count() or 1
        results["s3"] = {
            "upload": up, "download": dn,
            "detcore_upload_s": up["detcore"]["wall_s"], "python_upload_s": up["python"]["wall_s"],
            "raw_parallel_upload_s": up["raw"]["wall_s"],
            "detcore_download_s": dn["detcore"]["wall_s"], "python_download_s": dn["python"]["wall_s"],
            "raw_parallel_download_s": dn["raw"]["wall_s"],
            "upload_speedup_vs_python": up["python"]["wall_s"] / up["detcore"]["wall_s"],
            "upload_fraction_of_raw": up["raw"]["wall_s"] / up["detcore"]["wall_s"],
            "download_speedup_vs_python": dn["python"]["wall_s"] / dn["detcore"]["wall_s"],
            "download_fraction_of_raw": dn["raw"]["wall_s"] / dn["detcore"]["wall_s"],
            # The least wall time of any client: the server's own CPU seconds (its cheapest run
            # of any client) spread over every core of the machine, with a client that costs
            # nothing. A speedup over Python above python_s / floor_s is out of reach here.
            "upload_floor_s": min(v["server_cpu_min_s"] for v in up.values()) / ncpu,
            "download_floor_s": min(v["server_cpu_min_s"] for v in dn.values()) / ncpu,
        }
        s3 = results["s3"]
        s3["upload_max_speedup_vs_python"] = s3["python_upload_s"] / s3["upload_floor_s"]
        s3["download_max_speedup_vs_python"] = s3["python_download_s"] / s3["download_floor_s"]

        # 3. Async stall vs sync, same checkpoint size.
        def end_time(mode) -> float:
            h = ctypes.c_void_p()
            core.check(lib.det_ckpt_store_path_begin(core.ctx, b'{"steps_completed": 1}', False, ctypes.byref(h)))
            p = ctypes.c_char_p()
            core.check(lib.det_ckpt_store_path(h, ctypes.byref(p)))
            dst = pathlib.Path(p.value.decode())
            for f in files:
                shutil.copyfile(f, dst / f.name)
            sidbuf = ctypes.create_string_buffer(37)
            t = time.perf_counter()
            core.check(lib.det_ckpt_store_path_end_mode(h, mode, sidbuf))
            el = time.perf_counter() - t
            core.wait()
            core.delete(sidbuf.value.decode())
            return el

        pairs = [(end_time(capi.UPLOAD_SYNC), end_time(capi.UPLOAD_ASYNC)) for _ in range(a.repeat)]
        sync = statistics.median(p[0] for p in pairs)
        asyn = statistics.median(p[1] for p in pairs)
        results["async"] = {"sync_end_s": sync, "async_end_s": asyn, "async_over_sync": asyn / sync}
        core.close()

        # 4. Peak RSS while uploading rss-gib.
        big = work / "big"
        big.mkdir()
        per = int(a.rss_gib * (1 << 30)) // FILES
        with open(files[0], "rb") as f:
            block = f.read()
        for i in range(FILES):
            with open(big / f"part-{i:02d}.bin", "wb") as out:
                left = per
                while left > 0:
                    out.write(block[: min(left, len(block))])
                    left -= min(left, len(block))
        child = (
            "import sys, json; sys.path.insert(0, %r); import capi, pathlib, resource;"
            "lib = capi.load(%r); c = capi.Core(lib, json.loads(sys.argv[1]), pathlib.Path(sys.argv[2]), run_name='rss');"
            "sys.argv[3] == 'up' and c.upload(pathlib.Path(sys.argv[4]), {'steps_completed': 1}); c.close();"
            "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])"
        ) % (str(ROOT / "tests" / "python"), str(LIB))

        def rss(mode):
            r = subprocess.run([sys.executable, "-c", child, json.dumps(cfg), str(work / "rssrun"), mode, str(big)],
                               capture_output=True, text=True, check=True)
            return int(r.stdout.strip().splitlines()[-1]) / 1024.0

        base, peak = rss("none"), rss("up")
        results["rss"] = {"upload_gib": a.rss_gib, "baseline_mib": base, "uploading_mib": peak,
                          "growth_mib": peak - base}
        shutil.rmtree(big)
    finally:
        srv.stop()

    # 2. Directory storage upload vs cp -r (same file system, files in the page cache).
    dstore = work / "dirstore"
    core = capi.Core(lib, str(dstore), work / "run2", run_name="benchdir")
    cp_dst = work / "cpdst"
    clear_cp = lambda: shutil.rmtree(cp_dst, ignore_errors=True)  # noqa: E731
    dids = []

    def drop_dir():
        clear_cp()
        while dids:
            core.delete(dids.pop())

    # detcore's publish is durable (every file and folder fsynced before the checkpoint appears);
    # `cp -r` is not, so the durable equivalent is measured too.
    d = rounds(a.repeat, {
        "cp_r": (lambda: subprocess.run(["cp", "-r", str(src), str(cp_dst)], check=True), drop_dir),
        "cp_r_sync": (lambda: subprocess.run(["sh", "-c", f"cp -r '{src}' '{cp_dst}' && sync -f '{cp_dst}'"],
                                             check=True), drop_dir),
        "detcore": (lambda: dids.append(core.upload(src, {"steps_completed": 1})), drop_dir),
    })
    drop_dir()
    t_cp, t_cp_sync, t_dir = d["cp_r"]["wall_s"], d["cp_r_sync"]["wall_s"], d["detcore"]["wall_s"]
    results["directory"] = {"detcore_upload_s": t_dir, "cp_r_s": t_cp, "cp_r_sync_s": t_cp_sync,
                            "speed_vs_cp_r": t_cp / t_dir, "speed_vs_cp_r_sync": t_cp_sync / t_dir,
                            "runs": d}

    # 2b. The same with many small files (SMALL_FILES of 64 KiB), where per-file costs (fsync,
    # file creation) dominate; no target, for comparison on disks.
    small = work / "small"
    small.mkdir()
    blob = os.urandom(64 << 10)
    for i in range(SMALL_FILES):
        (small / f"f{i:04d}.bin").write_bytes(blob)
    d = rounds(a.repeat, {
        "cp_r": (lambda: subprocess.run(["cp", "-r", str(small), str(cp_dst)], check=True), drop_dir),
        "cp_r_sync": (lambda: subprocess.run(["sh", "-c", f"cp -r '{small}' '{cp_dst}' && sync -f '{cp_dst}'"],
                                             check=True), drop_dir),
        "detcore": (lambda: dids.append(core.upload(small, {"steps_completed": 1})), drop_dir),
    })
    drop_dir()
    core.close()
    results["directory_small_files"] = {
        "files": SMALL_FILES, "detcore_upload_s": d["detcore"]["wall_s"], "cp_r_s": d["cp_r"]["wall_s"],
        "cp_r_sync_s": d["cp_r_sync"]["wall_s"], "speed_vs_cp_r_sync": d["cp_r_sync"]["wall_s"] / d["detcore"]["wall_s"],
        "runs": d}

    results["setup"] = {"checkpoint_bytes": total, "files": FILES, "repeat": a.repeat, "cpus": os.cpu_count()}
    print(json.dumps(results, indent=2))
    s, d, y, r = results["s3"], results["directory"], results["async"], results["rss"]
    print(f"\nS3 upload   : {s['upload_speedup_vs_python']:.2f}x Python (target >= 3; "
          f"at most {s['upload_max_speedup_vs_python']:.1f}x on this machine), "
          f"{s['upload_fraction_of_raw']:.2f} of raw parallel ingest (target >= 0.8)")
    print(f"S3 download : {s['download_speedup_vs_python']:.2f}x Python (target >= 3; "
          f"at most {s['download_max_speedup_vs_python']:.1f}x on this machine), "
          f"{s['download_fraction_of_raw']:.2f} of raw parallel (target >= 0.8)")
    for what in ("upload", "download"):
        row = "  ".join(f"{k} {v['wall_s']:.2f} s (client {v['client_cpu_s']:.2f}, server {v['server_cpu_s']:.2f} CPU s)"
                        for k, v in s[what].items())
        print(f"  {what:9s}: {row}")
    print(f"directory   : {d['speed_vs_cp_r']:.2f}x cp -r (target >= 0.9), "
          f"{d['speed_vs_cp_r_sync']:.2f}x cp -r + sync (durable like detcore)")
    m = results["directory_small_files"]
    print(f"  {m['files']} files of 64 KiB: detcore {m['detcore_upload_s']:.3f} s, cp -r {m['cp_r_s']:.3f} s, "
          f"cp -r + sync {m['cp_r_sync_s']:.3f} s")
    print(f"async stall : {y['async_over_sync']:.4f} of sync (target <= 0.05)")
    print(f"RSS growth  : {r['growth_mib']:.1f} MiB uploading {r['upload_gib']} GiB (target <= 128)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
