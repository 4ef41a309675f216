//! IoT Core's reserved `$aws/...` topics through a broker that refuses them: rumqttd accepts
//! no subscription to a topic starting with `$` and delivers no such message, so the gateway
//! carries them under a namespace of its own on the broker, [`BROKER_PREFIX`], in both
//! directions: a device's `$aws/things/<thing>/shadow/...` publish or subscription becomes
//! `vigil-aws/things/<thing>/shadow/...` on the broker, and what the broker delivers there
//! reaches the device as `$aws/...` again. The policy is always checked on the `$aws/...` form,
//! and no device may name the broker's form itself, whatever its policy says
//! ([`is_broker_namespace`]), so the mapping gives no device a topic it did not have. A name
//! whose broker form would not fit an MQTT string is refused rather than cut, and, as in IoT
//! Core, nothing is retained on an `$aws/` topic.
//!
//! Basic Ingest (`$aws/rules/<rule>/<topic>`) is not carried at all when the gateway has a rule
//! sink ([`super::IngestMessage`]): as in IoT Core, such a message goes to the rule only, never
//! to a subscriber.
//!
//! The rewriting works on raw PUBLISH frames, whose fixed header and topic name are laid out
//! alike in MQTT 3.1.1 and 5: the rest of the packet (packet id, v5 properties, payload) is
//! carried byte for byte.

use bytes::{BufMut, BytesMut};

/// Where `$aws/` topics live on the broker.
pub const BROKER_PREFIX: &str = "vigil-aws/";
const AWS_PREFIX: &str = "$aws/";
const BASIC_INGEST_PREFIX: &str = "$aws/rules/";

/// `$aws/x` → the broker's name for it; other topics are carried as they are.
pub fn to_broker(topic: &str) -> Option<String> {
    topic
        .strip_prefix(AWS_PREFIX)
        .map(|rest| format!("{BROKER_PREFIX}{rest}"))
}

/// The broker's name of an `$aws/` topic → `$aws/x`.
pub fn from_broker(topic: &str) -> Option<String> {
    topic
        .strip_prefix(BROKER_PREFIX)
        .map(|rest| format!("{AWS_PREFIX}{rest}"))
}

/// Whether `topic` is one of IoT Core's reserved ones (`$aws/...`), on which IoT retains no
/// message.
pub fn is_reserved(topic: &str) -> bool {
    topic.starts_with(AWS_PREFIX)
}

/// Whether `name` (a topic or filter) is in the broker's own namespace for `$aws/` topics,
/// which no device may name itself whatever its policy says: a device that could publish there
/// would speak as the shadow service to the thing named in it.
pub fn is_broker_namespace(name: &str) -> bool {
    name.starts_with(BROKER_PREFIX)
}

pub fn is_basic_ingest(topic: &str) -> bool {
    topic.starts_with(BASIC_INGEST_PREFIX)
}

/// The fixed header's length and the remaining length of a whole frame.
fn fixed_header(raw: &[u8]) -> Option<(usize, usize)> {
    let mut remaining = 0usize;
    for (i, &b) in raw.iter().enumerate().skip(1).take(4) {
        remaining |= usize::from(b & 0x7f) << (7 * (i - 1));
        if b & 0x80 == 0 {
            return Some((i + 1, remaining));
        }
    }
    None
}

fn is_publish(raw: &[u8]) -> bool {
    raw.first().is_some_and(|b| b >> 4 == 3)
}

/// The topic name of a raw PUBLISH frame (empty for a v5 publish by alias).
pub fn publish_topic(raw: &[u8]) -> Option<&str> {
    if !is_publish(raw) {
        return None;
    }
    let (header, _) = fixed_header(raw)?;
    let len = usize::from(u16::from_be_bytes([
        *raw.get(header)?,
        *raw.get(header + 1)?,
    ]));
    std::str::from_utf8(raw.get(header + 2..header + 2 + len)?).ok()
}

