//! KRPC, the DHT's message format (BEP-5): one bencoded dictionary per UDP datagram, a query
//! (`y` = `q`), a response (`r`) or an error (`e`), tied together by the transaction id `t`.
//!
//! [`parse`] reads the queries ping, find_node, get_peers, announce_peer (with `implied_port`;
//! an explicit port 0 is refused), get/put (BEP-44: `v` at most 1000 bytes, `k`/`sig`/`seq`/
//! `cas`/`salt`), sample_infohashes (BEP-51); responses (`nodes`, BEP-32 `nodes6`, `values`,
//! `token`, `samples`/`interval`/`num`, BEP-44 items) and errors; plus the top-level `ip`
//! (BEP-42), `ro` (BEP-43) and `v`, and `want` (BEP-32) in queries. Every size is bounded and
//! every malformed input is a [`ParseError`] that keeps the transaction id when there was one,
//! so the node can answer 203/204 (or 205/207) with it echoed. [`Message::encode`] builds
//! bytes that parse back to the same message. Responses do not name their query: the node
//! matches `t` to what it sent. Signatures are checked by `storage`, not here.

use super::compact::{self, CompactNode, NODE4_LEN, NODE6_LEN};
use super::node_id::NodeId;
use crate::proto::bt::bencode::{self, Limits, Owned, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

/// Largest datagram parsed at all (a BEP-44 put with a 1000-byte `v` fits with room to spare).
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// Longest transaction id accepted (implementations use 2 to 4 bytes).
pub const MAX_TRANSACTION_ID: usize = 32;
/// Longest write token accepted.
pub const MAX_TOKEN: usize = 64;
/// Most peers in one `values` list.
pub const MAX_VALUES: usize = 100;
/// Most entries in one of `nodes`/`nodes6` (8 is usual; webtorrent's DHT sends up to 20).
pub const MAX_NODES: usize = 32;
/// Most info-hashes in one `samples` string.
pub const MAX_SAMPLES: usize = 128;
/// Largest bencoded BEP-44 `v`.
pub const MAX_V_BYTES: usize = 1000;
/// Longest BEP-44 salt.
pub const MAX_SALT: usize = 64;

/// Error codes of BEP-5 (201-204) and BEP-44 (205-207, 301, 302).
pub mod code {
    pub const GENERIC: i64 = 201;
    pub const SERVER: i64 = 202;
    pub const PROTOCOL: i64 = 203;
    pub const METHOD_UNKNOWN: i64 = 204;
    pub const V_TOO_BIG: i64 = 205;
    pub const BAD_SIGNATURE: i64 = 206;
    pub const SALT_TOO_BIG: i64 = 207;
    pub const CAS_MISMATCH: i64 = 301;
    pub const SEQ_TOO_OLD: i64 = 302;
}

const LIMITS: Limits = Limits {
    max_depth: 32,
    max_str_len: MAX_MESSAGE_BYTES,
    max_values: 1024,
    max_input_bytes: MAX_MESSAGE_BYTES,
};

/// One KRPC message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    /// Transaction id, echoed in the answer.
    pub t: &'a [u8],
    /// The sender's client version (top-level `v`), if given.
    pub version: Option<&'a [u8]>,
    /// BEP-42 `ip`: in a response, the address the responder saw us at.
    pub ip: Option<SocketAddr>,
    /// BEP-43 `ro`: the querier is read-only and must not enter routing tables.
    pub ro: bool,
    pub body: Body<'a>,
}

/// What the message is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body<'a> {
    Query(Query<'a>),
    Response(Response<'a>),
    Error(ErrorReply<'a>),
}

/// A query and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query<'a> {
    /// The querier's node id.
    pub id: NodeId,
    /// BEP-32 `want`; both false when absent (answer in the querier's family).
    pub want: Want,
    pub method: Method<'a>,
}

/// BEP-32 `want`: which node families the querier asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Want {
    pub n4: bool,
    pub n6: bool,
}

/// The query methods we know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method<'a> {
    Ping,
    FindNode {
        target: NodeId,
    },
    GetPeers {
        info_hash: NodeId,
    },
    /// `port` is the announced port; with `implied_port` the UDP source port counts instead
    /// (see [`Method::announced_port`]). Without it, port 0 is refused at parse time.
    AnnouncePeer {
        info_hash: NodeId,
        port: u16,
        implied_port: bool,
        token: &'a [u8],
    },
    /// BEP-44 get; `seq`: only send the item if it is newer than this.
    Get {
        target: NodeId,
        seq: Option<i64>,
    },
    Put(Put<'a>),
    /// BEP-51.
    SampleInfohashes {
        target: NodeId,
    },
}

