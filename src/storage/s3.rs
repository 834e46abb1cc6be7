//! Amazon S3 and S3-compatible stores: requests presigned with SigV4 by rusty-s3, sent by ureq.
//!
//! - Endpoint: `endpoint_url` (path-style URLs, for MinIO, Ceph, moto, s3s …), else
//!   `AWS_ENDPOINT_URL_S3`/`AWS_ENDPOINT_URL`, else `https://s3.<region>.amazonaws.com` with
//!   virtual-host URLs (path-style for bucket names with dots).
//! - Region: `region`, else `AWS_REGION`/`AWS_DEFAULT_REGION`, else the profile's `region` in
//!   `~/.aws/config`, else `us-east-1`.
//! - Credentials, first found: `access_key`/`secret_key` (+ `session_token`) of the config;
//!   `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`; the profile
//!   (`AWS_PROFILE`, else `default`) of the shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`,
//!   else `~/.aws/credentials`), re-read when the file changes (checked at most every 2 s, as
//!   Determined does), then of `~/.aws/config` (`AWS_CONFIG_FILE`). Instance roles and SSO are
//!   not supported.
//! - Uploads: a PUT per small file; above `part_size`, a multipart upload whose parts go up in
//!   parallel with those of the other files, aborted on failure. Downloads: parallel ranged GETs.
//!   Delete: `DeleteObjects` in chunks of 1000.
//! - MinIO (docs/protocol.md#object-store-details): with a custom endpoint, an anonymous
//!   `GET <endpoint>` answered with `Server: MinIO` disables folder marker objects. detcore probes
//!   once, when the first marker would be written (Python probes in its constructor and crashes
//!   when the endpoint is unreachable).

use super::config::S3Config;
use super::http::{self, Body, Failure, Flavor, Http, Request, Tuning};
use super::object::{ObjectInfo, ObjectStore};
use super::xml;
use crate::error::Result;
use crate::options::env_nonempty as env;
use crate::{bail, err, log_info};
use base64::Engine as _;
use md5::Digest as _;
use parking_lot::Mutex;
use rusty_s3::{Bucket, Method, UrlStyle};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

/// A set of AWS credentials.
#[derive(Clone, PartialEq)]
pub struct AwsCredentials {
    pub key: String,
    pub secret: String,
    pub token: Option<String>,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AwsCredentials({}, ***)", self.key)
    }
}

fn home_file(var: &str, default: &str) -> Option<PathBuf> {
    if let Some(p) = env(var) {
        return Some(PathBuf::from(p));
    }
    env("HOME").map(|h| PathBuf::from(h).join(default))
}

/// The sections of an AWS INI file: `[name]` → key/value pairs (keys lowercased).
pub fn parse_ini(text: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut out: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for line in text.lines() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
            continue;
        }
        if let Some(name) = l.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            out.push((name.trim().to_owned(), Vec::new()));
        } else if let Some((k, v)) = l.split_once('=') {
            if let Some(last) = out.last_mut() {
                last.1
                    .push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
    }
    out
}

fn section<'a>(
    ini: &'a [(String, Vec<(String, String)>)],
    names: &[String],
) -> Option<&'a Vec<(String, String)>> {
    names
        .iter()
        .find_map(|n| ini.iter().find(|(s, _)| s == n).map(|(_, kv)| kv))
}

fn get<'a>(kv: &'a [(String, String)], k: &str) -> Option<&'a str> {
    kv.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
}

fn profile() -> String {
    env("AWS_PROFILE")
        .or_else(|| env("AWS_DEFAULT_PROFILE"))
        .unwrap_or_else(|| "default".into())
}

fn creds_from_ini(path: &std::path::Path, config_style: bool) -> Option<AwsCredentials> {
    let text = std::fs::read_to_string(path).ok()?;
    let ini = parse_ini(&text);
    let p = profile();
    let names = if config_style {
        vec![format!("profile {p}"), p]
    } else {
        vec![p]
    };
    let kv = section(&ini, &names)?;
    Some(AwsCredentials {
        key: get(kv, "aws_access_key_id")?.to_owned(),
        secret: get(kv, "aws_secret_access_key")?.to_owned(),
        token: get(kv, "aws_session_token").map(str::to_owned),
    })
}

