//! Google Cloud Storage over its JSON API.
//!
//! - Endpoint: `https://storage.googleapis.com`, or `STORAGE_EMULATOR_HOST` (e.g.
//!   `127.0.0.1:4443` or `http://…`) for an emulator, which gets no credentials.
//! - Credentials, first found: an access token in `GOOGLE_OAUTH_ACCESS_TOKEN`; the key file named
//!   by `GOOGLE_APPLICATION_CREDENTIALS`, else gcloud's application-default file
//!   (`~/.config/gcloud/application_default_credentials.json`): a service-account key (a JWT
//!   signed with RS256 is exchanged at its `token_uri` for an access token) or an authorized user
//!   (its refresh token is exchanged). Tokens are renewed a minute before they expire. The GCE
//!   metadata server is not used.
//! - Uploads: one `uploadType=media` request per file up to `part_size`; above, a resumable
//!   upload sent in `part_size` chunks, resumed from the server's committed offset after a
//!   failure. Files go up in parallel. Downloads: parallel ranged `alt=media` reads.

use super::config::GcsConfig;
use super::http::{self, encode, Body, Failure, Flavor, Http, Request, Tuning};
use super::manifest::{self, FileSum, SumCell};
use super::object::{ObjectInfo, ObjectStore};
use crate::error::{Error, Kind, Result};
use crate::json::Value;
use crate::options::env_nonempty as env;
use crate::{bail, err};
use base64::Engine as _;
use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

const SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_write";
const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// Decode the first PEM block of `pem` to DER.
pub fn pem_to_der(pem: &str) -> Result<Vec<u8>> {
    let mut body = String::new();
    let mut inside = false;
    for line in pem.lines() {
        let l = line.trim();
        if l.starts_with("-----BEGIN") {
            inside = true;
        } else if l.starts_with("-----END") {
            break;
        } else if inside {
            body.push_str(l);
        }
    }
    base64::engine::general_purpose::STANDARD
        .decode(body.as_bytes())
        .map_err(|e| {
            err!(
                InvalidArgument,
                "gcs: the private key is not valid PEM: {e}"
            )
        })
}

/// A service-account key, ready to sign token requests.
pub struct ServiceAccount {
    pub email: String,
    pub key_id: Option<String>,
    pub token_uri: String,
    key: ring::signature::RsaKeyPair,
}

impl ServiceAccount {
    /// From the JSON of a key file.
    pub fn from_json(v: &Value) -> Result<ServiceAccount> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let email = s("client_email").ok_or_else(|| {
            err!(
                InvalidArgument,
                "gcs: the service-account key has no client_email"
            )
        })?;
        let pem = s("private_key").ok_or_else(|| {
            err!(
                InvalidArgument,
                "gcs: the service-account key has no private_key"
            )
        })?;
        let der = pem_to_der(&pem)?;
        let key = ring::signature::RsaKeyPair::from_pkcs8(&der).map_err(|e| {
            err!(
                InvalidArgument,
                "gcs: the service-account private key is not a PKCS#8 RSA key: {e}"
            )
        })?;
        Ok(ServiceAccount {
            email,
            key_id: s("private_key_id"),
            token_uri: s("token_uri").unwrap_or_else(|| DEFAULT_TOKEN_URI.into()),
            key,
        })
    }

    /// A signed JWT asserting this account for `SCOPE`, valid for an hour from `now`.
    pub fn jwt(&self, now: u64) -> Result<String> {
        let mut header = crate::json::Map::new();
        header.insert("alg", Value::from("RS256"));
        header.insert("typ", Value::from("JWT"));
        if let Some(k) = &self.key_id {
            header.insert("kid", Value::from(k.as_str()));
        }
        let mut claims = crate::json::Map::new();
        claims.insert("iss", Value::from(self.email.as_str()));
        claims.insert("scope", Value::from(SCOPE));
        claims.insert("aud", Value::from(self.token_uri.as_str()));
        claims.insert("iat", Value::from(now as i64));
        claims.insert("exp", Value::from(now as i64 + 3600));
        let signing_input = format!(
            "{}.{}",
            b64url(crate::json::to_wire(&Value::Object(header)).as_bytes()),
            b64url(crate::json::to_wire(&Value::Object(claims)).as_bytes())
        );
        let rng = ring::rand::SystemRandom::new();
        let mut sig = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &rng,
                signing_input.as_bytes(),
                &mut sig,
            )
            .map_err(|_| err!(Internal, "gcs: RS256 signing failed"))?;
        Ok(format!("{signing_input}.{}", b64url(&sig)))
    }

    /// The public key (DER of the modulus/exponent), to check signatures in tests.
    pub fn public_key(&self) -> Vec<u8> {
        use ring::signature::KeyPair as _;
        self.key.public_key().as_ref().to_vec()
    }
}

