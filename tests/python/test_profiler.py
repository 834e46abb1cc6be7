"""The system profiler against what the machine says: values are compared with psutil (which
reads the same /proc files Python's Determined profiler reads) during an idle, a CPU-burning, a
disk-writing and a network phase; keys and units are Determined's; with no NVML the gpu group is
left out and nothing fails; on a machine with an NVIDIA GPU the gpu group is compared with
nvidia-smi (skipped, with a message, elsewhere — never faked)."""
import datetime
import json
import os
import shutil
import socket
import subprocess
import threading
import time

import pytest

from capi import Lib

psutil = pytest.importorskip("psutil")

INTERVAL = 0.1
PER_REPORT = 5
PERIOD = INTERVAL * PER_REPORT

KEYS = {
    "cpu": ["cpu_util_simple"],
    "memory": ["memory_free"],
    "network": ["net_throughput_sent", "net_throughput_recv"],
}


@pytest.fixture()
def det(detcore_lib):
    lib = Lib(detcore_lib)
    lib.lib.det_log_set_level(30)
    return lib


def reports(run_dir):
    """Profiler lines of metrics.jsonl: (group, report time as epoch seconds, aggregate)."""
    out = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        m = json.loads(line)
        if m.get("type") != "metrics" or m["steps_completed"] is not None:
            continue
        t = datetime.datetime.fromisoformat(m["report_time"]).timestamp()
        (agent, agg), = m["metrics"].items()
        assert agent == socket.gethostname()
        out.append((m["group"], t, agg))
    return out


def in_phase(reps, group, phase):
    t0, t1 = phase["t0"], phase["t1"]
    return [a for g, t, a in reps if g == group and t - PERIOD >= t0 - 0.05 and t <= t1 + 0.05]


def burn(seconds):
    end = time.time() + seconds
    x = 0
    while time.time() < end:
        for i in range(10000):
            x += i * i
    return x


def write_disk(path, seconds):
    chunk = os.urandom(4 << 20)
    end = time.time() + seconds
    with open(path, "wb") as f:
        while time.time() < end:
            f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
    os.remove(path)


def loopback_traffic(seconds):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    received = [0]

    def sink():
        c, _ = srv.accept()
        while True:
            b = c.recv(1 << 20)
            if not b:
                break
            received[0] += len(b)
        c.close()

    t = threading.Thread(target=sink)
    t.start()
    cli = socket.create_connection(srv.getsockname())
    buf = b"x" * (1 << 20)
    end = time.time() + seconds
    while time.time() < end:
        cli.sendall(buf)
        time.sleep(0.01)  # ~100 MB/s, steady
    cli.close()
    t.join()
    srv.close()
    return received[0]