fn region_from_config() -> Option<String> {
    let path = home_file("AWS_CONFIG_FILE", ".aws/config")?;
    let ini = parse_ini(&std::fs::read_to_string(path).ok()?);
    let p = profile();
    let kv = section(&ini, &[format!("profile {p}"), p])?;
    get(kv, "region").map(str::to_owned)
}

/// Where the credentials come from.
enum Source {
    Fixed(Arc<AwsCredentials>),
    /// The shared credentials file, re-read when its modification time changes.
    File {
        path: PathBuf,
        state: Mutex<FileState>,
    },
}

struct FileState {
    creds: Arc<AwsCredentials>,
    mtime: Option<SystemTime>,
    checked: Instant,
}

/// A credential provider.
pub struct CredentialProvider {
    source: Source,
}

impl CredentialProvider {
    /// Resolve the chain of the module docs.
    pub fn resolve(cfg: &S3Config) -> Result<CredentialProvider> {
        let fixed = |c: AwsCredentials| {
            crate::log::register_secret(&c.secret);
            if let Some(t) = &c.token {
                crate::log::register_secret(t);
            }
            Ok(CredentialProvider {
                source: Source::Fixed(Arc::new(c)),
            })
        };
        match (&cfg.access_key, &cfg.secret_key) {
            (Some(k), Some(s)) => {
                return fixed(AwsCredentials {
                    key: k.clone(),
                    secret: s.clone(),
                    token: cfg.session_token.clone(),
                })
            }
            (Some(_), None) | (None, Some(_)) => bail!(
                InvalidArgument,
                "checkpoint_storage (s3): access_key and secret_key must be given together"
            ),
            (None, None) => {}
        }
        if let (Some(k), Some(s)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            return fixed(AwsCredentials {
                key: k,
                secret: s,
                token: env("AWS_SESSION_TOKEN"),
            });
        }
        if let Some(path) = home_file("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials") {
            if let Some(c) = creds_from_ini(&path, false) {
                crate::log::register_secret(&c.secret);
                let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
                return Ok(CredentialProvider {
                    source: Source::File {
                        path,
                        state: Mutex::new(FileState {
                            creds: Arc::new(c),
                            mtime,
                            checked: Instant::now(),
                        }),
                    },
                });
            }
        }
        if let Some(path) = home_file("AWS_CONFIG_FILE", ".aws/config") {
            if let Some(c) = creds_from_ini(&path, true) {
                return fixed(c);
            }
        }
        Err(err!(
            InvalidArgument,
            "checkpoint_storage (s3): no credentials found: set access_key and secret_key, or \
             AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or profile {:?} in the shared \
             credentials file (instance roles are not supported)",
            profile()
        ))
    }

