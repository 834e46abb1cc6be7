//! Google credentials for the GCS backend: Application Default Credentials in google-auth's
//! order (what Determined's `google.cloud.storage.Client()` uses), access tokens cached and
//! renewed before they expire ([`super::credentials::Refreshing`]).
//!
//! The first source that is configured wins:
//! 1. `GOOGLE_OAUTH_ACCESS_TOKEN`: a ready access token, used as it is (detcore's own variable,
//!    for tokens minted elsewhere, e.g. `gcloud auth print-access-token`);
//! 2. the key file named by `GOOGLE_APPLICATION_CREDENTIALS` (it must exist);
//! 3. gcloud's application-default file (`$CLOUDSDK_CONFIG` or `~/.config/gcloud`, then
//!    `application_default_credentials.json`), if present.
//!
//!    A key file is a service-account key (a JWT signed with RS256 is exchanged at its
//!    `token_uri` for an access token) or an `authorized_user` file (its refresh token is
//!    exchanged at the token endpoint); other types (workload identity federation, impersonation)
//!    are refused with a clear error;
//! 4. the GCE / GKE metadata server: detected with a `GET /` carrying `Metadata-Flavor: Google`
//!    that must be answered with the same header (or, if it is not, a machine whose DMI product
//!    name says Google), then tokens from
//!    `/computeMetadata/v1/instance/service-accounts/default/token`. Its address is
//!    `GCE_METADATA_HOST` (or the older `GCE_METADATA_ROOT`), else `169.254.169.254`; the
//!    detection goes to `GCE_METADATA_IP` if set, else to the same address (google-auth would
//!    still probe `169.254.169.254` when only the host is set). The detection waits at most
//!    `GCE_METADATA_TIMEOUT` seconds (default 1; google-auth's is 3) and is tried
//!    `GCE_METADATA_DETECT_RETRIES` times (default 1; google-auth's is 3), so a machine outside
//!    Google Cloud costs at most about a second at init. `NO_GCE_CHECK=true` skips it.
//!
//! With `STORAGE_EMULATOR_HOST` (an emulator), the metadata server is only used when one of its
//! variables is set, and no credentials at all (anonymous requests) are used when nothing is
//! configured, as google-cloud-storage does with an emulator.

use super::credentials::{self, call_retrying, CallError, Env, Fetched, Refreshing, Tried};
use crate::error::{Error, Kind, Result};
use crate::json::Value;
use crate::percent::encode;
use base64::Engine as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The scope asked for: read and write objects.
pub const SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_write";
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

    /// A signed JWT asserting this account for `SCOPE`, valid for an hour from `now`, for
    /// Google's token endpoint (its audience, as google-auth sends it, even when the key names
    /// another `token_uri`).
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
        // google-auth's audience, whatever the token_uri.
        claims.insert("aud", Value::from(DEFAULT_TOKEN_URI));
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

fn form_encode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k, false), encode(v, false)))
        .collect::<Vec<_>>()
        .join("&")
}

/// An access token and when it expires, from a token answer (`access_token`, `expires_in`).
fn token_from_answer(text: &str, what: &str) -> Result<Fetched<String>> {
    let v = crate::json::parse(text).map_err(|e| e.context(format!("gcs: {what}")))?;
    let token = v
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| err!(Storage, "gcs: {what}: no access_token in the answer"))?
        .to_owned();
    crate::log::register_secret(&token);
    let ttl = v
        .get("expires_in")
        .and_then(Value::as_f64)
        .filter(|t| t.is_finite() && *t > 0.0)
        .unwrap_or(3600.0);
    Ok(Fetched {
        value: token,
        expires: Some(SystemTime::now() + crate::time::secs(ttl)),
    })
}

/// An OAuth token endpoint fed with a form body.
struct Exchange {
    token_uri: String,
    form: Box<dyn Fn() -> Result<String> + Send + Sync>,
    agent: ureq::Agent,
    what: String,
}

