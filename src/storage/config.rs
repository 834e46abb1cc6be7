//! Storage configuration in Determined's forms (docs/protocol.md#checkpoint-storage-configuration):
//! a user string (`/path`, `file:///path`, `s3://bucket/prefix`, `gs://bucket/prefix`), a user
//! JSON dict (`directory`, `s3`, `gcs`, `azure`), or the experiment config's
//! `checkpoint_storage` dict on-cluster (which also allows `shared_fs`).

use crate::error::Result;
use crate::json::{field, from_object_value, Map, Value};
use serde::{Deserialize, Deserializer};
use std::path::{Path, PathBuf};

/// Where `/determined_shared_fs` is mounted in a trial container.
pub const SHARED_FS_CONTAINER_PATH: &str = "/determined_shared_fs";

/// Transfer tuning of the cloud backends: detcore's own dict keys `part_size` (bytes),
/// `concurrency`, `max_attempts` and `timeout_seconds`. Unset values come from the environment
/// (`DETCORE_STORAGE_PART_SIZE`, `DETCORE_STORAGE_CONCURRENCY`, `DETCORE_STORAGE_MAX_ATTEMPTS`,
/// `DETCORE_STORAGE_TIMEOUT`), else the defaults of [`crate::storage::http::Tuning`].
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct TransferOptions {
    #[serde(
        default,
        deserialize_with = "uint_in::<_, u64, { 5 << 20 }, { 5 << 30 }>"
    )]
    pub part_size: Option<u64>,
    #[serde(default, deserialize_with = "uint_in::<_, usize, 1, 256>")]
    pub concurrency: Option<usize>,
    #[serde(default, deserialize_with = "uint_in::<_, u32, 1, 100>")]
    pub max_attempts: Option<u32>,
    #[serde(default, deserialize_with = "seconds")]
    pub timeout_seconds: Option<f64>,
}

/// The dict keys of [`TransferOptions`].
const TRANSFER_KEYS: [&str; 4] = [
    "part_size",
    "concurrency",
    "max_attempts",
    "timeout_seconds",
];

/// An integer from `MIN` to `MAX`, or `null`.
fn uint_in<'de, D: Deserializer<'de>, T: TryFrom<u64>, const MIN: u64, const MAX: u64>(
    d: D,
) -> std::result::Result<Option<T>, D::Error> {
    field::check(d, &format!("an integer from {MIN} to {MAX}"), |v| match v {
        Value::Null => Some(None),
        Value::Number(n) if n.is_integer() => {
            let i = u64::try_from(n.as_i64()?).ok()?;
            T::try_from(i)
                .ok()
                .filter(|_| (MIN..=MAX).contains(&i))
                .map(Some)
        }
        _ => None,
    })
}

/// A number of seconds in (0, 86400], or `null`.
fn seconds<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<f64>, D::Error> {
    field::check(d, "a number of seconds in (0, 86400]", |v| match v {
        Value::Null => Some(None),
        Value::Number(n) if n.as_f64() > 0.0 && n.as_f64() <= 86400.0 => Some(Some(n.as_f64())),
        _ => None,
    })
}

/// A path, or `null`.
fn opt_path<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<PathBuf>, D::Error> {
    field::opt_string(d).map(|s| s.map(PathBuf::from))
}

/// S3 settings (dict keys of Determined's `s3` storage, plus detcore's transfer tuning).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct S3Config {
    #[serde(deserialize_with = "field::string")]
    pub bucket: String,
    /// Normalized ([`normalize_prefix`]).
    #[serde(default, deserialize_with = "field::string_or_empty")]
    pub prefix: String,
    #[serde(default, deserialize_with = "field::opt_string")]
    pub access_key: Option<String>,
    #[serde(default, deserialize_with = "field::opt_string")]
    pub secret_key: Option<String>,
    #[serde(default, deserialize_with = "field::opt_string")]
    pub session_token: Option<String>,
    #[serde(default, deserialize_with = "field::opt_string")]
    pub endpoint_url: Option<String>,
    #[serde(default, deserialize_with = "field::opt_string")]
    pub region: Option<String>,
    #[serde(default, deserialize_with = "opt_path")]
    pub temp_dir: Option<PathBuf>,
    /// Read from the same dict.
    #[serde(skip)]
    pub transfer: TransferOptions,
}