def test_values_are_sane_against_proc(det, tmp_path):
    ctx = det.init(tmp_path / "ckpts", tmp_path / "run", "prof")
    det.check(det.lib.det_profiler_on(ctx, INTERVAL, PER_REPORT))
    phases = {}

    def phase(name, fn, seconds):
        psutil.cpu_percent()
        p = {"t0": time.time(), "disk": psutil.disk_io_counters(), "net": psutil.net_io_counters()}
        fn(seconds)
        p["t1"] = time.time()
        p["cpu"] = psutil.cpu_percent()
        d, n = psutil.disk_io_counters(), psutil.net_io_counters()
        dt = p["t1"] - p["t0"]
        p["disk_write"] = (d.write_bytes - p["disk"].write_bytes) / dt
        p["net_recv"] = (n.bytes_recv - p["net"].bytes_recv) / dt
        p["net_sent"] = (n.bytes_sent - p["net"].bytes_sent) / dt
        p["mem"] = psutil.virtual_memory().available
        p["root_util"] = psutil.disk_usage("/").percent
        phases[name] = p

    phase("idle", time.sleep, 1.2)
    phase("cpu", burn, 2.5)
    phase("disk", lambda s: write_disk(tmp_path / "big.bin", s), 2.5)
    phase("net", loopback_traffic, 2.5)
    det.check(det.lib.det_profiler_off(ctx))
    det.close(ctx)
    reps = reports(tmp_path / "run")

    groups = {g for g, _, _ in reps}
    assert {"cpu", "memory", "disk", "network"} <= groups, groups
    for g, _, agg in reps:
        if g in KEYS:
            assert list(agg) == KEYS[g], (g, agg)
        elif g == "disk":
            assert list(agg)[:3] == ["disk_iops", "disk_throughput_read", "disk_throughput_write"]
            assert agg["/"].keys() == {"disk_util"}
        elif g == "gpu":
            for uuid, v in agg.items():
                assert uuid.startswith("GPU-") and v.keys() == {"gpu_util", "gpu_free_memory"}
        else:
            pytest.fail(f"unexpected group {g}")

    # CPU: one core burning is at least 1/ncpu of the machine; both agree on the phase.
    cpu = [a["cpu_util_simple"] for a in in_phase(reps, "cpu", phases["cpu"])]
    assert len(cpu) >= 3, cpu
    mean = sum(cpu) / len(cpu)
    assert mean >= 80.0 / os.cpu_count(), (cpu, os.cpu_count())
    assert abs(mean - phases["cpu"]["cpu"]) < 25, (cpu, phases["cpu"]["cpu"])
    assert all(0.0 <= a["cpu_util_simple"] <= 100.0 for g, _, a in reps if g == "cpu")

    # Memory: MemAvailable, as psutil reads it.
    mem = [a["memory_free"] for g, _, a in reps if g == "memory"]
    want = phases["net"]["mem"]
    assert abs(mem[-1] - want) < max(0.2 * want, 1 << 30), (mem[-1], want)

    # Disk: the written bytes per second seen by both, within a factor of 2; usage of "/".
    disk = in_phase(reps, "disk", phases["disk"])
    assert len(disk) >= 3, disk
    wr = sum(a["disk_throughput_write"] for a in disk) / len(disk)
    assert wr > 1e6, disk
    assert 0.5 < wr / phases["disk"]["disk_write"] < 2.0, (wr, phases["disk"]["disk_write"])
    assert all(a["disk_iops"] > 0 for a in disk)
    assert abs(disk[-1]["/"]["disk_util"] - phases["disk"]["root_util"]) < 2.0

    # Network: the loopback transfer is counted both ways.
    net = in_phase(reps, "network", phases["net"])
    assert len(net) >= 3, net
    for key, ref in (("net_throughput_recv", "net_recv"), ("net_throughput_sent", "net_sent")):
        ours = sum(a[key] for a in net) / len(net)
        assert ours > 10e6, (key, net)
        assert 0.5 < ours / phases["net"][ref] < 2.0, (key, ours, phases["net"][ref])


def test_no_nvml_means_no_gpu_group_and_no_failure(det, tmp_path, monkeypatch):
    monkeypatch.setenv("DETCORE_NVML_LIBRARY", "libdetcore-test-no-such-nvml.so")
    ctx = det.init(tmp_path / "ckpts", tmp_path / "run", "nonvml")
    det.check(det.lib.det_profiler_on(ctx, INTERVAL, 2))
    time.sleep(0.5)
    det.close(ctx)  # stops the profiler; its last report is delivered
    groups = [g for g, _, _ in reports(tmp_path / "run")]
    assert "gpu" not in groups
    assert groups.count("cpu") >= 2 and groups[-4:] == ["cpu", "memory", "disk", "network"]


def nvidia_smi():
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None, "nvidia-smi not found"
    r = subprocess.run([exe, "--query-gpu=uuid,memory.free,utilization.gpu", "--format=csv,noheader,nounits"],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0 or not r.stdout.strip():
        return None, f"nvidia-smi failed: {r.stderr.strip() or r.stdout.strip()}"
    rows = [[c.strip() for c in line.split(",")] for line in r.stdout.strip().splitlines()]
    return {u: (int(free) << 20, int(util)) for u, free, util in rows}, None


def test_gpu_group_matches_nvidia_smi(det, tmp_path):
    gpus, why = nvidia_smi()
    if gpus is None:
        pytest.skip(f"no NVIDIA GPU on this machine ({why}): the gpu group cannot be compared, and is not faked")
    ctx = det.init(tmp_path / "ckpts", tmp_path / "run", "gpu")
    det.check(det.lib.det_profiler_on(ctx, INTERVAL, PER_REPORT))
    time.sleep(1.2)
    det.close(ctx)
    after, _ = nvidia_smi()
    gpu = [a for g, _, a in reports(tmp_path / "run") if g == "gpu"]
    assert gpu, "no gpu reports although nvidia-smi sees GPUs"
    assert set(gpu[-1]) == set(gpus)
    for uuid, v in gpu[-1].items():
        lo = min(gpus[uuid][0], after[uuid][0])
        hi = max(gpus[uuid][0], after[uuid][0])
        assert lo - (256 << 20) <= v["gpu_free_memory"] <= hi + (256 << 20), (uuid, v, gpus[uuid], after[uuid])
        assert 0 <= v["gpu_util"] <= 100
