//! Amazon S3 and S3-compatible stores: requests presigned with SigV4 by rusty-s3, sent by ureq.
//!
//! - Endpoint: `endpoint_url` (path-style URLs, for MinIO, Ceph, moto, s3s …), else
//!   `AWS_ENDPOINT_URL_S3`/`AWS_ENDPOINT_URL`, else `https://s3.<region>.amazonaws.com` with
//!   virtual-host URLs (path-style for bucket names with dots).
//! - Region and credentials: the AWS SDKs' default chains (config, environment, profiles, web
//!   identity, container credentials, EC2 instance metadata), resolved and renewed by
//!   [`super::aws_credentials`]. Session tokens are signed into every request
//!   (`X-Amz-Security-Token`). A request refused with `ExpiredToken` (or `InvalidToken`,
//!   `TokenRefreshRequired`) renews expiring credentials and is tried again.
//! - Uploads: a PUT per small file; above `part_size`, a multipart upload whose parts go up in
//!   parallel with those of the other files, aborted on failure. Downloads: parallel ranged GETs.
//!   Delete: `DeleteObjects` in chunks of 1000.
//! - MinIO (docs/protocol.md#object-store-details): with a custom endpoint, an anonymous
//!   `GET <endpoint>` answered with `Server: MinIO` disables folder marker objects. detcore probes
//!   once, when the first marker would be written (Python probes in its constructor and crashes
//!   when the endpoint is unreachable).

use super::aws_credentials::{self, CredentialProvider};
use super::config::S3Config;
use super::credentials::Env;
use super::http::{self, Body, Failure, Flavor, Http, Request};
use super::object_store::{ObjectInfo, ObjectStore};
use super::tuning::Tuning;
use super::xml;
use crate::error::Result;
use base64::Engine as _;
use md5::Digest as _;
use rusty_s3::{Bucket, Method, UrlStyle};
use std::sync::OnceLock;

/// The S3 backend.
pub struct S3Store {
    http: Http,
    bucket: Bucket,
    creds: CredentialProvider,
    endpoint: Option<String>,
    minio: OnceLock<bool>,
}

const PRESIGN_SECONDS: u64 = 3600;

impl S3Store {
    /// Connect to the bucket of `cfg`, resolving the credentials and the region (credential
    /// and metadata endpoints may be asked; no storage request is made).
    pub fn new(cfg: &S3Config, tuning: Tuning) -> Result<S3Store> {
        S3Store::with_env(cfg, tuning, &Env::process())
    }

    /// [`S3Store::new`] with the environment `env`.
    pub fn with_env(cfg: &S3Config, tuning: Tuning, env: &Env) -> Result<S3Store> {
        if cfg.bucket.is_empty() {
            bail!(InvalidArgument, "checkpoint_storage (s3): bucket is empty");
        }
        let endpoint = cfg
            .endpoint_url
            .clone()
            .or_else(|| env.get("AWS_ENDPOINT_URL_S3"))
            .or_else(|| env.get("AWS_ENDPOINT_URL"));
        let aws = aws_credentials::setup(cfg, env, endpoint.is_some(), tuning.timeout)?;
        let region = aws.region;
        let (url, style) = match &endpoint {
            Some(e) => (e.clone(), UrlStyle::Path),
            None => (
                format!("https://s3.{region}.amazonaws.com"),
                if cfg.bucket.contains('.') {
                    UrlStyle::Path
                } else {
                    UrlStyle::VirtualHost
                },
            ),
        };
        let parsed = url::Url::parse(&url).map_err(|e| {
            err!(
                InvalidArgument,
                "checkpoint_storage (s3): endpoint_url {url:?} is not a URL: {e}"
            )
        })?;
        let bucket = Bucket::new(parsed, style, cfg.bucket.clone(), region).map_err(|e| {
            err!(
                InvalidArgument,
                "checkpoint_storage (s3): cannot address bucket {:?} at {url:?}: {e:?}",
                cfg.bucket
            )
        })?;
        Ok(S3Store {
            http: Http::new(Flavor::S3, tuning),
            bucket,
            creds: aws.credentials,
            endpoint,
            minio: OnceLock::new(),
        })
    }