/// GCS settings.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct GcsConfig {
    #[serde(deserialize_with = "field::string")]
    pub bucket: String,
    /// Normalized ([`normalize_prefix`]).
    #[serde(default, deserialize_with = "field::string_or_empty")]
    pub prefix: String,
    #[serde(default, deserialize_with = "opt_path")]
    pub temp_dir: Option<PathBuf>,
    /// Read from the same dict.
    #[serde(skip)]
    pub transfer: TransferOptions,
}

/// Azure Blob settings.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct AzureConfig {
    /// The container, possibly followed by `/sub/path` (a blob-name prefix).
    #[serde(deserialize_with = "field::string")]
    pub container: String,
    #[serde(default, deserialize_with = "field::opt_string")]
    pub connection_string: Option<String>,
    #[serde(default, deserialize_with = "field::opt_string")]
    pub account_url: Option<String>,
    #[serde(default, deserialize_with = "field::opt_string")]
    pub credential: Option<String>,
    #[serde(default, deserialize_with = "opt_path")]
    pub temp_dir: Option<PathBuf>,
    /// Read from the same dict.
    #[serde(skip)]
    pub transfer: TransferOptions,
}

/// A resolved storage configuration.
#[derive(Debug, Clone, PartialEq)]
pub enum StorageConfig {
    /// `shared_fs` (or a plain path): checkpoints in `<base>/<id>`.
    SharedFs {
        base: PathBuf,
    },
    /// `directory`: checkpoints in `<container_path>/<id>`.
    Directory {
        container_path: PathBuf,
    },
    S3(S3Config),
    Gcs(GcsConfig),
    Azure(AzureConfig),
}

impl StorageConfig {
    /// The Determined type name: `shared_fs`, `directory`, `s3`, `gcs`, `azure`.
    pub fn type_name(&self) -> &'static str {
        match self {
            StorageConfig::SharedFs { .. } => "shared_fs",
            StorageConfig::Directory { .. } => "directory",
            StorageConfig::S3(_) => "s3",
            StorageConfig::Gcs(_) => "gcs",
            StorageConfig::Azure(_) => "azure",
        }
    }
}

/// Where an object store is reached, when the configuration says (an S3 `endpoint_url`, an Azure
/// account URL or the account and blob endpoint of a connection string), without credentials:
/// no user-info of a URL, never a connection string's key or signature.
pub fn endpoint_of(config: &StorageConfig) -> Option<String> {
    let no_userinfo = |u: &str| match (u.find("://"), u.find('@')) {
        (Some(s), Some(at)) if at > s => format!("{}{}", &u[..s + 3], &u[at + 1..]),
        _ => u.to_owned(),
    };
    match config {
        StorageConfig::S3(c) => c.endpoint_url.as_deref().map(no_userinfo),
        StorageConfig::Azure(c) => c.account_url.as_deref().map(no_userinfo).or_else(|| {
            let cs = c.connection_string.as_deref()?;
            let field = |k: &str| {
                cs.split(';').find_map(|kv| {
                    kv.split_once('=')
                        .filter(|(key, _)| key.trim().eq_ignore_ascii_case(k))
                        .map(|(_, v)| v.trim().to_owned())
                })
            };
            field("BlobEndpoint")
                .map(|e| no_userinfo(&e))
                .or_else(|| field("AccountName"))
        }),
        _ => None,
    }
}

/// A storage configuration plus the JSON form the master receives in `POST /api/v1/runs/start`.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageSpec {
    pub config: StorageConfig,
    /// `checkpointStorage` of `runs/start`: `_shortcut_to_config(s)` for strings, the dict as given.
    pub wire: Value,
    /// The checkpoint-lifecycle keys of a dict (none for the string forms).
    pub lifecycle: Lifecycle,
}

