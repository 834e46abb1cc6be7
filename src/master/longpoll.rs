//! A cancellable GET for the preemption long-poll.
//!
//! The master holds `GET .../signals/preemption?timeout_seconds=60` open for up to a minute.
//! Python's watcher is a daemon thread that nobody joins; detcore joins every thread at close,
//! so this request must be interruptible: it runs on its own short-lived connection whose socket
//! [`Cancel::cancel`] shuts down from another thread (the blocked read then returns at once).

use super::client::{MasterClient, AUTH_HEADER};
use crate::error::Result;
use parking_lot::Mutex;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Interrupts the GET in progress (and every later one).
#[derive(Default)]
pub struct Cancel {
    flag: AtomicBool,
    sock: Mutex<Option<TcpStream>>,
}

impl Cancel {
    /// Stop the request in progress, if any, and refuse new ones.
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
        if let Some(s) = self.sock.lock().take() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// True once cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    fn register(&self, s: &TcpStream) -> Result<()> {
        let mut g = self.sock.lock();
        if self.is_cancelled() {
            bail!(State, "cancelled");
        }
        *g = s.try_clone().ok();
        Ok(())
    }

    fn clear(&self) {
        self.sock.lock().take();
    }
}

/// What a GET returned.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub body: Vec<u8>,
    /// The `Location` header (redirects).
    pub location: Option<String>,
}

trait Io: Read + Write {}
impl<T: Read + Write> Io for T {}

/// `GET <target>` on a fresh connection, waiting at most `timeout` in all, interruptible by
/// `cancel`. The error's kind is `Timeout` when the time ran out.
pub fn get(
    client: &MasterClient,
    target_path: &str,
    query: &str,
    timeout: Duration,
    cancel: &Arc<Cancel>,
) -> Result<RawResponse> {
    let start = Instant::now();
    let url = client.url();
    let addrs: Vec<_> = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| err!(Master, "cannot resolve the master host {:?}: {e}", url.host))?
        .collect();
    let connect_timeout = client.timeouts().connect.min(timeout);
    let mut last_err = None;
    let mut tcp = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, connect_timeout) {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last_err = Some(e),
        }
    }
    let tcp = tcp.ok_or_else(|| {
        err!(
            Master,
            "cannot reach the master at {url}: {}",
            last_err.map_or("no address".into(), |e| e.to_string())
        )
    })?;
    cancel.register(&tcp)?;
    let res = exchange(client, tcp, target_path, query, start, timeout);
    cancel.clear();
    if cancel.is_cancelled() {
        bail!(State, "cancelled");
    }
    res
}

fn exchange(
    client: &MasterClient,
    tcp: TcpStream,
    target_path: &str,
    query: &str,
    start: Instant,
    timeout: Duration,
) -> Result<RawResponse> {
    let url = client.url();
    let _ = tcp.set_nodelay(true);
    let mut stream: Box<dyn Io> = match client.tls_config() {
        Some(cfg) if url.is_tls() => {
            let name = rustls::pki_types::ServerName::try_from(url.host.clone())
                .map_err(|_| err!(Master, "master host {:?} is not a valid TLS name", url.host))?;
            let conn = rustls::ClientConnection::new(cfg.clone(), name)
                .map_err(|e| err!(Master, "TLS: {e}"))?;
            Box::new(rustls::StreamOwned::new(conn, tcp.try_clone().map_err(io)?))
        }
        _ => Box::new(tcp.try_clone().map_err(io)?),
    };
    let left = |what: &str| -> Result<Duration> {
        let l = timeout.saturating_sub(start.elapsed());
        if l.is_zero() {
            bail!(
                Timeout,
                "GET {target_path}: no answer within {:.0} s ({what})",
                timeout.as_secs_f64()
            );
        }
        Ok(l)
    };
    tcp.set_write_timeout(Some(left("sending")?)).map_err(io)?;
    let target = url.target(target_path);
    let req = format!(
        "GET {target}{}{query} HTTP/1.1\r\nHost: {}\r\nUser-Agent: detcore/{}\r\nAccept: */*\r\n{AUTH_HEADER}: {}\r\nConnection: close\r\n\r\n",
        if query.is_empty() { "" } else { "?" },
        url.authority(),
        env!("CARGO_PKG_VERSION"),
        client.auth_value(),
    );
    stream
        .write_all(req.as_bytes())
        .map_err(|e| net(e, target_path, timeout))?;
    stream.flush().map_err(|e| net(e, target_path, timeout))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(r) = complete(&buf)? {
            return Ok(r);
        }
        tcp.set_read_timeout(Some(left("waiting")?)).map_err(io)?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                // Never more than the largest answer (plus its header) in memory.
                if buf.len() > super::client::MAX_ANSWER_BYTES + HEADER_LIMIT {
                    bail!(
                        Master,
                        "GET {target_path}: the master's answer is larger than {} MiB; refusing it",
                        super::client::MAX_ANSWER_BYTES >> 20
                    );
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(net(e, target_path, timeout)),
        }
    }
    // EOF: a response without a length ends here.
    match complete_at_eof(&buf)? {
        Some(r) => Ok(r),
        None => bail!(
            Master,
            "GET {target_path}: the master closed the connection without a complete answer"
        ),
    }
}