/// The packet id of a raw QoS 1 or 2 PUBLISH frame.
pub fn publish_pkid(raw: &[u8]) -> Option<u16> {
    let qos = (raw.first()? >> 1) & 0b11;
    if !is_publish(raw) || qos == 0 {
        return None;
    }
    let (header, _) = fixed_header(raw)?;
    let at = header + 2 + publish_topic(raw)?.len();
    Some(u16::from_be_bytes([*raw.get(at)?, *raw.get(at + 1)?]))
}

/// The same PUBLISH frame with its topic name replaced. `raw` must be a whole PUBLISH frame
/// ([`publish_topic`] is `Some`).
pub fn with_topic(raw: &[u8], topic: &str) -> Option<BytesMut> {
    let (header, remaining) = fixed_header(raw)?;
    let old = publish_topic(raw)?.len();
    let rest = raw.get(header + 2 + old..header + remaining)?;
    let remaining = 2 + topic.len() + rest.len();
    let mut out = BytesMut::with_capacity(remaining + 5);
    out.put_u8(raw[0]);
    let mut left = remaining;
    loop {
        let byte = (left % 128) as u8;
        left /= 128;
        if left == 0 {
            out.put_u8(byte);
            break;
        }
        out.put_u8(byte | 0x80);
    }
    out.put_u16(u16::try_from(topic.len()).ok()?);
    out.put_slice(topic.as_bytes());
    out.put_slice(rest);
    Some(out)
}

/// A PUBACK for `pkid` (the same four bytes in MQTT 3.1.1 and 5, where reason code 0 may be
/// left out).
pub fn puback(pkid: u16) -> BytesMut {
    let mut out = BytesMut::with_capacity(4);
    out.put_slice(&[0x40, 0x02]);
    out.put_u16(pkid);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::mqttbytes::v4::Publish;
    use rumqttc::mqttbytes::QoS;
    use rumqttc::Packet;

    #[test]
    fn aws_topics_map_both_ways_and_others_not_at_all() {
        let shadow = "$aws/things/rig-001/shadow/name/condition/update/accepted";
        let broker = to_broker(shadow).unwrap();
        assert_eq!(
            broker,
            "vigil-aws/things/rig-001/shadow/name/condition/update/accepted"
        );
        assert_eq!(from_broker(&broker).as_deref(), Some(shadow));
        assert_eq!(to_broker("dt/vigil/rig-001/telemetry"), None);
        assert_eq!(from_broker("dt/vigil/rig-001/condition"), None);
        assert!(is_basic_ingest(
            "$aws/rules/vigil_ingest/dt/vigil/x/telemetry"
        ));
        assert!(!is_basic_ingest("$aws/things/x/shadow/get"));
    }

    #[test]
    fn a_publish_keeps_everything_but_its_topic() {
        for (payload_len, qos) in [(10, QoS::AtLeastOnce), (300, QoS::AtMostOnce)] {
            let mut publish = Publish::new("$aws/x", qos, vec![7u8; payload_len]);
            publish.pkid = u16::from(qos == QoS::AtLeastOnce) * 513;
            let mut raw = BytesMut::new();
            Packet::Publish(publish.clone())
                .write(&mut raw, 1 << 20)
                .unwrap();
            assert_eq!(publish_topic(&raw), Some("$aws/x"));
            assert_eq!(publish_pkid(&raw), (qos == QoS::AtLeastOnce).then_some(513));
            let long = format!("vigil-aws/{}", "y".repeat(200));
            let mut moved = with_topic(&raw, &long).unwrap();
            let Packet::Publish(back) = Packet::read(&mut moved, 1 << 20).unwrap() else {
                panic!("not a publish")
            };
            assert_eq!(back.topic, long);
            assert_eq!(
                (back.payload, back.pkid, back.qos),
                (publish.payload, publish.pkid, qos)
            );
        }
        assert_eq!(publish_topic(&puback(1)), None);
    }
}