/// The checkpoint-lifecycle keys of a storage dict: Determined's garbage-collection policy
/// (`save_trial_latest`, `save_trial_best`, `save_experiment_best`; applied by detcore only
/// off-cluster, where no master collects garbage) and detcore's own `metric` and
/// `smaller_is_better` (what "best" means, Determined's `searcher.metric` and
/// `searcher.smaller_is_better`) and `checksums` (manifests and verified restores, default on).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct Lifecycle {
    #[serde(default, deserialize_with = "uint_in::<_, u32, 0, 2147483647>")]
    pub save_experiment_best: Option<u32>,
    #[serde(default, deserialize_with = "uint_in::<_, u32, 0, 2147483647>")]
    pub save_trial_best: Option<u32>,
    #[serde(default, deserialize_with = "uint_in::<_, u32, 0, 2147483647>")]
    pub save_trial_latest: Option<u32>,
    #[serde(default, deserialize_with = "field::opt_string")]
    pub metric: Option<String>,
    #[serde(default, deserialize_with = "field::opt_bool")]
    pub smaller_is_better: Option<bool>,
    #[serde(default, deserialize_with = "field::opt_bool")]
    pub checksums: Option<bool>,
}

/// The lifecycle keys of a user dict of type `ty` (already checked to be allowed).
fn lifecycle(v: &Value, ty: &str) -> Result<Lifecycle> {
    let l: Lifecycle = from_object_value(v, format!("checkpoint_storage ({ty})"))?;
    if l.metric.as_deref() == Some("") {
        bail!(
            InvalidArgument,
            "checkpoint_storage ({ty}): \"metric\" is empty"
        );
    }
    Ok(l)
}

/// Normalize an object-store prefix as Determined does (`storage/_util.py: normalize_prefix`):
/// `None`/`""` → `""`; any `..` path component → error; else `normpath(prefix).lstrip("/")`.
pub fn normalize_prefix(prefix: Option<&str>) -> Result<String> {
    let p = match prefix {
        None | Some("") => return Ok(String::new()),
        Some(p) => p,
    };
    if p.split('/').any(|c| c == "..") {
        bail!(
            InvalidArgument,
            "checkpoint_storage: prefix {p:?} must not contain \"..\" components"
        );
    }
    let n = normpath(p);
    Ok(n.trim_start_matches('/').to_owned())
}

/// Python's `os.path.normpath` for `/`-separated paths.
fn normpath(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let abs = p.starts_with('/');
    // POSIX keeps exactly two leading slashes; Determined never relies on that, a single one is fine.
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !abs {
                    parts.push("..");
                }
            }
            c => parts.push(c),
        }
    }
    let body = parts.join("/");
    match (abs, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".into(),
        (false, false) => body,
    }
}

fn is_scheme(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(x) if x.is_ascii_alphabetic())
        && c.all(|x| x.is_ascii_alphanumeric() || matches!(x, '+' | '-' | '.'))
}

/// Parse the user's `checkpoint_storage` option: a string form, or a JSON dict when it starts
/// with `{`.
pub fn parse_user(text: &str) -> Result<StorageSpec> {
    let t = text.trim_start();
    if t.starts_with('{') {
        let m = crate::json::parse_object(text, "checkpoint_storage")?;
        return parse_user_dict(&Value::Object(m));
    }
    parse_user_string(text)
}

