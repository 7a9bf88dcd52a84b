"""The libtorrent session the test helpers share: loopback only, and only the sources the
test gives (no DHT, LSD, UPnP, NAT-PMP; uTP off, see INTEROP.md). Extra settings (an
encryption policy, a rate limit, a fixed listen port) override the defaults."""
import libtorrent as lt


def session(extra_alerts=0, **overrides):
    settings = {
        "listen_interfaces": "127.0.0.1:0",
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "allow_multiple_connections_per_ip": True,
        "alert_mask": lt.alert.category_t.error_notification | extra_alerts,
    }
    settings.update(overrides)
    return lt.session(settings)
