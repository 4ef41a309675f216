//! MQTT plumbing shared by `vigil edge`, `vigil replay`, `vigil demo` and the tests: an embedded
//! broker (rumqttd), broker URLs, client options sized for Vigil's payloads, and a small
//! subscriber that hands messages over a channel.
//!
//! The embedded broker keeps everything in memory and lives until the process exits (rumqttd
//! has no shutdown). It accepts MQTT 3.1.1 on one TCP listener, without TLS or authentication:
//! bind it to loopback unless the network around it is trusted.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;
use vigil_core::telemetry::MAX_PAYLOAD_BYTES;

/// Largest MQTT packet a Vigil client sends or accepts: a maximal payload plus topic and header.
pub const MAX_PACKET_BYTES: usize = MAX_PAYLOAD_BYTES + 4 * 1024;
/// Connections the embedded broker accepts (a 2,500-device fleet and then some).
pub const MAX_CONNECTIONS: usize = 10_010;
/// Each filter's in-memory log: `SEGMENT_BYTES * SEGMENT_COUNT` bytes at most. A subscriber
/// that falls further behind than this (e.g. an edge down for long under heavy traffic) loses
/// the oldest messages.
const SEGMENT_BYTES: usize = 16 * 1024 * 1024;
const SEGMENT_COUNT: usize = 16;

/// A broker running in this process.
#[derive(Debug)]
pub struct EmbeddedBroker {
    addr: SocketAddr,
}

impl EmbeddedBroker {
    /// The address it listens on (the real port when started on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `mqtt://host:port`, for `--broker` and [`BrokerUrl::parse`].
    pub fn url(&self) -> String {
        format!("mqtt://{}", self.addr)
    }
}

/// The broker configuration: generous limits for payloads up to `MAX_PAYLOAD_BYTES`, thousands
/// of connections, QoS 1 and persistent sessions (rumqttd keeps a disconnected session's
/// subscriptions and position, and re-sends what was not acknowledged).
pub fn broker_config(addr: SocketAddr) -> rumqttd::Config {
    let connections = rumqttd::ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: MAX_PACKET_BYTES,
        max_inflight_count: 500,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = rumqttd::ServerSettings {
        name: "vigil-v4".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 0,
        connections,
    };
    rumqttd::Config {
        id: 0,
        router: rumqttd::RouterConfig {
            max_connections: MAX_CONNECTIONS,
            max_outgoing_packet_count: 1024,
            max_segment_size: SEGMENT_BYTES,
            max_segment_count: SEGMENT_COUNT,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some([("v4".to_string(), server)].into_iter().collect()),
        ..Default::default()
    }
}

/// Starts rumqttd on `addr` (port 0: a free port, see [`EmbeddedBroker::addr`]) and returns once
/// it accepts connections.
pub fn start_embedded(addr: SocketAddr) -> anyhow::Result<EmbeddedBroker> {
    start_embedded_with(addr, &[])
}

/// Like [`start_embedded`], and before the first connection is accepted, creates a persistent
/// QoS 1 session for each `(client_id, filter)`. What devices publish from the first moment is
/// then kept for that subscriber until it connects with `clean_session = false`: the edge, when
/// its process (and so the broker) restarts while devices are already sending, loses nothing
/// to the moment between the broker listening and the edge subscribing.
///
/// rumqttd cannot report the port it bound, so a free port is chosen here first by binding and
/// releasing it; another process could take it in between, which then fails the start.
pub fn start_embedded_with(
    addr: SocketAddr,
    sessions: &[(&str, &str)],
) -> anyhow::Result<EmbeddedBroker> {
    // Binding first both picks a port for port 0 and reports "address in use" clearly: rumqttd
    // would only log it from its thread.
    let addr = {
        let probe =
            TcpListener::bind(addr).with_context(|| format!("embedded broker: bind {addr}"))?;
        probe.local_addr()?
    };
    let config = broker_config(addr);
    let settings = config
        .v4
        .as_ref()
        .and_then(|v4| v4.values().next().cloned())
        .expect("one v4 server");
    // What `rumqttd::Broker::start` does, in two steps so that sessions exist before the
    // listener: the router first, then the server.
    let router_tx = rumqttd::Router::new(config.id, config.router.clone()).spawn();
    let sessions: Vec<(String, String)> = sessions
        .iter()
        .map(|(c, f)| (c.to_string(), f.to_string()))
        .collect();
    let (seeded_tx, seeded_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let thread = std::thread::Builder::new()
        .name("vigil-broker".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = seeded_tx.send(Err(format!("runtime: {e}")));
                    return;
                }
            };
            rt.block_on(async move {
                for (client_id, filter) in &sessions {
                    // An in-process link connects as `client_id` without a clean session,
                    // subscribes at QoS 1 and disconnects: the router keeps the session, and
                    // the filter's log from now on. (The router's channel type is private to
                    // rumqttd, hence this code inline rather than in a function.)
                    let seeded: anyhow::Result<()> = async {
                        let (mut tx, mut rx, _connack) =
                            rumqttd::local::LinkBuilder::new(client_id, router_tx.clone())
                                .clean_session(false)
                                .build()?;
                        tx.send(seed_subscribe(filter)).await?;
                        let deadline = Instant::now() + Duration::from_secs(5);
                        // The SUBACK.
                        while !matches!(
                            rx.recv_deadline(deadline)?,
                            Some(rumqttd::Notification::DeviceAck(_))
                        ) {}
                        tx.send(seed_disconnect()).await?;
                        Ok(())
                    }
                    .await;
                    if let Err(e) = seeded {
                        let _ = seeded_tx.send(Err(format!("session of {client_id}: {e}")));
                        return;
                    }
                }
                let _ = seeded_tx.send(Ok(()));
                let mut server =
                    rumqttd::Server::new(settings, router_tx, rumqttd::protocol::v4::V4);
                if let Err(e) = server.start(rumqttd::LinkType::Remote).await {
                    tracing::error!(error = %e, "embedded broker stopped");
                }
            });
        })
        .context("embedded broker: spawn thread")?;
    match seeded_rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => bail!("embedded broker: {e}"),
        Err(_) => bail!("embedded broker: no answer from its router within 10 s"),
    }
    // Wait until its listener is up. Not by binding the address (that could take it from the
    // broker) nor, where avoidable, by connecting (the broker logs the aborted connection).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let up = match is_listening(addr.port()) {
            Some(up) => up,
            None => std::net::TcpStream::connect_timeout(
                &SocketAddr::new(
                    if addr.ip().is_unspecified() {
                        std::net::Ipv4Addr::LOCALHOST.into()
                    } else {
                        addr.ip()
                    },
                    addr.port(),
                ),
                Duration::from_millis(200),
            )
            .is_ok(),
        };
        if up {
            break;
        }
        if thread.is_finished() {
            bail!("embedded broker on {addr} stopped at start (see the log)");
        }
        if Instant::now() > deadline {
            bail!("embedded broker on {addr} did not listen within 10 s");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    tracing::info!(%addr, "embedded MQTT broker listening");
    Ok(EmbeddedBroker { addr })
}

