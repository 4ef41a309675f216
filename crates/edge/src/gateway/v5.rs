//! MQTT 5 devices at the gateway. The same per-device policy as for MQTT 3.1.1 (the thing comes
//! from the certificate), applied to packets parsed with rumqttc's MQTT 5 codec, with what v5
//! adds:
//! - a refused CONNECT is answered with a v5 CONNACK reason code, as IoT Core does:
//!   0x85 Client identifier not valid (empty client id), 0x87 Not authorized (another thing's
//!   client id, a will on a topic the thing may not publish to), 0x8C Bad authentication method
//!   (enhanced authentication), 0x81 Malformed packet;
//! - after CONNECT, a violation ends the connection with a v5 DISCONNECT naming why (0x87 for a
//!   topic the policy denies, 0x94 for a topic alias never set, 0x82 for a packet out of order);
//! - topic aliases: a PUBLISH may name its topic by an alias set by an earlier PUBLISH on the
//!   same connection; the policy is checked on the topic the alias stands for;
//! - the broker is not offered topic aliases towards the device (the CONNECT's Topic Alias
//!   Maximum is left out towards it), so every PUBLISH it delivers names its topic;
//! - session expiry: the broker (rumqttd) keeps a persistent session until a clean connect, so
//!   the gateway ends it: when a v5 connection with `clean_start = false` ends and its thing has
//!   not connected again within the Session Expiry Interval (0 when absent, capped at IoT Core's
//!   default maximum of one hour), the gateway connects to the broker once as that thing with a
//!   clean start, which drops the session and what was queued for it.
//!
//! Packets that pass are forwarded byte for byte, as for v4; what the broker sends goes back
//! whole packet by whole packet, so that a final DISCONNECT never lands inside another packet.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::v5::mqttbytes::v5::{
    ConnAck, ConnAckProperties, Connect, ConnectReturnCode, Disconnect, DisconnectProperties,
    DisconnectReasonCode, Packet,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{
    publish_route, relay, renamed_filters, Checker, DevicePolicy, Ended, Framer, GatewayCounters,
    IngestSink, Route, Violation, HANDSHAKE_TIMEOUT,
};
use vigil_mqtt::MAX_PACKET_BYTES;

/// The longest session the gateway lets a device keep after it disconnects (IoT Core's default
/// persistent session expiry).
pub const MAX_SESSION_EXPIRY: Duration = Duration::from_secs(3600);

fn parse(raw: &BytesMut) -> Result<Packet, Violation> {
    Packet::read(&mut raw.clone(), Some(MAX_PACKET_BYTES as u32))
        .map_err(|e| Violation::Malformed(format!("{e:?}")))
}

/// The policy for one v5 connection: the thing's [`DevicePolicy`] plus the topic aliases the
/// device has set so far.
#[derive(Debug)]
pub struct V5Policy<'p> {
    policy: &'p DevicePolicy,
    aliases: HashMap<u16, String>,
    connected: bool,
}

impl<'p> V5Policy<'p> {
    pub fn new(policy: &'p DevicePolicy) -> Self {
        Self {
            policy,
            aliases: HashMap::new(),
            connected: false,
        }
    }

    /// Whether the packet may pass (and, for a PUBLISH that sets an alias, records it).
    pub fn check(&mut self, packet: &Packet) -> Result<(), Violation> {
        self.checked_topic(packet).map(|_| ())
    }

