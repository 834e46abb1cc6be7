//! Azure Blob Storage (block blobs), signed with SharedKey or authorized by a SAS.
//!
//! - Account: `connection_string` (`AccountName`, `AccountKey`, `BlobEndpoint`,
//!   `DefaultEndpointsProtocol`, `EndpointSuffix`, `SharedAccessSignature`,
//!   `UseDevelopmentStorage=true`), or `account_url` with `credential`: a SAS token (a query string
//!   with `sig=`) or the account key, as Azure's Python SDK reads a string credential. A SAS in
//!   `account_url`'s query is used too. Without any, requests are anonymous (public containers).
//! - `container` may be `name/sub/path`: blobs go to container `name` under `sub/path/`
//!   (docs/protocol.md#checkpoint-layout). Like Determined, detcore creates the container when it
//!   opens the storage and ignores "already exists" (and, with a warning, `InvalidUri`, as for an
//!   `account_url` pointing at a container).
//! - Uploads: `Put Blob` for small files; above `part_size`, `Put Block` for each part in
//!   parallel (with the parts of the other files), then `Put Block List`. Downloads: parallel
//!   ranged `Get Blob`.

use super::config::AzureConfig;
use super::http::{self, Body, Failure, Flavor, Http, Request};
use super::object_store::{ObjectInfo, ObjectStore};
use super::tuning::Tuning;
use super::xml;
use crate::error::Result;
use crate::percent::{decode, encode};
use base64::Engine as _;
use hmac::{KeyInit as _, Mac as _};

const API_VERSION: &str = "2021-08-06";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

enum Auth {
    Key { account: String, key: Vec<u8> },
    Sas(String),
    Anonymous,
}

/// The Azure backend.
pub struct AzureStore {
    http: Http,
    /// `scheme://host[:port][/account]` without a trailing slash.
    endpoint: String,
    /// The path part of `endpoint` (`""` or `/account`), for signing.
    endpoint_path: String,
    container: String,
    /// `""` or `"sub/path/"`.
    blob_prefix: String,
    auth: Auth,
}

fn parse_connection_string(s: &str) -> Vec<(String, String)> {
    s.split(';')
        .filter_map(|kv| {
            let kv = kv.trim();
            if kv.is_empty() {
                return None;
            }
            let (k, v) = kv.split_once('=')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        })
        .collect()
}

fn is_sas(s: &str) -> bool {
    s.trim_start_matches('?')
        .split('&')
        .any(|kv| kv.split('=').next() == Some("sig"))
}

fn split_url(url: &str) -> Result<(String, String, String)> {
    // (scheme://authority, path without trailing slash, query)
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, q.to_owned()),
        None => (url, String::new()),
    };
    let Some(i) = base.find("://") else {
        bail!(
            InvalidArgument,
            "checkpoint_storage (azure): {url:?} is not an http(s) URL"
        );
    };
    let rest = &base[i + 3..];
    let (authority, path) = match rest.find('/') {
        Some(j) => (&rest[..j], rest[j..].trim_end_matches('/').to_owned()),
        None => (rest, String::new()),
    };
    if authority.is_empty() {
        bail!(
            InvalidArgument,
            "checkpoint_storage (azure): {url:?} has no host"
        );
    }
    Ok((format!("{}://{authority}", &base[..i]), path, query))
}

/// The account name of an account URL: the first label of the host, or the first path
/// segment for an IP address or `localhost` (Azurite's path-style URLs). `authority` may start
/// with the scheme, as [`split_url`] returns it.
fn account_from(authority: &str, path: &str) -> String {
    let authority = authority
        .split_once("://")
        .map_or(authority, |(_, rest)| rest);
    let host = authority.split(':').next().unwrap_or("");
    let is_ip = host.parse::<std::net::IpAddr>().is_ok() || host == "localhost";
    if is_ip {
        path.trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or("")
            .to_owned()
    } else {
        host.split('.').next().unwrap_or("").to_owned()
    }
}