fn io(e: std::io::Error) -> crate::error::Error {
    err!(Master, "socket: {e}")
}

fn net(e: std::io::Error, path: &str, timeout: Duration) -> crate::error::Error {
    if matches!(
        e.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    ) {
        err!(
            Timeout,
            "GET {path}: no answer within {:.0} s",
            timeout.as_secs_f64()
        )
    } else {
        err!(Master, "GET {path}: {e}")
    }
}

struct Head {
    status: u16,
    body_start: usize,
    content_length: Option<usize>,
    chunked: bool,
    location: Option<String>,
}

/// The largest response header accepted.
const HEADER_LIMIT: usize = 64 * 1024;

fn head(buf: &[u8]) -> Result<Option<Head>> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > HEADER_LIMIT {
            bail!(Master, "the master's answer has an oversized header");
        }
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&buf[..end]);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| err!(Master, "bad status line from the master: {status_line:?}"))?;
    let mut content_length = None;
    let mut chunked = false;
    let mut location = None;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let k = k.trim();
            if k.eq_ignore_ascii_case("location") {
                location = Some(v.trim().to_owned());
            } else if k.eq_ignore_ascii_case("content-length") {
                content_length = v.trim().parse().ok();
                if content_length.is_some_and(|n: usize| n > super::client::MAX_ANSWER_BYTES) {
                    bail!(
                        Master,
                        "the master's answer is larger than {} MiB (it announces {} bytes); refusing it",
                        super::client::MAX_ANSWER_BYTES >> 20,
                        v.trim()
                    );
                }
            } else if k.eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
            {
                chunked = true;
            }
        }
    }
    Ok(Some(Head {
        status,
        body_start: end + 4,
        content_length,
        chunked,
        location,
    }))
}

fn complete(buf: &[u8]) -> Result<Option<RawResponse>> {
    let Some(h) = head(buf)? else {
        return Ok(None);
    };
    let body = &buf[h.body_start..];
    if h.chunked {
        return Ok(dechunk(body)?.map(|b| RawResponse {
            status: h.status,
            body: b,
            location: h.location,
        }));
    }
    match h.content_length {
        Some(n) if body.len() >= n => Ok(Some(RawResponse {
            status: h.status,
            body: body[..n].to_vec(),
            location: h.location,
        })),
        _ => Ok(None),
    }
}

fn complete_at_eof(buf: &[u8]) -> Result<Option<RawResponse>> {
    if let Some(r) = complete(buf)? {
        return Ok(Some(r));
    }
    match head(buf)? {
        Some(h) if !h.chunked && h.content_length.is_none() => Ok(Some(RawResponse {
            status: h.status,
            body: buf[h.body_start..].to_vec(),
            location: h.location,
        })),
        _ => Ok(None),
    }
}

/// Decode a chunked body; `None` while incomplete.
fn dechunk(mut b: &[u8]) -> Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size_text = String::from_utf8_lossy(&b[..eol]);
        let size_hex = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| err!(Master, "bad chunk size {size_hex:?} from the master"))?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(Some(out));
        }
        if b.len() < size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lengths_and_chunks() {
        let r = complete(b"HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\n{\"preempt\":true}")
            .unwrap()
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"{\"preempt\":true}");
        assert!(
            complete(b"HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\n{\"pre")
                .unwrap()
                .is_none()
        );
        let c = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"pre\r\nb\r\nempt\":true}\r\n0\r\n\r\n";
        assert_eq!(complete(c).unwrap().unwrap().body, b"{\"preempt\":true}");
        let eof = b"HTTP/1.0 503 Unavailable\r\n\r\nbusy";
        assert!(complete(eof).unwrap().is_none());
        assert_eq!(complete_at_eof(eof).unwrap().unwrap().status, 503);
        assert!(complete(b"garbage\r\n\r\n").is_err());
    }
}
