//! One admitted device connection, carried between the device and the broker: each packet the
//! device sends held to its policy ([`Checker`], MQTT 3.1.1 here and 5 in [`super::v5`]) and
//! routed (to the broker, `$aws/` topics renamed, or Basic Ingest to the rule sink), each packet
//! the broker sends renamed back and held to the policy's Receive.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rumqttc::Packet;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use vigil_mqtt::MAX_PACKET_BYTES;

use super::{parse_v4, topics, v5, DevicePolicy, Ended, Framer, Violation, HANDSHAKE_TIMEOUT};

/// A Basic Ingest message, for the rule it names (`$aws/rules/<rule>/<topic>`): what the
/// gateway hands its rule sink instead of the broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngestMessage {
    /// The certificate's thing.
    pub thing: String,
    /// The topic as published (`$aws/rules/...`).
    pub topic: String,
    pub payload: Bytes,
}

/// Where Basic Ingest messages go (a bounded channel: a full one holds the device's PUBACK
/// back, which is IoT Core's throttling in small).
pub type IngestSink = mpsc::Sender<IngestMessage>;

/// Where a checked device packet goes.
#[derive(Debug)]
pub(super) enum Route {
    Broker(BytesMut),
    /// A Basic Ingest publish, acknowledged by the gateway when `pkid` is set (QoS 1).
    Ingest {
        topic: String,
        payload: Bytes,
        pkid: Option<u16>,
    },
}

/// How one connection's packets are held to the policy and routed (MQTT 3.1.1 or 5).
pub(super) trait Checker {
    fn route(&mut self, raw: BytesMut) -> Result<Route, Violation>;
    /// What the device is told when a violation ends the connection.
    fn farewell(&self, violation: &Violation) -> Option<BytesMut>;
}

/// A PUBLISH whose policy-checked topic is `topic` (an alias resolved): to the rule sink for
/// Basic Ingest when there is one, else to the broker with `$aws/` topics renamed.
pub(super) fn publish_route(
    raw: BytesMut,
    topic: &str,
    qos: u8,
    payload: Bytes,
    ingest: bool,
) -> Result<Route, Violation> {
    if raw.first().is_some_and(|b| b & 1 == 1) && topics::is_reserved(topic) {
        return Err(Violation::Retained(topic.to_string()));
    }
    if ingest && topics::is_basic_ingest(topic) {
        if qos > 1 {
            return Err(Violation::Unsupported("QoS 2 (IoT Core has none)"));
        }
        let pkid = if qos == 1 {
            topics::publish_pkid(&raw)
        } else {
            None
        };
        return Ok(Route::Ingest {
            topic: topic.to_string(),
            payload,
            pkid,
        });
    }
    // The frame's own topic, which is empty when a v5 alias stands for it (the broker resolves
    // the alias to what it was set to: the renamed topic).
    match topics::publish_topic(&raw).and_then(topics::to_broker) {
        Some(renamed) => topics::with_topic(&raw, &renamed)
            .map(Route::Broker)
            .ok_or_else(|| Violation::Malformed("PUBLISH frame".into())),
        None => Ok(Route::Broker(raw)),
    }
}

/// Renames the `$aws/` filters among `filters` for the broker; whether there was one. A filter
/// whose broker name would not fit MQTT's 65,535-byte string is refused: the codecs would write
/// its length cut to 16 bits, and the broker would read the rest of it as further filters the
/// policy never saw.
pub(super) fn renamed_filters<'a>(
    filters: impl Iterator<Item = &'a mut String>,
) -> Result<bool, Violation> {
    let mut any = false;
    for f in filters {
        if let Some(renamed) = topics::to_broker(f) {
            if renamed.len() > usize::from(u16::MAX) {
                return Err(Violation::Subscribe(f.clone()));
            }
            *f = renamed;
            any = true;
        }
    }
    Ok(any)
}

/// The MQTT 3.1.1 side of [`Checker`].
pub(super) struct V4<'p> {
    pub(super) policy: &'p DevicePolicy,
    pub(super) connected: bool,
    pub(super) ingest: bool,
}

