//! The embedded MQTT broker (rumqttd) of `vigil edge`, `vigil demo` and the tests. Clients,
//! broker URLs and topics are in `vigil_mqtt`.
//!
//! The embedded broker keeps everything in memory and lives until the process exits (rumqttd
//! has no shutdown). It accepts MQTT 3.1.1 and MQTT 5 on one TCP listener (each connection's
//! CONNECT says which, see [`AnyVersion`]), without TLS or authentication: bind it to loopback
//! unless the network around it is trusted. v4 and v5 clients share one rumqttd router, so a
//! message published over either reaches subscribers of both.

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use vigil_mqtt::MAX_PACKET_BYTES;

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

    /// `mqtt://host:port`, for `--broker` and [`vigil_mqtt::BrokerUrl::parse`].
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
        name: "vigil".into(),
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
                let mut server = rumqttd::Server::new(settings, router_tx, AnyVersion::default());
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

/// The MQTT version of one broker connection, chosen by its CONNECT: rumqttd serves one
/// protocol per listener and clones this per connection, so one port speaks both.
#[derive(Clone, Debug, Default)]
pub struct AnyVersion {
    v5: Option<bool>,
}

impl rumqttd::protocol::Protocol for AnyVersion {
    fn read_mut(
        &mut self,
        stream: &mut bytes::BytesMut,
        max_size: usize,
    ) -> Result<rumqttd::protocol::Packet, rumqttd::protocol::Error> {
        use rumqttd::protocol::{v4::V4, v5::V5};
        if self.v5.is_none() {
            // Until the CONNECT's protocol level is in the buffer, V4 reads: it reports too few
            // bytes, or refuses a first packet that is not a CONNECT as the broker always did.
            self.v5 = connect_protocol_level(stream).map(|level| level == 5);
        }
        match self.v5 {
            Some(true) => V5.read_mut(stream, max_size),
            _ => V4.read_mut(stream, max_size),
        }
    }

    fn write(
        &self,
        packet: rumqttd::protocol::Packet,
        write: &mut bytes::BytesMut,
    ) -> Result<usize, rumqttd::protocol::Error> {
        use rumqttd::protocol::{v4::V4, v5::V5};
        match self.v5 {
            Some(true) => V5.write(packet, write),
            _ => V4.write(without_properties(packet), write),
        }
    }
}

/// `packet` as MQTT 3.1.1 can carry it. What a v5 client published keeps its v5 properties in
/// the router (user properties, content type, ...), and rumqttd's V4 encoder panics on a packet
/// with properties: without this, one v5 publisher cut off every v4 subscriber of its topic.
fn without_properties(packet: rumqttd::protocol::Packet) -> rumqttd::protocol::Packet {
    use rumqttd::protocol::Packet as P;
    match packet {
        P::Connect(c, _, will, _, login) => P::Connect(c, None, will, None, login),
        P::ConnAck(a, _) => P::ConnAck(a, None),
        P::Publish(p, _) => P::Publish(p, None),
        P::PubAck(a, _) => P::PubAck(a, None),
        P::Subscribe(s, _) => P::Subscribe(s, None),
        P::SubAck(a, _) => P::SubAck(a, None),
        P::PubRec(r, _) => P::PubRec(r, None),
        P::PubRel(r, _) => P::PubRel(r, None),
        P::PubComp(c, _) => P::PubComp(c, None),
        P::Unsubscribe(u, _) => P::Unsubscribe(u, None),
        P::UnsubAck(a, _) => P::UnsubAck(a, None),
        P::Disconnect(d, _) => P::Disconnect(d, None),
        other @ (P::PingReq(_) | P::PingResp(_)) => other,
    }
}

/// The protocol level of the CONNECT at the start of `frame` (4: MQTT 3.1.1, 5: MQTT 5), or
/// `None` when `frame` does not start with a CONNECT or is too short to tell.
pub fn connect_protocol_level(frame: &[u8]) -> Option<u8> {
    if frame.first()? >> 4 != 1 {
        return None;
    }
    // The remaining length: 1 to 4 bytes, 7 bits each, high bit = more.
    let mut at = 1;
    loop {
        let byte = *frame.get(at)?;
        at += 1;
        if byte & 0x80 == 0 {
            break;
        }
        if at > 4 {
            return None;
        }
    }
    let name_len = u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]) as usize;
    frame.get(at + 2 + name_len).copied()
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
