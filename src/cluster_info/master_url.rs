//! The master URL that `cluster.json` names, canonicalized as Determined's
//! `canonicalize_master_url` does (docs/protocol.md#master-url): explicit scheme (`http://` when none, then default port 8080),
//! explicit port (80/443 for an explicit scheme), no user, password, query or fragment, no
//! trailing `/`; a path prefix (`/det`) is kept.
use crate::error::Result;

/// A canonical master URL, split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterUrl {
    /// `http` or `https`.
    pub scheme: String,
    /// The host, lowercased; IPv6 addresses without brackets.
    pub host: String,
    /// The port (always explicit).
    pub port: u16,
    /// The path prefix without a trailing `/` (usually empty).
    pub path: String,
}

impl MasterUrl {
    /// Parse and canonicalize `url`.
    pub fn parse(url: &str) -> Result<MasterUrl> {
        let (full, default_port) = if url.starts_with("https://") {
            (url.to_owned(), 443)
        } else if url.starts_with("http://") {
            (url.to_owned(), 80)
        } else {
            (format!("http://{url}"), 8080)
        };
        let (scheme, rest) = full.split_once("://").unwrap_or(("http", &full));
        // urlparse: netloc up to the first '/', '?' or '#'.
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (netloc, tail) = rest.split_at(end);
        if tail.contains('?') || tail.contains('#') {
            bail!(
                InvalidArgument,
                "invalid master url {full}; master url must not contain username, password, query, or fragment"
            );
        }
        if netloc.contains('@') {
            bail!(
                InvalidArgument,
                "invalid master url {full}; master url must not contain username, password, query, or fragment"
            );
        }
        let (host, port) = split_host_port(netloc)
            .ok_or_else(|| err!(InvalidArgument, "invalid master url {full}; bad port"))?;
        if host.is_empty() {
            bail!(
                InvalidArgument,
                "invalid master url {full}; master url must contain a nonempty hostname"
            );
        }
        let path = tail.trim_end_matches('/').to_owned();
        Ok(MasterUrl {
            scheme: scheme.to_owned(),
            host: host.to_ascii_lowercase(),
            port: port.unwrap_or(default_port),
            path,
        })
    }

    /// True for `https`.
    pub fn is_tls(&self) -> bool {
        self.scheme == "https"
    }

    /// `host:port`, with brackets around an IPv6 host.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The canonical form, `scheme://host:port[/prefix]`.
    pub fn canonical(&self) -> String {
        format!("{}://{}{}", self.scheme, self.authority(), self.path)
    }

    /// The URL of an API path (`/api/v1/...`): `<canonical>/<path without leading "/">`.
    pub fn join(&self, path: &str) -> String {
        format!("{}/{}", self.canonical(), path.trim_start_matches('/'))
    }

    /// The request target for `path` on the wire: the prefix plus the path.
    pub fn target(&self, path: &str) -> String {
        format!("{}/{}", self.path, path.trim_start_matches('/'))
    }
}

impl std::fmt::Display for MasterUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.canonical())
    }
}

fn split_host_port(netloc: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = netloc.strip_prefix('[') {
        let close = rest.find(']')?;
        let host = &rest[..close];
        let after = &rest[close + 1..];
        return match after.strip_prefix(':') {
            Some(p) if !p.is_empty() => Some((host, Some(p.parse().ok()?))),
            Some(_) => Some((host, None)),
            None if after.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match netloc.rsplit_once(':') {
        Some((h, "")) => Some((h, None)),
        Some((h, p)) => Some((h, Some(p.parse().ok()?))),
        None => Some((netloc, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> String {
        MasterUrl::parse(s).unwrap().canonical()
    }

    #[test]
    fn canonicalizes_like_python() {
        assert_eq!(c("localhost"), "http://localhost:8080");
        assert_eq!(c("localhost:9000"), "http://localhost:9000");
        assert_eq!(c("http://Master.example"), "http://master.example:80");
        assert_eq!(c("https://m.example/"), "https://m.example:443");
        assert_eq!(
            c("https://m.example:8443/det/"),
            "https://m.example:8443/det"
        );
        assert_eq!(c("http://10.0.0.1:8080"), "http://10.0.0.1:8080");
        assert_eq!(c("http://[::1]:8080"), "http://[::1]:8080");
        let u = MasterUrl::parse("https://m:1/det").unwrap();
        assert_eq!(u.join("/api/v1/x"), "https://m:1/det/api/v1/x");
        assert_eq!(u.target("/api/v1/x"), "/det/api/v1/x");
        assert!(u.is_tls());
    }

    #[test]
    fn refuses_what_python_refuses() {
        for bad in [
            "http://",
            "http://u:p@host:80",
            "http://host:80/?q=1",
            "http://host:80/#f",
            "http://host:notaport",
            "",
        ] {
            let e = MasterUrl::parse(bad).unwrap_err();
            assert!(e.message().contains("invalid master url"), "{bad}: {e}");
        }
    }
}