impl Checker for V4<'_> {
    fn route(&mut self, raw: BytesMut) -> Result<Route, Violation> {
        let packet = parse_v4(&raw)?;
        self.policy.check(&packet, self.connected)?;
        self.connected |= matches!(packet, Packet::Connect(_));
        let reencode = |packet: Packet| {
            let mut out = BytesMut::new();
            packet
                .write(&mut out, MAX_PACKET_BYTES)
                .map(|_| Route::Broker(out))
                .map_err(|e| Violation::Malformed(format!("{e:?}")))
        };
        match packet {
            Packet::Publish(p) => publish_route(raw, &p.topic, p.qos as u8, p.payload, self.ingest),
            Packet::Subscribe(mut s) => {
                if renamed_filters(s.filters.iter_mut().map(|f| &mut f.path))? {
                    reencode(Packet::Subscribe(s))
                } else {
                    Ok(Route::Broker(raw))
                }
            }
            Packet::Unsubscribe(mut u) => {
                if renamed_filters(u.topics.iter_mut())? {
                    reencode(Packet::Unsubscribe(u))
                } else {
                    Ok(Route::Broker(raw))
                }
            }
            _ => Ok(Route::Broker(raw)),
        }
    }

    fn farewell(&self, _violation: &Violation) -> Option<BytesMut> {
        None // MQTT 3.1.1 has no server DISCONNECT: the connection is closed
    }
}

/// The device's first packet must be an allowed CONNECT before the broker hears of the
/// connection at all; then [`relay`] carries it. An MQTT 5 CONNECT goes to [`v5::admit`], which
/// sets `expiry` to how long the session outlives the connection.
pub(super) async fn admit<D>(
    device: D,
    policy: &DevicePolicy,
    broker: &(String, u16),
    ingest: Option<&IngestSink>,
    expiry: &mut Option<Duration>,
) -> Result<(), Ended>
where
    D: AsyncRead + AsyncWrite + Unpin,
{
    let (device_rx, device_tx) = tokio::io::split(device);
    let mut packets = Framer::new(device_rx);
    let Ok(first) = tokio::time::timeout(HANDSHAKE_TIMEOUT, packets.next_frame()).await else {
        return Ok(()); // silent client: nothing reached the broker
    };
    let Some(raw) = first? else {
        return Ok(());
    };
    if crate::broker::connect_protocol_level(&raw) == Some(5) {
        return v5::admit(raw, packets, device_tx, policy, broker, ingest, expiry).await;
    }
    let mut checker = V4 {
        policy,
        connected: false,
        ingest: ingest.is_some(),
    };
    let Route::Broker(connect) = checker.route(raw)? else {
        return Err(Violation::NotConnected("PUBLISH").into());
    };
    let mut upstream = TcpStream::connect((broker.0.as_str(), broker.1)).await?;
    let _ = upstream.set_nodelay(true);
    upstream.write_all(&connect).await?;
    relay(packets, device_tx, upstream, checker, policy, ingest, None).await
}

/// What goes to the device besides the broker's packets.
enum ToDevice {
    /// A packet of the gateway's own (a Basic Ingest PUBACK).
    Packet(BytesMut),
    /// The end: a last packet (a v5 DISCONNECT) or none.
    Bye(Option<BytesMut>),
}

