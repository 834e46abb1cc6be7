"""A fake Determined master for tests and benchmarks.

An HTTP(S) server on 127.0.0.1 (a free port) that implements the endpoints the Core API uses
(docs/protocol.md#endpoints) with the master's validation rules, records every request, and can be scripted: latency, 5xx
answers, dropped or reset connections, a down period (connections refused), a hang (requests read
and never answered), a preemption signal at a chosen moment — and hostile answers: redirects to
another address (``{"status": 301, "headers": {"Location": ...}}``) and oversized bodies
(``{"status": "huge", "bytes": n, "prefix": ..., "suffix": ...}``: ``prefix``, then ``n`` spaces,
then ``suffix``, streamed; ``"length": false`` sends no Content-Length and closes at the end).

In-process (pytest):

    with FakeMaster() as m:
        m.write_info_dir(tmp_path / "info", storage_host_path=str(tmp_path / "shared"))
        ...
        m.requests()          # every request, in arrival order

As a program (C tests, benchmarks): ``python -m fake_master --info-dir DIR`` prints one JSON line
``{"url": ..., "port": ...}`` and serves until killed; the control endpoints under ``/_fake/``
(not recorded, no auth) script it: ``GET /_fake/requests``, ``POST /_fake/script`` with a JSON
object of FakeMaster.script() keyword arguments, ``POST /_fake/preempt``.
"""
from __future__ import annotations

import json
import math
import re
import socket
import ssl
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional
from urllib.parse import parse_qs, urlsplit

TOKEN = "fake-allocation-token-1234"
AUTH_HEADER = "Grpc-Metadata-x-allocation-token"

# grpc codes of the master's error bodies (master/internal/grpcutil/errors.go).
_CODES = {400: (3, "InvalidArgument"), 401: (16, "Unauthenticated"), 403: (7, "PermissionDenied"),
          404: (5, "NotFound"), 409: (6, "AlreadyExists"), 500: (13, "Internal"),
          503: (14, "Unavailable"), 504: (4, "DeadlineExceeded")}


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def default_experiment_config(storage_host_path: str, searcher_max_length: Any = None) -> Dict[str, Any]:
    """A fully-defaulted-looking experiment config with shared_fs checkpoint storage."""
    return {
        "name": "fake",
        "checkpoint_storage": {
            "type": "shared_fs",
            "host_path": storage_host_path,
            "storage_path": None,
            "container_path": None,
            "propagation": "rprivate",
            "save_experiment_best": 0,
            "save_trial_best": 1,
            "save_trial_latest": 1,
        },
        "searcher": {
            "name": "single",
            "metric": "val_loss",
            "smaller_is_better": True,
            "max_length": searcher_max_length if searcher_max_length is not None else {"batches": 100},
        },
        "data": {"dataset": "fake"},
        "max_restarts": 5,
        "debug": False,
    }


