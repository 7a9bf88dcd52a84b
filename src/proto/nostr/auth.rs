//! Authorization with signed Nostr events: Blossom's kind 24242 (BUD-11) and HTTP auth's
//! kind 27235 (NIP-98), both sent as `Authorization: Nostr <base64 event>`. Pure checks: the
//! caller supplies the clock, the server's hostname and what the request is about.
//!
//! Tokens have a bounded lifetime: a BUD-11 event may not expire more than `max_lifetime`
//! seconds from now nor have been made longer ago than that, and a NIP-98 event must be
//! within `window` of the clock and, for a request with a body, name it in `payload`
//! (otherwise a captured header uploads anything to that URL). Single use of delete tokens
//! is the caller's (it needs state).

use super::base64;
use super::Event;

pub const BLOSSOM_KIND: u32 = 24242;
pub const HTTP_AUTH_KIND: u32 = 27235;

/// A refusal: the HTTP status (401 or 403) and the reason for `X-Reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthError {
    pub status: u16,
    pub reason: String,
}

fn unauthorized(reason: impl Into<String>) -> AuthError {
    AuthError {
        status: 401,
        reason: reason.into(),
    }
}

/// Decodes `Nostr <base64>` (standard or URL-safe, padded or not), parses the event and
/// checks its id and signature.
pub fn parse_header(value: &str) -> Result<Event, AuthError> {
    let value = value.trim();
    let Some((scheme, payload)) = value.split_once(' ') else {
        return Err(unauthorized("Authorization must be `Nostr <base64 event>`"));
    };
    if !scheme.eq_ignore_ascii_case("Nostr") {
        return Err(unauthorized("unsupported Authorization scheme (use Nostr)"));
    }
    let json =
        base64::decode(payload.trim()).map_err(|e| unauthorized(format!("Authorization: {e}")))?;
    let ev = Event::parse(&json).map_err(|e| unauthorized(format!("auth event: {e}")))?;
    ev.verify()
        .map_err(|e| unauthorized(format!("auth event: {e}")))?;
    Ok(ev)
}

/// What a Blossom request needs of its auth event.
#[derive(Debug, Clone)]
pub struct BlossomNeed<'a> {
    /// The `t` tag: `get`, `upload`, `list`, `delete`.
    pub verb: &'a str,
    /// A blob the event must name in an `x` tag, when known before the body.
    pub x: Option<&'a str>,
    /// This server's lowercase hostname, matched against `server` tags.
    pub server: &'a str,
    pub now: i64,
    /// Seconds `created_at` may lie in the future.
    pub skew: i64,
    /// Most seconds `expiration` may lie ahead, and `created_at` behind.
    pub max_lifetime: i64,
}

/// Checks a verified event against BUD-11's rules.
pub fn check_blossom(ev: &Event, need: &BlossomNeed<'_>) -> Result<(), AuthError> {
    if ev.kind != BLOSSOM_KIND {
        return Err(unauthorized(format!(
            "auth event kind must be {BLOSSOM_KIND}, not {}",
            ev.kind
        )));
    }
    if ev.created_at > need.now + need.skew {
        return Err(unauthorized("auth event created_at is in the future"));
    }
    let expiration = ev
        .tag("expiration")
        .ok_or_else(|| unauthorized("auth event has no expiration tag"))?;
    match expiration.parse::<i64>() {
        Ok(t) if t <= need.now => return Err(unauthorized("auth event has expired")),
        Ok(t) if t - need.now > need.max_lifetime => {
            return Err(unauthorized(format!(
                "auth event expiration is more than {} s away",
                need.max_lifetime
            )))
        }
        Ok(_) => {}
        Err(_) => return Err(unauthorized("auth event expiration is not a number")),
    }
    if ev.created_at < need.now - need.max_lifetime {
        return Err(unauthorized(format!(
            "auth event was made more than {} s ago",
            need.max_lifetime
        )));
    }
    if !ev.tag_values("t").any(|t| t == need.verb) {
        return Err(unauthorized(format!(
            "auth event is not for `{}` (t tag)",
            need.verb
        )));
    }
    let mut servers = ev.tag_values("server").peekable();
    if servers.peek().is_some() && !servers.any(|s| s.eq_ignore_ascii_case(need.server)) {
        return Err(unauthorized(format!(
            "auth event is for other servers (server tags do not name {})",
            need.server
        )));
    }
    if let Some(x) = need.x {
        if !names_blob(ev, x) {
            return Err(unauthorized(format!("auth event has no x tag for {x}")));
        }
    }
    Ok(())
}