/// Whether a TCP socket listens on `port`, from `/proc/net/tcp{,6}` (`None` where unavailable).
fn is_listening(port: u16) -> Option<bool> {
    let mut readable = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        readable = true;
        let wanted = format!(":{port:04X}");
        // Columns: sl local_address rem_address st ...; st 0A is LISTEN.
        if text.lines().skip(1).any(|line| {
            let mut cols = line.split_whitespace().skip(1);
            let local = cols.next().unwrap_or("");
            let state = cols.nth(1).unwrap_or("");
            local.ends_with(&wanted) && state == "0A"
        }) {
            return Some(true);
        }
    }
    readable.then_some(false)
}

/// A QoS 1 subscription (`LinkTx::subscribe` of rumqttd asks for QoS 0).
fn seed_subscribe(filter: &str) -> rumqttd::protocol::Packet {
    use rumqttd::protocol::{Filter, Packet, QoS as BrokerQoS, RetainForwardRule, Subscribe};
    Packet::Subscribe(
        Subscribe {
            pkid: 1,
            filters: vec![Filter {
                path: filter.to_string(),
                qos: BrokerQoS::AtLeastOnce,
                nolocal: false,
                preserve_retain: false,
                retain_forward_rule: RetainForwardRule::Never,
            }],
        },
        None,
    )
}

fn seed_disconnect() -> rumqttd::protocol::Packet {
    use rumqttd::protocol::{Disconnect, DisconnectReasonCode, Packet};
    Packet::Disconnect(
        Disconnect {
            reason_code: DisconnectReasonCode::NormalDisconnection,
        },
        None,
    )
}

/// A broker address: `mqtt://host:port`, `tcp://host:port` or `host:port` (port 1883 if left
/// out). TLS brokers are not supported by this build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerUrl {
    pub host: String,
    pub port: u16,
}

impl BrokerUrl {
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let rest = match url.split_once("://") {
            Some(("mqtt" | "tcp", rest)) => rest,
            Some((scheme, _)) => {
                bail!("broker URL {url:?}: scheme {scheme:?} is not supported (use mqtt://host:port; TLS is not built in)")
            }
            None => url,
        };
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || rest.contains('/') || rest.contains('?') {
            bail!("broker URL {url:?}: expected mqtt://host:port");
        }
        let (host, port) = match rest.rsplit_once(':') {
            // An IPv6 literal in brackets: [::1]:1883.
            Some((h, p)) if !h.ends_with(':') => (
                h,
                p.parse::<u16>()
                    .with_context(|| format!("broker URL {url:?}: bad port {p:?}"))?,
            ),
            _ => (rest, 1883),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            bail!("broker URL {url:?}: no host");
        }
        Ok(Self {
            host: host.to_string(),
            port,
        })
    }

    /// Resolves the address, e.g. to check that nothing else runs an embedded broker there.
    pub fn socket_addr(&self) -> anyhow::Result<SocketAddr> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()?
            .next()
            .with_context(|| format!("{}:{} does not resolve", self.host, self.port))
    }
}