fn rfc1123_now() -> String {
    jiff::Timestamp::now()
        .strftime("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

impl AzureStore {
    /// Connect to the account of `cfg`, and create the container if needed.
    pub fn open(cfg: &AzureConfig, tuning: Tuning) -> Result<AzureStore> {
        let s = AzureStore::new(cfg, tuning)?;
        s.create_container()?;
        Ok(s)
    }

    /// Connect without any request.
    pub fn new(cfg: &AzureConfig, tuning: Tuning) -> Result<AzureStore> {
        let container_full = cfg.container.trim_matches('/');
        let (container, sub) = match container_full.split_once('/') {
            Some((c, s)) => (c.to_owned(), format!("{}/", s.trim_matches('/'))),
            None => (container_full.to_owned(), String::new()),
        };
        if container.is_empty() {
            bail!(
                InvalidArgument,
                "checkpoint_storage (azure): container is empty"
            );
        }
        let decode_key = |k: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(k.trim())
                .map_err(|e| {
                    err!(
                        InvalidArgument,
                        "checkpoint_storage (azure): the account key is not base64: {e}"
                    )
                })
        };
        let (endpoint_url, auth) = if let Some(cs) = &cfg.connection_string {
            let kv = parse_connection_string(cs);
            let get = |k: &str| kv.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone());
            if get("usedevelopmentstorage").as_deref() == Some("true") {
                (
                    "http://127.0.0.1:10000/devstoreaccount1".to_owned(),
                    Auth::Key {
                        account: "devstoreaccount1".into(),
                        key: decode_key(AZURITE_KEY)?,
                    },
                )
            } else {
                let account = get("accountname");
                let endpoint = match (get("blobendpoint"), &account) {
                    (Some(e), _) => e,
                    (None, Some(a)) => format!(
                        "{}://{a}.blob.{}",
                        get("defaultendpointsprotocol").unwrap_or_else(|| "https".into()),
                        get("endpointsuffix").unwrap_or_else(|| "core.windows.net".into())
                    ),
                    (None, None) => bail!(
                        InvalidArgument,
                        "checkpoint_storage (azure): the connection string has neither AccountName nor BlobEndpoint"
                    ),
                };
                let auth = match (get("accountkey"), get("sharedaccesssignature"), account) {
                    (Some(k), _, Some(a)) => {
                        crate::log::register_secret(&k);
                        Auth::Key {
                            account: a,
                            key: decode_key(&k)?,
                        }
                    }
                    (_, Some(sas), _) => {
                        crate::log::register_secret(&sas);
                        Auth::Sas(sas.trim_start_matches('?').to_owned())
                    }
                    (Some(_), None, None) => bail!(
                        InvalidArgument,
                        "checkpoint_storage (azure): the connection string has an AccountKey but no AccountName"
                    ),
                    _ => Auth::Anonymous,
                };
                (endpoint, auth)
            }
        } else if let Some(url) = &cfg.account_url {
            let (authority, path, query) = split_url(url)?;
            let auth = match &cfg.credential {
                Some(c) if is_sas(c) => {
                    crate::log::register_secret(c);
                    Auth::Sas(c.trim_start_matches('?').to_owned())
                }
                Some(k) => {
                    crate::log::register_secret(k);
                    Auth::Key {
                        account: account_from(&authority, &path),
                        key: decode_key(k)?,
                    }
                }
                None if is_sas(&query) => {
                    crate::log::register_secret(&query);
                    Auth::Sas(query.clone())
                }
                None => Auth::Anonymous,
            };
            (format!("{authority}{path}"), auth)
        } else {
            bail!(
                InvalidArgument,
                "checkpoint_storage (azure): one of \"connection_string\" or \"account_url\" is required"
            );
        };
        let (authority, path, _) = split_url(&endpoint_url)?;
        Ok(AzureStore {
            http: Http::new(Flavor::Azure, tuning),
            endpoint: format!("{authority}{path}"),
            endpoint_path: path,
            container,
            blob_prefix: sub,
            auth,
        })
    }

    /// The blob-name prefix from `container`'s sub-path (`""` or `"sub/path/"`).
    pub fn blob_prefix(&self) -> &str {
        &self.blob_prefix
    }

    fn create_container(&self) -> Result<()> {
        let what = format!("azure://{}", self.container);
        let res = self.http.retry(|_| {
            let req = self.signed("PUT", &self.container_path(), &[("restype", "container")], &[], 0)?;
            match self.http.send(&req, Body::Empty, &what) {
                Ok(r) => {
                    log_info!("created Azure Blob Storage container {}", self.container);
                    http::read_body(r, 1 << 20, &what).map(|_| ())
                }
                Err(f) if f.code.as_deref() == Some("ContainerAlreadyExists") || f.status == Some(409) => Ok(()),
                Err(f) if f.code.as_deref() == Some("InvalidUri") => {
                    log_warn!(
                        "creating container {}: {} (ignored: the account url may point at a container)",
                        self.container,
                        f.error
                    );
                    Ok(())
                }
                Err(f) => Err(f),
            }
        });
        res.map_err(|e| {
            e.context(format!(
                "azure: cannot create container {:?}",
                self.container
            ))
        })
    }

    fn container_path(&self) -> String {
        format!("{}/{}", self.endpoint_path, encode(&self.container, false))
    }

    fn blob_path(&self, key: &str) -> String {
        format!(
            "{}/{}/{}",
            self.endpoint_path,
            encode(&self.container, false),
            encode(key, true)
        )
    }

    /// A request for `path` (already encoded) with `query` and extra headers, signed.
    fn signed(
        &self,
        method: &'static str,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, String)],
        content_length: u64,
    ) -> std::result::Result<Request, Failure> {
        let authority = &self.endpoint[..self.endpoint.len() - self.endpoint_path.len()];
        let mut qs: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k, false), encode(v, false)))
            .collect();
        if let Auth::Sas(sas) = &self.auth {
            qs.push(sas.clone());
        }
        let mut url = format!("{authority}{path}");
        if !qs.is_empty() {
            url.push('?');
            url.push_str(&qs.join("&"));
        }
        let date = rfc1123_now();
        let mut req = Request::new(method, url)
            .header("x-ms-date", date.clone())
            .header("x-ms-version", API_VERSION);
        for (k, v) in headers {
            req = req.header(k, v.clone());
        }
        if let Auth::Key { account, key } = &self.auth {
            let h = |name: &str| {
                headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.as_str())
                    .unwrap_or("")
            };
            let mut ms: Vec<(String, String)> = headers
                .iter()
                .filter(|(k, _)| k.to_ascii_lowercase().starts_with("x-ms-"))
                .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            ms.push(("x-ms-date".into(), date));
            ms.push(("x-ms-version".into(), API_VERSION.into()));
            ms.sort();
            let mut canon = String::new();
            for (k, v) in &ms {
                canon.push_str(&format!("{k}:{v}\n"));
            }
            let mut resource = format!("/{account}{path}");
            let mut q: Vec<(String, String)> = query
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), (*v).to_owned()))
                .collect();
            q.sort();
            for (k, v) in q {
                resource.push_str(&format!("\n{k}:{}", decode(&encode(&v, false), false)));
            }
            let len = if content_length == 0 {
                String::new()
            } else {
                content_length.to_string()
            };
            let to_sign = format!(
                "{method}\n{}\n{}\n{len}\n{}\n{}\n\n{}\n{}\n{}\n{}\n{}\n{canon}{resource}",
                h("content-encoding"),
                h("content-language"),
                h("content-md5"),
                h("content-type"),
                h("if-modified-since"),
                h("if-match"),
                h("if-none-match"),
                h("if-unmodified-since"),
                h("range"),
            );
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key)
                .map_err(|_| Failure::fatal(err!(InvalidArgument, "azure: bad account key")))?;
            mac.update(to_sign.as_bytes());
            let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
            req = req.header("Authorization", format!("SharedKey {account}:{sig}"));
        }
        Ok(req)
    }

    fn block_id(number: u32) -> String {
        base64::engine::general_purpose::STANDARD.encode(format!("detcore-block-{number:08}"))
    }
}