/// The string forms (`storage.from_string`).
pub fn parse_user_string(s: &str) -> Result<StorageSpec> {
    if s.is_empty() {
        bail!(InvalidArgument, "checkpoint_storage: empty string");
    }
    // urllib.parse.urlparse, as far as Determined relies on it.
    let (scheme, rest) = match s.split_once(':') {
        Some((sch, rest)) if is_scheme(sch) => (sch.to_ascii_lowercase(), rest),
        _ => (String::new(), s),
    };
    let (netloc, path) = match rest.strip_prefix("//") {
        Some(r) => match r.find('/') {
            Some(i) => (&r[..i], &r[i..]),
            None => (r, ""),
        },
        None => ("", rest),
    };
    if s.contains(';') || s.contains('?') || s.contains('#') {
        bail!(InvalidArgument, "checkpoint_storage: malformed checkpoint_storage string {s:?} (no ';', '?' or '#' allowed)");
    }
    match scheme.as_str() {
        "" | "file" => {
            if !netloc.is_empty() {
                bail!(
                    InvalidArgument,
                    "checkpoint_storage: {s:?} names a host ({netloc:?}); a file path must have no host (use file:///path)"
                );
            }
            if path.is_empty() {
                bail!(InvalidArgument, "checkpoint_storage: {s:?} has an empty path");
            }
            Ok(StorageSpec {
                config: StorageConfig::SharedFs { base: PathBuf::from(path) },
                wire: Value::Object(obj! { "type" => "shared_fs", "host_path" => path }),
                lifecycle: Lifecycle::default(),
            })
        }
        "s3" | "gs" => {
            if netloc.is_empty() {
                bail!(InvalidArgument, "checkpoint_storage: {s:?} names no bucket");
            }
            let prefix = path.trim_start_matches('/');
            let normalized = normalize_prefix(Some(prefix))?;
            if scheme == "s3" {
                Ok(StorageSpec {
                    config: StorageConfig::S3(S3Config {
                        bucket: netloc.to_owned(),
                        prefix: normalized,
                        ..S3Config::default()
                    }),
                    wire: Value::Object(obj! { "type" => "s3", "bucket" => netloc, "prefix" => prefix }),
                    lifecycle: Lifecycle::default(),
                })
            } else {
                Ok(StorageSpec {
                    config: StorageConfig::Gcs(GcsConfig {
                        bucket: netloc.to_owned(),
                        prefix: normalized,
                        ..GcsConfig::default()
                    }),
                    wire: Value::Object(obj! { "type" => "gcs", "bucket" => netloc, "prefix" => prefix }),
                    lifecycle: Lifecycle::default(),
                })
            }
        }
        other => Err(err!(
            InvalidArgument,
            "checkpoint_storage: unknown scheme {other:?} in {s:?} (expected a path, file://, s3:// or gs://)"
        )),
    }
}

/// A user dict (`init(checkpoint_storage={...})`): any type but `shared_fs`.
pub fn parse_user_dict(v: &Value) -> Result<StorageSpec> {
    let m = v.as_object().ok_or_else(|| {
        err!(
            InvalidArgument,
            "checkpoint_storage: expected a JSON object, got {}",
            v.type_name()
        )
    })?;
    if m.get("type").and_then(Value::as_str) == Some("shared_fs") {
        bail!(
            InvalidArgument,
            "checkpoint_storage: cannot configure a shared_fs checkpoint storage with a dictionary; use a string (the path) or {{\"type\": \"directory\", \"container_path\": ...}}"
        );
    }
    let config = build(m, None)?;
    Ok(StorageSpec {
        lifecycle: lifecycle(v, config.type_name())?,
        config,
        wire: v.clone(),
    })
}

/// The experiment config's `checkpoint_storage` (`storage.build(config, container_path=...)`).
/// `container_path` is where `host_path` is mounted (`/determined_shared_fs` on-cluster).
pub fn parse_experiment(v: &Value, container_path: Option<&Path>) -> Result<StorageSpec> {
    let m = v.as_object().ok_or_else(|| {
        err!(
            InvalidArgument,
            "experiment config checkpoint_storage: expected an object, got {}",
            v.type_name()
        )
    })?;
    let config = build(m, container_path)?;
    // The master's own garbage collection applies these keys on-cluster; they are not read.
    Ok(StorageSpec {
        config,
        wire: v.clone(),
        lifecycle: Lifecycle::default(),
    })
}

fn check_keys(m: &Map, ty: &str, allowed: &[&str]) -> Result<()> {
    for k in m.keys() {
        if !allowed.contains(&k.as_str()) {
            bail!(
                InvalidArgument,
                "checkpoint_storage ({ty}): unexpected key {k:?} (allowed: {})",
                allowed.join(", ")
            );
        }
    }
    Ok(())
}

const SAVE_KEYS: [&str; 3] = [
    "save_experiment_best",
    "save_trial_best",
    "save_trial_latest",
];

