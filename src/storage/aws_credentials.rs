//! AWS credentials and region for the S3 backend: the default chain of the AWS SDKs, in
//! botocore's order (the one Determined's boto3 client follows), each source's credentials
//! cached and renewed before they expire ([`super::credentials::Refreshing`]).
//!
//! Credentials, the first source that is configured wins:
//! 1. `access_key` / `secret_key` (+ `session_token`) of the storage config;
//! 2. `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`);
//! 3. web identity: a token file (`AWS_WEB_IDENTITY_TOKEN_FILE`, else the profile's
//!    `web_identity_token_file`) exchanged for a role's credentials (`AWS_ROLE_ARN` / `role_arn`,
//!    session `AWS_ROLE_SESSION_NAME` / `role_session_name`) with STS
//!    `AssumeRoleWithWebIdentity` (EKS IRSA). The file is read again at each renewal (kubelet
//!    rotates it). STS: `AWS_ENDPOINT_URL_STS`, else `AWS_ENDPOINT_URL`, else the regional
//!    endpoint (the global one without a region);
//! 4. the profile (`AWS_PROFILE`, else `AWS_DEFAULT_PROFILE`, else `default`) of the shared
//!    credentials file (`AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`), re-read when the
//!    file changes (checked at most every 2 s, as Determined does);
//! 5. the profile's keys in the config file (`AWS_CONFIG_FILE`, else `~/.aws/config`);
//! 6. container credentials: `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` (on `169.254.170.2`) or
//!    `AWS_CONTAINER_CREDENTIALS_FULL_URI` (https, or http to a loopback address or the ECS/EKS
//!    agent addresses), with `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` (read at each renewal) or
//!    `AWS_CONTAINER_AUTHORIZATION_TOKEN` as `Authorization` (ECS task roles, EKS Pod Identity);
//! 7. EC2 instance metadata (IMDSv2: a session token from `PUT /latest/api/token`, then the
//!    instance profile's role credentials; IMDSv1 only when the token request is refused or
//!    unanswered, as botocore does, unless `AWS_EC2_METADATA_V1_DISABLED=true`). Endpoint
//!    `AWS_EC2_METADATA_SERVICE_ENDPOINT`, else `http://169.254.169.254` (`[fd00:ec2::254]` with
//!    `AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6`); skipped with `AWS_EC2_METADATA_DISABLED=true`.
//!    Each request waits at most `AWS_METADATA_SERVICE_TIMEOUT` seconds (default 1) and is made
//!    `AWS_METADATA_SERVICE_NUM_ATTEMPTS` times (default 1), so a machine without IMDS costs at
//!    most about a second at init.
//!
//! A source that is configured but fails (a web identity STS refuses, a container endpoint that
//! does not answer) is an error, as in botocore; the chain does not fall through to the next.
//! Profiles that assume a role from another profile, use IAM Identity Center (SSO) or a
//! `credential_process` are refused with a clear error rather than skipped.
//!
//! Region: `region` of the config, `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's `region` in
//! the config file, then (only for AWS itself, i.e. without a custom endpoint, and when IMDS is
//! enabled and answered) the instance's region from IMDS, else `us-east-1`.

use super::config::S3Config;
use super::credentials::{self, call_retrying, CallError, Env, Fetched, Refreshing, Tried};
use crate::error::{Kind, Result};
use crate::json::Value;
use crate::percent::encode;
use parking_lot::Mutex;
use std::path::PathBuf;
use std::sync::Arc;
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

impl AwsCredentials {
    fn register(self) -> AwsCredentials {
        crate::log::register_secret(&self.secret);
        if let Some(t) = &self.token {
            crate::log::register_secret(t);
        }
        self
    }
}

type Section = (String, Vec<(String, String)>);

/// The sections of an AWS INI file: `[name]` → key/value pairs (keys lowercased).
pub fn parse_ini(text: &str) -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
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

fn get<'a>(kv: &'a [(String, String)], k: &str) -> Option<&'a str> {
    kv.iter()
        .find(|(a, _)| a == k)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// The profile in the shared files.
struct Profiles {
    name: String,
    /// Named by `AWS_PROFILE`/`AWS_DEFAULT_PROFILE` (then it must exist).
    explicit: bool,
    creds_path: Option<PathBuf>,
    config_path: Option<PathBuf>,
    creds: Option<Vec<Section>>,
    config: Option<Vec<Section>>,
}

fn read_ini(path: &Option<PathBuf>) -> Option<Vec<Section>> {
    let text = std::fs::read_to_string(path.as_ref()?).ok()?;
    Some(parse_ini(&text))
}

/// The `[name]` section of a credentials file.
fn creds_section<'a>(ini: &'a [Section], profile: &str) -> Option<&'a [(String, String)]> {
    ini.iter()
        .find(|(s, _)| s == profile)
        .map(|(_, kv)| kv.as_slice())
}

/// The `[profile name]` section of a config file (`[default]` for the default profile).
fn config_section<'a>(ini: &'a [Section], profile: &str) -> Option<&'a [(String, String)]> {
    ini.iter()
        .find(|(s, _)| {
            let mut w = s.split_whitespace();
            (w.next() == Some("profile") && w.next() == Some(profile) && w.next().is_none())
                || (profile == "default" && s == "default")
        })
        .map(|(_, kv)| kv.as_slice())
}

impl Profiles {
    fn load(env: &Env) -> Profiles {
        let named = env
            .get("AWS_PROFILE")
            .or_else(|| env.get("AWS_DEFAULT_PROFILE"));
        let creds_path = env.home_file("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials");
        let config_path = env.home_file("AWS_CONFIG_FILE", ".aws/config");
        Profiles {
            explicit: named.is_some(),
            name: named.unwrap_or_else(|| "default".into()),
            creds: read_ini(&creds_path),
            config: read_ini(&config_path),
            creds_path,
            config_path,
        }
    }

    fn config_kv(&self) -> Option<&[(String, String)]> {
        config_section(self.config.as_ref()?, &self.name)
    }

    fn creds_kv(&self) -> Option<&[(String, String)]> {
        creds_section(self.creds.as_ref()?, &self.name)
    }

    fn config_value(&self, k: &str) -> Option<String> {
        self.config_kv()
            .and_then(|kv| get(kv, k))
            .map(str::to_owned)
    }

    fn show(path: &Option<PathBuf>) -> String {
        path.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "(no $HOME)".into())
    }
}

