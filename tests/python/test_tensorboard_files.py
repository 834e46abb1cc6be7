"""detcore's TensorBoard event files, read back by the real `tensorboard` package (no TensorFlow):
every tag, step and value (NaN and infinities included), in the local folder and in the storage
layout after sync (a directory, and S3 on a loopback server); a reader polling while detcore
writes never meets a torn record."""
import json
import math
import os
import pathlib
import socket
import struct
import threading
import time

import pytest

from capi import DET_ERR_UNSUPPORTED, DET_TENSORBOARD_MODE_MANUAL, DetError, Lib

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
event_file_loader = pytest.importorskip("tensorboard.backend.event_processing.event_file_loader")
from tensorboard.compat import tf as tb_tf  # noqa: E402  (the stub: no TensorFlow here)

SYNC = "local/tensorboard/experiment/runs/trial"


@pytest.fixture()
def det(detcore_lib):
    return Lib(detcore_lib)


def f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


def load_scalars(folder: pathlib.Path) -> dict:
    """{tag: [(step, value), ...]} as TensorBoard's own accumulator reads the folder."""
    acc = event_accumulator.EventAccumulator(str(folder), size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def same(a, b) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def assert_scalars(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want), (sorted(got), sorted(want))
    for tag, pts in want.items():
        g = got[tag]
        assert [s for s, _ in g] == [s for s, _ in pts], (tag, g, pts)
        assert all(same(a, f32(b)) for (_, a), (_, b) in zip(g, pts)), (tag, g, pts)


def report_everything(det, ctx) -> dict:
    lib = det.lib
    det.check(lib.det_train_report_training_metrics(
        ctx, 10,
        json.dumps({"loss": 0.5, "acc": 0.875, "flag": True, "name": "x", "nested": {"a": 1}}).encode(),
        json.dumps([{"loss": 1.5, "lr": 0.1}, {"loss": 0.75, "lr": 0.05}]).encode()))
    det.check(lib.det_train_report_validation_metrics(
        ctx, 10, b'{"loss": NaN, "val_acc": 0.5, "validation_error": Infinity, "neg": -Infinity}'))
    det.scalars(ctx, "training", 20, {"loss": 0.25, "weird/name x": -3.0})
    det.scalars(ctx, "validation", 20, {"loss": 1e-3})
    det.check(lib.det_train_report_metrics(ctx, b"custom", 20, b'{"loss": 123.0}'))
    return {
        "Determined/loss": [(8, 1.5), (9, 0.75), (20, 0.25)],
        "Determined/lr": [(8, 0.1), (9, 0.05)],
        "Determined/acc": [(10, 0.875)],
        "Determined/flag": [(10, 1.0)],
        "Determined/weird/name x": [(20, -3.0)],
        "Determined/val_loss": [(10, float("nan")), (20, 1e-3)],
        "Determined/val_acc": [(10, 0.5)],
        "Determined/validation_error": [(10, float("inf"))],
        "Determined/val_neg": [(10, float("-inf"))],
    }


def test_tensorboard_reads_every_tag_step_and_value(det, tmp_path):
    ctx = det.init(tmp_path / "ckpts", tmp_path / "run", "tb1")
    tb = det.tensorboard_path(ctx)
    assert tb == tmp_path / "run" / "tensorboard"
    want = report_everything(det, ctx)
    det.close(ctx)

    assert_scalars(load_scalars(tb), want)
    files = sorted(tb.glob("events.out.tfevents.*"))
    assert len(files) == 1
    name = files[0].name.split(".")
    assert len(name[3]) == 10 and name[3].isdigit(), files[0].name
    assert name[-2] == str(os.getpid())
    # The raw events: a file_version header first, then summaries with simple_value.
    events = list(event_file_loader.EventFileLoader(str(files[0])).Load())
    assert events[0].file_version == "brain.Event:2"
    assert all(e.HasField("summary") for e in events[1:])
    assert all(e.wall_time > time.time() - 600 for e in events)

    # Synced into the storage layout, byte for byte, and readable there too.
    synced = tmp_path / "ckpts" / SYNC / "tb1"
    assert sorted(p.name for p in synced.iterdir()) == [files[0].name]
    assert (synced / files[0].name).read_bytes() == files[0].read_bytes()
    assert_scalars(load_scalars(synced), want)


def test_manual_mode_writes_nothing(det, tmp_path):
    ctx = det.init(tmp_path / "ckpts", tmp_path / "run", "man", mode=DET_TENSORBOARD_MODE_MANUAL)
    tb = det.tensorboard_path(ctx)
    report_everything(det, ctx)
    det.check(det.lib.det_train_flush(ctx, 30.0))
    det.close(ctx)
    assert list(tb.iterdir()) == []
    assert not (tmp_path / "ckpts" / "local").exists()


class StrictReader:
    """Reads one event file while it grows, with tensorboard's own record reader: a record cut
    short at the end is "not written yet" (retried later); a checksum failure is a torn record."""

    def __init__(self, path: pathlib.Path):
        self.path = path
        self.reader = tb_tf.pywrap_tensorflow.PyRecordReader_New(str(path).encode(), 0, b"", None)
        self.steps = []
        self.truncations = 0

    def poll(self) -> None:
        from tensorboard.compat.proto import event_pb2

        while True:
            try:
                self.reader.GetNext()
            except tb_tf.errors.OutOfRangeError:
                return
            except tb_tf.errors.DataLossError as e:
                assert "truncated" in str(e), f"torn record in {self.path}: {e}"
                self.truncations += 1
                return
            ev = event_pb2.Event.FromString(self.reader.record())
            for v in ev.summary.value:
                if v.tag == "Determined/x":
                    self.steps.append(ev.step)


def test_reader_polling_while_writing_never_sees_a_torn_record(det, tmp_path):
    det.lib.det_log_set_level(30)
    ctx = det.init(tmp_path / "ckpts", tmp_path / "run", "poll")
    tb = det.tensorboard_path(ctx)
    synced = tmp_path / "ckpts" / SYNC / "poll"
    n = 6000
    done = threading.Event()

    def writer():
        # Big batches of metrics so that files pass the 1 MiB rotation size.
        pad = {f"pad{i}": float(i) for i in range(40)}
        for step in range(n):
            det.scalars(ctx, "training", step, {"x": float(step), **pad})
            if step % 10 == 0:
                time.sleep(0.004)  # a few seconds of writing, so that syncs happen meanwhile
        done.set()

    readers = {}

    def poll_all():
        for folder in (tb, synced):
            if not folder.exists():
                continue
            for p in sorted(folder.glob("events.out.tfevents.*")):
                if p not in readers:
                    readers[p] = StrictReader(p)
                readers[p].poll()

    t = threading.Thread(target=writer)
    t.start()
    polls = 0
    while not done.is_set():
        poll_all()
        polls += 1
        time.sleep(0.002)
    t.join()
    det.close(ctx)
    poll_all()
    assert polls > 20
    print(f"polls={polls} files={len(readers)} truncated_reads={sum(r.truncations for r in readers.values())}")
    local = sorted(s for p, r in readers.items() if p.parent == tb for s in r.steps)
    remote = sorted(s for p, r in readers.items() if p.parent == synced for s in r.steps)
    assert local == list(range(n))
    assert remote == list(range(n))
    assert len([p for p in readers if p.parent == tb]) >= 2, "expected rotation past 1 MiB"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def s3_server():
    moto_server = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket="tb-bucket")
    try:
        yield url, client
    finally:
        server.stop()