/// Carries an admitted connection until either side closes: the device's packets through the
/// policy to the broker (or the rule sink), the broker's back whole packet by whole packet
/// (`$aws/` topics renamed back, each held to the policy's Receive), so that what the gateway
/// adds never lands inside another packet. With `granted_expiry` (MQTT 5), the broker's CONNACK
/// carries the session expiry the gateway grants. A violation ends both sides, after the
/// checker's farewell.
pub(super) async fn relay<R, W, C>(
    mut packets: Framer<R>,
    mut device_tx: W,
    broker: TcpStream,
    mut checker: C,
    policy: &DevicePolicy,
    ingest: Option<&IngestSink>,
    granted_expiry: Option<u32>,
) -> Result<(), Ended>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    C: Checker,
{
    let (broker_rx, mut broker_tx) = broker.into_split();
    // PUBACKs the gateway owes the broker (for what it did not deliver): written by the upstream
    // side, the only writer to the broker, between the device's packets.
    let (owed_tx, mut owed) = mpsc::unbounded_channel::<BytesMut>();
    let (to_device, mut extra) = mpsc::unbounded_channel::<ToDevice>();
    let downstream = async {
        let mut from_broker = Framer::new(broker_rx);
        let mut granted_expiry = granted_expiry;
        loop {
            let frame = tokio::select! {
                biased;
                more = extra.recv() => match more {
                    Some(ToDevice::Packet(p)) => p,
                    Some(ToDevice::Bye(last)) => {
                        if let Some(last) = last {
                            let _ = device_tx.write_all(&last).await;
                        }
                        break;
                    }
                    None => break,
                },
                frame = from_broker.next_frame() => match frame {
                    Ok(Some(frame)) if frame.first().is_some_and(|b| b >> 4 == 2) => {
                        match granted_expiry.take() {
                            Some(secs) => v5::with_session_expiry(frame, secs),
                            None => frame,
                        }
                    }
                    Ok(Some(frame)) => match delivered(frame, policy) {
                        Ok(frame) => frame,
                        Err(Some(pkid)) => {
                            // Not for this device: acknowledged to the broker, not delivered.
                            let _ = owed_tx.send(topics::puback(pkid));
                            continue;
                        }
                        Err(None) => continue,
                    },
                    _ => break,
                },
            };
            if device_tx.write_all(&frame).await.is_err() {
                break;
            }
        }
        let _ = device_tx.shutdown().await;
    };
    let upstream = async {
        let checked: Result<(), Ended> = async {
            loop {
                let raw = tokio::select! {
                    // Cancel-safe: a partly read packet stays in the framer's buffer.
                    raw = packets.next_frame() => match raw? {
                        Some(raw) => raw,
                        None => break,
                    },
                    Some(ack) = owed.recv() => {
                        broker_tx.write_all(&ack).await?;
                        continue;
                    }
                };
                match checker.route(raw)? {
                    Route::Broker(raw) => broker_tx.write_all(&raw).await?,
                    Route::Ingest {
                        topic,
                        payload,
                        pkid,
                    } => {
                        if let Some(sink) = ingest {
                            let message = IngestMessage {
                                thing: policy.thing().to_string(),
                                topic,
                                payload,
                            };
                            if sink.send(message).await.is_err() {
                                return Err(std::io::Error::other("the rule sink is gone").into());
                            }
                        }
                        if let Some(pkid) = pkid {
                            let _ = to_device.send(ToDevice::Packet(topics::puback(pkid)));
                        }
                    }
                }
            }
            Ok(())
        }
        .await;
        let last = match &checked {
            Err(Ended::Policy(violation)) => checker.farewell(violation),
            _ => None,
        };
        let _ = to_device.send(ToDevice::Bye(last));
        let _ = broker_tx.shutdown().await;
        checked
    };
    tokio::pin!(downstream);
    tokio::select! {
        checked = upstream => {
            // Let the farewell out (bounded: a device that stops reading cannot hold us).
            let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, &mut downstream).await;
            checked
        }
        () = &mut downstream => Ok(()),
    }
}

