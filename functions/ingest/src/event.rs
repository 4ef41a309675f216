//! The events the function is invoked with, and the messages inside them.
//!
//! - direct, from the IoT rule `SELECT encode(*, 'base64') AS payload, topic(3) AS device,
//!   timestamp() AS received_at FROM 'dt/vigil/+/telemetry'`: exactly
//!   `{"payload": "<base64>", "device": "<thing>", "received_at": <ms>}`, so that nothing the
//!   device writes can become a field of the event;
//! - SQS: `{"Records": [{"eventSource": "aws:sqs", "messageId": ..., "body": <direct event>}]}`;
//! - Kinesis: `{"Records": [{"eventSource": "aws:kinesis", "kinesis": {"sequenceNumber": ...,
//!   "data": base64(<direct event>)}}]}`.
//!
//! Only an object whose one key is `Records` is a batch. A direct event with any other key is
//! a rejected message (`unexpected_key`), never a batch and never decoded: that is what the
//! retired rule `SELECT *, topic(3) AS device` produced, where a device's own keys (`Records`,
//! `payload`, `device`) became the event's. The device always comes from the rule's
//! `topic(3)`, which the device policy pins to the thing's own name; the payload's bytes go to
//! the one validation both the Lambda and the edge use ([`vigil_core::telemetry::parse_message`]).

use std::cell::Cell;
use std::fmt;

use base64::Engine as _;
use serde::de::{self, Deserializer as _, MapAccess, Visitor};
use serde_json::{Map, Value};
use vigil_core::telemetry::{quoted_key, Reason, TelemetryError, MAX_PAYLOAD_BYTES};
use vigil_core::{DeviceId, Message};

/// How the function was invoked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    Direct,
    Sqs,
    Kinesis,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Sqs => "sqs",
            Self::Kinesis => "kinesis",
        }
    }
}

/// A message that could not even be read as a message (bad envelope, missing device...).
#[derive(Clone, Debug, PartialEq)]
pub struct BadEnvelope {
    pub error: TelemetryError,
    pub device: Option<DeviceId>,
    pub payload: Vec<u8>,
}

/// One record of the event: its id (for batch failure reports) and what it holds.
#[derive(Clone, Debug)]
pub struct Record {
    pub id: String,
    pub content: Result<Message, BadEnvelope>,
}

#[derive(Clone, Debug)]
pub struct Event {
    pub trigger: Trigger,
    pub records: Vec<Record>,
}

/// The event is not one this function serves: a deployment error, never a device's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported event: {0}")]
pub struct UnsupportedEvent(pub String);

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Keys of a direct event: the rule's three, nothing else.
pub const ENVELOPE_KEYS: [&str; 3] = ["payload", "device", "received_at"];

/// Reads an event. `request_id` identifies a direct event (an async retry keeps it).
pub fn parse_event(event: &Value, request_id: &str) -> Result<Event, UnsupportedEvent> {
    let records = match event.as_object() {
        Some(obj) if obj.len() == 1 => obj.get("Records"),
        _ => None,
    };
    let Some(records) = records else {
        // A direct event, or something that only looks like a batch: one message either way.
        let raw = serde_json::to_vec(event).unwrap_or_default();
        let content = match event.as_object() {
            Some(obj) => direct_message(request_id, obj, &raw),
            None => Err(BadEnvelope {
                error: TelemetryError::new("$", Reason::WrongType("an object")),
                device: None,
                payload: raw,
            }),
        };
        return Ok(Event {
            trigger: Trigger::Direct,
            records: vec![Record {
                id: request_id.to_string(),
                content,
            }],
        });
    };
    let records = records
        .as_array()
        .ok_or_else(|| UnsupportedEvent("Records is not an array".into()))?;
    let source = records
        .first()
        .and_then(|r| r.get("eventSource").or_else(|| r.get("EventSource")))
        .and_then(Value::as_str)
        .unwrap_or("");
    let trigger = match source {
        "aws:sqs" => Trigger::Sqs,
        "aws:kinesis" => Trigger::Kinesis,
        "" if records.is_empty() => Trigger::Sqs,
        other => {
            return Err(UnsupportedEvent(format!(
                "event source {:?}",
                quoted_key(other)
            )))
        }
    };
    let mut out = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        let this_source = r.get("eventSource").and_then(Value::as_str).unwrap_or("");
        if this_source != source {
            return Err(UnsupportedEvent(format!(
                "record {i} comes from {:?}, record 0 from {source:?}",
                quoted_key(this_source)
            )));
        }
        out.push(match trigger {
            Trigger::Kinesis => kinesis_record(i, r)?,
            Trigger::Sqs | Trigger::Direct => sqs_record(i, r)?,
        });
    }
    Ok(Event {
        trigger,
        records: out,
    })
}