/// Static keys of a profile section; `Ok(None)` without `aws_access_key_id`.
fn keys_of(kv: &[(String, String)], what: &str) -> Result<Option<AwsCredentials>> {
    match (
        get(kv, "aws_access_key_id"),
        get(kv, "aws_secret_access_key"),
    ) {
        (Some(k), Some(s)) => Ok(Some(AwsCredentials {
            key: k.to_owned(),
            secret: s.to_owned(),
            token: get(kv, "aws_session_token").map(str::to_owned),
        })),
        (None, None) => Ok(None),
        (Some(_), None) => bail!(
            InvalidArgument,
            "checkpoint_storage (s3): {what} has aws_access_key_id but no aws_secret_access_key"
        ),
        (None, Some(_)) => bail!(
            InvalidArgument,
            "checkpoint_storage (s3): {what} has aws_secret_access_key but no aws_access_key_id"
        ),
    }
}

/// The shared credentials file's profile, re-read when the file changes.
struct FileSource {
    path: PathBuf,
    profile: String,
    state: Mutex<FileState>,
}

struct FileState {
    creds: Arc<AwsCredentials>,
    mtime: Option<SystemTime>,
    checked: Instant,
}

impl FileSource {
    fn get(&self) -> Arc<AwsCredentials> {
        let mut s = self.state.lock();
        if s.checked.elapsed() >= Duration::from_secs(2) {
            s.checked = Instant::now();
            let mtime = std::fs::metadata(&self.path)
                .and_then(|m| m.modified())
                .ok();
            if mtime != s.mtime {
                let fresh = std::fs::read_to_string(&self.path).ok().and_then(|t| {
                    keys_of(creds_section(&parse_ini(&t), &self.profile)?, "").ok()?
                });
                match fresh {
                    Some(c) => {
                        log_info!("reloaded S3 credentials from {}", self.path.display());
                        s.creds = Arc::new(c.register());
                    }
                    None => log_warn!(
                        "{} changed but has no complete keys for profile [{}]; keeping the previous ones",
                        self.path.display(),
                        self.profile
                    ),
                }
                s.mtime = mtime;
            }
        }
        s.creds.clone()
    }
}

/// EC2 instance metadata (IMDS).
#[derive(Clone)]
pub struct Imds {
    base: String,
    agent: ureq::Agent,
    attempts: u32,
    v1_allowed: bool,
}

const IMDS_TOKEN_TTL: &str = "21600";

impl Imds {
    /// The IMDS client the environment asks for; `None` when disabled.
    pub fn from_env(env: &Env) -> Result<Option<Imds>> {
        if env.flag("AWS_EC2_METADATA_DISABLED") {
            return Ok(None);
        }
        let base = match env.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") {
            Some(e) => e,
            None if env
                .get("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE")
                .is_some_and(|m| m.eq_ignore_ascii_case("ipv6")) =>
            {
                "http://[fd00:ec2::254]".into()
            }
            None => "http://169.254.169.254".into(),
        };
        if url::Url::parse(&base).is_err() {
            bail!(
                InvalidArgument,
                "AWS_EC2_METADATA_SERVICE_ENDPOINT: {base:?} is not a URL"
            );
        }
        let timeout = env.seconds("AWS_METADATA_SERVICE_TIMEOUT", 1.0)?;
        Ok(Some(Imds {
            base: base.trim_end_matches('/').to_owned(),
            agent: credentials::agent(timeout),
            attempts: env.count("AWS_METADATA_SERVICE_NUM_ATTEMPTS", 1)?,
            v1_allowed: !env.flag("AWS_EC2_METADATA_V1_DISABLED"),
        }))
    }

    fn name(&self) -> String {
        format!("EC2 instance metadata at {}", self.base)
    }

    /// An IMDSv2 session token; `None` to go on with IMDSv1.
    fn token(&self) -> std::result::Result<Option<String>, String> {
        let r = call_retrying(
            &self.agent,
            self.attempts,
            Duration::ZERO,
            "PUT",
            &format!("{}/latest/api/token", self.base),
            &[("x-aws-ec2-metadata-token-ttl-seconds", IMDS_TOKEN_TTL)],
            None,
            &[],
        );
        let v1 = match r {
            Ok((t, _)) if !t.trim().is_empty() => {
                crate::log::register_secret(t.trim());
                return Ok(Some(t.trim().to_owned()));
            }
            Ok(_) => "an empty IMDSv2 token".to_owned(),
            // Refused (an IMDSv1-only endpoint) or unanswered (a container behind a hop limit
            // of 1 sees the request but never the answer): IMDSv1 may still work.
            Err(CallError::Status {
                status: 403..=405, ..
            }) => "no IMDSv2 token".to_owned(),
            Err(e @ CallError::Transport { connect: false, .. }) => format!("{e}"),
            Err(e) => return Err(format!("{e}")),
        };
        if self.v1_allowed {
            log_debug!("{}: {v1}; trying IMDSv1", self.name());
            Ok(None)
        } else {
            Err(format!(
                "{v1}, and IMDSv1 is disabled by AWS_EC2_METADATA_V1_DISABLED"
            ))
        }
    }

    fn get(&self, path: &str, token: Option<&str>) -> std::result::Result<String, CallError> {
        let headers: Vec<(&str, &str)> = match token {
            Some(t) => vec![("x-aws-ec2-metadata-token", t)],
            None => vec![],
        };
        call_retrying(
            &self.agent,
            self.attempts,
            Duration::ZERO,
            "GET",
            &format!("{}/{path}", self.base),
            &headers,
            None,
            &[],
        )
        .map(|(b, _)| b)
    }

    /// The instance profile's role credentials.
    pub fn credentials(&self) -> std::result::Result<Fetched<AwsCredentials>, String> {
        const ROLES: &str = "latest/meta-data/iam/security-credentials/";
        let token = self.token()?;
        let roles = match self.get(ROLES, token.as_deref()) {
            Ok(r) => r,
            Err(CallError::Status { status: 404, .. }) => {
                return Err("no IAM role is attached to this instance".into())
            }
            Err(e) => return Err(format!("{e}")),
        };
        let Some(role) = roles.lines().map(str::trim).find(|l| !l.is_empty()) else {
            return Err("no IAM role is attached to this instance".into());
        };
        let text = self
            .get(&format!("{ROLES}{role}"), token.as_deref())
            .map_err(|e| format!("role {role}: {e}"))?;
        let v = crate::json::parse(&text).map_err(|e| format!("role {role}: {e}"))?;
        if let Some(code) = v.get("Code").and_then(Value::as_str) {
            if code != "Success" {
                return Err(format!(
                    "role {role}: {code}: {}",
                    v.get("Message").and_then(Value::as_str).unwrap_or("")
                ));
            }
        }
        credentials_from_json(&v, "AccessKeyId", "SecretAccessKey", "Token", "Expiration")
            .map_err(|e| format!("role {role}: {e}"))
    }

    /// The instance's region, if IMDS tells it.
    pub fn region(&self) -> Option<String> {
        let token = self.token().ok()?;
        let r = self
            .get("latest/meta-data/placement/region", token.as_deref())
            .ok()?;
        let r = r.trim();
        (!r.is_empty() && r.len() < 64).then(|| r.to_owned())
    }
}