/// detcore's own lifecycle keys (see [`Lifecycle`]), allowed in every dict.
const LIFECYCLE_KEYS: [&str; 3] = ["metric", "smaller_is_better", "checksums"];

fn build(m: &Map, container_path: Option<&Path>) -> Result<StorageConfig> {
    let ty = match m.get("type") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => bail!(
            InvalidArgument,
            "checkpoint_storage: \"type\" must be a string, got {}",
            other.type_name()
        ),
        None => bail!(
            InvalidArgument,
            "checkpoint_storage: missing required key \"type\""
        ),
    };
    let t = ty.as_str();
    let with_common = |extra: &[&'static str]| -> Vec<&str> {
        let mut v = vec!["type"];
        v.extend_from_slice(&SAVE_KEYS);
        v.extend_from_slice(&LIFECYCLE_KEYS);
        v.extend_from_slice(extra);
        if matches!(t, "s3" | "gcs" | "azure") {
            v.extend_from_slice(&TRANSFER_KEYS);
        }
        v
    };
    let what = format!("checkpoint_storage ({t})");
    let v = &Value::Object(m.clone());
    match t {
        "shared_fs" => {
            check_keys(
                m,
                t,
                &with_common(&["host_path", "storage_path", "container_path", "propagation", "checkpoint_path", "tensorboard_path"]),
            )?;
            #[derive(Deserialize)]
            struct SharedFs {
                #[serde(deserialize_with = "field::string")]
                host_path: String,
                #[serde(default, deserialize_with = "field::opt_string")]
                storage_path: Option<String>,
                #[serde(default, deserialize_with = "field::opt_string")]
                tensorboard_path: Option<String>,
                #[serde(default, deserialize_with = "field::opt_string")]
                checkpoint_path: Option<String>,
            }
            let c: SharedFs = from_object_value(v, &what)?;
            // Legacy: no storage_path key at all → tensorboard_path or checkpoint_path.
            let storage_path = if m.contains_key("storage_path") {
                c.storage_path
            } else {
                c.tensorboard_path.or(c.checkpoint_path)
            };
            let base = full_storage_path(&c.host_path, storage_path.as_deref(), container_path)?;
            Ok(StorageConfig::SharedFs { base })
        }
        "directory" => {
            check_keys(m, t, &with_common(&["container_path"]))?;
            #[derive(Deserialize)]
            struct Directory {
                #[serde(deserialize_with = "field::string")]
                container_path: String,
            }
            let c: Directory = from_object_value(v, &what)?;
            if c.container_path.is_empty() {
                bail!(InvalidArgument, "checkpoint_storage (directory): \"container_path\" is empty");
            }
            Ok(StorageConfig::Directory { container_path: PathBuf::from(c.container_path) })
        }
        "s3" => {
            check_keys(
                m,
                t,
                &with_common(&[
                    "bucket",
                    "access_key",
                    "secret_key",
                    "session_token",
                    "endpoint_url",
                    "prefix",
                    "region",
                    "temp_dir",
                ]),
            )?;
            let mut c: S3Config = from_object_value(v, &what)?;
            c.prefix = normalize_prefix(Some(&c.prefix))?;
            c.transfer = from_object_value(v, &what)?;
            Ok(StorageConfig::S3(c))
        }
        "gcs" => {
            check_keys(m, t, &with_common(&["bucket", "prefix", "temp_dir"]))?;
            let mut c: GcsConfig = from_object_value(v, &what)?;
            c.prefix = normalize_prefix(Some(&c.prefix))?;
            c.transfer = from_object_value(v, &what)?;
            Ok(StorageConfig::Gcs(c))
        }
        "azure" => {
            check_keys(
                m,
                t,
                &with_common(&["container", "connection_string", "account_url", "credential", "temp_dir"]),
            )?;
            let mut c: AzureConfig = from_object_value(v, &what)?;
            if c.connection_string.is_none() && c.account_url.is_none() {
                bail!(InvalidArgument, "checkpoint_storage (azure): one of \"connection_string\" or \"account_url\" is required");
            }
            c.transfer = from_object_value(v, &what)?;
            Ok(StorageConfig::Azure(c))
        }
        other => Err(err!(
            InvalidArgument,
            "checkpoint_storage: unknown type {other:?} (expected shared_fs, directory, s3, gcs or azure)"
        )),
    }
}