fn sqs_record(i: usize, r: &Value) -> Result<Record, UnsupportedEvent> {
    let id = r
        .get("messageId")
        .and_then(Value::as_str)
        .ok_or_else(|| UnsupportedEvent(format!("SQS record {i} has no messageId")))?
        .to_string();
    let body = r.get("body").and_then(Value::as_str).unwrap_or("");
    let content = message_from_bytes(&id, body.as_bytes());
    Ok(Record { id, content })
}

fn kinesis_record(i: usize, r: &Value) -> Result<Record, UnsupportedEvent> {
    let k = r
        .get("kinesis")
        .ok_or_else(|| UnsupportedEvent(format!("Kinesis record {i} has no kinesis field")))?;
    let id = k
        .get("sequenceNumber")
        .and_then(Value::as_str)
        .ok_or_else(|| UnsupportedEvent(format!("Kinesis record {i} has no sequenceNumber")))?
        .to_string();
    let data = k.get("data").and_then(Value::as_str).unwrap_or("");
    let content = match B64.decode(data) {
        Ok(bytes) => message_from_bytes(&id, &bytes),
        Err(_) => Err(BadEnvelope {
            error: TelemetryError::new("kinesis.data", Reason::WrongType("base64 text")),
            device: None,
            payload: data.as_bytes().to_vec(),
        }),
    };
    Ok(Record { id, content })
}

/// Largest record body read: a direct event around the largest payload, base64 and all.
const MAX_BODY_BYTES: usize = MAX_PAYLOAD_BYTES * 2;

/// A record's bytes hold a direct event.
pub fn message_from_bytes(id: &str, bytes: &[u8]) -> Result<Message, BadEnvelope> {
    let bad = |error| BadEnvelope {
        error,
        device: None,
        payload: bytes.to_vec(),
    };
    if bytes.len() > MAX_BODY_BYTES {
        return Err(bad(TelemetryError::new("$", Reason::Oversize(bytes.len()))));
    }
    let obj = envelope_object(bytes).map_err(bad)?;
    direct_message(id, &obj, bytes)
}

/// Reads a record body as a JSON object, refusing a key given twice (JSON parsers disagree on
/// which copy wins, so a duplicate `device` or `payload` is never guessed at).
fn envelope_object(bytes: &[u8]) -> Result<Map<String, Value>, TelemetryError> {
    struct Envelope<'a>(&'a Cell<Option<TelemetryError>>);

    impl Envelope<'_> {
        fn reject<E: de::Error>(&self, field: impl Into<String>, reason: Reason) -> E {
            self.0.set(Some(TelemetryError::new(field, reason)));
            E::custom("envelope rejected")
        }
    }

    impl<'de> Visitor<'de> for Envelope<'_> {
        type Value = Map<String, Value>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Map::new();
            while let Some(key) = map.next_key::<String>()? {
                let value: Value = map.next_value()?;
                if out.contains_key(&key) {
                    return Err(self.reject(quoted_key(&key), Reason::DuplicateKey));
                }
                out.insert(key, value);
            }
            Ok(out)
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            // Read it through first: broken JSON is `invalid_json` whatever its first byte.
            while seq.next_element::<de::IgnoredAny>()?.is_some() {}
            Err(self.reject("$", Reason::WrongType("an object")))
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Err(self.reject("$", Reason::WrongType("an object")))
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Err(self.reject("$", Reason::WrongType("an object")))
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Err(self.reject("$", Reason::WrongType("an object")))
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Err(self.reject("$", Reason::WrongType("an object")))
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Err(self.reject("$", Reason::WrongType("an object")))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Err(self.reject("$", Reason::WrongType("an object")))
        }
    }

    let slot = Cell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match de
        .deserialize_any(Envelope(&slot))
        .and_then(|m| de.end().map(|()| m))
    {
        Ok(obj) => Ok(obj),
        Err(e) => Err(slot
            .take()
            .unwrap_or_else(|| TelemetryError::new("$", Reason::Json(e.to_string())))),
    }
}