class FakeMaster:
    def __init__(self, *, tls: Optional[tuple] = None, trial_id: int = 7, experiment_id: int = 3,
                 trial_run_id: int = 2, allocation_id: str = "7.abc123.1", task_id: str = "7.abc123",
                 token: str = TOKEN):
        self.tls = tls  # (certfile, keyfile)
        self.trial_id = trial_id
        self.experiment_id = experiment_id
        self.trial_run_id = trial_run_id
        self.allocation_id = allocation_id
        self.task_id = task_id
        self.token = token
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self._records: List[Dict[str, Any]] = []
        self._seq = 0
        # Master state.
        self.metrics: List[Dict[str, Any]] = []  # accepted reports, in order
        self.metric_keys: Dict[tuple, Dict[str, Any]] = {}
        self.batch_steps: set = set()
        self.checkpoints: Dict[str, Dict[str, Any]] = {}
        self.run_metadata: Dict[str, Any] = {}
        self.progress: List[float] = []
        self.statuses: List[str] = []
        self.alerts: List[Dict[str, Any]] = []
        self.trial_source_infos: List[Dict[str, Any]] = []
        self.early_exits: List[str] = []
        self.preempted = False
        self.acks = 0
        self.searcher_metric = "val_loss"
        self.smaller_is_better = True
        # Script.
        self.latency = 0.0
        self.fail_rules: List[Dict[str, Any]] = []
        self.down_until = 0.0
        self.hanging = False
        self.hang_release = threading.Event()
        self.preempt_rules: List[Dict[str, Any]] = []
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._conns: set = set()
        self.port = 0

    # ---- lifecycle ------------------------------------------------------------------------
    def start(self) -> "FakeMaster":
        self._serve(0)
        return self

    def _serve(self, port: int) -> None:
        master = self

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 128

            def get_request(self):
                conn, addr = super().get_request()
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if master.tls:
                    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                    ctx.load_cert_chain(*master.tls)
                    conn = ctx.wrap_socket(conn, server_side=True)
                with master.lock:
                    master._conns.add(conn)
                return conn, addr

            def shutdown_request(self, request):
                with master.lock:
                    master._conns.discard(request)
                super().shutdown_request(request)

            def handle_error(self, request, client_address):
                pass  # dropped connections are part of the scripts

        srv = Server(("127.0.0.1", port), _Handler)
        srv.master = master  # type: ignore[attr-defined]
        self._server = srv
        self.port = srv.server_address[1]
        self._thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True, name="fake-master")
        self._thread.start()

    def _kill_connections(self) -> None:
        with self.lock:
            conns = list(self._conns)
            self._conns.clear()
        for c in conns:
            try:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _stop_listening(self) -> None:
        srv = self._server
        self._server = None
        if srv is not None:
            srv.shutdown()
            srv.server_close()
        self._kill_connections()

    def stop(self) -> None:
        self.hang_release.set()
        with self.cond:
            self._stopping = True  # wakes the long polls
            self.cond.notify_all()
        self._stop_listening()

    def __enter__(self) -> "FakeMaster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    # ---- scripting ------------------------------------------------------------------------
    def script(self, *, latency: Optional[float] = None, fail: Optional[Dict[str, Any]] = None,
               down_for: Optional[float] = None, hang: Optional[bool] = None,
               preempt_on: Optional[Dict[str, Any]] = None, preempt: bool = False) -> None:
        """latency: seconds before every answer. fail: {"count": n, "status": 503 | 301 | "drop" |
        "reset" | "huge", "method": "POST", "path": regex, "body": regex, "headers": {...}} (the
        next n matching requests fail; count -1: until changed; "body" also requires the raw body
        to match; "headers" are added to the answer, e.g. a redirect's Location; "huge" streams an
        oversized answer, see the module docstring). down_for: refuse connections for that many seconds (open connections are
        reset). hang: read requests and never answer (False releases them). preempt_on:
        {"method": ..., "path": regex, "after": n} preempt once n matching requests were answered.
        preempt: preempt now."""
        with self.lock:
            if latency is not None:
                self.latency = float(latency)
            if fail is not None:
                rule = {"count": 1, "status": 500, "method": None, "path": ".*"}
                rule.update(fail)
                rule["re"] = re.compile(rule["path"])
                self.fail_rules.append(rule)
            if hang is not None:
                self.hanging = bool(hang)
                if hang:
                    self.hang_release.clear()
                else:
                    self.hang_release.set()
            if preempt_on is not None:
                rule = {"method": None, "path": ".*", "after": 1}
                rule.update(preempt_on)
                rule["re"] = re.compile(rule["path"])
                self.preempt_rules.append(rule)
        if preempt:
            self.preempt()
        if down_for is not None:
            self.go_down(float(down_for))

    def clear_failures(self) -> None:
        with self.lock:
            self.fail_rules.clear()

    def go_down(self, seconds: float) -> None:
        """Refuse connections for `seconds`, then listen again on the same port."""
        port = self.port
        with self.lock:
            self.down_until = time.monotonic() + seconds
        self._stop_listening()

        def back():
            time.sleep(seconds)
            for _ in range(100):
                try:
                    self._serve(port)
                    return
                except OSError:
                    time.sleep(0.1)

        threading.Thread(target=back, daemon=True).start()

    def preempt(self) -> None:
        with self.cond:
            self.preempted = True
            self.cond.notify_all()

    # ---- records --------------------------------------------------------------------------
    def requests(self) -> List[Dict[str, Any]]:
        """Every request so far, in arrival order (outcome None: not answered yet)."""
        with self.lock:
            return [dict(r) for r in self._records]

    def _record(self, rec: Dict[str, Any]) -> None:
        with self.lock:
            self._seq += 1
            rec["seq"] = self._seq
            self._records.append(rec)

    # ---- info files -----------------------------------------------------------------------
    def write_info_dir(self, path, *, storage_host_path: str, config: Optional[Dict[str, Any]] = None,
                       slot_ids=(0,), latest_checkpoint: Optional[str] = None,
                       steps_completed: int = 0, hparams: Optional[Dict[str, Any]] = None,
                       task_type: str = "TRIAL") -> Dict[str, Any]:
        import os
        os.makedirs(path, exist_ok=True)
        cluster = {
            "master_url": self.url, "cluster_id": "fake-cluster", "agent_id": "agent-1",
            "slot_ids": list(slot_ids), "task_id": self.task_id, "allocation_id": self.allocation_id,
            "session_token": self.token, "task_type": task_type, "master_cert_name": None,
            "master_cert_file": None, "latest_checkpoint": latest_checkpoint,
        }
        cfg = config if config is not None else default_experiment_config(storage_host_path)
        trial = {
            "trial_id": self.trial_id, "experiment_id": self.experiment_id, "trial_seed": 1234,
            "hparams": hparams if hparams is not None else {"lr": 0.01, "layers": 2, "opt": {"name": "sgd"}},
            "config": cfg, "steps_completed": steps_completed, "trial_run_id": self.trial_run_id,
            "debug": False, "inter_node_network_interface": None,
        }
        rdv = {"container_addrs": ["127.0.0.1"], "container_rank": 0, "container_slot_counts": [len(slot_ids)]}
        res = {"gpu_uuids": ["GPU-fake-0"]}
        for name, obj in (("cluster.json", cluster), ("trial.json", trial), ("rendezvous.json", rdv),
                          ("resources.json", res)):
            with open(os.path.join(path, name), "w") as f:
                json.dump(obj, f)
        self.searcher_metric = cfg.get("searcher", {}).get("metric", "val_loss")
        self.smaller_is_better = cfg.get("searcher", {}).get("smaller_is_better", True)
        return {"cluster": cluster, "trial": trial, "rendezvous": rdv, "resources": res}

    # ---- the API --------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: Dict[str, List[str]], body: Any) -> Any:
        tid, eid, aid = self.trial_id, self.experiment_id, self.allocation_id
        m = re.fullmatch(r"/api/v1/trials/(\d+)/(metrics|progress|early_exit|runner/metadata)", path)
        if m and method == "POST":
            if int(m.group(1)) != tid:
                raise ApiError(404, f"trial {m.group(1)} not found")
            return {"metrics": self._metrics, "progress": self._progress, "early_exit": self._early_exit,
                    "runner/metadata": self._runner_metadata}[m.group(2)](body)
        if path == "/info" and method == "GET":
            return {"version": "0.38.1", "master_id": "fake", "cluster_id": "fake-cluster", "cluster_name": "fake"}
        if path == "/api/v1/runs/start" and method == "POST":
            return self._runs_start(body)
        if path == "/api/v1/checkpoints" and method == "POST":
            return self._report_checkpoint(body)
        if path == "/api/v1/checkpoints" and method == "PATCH":
            return self._patch_checkpoints(body)
        m = re.fullmatch(r"/api/v1/checkpoints/([^/]+)", path)
        if m and method == "GET":
            c = self.checkpoints.get(m.group(1))
            if c is None:
                raise ApiError(404, f"checkpoint {m.group(1)} not found")
            return {"checkpoint": c}
        if path == f"/api/v1/experiments/{eid}/searcher/best_searcher_validation_metric" and method == "GET":
            return self._best_validation()
        m = re.fullmatch(r"/api/v1/runs/(\d+)/metadata", path)
        if m:
            if int(m.group(1)) != tid:
                raise ApiError(404, f"run {m.group(1)} not found")
            if method == "GET":
                return {"metadata": self.run_metadata}
            if method == "POST":
                if not isinstance(body, dict) or not isinstance(body.get("metadata"), dict):
                    raise ApiError(400, "metadata must be an object")
                _merge(self.run_metadata, body["metadata"])
                return {"metadata": self.run_metadata}
        if path == "/api/v1/trial-source-info" and method == "POST":
            return self._trial_source_info(body)
        if path == "/api/v1/webhooks/custom" and method == "POST":
            if not isinstance(body, dict) or body.get("experimentId") != eid or not isinstance(body.get("data"), dict):
                raise ApiError(400, "bad webhook event")
            self.alerts.append(body)
            return {}
        m = re.fullmatch(r"/api/v1/allocations/([^/]+)/signals/(preemption|ack_preemption)", path)
        if m:
            if m.group(2) == "preemption" and method == "GET":
                return self._preemption(m.group(1), query)
            if m.group(2) == "ack_preemption" and method == "POST":
                if m.group(1) == aid:
                    self.acks += 1
                return {}
        raise ApiError(404, f"no route for {method} {path}")

    def _trial_source_info(self, body):
        """ReportTrialSourceInfo: links a checkpoint (and model version) to the trial using it."""
        info = body.get("trialSourceInfo") if isinstance(body, dict) else None
        if not isinstance(info, dict) or set(body) != {"trialSourceInfo"}:
            raise ApiError(400, "trialSourceInfo is required")
        uuid, trial = info.get("checkpointUuid"), info.get("trialId")
        if not isinstance(uuid, str) or not _is_int(trial):
            raise ApiError(400, "checkpointUuid (string) and trialId (integer) are required")
        if info.get("trialSourceInfoType") not in ("TRIAL_SOURCE_INFO_TYPE_INFERENCE", "TRIAL_SOURCE_INFO_TYPE_FINE_TUNING"):
            raise ApiError(400, f"bad trialSourceInfoType {info.get('trialSourceInfoType')!r}")
        for k in ("modelId", "modelVersion"):
            if k in info and not _is_int(info[k]):
                raise ApiError(400, f"{k} must be an integer")
        if set(info) - {"checkpointUuid", "trialId", "trialSourceInfoType", "modelId", "modelVersion"}:
            raise ApiError(400, f"unknown fields {sorted(set(info))}")
        if trial != self.trial_id:
            raise ApiError(404, f"trial {trial} not found")
        if uuid not in self.checkpoints:
            raise ApiError(404, f"checkpoint {uuid} not found")
        self.trial_source_infos.append(info)
        return {"checkpointUuid": uuid, "trialId": trial}

    def _runs_start(self, body):
        if not isinstance(body, dict) or body.get("runId") != self.trial_id:
            raise ApiError(400, f"runId must be {self.trial_id}")
        cs = body.get("checkpointStorage")
        if not isinstance(cs, dict) or not isinstance(cs.get("type"), str):
            raise ApiError(400, "checkpointStorage: a config with a type is required")
        return {"storageId": 1}

    def _metrics(self, body):
        if not isinstance(body, dict):
            raise ApiError(400, "body must be an object")
        group = body.get("group")
        if not isinstance(group, str) or not group:
            raise ApiError(400, "metric group must be set")
        if "." in group:
            raise ApiError(400, f"metric group {group!r} cannot contain '.'")
        tm = body.get("metrics")
        if not isinstance(tm, dict):
            raise ApiError(400, "metrics must be set")
        if tm.get("trialId") != self.trial_id:
            raise ApiError(400, "trialId mismatch")
        if tm.get("trialRunId") != self.trial_run_id:
            raise ApiError(400, f"invalid run id, {tm.get('trialRunId')} (reported) != {self.trial_run_id} (expected)")
        steps = tm.get("stepsCompleted")
        if steps is not None and not _is_int(steps):
            raise ApiError(400, "stepsCompleted must be an integer")
        inner = tm.get("metrics")
        if not isinstance(inner, dict) or not isinstance(inner.get("avgMetrics"), dict):
            raise ApiError(400, "metrics.metrics.avgMetrics must be an object")
        avg = inner["avgMetrics"]
        for k in ("epoch", "epochs"):
            if k in avg and not isinstance(avg[k], (int, float)):
                raise ApiError(400, f"{k} must be a number")
        key = (group, steps)
        old = self.metric_keys.get(key)
        if old is not None and steps is not None:
            for k, v in avg.items():
                if k in old and old[k] != v:
                    raise ApiError(400, "overwriting existing metric keys is not supported")
        if inner.get("batchMetrics") is not None and steps is not None:
            if key in self.batch_steps:
                raise ApiError(400, "batch metrics already reported for this step")
            self.batch_steps.add(key)
        if steps is not None:
            self.metric_keys.setdefault(key, {}).update(avg)
        self.metrics.append(body)
        return {}

    def _progress(self, body):
        p = body.get("progress") if isinstance(body, dict) else None
        if not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise ApiError(400, f"bad progress {p!r}")
        self.progress.append(p)
        return {}

    def _runner_metadata(self, body):
        if not isinstance(body, dict) or not isinstance(body.get("state"), str):
            raise ApiError(400, "state must be a string")
        self.statuses.append(body["state"])
        return {}

    def _early_exit(self, body):
        reasons = ("EXITED_REASON_UNSPECIFIED", "EXITED_REASON_INVALID_HP", "EXITED_REASON_INIT_INVALID_HP")
        r = body.get("reason") if isinstance(body, dict) else None
        if r not in reasons:
            raise ApiError(400, f"invalid value for enum type: {json.dumps(r)}")
        if self.early_exits:
            raise ApiError(400, "early exit has already been reported for this trial")
        self.early_exits.append(r)
        return {}

    def _report_checkpoint(self, body):
        if not isinstance(body, dict):
            raise ApiError(400, "body must be an object")
        md = body.get("metadata")
        if not isinstance(md, dict) or not _is_int(md.get("steps_completed")):
            raise ApiError(400, "metadata.steps_completed must be an integer")
        if body.get("state") not in ("STATE_COMPLETED", "STATE_UNSPECIFIED", None):
            raise ApiError(400, f"cannot report a checkpoint in state {body.get('state')}")
        res = body.get("resources")
        if not isinstance(res, dict) or not all(isinstance(v, str) and v.isdigit() for v in res.values()):
            raise ApiError(400, "resources must map names to sizes (int64 as strings)")
        if body.get("taskId") != self.task_id or body.get("allocationId") != self.allocation_id:
            raise ApiError(400, "taskId/allocationId do not match the allocation")
        uuid = body.get("uuid")
        if not isinstance(uuid, str) or not uuid:
            raise ApiError(400, "uuid must be set")
        if uuid in self.checkpoints:
            raise ApiError(409, f"checkpoint {uuid} already exists")
        c = dict(body)
        c["state"] = "STATE_COMPLETED"
        self.checkpoints[uuid] = c
        return {}

    def _patch_checkpoints(self, body):
        cks = body.get("checkpoints") if isinstance(body, dict) else None
        if not isinstance(cks, list):
            raise ApiError(400, "checkpoints must be a list")
        for c in cks:
            u = c.get("uuid")
            if u not in self.checkpoints:
                raise ApiError(404, f"checkpoint {u} not found")
            r = c.get("resources", {}).get("resources")
            if r == {}:
                self.checkpoints[u]["state"] = "STATE_DELETED"
                self.checkpoints[u]["resources"] = {}
        return {}

    def _best_validation(self):
        vals = []
        for m in self.metrics:
            if m["group"] == "validation":
                v = m["metrics"]["metrics"]["avgMetrics"].get(self.searcher_metric)
                if isinstance(v, (int, float)):
                    vals.append(v)
        if not vals:
            raise ApiError(404, "no validation metrics yet")
        return {"metric": min(vals) if self.smaller_is_better else max(vals)}

    def _preemption(self, aid, query):
        if aid != self.allocation_id:
            return {"preempt": False}
        timeout = float(query.get("timeout_seconds", ["0"])[0])
        end = time.monotonic() + timeout
        with self.cond:
            while not self.preempted and not getattr(self, "_stopping", False):
                left = end - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(min(left, 0.5))
            return {"preempt": self.preempted}

    def _after_answer(self, method: str, path: str) -> None:
        with self.cond:
            for rule in self.preempt_rules:
                if rule["method"] not in (None, method) or not rule["re"].fullmatch(path):
                    continue
                rule["after"] -= 1
                if rule["after"] == 0:
                    self.preempted = True
                    self.cond.notify_all()


