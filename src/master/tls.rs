//! TLS towards the master (docs/protocol.md#tls).
//!
//! - `DET_MASTER_CERT_FILE=noverify` (any case): the certificate is not verified.
//! - `DET_MASTER_CERT_FILE=<path>`: the public roots (Mozilla's, as Python's certifi bundle) plus
//!   every certificate of that PEM file are trusted. A certificate of the file presented by the
//!   master as its own is accepted as is (a self-signed master certificate, even one marked as a
//!   CA, which OpenSSL accepts and webpki alone would refuse). A missing file gives Python's
//!   warning and the default trust.
//! - unset: the PEM stored for this master in `<config dir>/determined/certs.json`, if any.
//! - `DET_MASTER_CERT_NAME`: the name checked against the certificate instead of the URL's
//!   host; the connection (and SNI) still use the URL's host.

use crate::cluster_info::MasterUrl;
use crate::env::env_nonempty;
use crate::error::Result;
use crate::json::Value;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How the master's certificate is checked.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Public roots only.
    Default,
    /// No verification at all.
    NoVerify,
    /// Public roots plus these certificates (from `source`).
    Pem {
        certs: Vec<CertificateDer<'static>>,
        source: String,
    },
}

/// The TLS settings of the master connection.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub trust: Trust,
    /// `DET_MASTER_CERT_NAME`: the name to verify instead of the URL's host.
    pub cert_name: Option<String>,
}

/// Determined's config folder: `DET_DEBUG_CONFIG_PATH`, else `$XDG_CONFIG_HOME/determined`,
/// else `~/.config/determined`.
pub fn config_dir() -> Option<PathBuf> {
    if let Some(p) = env_nonempty("DET_DEBUG_CONFIG_PATH") {
        return Some(PathBuf::from(p));
    }
    if let Ok(x) = std::env::var("XDG_CONFIG_HOME") {
        return Some(PathBuf::from(x).join("determined"));
    }
    env_nonempty("HOME").map(|h| PathBuf::from(h).join(".config").join("determined"))
}

/// Parse the certificates of a PEM text.
pub fn parse_pem(text: &[u8], source: &str) -> Result<Vec<CertificateDer<'static>>> {
    let mut out = Vec::new();
    for c in CertificateDer::pem_slice_iter(text) {
        out.push(c.map_err(|e| err!(InvalidArgument, "{source}: bad PEM certificate: {e:?}"))?);
    }
    if out.is_empty() {
        bail!(
            InvalidArgument,
            "{source}: no PEM certificate (\"-----BEGIN CERTIFICATE-----\") found"
        );
    }
    Ok(out)
}

impl TlsSettings {
    /// Read `DET_MASTER_CERT_FILE`, `DET_MASTER_CERT_NAME` and the certs.json store, as
    /// Python's `certs.default_load(master_url)` does.
    pub fn from_env(master: &MasterUrl) -> Result<TlsSettings> {
        let cert_name = env_nonempty("DET_MASTER_CERT_NAME");
        let trust = match env_nonempty("DET_MASTER_CERT_FILE") {
            Some(p) if p.eq_ignore_ascii_case("noverify") => Trust::NoVerify,
            Some(p) => {
                let path = Path::new(&p);
                if path.exists() {
                    let data = std::fs::read(path).map_err(|e| {
                        err!(
                            InvalidArgument,
                            "DET_MASTER_CERT_FILE={p}: cannot read: {e}"
                        )
                    })?;
                    Trust::Pem {
                        certs: parse_pem(&data, &format!("DET_MASTER_CERT_FILE={p}"))?,
                        source: p,
                    }
                } else {
                    log_warn!("DET_MASTER_CERT_FILE={p} path not found; continuing without cert");
                    Trust::Default
                }
            }
            None => match config_dir().map(|d| d.join("certs.json")) {
                Some(store) if store.is_file() => from_store(&store, master)?,
                _ => Trust::Default,
            },
        };
        Ok(TlsSettings { trust, cert_name })
    }

    /// The rustls client configuration for these settings.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = MasterVerifier::new(self, provider.clone())?;
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| err!(Internal, "TLS configuration: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        Ok(Arc::new(cfg))
    }
}

