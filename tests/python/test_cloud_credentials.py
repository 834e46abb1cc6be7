"""Cloud credentials as the platforms provide them, through the C ABI (det_core_init with an
s3:// or gs:// storage and nothing but the machine's identity), against local servers that speak
the platforms' protocols (credservers.py) with the endpoints overridden by the SDKs' standard
variables:

- S3 with credentials from EC2 instance metadata (IMDSv2), from a web identity token exchanged
  at STS (EKS IRSA) and from a container endpoint (ECS, EKS Pod Identity), each short-lived and
  renewed in the middle of an upload; the store (a proxy in front of moto) verifies each
  request's SigV4 signature with the temporary secret, its session token and its expiry, so a
  request signed with expired or unknown credentials fails.
- GCS with tokens from the GCE metadata server, a service-account key and gcloud's user
  credentials; a proxy in front of fake-gcs-server refuses every request whose bearer token is
  missing, unknown or expired.
- The SDKs' order between sources, and the error naming every source tried when none works.
- Azure with what Determined's client accepts besides a connection string: an account URL with
  the account key or a SAS (Azurite checks both).

The fake protocol servers are also queried with the reference SDKs (botocore, google-auth) so
they answer what real clients expect, and the checking proxies are shown to refuse bad requests.
"""
from __future__ import annotations

import json
import os
import pathlib
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

import capi
import credservers as cs
import servers
from conftest import ROOT
from manifests import MANIFEST, check_tree

DET_ERR_INVALID_ARGUMENT = 1  # include/detcore.h
DET_ERR_STORAGE = 11

AWS_VARS = [
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT", "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "AWS_EC2_METADATA_V1_DISABLED",
    "AWS_METADATA_SERVICE_TIMEOUT", "AWS_METADATA_SERVICE_NUM_ATTEMPTS", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_STS", "AWS_REGION", "AWS_DEFAULT_REGION",
]
GCP_VARS = ["GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_OAUTH_ACCESS_TOKEN", "GCE_METADATA_HOST", "GCE_METADATA_ROOT",
            "GCE_METADATA_IP", "GCE_METADATA_TIMEOUT", "GCE_METADATA_DETECT_RETRIES", "STORAGE_EMULATOR_HOST"]
KEY_FILE = ROOT / "tests" / "data" / "gcs-test-service-account.json"


@pytest.fixture()
def lib(detcore_lib):
    return capi.load(detcore_lib)


