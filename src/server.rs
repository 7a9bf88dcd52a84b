//! `run_server`: opens storage, binds the API listener, starts the HTTP pool, the UDP tracker
//! and the tracker's maintenance thread, and returns a [`Running`] handle with the bound
//! addresses and a graceful shutdown.
//!
//! The [`Gateway`] is the state every handler shares: configuration, the catalog of stored
//! files, the tracker, counters and the rate limiter. It is read-mostly; writes go through
//! the catalog's commit lock, the tracker's shard locks and atomics.

use crate::catalog::{Catalog, Change, SweepReport};
use crate::config::Config;
use crate::http::early::{EarlyRoute, Later};
use crate::http::pool::{self, HttpPool, PoolLimits, PoolState};
use crate::http::ratelimit::RateLimiter;
use crate::http::respond::{Deferred, Wake};
use crate::http::router::{self, Method, Reply, ReplyBody, Req};
use crate::http::stats::Stats;
use crate::net::stats::NetStats;
use crate::net::{Command, Deps, Net};
use crate::nostr::publisher::Publisher;
use crate::tracker::maintenance::Maintenance;
use crate::tracker::udp::UdpTracker;
use crate::tracker::Tracker;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub struct Gateway {
    pub config: Config,
    pub public_url: String,
    pub catalog: Catalog,
    pub tracker: Arc<Tracker>,
    pub stats: Arc<Stats>,
    pub limiter: RateLimiter,
    pub sweep: SweepReport,
    /// The peer wire service's counters and address, when enabled.
    pub p2p: Option<P2pInfo>,
    /// The gateway's Nostr key and the relay publisher.
    pub nostr: Arc<Publisher>,
    /// The Blossom server's address, when enabled.
    pub blossom_addr: Option<SocketAddr>,
    /// Fetch-through (torrents joined on request), when the peer wire runs.
    pub fetch: Option<Arc<crate::fetch::Fetcher>>,
    api: OnceLock<Arc<PoolState>>,
    blossom: OnceLock<Arc<PoolState>>,
}

impl Gateway {
    /// The API listener's connection layer, once started.
    pub fn api_layer(&self) -> Option<&Arc<PoolState>> {
        self.api.get()
    }

    /// The Blossom listener's connection layer, once started.
    pub fn blossom_layer(&self) -> Option<&Arc<PoolState>> {
        self.blossom.get()
    }

    pub fn api_connections(&self) -> usize {
        self.api.get().map_or(0, |p| p.connections())
    }

    /// Connections the API's connection layer refused (caps, accept rates, busy uploads).
    pub fn api_refused(&self) -> u64 {
        self.api.get().map_or(0, |p| {
            let st = &p.stats;
            [&st.refused_busy, &st.refused_rate, &st.refused_per_ip]
                .iter()
                .map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
                .sum()
        })
    }

    pub fn api_overloaded(&self) -> bool {
        self.api.get().is_some_and(|p| p.overloaded())
    }

    pub fn blossom_connections(&self) -> usize {
        self.blossom.get().map_or(0, |p| p.connections())
    }

    /// Handles one request from a pool (the API's or Blossom's) with that pool's router:
    /// the per-IP rate limit first, then the route.
    fn handle(&self, req: &mut Req<'_>, route: Route) -> Reply {
        // The probes answer whatever the load: no rate limit.
        let probe = matches!(req.path, "/livez" | "/readyz");
        let limited = if probe { None } else { self.rate_limited(req) };
        let reply = match limited {
            Some(refusal) => refusal,
            None => route(self, req),
        };
        counted(&self.stats, reply)
    }

    /// The 429 for a client past its rate limit (counted), or None.
    fn rate_limited(&self, req: &Req<'_>) -> Option<Reply> {
        let ip = req.remote.map(|a| crate::http::conn::canonical(a.ip()));
        let wait = self.limiter.check(ip, router::class_of(req.method)).err()?;
        self.stats.rate_limited.add(1);
        Some(Reply::error(429, "rate limit exceeded").header("Retry-After", wait.to_string()))
    }
}

