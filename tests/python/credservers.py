"""Local servers that speak the cloud platforms' credential protocols, and proxies that check the
credentials of every storage request, for the credential-chain tests. Each runs in threads of the
test process on 127.0.0.1 and a free port.

- `Issuer`: hands out temporary AWS credentials (or Google access tokens) that expire `ttl`
  seconds after they were issued, and remembers them.
- `ImdsServer`: EC2 instance metadata, IMDSv2 (`PUT /latest/api/token` with
  `X-aws-ec2-metadata-token-ttl-seconds`, then GETs carrying `X-aws-ec2-metadata-token`; GETs
  without a valid token get 401, as on an instance that requires IMDSv2).
- `ContainerServer`: ECS / EKS Pod Identity container credentials (`Authorization` checked).
- `StsServer`: STS `AssumeRoleWithWebIdentity` (form POST, XML answer).
- `GceMetadataServer`: the GCE/GKE metadata server (`Metadata-Flavor: Google` required both
  ways; `/computeMetadata/v1/instance/service-accounts/default/token`).
- `OAuthServer`: Google's token endpoint: JWT-bearer grants (the RS256 signature is verified
  with the service account's public key) and refresh-token grants.
- `S3AuthProxy`: in front of moto's server (which accepts any credentials), verifies the SigV4
  query signature of every request with the secret of the temporary credentials it names,
  checks `X-Amz-Security-Token` and refuses expired ones (`400 ExpiredToken`), as S3 does.
- `GcsAuthProxy`: in front of fake-gcs-server (which ignores `Authorization`), refuses every
  request without a valid, unexpired bearer token (`401`), and points resumable-upload sessions
  at itself.

The protocol servers are checked against the reference SDKs (botocore, google-auth) in
test_cloud_credentials.py, so the fakes answer what real clients expect.
"""
from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import http.client
import json
import secrets
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Optional

HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


def iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Issuer:
    """Temporary credentials, each valid for `ttl` seconds from its issue."""

    def __init__(self, prefix: str, ttl: float):
        self.prefix = prefix
        self.ttl = ttl
        self.lock = threading.Lock()
        self.issued: dict = {}  # key (or token) -> dict(secret, token, expires)
        self.order: list = []

    def aws(self) -> dict:
        with self.lock:
            n = len(self.order) + 1
            key = f"{self.prefix}{n:04d}{secrets.token_hex(4).upper()}"
            c = {"key": key, "secret": secrets.token_urlsafe(30), "token": f"sess-{secrets.token_urlsafe(40)}",
                 "expires": time.time() + self.ttl}
            self.issued[key] = c
            self.order.append(key)
            return c

    def google(self) -> dict:
        with self.lock:
            tok = f"ya29.{self.prefix}{len(self.order) + 1}-{secrets.token_urlsafe(24)}"
            c = {"token": tok, "expires": time.time() + self.ttl}
            self.issued[tok] = c
            self.order.append(tok)
            return c

    def get(self, key: str) -> Optional[dict]:
        with self.lock:
            return self.issued.get(key)

    def count(self) -> int:
        with self.lock:
            return len(self.order)