@pytest.fixture()
def env(monkeypatch, tmp_path):
    """Nothing but what each test sets: no keys, no profiles, no metadata servers."""
    for v in AWS_VARS + GCP_VARS:
        monkeypatch.delenv(v, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    return monkeypatch


def files(d: pathlib.Path) -> dict:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


BIG = os.urandom(20 << 20)
SMALL = [os.urandom(512 << 10) for _ in range(10)]


def write_ckpt(d: pathlib.Path) -> None:
    """One file large enough for a multipart (S3) or resumable (GCS) upload and ten small ones:
    about 20 requests, 4 at a time."""
    (d / "weights.bin").write_bytes(BIG)
    (d / "sub").mkdir()
    (d / "sub" / "opt.txt").write_text("momentum")
    for i, b in enumerate(SMALL):
        (d / f"shard-{i}.bin").write_bytes(b)


def round_trip(lib, cfg, tmp_path, write=write_ckpt) -> str:
    """Store a checkpoint, download it, compare, close. The checkpoint's manifest, whose checksums
    are computed from the request bodies as they are sent (retries after a renewal included), is
    checked against the bytes downloaded."""
    core = capi.Core(lib, cfg, tmp_path / "run")
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    write(src)
    want = files(src)
    sid = core.store({"steps_completed": 1}, write)
    dl = tmp_path / f"dl-{sid}"
    core.download(sid, dl)
    got = files(dl)
    check_tree(got, sid)
    got.pop(MANIFEST)
    assert json.loads(got.pop("metadata.json")) == {"steps_completed": 1}
    assert got == want
    core.close()
    return sid


# ---- S3 ---------------------------------------------------------------------------------------


@pytest.fixture()
def bucket(moto_server):
    b = f"c{os.urandom(6).hex()}"
    servers.make_bucket_s3(moto_server.url, b)
    return b


def s3_cfg(bucket, proxy, **kw):
    # Four requests at a time: with the proxy's delay, an upload outlives the credentials.
    return {"type": "s3", "bucket": bucket, "endpoint_url": proxy.url, "prefix": "ck",
            "part_size": 5 << 20, "concurrency": 4, "timeout_seconds": 20, **kw}


def assert_renewed_without_refusal(issuer, proxy):
    """Credentials changed while the checkpoint was being uploaded, and the store never saw
    expired ones (they were renewed ahead of time, not after a refusal)."""
    upload_keys = list(dict.fromkeys(k for m, k in proxy.accepted if m in ("PUT", "POST")))
    assert len(upload_keys) >= 2, f"one set of credentials for the whole upload: {upload_keys}"
    assert proxy.refused == [], f"requests went out with expired credentials: {proxy.refused}"
    assert set(upload_keys) <= set(issuer.order)


def test_s3_proxy_refuses_bad_signatures_and_expired_tokens(moto_server, bucket):
    """The checking proxy is a real check: botocore's own presigned URLs pass it; a wrong
    secret, a missing session token or expired credentials do not."""
    import boto3
    from botocore.config import Config

    issuer = cs.Issuer("ASIACHK", ttl=60)
    proxy = cs.S3AuthProxy(moto_server.port, issuer)
    try:
        def status(key, secret, token):
            s3 = boto3.client("s3", endpoint_url=proxy.url, region_name="us-east-1", aws_access_key_id=key,
                              aws_secret_access_key=secret, aws_session_token=token,
                              config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
            url = s3.generate_presigned_url("list_objects_v2", Params={"Bucket": bucket}, ExpiresIn=60)
            try:
                return urllib.request.urlopen(url).status, ""
            except urllib.error.HTTPError as e:
                return e.code, e.read().decode()

        c = issuer.aws()
        assert status(c["key"], c["secret"], c["token"]) == (200, "")
        code, body = status(c["key"], "wrong" + c["secret"], c["token"])
        assert code == 403 and "SignatureDoesNotMatch" in body
        code, body = status(c["key"], c["secret"], None)
        assert code == 400 and "InvalidToken" in body
        code, body = status("AKIAUNKNOWN", "x", None)
        assert code == 403 and "InvalidAccessKeyId" in body
        short = cs.Issuer("ASIAOLD", ttl=0.2)
        proxy.issuer = short
        c = short.aws()
        time.sleep(0.3)
        code, body = status(c["key"], c["secret"], c["token"])
        assert code == 400 and "ExpiredToken" in body
    finally:
        proxy.stop()


def test_imds_credentials_renewed_during_upload(lib, env, moto_server, bucket, tmp_path):
    """EC2 instance profile through IMDSv2 (AWS_EC2_METADATA_SERVICE_ENDPOINT): credentials that
    live 2 s are renewed before they expire, in the middle of the upload."""
    issuer = cs.Issuer("ASIAIMDS", ttl=2)
    imds = cs.ImdsServer(issuer)
    proxy = cs.S3AuthProxy(moto_server.port, issuer, delay=0.4)
    try:
        # The fake speaks IMDSv2 as botocore expects it.
        from botocore.utils import InstanceMetadataFetcher

        env.delenv("AWS_EC2_METADATA_DISABLED")
        got = InstanceMetadataFetcher(timeout=2, num_attempts=1, base_url=imds.url + "/").retrieve_iam_role_credentials()
        assert got["access_key"].startswith("ASIAIMDS") and got["role_name"] == cs.ImdsServer.ROLE

        env.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.url)
        round_trip(lib, s3_cfg(bucket, proxy), tmp_path)
        assert_renewed_without_refusal(issuer, proxy)
        for method, path, headers, _ in imds.seen():
            if method == "GET":
                assert "x-aws-ec2-metadata-token" in headers, (method, path)
            else:
                assert (method, path) == ("PUT", "/latest/api/token")
                assert headers.get("x-aws-ec2-metadata-token-ttl-seconds") == "21600"
    finally:
        proxy.stop()
        imds.stop()


def test_web_identity_credentials_renewed_with_the_rotated_token(lib, env, moto_server, bucket, tmp_path):
    """EKS IRSA: AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN exchanged at STS
    (AWS_ENDPOINT_URL_STS); the token file, rotated by the kubelet, is read at each renewal."""
    issuer = cs.Issuer("ASIASTS", ttl=2)
    role = "arn:aws:iam::123456789012:role/detcore-irsa"
    jwt = {"now": "eyJhbGciOiJSUzI1NiJ9.first.sig"}
    sts = cs.StsServer(issuer, role, lambda: jwt["now"])
    proxy = cs.S3AuthProxy(moto_server.port, issuer, delay=0.4)
    token_file = tmp_path / "eks.amazonaws.com" / "token"
    token_file.parent.mkdir()
    token_file.write_text(jwt["now"])
    try:
        import boto3

        got = boto3.client("sts", endpoint_url=sts.url, region_name="us-east-1", aws_access_key_id="x",
                           aws_secret_access_key="y").assume_role_with_web_identity(
            RoleArn=role, RoleSessionName="botocore", WebIdentityToken=jwt["now"])
        assert got["Credentials"]["AccessKeyId"].startswith("ASIASTS")

        env.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token_file))
        env.setenv("AWS_ROLE_ARN", role)
        env.setenv("AWS_ROLE_SESSION_NAME", "detcore-test")
        env.setenv("AWS_ENDPOINT_URL_STS", sts.url)
        core = capi.Core(lib, s3_cfg(bucket, proxy), tmp_path / "run")
        jwt["now"] = "eyJhbGciOiJSUzI1NiJ9.second.sig"
        token_file.write_text(jwt["now"])
        sid = core.store({"steps_completed": 1}, write_ckpt)
        core.download(sid, tmp_path / "dl")
        assert (tmp_path / "dl" / "weights.bin").read_bytes() == BIG
        core.close()
        assert_renewed_without_refusal(issuer, proxy)
        assert sts.jwts_seen[1] == "eyJhbGciOiJSUzI1NiJ9.first.sig"
        assert sts.jwts_seen[2:] and set(sts.jwts_seen[2:]) == {jwt["now"]}
        forms = [dict(urllib.parse.parse_qsl(b.decode())) for m, _, _, b in sts.seen()[1:]]
        assert {f["RoleSessionName"] for f in forms} == {"detcore-test"}
    finally:
        proxy.stop()
        sts.stop()