    /// The region requests are signed for.
    pub fn region(&self) -> &str {
        self.bucket.region()
    }

    fn presign(
        &self,
        method: Method,
        url: url::Url,
        query: &[(&str, &str)],
    ) -> std::result::Result<String, Failure> {
        let c = self.creds.get().map_err(Failure::transient)?;
        Ok(rusty_s3::signing::sign(
            &jiff::Timestamp::now(),
            method,
            url,
            &c.key,
            &c.secret,
            c.token.as_deref(),
            self.bucket.region(),
            PRESIGN_SECONDS,
            query.iter().copied(),
            std::iter::empty(),
        )
        .to_string())
    }

    fn object(
        &self,
        method: Method,
        key: &str,
        query: &[(&str, &str)],
    ) -> std::result::Result<String, Failure> {
        self.presign(method, self.bucket.object_url(key), query)
    }

    fn bucket_req(
        &self,
        method: Method,
        query: &[(&str, &str)],
    ) -> std::result::Result<String, Failure> {
        self.presign(method, self.bucket.base_url().clone(), query)
    }

    /// Send one attempt; expired or revoked temporary credentials are renewed and the attempt
    /// is retryable.
    fn send(
        &self,
        req: &Request,
        body: Body<'_>,
        what: &str,
    ) -> std::result::Result<ureq::Response, Failure> {
        match self.http.send(req, body, what) {
            Err(mut f)
                if matches!(
                    f.code.as_deref(),
                    Some("ExpiredToken" | "InvalidToken" | "TokenRefreshRequired")
                ) =>
            {
                if aws_credentials::presigned_key(&req.url).is_some_and(|k| self.creds.refused(&k))
                {
                    f.retryable = true;
                } else {
                    f.error = crate::error::Error::new(
                        f.error.kind(),
                        format!(
                            "{} (the credentials come from {}, which cannot renew them)",
                            f.error.message(),
                            self.creds.describe()
                        ),
                    );
                }
                Err(f)
            }
            r => r,
        }
    }

    fn list_page(
        &self,
        prefix: &str,
        token: Option<&str>,
    ) -> Result<(Vec<ObjectInfo>, Option<String>)> {
        let what = format!("{} (listing)", self.url(prefix));
        let body = self.http.retry(|_| {
            let mut q: Vec<(&str, &str)> = Vec::new();
            if let Some(t) = token {
                q.push(("continuation-token", t));
            }
            q.push(("list-type", "2"));
            q.push(("prefix", prefix));
            let req = Request::new("GET", self.bucket_req(Method::Get, &q)?);
            let resp = self.send(&req, Body::Empty, &what)?;
            http::read_body(resp, 64 << 20, &what)
        })?;
        let doc = xml::parse(&String::from_utf8_lossy(&body)).map_err(|e| e.context(&what))?;
        let mut out = Vec::new();
        for c in doc.children_named("Contents") {
            let key = c.child_text("Key").unwrap_or_default();
            let size = c
                .child_text("Size")
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| err!(Storage, "{what}: object {key:?} has no valid Size"))?;
            out.push(ObjectInfo { key, size });
        }
        let truncated = doc.child_text("IsTruncated").as_deref() == Some("true");
        let next = doc
            .child_text("NextContinuationToken")
            .filter(|t| !t.is_empty());
        Ok((out, if truncated { next } else { None }))
    }

    fn delete_chunk(&self, keys: &[String]) -> Result<()> {
        let mut body =
            String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Delete><Quiet>true</Quiet>");
        for k in keys {
            body.push_str("<Object><Key>");
            body.push_str(&xml::escape(k));
            body.push_str("</Key></Object>");
        }
        body.push_str("</Delete>");
        let md5 =
            base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body.as_bytes()));
        let what = format!("{} (DeleteObjects of {} keys)", self.url(""), keys.len());
        let answer = self.http.retry(|_| {
            let req = Request::new("POST", self.bucket_req(Method::Post, &[("delete", "")])?)
                .header("Content-MD5", md5.clone())
                .header("Content-Type", "application/xml");
            let resp = self.send(&req, Body::Bytes(body.as_bytes()), &what)?;
            http::read_body(resp, 16 << 20, &what)
        })?;
        let doc = xml::parse(&String::from_utf8_lossy(&answer)).map_err(|e| e.context(&what))?;
        if let Some(e) = doc.children_named("Error").next() {
            bail!(
                Storage,
                "s3: DeleteObjects {}: {} {}",
                self.url(&e.child_text("Key").unwrap_or_default()),
                e.child_text("Code").unwrap_or_default(),
                e.child_text("Message").unwrap_or_default()
            );
        }
        Ok(())
    }
}

