"""Conformance: one scenario (init, metrics of every kind, progress, status, a checkpoint,
get_metadata, the searcher, best validation, run metadata, alert, experimental's trial source
infos, delete, preemption + ack, close) run twice against the fake master — through the real Python client determined==0.38.1
and through a C program linked to detcore — and the recorded requests compared (method, path,
JSON bodies; ids and timestamps ignored). Every deliberate difference is listed below with its
reason, and checked to be the only one."""
import json

import pytest

from oncluster_util import FakeMaster, base_env, normalize, program, run, setup_trial, TOKEN

pytest.importorskip("determined.core")

# Requests the caller waits for, in both clients: their global order must be the same.
SYNC = [
    ("POST", r"/api/v1/runs/start"),
    ("POST", r"/api/v1/checkpoints"),
    ("GET", r"/api/v1/checkpoints/<uuid-0>"),
    ("GET", r"/api/v1/experiments/3/searcher/best_searcher_validation_metric"),
    ("POST", r"/api/v1/runs/7/metadata"),
    ("GET", r"/api/v1/runs/7/metadata"),
    ("POST", r"/api/v1/webhooks/custom"),
    ("POST", r"/api/v1/trial-source-info"),
    ("POST", r"/api/v1/trial-source-info"),
    ("PATCH", r"/api/v1/checkpoints"),
    ("POST", r"/api/v1/allocations/7.abc123.1/signals/ack_preemption"),
]
# Requests sent from a background thread: compared per endpoint, in order.
QUEUED = [
    ("POST", "/api/v1/trials/7/metrics"),
    ("POST", "/api/v1/trials/7/progress"),
    ("POST", "/api/v1/trials/7/runner/metadata"),
]
POLL = ("GET", "/api/v1/allocations/7.abc123.1/signals/preemption")

DELIBERATE_DIFFERENCES = {
    "queued status and progress": (
        "set_status and report_progress (also a searcher op's progress) are queued in order with "
        "the metrics and sent by the shipper thread, so a training loop never waits on the "
        "network for them; Python sends them synchronously from the caller's thread. Each "
        "endpoint's own sequence of requests is identical; only their interleaving with the "
        "synchronous calls differs."),
    "User-Agent": "detcore/<version> instead of python-requests/<version>.",
    "Accept-Encoding": "not sent (answers are small; no decompression code in the library).",
    "Connection: close on the long poll": (
        "the preemption long poll runs on its own connection so that close can interrupt it "
        "(Python's watcher is a daemon thread nobody joins)."),
}

# Header names both clients must send identically (values compared, token included).
SAME_HEADERS = ["Grpc-Metadata-x-allocation-token", "Content-Length", "Content-Type", "Accept",
                "Authorization", "x-user-token"]


def scenario(tmp_path, which):
    m = FakeMaster().start()
    try:
        # Folders of equal length, so that bodies (and Content-Length) compare equal.
        info, host, container = setup_trial(m, tmp_path / which[:2])
        m.script(preempt_on={"method": "PATCH", "path": "/api/v1/checkpoints"})
        # Off-cluster storage choice of a batch script: ignored on-cluster (said at INFO).
        env = base_env(info, container, DETCORE_CHECKPOINT_STORAGE=tmp_path / which[:2] / "elsewhere",
                       DETCORE_LOG_LEVEL="info")
        if which == "py":
            import sys
            import pathlib

            script = pathlib.Path(__file__).parent / "scenarios" / "py_scenario.py"
            r = run([sys.executable, script], env)
        else:
            r = run([program("oncluster_scenario")], env)
        assert r.returncode == 0, f"{which} scenario failed:\n{r.stdout}\n{r.stderr}"
        assert "done" in r.stdout
        assert TOKEN not in r.stderr + r.stdout, "the session token was logged"
        # The runs differ only in their folders: make paths comparable.
        recs = json.loads(json.dumps(m.requests()).replace(str(tmp_path / which[:2]), "<tmp>"))
        return recs, m, r
    finally:
        m.stop()


def classify(recs):
    uuids = {}
    out = {"sync": [], "queued": {k: [] for k in QUEUED}, "polls": [], "other": [], "headers": []}
    for r in recs:
        path = normalize(r["path"], uuids)
        body = normalize(r["json"], uuids)
        key = (r["method"], path)
        item = (r["method"], path, body)
        if key in SYNC:
            out["sync"].append(item)
        elif key in out["queued"]:
            out["queued"][key].append(body)
        elif key == POLL:
            out["polls"].append(r["query"])
        else:
            out["other"].append(item)
        hdr = {h: r["headers"].get(h) for h in SAME_HEADERS}
        out["headers"].append((r["method"], path, hdr))
    return out


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("conformance")
    py = scenario(tmp, "py")
    c = scenario(tmp, "c_")
    return py, c