def test_sync_to_s3_storage_layout(det, tmp_path, s3_server):
    url, client = s3_server
    storage = json.dumps({"type": "s3", "bucket": "tb-bucket", "prefix": "some/prefix", "endpoint_url": url,
                          "access_key": "testing", "secret_key": "testing"})
    try:
        ctx = det.init(storage, tmp_path / "run", "s3run")
    except DetError as e:
        if e.status == DET_ERR_UNSUPPORTED and "not available in this build" in e.message:
            pytest.skip(f"this build of detcore has no S3 backend: {e.message}")
        raise
    want = report_everything(det, ctx)
    tb = det.tensorboard_path(ctx)
    det.close(ctx)
    prefix = f"some/prefix/{SYNC}/s3run/"
    objs = client.list_objects_v2(Bucket="tb-bucket", Prefix=prefix).get("Contents", [])
    names = sorted(o["Key"][len(prefix):] for o in objs)
    local = sorted(p.name for p in tb.glob("events.out.tfevents.*"))
    assert names == local and local
    dl = tmp_path / "dl"
    dl.mkdir()
    for n in names:
        client.download_file("tb-bucket", prefix + n, str(dl / n))
        assert (dl / n).read_bytes() == (tb / n).read_bytes()
    assert_scalars(load_scalars(dl), want)


def test_own_writer_histograms_and_scalars(det, tmp_path):
    import ctypes

    lib = det.lib
    w = ctypes.c_void_p()
    det.check(lib.det_tb_writer_open(str(tmp_path / "w").encode(), ctypes.byref(w)))
    values = [0.0, 1.0, 1.0, 2.5, -3.0, 1e6, float("nan")]
    arr = (ctypes.c_double * len(values))(*values)
    det.check(lib.det_tb_writer_add_histogram(w, b"weights", 7, arr, len(values)))
    det.check(lib.det_tb_writer_add_scalar(w, b"lr", 7, 0.01))
    det.check(lib.det_tb_writer_close(w))
    acc = event_accumulator.EventAccumulator(
        str(tmp_path / "w"), size_guidance={event_accumulator.HISTOGRAMS: 0, event_accumulator.SCALARS: 0})
    acc.Reload()
    assert acc.Tags()["histograms"] == ["weights"]
    (h,) = acc.Histograms("weights")
    hv = h.histogram_value
    finite = [v for v in values if not math.isnan(v)]
    assert h.step == 7
    assert (hv.min, hv.max, hv.num) == (min(finite), max(finite), len(finite))
    assert hv.sum == sum(finite) and hv.sum_squares == sum(v * v for v in finite)
    assert sum(hv.bucket) == len(finite)
    assert list(hv.bucket_limit) == sorted(hv.bucket_limit)
    # Every value lies in its bucket: (previous limit, limit].
    for v in finite:
        i = next(i for i, lim in enumerate(hv.bucket_limit) if v < lim)
        assert hv.bucket[i] >= 1, (v, i)
    assert [(e.step, e.value) for e in acc.Scalars("lr")] == [(7, f32(0.01))]