    /// [`Self::check`], giving a PUBLISH's topic (the one its alias stands for, if it has one).
    pub fn checked_topic(&mut self, packet: &Packet) -> Result<Option<String>, Violation> {
        match packet {
            Packet::Connect(..) if self.connected => return Err(Violation::Reconnect),
            Packet::Connect(connect, will, _login) => {
                if connect
                    .properties
                    .as_ref()
                    .is_some_and(|p| p.authentication_method.is_some())
                {
                    return Err(Violation::Unsupported("enhanced authentication"));
                }
                self.policy.check_client_id(&connect.client_id)?;
                if let Some(will) = will {
                    let topic = String::from_utf8_lossy(&will.topic);
                    if !self.policy.may_publish(&topic) {
                        return Err(Violation::Will(topic.into_owned()));
                    }
                }
                self.connected = true;
                return Ok(None);
            }
            other if !self.connected => return Err(Violation::NotConnected(name(other))),
            Packet::Publish(publish) => {
                let topic = std::str::from_utf8(&publish.topic)
                    .map_err(|_| Violation::Malformed("PUBLISH topic is not UTF-8".into()))?;
                let alias = publish.properties.as_ref().and_then(|p| p.topic_alias);
                let topic = match (topic.is_empty(), alias) {
                    (true, Some(alias)) => self
                        .aliases
                        .get(&alias)
                        .cloned()
                        .ok_or(Violation::TopicAlias(alias))?,
                    (true, None) => return Err(Violation::Publish(String::new())),
                    (false, _) => topic.to_string(),
                };
                if !self.policy.may_publish(&topic) {
                    return Err(Violation::Publish(topic));
                }
                if let Some(alias) = alias {
                    self.aliases.insert(alias, topic.clone());
                }
                return Ok(Some(topic));
            }
            Packet::Subscribe(subscribe) => {
                if let Some(f) = subscribe
                    .filters
                    .iter()
                    .find(|f| !self.policy.may_subscribe(&f.path))
                {
                    return Err(Violation::Subscribe(f.path.clone()));
                }
            }
            Packet::Auth(_) => return Err(Violation::Unsupported("enhanced authentication")),
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp(_) => {
                return Err(Violation::ServerPacket(name(packet)))
            }
            _ => {}
        }
        Ok(None)
    }
}

/// The MQTT 5 side of [`Checker`].
struct V5Checker<'p> {
    policy: V5Policy<'p>,
    ingest: bool,
}

impl Checker for V5Checker<'_> {
    fn route(&mut self, raw: BytesMut) -> Result<Route, Violation> {
        let packet = parse(&raw)?;
        let topic = self.policy.checked_topic(&packet)?;
        let reencode = |packet: Packet| Ok(Route::Broker(encode(&packet)));
        match packet {
            Packet::Publish(p) => publish_route(
                raw,
                topic.as_deref().unwrap_or_default(),
                p.qos as u8,
                p.payload,
                self.ingest,
            ),
            Packet::Subscribe(mut s) => {
                if renamed_filters(s.filters.iter_mut().map(|f| &mut f.path))? {
                    reencode(Packet::Subscribe(s))
                } else {
                    Ok(Route::Broker(raw))
                }
            }
            Packet::Unsubscribe(mut u) => {
                if renamed_filters(u.filters.iter_mut())? {
                    reencode(Packet::Unsubscribe(u))
                } else {
                    Ok(Route::Broker(raw))
                }
            }
            _ => Ok(Route::Broker(raw)),
        }
    }

    fn farewell(&self, violation: &Violation) -> Option<BytesMut> {
        Some(farewell(
            disconnect_code(violation),
            Some(violation.to_string()),
        ))
    }
}

fn name(packet: &Packet) -> &'static str {
    match packet {
        Packet::Auth(_) => "AUTH",
        Packet::Connect(..) => "CONNECT",
        Packet::ConnAck(_) => "CONNACK",
        Packet::Publish(_) => "PUBLISH",
        Packet::PubAck(_) => "PUBACK",
        Packet::PingReq(_) => "PINGREQ",
        Packet::PingResp(_) => "PINGRESP",
        Packet::Subscribe(_) => "SUBSCRIBE",
        Packet::SubAck(_) => "SUBACK",
        Packet::PubRec(_) => "PUBREC",
        Packet::PubRel(_) => "PUBREL",
        Packet::PubComp(_) => "PUBCOMP",
        Packet::Unsubscribe(_) => "UNSUBSCRIBE",
        Packet::UnsubAck(_) => "UNSUBACK",
        Packet::Disconnect(_) => "DISCONNECT",
    }
}

/// The CONNACK reason code for a refused CONNECT.
pub fn connack_code(violation: &Violation) -> ConnectReturnCode {
    match violation {
        Violation::ClientId { got, .. } if got.is_empty() => {
            ConnectReturnCode::ClientIdentifierNotValid
        }
        Violation::Malformed(_) => ConnectReturnCode::MalformedPacket,
        Violation::Unsupported(_) => ConnectReturnCode::BadAuthenticationMethod,
        _ => ConnectReturnCode::NotAuthorized,
    }
}