impl ObjectStore for S3Store {
    fn name(&self) -> &'static str {
        "s3"
    }

    fn url(&self, key: &str) -> String {
        if key.is_empty() {
            format!("s3://{}", self.bucket.name())
        } else {
            format!("s3://{}/{key}", self.bucket.name())
        }
    }

    fn http(&self) -> &Http {
        &self.http
    }

    fn put(&self, key: &str, body: Body<'_>) -> Result<()> {
        let what = self.url(key);
        self.http.retry(|_| {
            let req = Request::new("PUT", self.object(Method::Put, key, &[])?);
            let resp = self.send(&req, body, &what)?;
            http::read_body(resp, 1 << 20, &what).map(|_| ())
        })
    }

    fn supports_parts(&self) -> bool {
        true
    }

    fn begin_parts(&self, key: &str) -> Result<String> {
        let what = self.url(key);
        let body = self.http.retry(|_| {
            let req = Request::new("POST", self.object(Method::Post, key, &[("uploads", "")])?);
            let resp = self.send(&req, Body::Empty, &what)?;
            http::read_body(resp, 1 << 20, &what)
        })?;
        let doc = xml::parse(&String::from_utf8_lossy(&body)).map_err(|e| e.context(&what))?;
        doc.child_text("UploadId")
            .filter(|u| !u.is_empty())
            .ok_or_else(|| {
                err!(
                    Storage,
                    "s3: CreateMultipartUpload {what}: no UploadId in the answer"
                )
            })
    }

    fn put_part(&self, key: &str, upload: &str, number: u32, body: Body<'_>) -> Result<String> {
        let what = format!("{} (part {number})", self.url(key));
        let n = number.to_string();
        self.http.retry(|_| {
            let req = Request::new(
                "PUT",
                self.object(
                    Method::Put,
                    key,
                    &[("partNumber", &n), ("uploadId", upload)],
                )?,
            );
            let resp = self.send(&req, body, &what)?;
            let etag = resp.header("etag").map(str::to_owned);
            http::read_body(resp, 1 << 20, &what)?;
            etag.ok_or_else(|| {
                Failure::fatal(err!(
                    Storage,
                    "s3: UploadPart {what}: no ETag in the answer"
                ))
            })
        })
    }

    fn complete_parts(&self, key: &str, upload: &str, parts: &[String], size: u64) -> Result<()> {
        let what = self.url(key);
        let mut body = String::from("<CompleteMultipartUpload>");
        for (i, etag) in parts.iter().enumerate() {
            body.push_str(&format!(
                "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>",
                i + 1,
                xml::escape(etag)
            ));
        }
        body.push_str("</CompleteMultipartUpload>");
        self.http.retry(|attempt| {
            let req = Request::new(
                "POST",
                self.object(Method::Post, key, &[("uploadId", upload)])?,
            )
            .header("Content-Type", "application/xml");
            let resp = match self.send(&req, Body::Bytes(body.as_bytes()), &what) {
                Ok(r) => r,
                // An earlier attempt completed it but its answer was lost.
                Err(f) if attempt > 1 && f.code.as_deref() == Some("NoSuchUpload") => {
                    if self.head(key).ok().flatten() == Some(size) {
                        return Ok(());
                    }
                    return Err(f);
                }
                Err(f) => return Err(f),
            };
            let text = http::read_body(resp, 1 << 20, &what)?;
            // S3 may answer 200 with an error document.
            let text = String::from_utf8_lossy(&text);
            if let Ok(doc) = xml::parse(&text) {
                if doc.name == "Error" {
                    let code = doc.child_text("Code").unwrap_or_default();
                    let f = Failure {
                        error: err!(
                            Storage,
                            "s3: CompleteMultipartUpload {what}: {code}: {}",
                            doc.child_text("Message").unwrap_or_default()
                        ),
                        retryable: matches!(
                            code.as_str(),
                            "InternalError" | "SlowDown" | "ServiceUnavailable"
                        ),
                        retry_after: None,
                        status: Some(200),
                        code: Some(code),
                    };
                    return Err(f);
                }
            }
            Ok(())
        })
    }

    fn abort_parts(&self, key: &str, upload: &str) {
        let what = self.url(key);
        let res = self.http.retry(|_| {
            let req = Request::new(
                "DELETE",
                self.object(Method::Delete, key, &[("uploadId", upload)])?,
            );
            match self.send(&req, Body::Empty, &what) {
                Ok(r) => http::read_body(r, 1 << 20, &what).map(|_| ()),
                Err(f) if f.status == Some(404) => Ok(()),
                Err(f) => Err(f),
            }
        });
        if let Err(e) = res {
            log_warn!("could not abort the multipart upload of {what}: {e}");
        }
    }

    fn get(
        &self,
        key: &str,
        range: Option<(u64, u64)>,
    ) -> std::result::Result<ureq::Response, Failure> {
        let mut req = Request::new("GET", self.object(Method::Get, key, &[])?);
        if let Some((a, b)) = range {
            req = req.header("Range", format!("bytes={a}-{b}"));
        }
        self.send(&req, Body::Empty, &self.url(key))
    }

    fn head(&self, key: &str) -> Result<Option<u64>> {
        let what = self.url(key);
        self.http.retry(|_| {
            let req = Request::new("HEAD", self.object(Method::Head, key, &[])?);
            match self.send(&req, Body::Empty, &what) {
                Ok(r) => Ok(Some(
                    r.header("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0),
                )),
                Err(f) if f.status == Some(404) => Ok(None),
                Err(f) => Err(f),
            }
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let (page, next) = self.list_page(prefix, token.as_deref())?;
            all.extend(page);
            match next {
                Some(t) => token = Some(t),
                None => return Ok(all),
            }
        }
    }

    fn delete(&self, keys: &[String]) -> Result<()> {
        for chunk in keys.chunks(1000) {
            self.delete_chunk(chunk)?;
        }
        Ok(())
    }

    fn markers_enabled(&self) -> Result<bool> {
        let Some(endpoint) = &self.endpoint else {
            return Ok(true);
        };
        if let Some(m) = self.minio.get() {
            return Ok(!m);
        }
        let server = self.http.retry(|_| self.http.server_header(endpoint))?;
        let is_minio = server.is_some_and(|s| s.trim().eq_ignore_ascii_case("minio"));
        if is_minio {
            log_info!("MinIO backend detected at {endpoint}: empty folders are not stored as marker objects");
        }
        let _ = self.minio.set(is_minio);
        Ok(!is_minio)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::testserver::{Resp, Server};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[test]
    fn presigned_urls_are_path_style_for_custom_endpoints() {
        let cfg = S3Config {
            bucket: "bkt".into(),
            access_key: Some("AKIDEXAMPLE".into()),
            secret_key: Some("secret".into()),
            endpoint_url: Some("http://127.0.0.1:9000".into()),
            ..S3Config::default()
        };
        let s = S3Store::with_env(&cfg, Tuning::default(), &Env::from_pairs(&[])).unwrap();
        let u = s
            .object(
                Method::Put,
                "p/a b.bin",
                &[("partNumber", "1"), ("uploadId", "x/y")],
            )
            .unwrap();
        assert!(
            u.starts_with("http://127.0.0.1:9000/bkt/p/a%20b.bin?"),
            "{u}"
        );
        assert!(
            u.contains("partNumber=1")
                && u.contains("uploadId=x%2Fy")
                && u.contains("X-Amz-Signature="),
            "{u}"
        );
        assert!(!u.contains("secret"));
        assert_eq!(s.url("k"), "s3://bkt/k");
        assert_eq!(
            aws_credentials::presigned_key(&u).as_deref(),
            Some("AKIDEXAMPLE")
        );
    }

    /// Container credentials and a bucket on one server. The bucket answers `ExpiredToken` to
    /// the first credentials, as S3 does to revoked or expired session tokens: the request is
    /// signed again with renewed ones, whose session token it carries.
    #[test]
    fn expired_session_tokens_are_renewed_and_the_request_retried() {
        let issued = Arc::new(AtomicU32::new(0));
        let i2 = issued.clone();
        let server = Server::start(move |req| {
            if req.path == "/creds" {
                let n = i2.fetch_add(1, Ordering::SeqCst) + 1;
                return Resp::ok(format!(
                    r#"{{"AccessKeyId":"ASIA{n}","SecretAccessKey":"s{n}","Token":"session-{n}","Expiration":"2999-01-01T00:00:00Z"}}"#
                ));
            }
            if req.path.contains("X-Amz-Credential=ASIA1%2F") {
                return Resp::status(400, "<Error><Code>ExpiredToken</Code><Message>The provided token has expired.</Message></Error>");
            }
            Resp::ok("")
        });
        let env = Env::from_pairs(&[
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                &format!("{}/creds", server.url()),
            ),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("HOME", "/nonexistent"),
        ]);
        let cfg = S3Config {
            bucket: "bkt".into(),
            endpoint_url: Some(server.url()),
            ..S3Config::default()
        };
        let tuning = Tuning {
            max_attempts: 3,
            backoff_base: std::time::Duration::from_millis(1),
            ..Tuning::default()
        };
        let s = S3Store::with_env(&cfg, tuning, &env).unwrap();
        s.put("k", Body::Bytes(b"x")).unwrap();
        let reqs = server.requests();
        let puts: Vec<&str> = reqs
            .iter()
            .filter(|r| r.method == "PUT")
            .map(|r| r.path.as_str())
            .collect();
        assert_eq!(puts.len(), 2, "{reqs:#?}");
        assert!(
            puts[0].contains("X-Amz-Security-Token=session-1"),
            "{}",
            puts[0]
        );
        assert!(
            puts[1].contains("X-Amz-Credential=ASIA2%2F")
                && puts[1].contains("X-Amz-Security-Token=session-2"),
            "{}",
            puts[1]
        );
        assert_eq!(issued.load(Ordering::SeqCst), 2);

        // Fixed credentials cannot be renewed: the error says where they came from.
        let cfg = S3Config {
            access_key: Some("ASIA1".into()),
            secret_key: Some("s1".into()),
            session_token: Some("session-1".into()),
            ..cfg
        };
        let s = S3Store::with_env(&cfg, Tuning::default(), &env).unwrap();
        let e = s.put("k", Body::Bytes(b"x")).unwrap_err();
        assert!(
            e.message().contains("ExpiredToken")
                && e.message()
                    .contains("access_key/secret_key of the storage config"),
            "{e}"
        );
    }
}