enum Auth {
    /// An emulator: no Authorization header.
    None,
    /// A fixed token.
    Token(String),
    /// A token obtained from `token_uri` with a form body, cached until shortly before it expires.
    Exchange {
        what: String,
        token_uri: String,
        form: Box<dyn Fn() -> Result<String> + Send + Sync>,
        cache: Mutex<Option<(String, Instant)>>,
    },
}

fn form_encode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k, false), encode(v, false)))
        .collect::<Vec<_>>()
        .join("&")
}

fn key_file() -> Option<PathBuf> {
    if let Some(p) = env("GOOGLE_APPLICATION_CREDENTIALS") {
        return Some(PathBuf::from(p));
    }
    let base = env("CLOUDSDK_CONFIG")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".config/gcloud")))?;
    let p = base.join("application_default_credentials.json");
    p.is_file().then_some(p)
}

fn auth_from_file(path: &Path) -> Result<Auth> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io("gcs: cannot read the credentials file", path, e))?;
    let v = crate::json::parse(&text).map_err(|e| e.context(format!("gcs: {}", path.display())))?;
    match v.get("type").and_then(Value::as_str) {
        Some("service_account") => {
            let sa = ServiceAccount::from_json(&v)?;
            let token_uri = sa.token_uri.clone();
            Ok(Auth::Exchange {
                what: format!("service account {}", sa.email),
                token_uri,
                form: Box::new(move || {
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0);
                    let jwt = sa.jwt(now)?;
                    Ok(form_encode(&[
                        ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                        ("assertion", &jwt),
                    ]))
                }),
                cache: Mutex::new(None),
            })
        }
        Some("authorized_user") => {
            let s = |k: &str| {
                v.get(k)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| err!(InvalidArgument, "gcs: {}: no {k:?}", path.display()))
            };
            let (id, secret, refresh) = (s("client_id")?, s("client_secret")?, s("refresh_token")?);
            crate::log::register_secret(&secret);
            crate::log::register_secret(&refresh);
            Ok(Auth::Exchange {
                what: format!("user credentials of {}", path.display()),
                token_uri: v
                    .get("token_uri")
                    .and_then(Value::as_str)
                    .unwrap_or(DEFAULT_TOKEN_URI)
                    .to_owned(),
                form: Box::new(move || {
                    Ok(form_encode(&[
                        ("grant_type", "refresh_token"),
                        ("client_id", &id),
                        ("client_secret", &secret),
                        ("refresh_token", &refresh),
                    ]))
                }),
                cache: Mutex::new(None),
            })
        }
        other => bail!(
            InvalidArgument,
            "gcs: {}: unsupported credentials type {:?} (expected service_account or authorized_user)",
            path.display(),
            other.unwrap_or("none")
        ),
    }
}

/// The GCS backend.
pub struct GcsStore {
    http: Http,
    base: String,
    bucket: String,
    auth: Auth,
}

