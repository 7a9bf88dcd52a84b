//! The pieces of an HTTP URL the gateway compares: the host of an authority (a `Host`
//! header, a URL's `host[:port]`) and a URL's origin (`scheme://authority`, for `Origin`
//! checks). Pure; no resolution, no normalization beyond ASCII lowercase.

/// The host of an authority (`host[:port]` or `[v6][:port]`), lowercase and without
/// brackets; None when empty or malformed.
pub fn authority_host(authority: &str) -> Option<String> {
    let a = authority.trim();
    let host = match a.strip_prefix('[') {
        Some(rest) => {
            let (v6, after) = rest.split_once(']')?;
            if !(after.is_empty() || after.starts_with(':')) {
                return None;
            }
            v6
        }
        None => match a.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            Some(_) => return None,
            None => a,
        },
    };
    let ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b));
    ok.then(|| host.to_ascii_lowercase())
}

/// `scheme://authority` of an absolute http(s) URL, lowercase; None for anything else.
pub fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.trim().split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    authority_host(authority)?;
    if authority.contains('@') {
        return None;
    }
    Some(format!("{scheme}://{}", authority.to_ascii_lowercase()))
}

/// The host of an absolute http(s) URL, lowercase.
pub fn host(url: &str) -> Option<String> {
    let origin = origin(url)?;
    authority_host(origin.split_once("://")?.1)
}

/// Whether a host (as [`authority_host`] returns it) names this machine: `localhost`, a
/// `*.localhost` name, or a loopback address (IPv4-mapped ones included).
pub fn is_local_host(host: &str) -> bool {
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) => v6
            .to_ipv4_mapped()
            .map_or(v6.is_loopback(), |v4| v4.is_loopback()),
        Ok(ip) => ip.is_loopback(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_origins() {
        assert_eq!(
            authority_host("Example.COM:80").as_deref(),
            Some("example.com")
        );
        assert_eq!(authority_host("127.0.0.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(authority_host("[::1]:9877").as_deref(), Some("::1"));
        assert_eq!(authority_host("[::1]x"), None);
        assert_eq!(authority_host("a:b"), None);
        assert_eq!(authority_host(""), None);
        assert_eq!(authority_host("a b"), None);
        assert_eq!(
            origin("HTTP://GW.example:9877/x?y").as_deref(),
            Some("http://gw.example:9877")
        );
        assert_eq!(
            origin("https://gw.example").as_deref(),
            Some("https://gw.example")
        );
        assert_eq!(origin("ftp://gw.example"), None);
        assert_eq!(origin("http://u@gw.example"), None);
        assert_eq!(origin("null"), None);
        assert_eq!(host("http://[::1]:80/").as_deref(), Some("::1"));
        for h in [
            "localhost",
            "app.localhost",
            "127.0.0.1",
            "127.9.9.9",
            "::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_local_host(h), "{h}");
        }
        for h in [
            "evil.example",
            "localhost.evil",
            "10.0.0.1",
            "::ffff:10.0.0.1",
            "0.0.0.0",
        ] {
            assert!(!is_local_host(h), "{h}");
        }
    }
}