/// Credentials from a JSON answer with these field names.
fn credentials_from_json(
    v: &Value,
    key: &str,
    secret: &str,
    token: &str,
    expiration: &str,
) -> std::result::Result<Fetched<AwsCredentials>, String> {
    let s = |k: &str| v.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    let (Some(k), Some(sec)) = (s(key), s(secret)) else {
        return Err(format!("the answer has no {key} and {secret}"));
    };
    let expires = match s(expiration) {
        Some(e) => Some(credentials::parse_timestamp(e, "credentials").map_err(|e| e.to_string())?),
        None => None,
    };
    Ok(Fetched {
        value: AwsCredentials {
            key: k.to_owned(),
            secret: sec.to_owned(),
            token: s(token).map(str::to_owned),
        }
        .register(),
        expires,
    })
}

/// ECS / EKS Pod Identity container credentials.
struct Container {
    url: String,
    token_file: Option<PathBuf>,
    token: Option<String>,
    agent: ureq::Agent,
}

/// Hosts that `AWS_CONTAINER_CREDENTIALS_FULL_URI` may name over plain http (besides loopback).
const CONTAINER_HOSTS: [&str; 4] = [
    "169.254.170.2",
    "169.254.170.23",
    "fd00:ec2::23",
    "localhost",
];

impl Container {
    fn from_env(env: &Env) -> Result<Option<Container>> {
        let url = if let Some(rel) = env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") {
            format!("http://169.254.170.2{rel}")
        } else if let Some(full) = env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI") {
            let u = url::Url::parse(&full).map_err(|e| {
                err!(
                    InvalidArgument,
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI: {full:?} is not a URL: {e}"
                )
            })?;
            let allowed = match (u.scheme(), u.host()) {
                ("https", Some(_)) => true,
                ("http", Some(url::Host::Ipv4(ip))) => {
                    ip.is_loopback() || CONTAINER_HOSTS.contains(&ip.to_string().as_str())
                }
                ("http", Some(url::Host::Ipv6(ip))) => {
                    ip.is_loopback() || CONTAINER_HOSTS.contains(&ip.to_string().as_str())
                }
                ("http", Some(url::Host::Domain(d))) => d == "localhost",
                _ => false,
            };
            if !allowed {
                bail!(
                    InvalidArgument,
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI: {full:?} must be https, or http to a \
                     loopback address or one of {}",
                    CONTAINER_HOSTS.join(", ")
                );
            }
            full
        } else {
            return Ok(None);
        };
        let token = env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN");
        if let Some(t) = &token {
            crate::log::register_secret(t);
        }
        Ok(Some(Container {
            url,
            token_file: env
                .get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
                .map(|p| credentials::expand_home(&p, env)),
            token,
            // botocore: 2 s per attempt, 3 attempts, 1 s apart.
            agent: credentials::agent(Duration::from_secs(2)),
        }))
    }

    fn name(&self) -> String {
        format!("container credentials at {}", self.url)
    }

    fn fetch(&self) -> Result<Fetched<AwsCredentials>> {
        let what = self.name();
        let token = match &self.token_file {
            Some(p) => {
                let t = std::fs::read_to_string(p).map_err(|e| {
                    err!(
                        Storage,
                        "{what}: cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE {}: {e}",
                        p.display()
                    )
                })?;
                let t = t.trim().to_owned();
                crate::log::register_secret(&t);
                Some(t)
            }
            None => self.token.clone(),
        };
        if token
            .as_deref()
            .is_some_and(|t| t.contains('\r') || t.contains('\n'))
        {
            bail!(
                InvalidArgument,
                "{what}: the authorization token is not a valid header value"
            );
        }
        let mut headers = vec![("Accept", "application/json")];
        if let Some(t) = &token {
            headers.push(("Authorization", t.as_str()));
        }
        let (text, _) = call_retrying(
            &self.agent,
            3,
            Duration::from_secs(1),
            "GET",
            &self.url,
            &headers,
            None,
            &[],
        )
        .map_err(|e| e.into_error(Kind::Storage, &what))?;
        let v = crate::json::parse(&text).map_err(|e| e.context(&what))?;
        credentials_from_json(&v, "AccessKeyId", "SecretAccessKey", "Token", "Expiration")
            .map_err(|e| err!(Storage, "{what}: {e}"))
    }
}

/// STS `AssumeRoleWithWebIdentity` with a token file.
struct WebIdentity {
    token_file: PathBuf,
    role_arn: String,
    session: String,
    endpoint: String,
    agent: ureq::Agent,
}

/// The STS endpoint: `AWS_ENDPOINT_URL_STS`, `AWS_ENDPOINT_URL`, else regional or global.
fn sts_endpoint(env: &Env, region: Option<&str>) -> String {
    env.get("AWS_ENDPOINT_URL_STS")
        .or_else(|| env.get("AWS_ENDPOINT_URL"))
        .unwrap_or_else(|| match region {
            Some(r) if r.starts_with("cn-") => format!("https://sts.{r}.amazonaws.com.cn"),
            Some(r) => format!("https://sts.{r}.amazonaws.com"),
            None => "https://sts.amazonaws.com".into(),
        })
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k, false), encode(v, false)))
        .collect::<Vec<_>>()
        .join("&")
}

impl WebIdentity {
    fn name(&self) -> String {
        format!(
            "web identity ({} for role {} at {})",
            self.token_file.display(),
            self.role_arn,
            self.endpoint
        )
    }