/// `_full_storage_path(host_path, storage_path, container_path)` of Determined's shared_fs:
/// `host_path` must be absolute; a relative `storage_path` must stay inside `host_path`; the
/// result is `container_path[/<rel>]`, or the host path itself when no container path is given.
pub fn full_storage_path(
    host_path: &str,
    storage_path: Option<&str>,
    container_path: Option<&Path>,
) -> Result<PathBuf> {
    if !host_path.starts_with('/') {
        bail!(
            InvalidArgument,
            "checkpoint_storage (shared_fs): host_path must be an absolute path, got {host_path:?}"
        );
    }
    let base = match container_path {
        Some(c) => c.to_path_buf(),
        None => PathBuf::from(host_path),
    };
    let sp = match storage_path {
        None => return Ok(base),
        Some(sp) => sp,
    };
    let joined = if sp.starts_with('/') {
        normpath(sp)
    } else {
        normpath(&format!("{host_path}/{sp}"))
    };
    let host = normpath(host_path);
    let rel = if joined == host {
        String::new()
    } else if let Some(r) = joined.strip_prefix(&format!("{}/", host.trim_end_matches('/'))) {
        r.to_owned()
    } else {
        bail!(
            InvalidArgument,
            "checkpoint_storage (shared_fs): storage_path {sp:?} must be a subdirectory of host_path {host_path:?}"
        );
    };
    Ok(if rel.is_empty() { base } else { base.join(rel) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::to_wire;

    /// The endpoint part of a storage identity never carries a secret.
    #[test]
    fn endpoints_without_secrets() {
        let ep = |t: &str| endpoint_of(&parse_user(t).unwrap().config);
        assert_eq!(
            ep(r#"{"type": "s3", "bucket": "b", "endpoint_url": "http://u:pw@127.0.0.1:9000"}"#)
                .as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(ep(r#"{"type": "s3", "bucket": "b"}"#), None);
        let cs = "DefaultEndpointsProtocol=http;AccountName=devstore;AccountKey=c2VjcmV0;BlobEndpoint=http://127.0.0.1:10000/devstore;";
        let azure =
            format!(r#"{{"type": "azure", "container": "c", "connection_string": "{cs}"}}"#);
        let got = ep(&azure).unwrap();
        assert_eq!(got, "http://127.0.0.1:10000/devstore");
        let cs = "AccountName=acct;AccountKey=c2VjcmV0";
        let azure =
            format!(r#"{{"type": "azure", "container": "c", "connection_string": "{cs}"}}"#);
        assert_eq!(ep(&azure).as_deref(), Some("acct"));
        assert_eq!(ep("/tmp/x"), None);
    }

    #[test]
    fn strings() {
        let s = parse_user("/tmp/ckpts").unwrap();
        assert_eq!(
            s.config,
            StorageConfig::SharedFs {
                base: "/tmp/ckpts".into()
            }
        );
        assert_eq!(
            to_wire(&s.wire),
            r#"{"type": "shared_fs", "host_path": "/tmp/ckpts"}"#
        );
        let s = parse_user("file:///tmp/x").unwrap();
        assert_eq!(
            s.config,
            StorageConfig::SharedFs {
                base: "/tmp/x".into()
            }
        );
        let s = parse_user("relative/dir").unwrap();
        assert_eq!(
            s.config,
            StorageConfig::SharedFs {
                base: "relative/dir".into()
            }
        );
        let s = parse_user("s3://bkt/a/b/").unwrap();
        match &s.config {
            StorageConfig::S3(c) => {
                assert_eq!(c.bucket, "bkt");
                assert_eq!(c.prefix, "a/b");
            }
            _ => panic!(),
        }
        assert_eq!(
            to_wire(&s.wire),
            r#"{"type": "s3", "bucket": "bkt", "prefix": "a/b/"}"#
        );
        let s = parse_user("gs://g").unwrap();
        assert_eq!(
            s.config,
            StorageConfig::Gcs(GcsConfig {
                bucket: "g".into(),
                prefix: "".into(),
                ..GcsConfig::default()
            })
        );
    }

    #[test]
    fn bad_strings() {
        let e = parse_user("ftp://x").unwrap_err();
        assert!(
            e.message()
                .contains("unknown scheme \"ftp\" in \"ftp://x\""),
            "{e}"
        );
        assert!(parse_user("file://host/x")
            .unwrap_err()
            .message()
            .contains("host"));
        assert!(parse_user("/a?b")
            .unwrap_err()
            .message()
            .contains("malformed"));
        assert!(parse_user("").is_err());
        assert!(parse_user("s3://b/../x")
            .unwrap_err()
            .message()
            .contains(".."));
        assert!(parse_user("azure://c")
            .unwrap_err()
            .message()
            .contains("azure"));
    }

    #[test]
    fn dicts() {
        let s = parse_user(r#"{"type": "directory", "container_path": "/data"}"#).unwrap();
        assert_eq!(
            s.config,
            StorageConfig::Directory {
                container_path: "/data".into()
            }
        );
        assert!(parse_user(r#"{"type": "shared_fs", "host_path": "/x"}"#)
            .unwrap_err()
            .message()
            .contains("shared_fs"));
        assert!(parse_user(r#"{"container_path": "/x"}"#)
            .unwrap_err()
            .message()
            .contains("\"type\""));
        assert!(parse_user(r#"{"type": "directory"}"#)
            .unwrap_err()
            .message()
            .contains("container_path"));
        assert!(
            parse_user(r#"{"type": "directory", "container_path": "/x", "bogus": 1}"#)
                .unwrap_err()
                .message()
                .contains("bogus")
        );
        assert!(parse_user(r#"{"type": "nfs"}"#)
            .unwrap_err()
            .message()
            .contains("unknown type \"nfs\""));
        assert!(parse_user(r#"{"type": "azure", "container": "c"}"#)
            .unwrap_err()
            .message()
            .contains("account_url"));
        assert!(parse_user(r#"{"type": 3}"#).is_err());
        assert!(parse_user(r#"{"type": "#).is_err());
        let s = parse_user(r#"{"type": "s3", "bucket": "b", "prefix": "/p/./q", "endpoint_url": "http://127.0.0.1:9000"}"#)
            .unwrap();
        match s.config {
            StorageConfig::S3(c) => {
                assert_eq!(c.prefix, "p/q");
                assert_eq!(c.endpoint_url.as_deref(), Some("http://127.0.0.1:9000"));
            }
            _ => panic!(),
        }
    }

    #[test]
    fn lifecycle_keys() {
        let s = parse_user(
            r#"{"type": "directory", "container_path": "/d", "save_trial_latest": 2,
                "save_trial_best": 1, "metric": "loss", "smaller_is_better": false,
                "checksums": false}"#,
        )
        .unwrap();
        assert_eq!(
            s.lifecycle,
            Lifecycle {
                save_trial_latest: Some(2),
                save_trial_best: Some(1),
                metric: Some("loss".into()),
                smaller_is_better: Some(false),
                checksums: Some(false),
                ..Lifecycle::default()
            }
        );
        assert_eq!(parse_user("/x").unwrap().lifecycle, Lifecycle::default());
        for (bad, want) in [
            (
                r#""save_trial_latest": -1"#,
                "\"save_trial_latest\" must be an integer from 0",
            ),
            (
                r#""save_trial_best": 1.5"#,
                "\"save_trial_best\" must be an integer",
            ),
            (r#""metric": 3"#, "\"metric\" must be a string"),
            (r#""metric": """#, "\"metric\" is empty"),
            (r#""smaller_is_better": "yes""#, "must be true or false"),
            (r#""checksums": 1"#, "\"checksums\" must be true or false"),
        ] {
            let text = format!(r#"{{"type": "directory", "container_path": "/d", {bad}}}"#);
            let e = parse_user(&text).unwrap_err();
            assert!(e.message().contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn experiment_shared_fs() {
        let cfg = crate::json::parse(
            r#"{"type": "shared_fs", "host_path": "/mnt/data", "storage_path": "ckpts/x", "propagation": "rprivate",
                "container_path": null, "save_experiment_best": 0, "save_trial_best": 1, "save_trial_latest": 1}"#,
        )
        .unwrap();
        let s = parse_experiment(&cfg, Some(Path::new(SHARED_FS_CONTAINER_PATH))).unwrap();
        assert_eq!(
            s.config,
            StorageConfig::SharedFs {
                base: "/determined_shared_fs/ckpts/x".into()
            }
        );
        let cfg = crate::json::parse(
            r#"{"type": "shared_fs", "host_path": "/mnt/data", "storage_path": "../etc"}"#,
        )
        .unwrap();
        assert!(parse_experiment(&cfg, Some(Path::new("/d")))
            .unwrap_err()
            .message()
            .contains("subdirectory"));
        let cfg = crate::json::parse(r#"{"type": "shared_fs", "host_path": "/mnt/data", "checkpoint_path": "/mnt/data/old"}"#)
            .unwrap();
        assert_eq!(
            parse_experiment(&cfg, Some(Path::new("/d")))
                .unwrap()
                .config,
            StorageConfig::SharedFs {
                base: "/d/old".into()
            }
        );
        let cfg = crate::json::parse(r#"{"type": "shared_fs", "host_path": "rel"}"#).unwrap();
        assert!(parse_experiment(&cfg, None)
            .unwrap_err()
            .message()
            .contains("absolute"));
    }

    #[test]
    fn prefixes() {
        assert_eq!(normalize_prefix(None).unwrap(), "");
        assert_eq!(normalize_prefix(Some("/a//b/./c/")).unwrap(), "a/b/c");
        assert!(normalize_prefix(Some("a/../b")).is_err());
        assert!(normalize_prefix(Some("..")).is_err());
        assert_eq!(normalize_prefix(Some("a..b")).unwrap(), "a..b");
    }
}

#[cfg(test)]
mod typed_tests {
    use super::*;

    /// Every key of a storage dict is read by serde into its struct; a wrong one is named with
    /// the type of storage, what it must be and what it was.
    #[test]
    fn wrong_keys_are_named() {
        for (text, want) in [
            (
                r#"{"type": "s3"}"#,
                r#"checkpoint_storage (s3): required key "bucket" is missing"#,
            ),
            (
                r#"{"type": "s3", "bucket": 5}"#,
                r#"checkpoint_storage (s3): key "bucket" must be a string, got integer 5"#,
            ),
            (
                r#"{"type": "gcs", "bucket": "b", "concurrency": 0}"#,
                r#"checkpoint_storage (gcs): key "concurrency" must be an integer from 1 to 256, got integer 0"#,
            ),
            (
                r#"{"type": "azure", "container": "c", "account_url": "u", "timeout_seconds": NaN}"#,
                r#"checkpoint_storage (azure): key "timeout_seconds" must be a number of seconds in (0, 86400], got number "NaN""#,
            ),
            (
                r#"{"type": "directory", "container_path": "/d", "save_trial_best": 2147483648}"#,
                r#"checkpoint_storage (directory): key "save_trial_best" must be an integer from 0 to 2147483647, got integer 2147483648"#,
            ),
        ] {
            let e = parse_user(text).unwrap_err();
            assert_eq!(e.kind(), crate::error::Kind::InvalidArgument);
            assert_eq!(e.message(), want, "{text}");
        }
        let s = parse_user(
            r#"{"type": "s3", "bucket": "b", "prefix": null, "part_size": 6291456, "temp_dir": "/t"}"#,
        )
        .unwrap();
        let StorageConfig::S3(c) = s.config else {
            panic!("{:?}", s.config)
        };
        assert_eq!(c.prefix, "");
        assert_eq!(c.transfer.part_size, Some(6 << 20));
        assert_eq!(c.temp_dir.as_deref(), Some(Path::new("/t")));
    }
}
