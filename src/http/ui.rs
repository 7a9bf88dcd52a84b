//! The web UI: plain HTML, CSS and JavaScript written for this project (`src/http/ui/`),
//! embedded in the binary and served at `/` on the API port with an ETag from their content,
//! `Cache-Control: no-cache` (revalidated, so an upgrade shows at once) and a strict CSP.
//! Pages are served only to a `Host` that names this gateway (a localhost name, a loopback
//! address or the host of `public_url`), so a DNS-rebinding page cannot load them.

use super::router::{Reply, Req};
use crate::proto::http::url;
use crate::server::Gateway;
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

struct Asset {
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        bytes: include_bytes!("ui/index.html"),
    },
    Asset {
        path: "/ui/app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("ui/app.js"),
    },
    Asset {
        path: "/ui/app.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("ui/app.css"),
    },
    Asset {
        path: "/ui/icon.svg",
        content_type: "image/svg+xml",
        bytes: include_bytes!("ui/icon.svg"),
    },
];

/// The UI's Content-Security-Policy: nothing but this origin, no inline script, no framing.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; media-src 'self'; connect-src 'self'; object-src 'none'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The header a browser's writes must carry (CSRF): a cross-site page cannot send it
/// without a CORS preflight, which the API never grants.
pub const CSRF_HEADER: &str = "X-TG-Request";

fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let d = Sha256::digest(a.bytes);
                format!("\"{}\"", crate::proto::hex::encode(&d[..12]))
            })
            .collect()
    })
}

/// True when `Host` names this gateway.
pub fn host_is_ours(gw: &Gateway, req: &Req<'_>) -> bool {
    let Some(host) = req.host() else {
        return false;
    };
    url::is_local_host(&host) || url::host(&gw.public_url).as_deref() == Some(host.as_str())
}

/// Serves the asset at `path`, if there is one.
pub fn asset(gw: &Gateway, req: &Req<'_>, path: &str) -> Option<Reply> {
    let i = ASSETS.iter().position(|a| a.path == path)?;
    if !host_is_ours(gw, req) {
        return Some(
            Reply::error(421, "this Host does not name the gateway; use its address")
                .header("Cache-Control", "no-store"),
        );
    }
    let a = &ASSETS[i];
    let etag = &etags()[i];
    let common = |r: Reply| {
        r.header("ETag", etag.clone())
            .header("Cache-Control", "no-cache")
            .header("Content-Security-Policy", CSP)
            .header("X-Content-Type-Options", "nosniff")
            .header("X-Frame-Options", "DENY")
            .header("Referrer-Policy", "no-referrer")
    };
    if req
        .header("If-None-Match")
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        return Some(common(Reply::new(304)));
    }
    Some(common(Reply::bytes(200, a.content_type, a.bytes.to_vec())))
}

/// A browser's write (it sent `Origin` or `Sec-Fetch-Site`) without [`CSRF_HEADER`] is
/// refused; scripts and command-line clients, which send neither, are not affected.
pub fn csrf_check(req: &Req<'_>) -> Result<(), Reply> {
    let browser = req.header("Origin").is_some() || req.header("Sec-Fetch-Site").is_some();
    if browser && req.header(CSRF_HEADER).is_none() {
        return Err(Reply::error(
            403,
            format!("writes from a browser need the {CSRF_HEADER} header"),
        ));
    }
    Ok(())
}