/// The `expiration` tag of an event [`check_blossom`] accepted.
pub fn expiration(ev: &Event) -> Option<i64> {
    ev.tag("expiration")?.parse().ok()
}

/// Whether the event's `x` tags name this blob.
pub fn names_blob(ev: &Event, sha256: &str) -> bool {
    ev.tag_values("x").any(|x| x.eq_ignore_ascii_case(sha256))
}

/// What a NIP-98 request must match.
#[derive(Debug, Clone)]
pub struct HttpNeed<'a> {
    /// The absolute URL of the request, with its query.
    pub url: &'a str,
    pub method: &'a str,
    pub now: i64,
    /// Seconds `created_at` may differ from now either way.
    pub window: i64,
    /// Whether the request has a body (then `payload` is required).
    pub has_body: bool,
}

/// Checks a verified event against NIP-98's rules. Returns the `payload` tag (a SHA-256 of
/// the body, lowercase) for the caller to hold the body to.
pub fn check_http(ev: &Event, need: &HttpNeed<'_>) -> Result<Option<String>, AuthError> {
    if ev.kind != HTTP_AUTH_KIND {
        return Err(unauthorized(format!(
            "auth event kind must be {HTTP_AUTH_KIND}, not {}",
            ev.kind
        )));
    }
    if (ev.created_at - need.now).abs() > need.window {
        return Err(unauthorized(
            "auth event created_at is outside the allowed time window",
        ));
    }
    let u = ev
        .tag("u")
        .ok_or_else(|| unauthorized("auth event has no u tag"))?;
    if u.trim_end_matches('/') != need.url.trim_end_matches('/') {
        return Err(unauthorized(format!(
            "auth event u tag {u:?} is not this request's URL"
        )));
    }
    let method = ev
        .tag("method")
        .ok_or_else(|| unauthorized("auth event has no method tag"))?;
    if !method.eq_ignore_ascii_case(need.method) {
        return Err(unauthorized(format!(
            "auth event is for method {method}, not {}",
            need.method
        )));
    }
    match ev.tag("payload") {
        None if need.has_body => Err(unauthorized(
            "auth event has no payload tag (the body's sha256), needed with a body",
        )),
        None => Ok(None),
        Some(p) if p.len() == 64 && p.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(Some(p.to_ascii_lowercase()))
        }
        Some(_) => Err(unauthorized("auth event payload tag is not a sha256")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::nostr::Keys;

    const NOW: i64 = 1_800_000_000;

    fn event(kind: u32, created_at: i64, tags: &[&[&str]]) -> Event {
        let tags = tags
            .iter()
            .map(|t| t.iter().map(|s| s.to_string()).collect())
            .collect();
        Keys::from_secret(&[3u8; 32]).unwrap().sign(
            created_at,
            kind,
            tags,
            "Upload".into(),
            &[0u8; 32],
        )
    }

    fn header(ev: &Event) -> String {
        format!("Nostr {}", base64::encode(ev.to_json().as_bytes()))
    }

    fn need<'a>(verb: &'a str, x: Option<&'a str>) -> BlossomNeed<'a> {
        BlossomNeed {
            verb,
            x,
            server: "cdn.example.com",
            now: NOW,
            skew: 60,
            max_lifetime: 3600,
        }
    }

    #[test]
    fn blossom_rules() {
        let sha = "b".repeat(64);
        let exp = (NOW + 600).to_string();
        let good = event(
            BLOSSOM_KIND,
            NOW - 5,
            &[&["t", "upload"], &["x", &sha], &["expiration", &exp]],
        );
        // Every base64 flavour decodes.
        let std = header(&good);
        let url_safe = std.replace('+', "-").replace('/', "_");
        let unpadded = std.trim_end_matches('=').to_string();
        for h in [&std, &url_safe, &unpadded] {
            let ev = parse_header(h).unwrap();
            check_blossom(&ev, &need("upload", Some(&sha))).unwrap();
        }
        assert!(check_blossom(&good, &need("delete", Some(&sha))).is_err());
        assert!(check_blossom(&good, &need("upload", Some(&"c".repeat(64)))).is_err());
        let cases: Vec<(Event, &str)> = vec![
            (
                event(
                    BLOSSOM_KIND,
                    NOW - 5,
                    &[&["t", "upload"], &["expiration", &(NOW - 1).to_string()]],
                ),
                "expired",
            ),
            (
                event(BLOSSOM_KIND, NOW - 5, &[&["t", "upload"]]),
                "no expiration",
            ),
            (
                event(
                    BLOSSOM_KIND,
                    NOW + 3600,
                    &[&["t", "upload"], &["expiration", &exp]],
                ),
                "future",
            ),
            (
                event(1, NOW, &[&["t", "upload"], &["expiration", &exp]]),
                "kind",
            ),
            (
                event(
                    BLOSSOM_KIND,
                    NOW,
                    &[
                        &["t", "upload"],
                        &["expiration", &exp],
                        &["server", "other.example"],
                    ],
                ),
                "server",
            ),
        ];
        let lifetimes: Vec<(Event, &str)> = vec![
            (
                event(
                    BLOSSOM_KIND,
                    NOW - 5,
                    &[&["t", "upload"], &["expiration", &(NOW + 3601).to_string()]],
                ),
                "expires too late",
            ),
            (
                event(
                    BLOSSOM_KIND,
                    NOW - 5,
                    &[&["t", "upload"], &["expiration", "99999999999"]],
                ),
                "never expires",
            ),
            (
                event(
                    BLOSSOM_KIND,
                    NOW - 3601,
                    &[&["t", "upload"], &["expiration", &exp]],
                ),
                "made too long ago",
            ),
        ];
        for (ev, what) in cases.into_iter().chain(lifetimes) {
            let e = check_blossom(&ev, &need("upload", None)).unwrap_err();
            assert_eq!(e.status, 401, "{what}");
        }
        let scoped = event(
            BLOSSOM_KIND,
            NOW,
            &[
                &["t", "upload"],
                &["expiration", &exp],
                &["server", "CDN.example.com"],
            ],
        );
        check_blossom(&scoped, &need("upload", None)).unwrap();
        assert_eq!(expiration(&scoped), Some(NOW + 600));
        let longest = event(
            BLOSSOM_KIND,
            NOW - 3600,
            &[&["t", "upload"], &["expiration", &(NOW + 3600).to_string()]],
        );
        check_blossom(&longest, &need("upload", None)).unwrap();
        // A tampered event fails at parse time.
        let mut bad = good.clone();
        bad.tags.push(vec!["x".into(), "c".repeat(64)]);
        assert!(parse_header(&header(&bad))
            .unwrap_err()
            .reason
            .contains("id"));
        for h in ["Bearer x", "Nostr", "Nostr !!!", "Nostr e30"] {
            assert_eq!(parse_header(h).unwrap_err().status, 401, "{h}");
        }
    }

    #[test]
    fn nip98_rules() {
        let url = "http://gw.example:9877/api/files/a.txt";
        let payload = "d".repeat(64);
        let ev = event(
            HTTP_AUTH_KIND,
            NOW,
            &[&["u", url], &["method", "PUT"], &["payload", &payload]],
        );
        let need = HttpNeed {
            url,
            method: "PUT",
            now: NOW + 10,
            window: 60,
            has_body: true,
        };
        assert_eq!(check_http(&ev, &need).unwrap(), Some(payload));
        let other_url = HttpNeed {
            url: "http://gw.example:9877/api/files/b.txt",
            ..need.clone()
        };
        assert!(check_http(&ev, &other_url).is_err());
        let other_method = HttpNeed {
            method: "DELETE",
            ..need.clone()
        };
        assert!(check_http(&ev, &other_method).is_err());
        let late = HttpNeed {
            now: NOW + 120,
            ..need.clone()
        };
        assert!(check_http(&ev, &late).is_err());
        let wrong_kind = event(BLOSSOM_KIND, NOW, &[&["u", url], &["method", "PUT"]]);
        assert!(check_http(&wrong_kind, &need).is_err());
        // Without payload: fine for a bodiless request, refused when there is a body.
        let bare = event(HTTP_AUTH_KIND, NOW, &[&["u", url], &["method", "PUT"]]);
        let e = check_http(&bare, &need).unwrap_err();
        assert!(e.reason.contains("payload"), "{}", e.reason);
        let no_body = HttpNeed {
            has_body: false,
            ..need.clone()
        };
        assert_eq!(check_http(&bare, &no_body).unwrap(), None);
    }
}