impl Method<'_> {
    /// The query name on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Method::Ping => "ping",
            Method::FindNode { .. } => "find_node",
            Method::GetPeers { .. } => "get_peers",
            Method::AnnouncePeer { .. } => "announce_peer",
            Method::Get { .. } => "get",
            Method::Put(_) => "put",
            Method::SampleInfohashes { .. } => "sample_infohashes",
        }
    }

    /// For announce_peer, the port to store for a query that came from `source_port`.
    pub fn announced_port(&self, source_port: u16) -> Option<u16> {
        match self {
            Method::AnnouncePeer {
                port, implied_port, ..
            } => Some(if *implied_port { source_port } else { *port }),
            _ => None,
        }
    }
}

/// A BEP-44 put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Put<'a> {
    pub token: &'a [u8],
    /// The bencoded value exactly as it appeared (at most [`MAX_V_BYTES`]).
    pub v: &'a [u8],
    /// Present for a mutable item.
    pub mutable: Option<MutablePut<'a>>,
}

/// The fields of a mutable put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutablePut<'a> {
    pub k: [u8; 32],
    pub sig: [u8; 64],
    pub seq: i64,
    pub cas: Option<i64>,
    /// Empty when absent (the BEP treats both alike).
    pub salt: &'a [u8],
}

/// A response; which fields matter depends on the query it answers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response<'a> {
    pub id: NodeId,
    /// Compact IPv4 nodes (`nodes`).
    pub nodes: Vec<CompactNode>,
    /// Compact IPv6 nodes (`nodes6`, BEP-32).
    pub nodes6: Vec<CompactNode>,
    /// get_peers peers (`values`).
    pub values: Vec<SocketAddr>,
    pub token: Option<&'a [u8]>,
    /// BEP-51 `samples`.
    pub samples: Option<Vec<NodeId>>,
    /// BEP-51 `interval` (seconds until the sample changes).
    pub interval: Option<i64>,
    /// BEP-51 `num` (info-hashes the responder stores).
    pub num: Option<i64>,
    /// BEP-44 `v`, the bencoded item exactly as it appeared.
    pub value: Option<&'a [u8]>,
    pub k: Option<[u8; 32]>,
    pub sig: Option<[u8; 64]>,
    pub seq: Option<i64>,
}

/// An error message: `e` = `[code, message]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReply<'a> {
    pub code: i64,
    pub message: &'a [u8],
}

/// Why a datagram is not a KRPC message we accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// Not bencode within the limits.
    Bencode(bencode::Error),
    /// The top level (or `a`, `r`) is not a dictionary.
    NotADict(&'static str),
    /// A required key is missing.
    Missing(&'static str),
    /// A key has the wrong type.
    BadType(&'static str),
    /// A string key has the wrong length (ids, `k`, `sig`, compact addresses, tokens, `t`).
    BadLength(&'static str),
    /// A list or string holds more entries than allowed.
    TooMany(&'static str),
    /// `y` is not `q`, `r` or `e`.
    UnknownType,
    /// A query method we do not implement (answer 204).
    UnknownMethod,
    /// announce_peer without `implied_port` and a port outside 1..=65535.
    BadPort,
    /// A negative or missing `seq`/`cas`.
    BadSeq,
    /// BEP-44 `v` longer than [`MAX_V_BYTES`] (answer 205).
    ValueTooBig,
    /// BEP-44 salt longer than [`MAX_SALT`] (answer 207).
    SaltTooBig,
}

/// A parse error with what the node needs to answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError<'a> {
    pub kind: ErrorKind,
    /// The transaction id, when the message had a usable one.
    pub t: Option<&'a [u8]>,
    /// Whether the message was a query (only queries get an error back).
    pub query: bool,
}

impl fmt::Display for ParseError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ErrorKind::Bencode(e) => write!(f, "bad bencode: {e}"),
            ErrorKind::NotADict(k) => write!(f, "{k} is not a dictionary"),
            ErrorKind::Missing(k) => write!(f, "missing {k}"),
            ErrorKind::BadType(k) => write!(f, "{k} has the wrong type"),
            ErrorKind::BadLength(k) => write!(f, "{k} has a bad length"),
            ErrorKind::TooMany(k) => write!(f, "too many entries in {k}"),
            ErrorKind::UnknownType => write!(f, "unknown message type"),
            ErrorKind::UnknownMethod => write!(f, "unknown method"),
            ErrorKind::BadPort => write!(f, "bad port"),
            ErrorKind::BadSeq => write!(f, "bad sequence number"),
            ErrorKind::ValueTooBig => write!(f, "v too big"),
            ErrorKind::SaltTooBig => write!(f, "salt too big"),
        }
    }
}