def test_container_credentials_with_an_authorization_token_file(lib, env, moto_server, bucket, tmp_path):
    """ECS / EKS Pod Identity: AWS_CONTAINER_CREDENTIALS_FULL_URI with
    AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE, renewed during the upload."""
    issuer = cs.Issuer("ASIAECS", ttl=2)
    tok = tmp_path / "pod-identity-token"
    tok.write_text("pod-token-1")
    container = cs.ContainerServer(issuer, lambda: tok.read_text().strip())
    proxy = cs.S3AuthProxy(moto_server.port, issuer, delay=0.4)
    try:
        from botocore.utils import ContainerMetadataFetcher

        got = ContainerMetadataFetcher().retrieve_full_uri(container.url + container.PATH,
                                                            headers={"Authorization": "pod-token-1"})
        assert got["AccessKeyId"].startswith("ASIAECS")

        env.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", container.url + container.PATH)
        env.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", str(tok))
        round_trip(lib, s3_cfg(bucket, proxy), tmp_path)
        assert_renewed_without_refusal(issuer, proxy)
        assert set(container.auth_seen) == {"pod-token-1"}
    finally:
        proxy.stop()
        container.stop()


def test_revoked_credentials_are_renewed_and_the_request_retried(lib, env, moto_server, bucket, tmp_path):
    """Credentials refused by the store before their announced expiry (revoked, or a clock
    that runs ahead): `ExpiredToken` renews them and the request is sent again."""
    issuer = cs.Issuer("ASIAREV", ttl=3600)
    imds = cs.ImdsServer(issuer)
    proxy = cs.S3AuthProxy(moto_server.port, issuer)
    try:
        env.delenv("AWS_EC2_METADATA_DISABLED")
        env.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.url)
        core = capi.Core(lib, s3_cfg(bucket, proxy), tmp_path / "run")
        first = issuer.order[0]
        issuer.issued[first]["expires"] = time.time() - 1  # revoked
        proxy.accepted.clear()
        sid = core.store({"steps_completed": 1}, lambda d: (d / "w.bin").write_bytes(b"w" * 1000))
        assert core.metadata(sid) == {"steps_completed": 1}
        core.close()
        assert proxy.refused[:1] == [(first, "ExpiredToken")], proxy.refused
        assert len(issuer.order) == 2 and {k for _, k in proxy.accepted} == {issuer.order[1]}
    finally:
        proxy.stop()
        imds.stop()