/// A frame from the broker as the device gets it: a PUBLISH on a renamed `$aws/` topic under
/// its own name again; `Err` with the packet id to acknowledge (QoS 1) for a PUBLISH the
/// policy does not let the device receive.
fn delivered(frame: BytesMut, policy: &DevicePolicy) -> Result<BytesMut, Option<u16>> {
    let Some(topic) = topics::publish_topic(&frame) else {
        return Ok(frame);
    };
    // No exception for an empty topic (a v5 alias): the gateway offers the broker no topic
    // aliases, so a PUBLISH without a topic name is one the device could not be shown to be
    // allowed to receive, and goes no further than any other such.
    let renamed = topics::from_broker(topic);
    let topic = renamed.as_deref().unwrap_or(topic);
    if !policy.may_receive(topic) {
        return Err(topics::publish_pkid(&frame));
    }
    match renamed {
        Some(renamed) => topics::with_topic(&frame, &renamed).ok_or(None),
        None => Ok(frame),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::tests::{publish, subscribe};
    use rumqttc::mqttbytes::v4::{Publish, Subscribe, SubscribeFilter};
    use rumqttc::mqttbytes::QoS;
    use vigil_core::DeviceId;

    fn policy() -> DevicePolicy {
        DevicePolicy::new(&DeviceId::new("rig-001").unwrap())
    }

    fn raw(packet: Packet) -> BytesMut {
        let mut out = BytesMut::new();
        packet.write(&mut out, MAX_PACKET_BYTES).unwrap();
        out
    }

    /// Both directions of the `$aws/` renaming, and the policy's Receive on what the broker
    /// delivers.
    #[test]
    fn aws_topics_are_renamed_both_ways_and_receive_is_checked() {
        let p = policy();
        let mut v4 = V4 {
            policy: &p,
            connected: true,
            ingest: false,
        };
        let shadow = "$aws/things/rig-001/shadow/name/condition";
        let Route::Broker(out) = v4
            .route(raw(subscribe(&format!("{shadow}/update/accepted"))))
            .unwrap()
        else {
            panic!("to the broker")
        };
        let Packet::Subscribe(s) = parse_v4(&out).unwrap() else {
            panic!("a SUBSCRIBE")
        };
        assert_eq!(
            s.filters[0].path,
            "vigil-aws/things/rig-001/shadow/name/condition/update/accepted"
        );
        let Route::Broker(out) = v4.route(raw(publish(&format!("{shadow}/get")))).unwrap() else {
            panic!("to the broker")
        };
        assert_eq!(
            topics::publish_topic(&out),
            Some("vigil-aws/things/rig-001/shadow/name/condition/get")
        );
        // Without a rule sink, Basic Ingest is only what the policy says (here: not allowed).
        assert!(v4
            .route(raw(publish(
                "$aws/rules/vigil_ingest/dt/vigil/rig-001/telemetry"
            )))
            .is_err());

        let from_broker = raw(publish(
            "vigil-aws/things/rig-001/shadow/name/condition/update/accepted",
        ));
        let renamed = delivered(from_broker, &p).unwrap();
        assert_eq!(
            topics::publish_topic(&renamed),
            Some("$aws/things/rig-001/shadow/name/condition/update/accepted")
        );
        let condition = raw(publish("dt/vigil/rig-001/condition"));
        assert_eq!(delivered(condition.clone(), &p), Ok(condition));
        // Another thing's results never reach this device; the broker gets its PUBACK.
        assert_eq!(
            delivered(raw(publish("dt/vigil/rig-002/condition")), &p),
            Err(Some(1))
        );
        // Nor does a PUBLISH without a topic name (no alias can stand for one: the gateway
        // offers the broker none).
        assert_eq!(delivered(raw(publish("")), &p), Err(Some(1)));
    }
    fn v4(p: &DevicePolicy) -> V4<'_> {
        V4 {
            policy: p,
            connected: true,
            ingest: false,
        }
    }

    fn open_policy(resource: &str) -> DevicePolicy {
        let doc = super::super::PolicyDocument::from_json(&format!(
            r#"{{"Statement":[{{"Effect":"Allow","Action":"iot:*","Resource":"{resource}"}}]}}"#
        ))
        .unwrap();
        DevicePolicy::for_thing(&doc, &DeviceId::new("rig-001").unwrap())
    }

    /// `vigil-aws/...` is where the broker carries `$aws/` topics: a device that could publish
    /// there would answer for another thing's shadow, so no policy, however open, lets it.
    #[test]
    fn the_broker_s_namespace_is_no_device_s_whatever_its_policy() {
        let p = open_policy("*");
        let mut v4 = v4(&p);
        let forged = "vigil-aws/things/rig-002/shadow/name/condition/get/accepted";
        assert_eq!(
            v4.route(raw(publish(forged))).unwrap_err(),
            Violation::Publish(forged.into())
        );
        for filter in [forged, "vigil-aws/things/rig-002/shadow/#", "vigil-aws/#"] {
            assert_eq!(
                v4.route(raw(subscribe(filter))).unwrap_err(),
                Violation::Subscribe(filter.into())
            );
        }
        let mut connect = rumqttc::mqttbytes::v4::Connect::new("rig-001");
        connect.last_will = Some(rumqttc::mqttbytes::v4::LastWill::new(
            forged,
            "x",
            QoS::AtMostOnce,
            false,
        ));
        assert_eq!(
            p.check(&Packet::Connect(connect), false),
            Err(Violation::Will(forged.into()))
        );
        // The same policy still lets it use its `$aws/` names (renamed on the broker).
        assert!(v4
            .route(raw(publish(
                "$aws/things/rig-001/shadow/name/condition/get"
            )))
            .is_ok());
    }

    /// A filter of 65,531 bytes or more is 65,536 or more once renamed: the codec writes its
    /// length cut to 16 bits, and the broker reads the rest of it as filters of the device's
    /// choosing (here `#`, which the policy never saw). Refused instead, for SUBSCRIBE and
    /// UNSUBSCRIBE.
    #[test]
    fn a_filter_too_long_once_renamed_is_refused_not_cut() {
        let p = open_policy(
            "arn:aws:iot:*:*:topicfilter/$aws/things/${iot:Connection.Thing.ThingName}/shadow/*",
        );
        let mut v4 = v4(&p);
        // Laid out so that the broker's name, read with its length cut to 16 bits (4), is the
        // filters "vigi", "ws/things/rig-001/shadow/x…" (length "-a"), "#", "x…" (length
        // U+0495's two bytes, 53,909), the last with the gateway's own options byte.
        let head = "$aws/things/rig-001/shadow/";
        let mut filter = head.to_string();
        filter.push_str(&"x".repeat(11_624 - 5 - head.len()));
        filter.push_str("\u{1}\u{0}\u{1}#\u{1}\u{495}");
        filter.push_str(&"x".repeat(53_909));
        assert_eq!(filter.len(), usize::from(u16::MAX));
        // What the broker would have read had the gateway renamed it unchecked.
        let unchecked = raw(subscribe(&topics::to_broker(&filter).unwrap()));
        let Ok(Packet::Subscribe(read)) = parse_v4(&unchecked) else {
            panic!("a SUBSCRIBE")
        };
        let paths: Vec<&str> = read.filters.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths.len(), 4);
        assert_eq!((paths[0], paths[2]), ("vigi", "#"));

        assert_eq!(
            v4.route(raw(subscribe(&filter))).unwrap_err(),
            Violation::Subscribe(filter.clone())
        );
        let unsubscribe = Packet::Unsubscribe(rumqttc::mqttbytes::v4::Unsubscribe::new(&filter));
        assert!(v4.route(raw(unsubscribe)).is_err());
        // The longest that fits once renamed still goes, whole.
        let fits = format!(
            "{head}{}",
            "x".repeat(usize::from(u16::MAX) - 5 - head.len())
        );
        let Route::Broker(out) = v4.route(raw(subscribe(&fits))).unwrap() else {
            panic!("to the broker")
        };
        let Packet::Subscribe(s) = parse_v4(&out).unwrap() else {
            panic!("a SUBSCRIBE")
        };
        assert_eq!(s.filters.len(), 1);
        assert_eq!(s.filters[0].path, topics::to_broker(&fits).unwrap());
    }

    /// IoT Core retains nothing on `$aws/` topics; retained on the broker, a `get` would be
    /// asked again at every resubscription of the edge. Refused; other topics keep their flag.
    #[test]
    fn a_retained_message_on_a_reserved_topic_is_refused() {
        let p = policy();
        let mut v4 = v4(&p);
        let retained = |topic: &str| {
            let mut publish = Publish::new(topic, QoS::AtLeastOnce, b"{}".to_vec());
            publish.pkid = 1;
            publish.retain = true;
            raw(Packet::Publish(publish))
        };
        let get = "$aws/things/rig-001/shadow/name/condition/get";
        assert_eq!(
            v4.route(retained(get)).unwrap_err(),
            Violation::Retained(get.into())
        );
        assert!(v4.route(retained("dt/vigil/rig-001/telemetry")).is_ok());
        assert_eq!(
            v5::disconnect_code(&Violation::Retained(get.into())),
            rumqttc::v5::mqttbytes::v5::DisconnectReasonCode::RetainNotSupported
        );
    }
    /// Names that look like the thing's own but are not (case, empty levels, trailing levels,
    /// wildcards where the policy names a topic exactly) are refused, and a SUBSCRIBE or
    /// UNSUBSCRIBE with many filters has every `$aws/` one renamed, or is refused whole at the
    /// first filter the policy does not allow.
    #[test]
    fn near_misses_are_refused_and_many_filters_are_renamed_or_refused_whole() {
        let p = policy();
        let mut v4 = v4(&p);
        let own = "$aws/things/rig-001/shadow/name/condition";
        for topic in [
            "$AWS/things/rig-001/shadow/name/condition/get",
            "$aws/things/RIG-001/shadow/name/condition/get",
            "$aws/things//shadow/name/condition/get",
            "$aws/things/rig-001/shadow/name/condition//get",
            "$aws/things/rig-001/shadow/name/condition/get/",
            "$aws/things/rig-001/shadow/name/condition/get/accepted",
            "$aws/things/rig-001/shadow/get",
            "$aws/rules/vigil_ingest/dt/vigil/rig-002/telemetry",
            "$aws/rules/vigil_ingest/dt/vigil/rig-001/telemetry",
            "$aws/things/rig-001/shadow/name/condition/get\u{0}",
        ] {
            assert_eq!(
                v4.route(raw(publish(topic))).unwrap_err(),
                Violation::Publish(topic.into()),
                "{topic}"
            );
        }
        for filter in [
            "$aws/things/+/shadow/name/condition/get/accepted",
            "$aws/things/rig-001/shadow/name/condition/#",
            "$aws/#",
            "+/things/rig-002/shadow/name/condition/get/accepted",
            "$aws/things/rig-001/shadow/name/condition/get/+",
        ] {
            assert_eq!(
                v4.route(raw(subscribe(filter))).unwrap_err(),
                Violation::Subscribe(filter.into()),
                "{filter}"
            );
        }
        let allowed = [
            format!("{own}/get/accepted"),
            "dt/vigil/rig-001/condition".to_string(),
        ];
        let many: Vec<String> = (0..1000).map(|i| allowed[i % 2].clone()).collect();
        let filters = |paths: &[String]| {
            Packet::Subscribe(Subscribe::new_many(
                paths
                    .iter()
                    .map(|f| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce)),
            ))
        };
        let Route::Broker(out) = v4.route(raw(filters(&many))).unwrap() else {
            panic!("to the broker")
        };
        let Packet::Subscribe(s) = parse_v4(&out).unwrap() else {
            panic!("a SUBSCRIBE")
        };
        let renamed: Vec<String> = many
            .iter()
            .map(|f| topics::to_broker(f).unwrap_or(f.clone()))
            .collect();
        assert_eq!(
            s.filters.iter().map(|f| &f.path).collect::<Vec<_>>(),
            renamed.iter().collect::<Vec<_>>()
        );
        let mut one_bad = many.clone();
        one_bad.push("dt/vigil/rig-002/condition".into());
        assert_eq!(
            v4.route(raw(filters(&one_bad))).unwrap_err(),
            Violation::Subscribe("dt/vigil/rig-002/condition".into())
        );
        let unsubscribe = Packet::Unsubscribe(rumqttc::mqttbytes::v4::Unsubscribe {
            pkid: 2,
            topics: many.clone(),
        });
        let Route::Broker(out) = v4.route(raw(unsubscribe)).unwrap() else {
            panic!("to the broker")
        };
        let Packet::Unsubscribe(u) = parse_v4(&out).unwrap() else {
            panic!("an UNSUBSCRIBE")
        };
        assert_eq!(u.topics, renamed);
    }
}