impl ParseError<'_> {
    /// The KRPC error code to answer with.
    pub fn code(&self) -> i64 {
        match self.kind {
            ErrorKind::UnknownMethod => code::METHOD_UNKNOWN,
            ErrorKind::ValueTooBig => code::V_TOO_BIG,
            ErrorKind::SaltTooBig => code::SALT_TOO_BIG,
            _ => code::PROTOCOL,
        }
    }

    /// The error datagram to send back, for a query that had a transaction id.
    pub fn reply(&self) -> Option<Vec<u8>> {
        let t = self.t.filter(|_| self.query)?;
        let msg = self.to_string();
        Some(Message::error(t, self.code(), msg.as_bytes()).encode())
    }
}

type R<T> = Result<T, ErrorKind>;

fn opt_bytes<'a>(d: &Value<'a>, key: &'static str) -> R<Option<&'a [u8]>> {
    match d.get(key) {
        None => Ok(None),
        Some(v) => v.as_bytes().map(Some).ok_or(ErrorKind::BadType(key)),
    }
}

fn req_bytes<'a>(d: &Value<'a>, key: &'static str) -> R<&'a [u8]> {
    opt_bytes(d, key)?.ok_or(ErrorKind::Missing(key))
}

fn opt_int(d: &Value<'_>, key: &'static str) -> R<Option<i64>> {
    match d.get(key) {
        None => Ok(None),
        Some(v) => v.as_int().map(Some).ok_or(ErrorKind::BadType(key)),
    }
}

fn opt_seq(d: &Value<'_>, key: &'static str) -> R<Option<i64>> {
    match opt_int(d, key)? {
        Some(s) if s < 0 => Err(ErrorKind::BadSeq),
        s => Ok(s),
    }
}

fn id(d: &Value<'_>, key: &'static str) -> R<NodeId> {
    NodeId::from_slice(req_bytes(d, key)?).ok_or(ErrorKind::BadLength(key))
}

fn fixed<const N: usize>(b: Option<&[u8]>, key: &'static str) -> R<Option<[u8; N]>> {
    b.map(|b| b.try_into().map_err(|_| ErrorKind::BadLength(key)))
        .transpose()
}

fn token<'a>(d: &Value<'a>) -> R<Option<&'a [u8]>> {
    match opt_bytes(d, "token")? {
        Some(t) if t.len() > MAX_TOKEN => Err(ErrorKind::BadLength("token")),
        t => Ok(t),
    }
}

fn nodes(d: &Value<'_>, key: &'static str, entry: usize) -> R<Vec<CompactNode>> {
    match opt_bytes(d, key)? {
        None => Ok(Vec::new()),
        Some(b) => compact::parse_nodes(b, entry, MAX_NODES).map_err(|e| match e {
            compact::NodesError::BadLength => ErrorKind::BadLength(key),
            compact::NodesError::TooMany => ErrorKind::TooMany(key),
        }),
    }
}

fn value_raw<'a>(d: &Value<'a>) -> R<Option<&'a [u8]>> {
    match d.get("v") {
        None => Ok(None),
        Some(v) if v.raw.len() > MAX_V_BYTES => Err(ErrorKind::ValueTooBig),
        Some(v) => Ok(Some(v.raw)),
    }
}

/// Parses one datagram.
pub fn parse(input: &[u8]) -> Result<Message<'_>, ParseError<'_>> {
    let top = bencode::decode_with(input, LIMITS).map_err(|e| ParseError {
        kind: ErrorKind::Bencode(e),
        t: None,
        query: false,
    })?;
    let early = |kind| ParseError {
        kind,
        t: None,
        query: false,
    };
    if top.as_dict().is_none() {
        return Err(early(ErrorKind::NotADict("message")));
    }
    let t = req_bytes(&top, "t").map_err(early)?;
    if t.len() > MAX_TRANSACTION_ID {
        return Err(early(ErrorKind::BadLength("t")));
    }
    let y = opt_bytes(&top, "y").ok().flatten();
    let query = y == Some(b"q");
    parse_rest(&top, t, y).map_err(|kind| ParseError {
        kind,
        t: Some(t),
        query,
    })
}

