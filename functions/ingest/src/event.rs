//! The events the function is invoked with, and the messages inside them.
//!
//! - direct, from an IoT rule: either `{"device": "<thing>", "payload": "<base64>", ...}`
//!   (rule `SELECT encode(*, 'base64') AS payload, topic(3) AS device, timestamp() AS
//!   received_at`: the device's bytes are preserved) or the telemetry fields themselves plus
//!   `device` (rule `SELECT *, topic(3) AS device`);
//! - SQS: `{"Records": [{"eventSource": "aws:sqs", "messageId": ..., "body": <direct event>}]}`;
//! - Kinesis: `{"Records": [{"eventSource": "aws:kinesis", "kinesis": {"sequenceNumber": ...,
//!   "data": base64(<direct event>)}}]}`.
//!
//! The device always comes from the rule (`topic(3)`), which the device policy pins to the
//! thing's own name; the payload's own fields are never trusted for it.

use base64::Engine as _;
use serde_json::Value;
use vigil_core::telemetry::{Reason, TelemetryError};
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

/// Reads an event. `request_id` identifies a direct event (an async retry keeps it).
pub fn parse_event(event: &Value, request_id: &str) -> Result<Event, UnsupportedEvent> {
    let Some(obj) = event.as_object() else {
        // A direct event that is not an object is a bad message, not a bad deployment.
        let payload = serde_json::to_vec(event).unwrap_or_default();
        return Ok(Event {
            trigger: Trigger::Direct,
            records: vec![Record {
                id: request_id.to_string(),
                content: Err(BadEnvelope {
                    error: TelemetryError::new("$", Reason::WrongType("an object")),
                    device: None,
                    payload,
                }),
            }],
        });
    };
    let Some(records) = obj.get("Records") else {
        let raw = serde_json::to_vec(event).unwrap_or_default();
        return Ok(Event {
            trigger: Trigger::Direct,
            records: vec![Record {
                id: request_id.to_string(),
                content: direct_message(request_id, event, &raw),
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
        other => return Err(UnsupportedEvent(format!("event source {other:?}"))),
    };
    let mut out = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        let this_source = r.get("eventSource").and_then(Value::as_str).unwrap_or("");
        if this_source != source {
            return Err(UnsupportedEvent(format!(
                "record {i} comes from {this_source:?}, record 0 from {source:?}"
            )));
        }
        out.push(match trigger {
            Trigger::Sqs => sqs_record(i, r)?,
            Trigger::Kinesis => kinesis_record(i, r)?,
            Trigger::Direct => unreachable!("batches are SQS or Kinesis"),
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

/// A record's bytes hold a direct event.
fn message_from_bytes(id: &str, bytes: &[u8]) -> Result<Message, BadEnvelope> {
    if bytes.len() > vigil_core::telemetry::MAX_PAYLOAD_BYTES * 2 {
        return Err(BadEnvelope {
            error: TelemetryError::new("$", Reason::Oversize(bytes.len())),
            device: None,
            payload: bytes.to_vec(),
        });
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => direct_message(id, &v, bytes),
        Err(e) => Err(BadEnvelope {
            error: TelemetryError::new("$", Reason::Json(e.to_string())),
            device: None,
            payload: bytes.to_vec(),
        }),
    }
}

/// A direct event (either shape) as a message; `raw` is its JSON text.
fn direct_message(id: &str, v: &Value, raw: &[u8]) -> Result<Message, BadEnvelope> {
    let bad = |error, device| BadEnvelope {
        error,
        device,
        payload: raw.to_vec(),
    };
    let Some(obj) = v.as_object() else {
        return Err(bad(
            TelemetryError::new("$", Reason::WrongType("an object")),
            None,
        ));
    };
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
    let payload = match obj.get("payload") {
        // `encode(*, 'base64') AS payload`: the device's own bytes.
        Some(Value::String(b64)) => B64.decode(b64).map_err(|_| {
            bad(
                TelemetryError::new("payload", Reason::WrongType("base64 text")),
                Some(device.clone()),
            )
        })?,
        Some(_) => {
            return Err(bad(
                TelemetryError::new("payload", Reason::WrongType("base64 text")),
                Some(device.clone()),
            ))
        }
        // `SELECT *, topic(3) AS device`: the event is the telemetry; the parser ignores the
        // rule's `device` and `received_at`.
        None => raw.to_vec(),
    };
    Ok(Message {
        id: id.to_string(),
        device,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_both_direct_shapes() {
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

        let e = parse_event(
            &json!({"seq": 1, "ts": 2, "values": {"TS1": 1}, "device": "rig-2"}),
            "req-2",
        )
        .unwrap();
        let m = e.records[0].content.as_ref().unwrap();
        assert_eq!(m.device.as_str(), "rig-2");
        let back: Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(back["values"]["TS1"], 1);
    }

    #[test]
    fn bad_envelopes_are_named() {
        let e = parse_event(&json!({"seq": 1}), "r").unwrap();
        assert_eq!(
            e.records[0].content.as_ref().unwrap_err().error.code(),
            "missing_field"
        );
        let e = parse_event(&json!({"device": "a b", "seq": 1}), "r").unwrap();
        assert_eq!(
            e.records[0].content.as_ref().unwrap_err().error.code(),
            "invalid_device"
        );
        let e = parse_event(&json!({"device": "rig", "payload": "%%%"}), "r").unwrap();
        let bad = e.records[0].content.as_ref().unwrap_err();
        assert_eq!(
            (
                bad.error.field.as_str(),
                bad.device.as_ref().map(|d| d.as_str())
            ),
            ("payload", Some("rig"))
        );
        let e = parse_event(&json!([1, 2]), "r").unwrap();
        assert_eq!(
            e.records[0].content.as_ref().unwrap_err().error.code(),
            "wrong_type"
        );
    }

    #[test]
    fn reads_batches_and_refuses_unknown_sources() {
        let e = parse_event(
            &json!({"Records": [
                {"eventSource": "aws:sqs", "messageId": "m1", "body": "{\"device\":\"rig\",\"seq\":1}"},
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
