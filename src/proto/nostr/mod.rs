//! Nostr events (NIP-01): parsing with caps, the event id over the exact compact
//! serialization `[0,pubkey,created_at,kind,tags,content]`, BIP-340 signing of the 32-byte id
//! and verification, tag lookups, and NIP-19 `npub`. Randomness comes in as arguments.

pub mod auth;
pub mod base64;
pub mod bech32;
pub mod nip94;

use crate::proto::hex;
use k256::schnorr::{Signature, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Largest event JSON accepted (authorization headers, reports).
pub const MAX_EVENT_BYTES: usize = 64 << 10;
/// Most tags in one event, and most values in one tag.
pub const MAX_TAGS: usize = 2000;
pub const MAX_TAG_VALUES: usize = 64;

/// A signed event, with `id`, `pubkey` and `sig` as lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    pub pubkey: String,
    pub created_at: i64,
    pub kind: u32,
    pub tags: Vec<Vec<String>>,
    pub content: String,
    pub sig: String,
}

/// Why an event is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventError {
    Malformed(String),
    BadId,
    BadSignature,
}

impl std::fmt::Display for EventError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EventError::Malformed(m) => write!(f, "malformed event: {m}"),
            EventError::BadId => write!(f, "event id does not match its content"),
            EventError::BadSignature => write!(f, "event signature is invalid"),
        }
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The NIP-01 event id: SHA-256 of the compact JSON array, strings escaped as JSON does.
pub fn event_id(
    pubkey: &str,
    created_at: i64,
    kind: u32,
    tags: &[Vec<String>],
    content: &str,
) -> [u8; 32] {
    let canonical = serde_json::to_vec(&(0, pubkey, created_at, kind, tags, content))
        .expect("serializing strings and integers cannot fail");
    Sha256::digest(&canonical).into()
}

impl Event {
    /// Parses event JSON and checks its shape (not its id or signature: see [`Event::verify`]).
    pub fn parse(json: &[u8]) -> Result<Event, EventError> {
        if json.len() > MAX_EVENT_BYTES {
            return Err(EventError::Malformed(format!(
                "longer than {MAX_EVENT_BYTES} bytes"
            )));
        }
        let ev: Event =
            serde_json::from_slice(json).map_err(|e| EventError::Malformed(e.to_string()))?;
        if !is_hex(&ev.id, 64) || !is_hex(&ev.pubkey, 64) || !is_hex(&ev.sig, 128) {
            return Err(EventError::Malformed(
                "id, pubkey and sig must be lowercase hex of 32, 32 and 64 bytes".into(),
            ));
        }
        if ev.created_at < 0 || ev.kind > 65_535 {
            return Err(EventError::Malformed(
                "created_at or kind out of range".into(),
            ));
        }
        if ev.tags.len() > MAX_TAGS || ev.tags.iter().any(|t| t.len() > MAX_TAG_VALUES) {
            return Err(EventError::Malformed("too many tags".into()));
        }
        Ok(ev)
    }

    /// Checks that the id is the hash of the content and the signature signs the id.
    pub fn verify(&self) -> Result<(), EventError> {
        let id = event_id(
            &self.pubkey,
            self.created_at,
            self.kind,
            &self.tags,
            &self.content,
        );
        if hex::encode(&id) != self.id {
            return Err(EventError::BadId);
        }
        verify_raw(&self.pubkey, &id, &self.sig)
    }

    /// The first value of the first tag named `name`.
    pub fn tag<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.tag_values(name).next()
    }

    /// The first value of every tag named `name`.
    pub fn tag_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.tags
            .iter()
            .filter(move |t| t.first().is_some_and(|n| n == name))
            .filter_map(|t| t.get(1).map(String::as_str))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("serializing an event cannot fail")
    }
}

/// BIP-340 verification of `sig` (hex) over `msg` by the x-only `pubkey` (hex).
pub fn verify_raw(pubkey: &str, msg: &[u8], sig: &str) -> Result<(), EventError> {
    let pk = hex::decode::<32>(pubkey).ok_or(EventError::BadSignature)?;
    let sig = hex::decode::<64>(sig).ok_or(EventError::BadSignature)?;
    let key = VerifyingKey::from_bytes(&pk).map_err(|_| EventError::BadSignature)?;
    let sig = Signature::try_from(&sig[..]).map_err(|_| EventError::BadSignature)?;
    key.verify_raw(msg, &sig)
        .map_err(|_| EventError::BadSignature)
}

/// A secret key and its x-only public key.
#[derive(Clone)]
pub struct Keys {
    secret: SigningKey,
    /// Lowercase hex of the x-only public key.
    pub pubkey: String,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keys({})", self.pubkey)
    }
}

