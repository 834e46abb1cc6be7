//! Google Cloud Storage over its JSON API.
//!
//! - Endpoint: `https://storage.googleapis.com`, or `STORAGE_EMULATOR_HOST` (e.g.
//!   `127.0.0.1:4443` or `http://…`) for an emulator.
//! - Credentials: Application Default Credentials (key files, gcloud's user credentials, the
//!   GCE/GKE metadata server), resolved and renewed by [`super::gcp_auth`]. A request refused
//!   with HTTP 401 renews the token and is tried again.
//! - Uploads: one `uploadType=media` request per file up to `part_size`; above, a resumable
//!   upload sent in `part_size` chunks, resumed from the server's committed offset after a
//!   failure. Files go up in parallel. Downloads: parallel ranged `alt=media` reads.

use super::config::GcsConfig;
use super::credentials::Env;
use super::gcp_auth::GcpAuth;
use super::http::{self, Body, Failure, Flavor, Http, Request};
use super::manifest::{self, FileSum, SumCell};
use super::object_store::{ObjectInfo, ObjectStore};
use super::tuning::Tuning;
use crate::env::env_nonempty as env;
use crate::error::{Error, Kind, Result};
use crate::json::Value;
use crate::percent::encode;
use std::path::Path;

/// The GCS backend.
pub struct GcsStore {
    http: Http,
    base: String,
    bucket: String,
    auth: GcpAuth,
}

impl GcsStore {
    /// Connect to the bucket of `cfg`, resolving the credentials (the metadata server and
    /// token endpoints may be asked; no storage request is made).
    pub fn new(cfg: &GcsConfig, tuning: Tuning) -> Result<GcsStore> {
        if cfg.bucket.is_empty() {
            bail!(InvalidArgument, "checkpoint_storage (gcs): bucket is empty");
        }
        let emulator = env("STORAGE_EMULATOR_HOST");
        let base = match &emulator {
            Some(h) if h.contains("://") => h.trim_end_matches('/').to_owned(),
            Some(h) => format!("http://{}", h.trim_end_matches('/')),
            None => "https://storage.googleapis.com".to_owned(),
        };
        let auth = GcpAuth::resolve(&Env::process(), emulator.is_some(), tuning.timeout)?;
        Ok(GcsStore {
            http: Http::new(Flavor::Gcs, tuning),
            base,
            bucket: cfg.bucket.clone(),
            auth,
        })
    }

    fn req(&self, method: &'static str, url: String) -> std::result::Result<Request, Failure> {
        let mut r = Request::new(method, url);
        if let Some(t) = self.auth.token().map_err(Failure::transient)? {
            r = r.header("Authorization", format!("Bearer {t}"));
        }
        Ok(r)
    }

    /// Send one attempt; a 401 renews the token (when it can be renewed) and is retryable.
    fn send(
        &self,
        req: &Request,
        body: Body<'_>,
        what: &str,
    ) -> std::result::Result<ureq::Response, Failure> {
        match self.http.send(req, body, what) {
            Err(mut f) if f.status == Some(401) => {
                let used = req
                    .headers
                    .iter()
                    .find(|(k, _)| k == "Authorization")
                    .and_then(|(_, v)| v.strip_prefix("Bearer "));
                if used.is_some_and(|t| self.auth.refused(t)) {
                    f.retryable = true;
                }
                Err(f)
            }
            r => r,
        }
    }

    fn object_url(&self, key: &str) -> String {
        format!(
            "{}/storage/v1/b/{}/o/{}",
            self.base,
            encode(&self.bucket, false),
            encode(key, false)
        )
    }

    fn upload_url(&self, key: &str, kind: &str) -> String {
        format!(
            "{}/upload/storage/v1/b/{}/o?uploadType={kind}&name={}",
            self.base,
            encode(&self.bucket, false),
            encode(key, false)
        )
    }

    /// The committed size of a resumable session (`None` once it is complete).
    fn session_offset(
        &self,
        session: &str,
        total: u64,
        what: &str,
    ) -> std::result::Result<Option<u64>, Failure> {
        let req = self
            .req("PUT", session.to_owned())?
            .header("Content-Range", format!("bytes */{total}"));
        let resp = self.send(&req, Body::Empty, what)?;
        if resp.status() == 308 {
            let committed = resp
                .header("range")
                .and_then(|r| r.rsplit('-').next())
                .and_then(|n| n.trim().parse::<u64>().ok())
                .map(|last| last + 1)
                .unwrap_or(0);
            Ok(Some(committed))
        } else {
            Ok(None)
        }
    }
}