/// The API listener's early route: with the Redis backend, `GET /announce` is started by
/// the poller and answered on a Redis lane's thread, so no worker sits waiting on Redis
/// (every announce would otherwise cost a hand-off to a worker, one to the lane and two
/// back). The rate limit and counters are the same as for the routed requests.
struct EarlyAnnounce(Arc<Gateway>);

impl EarlyRoute for EarlyAnnounce {
    fn claims(&self, method: Method, path: &str) -> bool {
        method == Method::Get && path == "/announce" && self.0.tracker.redis.is_some()
    }

    fn start(&self, req: &mut Req<'_>, later: Later) {
        let gw = &self.0;
        if let Some(refusal) = gw.rate_limited(req) {
            return later.answer(counted(&gw.stats, refusal));
        }
        let asked = match crate::http::tracker::read_announce(gw, req) {
            Ok(asked) => asked,
            Err(reply) => return later.answer(counted(&gw.stats, reply)),
        };
        let stats = Arc::clone(&gw.stats);
        let a = asked.a.clone();
        gw.tracker.announce_later(
            &a,
            Box::new(move |result, peers| {
                let reply = crate::http::tracker::answer(&asked, result, &peers);
                later.answer(counted(&stats, reply));
            }),
        );
    }
}

/// Counts a reply by its status; a deferred one when it is known (a stream's 504 after
/// `fetch.wait_secs`, a .torrent URL's 502), not by the placeholder it starts as. A
/// deferred reply that never resolves (its client hung up) is not counted.
fn counted(stats: &Arc<Stats>, mut reply: Reply) -> Reply {
    if let ReplyBody::Deferred(inner) = reply.body {
        reply.body = ReplyBody::Deferred(Box::new(CountedDeferred {
            inner,
            stats: Arc::clone(stats),
        }));
        return reply;
    }
    stats.request(reply.status);
    reply
}

struct CountedDeferred {
    inner: Box<dyn Deferred>,
    stats: Arc<Stats>,
}

impl Deferred for CountedDeferred {
    fn poll(&mut self, wake: &Wake) -> Option<Reply> {
        let reply = self.inner.poll(wake)?;
        Some(counted(&self.stats, reply))
    }
}