def test_chain_order(lib, env, moto_server, bucket, tmp_path):
    """Every source configured at once: the one botocore would pick wins and the later ones are
    not even asked; removing it hands over to the next."""
    issuer = cs.Issuer("ASIAORD", ttl=3600)
    imds = cs.ImdsServer(issuer)
    container = cs.ContainerServer(issuer, lambda: None)
    role = "arn:aws:iam::123456789012:role/r"
    sts = cs.StsServer(issuer, role, lambda: "jwt")
    proxy = cs.S3AuthProxy(moto_server.port, issuer)
    static = {}
    for name in ("ENV", "FILE", "CONFIG"):
        static[name] = f"AKIA{name}"
        issuer.issued[f"AKIA{name}"] = {"secret": f"{name.lower()}-secret", "token": None, "expires": time.time() + 3600}
    (tmp_path / "jwt").write_text("jwt")
    (tmp_path / "credentials").write_text("[work]\naws_access_key_id = AKIAFILE\naws_secret_access_key = file-secret\n")
    (tmp_path / "config").write_text("[profile work]\naws_access_key_id = AKIACONFIG\naws_secret_access_key = config-secret\n")
    try:
        env.delenv("AWS_EC2_METADATA_DISABLED")
        for k, v in {
            "AWS_ACCESS_KEY_ID": "AKIAENV", "AWS_SECRET_ACCESS_KEY": "env-secret",
            "AWS_WEB_IDENTITY_TOKEN_FILE": str(tmp_path / "jwt"), "AWS_ROLE_ARN": role, "AWS_ENDPOINT_URL_STS": sts.url,
            "AWS_PROFILE": "work", "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"),
            "AWS_CONFIG_FILE": str(tmp_path / "config"),
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": container.url + container.PATH,
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url,
        }.items():
            env.setenv(k, v)

        def used(step: str) -> str:
            proxy.accepted.clear()
            core = capi.Core(lib, s3_cfg(bucket, proxy), tmp_path / f"run-{step}")
            core.store({"steps_completed": 1}, lambda d: (d / "x").write_text(step))
            core.close()
            (key,) = {k for _, k in proxy.accepted}
            return key

        assert used("env") == "AKIAENV"
        assert (sts.seen(), container.seen(), imds.seen()) == ([], [], [])
        env.delenv("AWS_ACCESS_KEY_ID")
        env.delenv("AWS_SECRET_ACCESS_KEY")
        assert used("web") == issuer.order[0]
        assert (len(sts.seen()), container.seen(), imds.seen()) == (1, [], [])
        env.delenv("AWS_WEB_IDENTITY_TOKEN_FILE")
        assert used("file") == "AKIAFILE"
        env.delenv("AWS_SHARED_CREDENTIALS_FILE")
        assert used("config") == "AKIACONFIG"
        env.delenv("AWS_PROFILE")
        assert used("container") == issuer.order[1]
        assert (len(container.seen()), imds.seen()) == (1, [])
        env.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        assert used("imds") == issuer.order[2]
    finally:
        for s in (proxy, imds, container, sts):
            s.stop()


def test_no_credentials_names_every_source(lib, env, tmp_path):
    env.delenv("AWS_EC2_METADATA_DISABLED")
    env.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", f"http://127.0.0.1:{servers.free_port()}")
    with pytest.raises(capi.DetError) as e:
        capi.Core(lib, "s3://some-bucket/ck", tmp_path / "run")
    m = e.value.message
    assert e.value.status == DET_ERR_INVALID_ARGUMENT, m
    home = os.environ["HOME"]
    for part in ["no credentials found", "access_key/secret_key of the storage config: not set",
                 "environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY): not set",
                 "web identity (AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN): not set",
                 f"shared credentials file {home}/.aws/credentials [default]: no such file",
                 f"config file {home}/.aws/config [profile default]: no such file",
                 "container credentials (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or _FULL_URI): not set",
                 "EC2 instance metadata at http://127.0.0.1:"]:
        assert part in m, f"{part!r} not in {m}"

    env.delenv("NO_GCE_CHECK")
    env.setenv("GCE_METADATA_HOST", f"127.0.0.1:{servers.free_port()}")
    with pytest.raises(capi.DetError) as e:
        capi.Core(lib, "gs://some-bucket/ck", tmp_path / "run")
    m = e.value.message
    assert e.value.status == DET_ERR_INVALID_ARGUMENT, m
    for part in ["no credentials found", "GOOGLE_OAUTH_ACCESS_TOKEN: not set", "GOOGLE_APPLICATION_CREDENTIALS: not set",
                 "gcloud application-default credentials", "GCE metadata server: GET http://127.0.0.1:"]:
        assert part in m, f"{part!r} not in {m}"