impl ObjectStore for GcsStore {
    fn name(&self) -> &'static str {
        "gcs"
    }

    fn url(&self, key: &str) -> String {
        if key.is_empty() {
            format!("gs://{}", self.bucket)
        } else {
            format!("gs://{}/{key}", self.bucket)
        }
    }

    fn http(&self) -> &Http {
        &self.http
    }

    fn put(&self, key: &str, body: Body<'_>) -> Result<()> {
        let what = self.url(key);
        self.http.retry(|_| {
            let req = self
                .req("POST", self.upload_url(key, "media"))?
                .header("Content-Type", "application/octet-stream");
            let resp = self.send(&req, body, &what)?;
            http::read_body(resp, 1 << 20, &what).map(|_| ())
        })
    }

    fn put_large(&self, key: &str, path: &Path, size: u64, sum: Option<&SumCell>) -> Result<()> {
        let what = self.url(key);
        let session = self.http.retry(|_| {
            let req = self
                .req("POST", self.upload_url(key, "resumable"))?
                .header("X-Upload-Content-Type", "application/octet-stream")
                .header("X-Upload-Content-Length", size.to_string());
            let resp = self.send(&req, Body::Empty, &what)?;
            resp.header("location").map(str::to_owned).ok_or_else(|| {
                Failure::fatal(err!(
                    Storage,
                    "gcs: resumable upload of {what}: no Location in the answer"
                ))
            })
        })?;
        // Chunks must be multiples of 256 KiB.
        let chunk = (self.http.tuning().part_size / (256 << 10)).max(1) * (256 << 10);
        let mut offset = 0u64;
        let mut needs_query = false;
        // With a sum wanted: the sum of bytes [0, summed.size), all committed. A chunk the
        // server takes whole adds its own sum (computed as it was sent); only what the server
        // committed otherwise (part of a chunk, or after a lost answer) is read back.
        let mut summed = FileSum::EMPTY;
        let advance = |summed: &mut FileSum,
                       upto: u64,
                       chunk: Option<FileSum>|
         -> std::result::Result<(), Failure> {
            if sum.is_none() || upto == summed.size {
                return Ok(());
            }
            if let Some(c) = chunk.filter(|c| summed.size + c.size == upto) {
                *summed = summed.then(c);
            } else if upto > summed.size {
                *summed = summed.then(manifest::sum_range(path, summed.size, upto)?);
            } else {
                *summed = manifest::sum_range(path, 0, upto)?;
            }
            Ok(())
        };
        self.http.retry(|_| {
            if needs_query {
                match self.session_offset(&session, size, &what)? {
                    Some(o) => {
                        offset = o;
                        advance(&mut summed, o, None)?;
                    }
                    None => return advance(&mut summed, size, None),
                }
                needs_query = false;
            }
            while offset < size {
                let len = chunk.min(size - offset);
                let req = self.req("PUT", session.clone())?.header(
                    "Content-Range",
                    format!("bytes {}-{}/{size}", offset, offset + len - 1),
                );
                let cell = SumCell::new();
                let body = Body::File {
                    path,
                    offset,
                    len,
                    sum: sum.map(|_| &cell),
                };
                let resp = match self.send(&req, body, &what) {
                    Ok(r) => r,
                    Err(f) => {
                        needs_query = true;
                        return Err(f);
                    }
                };
                let sent = cell.get().map(|crc32c| FileSum { size: len, crc32c });
                let status = resp.status();
                if status == 308 {
                    offset = resp
                        .header("range")
                        .and_then(|r| r.rsplit('-').next())
                        .and_then(|n| n.trim().parse::<u64>().ok())
                        .map(|l| l + 1)
                        .unwrap_or(offset + len);
                    let _ = http::read_body(resp, 1 << 20, &what);
                    advance(&mut summed, offset, sent)?;
                } else {
                    let _ = http::read_body(resp, 1 << 20, &what);
                    return advance(&mut summed, size, sent);
                }
            }
            // Everything sent but not finalized: ask where the session stands.
            needs_query = true;
            Err(Failure::transient(err!(
                Storage,
                "gcs: resumable upload of {what} is not finalized"
            )))
        })?;
        if let Some(cell) = sum {
            cell.set(summed.crc32c);
        }
        Ok(())
    }

    fn get(
        &self,
        key: &str,
        range: Option<(u64, u64)>,
    ) -> std::result::Result<ureq::Response, Failure> {
        let mut req = self.req("GET", format!("{}?alt=media", self.object_url(key)))?;
        if let Some((a, b)) = range {
            req = req.header("Range", format!("bytes={a}-{b}"));
        }
        self.send(&req, Body::Empty, &self.url(key))
    }

    fn head(&self, key: &str) -> Result<Option<u64>> {
        let what = self.url(key);
        self.http.retry(|_| {
            let req = self.req("GET", self.object_url(key))?;
            match self.send(&req, Body::Empty, &what) {
                Ok(r) => {
                    let body = http::read_body(r, 1 << 20, &what)?;
                    let v = crate::json::parse(&String::from_utf8_lossy(&body))
                        .map_err(Failure::fatal)?;
                    Ok(Some(
                        v.get("size")
                            .and_then(|s| {
                                s.as_str()
                                    .and_then(|s| s.parse().ok())
                                    .or(s.as_i64().map(|n| n as u64))
                            })
                            .unwrap_or(0),
                    ))
                }
                Err(f) if f.status == Some(404) => Ok(None),
                Err(f) => Err(f),
            }
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let what = format!("{} (listing)", self.url(prefix));
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut url = format!(
                "{}/storage/v1/b/{}/o?prefix={}&maxResults=1000",
                self.base,
                encode(&self.bucket, false),
                encode(prefix, false)
            );
            if let Some(t) = &token {
                url.push_str(&format!("&pageToken={}", encode(t, false)));
            }
            let body = self.http.retry(|_| {
                let req = self.req("GET", url.clone())?;
                let resp = self.send(&req, Body::Empty, &what)?;
                http::read_body(resp, 64 << 20, &what)
            })?;
            let v = crate::json::parse(&String::from_utf8_lossy(&body))
                .map_err(|e| e.context(&what))?;
            for it in v
                .get("items")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let key = it
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let size = it
                    .get("size")
                    .and_then(|s| {
                        s.as_str()
                            .and_then(|s| s.parse().ok())
                            .or(s.as_i64().map(|n| n as u64))
                    })
                    .ok_or_else(|| {
                        Error::new(
                            Kind::Storage,
                            format!("{what}: object {key:?} has no valid size"),
                        )
                    })?;
                out.push(ObjectInfo { key, size });
            }
            match v.get("nextPageToken").and_then(Value::as_str) {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => return Ok(out),
            }
        }
    }

    fn delete(&self, keys: &[String]) -> Result<()> {
        let threads = self.http.tuning().concurrency.min(keys.len().max(1));
        super::pool::Pool::new(keys.iter()).try_run(threads, false, |key, _| {
            let what = self.url(key);
            self.http.retry(|_| {
                let req = self.req("DELETE", self.object_url(key))?;
                match self.send(&req, Body::Empty, &what) {
                    Ok(r) => http::read_body(r, 1 << 20, &what).map(|_| ()),
                    Err(f) if f.status == Some(404) => Ok(()),
                    Err(f) => Err(f),
                }
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::testserver::{Resp, Server};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    const KEY_FILE: &str = include_str!("../../tests/data/gcs-test-service-account.json");

    /// A token endpoint and a bucket on one server: tokens `tok-1`, `tok-2`, …; the bucket
    /// refuses `tok-1` (revoked) and any token but the newest with 401, as GCS does.
    #[test]
    fn service_account_token_is_exchanged_used_and_renewed_on_401() {
        let issued = Arc::new(AtomicU32::new(0));
        let i2 = issued.clone();
        let server = Server::start(move |req| {
            if req.method == "POST" && req.path == "/token" {
                let n = i2.fetch_add(1, Ordering::SeqCst) + 1;
                return Resp::ok(format!(
                    r#"{{"access_token": "tok-{n}", "expires_in": 3600, "token_type": "Bearer"}}"#
                ));
            }
            let newest = format!("Bearer tok-{}", i2.load(Ordering::SeqCst));
            if req.header("authorization") != Some(newest.as_str())
                || req.header("authorization") == Some("Bearer tok-1")
            {
                return Resp::status(
                    401,
                    r#"{"error": {"code": 401, "message": "Invalid Credentials", "errors": [{"reason": "authError"}]}}"#,
                );
            }
            Resp::ok(r#"{"items": [{"name": "p/x", "size": "5"}]}"#)
        });
        let dir = std::env::temp_dir().join(format!("detcore-gcs-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("key.json");
        std::fs::write(
            &key,
            KEY_FILE.replace(
                "http://127.0.0.1:1/token",
                &format!("{}/token", server.url()),
            ),
        )
        .unwrap();
        let tuning = Tuning {
            max_attempts: 2,
            backoff_base: std::time::Duration::from_millis(1),
            ..Tuning::default()
        };
        let store = GcsStore {
            http: Http::new(Flavor::Gcs, tuning),
            base: server.url(),
            bucket: "bkt".into(),
            auth: GcpAuth::from_file(&key, std::time::Duration::from_secs(5)).unwrap(),
        };
        let listed = store.list("p/").unwrap();
        assert_eq!(
            listed,
            vec![ObjectInfo {
                key: "p/x".into(),
                size: 5
            }]
        );
        std::fs::remove_dir_all(&dir).unwrap();
        let seen = server.requests();
        let summary: Vec<String> = seen
            .iter()
            .map(|r| format!("{} {} {:?}", r.method, r.path, r.header("authorization")))
            .collect();
        assert_eq!(seen.len(), 4, "{summary:#?}");
        assert!(
            seen[0]
                .body
                .contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"),
            "{}",
            seen[0].body
        );
        assert!(seen[0].body.contains("&assertion=ey"), "{}", seen[0].body);
        assert!(
            seen[1].path.starts_with("/storage/v1/b/bkt/o?prefix=p%2F"),
            "{summary:#?}"
        );
        assert_eq!(seen[1].header("authorization"), Some("Bearer tok-1"));
        assert_eq!(
            seen[2].path, "/token",
            "a 401 renews the token: {summary:#?}"
        );
        assert_eq!(seen[3].header("authorization"), Some("Bearer tok-2"));
    }
}
