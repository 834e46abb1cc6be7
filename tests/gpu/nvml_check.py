"""The profiler's `gpu` group (NVML) against nvidia-smi, on a machine with NVIDIA GPUs.

    DETCORE_LIB=build-gpu/cargo/release/libdetcore.so python3 tests/gpu/nvml_check.py [--load PROGRAM]

Samples both for a few seconds idle, then while PROGRAM (the CUDA example) keeps a GPU busy,
and checks: the same GPUs (UUIDs); free memory within 1% + 64 MiB of the range nvidia-smi saw;
utilisation in [0, 100] and, per phase, within 25 points of nvidia-smi's mean; under load both
see some. Exits 0 when all hold, 1 otherwise; prints the table either way. Standard library
only (plus detcore's Python package from bindings/python)."""
import argparse
import datetime
import json
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bindings" / "python"))
import detcore  # noqa: E402

INTERVAL, PER_REPORT, PHASE_SECONDS = 0.25, 4, 8.0
MIB = 1 << 20


def smi():
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=uuid,memory.free,utilization.gpu", "--format=csv,noheader,nounits"],
        capture_output=True, text=True, check=True, timeout=30).stdout
    rows = {}
    for line in out.strip().splitlines():
        uuid, free, util = (x.strip() for x in line.split(","))
        rows[uuid] = (float(free) * MIB, float(util))
    return rows


def sample_smi(stop, samples):
    while not stop.is_set():
        samples.append((time.time(), smi()))
        time.sleep(INTERVAL)


def phase(name, run_dir, load=None):
    t0 = time.time()
    samples, stop = [], threading.Event()
    th = threading.Thread(target=sample_smi, args=(stop, samples), daemon=True)
    proc = None
    if load:
        env = dict(os.environ, DET_HPARAMS=json.dumps({"steps": 10_000_000, "checkpoint_every": 10_000_000}),
                   DET_RUN_NAME=f"nvml-load-{os.getpid()}", DETCORE_LOG_LEVEL="warning")
        proc = subprocess.Popen([load], cwd=run_dir, env=env, stdout=subprocess.DEVNULL)
        time.sleep(2.0)  # past its start-up
        t0 = time.time()
    th.start()
    time.sleep(PHASE_SECONDS)
    stop.set()
    th.join()
    t1 = time.time()
    if proc:
        proc.terminate()
        proc.wait(timeout=60)
    return {"name": name, "t0": t0, "t1": t1, "smi": samples}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--load", help="a program that keeps a GPU busy until SIGTERM (examples/train_cuda)")
    args = ap.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="detcore-nvml-"))
    phases = []
    with detcore.init(checkpoint_storage=work / "c", run_dir=work / "run", run_name="nvml-check",
                      cluster_info_dir=work / "not-a-cluster") as ctx:
        ctx.profiler.on(sampling_interval=INTERVAL, samples_per_report=PER_REPORT)
        phases.append(phase("idle", work))
        if args.load:
            phases.append(phase("load", work, load=args.load))
        ctx.profiler.off()
    reports = []
    for line in (work / "run" / "metrics.jsonl").read_text().splitlines():
        m = json.loads(line)
        if m.get("type") == "metrics" and m.get("group") == "gpu":
            (agent, agg), = m["metrics"].items()
            assert agent == socket.gethostname(), agent
            reports.append((datetime.datetime.fromisoformat(m["report_time"]).timestamp(), agg))
    failures = []
    if not reports:
        failures.append("no `gpu` group in metrics.jsonl: NVML was not found or found no GPU")
    period = INTERVAL * PER_REPORT
    for ph in phases:
        mine = [agg for t, agg in reports if t - period >= ph["t0"] - 0.1 and t <= ph["t1"] + 0.1]
        if not mine:
            failures.append(f"{ph['name']}: no gpu report within the phase")
            continue
        smi_uuids = set(ph["smi"][0][1]) if ph["smi"] else set()
        for agg in mine:
            if set(agg) != smi_uuids:
                failures.append(f"{ph['name']}: GPUs {sorted(agg)} != nvidia-smi's {sorted(smi_uuids)}")
                break
        print(f"--- {ph['name']}: {len(mine)} detcore reports, {len(ph['smi'])} nvidia-smi samples")
        print(f"{'GPU':44} {'util detcore':>13} {'util smi':>9} {'free MiB detcore':>17} {'free MiB smi':>18}")
        for uuid in sorted(smi_uuids):
            u = [a[uuid]["gpu_util"] for a in mine if uuid in a]
            f = [a[uuid]["gpu_free_memory"] for a in mine if uuid in a]
            su = [s[uuid][1] for _, s in ph["smi"] if uuid in s]
            sf = [s[uuid][0] for _, s in ph["smi"] if uuid in s]
            if not (u and su):
                continue
            mu, msu = sum(u) / len(u), sum(su) / len(su)
            print(f"{uuid:44} {mu:13.1f} {msu:9.1f} {sum(f) / len(f) / MIB:17.0f} "
                  f"{min(sf) / MIB:8.0f}..{max(sf) / MIB:<8.0f}")
            if not all(0.0 <= x <= 100.0 for x in u):
                failures.append(f"{ph['name']} {uuid}: utilisation out of [0, 100]: {u}")
            if abs(mu - msu) > 25.0:
                failures.append(f"{ph['name']} {uuid}: mean utilisation {mu:.1f} vs nvidia-smi {msu:.1f}")
            tol = 0.01 * max(sf) + 64 * MIB
            if not all(min(sf) - tol <= x <= max(sf) + tol for x in f):
                failures.append(f"{ph['name']} {uuid}: free memory {[x / MIB for x in f]} MiB outside nvidia-smi's "
                                f"{min(sf) / MIB:.0f}..{max(sf) / MIB:.0f} MiB")
        if ph["name"] == "load":
            busiest = max(sum(a[u]["gpu_util"] for a in mine if u in a) for u in smi_uuids)
            if busiest <= 0 or max(s[1] for _, x in ph["smi"] for s in x.values()) <= 0:
                failures.append("load: the busy GPU shows no utilisation in detcore or nvidia-smi")
    for f in failures:
        print("FAIL:", f)
    print("nvml check:", "FAILED" if failures else "passed", f"(files in {work})")
    return 1 if failures else 0



if __name__ == "__main__":
    sys.exit(main())