    /// The current credentials.
    pub fn get(&self) -> Arc<AwsCredentials> {
        match &self.source {
            Source::Fixed(c) => c.clone(),
            Source::File { path, state } => {
                let mut s = state.lock();
                if s.checked.elapsed() >= Duration::from_secs(2) {
                    s.checked = Instant::now();
                    let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
                    if mtime != s.mtime {
                        if let Some(c) = creds_from_ini(path, false) {
                            log_info!("reloaded S3 credentials from {}", path.display());
                            crate::log::register_secret(&c.secret);
                            s.creds = Arc::new(c);
                        }
                        s.mtime = mtime;
                    }
                }
                s.creds.clone()
            }
        }
    }
}

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
    /// Connect to the bucket of `cfg` (no request is made).
    pub fn new(cfg: &S3Config, tuning: Tuning) -> Result<S3Store> {
        if cfg.bucket.is_empty() {
            bail!(InvalidArgument, "checkpoint_storage (s3): bucket is empty");
        }
        let region = cfg
            .region
            .clone()
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .or_else(region_from_config)
            .unwrap_or_else(|| "us-east-1".into());
        let endpoint = cfg
            .endpoint_url
            .clone()
            .or_else(|| env("AWS_ENDPOINT_URL_S3"))
            .or_else(|| env("AWS_ENDPOINT_URL"));
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
        let creds = CredentialProvider::resolve(cfg)?;
        Ok(S3Store {
            http: Http::new(Flavor::S3, tuning),
            bucket,
            creds,
            endpoint,
            minio: OnceLock::new(),
        })
    }

    fn presign(&self, method: Method, url: url::Url, query: &[(&str, &str)]) -> String {
        let c = self.creds.get();
        rusty_s3::signing::sign(
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
        .to_string()
    }

    fn object(&self, method: Method, key: &str, query: &[(&str, &str)]) -> String {
        self.presign(method, self.bucket.object_url(key), query)
    }

    fn bucket_req(&self, method: Method, query: &[(&str, &str)]) -> String {
        self.presign(method, self.bucket.base_url().clone(), query)
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
            let req = Request::new("GET", self.bucket_req(Method::Get, &q));
            let resp = self.http.send(&req, Body::Empty, &what)?;
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
            let req = Request::new("POST", self.bucket_req(Method::Post, &[("delete", "")]))
                .header("Content-MD5", md5.clone())
                .header("Content-Type", "application/xml");
            let resp = self.http.send(&req, Body::Bytes(body.as_bytes()), &what)?;
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
            let req = Request::new("PUT", self.object(Method::Put, key, &[]));
            let resp = self.http.send(&req, body, &what)?;
            http::read_body(resp, 1 << 20, &what).map(|_| ())
        })
    }

    fn supports_parts(&self) -> bool {
        true
    }

    fn begin_parts(&self, key: &str) -> Result<String> {
        let what = self.url(key);
        let body = self.http.retry(|_| {
            let req = Request::new("POST", self.object(Method::Post, key, &[("uploads", "")]));
            let resp = self.http.send(&req, Body::Empty, &what)?;
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
                ),
            );
            let resp = self.http.send(&req, body, &what)?;
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
                self.object(Method::Post, key, &[("uploadId", upload)]),
            )
            .header("Content-Type", "application/xml");
            let resp = match self.http.send(&req, Body::Bytes(body.as_bytes()), &what) {
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
                self.object(Method::Delete, key, &[("uploadId", upload)]),
            );
            match self.http.send(&req, Body::Empty, &what) {
                Ok(r) => http::read_body(r, 1 << 20, &what).map(|_| ()),
                Err(f) if f.status == Some(404) => Ok(()),
                Err(f) => Err(f),
            }
        });
        if let Err(e) = res {
            crate::log_warn!("could not abort the multipart upload of {what}: {e}");
        }
    }

    fn get(
        &self,
        key: &str,
        range: Option<(u64, u64)>,
    ) -> std::result::Result<ureq::Response, Failure> {
        let mut req = Request::new("GET", self.object(Method::Get, key, &[]));
        if let Some((a, b)) = range {
            req = req.header("Range", format!("bytes={a}-{b}"));
        }
        self.http.send(&req, Body::Empty, &self.url(key))
    }

    fn head(&self, key: &str) -> Result<Option<u64>> {
        let what = self.url(key);
        self.http.retry(|_| {
            let req = Request::new("HEAD", self.object(Method::Head, key, &[]));
            match self.http.send(&req, Body::Empty, &what) {
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

    #[test]
    fn ini_profiles() {
        let ini = parse_ini(
            "# comment\n[default]\naws_access_key_id = A\naws_secret_access_key=B\n\n[profile x]\nRegion = eu-west-1\n",
        );
        let d = section(&ini, &["default".into()]).unwrap();
        assert_eq!(get(d, "aws_access_key_id"), Some("A"));
        assert_eq!(get(d, "aws_secret_access_key"), Some("B"));
        let x = section(&ini, &["profile x".into(), "x".into()]).unwrap();
        assert_eq!(get(x, "region"), Some("eu-west-1"));
        assert!(section(&ini, &["nope".into()]).is_none());
    }

    #[test]
    fn half_credentials_are_refused() {
        let cfg = S3Config {
            bucket: "b".into(),
            access_key: Some("k".into()),
            ..S3Config::default()
        };
        let e = CredentialProvider::resolve(&cfg).err().unwrap();
        assert!(e.message().contains("together"), "{e}");
    }

    #[test]
    fn presigned_urls_are_path_style_for_custom_endpoints() {
        let cfg = S3Config {
            bucket: "bkt".into(),
            access_key: Some("AKIDEXAMPLE".into()),
            secret_key: Some("secret".into()),
            endpoint_url: Some("http://127.0.0.1:9000".into()),
            ..S3Config::default()
        };
        let s = S3Store::new(&cfg, Tuning::default()).unwrap();
        let u = s.object(
            Method::Put,
            "p/a b.bin",
            &[("partNumber", "1"), ("uploadId", "x/y")],
        );
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
    }
}