/// The DISCONNECT reason code for a violation after CONNECT.
pub fn disconnect_code(violation: &Violation) -> DisconnectReasonCode {
    match violation {
        Violation::Publish(_) | Violation::Subscribe(_) | Violation::Will(_) => {
            DisconnectReasonCode::NotAuthorized
        }
        Violation::TopicAlias(_) => DisconnectReasonCode::TopicAliasInvalid,
        Violation::Retained(_) => DisconnectReasonCode::RetainNotSupported,
        Violation::Malformed(_) => DisconnectReasonCode::MalformedPacket,
        Violation::Unsupported(_) => DisconnectReasonCode::ImplementationSpecificError,
        _ => DisconnectReasonCode::ProtocolError,
    }
}

fn encode(packet: &Packet) -> BytesMut {
    let mut out = BytesMut::new();
    // Our own small packets: encoding cannot exceed the limit.
    let _ = packet.write(&mut out, None);
    out
}

fn refusal(code: ConnectReturnCode) -> BytesMut {
    encode(&Packet::ConnAck(ConnAck {
        session_present: false,
        code,
        properties: None,
    }))
}

/// A DISCONNECT with `code` and, as its Reason String, why. (Always with properties: rumqttc
/// 0.25 encodes a non-normal reason code without properties one byte longer than its length.)
fn farewell(code: DisconnectReasonCode, why: Option<String>) -> BytesMut {
    let properties =
        (code != DisconnectReasonCode::NormalDisconnection).then(|| DisconnectProperties {
            session_expiry_interval: None,
            reason_string: why,
            user_properties: Vec::new(),
            server_reference: None,
        });
    encode(&Packet::Disconnect(Disconnect {
        reason_code: code,
        properties,
    }))
}

/// How long the broker should keep this CONNECT's session after the connection ends: `None`
/// for a clean start (nothing to keep; rumqttd drops it itself).
pub fn session_expiry(connect: &Connect) -> Option<Duration> {
    if connect.clean_start {
        return None;
    }
    let secs = connect
        .properties
        .as_ref()
        .and_then(|p| p.session_expiry_interval)
        .unwrap_or(0);
    Some(Duration::from_secs(secs.into()).min(MAX_SESSION_EXPIRY))
}

/// The Session Expiry Interval the CONNACK must announce (MQTT 5 §3.2.2.3.2: only when the
/// server uses another value than the client asked for): the capped one, or 0 for a clean
/// start (the broker ends such a session with its connection).
pub fn announced_expiry(connect: &Connect) -> Option<u32> {
    let asked = connect
        .properties
        .as_ref()
        .and_then(|p| p.session_expiry_interval)
        .unwrap_or(0);
    let used = session_expiry(connect).map_or(0, |d| d.as_secs() as u32);
    (used != asked).then_some(used)
}

/// The broker's CONNACK frame with the Session Expiry Interval the gateway grants. A frame
/// that does not parse goes through unchanged (the device then sees what the broker sent).
pub fn with_session_expiry(frame: BytesMut, secs: u32) -> BytesMut {
    match parse(&frame) {
        Ok(Packet::ConnAck(mut ack)) => {
            ack.properties
                .get_or_insert_with(|| ConnAckProperties {
                    session_expiry_interval: None,
                    receive_max: None,
                    max_qos: None,
                    retain_available: None,
                    max_packet_size: None,
                    assigned_client_identifier: None,
                    topic_alias_max: None,
                    reason_string: None,
                    user_properties: Vec::new(),
                    wildcard_subscription_available: None,
                    subscription_identifiers_available: None,
                    shared_subscription_available: None,
                    server_keep_alive: None,
                    response_information: None,
                    server_reference: None,
                    authentication_method: None,
                    authentication_data: None,
                })
                .session_expiry_interval = Some(secs);
            encode(&Packet::ConnAck(ack))
        }
        _ => frame,
    }
}