class _Base:
    """A ThreadingHTTPServer whose handler calls `self.handle(req)`; requests are recorded."""

    def __init__(self):
        self.requests: list = []
        self.lock = threading.Lock()
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _any(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                with outer.lock:
                    outer.requests.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                outer.handle(self, body)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.host = f"127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def reply(h, status: int, body: bytes = b"", headers: Optional[dict] = None) -> None:
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    def seen(self) -> list:
        with self.lock:
            return list(self.requests)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _aws_json(c: dict) -> bytes:
    return json.dumps({
        "Code": "Success", "LastUpdated": iso(time.time()), "Type": "AWS-HMAC",
        "AccessKeyId": c["key"], "SecretAccessKey": c["secret"], "Token": c["token"],
        "Expiration": iso(c["expires"]),
    }).encode()


class ImdsServer(_Base):
    ROLE = "detcore-test-role"

    def __init__(self, issuer: Issuer, region: str = "eu-central-1"):
        self.issuer = issuer
        self.region = region
        self.tokens: set = set()
        super().__init__()

    def handle(self, h, body):
        path = h.path
        if h.command == "PUT" and path == "/latest/api/token":
            ttl = h.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
            if not ttl or not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
                return self.reply(h, 400)
            tok = secrets.token_urlsafe(32)
            self.tokens.add(tok)
            return self.reply(h, 200, tok.encode(), {"X-aws-ec2-metadata-token-ttl-seconds": ttl})
        if h.command != "GET":
            return self.reply(h, 405)
        if h.headers.get("X-aws-ec2-metadata-token") not in self.tokens:
            return self.reply(h, 401)
        base = "/latest/meta-data/iam/security-credentials/"
        if path == base:
            return self.reply(h, 200, self.ROLE.encode())
        if path == base + self.ROLE:
            return self.reply(h, 200, _aws_json(self.issuer.aws()))
        if path == "/latest/meta-data/placement/region":
            return self.reply(h, 200, self.region.encode())
        if path == "/latest/meta-data/placement/availability-zone/":
            return self.reply(h, 200, (self.region + "a").encode())
        return self.reply(h, 404)


class ContainerServer(_Base):
    PATH = "/v1/credentials"

    def __init__(self, issuer: Issuer, expected_auth: Callable[[], Optional[str]]):
        self.issuer = issuer
        self.expected_auth = expected_auth
        self.auth_seen: list = []
        super().__init__()

    def handle(self, h, body):
        if h.command != "GET" or h.path != self.PATH:
            return self.reply(h, 404)
        got = h.headers.get("Authorization")
        self.auth_seen.append(got)
        if got != self.expected_auth():
            return self.reply(h, 401, b'{"code":"AccessDeniedException","message":"bad token"}')
        return self.reply(h, 200, _aws_json(self.issuer.aws()), {"Content-Type": "application/json"})


class StsServer(_Base):
    def __init__(self, issuer: Issuer, role_arn: str, expected_jwt: Callable[[], str]):
        self.issuer = issuer
        self.role_arn = role_arn
        self.expected_jwt = expected_jwt
        self.jwts_seen: list = []
        super().__init__()

    def error(self, h, code: str, message: str, status: int = 400):
        body = (f"<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>"
                f"<Code>{code}</Code><Message>{message}</Message></Error><RequestId>r</RequestId></ErrorResponse>")
        return self.reply(h, status, body.encode(), {"Content-Type": "text/xml"})

    def handle(self, h, body):
        if h.command != "POST":
            return self.error(h, "InvalidAction", "POST expected")
        form = dict(urllib.parse.parse_qsl(body.decode()))
        if form.get("Action") != "AssumeRoleWithWebIdentity" or form.get("Version") != "2011-06-15":
            return self.error(h, "InvalidAction", f"unexpected {form.get('Action')} {form.get('Version')}")
        self.jwts_seen.append(form.get("WebIdentityToken"))
        if form.get("RoleArn") != self.role_arn:
            return self.error(h, "AccessDenied", f"Not authorized to perform sts:AssumeRoleWithWebIdentity", 403)
        if not form.get("RoleSessionName"):
            return self.error(h, "ValidationError", "RoleSessionName is required")
        if form.get("WebIdentityToken") != self.expected_jwt():
            return self.error(h, "InvalidIdentityToken", "Incorrect token audience")
        c = self.issuer.aws()
        xml = (
            "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"
            "<AssumeRoleWithWebIdentityResult>"
            "<SubjectFromWebIdentityToken>system:serviceaccount:ns:sa</SubjectFromWebIdentityToken>"
            f"<AssumedRoleUser><Arn>{self.role_arn}/{form['RoleSessionName']}</Arn><AssumedRoleId>AROA:x</AssumedRoleId></AssumedRoleUser>"
            f"<Credentials><AccessKeyId>{c['key']}</AccessKeyId><SecretAccessKey>{c['secret']}</SecretAccessKey>"
            f"<SessionToken>{c['token']}</SessionToken><Expiration>{iso(c['expires'])}</Expiration></Credentials>"
            "<Provider>oidc.eks.amazonaws.com</Provider><Audience>sts.amazonaws.com</Audience>"
            "</AssumeRoleWithWebIdentityResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata>"
            "</AssumeRoleWithWebIdentityResponse>"
        )
        return self.reply(h, 200, xml.encode(), {"Content-Type": "text/xml"})


class GceMetadataServer(_Base):
    EMAIL = "detcore-test@detcore-test.iam.gserviceaccount.com"

    def __init__(self, issuer: Issuer):
        self.issuer = issuer
        super().__init__()

    def handle(self, h, body):
        hdr = {"Metadata-Flavor": "Google", "Content-Type": "application/json"}
        if h.headers.get("Metadata-Flavor") != "Google":
            return self.reply(h, 403, b"Missing Metadata-Flavor:Google header.", {"Metadata-Flavor": "Google"})
        path = urllib.parse.urlsplit(h.path).path
        if path == "/":
            return self.reply(h, 200, b"computeMetadata/\n", hdr)
        sa = "/computeMetadata/v1/instance/service-accounts/default/"
        if path == sa:
            info = {"aliases": ["default"], "email": self.EMAIL,
                    "scopes": ["https://www.googleapis.com/auth/cloud-platform"]}
            return self.reply(h, 200, json.dumps(info).encode(), hdr)
        if path == sa + "email":
            return self.reply(h, 200, self.EMAIL.encode(), {"Metadata-Flavor": "Google"})
        if path == sa + "token":
            c = self.issuer.google()
            ans = {"access_token": c["token"], "expires_in": int(self.issuer.ttl), "token_type": "Bearer"}
            return self.reply(h, 200, json.dumps(ans).encode(), hdr)
        if path == "/computeMetadata/v1/universe/universe-domain":
            return self.reply(h, 200, b"googleapis.com", {"Metadata-Flavor": "Google"})
        if path == "/computeMetadata/v1/project/project-id":
            return self.reply(h, 200, b"detcore-test", {"Metadata-Flavor": "Google"})
        return self.reply(h, 404, b"not found", {"Metadata-Flavor": "Google"})


def _b64d(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class OAuthServer(_Base):
    """`POST /token`: JWT-bearer grants signed by `public_key` (a `cryptography` RSA public key)
    for `email`, and refresh-token grants for (`client_id`, `client_secret`, `refresh_token`)."""

    def __init__(self, issuer: Issuer, public_key=None, email: str = "", user: Optional[tuple] = None):
        self.issuer = issuer
        self.public_key = public_key
        self.email = email
        self.user = user
        self.grants: list = []
        super().__init__()

    def refuse(self, h, error: str, description: str):
        body = json.dumps({"error": error, "error_description": description}).encode()
        return self.reply(h, 400, body, {"Content-Type": "application/json"})

    def handle(self, h, body):
        if h.command != "POST" or urllib.parse.urlsplit(h.path).path != "/token":
            return self.reply(h, 404)
        form = dict(urllib.parse.parse_qsl(body.decode()))
        grant = form.get("grant_type")
        self.grants.append(grant)
        if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            from cryptography.hazmat.primitives import hashes
            from cryptography.hazmat.primitives.asymmetric import padding

            try:
                head, claims, sig = form["assertion"].split(".")
                self.public_key.verify(_b64d(sig), f"{head}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256())
                c = json.loads(_b64d(claims))
            except Exception as e:  # noqa: BLE001 - any defect is a refused grant
                return self.refuse(h, "invalid_grant", f"Invalid JWT Signature: {type(e).__name__}")
            now = time.time()
            # google-auth's audience is Google's endpoint whatever the key's token_uri.
            if c.get("iss") != self.email or c.get("aud") != "https://oauth2.googleapis.com/token":
                return self.refuse(h, "invalid_grant", "Invalid JWT: issuer or audience")
            if not (c.get("iat", 0) - 60 <= now <= c.get("exp", 0)) or "devstorage" not in c.get("scope", ""):
                return self.refuse(h, "invalid_grant", "Invalid JWT: time or scope")
        elif grant == "refresh_token":
            if self.user is None or (form.get("client_id"), form.get("client_secret"), form.get("refresh_token")) != self.user:
                return self.refuse(h, "invalid_grant", "Token has been expired or revoked.")
        else:
            return self.refuse(h, "unsupported_grant_type", str(grant))
        c = self.issuer.google()
        ans = {"access_token": c["token"], "expires_in": int(self.issuer.ttl), "token_type": "Bearer",
               "scope": "https://www.googleapis.com/auth/devstorage.read_write"}
        return self.reply(h, 200, json.dumps(ans).encode(), {"Content-Type": "application/json"})


def _forward(upstream_port: int, h, body: bytes):
    conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=60)
    headers = {k: v for k, v in h.headers.items() if k.lower() not in HOP}
    conn.request(h.command, h.path, body=body if body or h.command in ("PUT", "POST") else None, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp, data


def _relay(h, resp, data, rewrite: Optional[Callable[[str, str], str]] = None):
    h.send_response_only(resp.status, resp.reason)
    for k, v in resp.getheaders():
        if k.lower() in HOP or k.lower() in ("content-length", "date", "server"):
            continue
        h.send_header(k, rewrite(k, v) if rewrite else v)
    length = resp.getheader("Content-Length", "0") if h.command == "HEAD" else str(len(data))
    h.send_header("Content-Length", length)
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(data)


def _quote(s: str) -> str:
    return urllib.parse.quote(s, safe="-_.~")


class S3AuthProxy(_Base):
    """Checks every request's SigV4 query signature (presigned URLs) against the issuer's
    temporary credentials when it arrives, then forwards it to moto; `delay` (after the check)
    slows each request down, as a slow link would."""

    def __init__(self, upstream_port: int, issuer: Issuer, delay: float = 0.0):
        self.upstream_port = upstream_port
        self.issuer = issuer
        self.delay = delay
        self.accepted: list = []  # (method, access key id) of the accepted requests
        self.refused: list = []  # (access key id, code)
        self.anonymous: list = []
        super().__init__()

    def error(self, h, status: int, code: str, message: str, key: str):
        with self.lock:
            # Anonymous requests (detcore's MinIO probe reads only the Server header of the
            # answer to `GET <endpoint>`) are refused as S3 does, but are not signed requests.
            (self.anonymous if code == "AccessDenied" else self.refused).append((key, code))
        body = f"<?xml version=\"1.0\"?><Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()
        return self.reply(h, status, body, {"Content-Type": "application/xml"})

    def check(self, h) -> tuple:
        """(key, None) when the request is authentic, else (key, (status, code, message))."""
        raw_path, _, raw_query = h.path.partition("?")
        pairs = [p.split("=", 1) if "=" in p else [p, ""] for p in raw_query.split("&") if p]
        params = {urllib.parse.unquote(k): urllib.parse.unquote(v) for k, v in pairs}
        if params.get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256":
            return "", (403, "AccessDenied", "Request is not signed with a presigned SigV4 query")
        cred = params.get("X-Amz-Credential", "").split("/")
        if len(cred) != 5 or cred[3] != "s3" or cred[4] != "aws4_request":
            return "", (400, "AuthorizationQueryParametersError", "bad X-Amz-Credential")
        key, day, region = cred[0], cred[1], cred[2]
        c = self.issuer.get(key)
        if c is None:
            return key, (403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.")
        if params.get("X-Amz-Security-Token") != c["token"]:
            return key, (400, "InvalidToken", "The provided token is malformed or otherwise invalid.")
        if time.time() >= c["expires"]:
            return key, (400, "ExpiredToken", "The provided token has expired.")
        signed = params.get("X-Amz-SignedHeaders", "")
        canon_headers = "".join(f"{n}:{(h.headers.get(n) or '').strip()}\n" for n in signed.split(";"))
        query = "&".join(f"{_quote(k)}={_quote(v)}" for k, v in
                         sorted((k, v) for k, v in params.items() if k != "X-Amz-Signature"))
        canonical = "\n".join([h.command, raw_path, query, canon_headers, signed, "UNSIGNED-PAYLOAD"])
        scope = f"{day}/{region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", params.get("X-Amz-Date", ""), scope,
                             hashlib.sha256(canonical.encode()).hexdigest()])
        k = ("AWS4" + c["secret"]).encode()
        for part in (day, region, "s3", "aws4_request"):
            k = hmac.new(k, part.encode(), hashlib.sha256).digest()
        want = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, params.get("X-Amz-Signature", "")):
            return key, (403, "SignatureDoesNotMatch", "The request signature we calculated does not match")
        return key, None

    def handle(self, h, body):
        key, problem = self.check(h)
        if problem:
            return self.error(h, *problem, key)
        with self.lock:
            self.accepted.append((h.command, key))
        if self.delay:
            time.sleep(self.delay)
        resp, data = _forward(self.upstream_port, h, body)
        _relay(h, resp, data)


class GcsAuthProxy(_Base):
    """Refuses every request without a valid, unexpired bearer token from `issuer` (401) when
    it arrives, then (after `delay`) forwards it to fake-gcs-server; resumable-session URLs are
    rewritten to come back here."""

    def __init__(self, upstream_port: int, issuer: Issuer, delay: float = 0.0):
        self.upstream_port = upstream_port
        self.issuer = issuer
        self.delay = delay
        self.accepted: list = []  # (method, token) of the accepted requests
        self.refused: list = []
        super().__init__()

    def handle(self, h, body):
        auth = h.headers.get("Authorization") or ""
        tok = auth[len("Bearer "):] if auth.startswith("Bearer ") else None
        c = self.issuer.get(tok) if tok else None
        if c is None or time.time() >= c["expires"]:
            with self.lock:
                self.refused.append(tok)
            err = {"error": {"code": 401, "message": "Invalid Credentials",
                             "errors": [{"reason": "authError", "message": "Invalid Credentials"}]}}
            return self.reply(h, 401, json.dumps(err).encode(),
                              {"Content-Type": "application/json", "WWW-Authenticate": "Bearer realm=\"x\""})
        with self.lock:
            self.accepted.append((h.command, tok))
        if self.delay:
            time.sleep(self.delay)
        resp, data = _forward(self.upstream_port, h, body)
        up = f"127.0.0.1:{self.upstream_port}"
        _relay(h, resp, data, lambda k, v: v.replace(up, self.host) if k.lower() == "location" else v)
