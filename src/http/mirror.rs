//! Outbound HTTP(S) fetches: a blob for BUD-04 `PUT /mirror`, and a .torrent by URL (for
//! `POST /api/torrents` and the `download` command, [`fetch_torrent`]). A sync client whose
//! resolver refuses loopback, private, link-local and other non-public addresses unless the
//! caller allows them. The check happens on the addresses actually connected to (also after
//! redirects), so a name that resolves differently the second time cannot slip through.

use std::io::Read;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// An address anyone on the internet could reach (not ours, not a neighbour's).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (18..20).contains(&o[1]))
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let seg = v6.segments();
            // IPv4-compatible ::a.b.c.d (deprecated, but some stacks still route it).
            if seg[..6].iter().all(|&s| s == 0) && !v6.is_loopback() && !v6.is_unspecified() {
                let o = v6.octets();
                return is_public(IpAddr::V4(std::net::Ipv4Addr::new(
                    o[12], o[13], o[14], o[15],
                )));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00
                || (seg[0] & 0xffc0) == 0xfe80
                || (seg[0] & 0xffc0) == 0xfec0
                || seg[0] == 0x2002
                || (seg[0] == 0x2001 && seg[1] == 0x0db8)
                || (seg[0] == 0x64 && seg[1] == 0xff9b))
        }
    }
}

/// Why a mirror fetch failed.
#[derive(Debug)]
pub enum FetchError {
    /// The URL is not acceptable (scheme, form, a refused address).
    Refused(String),
    /// The origin failed (unreachable, error status, timeout).
    Origin(String),
}

/// A response being read.
pub struct Fetched {
    pub body: Box<dyn Read + Send + Sync>,
    pub length: Option<u64>,
    pub content_type: Option<String>,
}

fn resolve(netloc: &str, allow_private: bool) -> std::io::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = netloc.to_socket_addrs()?.collect();
    let allowed: Vec<SocketAddr> = addrs
        .iter()
        .copied()
        .filter(|a| allow_private || is_public(a.ip()))
        .collect();
    if allowed.is_empty() && !addrs.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("{netloc} resolves only to loopback, private or reserved addresses"),
        ));
    }
    Ok(allowed)
}

/// The host and port of an http(s) URL, for the early check.
fn netloc(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let port = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let has_port = match authority.rfind(']') {
        Some(end) => authority[end..].contains(':'),
        None => authority.contains(':'),
    };
    Some(if has_port {
        authority.to_string()
    } else {
        format!("{authority}:{port}")
    })
}

/// Starts a GET of `url`, checking where it goes; a whole fetch may take ten `timeout`s (a
/// trickling origin cannot hold a worker).
pub fn fetch(url: &str, allow_private: bool, timeout: Duration) -> Result<Fetched, FetchError> {
    fetch_within(url, allow_private, timeout, timeout.saturating_mul(10))
}

/// Most bytes of a .torrent fetched by URL.
pub const MAX_TORRENT_URL_BYTES: u64 = 16 << 20;

/// GETs a .torrent's bytes (not parsed): connect and each read within `timeout`, the whole
/// fetch within `total`, at most [`MAX_TORRENT_URL_BYTES`].
pub fn fetch_torrent(
    url: &str,
    allow_private: bool,
    timeout: Duration,
    total: Duration,
) -> Result<Vec<u8>, FetchError> {
    fetch_torrent_until(url, allow_private, timeout, total, &|| false)
}

/// [`fetch_torrent`] that gives up as soon as `cancelled()` says so: checked before the
/// request and after every read of the answer (so within one read, at most `timeout`, of
/// the caller losing interest).
pub fn fetch_torrent_until(
    url: &str,
    allow_private: bool,
    timeout: Duration,
    total: Duration,
    cancelled: &dyn Fn() -> bool,
) -> Result<Vec<u8>, FetchError> {
    let gone = || FetchError::Origin("cancelled: the client went away".into());
    if cancelled() {
        return Err(gone());
    }
    let fetched = fetch_within(url, allow_private, timeout.min(total), total)?;
    let too_big = || {
        FetchError::Origin(format!(
            "the answer is larger than {} MiB, not a torrent",
            MAX_TORRENT_URL_BYTES >> 20
        ))
    };
    if fetched.length.is_some_and(|n| n > MAX_TORRENT_URL_BYTES) {
        return Err(too_big());
    }
    let mut body = Vec::new();
    let mut reader = fetched.body.take(MAX_TORRENT_URL_BYTES + 1);
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        if cancelled() {
            return Err(gone());
        }
        match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FetchError::Origin(format!("reading the answer: {e}"))),
        }
    }
    if body.len() as u64 > MAX_TORRENT_URL_BYTES {
        return Err(too_big());
    }
    Ok(body)
}

/// Starts a GET of `url` that must end within `total`.
fn fetch_within(
    url: &str,
    allow_private: bool,
    timeout: Duration,
    total: Duration,
) -> Result<Fetched, FetchError> {
    if url.len() > 4096 {
        return Err(FetchError::Refused("the URL is too long".into()));
    }
    let Some(netloc) = netloc(url) else {
        return Err(FetchError::Refused(
            "the URL must be http:// or https:// with a host".into(),
        ));
    };
    match resolve(&netloc, allow_private) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(FetchError::Refused(e.to_string()))
        }
        Err(e) => return Err(FetchError::Origin(format!("resolving {netloc}: {e}"))),
        Ok(_) => {}
    }
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(timeout)
        .timeout_read(timeout)
        .timeout_write(timeout)
        .timeout(total)
        .redirects(5)
        .user_agent(concat!("torrent-gateway/", env!("CARGO_PKG_VERSION")))
        .resolver(move |n: &str| resolve(n, allow_private))
        .build();
    let response = agent.get(url).call().map_err(|e| match e {
        ureq::Error::Status(code, _) => FetchError::Origin(format!("origin answered {code}")),
        ureq::Error::Transport(t) => FetchError::Origin(format!("origin: {t}")),
    })?;
    let length = response
        .header("Content-Length")
        .and_then(|v| v.trim().parse().ok());
    let content_type = response
        .header("Content-Type")
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|v| !v.is_empty());
    Ok(Fetched {
        body: Box::new(response.into_reader()),
        length,
        content_type,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_and_not() {
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::",
            "::10.0.0.1",
            "fec0::1",
            "2002:a00:1::",
            "64:ff9b:1::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn urls_and_refusals() {
        assert_eq!(
            netloc("http://a.example/x").as_deref(),
            Some("a.example:80")
        );
        assert_eq!(netloc("https://a:8443").as_deref(), Some("a:8443"));
        assert_eq!(netloc("http://[::1]/").as_deref(), Some("[::1]:80"));
        assert_eq!(netloc("http://[::1]:81/").as_deref(), Some("[::1]:81"));
        for bad in ["ftp://a/x", "http://", "http://u:p@a/", "a/b"] {
            assert!(netloc(bad).is_none(), "{bad}");
        }
        let t = Duration::from_secs(1);
        assert!(matches!(
            fetch("http://127.0.0.1:9/x", false, t),
            Err(FetchError::Refused(_))
        ));
        assert!(matches!(
            fetch("http://[::1]:9/x", false, t),
            Err(FetchError::Refused(_))
        ));
        assert!(matches!(
            fetch("http://127.0.0.1:1/x", true, t),
            Err(FetchError::Origin(_))
        ));
    }
}