    fn fetch(&self) -> Result<Fetched<AwsCredentials>> {
        let what = self.name();
        let jwt = std::fs::read_to_string(&self.token_file)
            .map_err(|e| {
                err!(
                    Storage,
                    "{what}: cannot read the web identity token file: {e}"
                )
            })?
            .trim()
            .to_owned();
        crate::log::register_secret(&jwt);
        let body = form(&[
            ("Action", "AssumeRoleWithWebIdentity"),
            ("RoleArn", &self.role_arn),
            ("RoleSessionName", &self.session),
            ("Version", "2011-06-15"),
            ("WebIdentityToken", &jwt),
        ]);
        let url = if url::Url::parse(&self.endpoint).is_ok_and(|u| u.path() == "/") {
            self.endpoint.clone()
        } else {
            format!("{}/", self.endpoint.trim_end_matches('/'))
        };
        let res = call_retrying(
            &self.agent,
            3,
            Duration::from_secs(1),
            "POST",
            &url,
            &[(
                "Content-Type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )],
            Some(body.as_bytes()),
            &[],
        );
        let text = match res {
            Ok((t, _)) => t,
            Err(CallError::Status { status, body }) => {
                let (code, msg) = super::xml::parse(&body)
                    .ok()
                    .and_then(|d| {
                        let e = d.child("Error")?;
                        Some((
                            e.child_text("Code").unwrap_or_default(),
                            e.child_text("Message").unwrap_or_default(),
                        ))
                    })
                    .unwrap_or_default();
                bail!(
                    Storage,
                    "{what}: AssumeRoleWithWebIdentity: HTTP {status} {code}: {}",
                    crate::log::redact(&msg)
                );
            }
            Err(e) => return Err(e.into_error(Kind::Storage, &what)),
        };
        let doc = super::xml::parse(&text).map_err(|e| e.context(&what))?;
        let c = doc
            .child("AssumeRoleWithWebIdentityResult")
            .and_then(|r| r.child("Credentials"))
            .ok_or_else(|| err!(Storage, "{what}: no Credentials in the STS answer"))?;
        let field = |k: &str| c.child_text(k).filter(|s| !s.trim().is_empty());
        let (Some(key), Some(secret), Some(token)) = (
            field("AccessKeyId"),
            field("SecretAccessKey"),
            field("SessionToken"),
        ) else {
            bail!(Storage, "{what}: incomplete Credentials in the STS answer");
        };
        let expires = match field("Expiration") {
            Some(e) => Some(credentials::parse_timestamp(&e, &what)?),
            None => None,
        };
        Ok(Fetched {
            value: AwsCredentials {
                key: key.trim().to_owned(),
                secret: secret.trim().to_owned(),
                token: Some(token.trim().to_owned()),
            }
            .register(),
            expires,
        })
    }
}

enum Source {
    Fixed(Arc<AwsCredentials>),
    File(FileSource),
    Refreshing(Refreshing<AwsCredentials>),
}

/// The credentials the chain chose, renewed as needed.
pub struct CredentialProvider {
    source: Source,
    what: String,
}

/// What [`setup`] resolved: the credentials and the region.
pub struct AwsSetup {
    pub credentials: CredentialProvider,
    pub region: String,
}

impl CredentialProvider {
    /// The credentials to sign the next request with.
    pub fn get(&self) -> Result<Arc<AwsCredentials>> {
        match &self.source {
            Source::Fixed(c) => Ok(c.clone()),
            Source::File(f) => Ok(f.get()),
            Source::Refreshing(r) => r.get(),
        }
    }

    /// The store refused the credentials with access key `key` as expired or invalid: renew
    /// them before the next request. True when they can be renewed (worth another attempt).
    pub fn refused(&self, key: &str) -> bool {
        match &self.source {
            Source::Refreshing(r) => {
                r.invalidate(|c| c.key == key);
                true
            }
            _ => false,
        }
    }

    /// The source, for messages: `environment variables`, `EC2 instance metadata at …`.
    pub fn describe(&self) -> &str {
        &self.what
    }
}

/// Resolve the credentials and region of `cfg` from `env` (module docs). `custom_endpoint`:
/// the store is not AWS itself (no region lookup in IMDS). `timeout`: for STS requests.
pub fn setup(
    cfg: &S3Config,
    env: &Env,
    custom_endpoint: bool,
    timeout: Duration,
) -> Result<AwsSetup> {
    let profiles = Profiles::load(env);
    let static_region = cfg
        .region
        .clone()
        .or_else(|| env.get("AWS_REGION"))
        .or_else(|| env.get("AWS_DEFAULT_REGION"))
        .or_else(|| profiles.config_value("region"));
    let imds = Imds::from_env(env)?;
    let mut imds_failed = false;
    let credentials = chain(
        cfg,
        env,
        &profiles,
        static_region.as_deref(),
        timeout,
        imds.as_ref(),
        &mut imds_failed,
    )?;
    log_info!("S3 credentials: {}", credentials.what);
    let region = match static_region {
        Some(r) => r,
        None => {
            let from_imds = match &imds {
                Some(i) if !custom_endpoint && !imds_failed => i.region(),
                _ => None,
            };
            match from_imds {
                Some(r) => {
                    log_info!("S3 region {r} (from EC2 instance metadata)");
                    r
                }
                None => "us-east-1".into(),
            }
        }
    };
    Ok(AwsSetup {
        credentials,
        region,
    })
}

fn fixed(c: AwsCredentials, what: impl Into<String>) -> CredentialProvider {
    CredentialProvider {
        source: Source::Fixed(Arc::new(c.register())),
        what: what.into(),
    }
}

fn refreshing(
    what: String,
    first: Fetched<AwsCredentials>,
    fetch: credentials::FetchFn<AwsCredentials>,
) -> CredentialProvider {
    CredentialProvider {
        source: Source::Refreshing(Refreshing::new(what.clone(), first, fetch)),
        what,
    }
}

const UNSUPPORTED_HINT: &str = "export credentials into the environment instead (for example \
     `eval \"$(aws configure export-credentials --format env)\"`) or use another profile";

fn chain(
    cfg: &S3Config,
    env: &Env,
    profiles: &Profiles,
    region: Option<&str>,
    timeout: Duration,
    imds: Option<&Imds>,
    imds_failed: &mut bool,
) -> Result<CredentialProvider> {
    let mut tried = Tried::default();
    // 1. The storage config.
    match (&cfg.access_key, &cfg.secret_key) {
        (Some(k), Some(s)) => {
            return Ok(fixed(
                AwsCredentials {
                    key: k.clone(),
                    secret: s.clone(),
                    token: cfg.session_token.clone(),
                },
                "access_key/secret_key of the storage config",
            ))
        }
        (Some(_), None) | (None, Some(_)) => bail!(
            InvalidArgument,
            "checkpoint_storage (s3): access_key and secret_key must be given together"
        ),
        (None, None) => tried.add("access_key/secret_key of the storage config", "not set"),
    }
    // 2. The environment.
    match (
        env.get("AWS_ACCESS_KEY_ID"),
        env.get("AWS_SECRET_ACCESS_KEY"),
    ) {
        (Some(k), Some(s)) => {
            return Ok(fixed(
                AwsCredentials {
                    key: k,
                    secret: s,
                    token: env
                        .get("AWS_SESSION_TOKEN")
                        .or_else(|| env.get("AWS_SECURITY_TOKEN")),
                },
                "environment variables AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
            ))
        }
        (Some(_), None) => bail!(
            InvalidArgument,
            "checkpoint_storage (s3): AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not"
        ),
        (None, Some(_)) => bail!(
            InvalidArgument,
            "checkpoint_storage (s3): AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not"
        ),
        (None, None) => tried.add(
            "environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)",
            "not set",
        ),
    }
    let profile = &profiles.name;
    let cfg_kv = profiles.config_kv();
    let has = |k: &str| cfg_kv.is_some_and(|kv| get(kv, k).is_some());
    let config_name = format!(
        "config file {} [profile {profile}]",
        Profiles::show(&profiles.config_path)
    );
    // A profile that assumes a role from other credentials (botocore's next provider).
    if has("role_arn") && !has("web_identity_token_file") {
        bail!(
            Unsupported,
            "checkpoint_storage (s3): {config_name} assumes role {} from {}, which detcore does \
             not support; {UNSUPPORTED_HINT}",
            profiles.config_value("role_arn").unwrap_or_default(),
            if has("source_profile") {
                "another profile (source_profile)"
            } else {
                "credential_source"
            }
        );
    }
    // 3. Web identity.
    let token_file = env
        .get("AWS_WEB_IDENTITY_TOKEN_FILE")
        .or_else(|| profiles.config_value("web_identity_token_file"));
    if let Some(token_file) = token_file {
        let Some(role_arn) = env
            .get("AWS_ROLE_ARN")
            .or_else(|| profiles.config_value("role_arn"))
        else {
            bail!(
                InvalidArgument,
                "checkpoint_storage (s3): a web identity token file is configured ({token_file}) \
                 but no role: set AWS_ROLE_ARN (or role_arn in the profile)"
            );
        };
        let session = env
            .get("AWS_ROLE_SESSION_NAME")
            .or_else(|| profiles.config_value("role_session_name"))
            .unwrap_or_else(|| {
                format!(
                    "detcore-session-{}",
                    crate::time::epoch_seconds(SystemTime::now()) as u64
                )
            });
        let w = WebIdentity {
            token_file: credentials::expand_home(&token_file, env),
            role_arn,
            session,
            endpoint: sts_endpoint(env, region),
            agent: credentials::agent(timeout),
        };
        let first = w.fetch()?;
        return Ok(refreshing(w.name(), first, Box::new(move || w.fetch())));
    }
    tried.add(
        "web identity (AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN)",
        "not set",
    );
    if has("sso_start_url") || has("sso_session") || has("sso_account_id") {
        bail!(
            Unsupported,
            "checkpoint_storage (s3): {config_name} uses IAM Identity Center (sso_*), which \
             detcore does not support; {UNSUPPORTED_HINT}"
        );
    }
    // 4. The shared credentials file.
    let creds_name = format!(
        "shared credentials file {} [{profile}]",
        Profiles::show(&profiles.creds_path)
    );
    match (profiles.creds_kv(), &profiles.creds_path) {
        (Some(kv), Some(path)) => match keys_of(kv, &creds_name)? {
            Some(c) => {
                let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
                return Ok(CredentialProvider {
                    source: Source::File(FileSource {
                        path: path.clone(),
                        profile: profile.clone(),
                        state: Mutex::new(FileState {
                            creds: Arc::new(c.register()),
                            mtime,
                            checked: Instant::now(),
                        }),
                    }),
                    what: creds_name,
                });
            }
            None => tried.add(&creds_name, "no aws_access_key_id in the profile"),
        },
        (None, _) if profiles.creds.is_none() => tried.add(&creds_name, "no such file"),
        _ => tried.add(&creds_name, "no such profile"),
    }
    if has("credential_process") {
        bail!(
            Unsupported,
            "checkpoint_storage (s3): {config_name} uses credential_process, which detcore does \
             not support; {UNSUPPORTED_HINT}"
        );
    }
    // 5. The config file's keys.
    match cfg_kv {
        Some(kv) => match keys_of(kv, &config_name)? {
            Some(c) => return Ok(fixed(c, config_name)),
            None => tried.add(&config_name, "no aws_access_key_id in the profile"),
        },
        None if profiles.config.is_none() => tried.add(&config_name, "no such file"),
        None => tried.add(&config_name, "no such profile"),
    }
    if profiles.explicit && cfg_kv.is_none() && profiles.creds_kv().is_none() {
        bail!(
            InvalidArgument,
            "checkpoint_storage (s3): AWS_PROFILE names profile {profile:?}, which is neither in \
             {} nor in {}",
            Profiles::show(&profiles.creds_path),
            Profiles::show(&profiles.config_path)
        );
    }
    // 6. Container credentials.
    match Container::from_env(env)? {
        Some(c) => {
            let first = c.fetch()?;
            return Ok(refreshing(c.name(), first, Box::new(move || c.fetch())));
        }
        None => tried.add(
            "container credentials (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or _FULL_URI)",
            "not set",
        ),
    }
    // 7. EC2 instance metadata.
    match imds {
        None => tried.add(
            "EC2 instance metadata",
            "disabled by AWS_EC2_METADATA_DISABLED",
        ),
        Some(i) => match i.credentials() {
            Ok(first) => {
                let i = i.clone();
                let name = i.name();
                return Ok(refreshing(
                    name.clone(),
                    first,
                    Box::new(move || i.credentials().map_err(|e| err!(Storage, "{name}: {e}"))),
                ));
            }
            Err(e) => {
                *imds_failed = true;
                tried.add(i.name(), e);
            }
        },
    }
    Err(err!(
        InvalidArgument,
        "checkpoint_storage (s3): no credentials found. Tried, in order:{}\nSet access_key and \
         secret_key in the storage config, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a \
         profile, or run where an IAM role is available (EC2 instance profile, EKS IRSA or Pod \
         Identity, ECS task role)",
        tried.lines()
    ))
}

/// The access key id of a presigned S3 URL (`X-Amz-Credential=<key>/<date>/…`).
pub fn presigned_key(url: &str) -> Option<String> {
    let q = url.split_once('?')?.1;
    q.split('&').find_map(|kv| {
        let v = kv.strip_prefix("X-Amz-Credential=")?;
        let v = crate::percent::decode(v, false);
        v.split('/').next().map(str::to_owned)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::testserver::{closed_port, Req, Resp, Server};
    use std::sync::atomic::{AtomicU32, Ordering};

    const T: Duration = Duration::from_secs(5);

    fn tmpdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("detcore-aws-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn s3(env: &Env) -> Result<AwsSetup> {
        setup(
            &S3Config {
                bucket: "b".into(),
                ..S3Config::default()
            },
            env,
            true,
            T,
        )
    }

    fn key(a: &AwsSetup) -> String {
        a.credentials.get().unwrap().key.clone()
    }

    fn expiring_in(secs: u64) -> String {
        let t = SystemTime::now() + Duration::from_secs(secs);
        jiff::Timestamp::try_from(t)
            .unwrap()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    }

    /// A server for IMDSv2, container credentials and STS at once. IMDS refuses GETs without
    /// the session token it handed out; credentials expire after `ttl` seconds and are
    /// numbered per source (`IMDS1`, `ECS1`, `STS1`, …).
    fn aws_server(ttl: u64) -> Server {
        let n = AtomicU32::new(0);
        Server::start(move |r: &Req| {
            let k = || n.fetch_add(1, Ordering::SeqCst) + 1;
            let json = |prefix: &str, k: u32| {
                format!(
                    r#"{{"Code":"Success","AccessKeyId":"{prefix}{k}","SecretAccessKey":"secret{k}","Token":"tok{k}","Expiration":"{}"}}"#,
                    expiring_in(ttl)
                )
            };
            match (r.method.as_str(), r.path.as_str()) {
                ("PUT", "/latest/api/token") => {
                    if r.header("x-aws-ec2-metadata-token-ttl-seconds") != Some("21600") {
                        return Resp::status(400, "");
                    }
                    Resp::ok("imds-session-token")
                }
                ("GET", p) if p.starts_with("/latest/") => {
                    if r.header("x-aws-ec2-metadata-token") != Some("imds-session-token") {
                        return Resp::status(401, "");
                    }
                    match p {
                        "/latest/meta-data/iam/security-credentials/" => Resp::ok("the-role\n"),
                        "/latest/meta-data/iam/security-credentials/the-role" => {
                            Resp::ok(json("IMDS", k()))
                        }
                        "/latest/meta-data/placement/region" => Resp::ok("eu-north-1"),
                        _ => Resp::status(404, ""),
                    }
                }
                ("GET", "/ecs-creds") => match r.header("authorization") {
                    Some(a) if a.starts_with("pod-token") => Resp::ok(json("ECS", k())),
                    _ => Resp::status(401, r#"{"Message":"no token"}"#),
                },
                ("POST", "/") => {
                    let b = &r.body;
                    if !b.contains("Action=AssumeRoleWithWebIdentity")
                        || !b.contains("Version=2011-06-15")
                    {
                        return Resp::status(400, "");
                    }
                    if !b.contains("WebIdentityToken=jwt-") {
                        return Resp::status(400, "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidIdentityToken</Code><Message>Couldn't retrieve verification key from your identity provider</Message></Error></ErrorResponse>");
                    }
                    let k = k();
                    Resp::ok(format!(
                        "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleWithWebIdentityResult>\
                         <Credentials><AccessKeyId>STS{k}</AccessKeyId><SecretAccessKey>secret{k}</SecretAccessKey><SessionToken>tok{k}</SessionToken>\
                         <Expiration>{}</Expiration></Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>",
                        expiring_in(ttl)
                    ))
                }
                _ => Resp::status(404, ""),
            }
        })
    }

    #[test]
    fn ini_profiles() {
        let ini = parse_ini(
            "# comment\n[default]\naws_access_key_id = A\naws_secret_access_key=B\n\n[profile x]\nRegion = eu-west-1\n[y]\nregion = us-west-1\n",
        );
        let d = config_section(&ini, "default").unwrap();
        assert_eq!(get(d, "aws_access_key_id"), Some("A"));
        assert_eq!(get(d, "aws_secret_access_key"), Some("B"));
        assert_eq!(
            get(config_section(&ini, "x").unwrap(), "region"),
            Some("eu-west-1")
        );
        // In the config file a profile other than default needs the `profile ` prefix.
        assert!(config_section(&ini, "y").is_none());
        assert!(creds_section(&ini, "y").is_some());
        assert!(creds_section(&ini, "nope").is_none());
    }

    #[test]
    fn chain_order_follows_botocore() {
        let srv = aws_server(3600);
        let d = tmpdir();
        std::fs::write(
            d.join("credentials"),
            "[work]\naws_access_key_id = FILE\naws_secret_access_key = f\n",
        )
        .unwrap();
        std::fs::write(d.join("config"), "[profile work]\naws_access_key_id = CONFIG\naws_secret_access_key = c\nregion = ap-south-1\n").unwrap();
        std::fs::write(d.join("jwt"), "jwt-1\n").unwrap();
        std::fs::write(d.join("pod-token"), "pod-token-1").unwrap();
        let p = |f: &str| d.join(f).to_str().unwrap().to_owned();
        let mut vars: Vec<(String, String)> = vec![
            ("HOME".into(), "/nonexistent".into()),
            ("AWS_ACCESS_KEY_ID".into(), "ENV".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "e".into()),
            ("AWS_WEB_IDENTITY_TOKEN_FILE".into(), p("jwt")),
            (
                "AWS_ROLE_ARN".into(),
                "arn:aws:iam::123456789012:role/r".into(),
            ),
            ("AWS_ENDPOINT_URL_STS".into(), srv.url()),
            ("AWS_PROFILE".into(), "work".into()),
            ("AWS_SHARED_CREDENTIALS_FILE".into(), p("credentials")),
            ("AWS_CONFIG_FILE".into(), p("config")),
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI".into(),
                format!("{}/ecs-creds", srv.url()),
            ),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE".into(),
                p("pod-token"),
            ),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT".into(), srv.url()),
        ];
        let env = |v: &[(String, String)]| {
            let pairs: Vec<(&str, &str)> =
                v.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            Env::from_pairs(&pairs)
        };
        let drop_vars = |v: &mut Vec<(String, String)>, names: &[&str]| {
            v.retain(|(k, _)| !names.contains(&k.as_str()))
        };
        // The storage config's keys come first of all.
        let a = setup(
            &S3Config {
                bucket: "b".into(),
                access_key: Some("CFG".into()),
                secret_key: Some("x".into()),
                ..S3Config::default()
            },
            &env(&vars),
            true,
            T,
        )
        .unwrap();
        assert_eq!(key(&a), "CFG");
        assert_eq!(s3(&env(&vars)).map(|a| key(&a)).unwrap(), "ENV");
        drop_vars(&mut vars, &["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]);
        let a = s3(&env(&vars)).unwrap();
        assert_eq!(
            key(&a),
            "STS1",
            "web identity comes before the shared files"
        );
        assert_eq!(a.region, "ap-south-1", "the profile's region");
        drop_vars(&mut vars, &["AWS_WEB_IDENTITY_TOKEN_FILE"]);
        assert_eq!(key(&s3(&env(&vars)).unwrap()), "FILE");
        drop_vars(&mut vars, &["AWS_SHARED_CREDENTIALS_FILE"]);
        assert_eq!(key(&s3(&env(&vars)).unwrap()), "CONFIG");
        drop_vars(&mut vars, &["AWS_CONFIG_FILE", "AWS_PROFILE"]);
        assert_eq!(key(&s3(&env(&vars)).unwrap()), "ECS2");
        drop_vars(&mut vars, &["AWS_CONTAINER_CREDENTIALS_FULL_URI"]);
        let a = s3(&env(&vars)).unwrap();
        assert_eq!(key(&a), "IMDS3");
        assert!(a.credentials.describe().contains(&srv.url()));
        assert_eq!(
            a.region, "us-east-1",
            "no IMDS region for a custom endpoint"
        );
        // The STS request carried the file's token, the role and a session name.
        let sts = srv
            .requests()
            .into_iter()
            .find(|r| r.method == "POST")
            .unwrap();
        for part in [
            "RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fr",
            "RoleSessionName=detcore-session-",
            "WebIdentityToken=jwt-1&",
        ] {
            assert!(
                sts.body.contains(part) || sts.body.ends_with(part.trim_end_matches('&')),
                "{part} in {}",
                sts.body
            );
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn imds_v2_credentials_and_region_renewed_before_expiry() {
        let srv = aws_server(2);
        let env = Env::from_pairs(&[
            ("HOME", "/nonexistent"),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &srv.url()),
        ]);
        // AWS itself (no custom endpoint): the region comes from IMDS.
        let a = setup(&S3Config::default(), &env, false, T).unwrap();
        assert_eq!(a.region, "eu-north-1");
        let first = a.credentials.get().unwrap();
        assert_eq!(
            (first.key.as_str(), first.token.as_deref()),
            ("IMDS1", Some("tok1"))
        );
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(
            a.credentials.get().unwrap().key,
            "IMDS2",
            "renewed halfway through their 2 s"
        );
        let reqs = srv.requests();
        assert!(reqs
            .iter()
            .filter(|r| r.method == "GET")
            .all(|r| r.header("x-aws-ec2-metadata-token").is_some()));
        // A region in the environment wins over IMDS.
        let env = Env::from_pairs(&[
            ("HOME", "/nonexistent"),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &srv.url()),
            ("AWS_DEFAULT_REGION", "sa-east-1"),
        ]);
        assert_eq!(
            setup(&S3Config::default(), &env, false, T).unwrap().region,
            "sa-east-1"
        );
    }

    /// IMDSv1: used when the token request is refused or unanswered (a container behind a
    /// hop limit of 1), unless IMDSv1 is disabled.
    #[test]
    fn imds_v1_fallback() {
        let v1 = |stall: bool| {
            Server::start(move |r| match (r.method.as_str(), r.path.as_str()) {
                ("PUT", _) if stall => Resp::ok("late-token").after(Duration::from_secs(3)),
                ("PUT", _) => Resp::status(403, ""),
                ("GET", "/latest/meta-data/iam/security-credentials/") => Resp::ok("r"),
                ("GET", "/latest/meta-data/iam/security-credentials/r") => Resp::ok(
                    r#"{"Code":"Success","AccessKeyId":"V1","SecretAccessKey":"s","Token":"t","Expiration":"2999-01-01T00:00:00Z"}"#,
                ),
                _ => Resp::status(404, ""),
            })
        };
        for stall in [false, true] {
            let srv = v1(stall);
            let env = Env::from_pairs(&[
                ("HOME", "/nonexistent"),
                ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &srv.url()),
                ("AWS_METADATA_SERVICE_TIMEOUT", "0.5"),
            ]);
            assert_eq!(key(&s3(&env).unwrap()), "V1", "stall={stall}");
            let env = Env::from_pairs(&[
                ("HOME", "/nonexistent"),
                ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &srv.url()),
                ("AWS_METADATA_SERVICE_TIMEOUT", "0.5"),
                ("AWS_EC2_METADATA_V1_DISABLED", "true"),
            ]);
            let e = s3(&env).err().unwrap();
            assert!(
                e.message()
                    .contains("IMDSv1 is disabled by AWS_EC2_METADATA_V1_DISABLED"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_silent_metadata_endpoint_costs_one_timeout() {
        // Accepts connections and never answers: the worst case of a black-holed 169.254.169.254.
        let srv = Server::start(|_| Resp::ok("").after(Duration::from_secs(30)));
        let env = Env::from_pairs(&[
            ("HOME", "/nonexistent"),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &srv.url()),
            ("AWS_METADATA_SERVICE_TIMEOUT", "0.3"),
        ]);
        let t0 = Instant::now();
        let e = s3(&env).err().unwrap();
        // Token (0.3 s), then IMDSv1 (0.3 s): bounded, far from the server's 30 s.
        assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
        assert!(
            e.message()
                .contains("EC2 instance metadata at http://127.0.0.1"),
            "{e}"
        );
        drop(srv);
    }

    #[test]
    fn container_credentials() {
        let srv = aws_server(3600);
        let d = tmpdir();
        let tf = d.join("token");
        std::fs::write(&tf, "pod-token-A\n").unwrap();
        let env = Env::from_pairs(&[
            ("HOME", "/nonexistent"),
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                &format!("{}/ecs-creds", srv.url()),
            ),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                tf.to_str().unwrap(),
            ),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN",
                "ignored-when-the-file-is-set",
            ),
        ]);
        let a = s3(&env).unwrap();
        assert_eq!(key(&a), "ECS1");
        // The token file is read again at each renewal (EKS Pod Identity rotates it).
        std::fs::write(&tf, "pod-token-B").unwrap();
        assert!(a.credentials.refused("ECS1"));
        assert_eq!(key(&a), "ECS2");
        let auth: Vec<String> = srv
            .requests()
            .iter()
            .filter_map(|r| r.header("authorization").map(str::to_owned))
            .collect();
        assert_eq!(auth, ["pod-token-A", "pod-token-B"]);
        // Only https, loopback and the agents' addresses are trusted with plain http.
        for bad in [
            "http://10.0.0.5/creds",
            "http://example.com/creds",
            "ftp://127.0.0.1/x",
        ] {
            let env = Env::from_pairs(&[
                ("HOME", "/nonexistent"),
                ("AWS_CONTAINER_CREDENTIALS_FULL_URI", bad),
            ]);
            let e = s3(&env).err().unwrap();
            assert!(
                e.message()
                    .contains("must be https, or http to a loopback address"),
                "{bad}: {e}"
            );
        }
        let c = Container::from_env(&Env::from_pairs(&[(
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "/v2/credentials/abc",
        )]))
        .unwrap()
        .unwrap();
        assert_eq!(c.url, "http://169.254.170.2/v2/credentials/abc");
        for ok in [
            "http://169.254.170.23/v1/credentials",
            "http://[fd00:ec2::23]/v1/credentials",
            "http://localhost:8/x",
            "https://creds.example.com/x",
        ] {
            assert!(
                Container::from_env(&Env::from_pairs(&[(
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                    ok
                )]))
                .unwrap()
                .is_some(),
                "{ok}"
            );
        }
        // A configured source that fails is an error, not a fall-through to IMDS.
        let env = Env::from_pairs(&[
            ("HOME", "/nonexistent"),
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                &format!("{}/ecs-creds", srv.url()),
            ),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &srv.url()),
        ]);
        let e = s3(&env).err().unwrap();
        assert!(
            e.message().contains("container credentials at") && e.message().contains("HTTP 401"),
            "{e}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn web_identity_errors() {
        let srv = aws_server(3600);
        let d = tmpdir();
        std::fs::write(d.join("jwt"), "not-a-jwt").unwrap();
        let jwt = d.join("jwt").to_str().unwrap().to_owned();
        let env = Env::from_pairs(&[
            ("HOME", "/nonexistent"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", &jwt),
        ]);
        let e = s3(&env).err().unwrap();
        assert!(e.message().contains("set AWS_ROLE_ARN"), "{e}");
        let env = Env::from_pairs(&[
            ("HOME", "/nonexistent"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", &jwt),
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
            ("AWS_ENDPOINT_URL", &srv.url()),
        ]);
        let e = s3(&env).err().unwrap();
        assert!(
            e.message()
                .contains("HTTP 400 InvalidIdentityToken: Couldn't retrieve verification key"),
            "{e}"
        );
        assert!(!e.message().contains("not-a-jwt"), "{e}");
        assert_eq!(
            sts_endpoint(&Env::from_pairs(&[]), Some("eu-west-3")),
            "https://sts.eu-west-3.amazonaws.com"
        );
        assert_eq!(
            sts_endpoint(&Env::from_pairs(&[]), None),
            "https://sts.amazonaws.com"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn no_credentials_names_every_source() {
        let port = closed_port();
        let env = Env::from_pairs(&[
            ("HOME", "/home/u"),
            (
                "AWS_EC2_METADATA_SERVICE_ENDPOINT",
                &format!("http://127.0.0.1:{port}"),
            ),
        ]);
        let e = s3(&env).err().unwrap();
        let m = e.message();
        for s in [
            "no credentials found. Tried, in order:",
            "1. access_key/secret_key of the storage config: not set",
            "2. environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY): not set",
            "3. web identity (AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN): not set",
            "4. shared credentials file /home/u/.aws/credentials [default]: no such file",
            "5. config file /home/u/.aws/config [profile default]: no such file",
            "6. container credentials (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or _FULL_URI): not set",
            &format!("7. EC2 instance metadata at http://127.0.0.1:{port}: PUT http://127.0.0.1:{port}/latest/api/token"),
        ] {
            assert!(m.contains(s), "{s:?} not in:\n{m}");
        }
        assert_eq!(e.kind(), Kind::InvalidArgument);
        let e = s3(&Env::from_pairs(&[("AWS_EC2_METADATA_DISABLED", "TRUE")]))
            .err()
            .unwrap();
        assert!(
            e.message()
                .contains("7. EC2 instance metadata: disabled by AWS_EC2_METADATA_DISABLED"),
            "{e}"
        );
        assert!(e.message().contains("(no $HOME)"), "{e}");
        // Half keys and a missing named profile are errors of their own.
        let e = s3(&Env::from_pairs(&[("AWS_ACCESS_KEY_ID", "A")]))
            .err()
            .unwrap();
        assert!(e.message().contains("AWS_SECRET_ACCESS_KEY is not"), "{e}");
        let e = setup(
            &S3Config {
                access_key: Some("k".into()),
                ..S3Config::default()
            },
            &Env::from_pairs(&[]),
            true,
            T,
        )
        .err()
        .unwrap();
        assert!(e.message().contains("together"), "{e}");
        let e = s3(&Env::from_pairs(&[
            ("AWS_PROFILE", "nope"),
            ("HOME", "/home/u"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]))
        .err()
        .unwrap();
        assert!(
            e.message().contains("AWS_PROFILE names profile \"nope\""),
            "{e}"
        );
    }

    #[test]
    fn profiles_detcore_cannot_use_are_refused() {
        let d = tmpdir();
        let cfg = d.join("config");
        for (body, what) in [
            (
                "[default]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = base\n",
                "source_profile",
            ),
            (
                "[default]\nsso_session = corp\nsso_account_id = 1\n",
                "IAM Identity Center",
            ),
            (
                "[default]\ncredential_process = /usr/bin/creds\n",
                "credential_process",
            ),
        ] {
            std::fs::write(&cfg, body).unwrap();
            let env = Env::from_pairs(&[
                ("HOME", "/nonexistent"),
                ("AWS_CONFIG_FILE", cfg.to_str().unwrap()),
            ]);
            let e = s3(&env).err().unwrap();
            assert_eq!(e.kind(), Kind::Unsupported, "{e}");
            assert!(
                e.message().contains(what) && e.message().contains("export-credentials"),
                "{e}"
            );
        }
        std::fs::remove_dir_all(&d).unwrap();
    }
}