impl Exchange {
    fn fetch(&self) -> Result<Fetched<String>> {
        let body = (self.form)()?;
        let target = format!("{} (token for {})", self.token_uri, self.what);
        let res = call_retrying(
            &self.agent,
            3,
            Duration::from_secs(1),
            "POST",
            &self.token_uri,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            Some(body.as_bytes()),
            &[],
        );
        match res {
            Ok((text, _)) => token_from_answer(&text, &target),
            Err(CallError::Status { status, body }) => {
                // OAuth errors: {"error": "invalid_grant", "error_description": "…"}.
                let v = crate::json::parse(&body).ok();
                let field = |k: &str| {
                    v.as_ref()
                        .and_then(|v| v.get(k))
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned()
                };
                bail!(
                    Storage,
                    "gcs: {target}: HTTP {status} {}: {}",
                    field("error"),
                    crate::log::redact(&field("error_description"))
                )
            }
            Err(e) => Err(e.into_error(Kind::Storage, &format!("gcs: {target}"))),
        }
    }
}

fn exchange_from_file(path: &Path, timeout: Duration) -> Result<Exchange> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io("gcs: cannot read the credentials file", path, e))?;
    let v = crate::json::parse(&text).map_err(|e| e.context(format!("gcs: {}", path.display())))?;
    let agent = credentials::agent(timeout);
    match v.get("type").and_then(Value::as_str) {
        Some("service_account") => {
            let sa = ServiceAccount::from_json(&v)?;
            Ok(Exchange {
                what: format!("service account {}", sa.email),
                token_uri: sa.token_uri.clone(),
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
                agent,
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
            Ok(Exchange {
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
                agent,
            })
        }
        Some(t @ ("external_account" | "impersonated_service_account" | "external_account_authorized_user")) => bail!(
            Unsupported,
            "gcs: {}: credentials of type {t:?} are not supported by detcore (use a service-account \
             key, gcloud's user credentials, or the metadata server)",
            path.display()
        ),
        other => bail!(
            InvalidArgument,
            "gcs: {}: unsupported credentials type {:?} (expected service_account or authorized_user)",
            path.display(),
            other.unwrap_or("none")
        ),
    }
}

/// The GCE / GKE metadata server.
struct Metadata {
    host: String,
    agent: ureq::Agent,
}

impl Metadata {
    fn name(&self) -> String {
        format!("GCE metadata server at {}", self.host)
    }

    fn fetch(&self) -> Result<Fetched<String>> {
        let what = self.name();
        let url = format!(
            "http://{}/computeMetadata/v1/instance/service-accounts/default/token?scopes={}",
            self.host,
            encode(SCOPE, false)
        );
        let (text, _) = call_retrying(
            &self.agent,
            3,
            Duration::from_millis(500),
            "GET",
            &url,
            &[("Metadata-Flavor", "Google")],
            None,
            &[],
        )
        .map_err(|e| e.into_error(Kind::Storage, &format!("gcs: {what}")))?;
        token_from_answer(&text, &what)
    }
}

/// Detect the metadata server; `Err` says why it is not used.
fn metadata(env: &Env, emulator: bool) -> std::result::Result<Metadata, String> {
    if env.flag("NO_GCE_CHECK") {
        return Err("skipped (NO_GCE_CHECK=true)".into());
    }
    let named = env
        .get("GCE_METADATA_HOST")
        .or_else(|| env.get("GCE_METADATA_ROOT"));
    let ping_host = env.get("GCE_METADATA_IP").or_else(|| named.clone());
    let explicit = ping_host.is_some();
    if emulator && !explicit {
        return Err(
            "not probed with STORAGE_EMULATOR_HOST (set GCE_METADATA_HOST to use one)".into(),
        );
    }
    let host = named.unwrap_or_else(|| "169.254.169.254".into());
    let ping_host = ping_host.unwrap_or_else(|| "169.254.169.254".into());
    let timeout = env
        .seconds("GCE_METADATA_TIMEOUT", 1.0)
        .map_err(|e| e.to_string())?;
    let attempts = env
        .count("GCE_METADATA_DETECT_RETRIES", 1)
        .map_err(|e| e.to_string())?;
    let probe = credentials::agent(timeout);
    let ping = call_retrying(
        &probe,
        attempts,
        Duration::ZERO,
        "GET",
        &format!("http://{ping_host}/"),
        &[("Metadata-Flavor", "Google")],
        None,
        &["metadata-flavor"],
    );
    let found = match ping {
        Ok((_, h)) if h[0].as_deref() == Some("Google") => Ok(()),
        Ok(_) => Err(format!(
            "http://{ping_host}/ answered without Metadata-Flavor: Google"
        )),
        Err(e) => Err(e.to_string()),
    };
    if let Err(why) = found {
        // google-auth's fallback: a Google Compute Engine machine by its DMI product name (not
        // when the address was given: then it had to answer).
        if explicit {
            return Err(why);
        }
        let dmi = std::fs::read_to_string("/sys/class/dmi/id/product_name").unwrap_or_default();
        if !dmi.trim().starts_with("Google") {
            return Err(why);
        }
        log_warn!(
            "the GCE metadata server did not answer its probe ({why}), but this machine is a Google Compute Engine VM; trying it anyway"
        );
    }
    Ok(Metadata {
        host,
        agent: credentials::agent(timeout.max(Duration::from_secs(3))),
    })
}

enum Source {
    /// No Authorization header (an emulator).
    Anonymous,
    /// A fixed token.
    Token(Arc<String>),
    Refreshing(Refreshing<String>),
}

/// The credentials the chain chose.
pub struct GcpAuth {
    source: Source,
    what: String,
}

fn adc_file(env: &Env) -> Option<PathBuf> {
    let base = env.get("CLOUDSDK_CONFIG").map(PathBuf::from).or_else(|| {
        env.get("HOME")
            .map(|h| PathBuf::from(h).join(".config/gcloud"))
    })?;
    Some(base.join("application_default_credentials.json"))
}

impl GcpAuth {
    /// No credentials (an emulator).
    pub fn anonymous() -> GcpAuth {
        GcpAuth {
            source: Source::Anonymous,
            what: "no credentials (emulator)".into(),
        }
    }

    /// The credentials of a key file (service account or authorized user).
    pub fn from_file(path: &Path, timeout: Duration) -> Result<GcpAuth> {
        let x = exchange_from_file(path, timeout)?;
        let what = x.what.clone();
        let first = x.fetch()?;
        Ok(GcpAuth {
            source: Source::Refreshing(Refreshing::new(
                what.clone(),
                first,
                Box::new(move || x.fetch()),
            )),
            what,
        })
    }

    /// Resolve the chain of the module docs from `env`. `emulator`: `STORAGE_EMULATOR_HOST` is
    /// set. `timeout`: for token endpoints.
    pub fn resolve(env: &Env, emulator: bool, timeout: Duration) -> Result<GcpAuth> {
        let a = Self::chain(env, emulator, timeout)?;
        log_info!("GCS credentials: {}", a.what);
        Ok(a)
    }

    fn chain(env: &Env, emulator: bool, timeout: Duration) -> Result<GcpAuth> {
        let mut tried = Tried::default();
        if let Some(t) = env.get("GOOGLE_OAUTH_ACCESS_TOKEN") {
            crate::log::register_secret(&t);
            return Ok(GcpAuth {
                source: Source::Token(Arc::new(t)),
                what: "the access token in GOOGLE_OAUTH_ACCESS_TOKEN".into(),
            });
        }
        tried.add("GOOGLE_OAUTH_ACCESS_TOKEN", "not set");
        if let Some(p) = env.get("GOOGLE_APPLICATION_CREDENTIALS") {
            let p = credentials::expand_home(&p, env);
            return Self::from_file(&p, timeout)
                .map_err(|e| e.context("GOOGLE_APPLICATION_CREDENTIALS"));
        }
        tried.add("GOOGLE_APPLICATION_CREDENTIALS", "not set");
        match adc_file(env) {
            Some(p) if p.is_file() => return Self::from_file(&p, timeout),
            Some(p) => tried.add(
                format!("gcloud application-default credentials {}", p.display()),
                "no such file",
            ),
            None => tried.add("gcloud application-default credentials", "no $HOME"),
        }
        match metadata(env, emulator) {
            Ok(m) => {
                let what = m.name();
                let first = m.fetch()?;
                return Ok(GcpAuth {
                    source: Source::Refreshing(Refreshing::new(
                        what.clone(),
                        first,
                        Box::new(move || m.fetch()),
                    )),
                    what,
                });
            }
            Err(why) => tried.add("GCE metadata server", why),
        }
        if emulator {
            return Ok(GcpAuth::anonymous());
        }
        Err(err!(
            InvalidArgument,
            "checkpoint_storage (gcs): no credentials found. Tried, in order:{}\nSet \
             GOOGLE_APPLICATION_CREDENTIALS to a service-account key file, run `gcloud auth \
             application-default login`, or run on Google Cloud with a service account \
             (GCE, GKE Workload Identity)",
            tried.lines()
        ))
    }

    /// The access token for the next request (`None`: anonymous).
    pub fn token(&self) -> Result<Option<Arc<String>>> {
        match &self.source {
            Source::Anonymous => Ok(None),
            Source::Token(t) => Ok(Some(t.clone())),
            Source::Refreshing(r) => r.get().map(Some),
        }
    }

    /// The store refused `token` (HTTP 401): renew it before the next request. True when it can
    /// be renewed (worth another attempt).
    pub fn refused(&self, token: &str) -> bool {
        match &self.source {
            Source::Refreshing(r) => {
                r.invalidate(|t| t == token);
                true
            }
            _ => false,
        }
    }

    /// The source, for messages.
    pub fn describe(&self) -> &str {
        &self.what
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::testserver::{closed_port, Resp, Server};

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
            Some("https://oauth2.googleapis.com/token")
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

    fn tmpdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("detcore-gcp-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    const T: Duration = Duration::from_secs(5);

    /// A metadata server: the probe and the token, both only with `Metadata-Flavor: Google`.
    fn metadata_server(ttl: u32) -> Server {
        let n = std::sync::atomic::AtomicU32::new(0);
        Server::start(move |r| {
            if r.header("metadata-flavor") != Some("Google") {
                return Resp::status(403, "Missing Metadata-Flavor:Google header.");
            }
            match r.path.split('?').next().unwrap() {
                "/" => Resp::ok("computeMetadata/\n").header("Metadata-Flavor", "Google"),
                "/computeMetadata/v1/instance/service-accounts/default/token" => {
                    let k = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    Resp::ok(format!(
                        r#"{{"access_token":"ya29.meta-{k}","expires_in":{ttl},"token_type":"Bearer"}}"#
                    ))
                    .header("Metadata-Flavor", "Google")
                }
                _ => Resp::status(404, "not found"),
            }
        })
    }

    #[test]
    fn metadata_server_tokens_are_renewed_before_they_expire() {
        let md = metadata_server(2);
        let env = Env::from_pairs(&[("GCE_METADATA_HOST", &md.host()), ("HOME", "/nonexistent")]);
        let a = GcpAuth::resolve(&env, false, T).unwrap();
        assert!(a.describe().contains(&md.host()), "{}", a.describe());
        assert_eq!(a.token().unwrap().unwrap().as_str(), "ya29.meta-1");
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(a.token().unwrap().unwrap().as_str(), "ya29.meta-2");
        let reqs = md.requests();
        assert_eq!(reqs[0].path, "/", "the probe comes first");
        assert!(reqs[1].path.starts_with(
            "/computeMetadata/v1/instance/service-accounts/default/token?scopes=https%3A%2F%2F"
        ));
        // With an emulator, only an explicitly named metadata server is used.
        let a = GcpAuth::resolve(&Env::from_pairs(&[("HOME", "/nonexistent")]), true, T).unwrap();
        assert!(a.token().unwrap().is_none());
    }

    #[test]
    fn a_server_that_is_not_a_metadata_server_is_not_used() {
        let other = Server::start(|_| Resp::ok("hello"));
        let env = Env::from_pairs(&[
            ("GCE_METADATA_HOST", &other.host()),
            ("HOME", "/nonexistent"),
        ]);
        let e = GcpAuth::resolve(&env, false, T).err().unwrap();
        assert!(
            e.message().contains("without Metadata-Flavor: Google"),
            "{e}"
        );
    }

    #[test]
    fn authorized_user_refresh_token_is_exchanged() {
        let tok = Server::start(|r| {
            if r.body.contains("grant_type=refresh_token")
                && r.body.contains("refresh_token=1%2F%2Frefresh")
                && r.body.contains("client_id=cid")
            {
                Resp::ok(r#"{"access_token":"ya29.user","expires_in":3599}"#)
            } else {
                Resp::status(
                    400,
                    r#"{"error":"invalid_grant","error_description":"Bad Request"}"#,
                )
            }
        });
        let d = tmpdir();
        let f = d.join("adc.json");
        std::fs::write(
            &f,
            format!(
                r#"{{"type":"authorized_user","client_id":"cid","client_secret":"csecret","refresh_token":"1//refresh","token_uri":"{}/token"}}"#,
                tok.url()
            ),
        )
        .unwrap();
        // gcloud's application-default file, found through CLOUDSDK_CONFIG.
        std::fs::rename(&f, d.join("application_default_credentials.json")).unwrap();
        let env = Env::from_pairs(&[("CLOUDSDK_CONFIG", d.to_str().unwrap())]);
        let a = GcpAuth::resolve(&env, false, T).unwrap();
        assert_eq!(a.token().unwrap().unwrap().as_str(), "ya29.user");
        // A refused grant names the endpoint's error.
        std::fs::write(
            d.join("application_default_credentials.json"),
            format!(
                r#"{{"type":"authorized_user","client_id":"cid","client_secret":"csecret","refresh_token":"revoked","token_uri":"{}/token"}}"#,
                tok.url()
            ),
        )
        .unwrap();
        let e = GcpAuth::resolve(&env, false, T).err().unwrap();
        assert!(
            e.message().contains("HTTP 400 invalid_grant: Bad Request"),
            "{e}"
        );
        assert!(!e.message().contains("csecret"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn no_source_names_every_source_tried() {
        let port = closed_port();
        let env = Env::from_pairs(&[
            ("HOME", "/nonexistent"),
            ("GCE_METADATA_HOST", &format!("127.0.0.1:{port}")),
        ]);
        let e = GcpAuth::resolve(&env, false, T).err().unwrap();
        let m = e.message();
        for s in [
            "no credentials found",
            "1. GOOGLE_OAUTH_ACCESS_TOKEN: not set",
            "2. GOOGLE_APPLICATION_CREDENTIALS: not set",
            "3. gcloud application-default credentials /nonexistent/.config/gcloud/application_default_credentials.json: no such file",
            "4. GCE metadata server: GET http://127.0.0.1:",
        ] {
            assert!(m.contains(s), "{s:?} not in {m}");
        }
        assert_eq!(e.kind(), Kind::InvalidArgument);
        let env = Env::from_pairs(&[("HOME", "/nonexistent"), ("NO_GCE_CHECK", "true")]);
        let e = GcpAuth::resolve(&env, false, T).err().unwrap();
        assert!(e.message().contains("skipped (NO_GCE_CHECK=true)"), "{e}");
        // A named key file that is missing is an error of its own, not a fall-through.
        let env = Env::from_pairs(&[("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/k.json")]);
        let e = GcpAuth::resolve(&env, true, T).err().unwrap();
        assert!(
            e.message().contains("GOOGLE_APPLICATION_CREDENTIALS")
                && e.message().contains("/nonexistent/k.json"),
            "{e}"
        );
        // Workload identity federation files are refused clearly.
        let d = tmpdir();
        std::fs::write(d.join("x.json"), r#"{"type": "external_account"}"#).unwrap();
        let p = d.join("x.json");
        let env = Env::from_pairs(&[("GOOGLE_APPLICATION_CREDENTIALS", p.to_str().unwrap())]);
        let e = GcpAuth::resolve(&env, false, T).err().unwrap();
        assert_eq!(e.kind(), Kind::Unsupported, "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