/// A pool's router.
type Route = fn(&Gateway, &mut Req<'_>) -> Reply;

/// What the HTTP side knows of the peer wire service.
pub struct P2pInfo {
    pub addr: SocketAddr,
    pub advertised: Option<SocketAddr>,
    pub stats: Arc<NetStats>,
}

/// A running gateway.
pub struct Running {
    pub api_addr: SocketAddr,
    /// The UDP tracker's address (same port number as the API), if enabled.
    pub udp_tracker_addr: Option<SocketAddr>,
    /// The peer wire listener, if enabled.
    pub peer_addr: Option<SocketAddr>,
    /// The Blossom server, if enabled.
    pub blossom_addr: Option<SocketAddr>,
    pub public_url: String,
    pub gateway: Arc<Gateway>,
    api: HttpPool,
    blossom: Option<HttpPool>,
    udp: Option<UdpTracker>,
    net: Option<Net>,
    maintenance: Maintenance,
    /// Held until the gateway is dropped (after `shutdown`).
    _lock: crate::store::dirs::DataDirLock,
}

impl Running {
    /// False once a worker has died (the process should exit non-zero).
    pub fn healthy(&self) -> bool {
        self.api.healthy()
            && self.blossom.as_ref().is_none_or(HttpPool::healthy)
            && self.gateway.nostr.healthy()
            && self.udp.as_ref().is_none_or(UdpTracker::healthy)
            && self.net.as_ref().is_none_or(Net::healthy)
    }

    /// Stops accepting, lets in-flight requests finish within the configured grace, flushes.
    pub fn shutdown(self) -> bool {
        let grace = Duration::from_secs(self.gateway.config.api.shutdown_grace_secs);
        if let Some(udp) = self.udp {
            udp.stop();
        }
        if let Some(net) = self.net {
            net.stop();
        }
        let blossom_clean = self.blossom.is_none_or(|b| b.stop(grace));
        let clean = self.api.stop(grace) && blossom_clean;
        self.gateway.nostr.stop();
        self.maintenance.stop();
        clean
    }
}

/// Starts the gateway with a validated configuration.
pub fn run_server(config: Config) -> Result<Running, String> {
    config.validate().map_err(|e| format!("config: {e}"))?;
    // First of all: one process owns a data dir (a second one's start-up sweep would delete
    // the first one's uploads in progress).
    let lock = crate::store::dirs::lock_data_dir(&config.data_dir)?;
    let fd_limit = pool::raise_fd_limit();
    log::debug!("open-files limit {fd_limit}");
    let addr = config.api_addr().map_err(|e| format!("config: {e}"))?;
    let (listener, udp_socket) = bind_api_and_udp(addr, config.tracker.udp)?;
    let api_addr = listener
        .local_addr()
        .map_err(|e| format!("binding {addr}: {e}"))?;
    let public_url = config.public_url_for(api_addr);
    let blossom_listener = if config.blossom.enabled {
        let addr = config.blossom_addr().map_err(|e| format!("config: {e}"))?;
        Some(pool::bind(addr).map_err(|e| format!("binding Blossom to {addr}: {e}"))?)
    } else {
        None
    };
    let blossom_addr = match &blossom_listener {
        Some(l) => Some(
            l.local_addr()
                .map_err(|e| format!("Blossom listener: {e}"))?,
        ),
        None => None,
    };
    let (catalog, sweep) = Catalog::open(&config, &public_url)?;
    if let Some(addr) = blossom_addr {
        catalog.set_blossom_url(config.blossom_url_for(addr));
    }
    let keys = crate::nostr::keys::load_or_create(&config.nostr.secret_key, &config.data_dir)?;
    let nostr = Arc::new(
        Publisher::start(
            keys,
            config.nostr.relays.clone(),
            catalog.shared_db(),
            config.nostr.clone(),
        )
        .map_err(|e| format!("starting the nostr thread: {e}"))?,
    );
    let tracker = Arc::new(open_tracker(&config, &catalog)?);
    let udp = match udp_socket {
        Some(socket) => Some(
            UdpTracker::start(socket, Arc::clone(&tracker))
                .map_err(|e| format!("starting the UDP tracker: {e}"))?,
        ),
        None => None,
    };
    let maintenance = Maintenance::start(Arc::clone(&tracker), catalog.shared_db())
        .map_err(|e| format!("starting tracker maintenance: {e}"))?;
    let net = start_net(&config, &catalog, &tracker, &public_url)?;
    let p2p = net.as_ref().map(|n| P2pInfo {
        addr: n.addr,
        advertised: tracker.own_peer(),
        stats: Arc::clone(&n.stats),
    });
    let fetch = net.as_ref().map(|n| {
        let f = Arc::new(crate::fetch::Fetcher::new(
            n.notifier(),
            config.data_dir.join("cache"),
            config
                .fetch
                .effective(config.api.max_streams, config.api.io_timeout_secs),
        ));
        f.resume();
        f
    });
    let gateway = Arc::new(Gateway {
        fetch,
        limiter: RateLimiter::new(config.rate_limit.clone()),
        config,
        public_url: public_url.clone(),
        catalog,
        tracker,
        stats: Arc::default(),
        sweep,
        p2p,
        nostr,
        blossom_addr,
        api: OnceLock::new(),
        blossom: OnceLock::new(),
    });
    announce_stored_files(&gateway);
    let api = start_pool(
        &gateway,
        "http-api",
        listener,
        gateway.config.api_pool_limits(),
        router::route,
        |r| r,
        Some(Arc::new(EarlyAnnounce(Arc::clone(&gateway)))),
    )
    .map_err(|e| format!("starting the API: {e}"))?;
    let _ = gateway.api.set(Arc::clone(api.state()));
    let blossom = match blossom_listener {
        Some(listener) => {
            let pool = start_pool(
                &gateway,
                "http-blossom",
                listener,
                gateway.config.blossom_pool_limits(),
                crate::http::blossom::route,
                crate::http::blossom::cors,
                None,
            )
            .map_err(|e| format!("starting Blossom: {e}"))?;
            let _ = gateway.blossom.set(Arc::clone(pool.state()));
            Some(pool)
        }
        None => None,
    };
    Ok(Running {
        api_addr,
        udp_tracker_addr: udp.as_ref().map(|u| u.addr),
        peer_addr: net.as_ref().map(|n| n.addr),
        blossom_addr,
        public_url,
        gateway,
        api,
        blossom,
        udp,
        net,
        maintenance,
        _lock: lock,
    })
}

/// Starts a listener whose requests go through `Gateway::handle` with `route`, but for
/// those `early` claims. `decorate` is applied to every routed reply (Blossom's CORS headers).
fn start_pool(
    gateway: &Arc<Gateway>,
    name: &'static str,
    listener: std::net::TcpListener,
    limits: PoolLimits,
    route: Route,
    decorate: fn(Reply) -> Reply,
    early: Option<Arc<dyn EarlyRoute>>,
) -> std::io::Result<HttpPool> {
    let gw = Arc::clone(gateway);
    HttpPool::start_with_early(
        name,
        listener,
        limits,
        Arc::new(move |req| decorate(gw.handle(req, route))),
        early,
    )
}

/// Announces every newly stored file to the relays as a signed NIP-94 event.
fn announce_stored_files(gateway: &Arc<Gateway>) {
    if gateway.nostr.relays().is_empty() {
        return;
    }
    let gw = Arc::downgrade(gateway);
    gateway.catalog.observe(Box::new(move |change| {
        let (Change::Added { sha256, .. }, Some(gw)) = (change, gw.upgrade()) else {
            return;
        };
        match gw.catalog.get(&sha256) {
            Ok(Some(rec)) => {
                let aux = crate::nostr::keys::random32().unwrap_or_default();
                let event = gw.nostr.keys.sign(
                    crate::catalog::now_secs(),
                    crate::proto::nostr::nip94::KIND,
                    gw.catalog.nip94_tags(&rec),
                    rec.name.clone(),
                    &aux,
                );
                gw.nostr.announce(&event);
            }
            Ok(None) => {}
            Err(e) => log::error!("announcing {sha256}: {e}"),
        }
    }));
}

/// Binds and starts the peer wire service; wires the catalog's changes and the tracker's
/// leecher hints to it and tells the tracker which address to hand out for it.
fn start_net(
    config: &Config,
    catalog: &Catalog,
    tracker: &Arc<Tracker>,
    public_url: &str,
) -> Result<Option<Net>, String> {
    if !config.peer.enabled {
        return Ok(None);
    }
    let addr = config.peer_addr().map_err(|e| format!("config: {e}"))?;
    let listener = Net::bind(addr).map_err(|e| format!("binding the peer port {addr}: {e}"))?;
    let net = Net::start(
        listener,
        config.peer.clone(),
        Deps {
            db: Some(catalog.shared_db()),
            store: Some(catalog.shared_store()),
            hosted: catalog.hosted_index(),
            tracker: Some(Arc::clone(tracker)),
        },
    )
    .map_err(|e| format!("starting the peer wire service: {e}"))?;
    let advertised = config
        .advertise_ip()
        .map_err(|e| format!("config: {e}"))?
        .or_else(|| url_ip(public_url))
        .or_else(|| Some(net.addr.ip()).filter(|ip| !ip.is_unspecified()));
    if let Some(ip) = advertised {
        tracker.set_own_peer(SocketAddr::new(ip, net.addr.port()));
    }
    let notifier = net.notifier();
    catalog.observe(Box::new(move |change| {
        notifier.notify(match change {
            Change::Added { info_hash, .. } => Command::Added(info_hash),
            Change::Removed { info_hash, sha256 } => Command::Removed { info_hash, sha256 },
        })
    }));
    let notifier = net.notifier();
    tracker.on_leecher(Box::new(move || notifier.notify(Command::Leecher)));
    if config.dht.enabled {
        start_dht(config, &net)?;
    }
    Ok(Some(net))
}

/// Binds the DHT socket and starts the node in the `net` loop, rejoining from `dht.dat`.
fn start_dht(config: &Config, net: &Net) -> Result<(), String> {
    let addr: SocketAddr = config
        .dht
        .addr
        .parse()
        .map_err(|_| format!("config: dht.addr {:?} is not an address", config.dht.addr))?;
    let socket = Net::bind_dht(addr).map_err(|e| format!("binding the DHT port {addr}: {e}"))?;
    let state_file = config.data_dir.join("dht.dat");
    let saved = std::fs::read(&state_file)
        .ok()
        .and_then(|b| crate::dht::persist::decode(&b));
    if saved.is_none() && state_file.exists() {
        log::warn!(
            "dht: {} is unreadable; starting afresh",
            state_file.display()
        );
    }
    let (id, known) = saved.map_or((None, Vec::new()), |(id, n)| (Some(id), n));
    log::info!(
        "dht: listening on {}, {} saved nodes",
        socket.local_addr().map_or(addr, |a| a),
        known.len()
    );
    // A node bound to loopback talks only to this host, where every node shares one IP: the
    // one-node-per-IP (and /24) rules would keep a single peer node, so they are lifted there
    // (as `download` does with loopback bootstrap nodes). Any other address keeps the config.
    let mut settings = config.dht.settings();
    if socket.local_addr().is_ok_and(|a| a.ip().is_loopback()) {
        settings.restrict_ips = false;
    }
    let setup = crate::net::DhtSetup {
        socket,
        settings,
        id,
        known,
        state_file: Some(state_file),
    };
    net.start_dht(setup, config.dht.bootstrap.clone());
    Ok(())
}

/// The host of an `http://host:port` URL when it is an IP address.
fn url_ip(url: &str) -> Option<std::net::IpAddr> {
    let rest = url.split_once("://")?.1;
    let host = rest.split('/').next()?;
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    host.parse().ok()
}

/// Binds the API's TCP listener and, if wanted, the UDP tracker on the same port number.
/// With port 0 the UDP port may be taken by someone else: then both are bound again.
fn bind_api_and_udp(
    addr: SocketAddr,
    udp: bool,
) -> Result<(std::net::TcpListener, Option<std::net::UdpSocket>), String> {
    let mut attempts = 0;
    loop {
        let listener = pool::bind(addr).map_err(|e| format!("binding {addr}: {e}"))?;
        if !udp {
            return Ok((listener, None));
        }
        let bound = listener
            .local_addr()
            .map_err(|e| format!("binding {addr}: {e}"))?;
        match UdpTracker::bind(bound) {
            Ok(socket) => return Ok((listener, Some(socket))),
            Err(e) if addr.port() == 0 && attempts < 16 => {
                log::debug!("UDP port {} is taken ({e}), binding again", bound.port());
                attempts += 1;
            }
            Err(e) => return Err(format!("binding the UDP tracker to {bound}: {e}")),
        }
    }
}

/// The tracker, asking the catalog which torrents are hosted.
fn open_tracker(config: &Config, catalog: &Catalog) -> Result<Tracker, String> {
    let db = catalog.shared_db();
    let hosted = catalog.hosted_index();
    Tracker::open(
        config.tracker.clone(),
        Box::new(move |ih| hosted.read().contains(ih)),
        &db,
    )
    .map_err(|e| format!("loading tracker state from gateway.db: {e}"))
}