/// Admits a v5 device whose first packet is `connect_raw`, then relays it like the v4 path.
/// Sets `expiry` to the session expiry to apply when the connection has ended.
pub(super) async fn admit<R, W>(
    connect_raw: BytesMut,
    packets: Framer<R>,
    mut device_tx: W,
    policy: &DevicePolicy,
    broker: &(String, u16),
    ingest: Option<&IngestSink>,
    expiry: &mut Option<Duration>,
) -> Result<(), Ended>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut v5 = V5Policy::new(policy);
    let checked = parse(&connect_raw).and_then(|packet| {
        v5.check(&packet)?;
        Ok(packet)
    });
    let (connect, connect_raw) = match checked {
        Ok(Packet::Connect(mut connect, will, login)) => {
            // The broker must name every topic it delivers, so that the gateway can rename
            // `$aws/` topics back and hold each to the policy's Receive: no broker-side aliases
            // (a server need not use them; the device still may, towards the broker).
            let asked_aliases = connect
                .properties
                .as_mut()
                .and_then(|p| p.topic_alias_max.take().filter(|max| *max > 0));
            let raw = match asked_aliases {
                Some(_) => encode(&Packet::Connect(connect.clone(), will, login)),
                None => connect_raw,
            };
            (connect, raw)
        }
        Ok(other) => Err(Violation::NotConnected(name(&other)))?,
        Err(violation) => {
            let _ = device_tx
                .write_all(&refusal(connack_code(&violation)))
                .await;
            let _ = device_tx.shutdown().await;
            return Err(violation.into());
        }
    };
    let mut upstream = TcpStream::connect((broker.0.as_str(), broker.1)).await?;
    let _ = upstream.set_nodelay(true);
    upstream.write_all(&connect_raw).await?;
    *expiry = session_expiry(&connect);
    let checker = V5Checker {
        policy: v5,
        ingest: ingest.is_some(),
    };
    let announced = announced_expiry(&connect);
    relay(
        packets, device_tx, upstream, checker, policy, ingest, announced,
    )
    .await
}

/// Connections per thing, so that a session is expired only when its thing has not connected
/// again since (over either MQTT version).
#[derive(Debug, Default)]
pub struct Sessions {
    things: Mutex<HashMap<String, Thing>>,
}

#[derive(Debug, Default)]
struct Thing {
    /// Bumped by every connection of the thing.
    generation: u64,
    live: usize,
}

/// One admitted connection of a thing, from [`Sessions::begin`].
#[derive(Debug)]
pub struct Ticket {
    thing: String,
    generation: u64,
}

impl Sessions {
    pub fn begin(&self, thing: &str) -> Ticket {
        let mut things = self.things.lock().unwrap_or_else(|e| e.into_inner());
        let entry = things.entry(thing.to_string()).or_default();
        entry.generation += 1;
        entry.live += 1;
        Ticket {
            thing: thing.to_string(),
            generation: entry.generation,
        }
    }

    /// Whether `ticket` is still the thing's latest connection and none is open.
    fn is_idle_since(&self, ticket: &Ticket) -> bool {
        let things = self.things.lock().unwrap_or_else(|e| e.into_inner());
        things
            .get(&ticket.thing)
            .is_some_and(|t| t.generation == ticket.generation && t.live == 0)
    }

    /// The connection of `ticket` has ended; with `expiry`, its session is ended after that long
    /// unless the thing connects again first.
    pub fn end(
        self: &Arc<Self>,
        ticket: Ticket,
        expiry: Option<Duration>,
        broker: (String, u16),
        counters: Arc<GatewayCounters>,
    ) {
        {
            let mut things = self.things.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(t) = things.get_mut(&ticket.thing) {
                t.live = t.live.saturating_sub(1);
            }
        }
        let Some(expiry) = expiry else { return };
        let sessions = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(expiry).await;
            if !sessions.is_idle_since(&ticket) {
                return;
            }
            match end_session(&ticket.thing, &broker).await {
                Ok(()) => {
                    counters.sessions_expired.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(thing = %ticket.thing, "gateway: MQTT 5 session expired");
                }
                Err(e) => {
                    tracing::warn!(thing = %ticket.thing, error = %e, "gateway: ending an expired session")
                }
            }
        });
    }
}

