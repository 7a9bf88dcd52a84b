//! Request heads: the bytes up to the blank line parsed with httparse into a [`Head`] whose
//! framing has been decided by RFC 9112's rules, strictly: one Content-Length made of digits
//! only, `Transfer-Encoding: chunked` alone and never with a Content-Length, HTTP/1.0 and
//! HTTP/1.1 only. Every refusal is a [`HeadError`] with the status to answer and a reason.

/// Caps on a request head.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// Bytes from the request line to the blank line, inclusive.
    pub max_bytes: usize,
    pub max_headers: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        HeadLimits {
            max_bytes: 16 * 1024,
            max_headers: 64,
        }
    }
}

/// How the request's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    /// The request target as sent (path and query).
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    pub headers: Vec<(String, String)>,
    pub framing: Framing,
    /// Whether the connection may carry another request after this one.
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent (HTTP/1.1 only).
    pub expect_continue: bool,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why a head was refused: the status to answer with and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadError {
    pub status: u16,
    pub reason: &'static str,
}

fn refuse(status: u16, reason: &'static str) -> HeadError {
    HeadError { status, reason }
}

/// Parses the head at the start of `buf`. `Ok(None)` means more bytes are needed (and
/// `buf` is still under the cap); `Ok(Some((head, n)))` gives the head and its length.
pub fn parse(buf: &[u8], limits: &HeadLimits) -> Result<Option<(Head, usize)>, HeadError> {
    // Empty lines before a request line are tolerated (RFC 9112 2.2).
    let skip = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    let buf_all = buf;
    let buf = &buf[skip..];
    let mut storage = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut req = httparse::Request::new(&mut storage);
    let status = match req.parse(buf) {
        Ok(s) => s,
        Err(httparse::Error::TooManyHeaders) => return Err(refuse(431, "too many header fields")),
        Err(httparse::Error::Version) => return Err(refuse(505, "HTTP version not supported")),
        Err(_) => return Err(refuse(400, "malformed request head")),
    };
    let len = match status {
        httparse::Status::Partial => {
            if buf_all.len() >= limits.max_bytes {
                return Err(refuse(431, "request head too large"));
            }
            return Ok(None);
        }
        httparse::Status::Complete(n) => n + skip,
    };
    if len > limits.max_bytes {
        return Err(refuse(431, "request head too large"));
    }
    let method = req.method.unwrap_or_default().to_string();
    let target = req.path.unwrap_or_default();
    if !target.starts_with('/') && target != "*" {
        return Err(refuse(400, "request target must be an absolute path"));
    }
    let minor = req.version.unwrap_or(1);
    let mut headers = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value)
            .map_err(|_| refuse(400, "header value is not UTF-8"))?
            .trim();
        headers.push((h.name.to_string(), value.to_string()));
    }
    let framing = framing(&headers, minor)?;
    let connection = |token: &str| {
        headers.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("Connection")
                && v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))
        })
    };
    let keep_alive = if minor == 0 {
        connection("keep-alive")
    } else {
        !connection("close")
    };
    let expect_continue = minor == 1
        && headers.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("Expect") && v.eq_ignore_ascii_case("100-continue")
        });
    let hosts = headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("Host"))
        .count();
    if minor == 1 && hosts == 0 {
        return Err(refuse(400, "HTTP/1.1 requests need a Host header"));
    }
    if hosts > 1 {
        return Err(refuse(400, "more than one Host header"));
    }
    Ok(Some((
        Head {
            method,
            target: target.to_string(),
            minor,
            headers,
            framing,
            keep_alive,
            expect_continue,
        },
        len,
    )))
}

fn framing(headers: &[(String, String)], minor: u8) -> Result<Framing, HeadError> {
    let mut length: Option<u64> = None;
    let mut encoding: Option<&str> = None;
    for (k, v) in headers {
        if k.eq_ignore_ascii_case("Content-Length") {
            if length.is_some() {
                return Err(refuse(400, "more than one Content-Length"));
            }
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(refuse(400, "Content-Length must be a decimal number"));
            }
            length = Some(
                v.parse()
                    .map_err(|_| refuse(413, "Content-Length is too large"))?,
            );
        } else if k.eq_ignore_ascii_case("Transfer-Encoding") {
            if encoding.is_some() {
                return Err(refuse(400, "more than one Transfer-Encoding"));
            }
            encoding = Some(v);
        }
    }
    match (length, encoding) {
        (Some(_), Some(_)) => Err(refuse(
            400,
            "Content-Length and Transfer-Encoding must not both be sent",
        )),
        (_, Some(_)) if minor == 0 => Err(refuse(400, "Transfer-Encoding in an HTTP/1.0 request")),
        (None, Some(te)) if te.eq_ignore_ascii_case("chunked") => Ok(Framing::Chunked),
        (None, Some(_)) => Err(refuse(501, "only the chunked transfer coding is supported")),
        (Some(n), None) => Ok(Framing::Length(n)),
        (None, None) => Ok(Framing::None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Option<(Head, usize)>, HeadError> {
        parse(s.as_bytes(), &HeadLimits::default())
    }

    fn status(s: &str) -> u16 {
        p(s).expect_err("refused").status
    }

    #[test]
    fn parses_a_get_with_keep_alive_defaults() {
        let (h, n) = p("GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\nrest")
            .unwrap()
            .unwrap();
        assert_eq!(n, 32);
        assert_eq!(h.method, "GET");
        assert_eq!(h.target, "/a?b=1");
        assert_eq!(h.framing, Framing::None);
        assert!(h.keep_alive && !h.expect_continue);
        let (h, _) = p("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!h.keep_alive);
        let (h, _) = p("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.keep_alive);
        let (h, _) = p("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive);
    }

    #[test]
    fn incomplete_heads_ask_for_more_until_the_cap() {
        assert_eq!(p("GET / HTTP/1.1\r\nHost: x\r\n"), Ok(None));
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(100_000));
        assert_eq!(status(&long), 431);
        let huge_header = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(1 << 20));
        assert_eq!(status(&huge_header), 431);
        let many: String = (0..10_000).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(status(&format!("GET / HTTP/1.1\r\n{many}\r\n")), 431);
    }

    #[test]
    fn framing_follows_rfc_9112_strictly() {
        let cl = |v: &str| {
            status(&format!(
                "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: {v}\r\n\r\n"
            ))
        };
        assert_eq!(cl("18446744073709551616"), 413);
        assert_eq!(cl("-1"), 400);
        assert_eq!(cl("+5"), 400);
        assert_eq!(cl("5, 5"), 400);
        assert_eq!(cl(""), 400);
        let (h, _) = p("PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551615\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Length(u64::MAX));
        assert_eq!(
            status("PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"),
            400
        );
        assert_eq!(
            status("PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
        assert_eq!(
            status("PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            501
        );
        let (h, _) = p("PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\nExpect: 100-continue\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Chunked);
        assert!(h.expect_continue);
    }

    #[test]
    fn garbage_and_odd_versions_are_refused() {
        assert!(parse(
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            &HeadLimits::default()
        )
        .is_err());
        assert_eq!(status("GET / HTTP/2.0\r\n\r\n"), 505);
        assert_eq!(status("GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
        let bad_utf8 = b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n";
        assert!(parse(bad_utf8, &HeadLimits::default()).is_err());
    }

    #[test]
    fn leading_blank_lines_are_skipped() {
        let (h, n) = p("\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap().unwrap();
        assert_eq!(h.target, "/");
        assert_eq!(n, 29);
    }
}