impl Keys {
    /// From 32 secret bytes; fails for zero or a value not below the curve order.
    pub fn from_secret(secret: &[u8; 32]) -> Result<Keys, String> {
        let secret = SigningKey::from_bytes(secret).map_err(|_| "not a valid secret key")?;
        let pubkey = hex::encode(&secret.verifying_key().to_bytes());
        Ok(Keys { secret, pubkey })
    }

    /// From 64 hex characters or an `nsec1...` string.
    pub fn parse(text: &str) -> Result<Keys, String> {
        let text = text.trim();
        let bytes = if text.starts_with("nsec1") {
            let (hrp, data) = bech32::decode(text)?;
            if hrp != "nsec" || data.len() != 32 {
                return Err("not an nsec key".into());
            }
            let mut b = [0u8; 32];
            b.copy_from_slice(&data);
            b
        } else {
            hex::decode::<32>(text).ok_or("a secret key is 64 hex characters or nsec1...")?
        };
        Keys::from_secret(&bytes)
    }

    pub fn secret_hex(&self) -> String {
        hex::encode(&self.secret.to_bytes())
    }

    pub fn npub(&self) -> String {
        npub(&self.pubkey)
    }

    /// BIP-340 signature of `msg` with the auxiliary randomness `aux`.
    pub fn sign_raw(&self, msg: &[u8], aux: &[u8; 32]) -> Result<[u8; 64], String> {
        let sig = self
            .secret
            .sign_raw(msg, aux)
            .map_err(|e| format!("signing: {e}"))?;
        Ok(sig.to_bytes())
    }

    /// A signed event.
    pub fn sign(
        &self,
        created_at: i64,
        kind: u32,
        tags: Vec<Vec<String>>,
        content: String,
        aux: &[u8; 32],
    ) -> Event {
        let id = event_id(&self.pubkey, created_at, kind, &tags, &content);
        let sig = self
            .sign_raw(&id, aux)
            .expect("signing a 32-byte digest with a valid key cannot fail");
        Event {
            id: hex::encode(&id),
            pubkey: self.pubkey.clone(),
            created_at,
            kind,
            tags,
            content,
            sig: hex::encode(&sig),
        }
    }
}

/// NIP-19 `npub` of a hex x-only public key (the hex itself if it is not 32 bytes).
pub fn npub(pubkey_hex: &str) -> String {
    match hex::decode::<32>(pubkey_hex) {
        Some(b) => bech32::encode("npub", &b),
        None => pubkey_hex.to_string(),
    }
}

/// A public key given as 64 hex characters or `npub1...`, as lowercase hex.
pub fn parse_pubkey(text: &str) -> Option<String> {
    let text = text.trim();
    if text.starts_with("npub1") {
        let (hrp, data) = bech32::decode(text).ok()?;
        return (hrp == "npub" && data.len() == 32).then(|| hex::encode(&data));
    }
    let lower = text.to_ascii_lowercase();
    is_hex(&lower, 64).then_some(lower)
}

/// What a relay says to a client (NIP-01), as far as a publisher cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayMessage {
    /// `["OK", <event id>, <accepted>, <message>]`.
    Ok {
        event_id: String,
        accepted: bool,
        message: String,
    },
    /// `["NOTICE", <message>]`.
    Notice(String),
    /// Anything else (EVENT, EOSE, CLOSED, AUTH, ...).
    Other,
}

/// Parses one relay message.
pub fn parse_relay_message(text: &str) -> Result<RelayMessage, String> {
    let v: Vec<serde_json::Value> =
        serde_json::from_str(text).map_err(|e| format!("relay message: {e}"))?;
    match v.first().and_then(|t| t.as_str()) {
        Some("OK") => match (v.get(1), v.get(2)) {
            (Some(serde_json::Value::String(id)), Some(serde_json::Value::Bool(ok))) => {
                Ok(RelayMessage::Ok {
                    event_id: id.clone(),
                    accepted: *ok,
                    message: v.get(3).and_then(|m| m.as_str()).unwrap_or("").to_string(),
                })
            }
            _ => Err("relay OK message is malformed".into()),
        },
        Some("NOTICE") => Ok(RelayMessage::Notice(
            v.get(1).and_then(|m| m.as_str()).unwrap_or("").to_string(),
        )),
        Some(_) => Ok(RelayMessage::Other),
        None => Err("relay message is not a tagged array".into()),
    }
}