fn from_store(store: &Path, master: &MasterUrl) -> Result<Trust> {
    let text = std::fs::read_to_string(store)
        .map_err(|e| err!(InvalidArgument, "{}: cannot read: {e}", store.display()))?;
    let m = crate::json::parse_object(&text, format!("{} (master URL to PEM)", store.display()))?;
    match m.get(&master.canonical()) {
        Some(Value::String(pem)) => {
            let source = format!("{} (entry {})", store.display(), master.canonical());
            Ok(Trust::Pem {
                certs: parse_pem(pem.as_bytes(), &source)?,
                source,
            })
        }
        _ => Ok(Trust::Default),
    }
}

/// Checks the master's certificate according to [`TlsSettings`].
#[derive(Debug)]
struct MasterVerifier {
    /// `None`: noverify.
    webpki: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    pinned: Vec<CertificateDer<'static>>,
    name: Option<ServerName<'static>>,
    algs: WebPkiSupportedAlgorithms,
}

impl MasterVerifier {
    fn new(s: &TlsSettings, provider: Arc<CryptoProvider>) -> Result<MasterVerifier> {
        let algs = provider.signature_verification_algorithms;
        let name = match &s.cert_name {
            Some(n) => Some(ServerName::try_from(n.clone()).map_err(|_| {
                err!(
                    InvalidArgument,
                    "DET_MASTER_CERT_NAME={n:?} is not a valid DNS name or IP address"
                )
            })?),
            None => None,
        };
        let mut pinned = Vec::new();
        let webpki = match &s.trust {
            Trust::NoVerify => None,
            t => {
                let mut roots = RootCertStore::empty();
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                if let Trust::Pem { certs, .. } = t {
                    // A certificate that cannot be an anchor (e.g. a leaf with odd extensions)
                    // still counts as pinned below.
                    let _ = roots.add_parsable_certificates(certs.iter().cloned());
                    pinned = certs.clone();
                }
                Some(
                    rustls::client::WebPkiServerVerifier::builder_with_provider(
                        Arc::new(roots),
                        provider,
                    )
                    .build()
                    .map_err(|e| err!(InvalidArgument, "TLS trust store: {e}"))?,
                )
            }
        };
        Ok(MasterVerifier {
            webpki,
            pinned,
            name,
            algs,
        })
    }
}

impl ServerCertVerifier for MasterVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let Some(inner) = &self.webpki else {
            return Ok(ServerCertVerified::assertion());
        };
        let name = self.name.as_ref().unwrap_or(server_name);
        if self
            .pinned
            .iter()
            .any(|c| c.as_ref() == end_entity.as_ref())
        {
            let cert = webpki::EndEntityCert::try_from(end_entity)
                .map_err(|e| rustls::Error::InvalidCertificate(pki_error(e)))?;
            cert.verify_is_valid_for_subject_name(name)
                .map_err(|e| rustls::Error::InvalidCertificate(pki_error(e)))?;
            return Ok(ServerCertVerified::assertion());
        }
        inner.verify_server_cert(end_entity, intermediates, name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

fn pki_error(e: webpki::Error) -> rustls::CertificateError {
    match e {
        webpki::Error::CertNotValidForName(_) => rustls::CertificateError::NotValidForName,
        webpki::Error::BadDer | webpki::Error::BadDerTime => rustls::CertificateError::BadEncoding,
        other => rustls::CertificateError::Other(rustls::OtherError(Arc::new(PkiError(format!(
            "{other:?}"
        ))))),
    }
}

#[derive(Debug)]
struct PkiError(String);
impl std::fmt::Display for PkiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for PkiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_errors_are_named() {
        let e = parse_pem(b"nothing here", "DET_MASTER_CERT_FILE=/x").unwrap_err();
        assert!(e.message().contains("DET_MASTER_CERT_FILE=/x"), "{e}");
        let bad = b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        assert!(parse_pem(bad, "f").is_err());
    }

    #[test]
    fn configs_build() {
        for trust in [Trust::Default, Trust::NoVerify] {
            let s = TlsSettings {
                trust,
                cert_name: Some("master.example".into()),
            };
            s.client_config().unwrap();
        }
        let s = TlsSettings {
            trust: Trust::Default,
            cert_name: Some("not a name!".into()),
        };
        assert!(s
            .client_config()
            .unwrap_err()
            .message()
            .contains("DET_MASTER_CERT_NAME"));
    }
}
