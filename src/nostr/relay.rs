//! One websocket connection to a relay (ws:// or wss:// through rustls), with timeouts, a
//! message size cap, and the publishing exchange: send `EVENT`s, collect their `OK`s.

use crate::proto::nostr::{event_message, parse_relay_message, RelayMessage};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

/// Largest message accepted from a relay.
const MAX_MESSAGE: usize = 1 << 20;

/// A relay address, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayUrl {
    pub url: String,
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl RelayUrl {
    pub fn parse(url: &str) -> Result<RelayUrl, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("wss://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("ws://") {
            (false, r)
        } else {
            return Err("a relay URL starts with ws:// or wss://".into());
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        if authority.is_empty() || authority.contains('@') || url.len() > 2048 {
            return Err("a relay URL needs a host".into());
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or("bad IPv6 host")?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| "bad port")?,
                None if after.is_empty() => default_port,
                None => return Err("bad host".into()),
            };
            (h.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().map_err(|_| "bad port")?),
                None => (authority.to_string(), default_port),
            }
        };
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b))
        {
            return Err("bad host".into());
        }
        Ok(RelayUrl {
            url: url.to_string(),
            tls,
            host,
            port,
        })
    }
}

enum Transport {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write(buf),
            Transport::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Transport::Plain(s) => s.flush(),
            Transport::Tls(s) => s.flush(),
        }
    }
}

fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    Arc::clone(CONFIG.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        Arc::new(config)
    }))
}

/// How one event fared at a relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    /// Refused for good (`invalid:`, `blocked:`, ...).
    Rejected(String),
    /// Refused for now (`rate-limited:`, `error:`, `auth-required:`): try again later.
    Deferred(String),
}

/// An open connection to a relay.
pub struct Relay {
    ws: WebSocket<Transport>,
    timeout: Duration,
}

impl Relay {
    /// Connects (TCP, TLS for wss://, websocket handshake), each step within `timeout`.
    pub fn connect(url: &RelayUrl, timeout: Duration) -> Result<Relay, String> {
        let addrs: Vec<_> = (url.host.as_str(), url.port)
            .to_socket_addrs()
            .map_err(|e| format!("resolving {}: {e}", url.host))?
            .collect();
        let mut last = format!("{} has no addresses", url.host);
        let mut tcp = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = format!("connecting to {addr}: {e}"),
            }
        }
        let tcp = tcp.ok_or(last)?;
        tcp.set_read_timeout(Some(timeout))
            .and_then(|()| tcp.set_write_timeout(Some(timeout)))
            .and_then(|()| tcp.set_nodelay(true))
            .map_err(|e| e.to_string())?;
        let transport = if url.tls {
            let name = rustls::pki_types::ServerName::try_from(url.host.clone())
                .map_err(|e| format!("TLS name {}: {e}", url.host))?;
            let conn = rustls::ClientConnection::new(tls_config(), name)
                .map_err(|e| format!("TLS: {e}"))?;
            Transport::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)))
        } else {
            Transport::Plain(tcp)
        };
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        let (ws, _) =
            tungstenite::client::client_with_config(url.url.as_str(), transport, Some(config))
                .map_err(|e| format!("websocket handshake: {e}"))?;
        Ok(Relay { ws, timeout })
    }

    /// Sends events (id, JSON) and waits for each one's `OK` (or the timeout). Returns the
    /// outcomes in order; events with no answer are missing from the list.
    pub fn publish(
        &mut self,
        events: &[(String, String)],
    ) -> Result<Vec<(String, Outcome)>, String> {
        for (_, json) in events {
            self.ws
                .write(Message::text(event_message(json)))
                .map_err(|e| format!("sending: {e}"))?;
        }
        self.ws.flush().map_err(|e| format!("sending: {e}"))?;
        let deadline = Instant::now() + self.timeout;
        let mut outcomes = Vec::new();
        while outcomes.len() < events.len() && Instant::now() < deadline {
            let msg = match self.ws.read() {
                Ok(m) => m,
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(e) => return Err(format!("reading: {e}")),
            };
            let text = match msg {
                Message::Text(t) => t,
                Message::Close(_) => return Err("relay closed the connection".into()),
                _ => continue,
            };
            match parse_relay_message(text.as_str()) {
                Ok(RelayMessage::Ok {
                    event_id,
                    accepted,
                    message,
                }) => {
                    let answered = |id: &str| outcomes.iter().any(|(a, _)| a == id);
                    // Some relays (nostr-relay 1.14) name no id when refusing an event:
                    // relays answer in order, so it is the oldest unanswered one.
                    let id = if events.iter().any(|(id, _)| *id == event_id) {
                        Some(event_id)
                    } else {
                        events
                            .iter()
                            .map(|(id, _)| id)
                            .find(|id| !answered(id))
                            .cloned()
                    };
                    if let Some(id) = id.filter(|id| !answered(id)) {
                        let outcome = if accepted || message.starts_with("duplicate:") {
                            Outcome::Accepted
                        } else if ["rate-limited:", "error:", "auth-required:"]
                            .iter()
                            .any(|p| message.starts_with(p))
                        {
                            Outcome::Deferred(message)
                        } else {
                            Outcome::Rejected(message)
                        };
                        outcomes.push((id, outcome));
                    }
                }
                Ok(RelayMessage::Notice(n)) => log::info!("relay notice: {n}"),
                Ok(RelayMessage::Other) => {}
                Err(e) => log::debug!("{e}"),
            }
        }
        Ok(outcomes)
    }

    pub fn close(mut self) {
        let _ = self.ws.close(None);
        let _ = self.ws.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_urls() {
        let r = RelayUrl::parse("wss://relay.example.com/path").unwrap();
        assert_eq!(
            (r.tls, r.host.as_str(), r.port),
            (true, "relay.example.com", 443)
        );
        let r = RelayUrl::parse("ws://127.0.0.1:7447").unwrap();
        assert_eq!((r.tls, r.host.as_str(), r.port), (false, "127.0.0.1", 7447));
        let r = RelayUrl::parse("ws://[::1]:80/").unwrap();
        assert_eq!(r.host, "::1");
        for bad in [
            "http://x",
            "ws://",
            "ws://a:b",
            "ws://u@h",
            "ws://h h",
            "wss://[::1",
        ] {
            assert!(RelayUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