def test_a_configured_source_that_fails_is_an_error(lib, env, tmp_path):
    """A web identity STS refuses, or a container endpoint that is down: the error names the
    source and its answer; the chain does not fall through to instance metadata."""
    issuer = cs.Issuer("ASIAX", ttl=3600)
    sts = cs.StsServer(issuer, "arn:aws:iam::1:role/r", lambda: "expected")
    (tmp_path / "jwt").write_text("stale-token")
    try:
        env.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(tmp_path / "jwt"))
        env.setenv("AWS_ROLE_ARN", "arn:aws:iam::1:role/r")
        env.setenv("AWS_ENDPOINT_URL_STS", sts.url)
        with pytest.raises(capi.DetError) as e:
            capi.Core(lib, "s3://b/ck", tmp_path / "run")
        assert e.value.status == DET_ERR_STORAGE, e.value
        assert "AssumeRoleWithWebIdentity: HTTP 400 InvalidIdentityToken" in e.value.message
        assert "stale-token" not in e.value.message
        for v in ("AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"):
            env.delenv(v)
        env.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", f"http://127.0.0.1:{servers.free_port()}/creds")
        with pytest.raises(capi.DetError) as e:
            capi.Core(lib, "s3://b/ck", tmp_path / "run")
        assert e.value.status == DET_ERR_STORAGE and "container credentials at http://127.0.0.1" in e.value.message
    finally:
        sts.stop()


# ---- GCS --------------------------------------------------------------------------------------


@pytest.fixture()
def gcs_bucket(gcs_server):
    b = f"c{os.urandom(6).hex()}"
    servers.make_bucket_gcs(gcs_server.url, b)
    return b


def gcs_cfg(bucket):
    return {"type": "gcs", "bucket": bucket, "prefix": "ck", "part_size": 5 << 20, "concurrency": 4,
            "timeout_seconds": 20}


def test_gcs_proxy_refuses_missing_and_expired_tokens(gcs_server, gcs_bucket):
    issuer = cs.Issuer("chk", ttl=0.3)
    proxy = cs.GcsAuthProxy(gcs_server.port, issuer)
    try:
        def status(tok):
            req = urllib.request.Request(f"{proxy.url}/storage/v1/b/{gcs_bucket}/o",
                                         headers={"Authorization": f"Bearer {tok}"} if tok else {})
            try:
                return urllib.request.urlopen(req).status
            except urllib.error.HTTPError as e:
                return e.code

        tok = issuer.google()["token"]
        assert status(tok) == 200
        assert status(None) == 401
        assert status("ya29.forged") == 401
        time.sleep(0.4)
        assert status(tok) == 401
    finally:
        proxy.stop()


def test_gce_metadata_tokens_renewed_during_upload(lib, env, gcs_server, gcs_bucket, tmp_path):
    """GCE / GKE Workload Identity: tokens from the metadata server (GCE_METADATA_HOST), living
    2 s, renewed during a resumable upload that the checking proxy sees entirely."""
    issuer = cs.Issuer("meta", ttl=2)
    md = cs.GceMetadataServer(issuer)
    proxy = cs.GcsAuthProxy(gcs_server.port, issuer, delay=0.4)
    try:
        # The fake answers google-auth's own detection and token requests.
        import google.auth.compute_engine
        import google.auth.transport.requests
        from google.auth.compute_engine import _metadata

        env.setenv("GCE_METADATA_IP", md.host)
        env.setattr(_metadata, "_GCE_METADATA_HOST", md.host)
        req = google.auth.transport.requests.Request()
        assert _metadata.ping(req)
        c = google.auth.compute_engine.Credentials()
        c.refresh(req)
        assert c.token.startswith("ya29.meta")
        env.delenv("GCE_METADATA_IP")

        env.delenv("NO_GCE_CHECK")
        env.setenv("GCE_METADATA_HOST", md.host)
        env.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        round_trip(lib, gcs_cfg(gcs_bucket), tmp_path)
        toks = list(dict.fromkeys(t for m, t in proxy.accepted if m in ("PUT", "POST")))
        assert len(toks) >= 2, f"one token for the whole upload: {toks}"
        assert proxy.refused == [], proxy.refused
        chunks = [p for m, p, _, _ in proxy.seen() if m == "PUT" and "upload_id=" in p]
        assert len(chunks) >= 4, "the resumable session's chunks went through the checking proxy"
    finally:
        proxy.stop()
        md.stop()


