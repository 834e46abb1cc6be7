"""A small fault-injecting HTTP proxy for the storage tests, run in a thread of the test process.

It forwards every request to an upstream server (keeping the Host header, so that presigned URLs
stay valid) unless a rule matches it first. Rules fire a given number of times, in order:

- `status`: answer `status` with an S3-style error body carrying `code`, without forwarding;
- `reset_request`: read half of the request body, then reset the connection (RST);
- `reset_response`: forward, then send the headers and half of the body, then reset;
- `stall`: wait `seconds` before doing anything (the client's read timeout should fire);
- `server`: forward, but answer with `Server: <value>` (e.g. to look like MinIO);
- `hold`: wait until the rule's `release` event is set (at most 300 s), then forward (a request
  the test keeps in flight for as long as it needs), or with `then="reset"` reset the connection
  instead (the request never reaches the server, e.g. its client was killed meanwhile);
- `forward`: forward (a rule that only counts, e.g. to let the first matching request through);
- `throttle`: forward, reading the request body and writing the answer's at `rate` bytes/s
  (a slow link; `times=-1` for every request).

`log` records (method, path, action) for every request, `ranges` (method, path, Range header or
None) for every request.
"""
from __future__ import annotations

import http.client
import re
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Rule:
    def __init__(self, action, method=None, path=".*", times=1, status=503, code="SlowDown",
                 seconds=5.0, value="MinIO", release=None, then="forward", rate=1 << 20):
        self.action = action
        self.method = method
        self.path = re.compile(path)
        self.times = times
        self.status = status
        self.code = code
        self.seconds = seconds
        self.value = value
        self.release = release if release is not None else threading.Event()
        self.then = then
        self.rate = rate

    def matches(self, method, path):
        return self.times != 0 and (self.method is None or self.method == method) and self.path.search(path)


CHUNK = 64 << 10  # the unit of a throttled transfer
HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


class FaultProxy:
    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.rules: list = []
        self.log: list = []
        self.ranges: list = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _rule(self):
                with proxy.lock:
                    proxy.ranges.append((self.command, self.path, self.headers.get("Range")))
                    for r in proxy.rules:
                        if r.matches(self.command, self.path):
                            if r.times > 0:
                                r.times -= 1
                            proxy.log.append((self.command, self.path, r.action))
                            return r
                    proxy.log.append((self.command, self.path, "forward"))
                return None

            def _reset(self):
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                self.connection.close()

            def _handle(self):
                rule = self._rule()
                n = int(self.headers.get("Content-Length") or 0)
                if rule and rule.action == "hold":
                    rule.release.wait(300)
                    if rule.then == "reset":
                        self._reset()
                        return
                if rule and rule.action == "stall":
                    time.sleep(rule.seconds)
                    self._reset()
                    return
                if rule and rule.action == "reset_request":
                    self.rfile.read(n // 2)
                    self._reset()
                    return
                throttle = rule.rate if rule and rule.action == "throttle" else None
                body = self._read_slowly(n, throttle) if n and throttle else self.rfile.read(n) if n else b""
                if rule and rule.action == "status":
                    payload = (f"<?xml version=\"1.0\"?><Error><Code>{rule.code}</Code>"
                               f"<Message>injected by the test proxy</Message></Error>").encode()
                    self.send_response(rule.status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
                conn.request(self.command, self.path, body=body if n or self.command in ("PUT", "POST") else None,
                             headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                self.send_response_only(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() in HOP or k.lower() in ("content-length", "server", "date"):
                        continue
                    self.send_header(k, v)
                self.send_header("Server", rule.value if rule and rule.action == "server" else "moto")
                length = resp.getheader("Content-Length", "0") if self.command == "HEAD" else str(len(data))
                self.send_header("Content-Length", length)
                self.end_headers()
                if rule and rule.action == "reset_response":
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self._reset()
                    return
                if self.command != "HEAD" and throttle:
                    for i in range(0, len(data), CHUNK):
                        self.wfile.write(data[i:i + CHUNK])
                        self.wfile.flush()
                        time.sleep(len(data[i:i + CHUNK]) / throttle)
                elif self.command != "HEAD":
                    self.wfile.write(data)

            def _read_slowly(self, n, rate):
                parts = []
                while n > 0:
                    chunk = self.rfile.read(min(CHUNK, n))
                    if not chunk:
                        break
                    parts.append(chunk)
                    n -= len(chunk)
                    time.sleep(len(chunk) / rate)
                return b"".join(parts)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add(self, *rules: Rule) -> None:
        with self.lock:
            self.rules.extend(rules)

    def actions(self) -> list:
        with self.lock:
            return [a for (_, _, a) in self.log if a != "forward"]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