fn parse_rest<'a>(top: &Value<'a>, t: &'a [u8], y: Option<&'a [u8]>) -> R<Message<'a>> {
    let version = opt_bytes(top, "v")?;
    let ip = match opt_bytes(top, "ip")? {
        None => None,
        Some(b) => Some(compact::parse_addr(b).ok_or(ErrorKind::BadLength("ip"))?),
    };
    let ro = opt_int(top, "ro")?.is_some_and(|r| r != 0);
    let body = match y {
        Some(b"q") => Body::Query(parse_query(top)?),
        Some(b"r") => Body::Response(parse_response(top)?),
        Some(b"e") => Body::Error(parse_error(top)?),
        Some(_) => return Err(ErrorKind::UnknownType),
        None => return Err(ErrorKind::Missing("y")),
    };
    Ok(Message {
        t,
        version,
        ip,
        ro,
        body,
    })
}

fn dict<'v, 'a>(top: &'v Value<'a>, key: &'static str) -> R<&'v Value<'a>> {
    let d = top.get(key).ok_or(ErrorKind::Missing(key))?;
    d.as_dict().ok_or(ErrorKind::NotADict(key))?;
    Ok(d)
}

fn parse_query<'a>(top: &Value<'a>) -> R<Query<'a>> {
    let q = req_bytes(top, "q")?;
    let a = dict(top, "a")?;
    let id = id(a, "id")?;
    let mut want = Want::default();
    if let Some(w) = a.get("want") {
        for item in w.as_list().ok_or(ErrorKind::BadType("want"))? {
            match item.as_bytes().ok_or(ErrorKind::BadType("want"))? {
                b"n4" => want.n4 = true,
                b"n6" => want.n6 = true,
                _ => {}
            }
        }
    }
    let method = match q {
        b"ping" => Method::Ping,
        b"find_node" => Method::FindNode {
            target: self::id(a, "target")?,
        },
        b"get_peers" => Method::GetPeers {
            info_hash: self::id(a, "info_hash")?,
        },
        b"announce_peer" => {
            let info_hash = self::id(a, "info_hash")?;
            let token = token(a)?.ok_or(ErrorKind::Missing("token"))?;
            let implied_port = opt_int(a, "implied_port")?.is_some_and(|i| i != 0);
            let port = opt_int(a, "port")?;
            let port = match (implied_port, port) {
                (true, p) => p.and_then(|p| u16::try_from(p).ok()).unwrap_or(0),
                (false, None) => return Err(ErrorKind::Missing("port")),
                (false, Some(p)) => match u16::try_from(p) {
                    Ok(p) if p != 0 => p,
                    _ => return Err(ErrorKind::BadPort),
                },
            };
            Method::AnnouncePeer {
                info_hash,
                port,
                implied_port,
                token,
            }
        }
        b"get" => Method::Get {
            target: self::id(a, "target")?,
            seq: opt_seq(a, "seq")?,
        },
        b"put" => Method::Put(parse_put(a)?),
        b"sample_infohashes" => Method::SampleInfohashes {
            target: self::id(a, "target")?,
        },
        _ => return Err(ErrorKind::UnknownMethod),
    };
    Ok(Query { id, want, method })
}

fn parse_put<'a>(a: &Value<'a>) -> R<Put<'a>> {
    let token = token(a)?.ok_or(ErrorKind::Missing("token"))?;
    let v = value_raw(a)?.ok_or(ErrorKind::Missing("v"))?;
    let mutable = match fixed::<32>(opt_bytes(a, "k")?, "k")? {
        None => None,
        Some(k) => {
            let sig = fixed::<64>(opt_bytes(a, "sig")?, "sig")?.ok_or(ErrorKind::Missing("sig"))?;
            let seq = opt_seq(a, "seq")?.ok_or(ErrorKind::BadSeq)?;
            let cas = opt_seq(a, "cas")?;
            let salt = opt_bytes(a, "salt")?.unwrap_or(b"");
            if salt.len() > MAX_SALT {
                return Err(ErrorKind::SaltTooBig);
            }
            Some(MutablePut {
                k,
                sig,
                seq,
                cas,
                salt,
            })
        }
    };
    Ok(Put { token, v, mutable })
}