def _public_key():
    from cryptography.hazmat.primitives import serialization

    key = json.loads(KEY_FILE.read_text())
    return serialization.load_pem_private_key(key["private_key"].encode(), None).public_key(), key


def test_service_account_key_and_gcloud_user_credentials(lib, env, gcs_server, gcs_bucket, tmp_path):
    """GOOGLE_APPLICATION_CREDENTIALS with a service-account key (an RS256 JWT exchanged at the
    key's token_uri, signature checked), then gcloud's application-default `authorized_user`
    file (its refresh token exchanged)."""
    pub, key = _public_key()
    issuer = cs.Issuer("oauth", ttl=3600)
    user = ("cid.apps.googleusercontent.com", "client-secret", "1//refresh-token")
    oauth = cs.OAuthServer(issuer, pub, key["client_email"], user)
    proxy = cs.GcsAuthProxy(gcs_server.port, issuer)
    sa_file = tmp_path / "sa.json"
    sa_file.write_text(json.dumps({**key, "token_uri": f"{oauth.url}/token"}))
    gcloud = tmp_path / "gcloud"
    gcloud.mkdir()
    adc = {"type": "authorized_user", "client_id": user[0], "client_secret": user[1], "refresh_token": user[2],
           "token_uri": f"{oauth.url}/token"}
    (gcloud / "application_default_credentials.json").write_text(json.dumps(adc))
    try:
        import google.auth.transport.requests
        import google.oauth2.credentials
        import google.oauth2.service_account

        req = google.auth.transport.requests.Request()
        c = google.oauth2.service_account.Credentials.from_service_account_file(
            str(sa_file), scopes=["https://www.googleapis.com/auth/devstorage.read_write"])
        c.refresh(req)
        assert c.token.startswith("ya29.oauth")
        u = google.oauth2.credentials.Credentials(None, refresh_token=user[2], client_id=user[0],
                                                  client_secret=user[1], token_uri=f"{oauth.url}/token")
        u.refresh(req)
        assert u.token.startswith("ya29.oauth")

        env.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        env.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(sa_file))
        small = lambda d: (d / "w.bin").write_bytes(b"weights")  # noqa: E731
        round_trip(lib, gcs_cfg(gcs_bucket), tmp_path / "sa", write=small)
        env.delenv("GOOGLE_APPLICATION_CREDENTIALS")
        env.setenv("CLOUDSDK_CONFIG", str(gcloud))
        round_trip(lib, gcs_cfg(gcs_bucket), tmp_path / "user", write=small)
        assert oauth.grants[2:] == ["urn:ietf:params:oauth:grant-type:jwt-bearer", "refresh_token"]
        assert proxy.refused == [] and len({t for _, t in proxy.accepted}) == 2
    finally:
        proxy.stop()
        oauth.stop()


# ---- Azure ------------------------------------------------------------------------------------


def test_azure_account_url_with_key_or_sas(lib, env, azurite_server, tmp_path):
    """Determined's Azure storage takes `account_url` with `credential` (the account key or a
    SAS token) besides a connection string; Azurite checks the SharedKey signature and the SAS."""
    import datetime

    from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas

    account_url = f"{azurite_server.url}/{servers.AZURITE_ACCOUNT}"
    small = lambda d: (d / "w.bin").write_bytes(b"weights")  # noqa: E731
    base = {"type": "azure", "account_url": account_url, "timeout_seconds": 20}
    round_trip(lib, {**base, "container": "keyed", "credential": servers.AZURITE_KEY}, tmp_path / "k", write=small)
    sas = generate_account_sas(
        servers.AZURITE_ACCOUNT, servers.AZURITE_KEY,
        resource_types=ResourceTypes(service=True, container=True, object=True),
        permission=AccountSasPermissions(read=True, write=True, delete=True, list=True, create=True, add=True),
        expiry=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1))
    round_trip(lib, {**base, "container": "sassed", "credential": sas}, tmp_path / "s", write=small)
    round_trip(lib, {**base, "container": "sassed", "account_url": f"{account_url}?{sas}"}, tmp_path / "q", write=small)
    # A wrong key is refused by the service, with the storage error and a hint.
    with pytest.raises(capi.DetError) as e:
        round_trip(lib, {**base, "container": "keyed", "credential": servers.AZURITE_KEY[:-4] + "AAA="},
                   tmp_path / "bad", write=small)
    assert e.value.status == DET_ERR_STORAGE and "HTTP 403" in e.value.message, e.value