/// A direct event as a message; `raw` is its JSON text (kept for the dead letter).
fn direct_message(id: &str, obj: &Map<String, Value>, raw: &[u8]) -> Result<Message, BadEnvelope> {
    let bad = |error, device| BadEnvelope {
        error,
        device,
        payload: raw.to_vec(),
    };
    // A key the rule never writes means the event is not the rule's: the device's own keys
    // (the retired `SELECT *` rule) or a smuggled batch. Nothing in it is trusted, not even
    // `device`. `Records` is named first: it is the one that would make a batch.
    let unexpected = obj
        .keys()
        .filter(|k| !ENVELOPE_KEYS.contains(&k.as_str()))
        .min_by_key(|k| k.as_str() != "Records");
    if let Some(key) = unexpected {
        return Err(bad(
            TelemetryError::new(quoted_key(key), Reason::UnexpectedKey),
            None,
        ));
    }
    let device = match obj.get("device") {
        None | Some(Value::Null) => {
            return Err(bad(TelemetryError::new("device", Reason::Missing), None))
        }
        Some(Value::String(d)) => DeviceId::new(d.clone()).map_err(|e| bad(e, None))?,
        Some(_) => {
            return Err(bad(
                TelemetryError::new("device", Reason::WrongType("a string")),
                None,
            ))
        }
    };
    let with_device = |error| bad(error, Some(device.clone()));
    match obj.get("received_at") {
        None | Some(Value::Null) => {}
        Some(v) if v.is_u64() => {}
        Some(_) => {
            return Err(with_device(TelemetryError::new(
                "received_at",
                Reason::WrongType("a non-negative integer"),
            )))
        }
    }
    let payload = match obj.get("payload") {
        // `encode(*, 'base64') AS payload`: the device's own bytes, for the shared validation.
        Some(Value::String(b64)) => B64.decode(b64).map_err(|_| {
            with_device(TelemetryError::new(
                "payload",
                Reason::WrongType("base64 text"),
            ))
        })?,
        None | Some(Value::Null) => {
            return Err(with_device(TelemetryError::new("payload", Reason::Missing)))
        }
        Some(_) => {
            return Err(with_device(TelemetryError::new(
                "payload",
                Reason::WrongType("base64 text"),
            )))
        }
    };
    Ok(Message {
        id: id.to_string(),
        device,
        payload,
    })
}

/// Fuzz target `event`: any bytes as a whole event (when they are JSON) and as one record's
/// body. Run by `fuzz/` under libFuzzer and by `tests/fuzz_harness.rs` under proptest; panics
/// when an invariant breaks: accepted payloads go on to the core telemetry target, rejections
/// are short and their dead letters within the SQS cap.
pub fn fuzz_event(data: &[u8]) {
    if let Ok(event) = serde_json::from_slice::<Value>(data) {
        if let Ok(parsed) = parse_event(&event, "fuzz") {
            for record in parsed.records {
                check_content(record.content);
            }
        }
    }
    check_content(message_from_bytes("fuzz", data));
}