impl GcsStore {
    /// Connect to the bucket of `cfg` (no request is made).
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
        let auth = if let Some(t) = env("GOOGLE_OAUTH_ACCESS_TOKEN") {
            crate::log::register_secret(&t);
            Auth::Token(t)
        } else if let Some(path) = key_file() {
            auth_from_file(&path)?
        } else if emulator.is_some() {
            Auth::None
        } else {
            bail!(
                InvalidArgument,
                "checkpoint_storage (gcs): no credentials found: set GOOGLE_APPLICATION_CREDENTIALS \
                 to a service-account key file, or GOOGLE_OAUTH_ACCESS_TOKEN to an access token \
                 (the GCE metadata server is not used)"
            )
        };
        Ok(GcsStore {
            http: Http::new(Flavor::Gcs, tuning),
            base,
            bucket: cfg.bucket.clone(),
            auth,
        })
    }

    fn token(&self) -> std::result::Result<Option<String>, Failure> {
        match &self.auth {
            Auth::None => Ok(None),
            Auth::Token(t) => Ok(Some(t.clone())),
            Auth::Exchange {
                what,
                token_uri,
                form,
                cache,
            } => {
                let mut c = cache.lock();
                if let Some((t, until)) = &*c {
                    if Instant::now() < *until {
                        return Ok(Some(t.clone()));
                    }
                }
                let body = form()?;
                let req = Request::new("POST", token_uri.clone())
                    .header("Content-Type", "application/x-www-form-urlencoded");
                let target = format!("{token_uri} (token for {what})");
                let resp = self
                    .http
                    .send(&req, Body::Bytes(body.as_bytes()), &target)?;
                let data = http::read_body(resp, 1 << 20, &target)?;
                let v = crate::json::parse(&String::from_utf8_lossy(&data))
                    .map_err(|e| Failure::fatal(e.context(format!("gcs: {target}"))))?;
                let token = v
                    .get("access_token")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        Failure::fatal(err!(
                            Storage,
                            "gcs: {target}: no access_token in the answer"
                        ))
                    })?
                    .to_owned();
                crate::log::register_secret(&token);
                let ttl = v
                    .get("expires_in")
                    .and_then(Value::as_f64)
                    .unwrap_or(3600.0);
                let until = crate::time::deadline(crate::time::secs((ttl - 60.0).max(1.0)));
                *c = Some((token.clone(), until));
                Ok(Some(token))
            }
        }
    }

    fn req(&self, method: &'static str, url: String) -> std::result::Result<Request, Failure> {
        let mut r = Request::new(method, url);
        if let Some(t) = self.token()? {
            r = r.header("Authorization", format!("Bearer {t}"));
        }
        Ok(r)
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
        let resp = self.http.send(&req, Body::Empty, what)?;
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
            let resp = self.http.send(&req, body, &what)?;
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
            let resp = self.http.send(&req, Body::Empty, &what)?;
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
                let resp = match self.http.send(&req, body, &what) {
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
        self.http.send(&req, Body::Empty, &self.url(key))
    }

    fn head(&self, key: &str) -> Result<Option<u64>> {
        let what = self.url(key);
        self.http.retry(|_| {
            let req = self.req("GET", self.object_url(key))?;
            match self.http.send(&req, Body::Empty, &what) {
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
                let resp = self.http.send(&req, Body::Empty, &what)?;
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
        super::transfer::Pool::new(keys.iter()).try_run(threads, false, |key, _| {
            let what = self.url(key);
            self.http.retry(|_| {
                let req = self.req("DELETE", self.object_url(key))?;
                match self.http.send(&req, Body::Empty, &what) {
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
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    const KEY_FILE: &str = include_str!("../../tests/data/gcs-test-service-account.json");

    fn b64d(s: &str) -> Vec<u8> {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .unwrap()
    }

    #[test]
    fn jwt_is_signed_with_rs256() {
        let sa = ServiceAccount::from_json(&crate::json::parse(KEY_FILE).unwrap()).unwrap();
        let jwt = sa.jwt(1_700_000_000).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header = crate::json::parse(&String::from_utf8(b64d(parts[0])).unwrap()).unwrap();
        assert_eq!(header.get("alg").and_then(Value::as_str), Some("RS256"));
        assert_eq!(header.get("kid").and_then(Value::as_str), Some("testkey1"));
        let claims = crate::json::parse(&String::from_utf8(b64d(parts[1])).unwrap()).unwrap();
        assert_eq!(
            claims.get("iss").and_then(Value::as_str),
            Some(sa.email.as_str())
        );
        assert_eq!(claims.get("scope").and_then(Value::as_str), Some(SCOPE));
        assert_eq!(
            claims.get("aud").and_then(Value::as_str),
            Some("http://127.0.0.1:1/token")
        );
        assert_eq!(
            claims.get("exp").and_then(Value::as_i64),
            Some(1_700_003_600)
        );
        let key = ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            sa.public_key(),
        );
        let msg = format!("{}.{}", parts[0], parts[1]);
        key.verify(msg.as_bytes(), &b64d(parts[2]))
            .expect("signature verifies");
        let mut forged = b64d(parts[2]);
        forged[0] ^= 1;
        assert!(key.verify(msg.as_bytes(), &forged).is_err());
        assert!(ServiceAccount::from_json(&crate::json::parse(r#"{"client_email": "x", "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"}"#).unwrap()).is_err());
    }

    /// Serve `n` requests on `l`, answering each with `answer(request_text)`.
    fn serve(
        l: TcpListener,
        n: usize,
        answer: impl Fn(&str) -> String + Send + 'static,
    ) -> std::thread::JoinHandle<Vec<String>> {
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            for _ in 0..n {
                let (s, _) = l.accept().unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut head = String::new();
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    r.read_line(&mut line).unwrap();
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                    head.push_str(&line);
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0u8; len];
                std::io::Read::read_exact(&mut r, &mut body).unwrap();
                let req = format!("{head}{}", String::from_utf8_lossy(&body));
                let b = answer(&req);
                let mut s = s;
                write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
                    b.len()
                )
                .unwrap();
                seen.push(req);
            }
            seen
        })
    }

    #[test]
    fn service_account_token_is_exchanged_and_used() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = serve(l, 2, |req| {
            if req.starts_with("POST /token") {
                r#"{"access_token": "tok-123456", "expires_in": 3600, "token_type": "Bearer"}"#
                    .into()
            } else {
                r#"{"items": [{"name": "p/x", "size": "5"}]}"#.into()
            }
        });
        let dir = std::env::temp_dir().join(format!("detcore-gcs-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("key.json");
        std::fs::write(
            &key,
            KEY_FILE.replace(
                "http://127.0.0.1:1/token",
                &format!("http://127.0.0.1:{port}/token"),
            ),
        )
        .unwrap();
        let store = GcsStore {
            http: Http::new(
                Flavor::Gcs,
                Tuning {
                    max_attempts: 1,
                    ..Tuning::default()
                },
            ),
            base: format!("http://127.0.0.1:{port}"),
            bucket: "bkt".into(),
            auth: auth_from_file(&key).unwrap(),
        };
        let listed = store.list("p/").unwrap();
        assert_eq!(
            listed,
            vec![ObjectInfo {
                key: "p/x".into(),
                size: 5
            }]
        );
        let seen = server.join().unwrap();
        assert!(
            seen[0].contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"),
            "{}",
            seen[0]
        );
        assert!(seen[0].contains("&assertion=ey"), "{}", seen[0]);
        assert!(
            seen[1].starts_with("GET /storage/v1/b/bkt/o?prefix=p%2F"),
            "{}",
            seen[1]
        );
        assert!(
            seen[1]
                .to_ascii_lowercase()
                .contains("authorization: bearer tok-123456"),
            "{}",
            seen[1]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