def _merge(dst, src):
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        else:
            dst[k] = v


def _decode_json(raw: bytes):
    def nonfinite(s):
        return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}[s]

    return json.loads(raw.decode("utf-8"), parse_constant=nonfinite)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-determined-master"

    def log_message(self, *args):
        pass

    def _send(self, status: int, obj: Any, headers: Optional[Dict[str, str]] = None) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        # One write for head and body (no Nagle/delayed-ACK stalls between them).
        self._headers_buffer.append(b"\r\n" + data)
        self.wfile.write(b"".join(self._headers_buffer))
        self._headers_buffer = []
        self.wfile.flush()

    def _send_huge(self, rule: Dict[str, Any]) -> None:
        prefix = rule.get("prefix", "").encode()
        suffix = rule.get("suffix", "").encode()
        n = int(rule.get("bytes", 1 << 20))
        with_length = rule.get("length", True)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if with_length:
            self.send_header("Content-Length", str(len(prefix) + n + len(suffix)))
        else:
            self.send_header("Connection", "close")
        self.end_headers()
        chunk = b" " * (1 << 20)
        try:
            self.wfile.write(prefix)
            left = n
            while left > 0:
                k = min(left, len(chunk))
                self.wfile.write(chunk[:k])
                left -= k
            self.wfile.write(suffix)
            self.wfile.flush()
        except OSError:
            pass  # the client gave up (as it should)
        self.close_connection = True

    def _abort(self, how: str) -> None:
        try:
            if how == "reset":
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.close_connection = True

    def _control(self, method: str, path: str, body: Any) -> None:
        m: FakeMaster = self.server.master  # type: ignore[attr-defined]
        if path == "/_fake/requests" and method == "GET":
            return self._send(200, m.requests())
        if path == "/_fake/state" and method == "GET":
            with m.lock:
                return self._send(200, {"metrics": m.metrics, "checkpoints": m.checkpoints, "acks": m.acks,
                                        "preempted": m.preempted, "progress": m.progress,
                                        "statuses": m.statuses, "alerts": m.alerts})
        if path == "/_fake/script" and method == "POST":
            m.script(**(body or {}))
            return self._send(200, {})
        if path == "/_fake/preempt" and method == "POST":
            m.preempt()
            return self._send(200, {})
        return self._send(404, {"error": "no such control endpoint"})

    def _handle(self) -> None:
        m: FakeMaster = self.server.master  # type: ignore[attr-defined]
        t0 = time.time()
        split = urlsplit(self.path)
        path, query = split.path, parse_qs(split.query)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = None
        if raw:
            try:
                body = _decode_json(raw)
            except Exception:
                body = None
        if path.startswith("/_fake/"):
            return self._control(self.command, path, body)
        rec = {"method": self.command, "path": path, "query": split.query,
               "headers": {k: v for k, v in self.headers.items()}, "raw": raw.decode("utf-8", "replace"),
               "json": body, "time": t0, "outcome": None, "status": None}
        m._record(rec)  # in arrival order; outcome and status are filled in below
        if m.hanging:
            rec["outcome"] = "hung"
            m.hang_release.wait()
            return self._abort("drop")
        rule = None
        with m.lock:
            for r in m.fail_rules:
                if (r["count"] != 0 and r["method"] in (None, self.command) and r["re"].fullmatch(path)
                        and (r.get("body") is None or re.search(r["body"], rec["raw"]))):
                    if r["count"] > 0:
                        r["count"] -= 1
                    rule = r
                    break
        if m.latency > 0:
            time.sleep(m.latency)
        if rule is not None:
            st = rule["status"]
            if st in ("drop", "reset"):
                rec["outcome"] = st
                return self._abort(st)
            if st == "huge":
                rec["outcome"], rec["status"] = "huge", 200
                return self._send_huge(rule)
            rec["outcome"], rec["status"] = "failed", int(st)
            code, reason = _CODES.get(int(st), (2, "Unknown"))
            return self._send(int(st), {"error": {"code": code, "reason": reason, "error": f"scripted {st}"}},
                              rule.get("headers"))
        auth = self.headers.get(AUTH_HEADER)
        if auth != f"Bearer {m.token}" or self.headers.get("Authorization") or self.headers.get("x-user-token"):
            rec["outcome"], rec["status"] = "refused", 401
            return self._send(401, {"error": {"code": 16, "reason": "Unauthenticated", "error": "invalid credentials"}})
        if raw and body is None:
            rec["outcome"], rec["status"] = "refused", 400
            return self._send(400, {"error": {"code": 3, "reason": "InvalidArgument", "error": "bad JSON body"}})
        try:
            with m.lock if not path.endswith("/signals/preemption") else _nolock():
                out = m.handle(self.command, path, query, body)
        except ApiError as e:
            rec["outcome"], rec["status"] = "refused", e.status
            code, reason = _CODES.get(e.status, (2, "Unknown"))
            return self._send(e.status, {"error": {"code": code, "reason": reason, "error": e.message}})
        rec["outcome"], rec["status"] = "ok", 200
        rec["answer"] = out
        self._send(200, out)
        m._after_answer(self.command, path)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle


class _nolock:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False