fn parse_response<'a>(top: &Value<'a>) -> R<Response<'a>> {
    let r = dict(top, "r")?;
    let mut values = Vec::new();
    if let Some(list) = r.get("values") {
        let list = list.as_list().ok_or(ErrorKind::BadType("values"))?;
        if list.len() > MAX_VALUES {
            return Err(ErrorKind::TooMany("values"));
        }
        for p in list {
            let b = p.as_bytes().ok_or(ErrorKind::BadType("values"))?;
            values.push(compact::parse_addr(b).ok_or(ErrorKind::BadLength("values"))?);
        }
    }
    let samples = match opt_bytes(r, "samples")? {
        None => None,
        Some(b) if b.len() % 20 != 0 => return Err(ErrorKind::BadLength("samples")),
        Some(b) if b.len() / 20 > MAX_SAMPLES => return Err(ErrorKind::TooMany("samples")),
        Some(b) => Some(b.chunks_exact(20).filter_map(NodeId::from_slice).collect()),
    };
    Ok(Response {
        id: id(r, "id")?,
        nodes: nodes(r, "nodes", NODE4_LEN)?,
        nodes6: nodes(r, "nodes6", NODE6_LEN)?,
        values,
        token: token(r)?,
        samples,
        interval: opt_int(r, "interval")?,
        num: opt_int(r, "num")?,
        value: value_raw(r)?,
        k: fixed::<32>(opt_bytes(r, "k")?, "k")?,
        sig: fixed::<64>(opt_bytes(r, "sig")?, "sig")?,
        seq: opt_seq(r, "seq")?,
    })
}

fn parse_error<'a>(top: &Value<'a>) -> R<ErrorReply<'a>> {
    let e = top.get("e").ok_or(ErrorKind::Missing("e"))?;
    let list = e.as_list().ok_or(ErrorKind::BadType("e"))?;
    let code = list
        .first()
        .and_then(Value::as_int)
        .ok_or(ErrorKind::BadType("e"))?;
    let message = match list.get(1) {
        None => b"",
        Some(m) => m.as_bytes().ok_or(ErrorKind::BadType("e"))?,
    };
    Ok(ErrorReply { code, message })
}

fn b(bytes: &[u8]) -> Owned {
    Owned::Bytes(bytes.to_vec())
}

fn key(m: &mut BTreeMap<Vec<u8>, Owned>, k: &str, v: Owned) {
    m.insert(k.as_bytes().to_vec(), v);
}

impl<'a> Message<'a> {
    /// A query with no `ip`, `ro` or version.
    pub fn query(t: &'a [u8], id: NodeId, method: Method<'a>) -> Message<'a> {
        Message::with_body(
            t,
            Body::Query(Query {
                id,
                want: Want::default(),
                method,
            }),
        )
    }

    /// A response; set `ip` on the result to tell the querier its address (BEP-42).
    pub fn response(t: &'a [u8], r: Response<'a>) -> Message<'a> {
        Message::with_body(t, Body::Response(r))
    }

    /// An error answer echoing `t`.
    pub fn error(t: &'a [u8], code: i64, message: &'a [u8]) -> Message<'a> {
        Message::with_body(t, Body::Error(ErrorReply { code, message }))
    }

    fn with_body(t: &'a [u8], body: Body<'a>) -> Message<'a> {
        Message {
            t,
            version: None,
            ip: None,
            ro: false,
            body,
        }
    }

    /// The bencoded datagram. Byte-string fields holding bencode (`v` of BEP-44) must be one
    /// valid value; everything built by [`parse`] is.
    pub fn encode(&self) -> Vec<u8> {
        let mut top = BTreeMap::new();
        key(&mut top, "t", b(self.t));
        if let Some(v) = self.version {
            key(&mut top, "v", b(v));
        }
        if let Some(ip) = self.ip {
            key(&mut top, "ip", Owned::Bytes(compact::addr_bytes(ip)));
        }
        if self.ro {
            key(&mut top, "ro", Owned::Int(1));
        }
        match &self.body {
            Body::Query(q) => {
                key(&mut top, "y", b(b"q"));
                key(&mut top, "q", Owned::str(q.method.name()));
                key(&mut top, "a", Owned::Dict(query_args(q)));
            }
            Body::Response(r) => {
                key(&mut top, "y", b(b"r"));
                key(&mut top, "r", Owned::Dict(response_fields(r)));
            }
            Body::Error(e) => {
                key(&mut top, "y", b(b"e"));
                let list = vec![Owned::Int(e.code), b(e.message)];
                key(&mut top, "e", Owned::List(list));
            }
        }
        Owned::Dict(top).encode()
    }
}