def test_every_request_succeeded(both):
    for recs, m, _ in both:
        bad = [(r["method"], r["path"], r["status"], r.get("answer")) for r in recs if r["outcome"] != "ok"]
        assert not bad
        assert m.acks == 1
        assert len(m.checkpoints) == 1
        (ck,) = m.checkpoints.values()
        assert ck["state"] == "STATE_DELETED"


def test_synchronous_calls_match_in_order(both):
    (py, _, _), (c, _, _) = both
    a, b = classify(py), classify(c)
    assert [x[:2] for x in a["sync"]] == SYNC
    assert b["sync"] == a["sync"]


def test_queued_reports_match_per_endpoint(both):
    (py, _, _), (c, _, _) = both
    a, b = classify(py), classify(c)
    for k in QUEUED:
        assert b["queued"][k] == a["queued"][k], k
    metrics = a["queued"][("POST", "/api/v1/trials/7/metrics")]
    assert [x["group"] for x in metrics] == ["training", "validation", "inf%er en/ce", "training"]
    assert metrics[0]["metrics"]["metrics"]["avgMetrics"]["nan"] == "NaN"
    # The C scenario wrote these as printf does (-nan, inf, -INF): the master gets Python's strings.
    avg = metrics[0]["metrics"]["metrics"]["avgMetrics"]
    assert (avg["cnan"], avg["cinf"], avg["cninf"]) == ("NaN", "Infinity", "-Infinity")
    assert metrics[0]["metrics"]["trialRunId"] == 2
    assert a["queued"][("POST", "/api/v1/trials/7/progress")] == [
        {"progress": 0.5, "is_raw": True}, {"progress": 0.5, "is_raw": True}]


def test_checkpoint_storage_variable_is_ignored_on_cluster(both, tmp_path_factory):
    (_, _, _), (_, m, r) = both
    assert "DETCORE_CHECKPOINT_STORAGE is ignored on a Determined cluster" in r.stderr
    # The checkpoint went to the experiment's storage (the requests above compare equal), and
    # nothing was written where the variable pointed.
    assert not any(p.name == "elsewhere" for p in tmp_path_factory.getbasetemp().rglob("elsewhere"))


def test_no_other_requests(both):
    (py, _, _), (c, _, _) = both
    assert classify(py)["other"] == []
    assert classify(c)["other"] == []


def test_preemption_polls(both):
    for recs, _, _ in both:
        polls = classify(recs)["polls"]
        assert polls[0] == "timeout_seconds=0"
        assert all(q == "timeout_seconds=60" for q in polls[1:])


def test_checkpoint_body_is_byte_for_byte_equivalent(both):
    (py, _, _), (c, _, _) = both
    def ck(recs):
        (r,) = [r for r in recs if r["method"] == "POST" and r["path"] == "/api/v1/checkpoints"]
        return normalize(r["json"], {})
    a, b = ck(py), ck(c)
    assert a == b
    assert a["resources"] == {"metadata.json": "27", "model.bin": "100", "sub/": "0", "sub/opt.txt": "8"}
    assert a["storageId"] == 1 and a["state"] == "STATE_COMPLETED" and a["training"] == {}


def test_headers(both):
    (py, _, _), (c, _, _) = both
    a, b = classify(py)["headers"], classify(c)["headers"]
    key = lambda h: (h[0], h[1])  # noqa: E731
    first_a, first_b = {}, {}
    for h in a:
        first_a.setdefault(key(h), h[2])
    for h in b:
        first_b.setdefault(key(h), h[2])
    assert first_a.keys() == first_b.keys()
    for k in first_a:
        assert first_b[k] == first_a[k], k
    for _, _, h in b:
        assert h["Grpc-Metadata-x-allocation-token"] == f"Bearer {TOKEN}"
        assert h["Content-Type"] is None and h["Authorization"] is None
    ack = [h for m, p, h in b if p.endswith("/ack_preemption")]
    assert ack and ack[0]["Content-Length"] == "0"


def test_deliberate_differences_are_the_only_ones(both):
    """User-Agent/Accept-Encoding/Connection are the only header names that differ."""
    (py, _, _), (c, _, _) = both
    names = lambda recs: {k.lower() for r in recs for k in r["headers"]}  # noqa: E731
    diff = names(py) ^ names(c)
    assert diff <= {"accept-encoding", "connection"}, diff
    assert set(DELIBERATE_DIFFERENCES) == {
        "queued status and progress", "User-Agent", "Accept-Encoding", "Connection: close on the long poll"}