impl std::fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "mqtt://{}:{}", self.host, self.port)
    }
}

/// Client options for Vigil: packets up to [`MAX_PACKET_BYTES`], a 30 s keep-alive.
pub fn client_options(client_id: &str, broker: &BrokerUrl) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, broker.host.clone(), broker.port);
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
    options
}

/// A client and its event loop, with Nagle's algorithm off: acknowledgements and small
/// telemetry messages go out at once instead of waiting for the peer's delayed ACK (~40 ms).
pub fn client(options: MqttOptions, capacity: usize) -> (AsyncClient, EventLoop) {
    let (client, mut eventloop) = AsyncClient::new(options, capacity);
    let mut network = eventloop.network_options();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
    (client, eventloop)
}

/// A message received by a [`Subscriber`].
#[derive(Clone, Debug)]
pub struct Received {
    pub topic: String,
    pub payload: Vec<u8>,
    pub at: Instant,
}

/// A clean-session QoS 1 subscriber whose messages arrive on a channel. Dropping it ends it.
#[derive(Debug)]
pub struct Subscriber {
    pub client: AsyncClient,
    pub messages: mpsc::UnboundedReceiver<Received>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscriber {
    /// Connects, subscribes to `filters` and returns once the broker acknowledged them, so
    /// nothing published afterwards on those filters is missed.
    pub async fn connect(
        broker: &BrokerUrl,
        client_id: &str,
        filters: &[&str],
    ) -> anyhow::Result<Self> {
        let (client, mut eventloop) = client(client_options(client_id, broker), 256);
        for f in filters {
            client.subscribe(*f, QoS::AtLeastOnce).await?;
        }
        let mut remaining = filters.len();
        let deadline = Instant::now() + Duration::from_secs(10);
        while remaining > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, eventloop.poll()).await {
                Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => remaining -= 1,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => bail!("subscriber {client_id}: connecting to {broker}: {e}"),
                Err(_) => bail!("subscriber {client_id}: no SUBACK from {broker} within 10 s"),
            }
        }
        let (tx, messages) = mpsc::unbounded_channel();
        let task = tokio::spawn(forward(eventloop, tx));
        Ok(Self {
            client,
            messages,
            task,
        })
    }

    /// The next message, or `None` after `timeout`.
    pub async fn recv_timeout(&mut self, timeout: Duration) -> Option<Received> {
        tokio::time::timeout(timeout, self.messages.recv())
            .await
            .ok()
            .flatten()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(mut eventloop: EventLoop, tx: mpsc::UnboundedSender<Received>) {
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let message = Received {
                    topic: p.topic.clone(),
                    payload: p.payload.to_vec(),
                    at: Instant::now(),
                };
                if tx.send(message).is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "subscriber connection; reconnecting");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Topic filter the edge subscribes to.
pub const TELEMETRY_FILTER: &str = "dt/vigil/+/telemetry";

/// `dt/vigil/{thing}/alerts`: alert transitions.
pub fn alerts_topic(device: &str) -> String {
    format!("dt/vigil/{device}/alerts")
}

/// `dt/vigil/{thing}/rejected`: messages the pipeline refused, with the reason.
pub fn rejected_topic(device: &str) -> String {
    format!("dt/vigil/{device}/rejected")
}

/// `$aws/things/{thing}/shadow/name/condition/update`: the named shadow update, as on AWS IoT.
pub fn shadow_update_topic(device: &str) -> String {
    format!(
        "$aws/things/{device}/shadow/name/{}/update",
        vigil_core::telemetry::CONDITION_SHADOW
    )
}

/// A thing name from `dt/vigil/{thing}/{kind}` (for subscribers of results and alerts).
pub fn thing_of(topic: &str) -> Option<&str> {
    let mut parts = topic.split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("dt"), Some("vigil"), Some(thing)) => Some(thing),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_broker_urls() {
        let u = BrokerUrl::parse("mqtt://127.0.0.1:1884").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 1884));
        let u = BrokerUrl::parse("tcp://broker.local").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("broker.local", 1883));
        let u = BrokerUrl::parse("localhost:2000/").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("localhost", 2000));
        let u = BrokerUrl::parse("mqtt://[::1]:1885").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 1885));
        assert!(BrokerUrl::parse("mqtts://x:8883").is_err());
        assert!(BrokerUrl::parse("mqtt://x:notaport").is_err());
        assert!(BrokerUrl::parse("mqtt://").is_err());
        assert_eq!(thing_of("dt/vigil/rig-001/condition"), Some("rig-001"));
    }
}