fn query_args(q: &Query<'_>) -> BTreeMap<Vec<u8>, Owned> {
    let mut a = BTreeMap::new();
    key(&mut a, "id", b(&q.id.0));
    if q.want.n4 || q.want.n6 {
        let mut w = Vec::new();
        if q.want.n4 {
            w.push(Owned::str("n4"));
        }
        if q.want.n6 {
            w.push(Owned::str("n6"));
        }
        key(&mut a, "want", Owned::List(w));
    }
    match &q.method {
        Method::Ping => {}
        Method::FindNode { target } | Method::SampleInfohashes { target } => {
            key(&mut a, "target", b(&target.0))
        }
        Method::GetPeers { info_hash } => key(&mut a, "info_hash", b(&info_hash.0)),
        Method::AnnouncePeer {
            info_hash,
            port,
            implied_port,
            token,
        } => {
            key(&mut a, "info_hash", b(&info_hash.0));
            key(&mut a, "port", Owned::Int(*port as i64));
            if *implied_port {
                key(&mut a, "implied_port", Owned::Int(1));
            }
            key(&mut a, "token", b(token));
        }
        Method::Get { target, seq } => {
            key(&mut a, "target", b(&target.0));
            if let Some(s) = seq {
                key(&mut a, "seq", Owned::Int(*s));
            }
        }
        Method::Put(p) => {
            key(&mut a, "token", b(p.token));
            key(&mut a, "v", Owned::Raw(p.v.to_vec()));
            if let Some(m) = &p.mutable {
                key(&mut a, "k", b(&m.k));
                key(&mut a, "sig", b(&m.sig));
                key(&mut a, "seq", Owned::Int(m.seq));
                if let Some(c) = m.cas {
                    key(&mut a, "cas", Owned::Int(c));
                }
                if !m.salt.is_empty() {
                    key(&mut a, "salt", b(m.salt));
                }
            }
        }
    }
    a
}

fn response_fields(r: &Response<'_>) -> BTreeMap<Vec<u8>, Owned> {
    let mut m = BTreeMap::new();
    key(&mut m, "id", b(&r.id.0));
    if !r.nodes.is_empty() {
        key(
            &mut m,
            "nodes",
            Owned::Bytes(compact::write_nodes(&r.nodes, false)),
        );
    }
    if !r.nodes6.is_empty() {
        key(
            &mut m,
            "nodes6",
            Owned::Bytes(compact::write_nodes(&r.nodes6, true)),
        );
    }
    if !r.values.is_empty() {
        let list = r
            .values
            .iter()
            .map(|a| Owned::Bytes(compact::addr_bytes(*a)));
        key(&mut m, "values", Owned::List(list.collect()));
    }
    if let Some(t) = r.token {
        key(&mut m, "token", b(t));
    }
    if let Some(s) = &r.samples {
        let bytes: Vec<u8> = s.iter().flat_map(|id| id.0).collect();
        key(&mut m, "samples", Owned::Bytes(bytes));
    }
    let ints = [("interval", r.interval), ("num", r.num), ("seq", r.seq)];
    for (k, v) in ints {
        if let Some(v) = v {
            key(&mut m, k, Owned::Int(v));
        }
    }
    if let Some(v) = r.value {
        key(&mut m, "v", Owned::Raw(v.to_vec()));
    }
    if let Some(k) = &r.k {
        key(&mut m, "k", b(k));
    }
    if let Some(s) = &r.sig {
        key(&mut m, "sig", b(s));
    }
    m
}

/// Whether `raw` is exactly one bencoded value of at most [`MAX_V_BYTES`] (for building puts).
pub fn valid_item_value(raw: &[u8]) -> bool {
    raw.len() <= MAX_V_BYTES && bencode::decode_with(raw, LIMITS).is_ok()
}

#[cfg(test)]
#[path = "krpc_tests.rs"]
mod tests;