fn check_content(content: Result<Message, BadEnvelope>) {
    use vigil_core::documents::{reject_document_within, SQS_DEAD_LETTER_MAX_BYTES};
    match content {
        Ok(m) => vigil_core::fuzzing::telemetry(&m.payload),
        Err(bad) => {
            vigil_core::fuzzing::check_rejection(&bad.error);
            let rejected = vigil_core::ports::Rejected {
                message_id: "fuzz".into(),
                device: bad.device,
                error: bad.error,
                payload: bad.payload,
            };
            let doc = reject_document_within(&rejected, SQS_DEAD_LETTER_MAX_BYTES);
            let size = serde_json::to_string(&doc).map_or(usize::MAX, |s| s.len());
            assert!(
                size <= SQS_DEAD_LETTER_MAX_BYTES,
                "dead letter of {size} bytes"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rejected(e: &Event) -> (&'static str, &str, Option<&str>) {
        let bad = e.records[0].content.as_ref().unwrap_err();
        (
            bad.error.code(),
            bad.error.field.as_str(),
            bad.device.as_ref().map(|d| d.as_str()),
        )
    }

    #[test]
    fn reads_the_rule_event() {
        let payload = br#"{"seq":1,"ts":2,"values":{"TS1":1}}"#;
        let e = parse_event(
            &json!({"device": "rig-1", "payload": B64.encode(payload), "received_at": 5}),
            "req-1",
        )
        .unwrap();
        assert_eq!(e.trigger, Trigger::Direct);
        let m = e.records[0].content.as_ref().unwrap();
        assert_eq!((m.id.as_str(), m.device.as_str()), ("req-1", "rig-1"));
        assert_eq!(m.payload, payload);
    }

    #[test]
    fn the_retired_select_star_shape_is_a_rejected_message() {
        // `SELECT *, topic(3) AS device`: the device's keys are the event's. Refused whole, and
        // not attributed to any device.
        let e = parse_event(
            &json!({"seq": 1, "ts": 2, "values": {"TS1": 1}, "device": "rig-2"}),
            "req-2",
        )
        .unwrap();
        assert_eq!(rejected(&e), ("unexpected_key", "seq", None));
    }

    #[test]
    fn a_smuggled_batch_is_one_rejected_message() {
        let body = json!({"device": "victim", "payload": B64.encode(br#"{"seq":1,"ts":1,"values":{"TS1":1}}"#)});
        let smuggled = json!({"Records": [{"eventSource": "aws:sqs", "messageId": "x", "body": body.to_string()}]});
        // As the retired rule would have delivered it: the device's keys plus `device`.
        let mut event = smuggled.clone();
        event["device"] = json!("attacker");
        let e = parse_event(&event, "req-3").unwrap();
        assert_eq!(e.trigger, Trigger::Direct);
        assert_eq!(e.records.len(), 1);
        assert_eq!(e.records[0].id, "req-3");
        assert_eq!(rejected(&e), ("unexpected_key", "Records", None));
        // Inside an SQS body the same is a bad record, not a nested batch.
        let e = parse_event(
            &json!({"Records": [{"eventSource": "aws:sqs", "messageId": "m1", "body": smuggled.to_string()}]}),
            "r",
        )
        .unwrap();
        assert_eq!(e.trigger, Trigger::Sqs);
        assert_eq!(rejected(&e), ("unexpected_key", "Records", None));
    }

    #[test]
    fn bad_envelopes_are_named() {
        let e = parse_event(&json!({"payload": "e30="}), "r").unwrap();
        assert_eq!(rejected(&e), ("missing_field", "device", None));
        let e = parse_event(&json!({"device": "a b", "payload": "e30="}), "r").unwrap();
        assert_eq!(rejected(&e).0, "invalid_device");
        let e = parse_event(&json!({"device": "rig", "payload": "%%%"}), "r").unwrap();
        assert_eq!(rejected(&e), ("wrong_type", "payload", Some("rig")));
        let e = parse_event(&json!({"device": "rig"}), "r").unwrap();
        assert_eq!(rejected(&e), ("missing_field", "payload", Some("rig")));
        let e = parse_event(
            &json!({"device": "rig", "payload": "e30=", "received_at": "now"}),
            "r",
        )
        .unwrap();
        assert_eq!(rejected(&e), ("wrong_type", "received_at", Some("rig")));
        let e = parse_event(&json!([1, 2]), "r").unwrap();
        assert_eq!(rejected(&e), ("wrong_type", "$", None));
        let e = parse_event(&json!({}), "r").unwrap();
        assert_eq!(rejected(&e), ("missing_field", "device", None));
    }

    #[test]
    fn duplicate_keys_in_a_body_are_refused() {
        let m = message_from_bytes("m", br#"{"device":"a","device":"b","payload":"e30="}"#);
        let bad = m.unwrap_err();
        assert_eq!(
            (bad.error.code(), bad.error.field.as_str()),
            ("duplicate_key", "device")
        );
        assert_eq!(bad.device, None);
        // A key that reads like an error message is a key like any other.
        let m = message_from_bytes(
            "m",
            br#"{"device":"a","payload":"e30=","x|expected a number":1}"#,
        );
        let bad = m.unwrap_err();
        assert_eq!(
            (bad.error.code(), bad.error.field.as_str()),
            ("unexpected_key", "x|expected a number")
        );
        for (body, code) in [
            (&b"[1]"[..], "wrong_type"),
            (b"\"text\"", "wrong_type"),
            (b"{\"device\":", "invalid_json"),
            (b"{} {}", "invalid_json"),
        ] {
            assert_eq!(
                message_from_bytes("m", body).unwrap_err().error.code(),
                code
            );
        }
    }

    #[test]
    fn reads_batches_and_refuses_unknown_sources() {
        let good = json!({"device": "rig", "payload": "e30="}).to_string();
        let e = parse_event(
            &json!({"Records": [
                {"eventSource": "aws:sqs", "messageId": "m1", "body": good},
                {"eventSource": "aws:sqs", "messageId": "m2", "body": "not json"}
            ]}),
            "r",
        )
        .unwrap();
        assert_eq!(e.trigger, Trigger::Sqs);
        assert_eq!(e.records[0].id, "m1");
        assert!(e.records[0].content.is_ok());
        assert_eq!(
            e.records[1].content.as_ref().unwrap_err().error.code(),
            "invalid_json"
        );

        let data = B64.encode(br#"{"device":"rig","payload":"e30="}"#);
        let e = parse_event(
            &json!({"Records": [{"eventSource": "aws:kinesis", "kinesis": {"sequenceNumber": "49", "data": data}}]}),
            "r",
        )
        .unwrap();
        assert_eq!(e.trigger, Trigger::Kinesis);
        assert_eq!(e.records[0].id, "49");
        assert_eq!(e.records[0].content.as_ref().unwrap().payload, b"{}");

        assert!(parse_event(&json!({"Records": [{"eventSource": "aws:sns"}]}), "r").is_err());
        assert!(parse_event(
            &json!({"Records": [{"eventSource": "aws:sqs", "messageId": "1", "body": ""}, {"eventSource": "aws:kinesis"}]}),
            "r"
        )
        .is_err());
    }
}