/// Connects to the broker as `thing` with a clean start and leaves: rumqttd then forgets the
/// thing's session (subscriptions and queued messages).
async fn end_session(thing: &str, broker: &(String, u16)) -> std::io::Result<()> {
    let connect = Packet::Connect(
        Connect {
            keep_alive: 10,
            client_id: thing.to_string(),
            clean_start: true,
            properties: None,
        },
        None,
        None,
    );
    let mut stream = TcpStream::connect((broker.0.as_str(), broker.1)).await?;
    stream.write_all(&encode(&connect)).await?;
    let (rx, mut tx) = stream.into_split();
    let mut frames = Framer::new(rx);
    let connack = tokio::time::timeout(HANDSHAKE_TIMEOUT, frames.next_frame())
        .await
        .map_err(|_| std::io::Error::other("no CONNACK within the handshake timeout"))?
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    if connack.is_none() {
        return Err(std::io::Error::other("broker closed before CONNACK"));
    }
    tx.write_all(&farewell(DisconnectReasonCode::NormalDisconnection, None))
        .await?;
    tx.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::v5::mqttbytes::v5::{
        ConnectProperties, Filter, LastWill, Publish, PublishProperties, Subscribe,
    };
    use rumqttc::v5::mqttbytes::QoS;
    use vigil_core::DeviceId;

    fn policy() -> DevicePolicy {
        DevicePolicy::new(&DeviceId::new("rig-001").unwrap())
    }

    fn connect(id: &str, will: Option<&str>) -> Packet {
        Packet::Connect(
            Connect {
                keep_alive: 30,
                client_id: id.into(),
                clean_start: false,
                properties: Some(ConnectProperties {
                    session_expiry_interval: Some(7200),
                    ..ConnectProperties::new()
                }),
            },
            will.map(|t| LastWill::new(t, "gone", QoS::AtMostOnce, false, None)),
            None,
        )
    }

    fn publish(topic: &str, alias: Option<u16>) -> Packet {
        let properties = alias.map(|a| PublishProperties {
            topic_alias: Some(a),
            ..Default::default()
        });
        let mut p = Publish::new(topic, QoS::AtLeastOnce, b"{}".to_vec(), properties);
        p.pkid = 1;
        Packet::Publish(p)
    }

    #[test]
    fn a_v5_device_connects_as_itself_and_aliases_resolve_to_its_own_topics() {
        let p = policy();
        let mut v5 = V5Policy::new(&p);
        assert_eq!(v5.check(&connect("rig-001", None)), Ok(()));
        assert_eq!(
            v5.check(&publish("dt/vigil/rig-001/telemetry", Some(3))),
            Ok(())
        );
        assert_eq!(v5.check(&publish("", Some(3))), Ok(()));
        let subscribe = Packet::Subscribe(Subscribe::new(
            Filter::new("dt/vigil/rig-001/condition", QoS::AtLeastOnce),
            None,
        ));
        assert_eq!(v5.check(&subscribe), Ok(()));
    }

    #[test]
    fn v5_violations_carry_the_reason_codes_iot_core_sends() {
        let p = policy();
        let refused = |packet: Packet| V5Policy::new(&p).check(&packet).unwrap_err();
        let other = refused(connect("rig-002", None));
        assert_eq!(connack_code(&other), ConnectReturnCode::NotAuthorized);
        let empty = refused(connect("", None));
        assert_eq!(
            connack_code(&empty),
            ConnectReturnCode::ClientIdentifierNotValid
        );
        let will = refused(connect("rig-001", Some("dt/vigil/rig-002/telemetry")));
        assert_eq!(will, Violation::Will("dt/vigil/rig-002/telemetry".into()));
        assert_eq!(connack_code(&will), ConnectReturnCode::NotAuthorized);

        let mut v5 = V5Policy::new(&p);
        v5.check(&connect("rig-001", None)).unwrap();
        // An alias set for an allowed topic cannot be re-pointed at a forbidden one.
        v5.check(&publish("dt/vigil/rig-001/telemetry", Some(1)))
            .unwrap();
        let repointed = v5
            .check(&publish("dt/vigil/rig-002/telemetry", Some(1)))
            .unwrap_err();
        assert_eq!(
            disconnect_code(&repointed),
            DisconnectReasonCode::NotAuthorized
        );
        assert_eq!(v5.check(&publish("", Some(1))), Ok(()));
        let unknown = v5.check(&publish("", Some(9))).unwrap_err();
        assert_eq!(unknown, Violation::TopicAlias(9));
        assert_eq!(
            disconnect_code(&unknown),
            DisconnectReasonCode::TopicAliasInvalid
        );
        assert_eq!(
            v5.check(&connect("rig-001", None)),
            Err(Violation::Reconnect)
        );
    }

    #[test]
    fn session_expiry_is_the_devices_capped_at_an_hour_and_none_for_a_clean_start() {
        let Packet::Connect(mut c, ..) = connect("rig-001", None) else {
            unreachable!()
        };
        assert_eq!(session_expiry(&c), Some(MAX_SESSION_EXPIRY));
        c.properties = None;
        assert_eq!(session_expiry(&c), Some(Duration::ZERO));
        c.clean_start = true;
        assert_eq!(session_expiry(&c), None);
    }
}