impl ObjectStore for AzureStore {
    fn name(&self) -> &'static str {
        "azure"
    }

    fn url(&self, key: &str) -> String {
        if key.is_empty() {
            format!("azure://{}", self.container)
        } else {
            format!("azure://{}/{key}", self.container)
        }
    }

    fn http(&self) -> &Http {
        &self.http
    }

    fn put(&self, key: &str, body: Body<'_>) -> Result<()> {
        let what = self.url(key);
        self.http.retry(|_| {
            let req = self.signed(
                "PUT",
                &self.blob_path(key),
                &[],
                &[("x-ms-blob-type", "BlockBlob".into())],
                body.len(),
            )?;
            let resp = self.http.send(&req, body, &what)?;
            http::read_body(resp, 1 << 20, &what).map(|_| ())
        })
    }

    fn supports_parts(&self) -> bool {
        true
    }

    fn part_limits(&self) -> (u64, u64) {
        (1 << 20, 50_000)
    }

    fn begin_parts(&self, _key: &str) -> Result<String> {
        // Blocks need no session: uncommitted blocks wait for Put Block List.
        Ok(String::new())
    }

    fn put_part(&self, key: &str, _upload: &str, number: u32, body: Body<'_>) -> Result<String> {
        let what = format!("{} (block {number})", self.url(key));
        let id = Self::block_id(number);
        self.http.retry(|_| {
            let req = self.signed(
                "PUT",
                &self.blob_path(key),
                &[("blockid", &id), ("comp", "block")],
                &[],
                body.len(),
            )?;
            let resp = self.http.send(&req, body, &what)?;
            http::read_body(resp, 1 << 20, &what).map(|_| ())
        })?;
        Ok(id)
    }

    fn complete_parts(&self, key: &str, _upload: &str, parts: &[String], _size: u64) -> Result<()> {
        let what = self.url(key);
        let mut body = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
        for id in parts {
            body.push_str(&format!("<Latest>{}</Latest>", xml::escape(id)));
        }
        body.push_str("</BlockList>");
        self.http.retry(|_| {
            let req = self.signed(
                "PUT",
                &self.blob_path(key),
                &[("comp", "blocklist")],
                &[("Content-Type", "application/xml".into())],
                body.len() as u64,
            )?;
            let resp = self.http.send(&req, Body::Bytes(body.as_bytes()), &what)?;
            http::read_body(resp, 1 << 20, &what).map(|_| ())
        })
    }

    fn get(
        &self,
        key: &str,
        range: Option<(u64, u64)>,
    ) -> std::result::Result<ureq::Response, Failure> {
        let headers: Vec<(&str, String)> = match range {
            Some((a, b)) => vec![("x-ms-range", format!("bytes={a}-{b}"))],
            None => vec![],
        };
        let req = self.signed("GET", &self.blob_path(key), &[], &headers, 0)?;
        self.http.send(&req, Body::Empty, &self.url(key))
    }

    fn head(&self, key: &str) -> Result<Option<u64>> {
        let what = self.url(key);
        self.http.retry(|_| {
            let req = self.signed("HEAD", &self.blob_path(key), &[], &[], 0)?;
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
        let what = format!("{} (listing)", self.url(prefix));
        let mut out = Vec::new();
        let mut marker = String::new();
        loop {
            let body = self.http.retry(|_| {
                let mut q: Vec<(&str, &str)> = vec![
                    ("comp", "list"),
                    ("prefix", prefix),
                    ("restype", "container"),
                ];
                if !marker.is_empty() {
                    q.push(("marker", &marker));
                }
                let req = self.signed("GET", &self.container_path(), &q, &[], 0)?;
                let resp = self.http.send(&req, Body::Empty, &what)?;
                http::read_body(resp, 64 << 20, &what)
            })?;
            let text = String::from_utf8_lossy(&body);
            let text = text.trim_start_matches('\u{feff}');
            let doc = xml::parse(text).map_err(|e| e.context(&what))?;
            if let Some(blobs) = doc.child("Blobs") {
                for b in blobs.children_named("Blob") {
                    let key = b.child_text("Name").unwrap_or_default();
                    let size = b
                        .child("Properties")
                        .and_then(|p| p.child_text("Content-Length"))
                        .and_then(|s| s.trim().parse::<u64>().ok())
                        .ok_or_else(|| {
                            err!(Storage, "{what}: blob {key:?} has no valid Content-Length")
                        })?;
                    out.push(ObjectInfo { key, size });
                }
            }
            match doc.child_text("NextMarker").filter(|m| !m.is_empty()) {
                Some(m) => marker = m,
                None => return Ok(out),
            }
        }
    }

    fn delete(&self, keys: &[String]) -> Result<()> {
        let threads = self.http.tuning().concurrency.min(keys.len().max(1));
        super::pool::Pool::new(keys.iter()).try_run(threads, false, |key, _| {
            let what = self.url(key);
            self.http.retry(|_| {
                let req = self.signed("DELETE", &self.blob_path(key), &[], &[], 0)?;
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

    #[test]
    fn connection_strings_and_urls() {
        let cfg = AzureConfig {
            container: "ckpts/sub/dir/".into(),
            connection_string: Some(format!(
                "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
            )),
            ..AzureConfig::default()
        };
        let s = AzureStore::new(&cfg, Tuning::default()).unwrap();
        assert_eq!(s.container, "ckpts");
        assert_eq!(s.blob_prefix(), "sub/dir/");
        assert_eq!(s.endpoint, "http://127.0.0.1:10000/devstoreaccount1");
        assert_eq!(s.blob_path("a b/c"), "/devstoreaccount1/ckpts/a%20b/c");
        let r = s.signed("GET", &s.blob_path("x"), &[], &[], 0).unwrap();
        assert!(r
            .headers
            .iter()
            .any(|(k, v)| k == "Authorization" && v.starts_with("SharedKey devstoreaccount1:")));

        let cfg = AzureConfig {
            container: "c".into(),
            account_url: Some("https://acct.blob.core.windows.net/".into()),
            credential: Some("sv=2020-01-01&sig=abc%3D".into()),
            ..AzureConfig::default()
        };
        let s = AzureStore::new(&cfg, Tuning::default()).unwrap();
        let r = s
            .signed("GET", &s.blob_path("k"), &[("comp", "list")], &[], 0)
            .unwrap();
        assert_eq!(
            r.url,
            "https://acct.blob.core.windows.net/c/k?comp=list&sv=2020-01-01&sig=abc%3D"
        );
        assert!(!r.headers.iter().any(|(k, _)| k == "Authorization"));
        assert_eq!(account_from("acct.blob.core.windows.net", ""), "acct");
        assert_eq!(account_from("127.0.0.1:10000", "/dev1"), "dev1");
        // As `split_url` gives them (the scheme included): the key signs for the right account.
        let (authority, path, _) = split_url("https://acct.blob.core.windows.net/").unwrap();
        assert_eq!(account_from(&authority, &path), "acct");
        let (authority, path, _) = split_url("http://127.0.0.1:10000/devstoreaccount1").unwrap();
        assert_eq!(account_from(&authority, &path), "devstoreaccount1");
        let cfg = AzureConfig {
            container: "c".into(),
            account_url: Some("https://acct.blob.core.windows.net".into()),
            credential: Some(AZURITE_KEY.into()),
            ..AzureConfig::default()
        };
        let s = AzureStore::new(&cfg, Tuning::default()).unwrap();
        let r = s.signed("GET", &s.blob_path("k"), &[], &[], 0).unwrap();
        assert!(r
            .headers
            .iter()
            .any(|(k, v)| k == "Authorization" && v.starts_with("SharedKey acct:")));
        let bad = AzureConfig {
            container: "c".into(),
            account_url: Some("https://a.blob.core.windows.net".into()),
            credential: Some("not base64!".into()),
            ..AzureConfig::default()
        };
        assert!(AzureStore::new(&bad, Tuning::default())
            .err()
            .unwrap()
            .message()
            .contains("base64"));
    }
}