/// The client's `["EVENT", <event>]` for an event already in JSON.
pub fn event_message(event_json: &str) -> String {
    format!("[\"EVENT\",{event_json}]")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(t: &[&[&str]]) -> Vec<Vec<String>> {
        t.iter()
            .map(|v| v.iter().map(|s| s.to_string()).collect())
            .collect()
    }

    #[test]
    fn id_serialization_escapes_like_json() {
        let pk = "a".repeat(64);
        let content = "line\nquote\" back\\ tab\t cr\r bell\u{7} ü 😀 </script>";
        let canonical =
            serde_json::to_string(&(0, &pk, 1700000000i64, 1u32, tags(&[&["x", "y"]]), content))
                .unwrap();
        assert_eq!(
            canonical,
            format!(
                "[0,\"{pk}\",1700000000,1,[[\"x\",\"y\"]],\"line\\nquote\\\" back\\\\ tab\\t \
                 cr\\r bell\\u0007 ü 😀 </script>\"]"
            )
        );
    }

    #[test]
    fn sign_verify_and_tamper() {
        let keys = Keys::from_secret(&[7u8; 32]).unwrap();
        let ev = keys.sign(
            1_700_000_000,
            1063,
            tags(&[&["x", "ab"], &["size", "3"]]),
            "hi".into(),
            &[1u8; 32],
        );
        ev.verify().unwrap();
        let parsed = Event::parse(ev.to_json().as_bytes()).unwrap();
        assert_eq!(parsed, ev);
        assert_eq!(parsed.tag("size"), Some("3"));
        let mut bad = ev.clone();
        bad.content.push('!');
        assert_eq!(bad.verify(), Err(EventError::BadId));
        let mut bad = ev.clone();
        bad.sig
            .replace_range(0..2, if &ev.sig[..2] == "00" { "01" } else { "00" });
        assert_eq!(bad.verify(), Err(EventError::BadSignature));
        let other = Keys::from_secret(&[8u8; 32]).unwrap();
        let mut bad = ev.clone();
        bad.pubkey = other.pubkey.clone();
        assert!(bad.verify().is_err());
        assert!(Keys::from_secret(&[0u8; 32]).is_err());
        assert_eq!(Keys::parse(&keys.secret_hex()).unwrap().pubkey, keys.pubkey);
        let nsec = bech32::encode("nsec", &hex::decode::<32>(&keys.secret_hex()).unwrap());
        assert_eq!(Keys::parse(&nsec).unwrap().pubkey, keys.pubkey);
        assert_eq!(parse_pubkey(&keys.npub()), Some(keys.pubkey.clone()));
        assert_eq!(parse_pubkey(&keys.pubkey.to_uppercase()), Some(keys.pubkey));
        assert_eq!(parse_pubkey("npub1xyz"), None);
    }

    #[test]
    fn relay_messages() {
        assert_eq!(
            parse_relay_message(r#"["OK","ab",false,"invalid: bad sig"]"#).unwrap(),
            RelayMessage::Ok {
                event_id: "ab".into(),
                accepted: false,
                message: "invalid: bad sig".into()
            }
        );
        assert_eq!(
            parse_relay_message(r#"["NOTICE","slow down"]"#).unwrap(),
            RelayMessage::Notice("slow down".into())
        );
        assert_eq!(
            parse_relay_message(r#"["EOSE","s"]"#).unwrap(),
            RelayMessage::Other
        );
        for bad in ["", "{}", "[1]", r#"["OK","ab"]"#, r#"["OK","ab","yes"]"#] {
            assert!(parse_relay_message(bad).is_err(), "{bad}");
        }
        assert_eq!(event_message("{}"), r#"["EVENT",{}]"#);
    }

    #[test]
    fn parse_rejects_bad_shapes() {
        let keys = Keys::from_secret(&[9u8; 32]).unwrap();
        let ev = keys.sign(1, 1, vec![], String::new(), &[0u8; 32]);
        let good: serde_json::Value = serde_json::from_str(&ev.to_json()).unwrap();
        let variants = [
            ("id", serde_json::json!("ABC")),
            ("pubkey", serde_json::json!(ev.pubkey.to_uppercase())),
            ("sig", serde_json::json!("00")),
            ("created_at", serde_json::json!(-1)),
            ("kind", serde_json::json!(70000)),
            ("tags", serde_json::json!([[1]])),
            ("content", serde_json::json!(null)),
        ];
        for (key, value) in variants {
            let mut v = good.clone();
            v[key] = value;
            assert!(Event::parse(v.to_string().as_bytes()).is_err(), "{key}");
        }
        assert!(Event::parse(b"[]").is_err());
        assert!(Event::parse(&vec![b' '; MAX_EVENT_BYTES + 1]).is_err());
        let many = vec![vec!["t".to_string()]; MAX_TAGS + 1];
        let big = keys.sign(1, 1, many, String::new(), &[0u8; 32]);
        assert!(Event::parse(big.to_json().as_bytes()).is_err());
    }
}
