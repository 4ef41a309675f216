//! The JSON documents Vigil sends out, the same from the Lambda and from the edge: the device's
//! `condition` shadow, and the dead-letter record of a message that was rejected or failed.

use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::ports::{Rejected, WindowResult};

/// The shadow update: what the device and dashboards read as "the current condition".
pub fn shadow_document(result: &WindowResult) -> Value {
    let probabilities: Map<String, Value> = result
        .labels
        .iter()
        .zip(&result.probabilities)
        .map(|(l, p)| (l.clone(), json!(p)))
        .collect();
    json!({
        "state": {
            "reported": {
                "label": result.label,
                "status": result.status,
                "probabilities": probabilities,
                "anomaly_score": result.anomaly_score,
                "profile": result.profile,
                "window": result.window,
                "seq_start": result.seq_start,
                "seq_end": result.seq_end,
                "ts_start": result.ts_start,
                "ts_end": result.ts_end,
                "completeness": result.completeness,
                "source": result.source,
                "model_version": result.model_version,
                // A null deletes the attribute in a shadow: no open alert.
                "alert": result.alert,
                "time": result.scored_at_ms,
            }
        }
    })
}

/// The shadow service's `.../update/accepted` message: the state the update carried, the version
/// it made and when (seconds), as AWS IoT shapes it.
pub fn shadow_update_accepted(state: &Value, version: u64, timestamp_s: u64) -> Value {
    json!({ "state": state, "version": version, "timestamp": timestamp_s })
}

/// The shadow service's `.../get/rejected` (or `update/rejected`) message: an HTTP-like `code`
/// (400, 404, 413, ...), a message, and when.
pub fn shadow_error(code: u16, message: &str, timestamp_s: u64) -> Value {
    json!({ "code": code, "message": message, "timestamp": timestamp_s })
}

/// A reply with the request's `clientToken`, which IoT echoes so that a device can match
/// replies to its requests.
pub fn with_client_token(mut reply: Value, client_token: Option<&str>) -> Value {
    if let (Some(token), Some(doc)) = (client_token, reply.as_object_mut()) {
        doc.insert("clientToken".into(), json!(token));
    }
    reply
}

/// The stored `condition` shadow after `update` (a [`shadow_document`]) at `version`: what a
/// `get` returns. `update` carries every field, so IoT's merge comes down to the update's
/// `reported` without its `null`s (a `null` deletes the attribute, e.g. a cleared `alert`).
pub fn shadow_after_update(update: &Value, version: u64, timestamp_s: u64) -> Value {
    let reported: Map<String, Value> = update["state"]["reported"]
        .as_object()
        .map(|r| {
            r.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    json!({ "state": { "reported": reported }, "version": version, "timestamp": timestamp_s })
}

/// Largest dead-letter document by default, in bytes of JSON: far below the edge broker's
/// packet limit and SQS's 256 KiB, whatever the device sent (`docs/telemetry.md`).
pub const MAX_DEAD_LETTER_BYTES: usize = 16 * 1024;

/// The Lambda's cap: one 64 KiB SQS billing unit, a quarter of SQS's 256 KiB message limit
/// (message attributes count towards it too).
pub const SQS_DEAD_LETTER_MAX_BYTES: usize = 64 * 1024;

/// Most bytes (JSON-escaped) kept of each descriptive field (`field`, `reason`, `error`, ids).
pub const MAX_DEAD_LETTER_FIELD_BYTES: usize = 256;

/// Smallest cap honoured: room for the descriptive fields at their longest.
pub const MIN_DEAD_LETTER_BYTES: usize = 4 * 1024;

/// The dead-letter record of a rejected message, within [`MAX_DEAD_LETTER_BYTES`].
pub fn reject_document(r: &Rejected) -> Value {
    reject_document_within(r, MAX_DEAD_LETTER_BYTES)
}

/// The dead-letter record of a rejected message: the reason, and as much of the payload as fits
/// in `max_bytes` of JSON (its length and sha256 are always kept).
pub fn reject_document_within(r: &Rejected, max_bytes: usize) -> Value {
    dead_letter(
        &DeadLetter {
            message_id: &r.message_id,
            device: r.device.as_ref().map(|d| d.as_str()),
            code: r.error.code(),
            field: &r.error.field,
            reason: &r.error.reason.to_string(),
            error: &r.error.to_string(),
        },
        &r.payload,
        max_bytes,
    )
}

/// The record of a message that failed for good for another reason than bad input (e.g. a
/// scorer that cannot take the window): the shape of a rejection, with code `failed`, within
/// [`MAX_DEAD_LETTER_BYTES`].
pub fn failure_document(message_id: &str, device: &str, error: &str, payload: &[u8]) -> Value {
    dead_letter(
        &DeadLetter {
            message_id,
            device: Some(device),
            code: "failed",
            field: "$",
            reason: error,
            error,
        },
        payload,
        MAX_DEAD_LETTER_BYTES,
    )
}

/// What a dead letter says about a message, besides its payload.
#[derive(Clone, Copy, Debug)]
pub struct DeadLetter<'a> {
    pub message_id: &'a str,
    pub device: Option<&'a str>,
    pub code: &'a str,
    pub field: &'a str,
    pub reason: &'a str,
    pub error: &'a str,
}

/// Hex sha256 of a payload, as dead letters and logs name it.
pub fn payload_sha256(payload: &[u8]) -> String {
    use sha2::Digest as _;
    use std::fmt::Write as _;
    let digest = sha2::Sha256::digest(payload);
    digest.iter().fold(String::with_capacity(64), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// The dead-letter document, never longer than `max_bytes` of JSON (at least
/// [`MIN_DEAD_LETTER_BYTES`]): descriptive fields are cut to [`MAX_DEAD_LETTER_FIELD_BYTES`],
/// and the payload to what fits after them, with `payload_truncated`, its full length and
/// sha256.
pub fn dead_letter(d: &DeadLetter<'_>, payload: &[u8], max_bytes: usize) -> Value {
    let max_bytes = max_bytes.max(MIN_DEAD_LETTER_BYTES);
    let text = std::str::from_utf8(payload).ok();
    let encoding = if text.is_some() { "utf8" } else { "base64" };
    let mut doc = json!({
        "message_id": cut(d.message_id),
        "device": d.device.map(cut),
        "code": cut(d.code),
        "field": cut(d.field),
        "reason": cut(d.reason),
        "error": cut(d.error),
        "payload": "",
        "payload_encoding": encoding,
        "payload_bytes": payload.len(),
        "payload_sha256": payload_sha256(payload),
        "payload_truncated": false,
    });
    // Room left for the payload's characters once everything else is written.
    let skeleton = serde_json::to_string(&doc).map_or(max_bytes, |s| s.len());
    let room = max_bytes.saturating_sub(skeleton + "true".len() - "false".len());
    let (kept, truncated) = match text {
        Some(text) => {
            let end = escaped_prefix(text, room);
            (text[..end].to_string(), end < text.len())
        }
        None => {
            let bytes = (room / 4 * 3).min(payload.len());
            (
                base64::engine::general_purpose::STANDARD.encode(&payload[..bytes]),
                bytes < payload.len(),
            )
        }
    };
    doc["payload"] = Value::String(kept);
    doc["payload_truncated"] = Value::Bool(truncated);
    doc
}

/// A descriptive field cut to [`MAX_DEAD_LETTER_FIELD_BYTES`] once escaped.
fn cut(text: &str) -> String {
    let end = escaped_prefix(text, MAX_DEAD_LETTER_FIELD_BYTES - '…'.len_utf8());
    if end == text.len() {
        text.to_string()
    } else {
        format!("{}…", &text[..end])
    }
}

/// Length of the longest prefix of `text` (on a character boundary) whose JSON-escaped form
/// takes at most `room` bytes, counted as serde_json escapes.
fn escaped_prefix(text: &str, room: usize) -> usize {
    let mut used = 0;
    for (i, c) in text.char_indices() {
        let cost = match c {
            '"' | '\\' | '\n' | '\r' | '\t' | '\u{08}' | '\u{0c}' => 2,
            c if u32::from(c) < 0x20 => 6,
            c => c.len_utf8(),
        };
        if used + cost > room {
            return i;
        }
        used += cost;
    }
    text.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_payloads_are_base64_and_text_stays_text() {
        let doc = failure_document("m1", "pump-7", "boom", &[0xff, 0x00, 0x80]);
        assert_eq!(doc["payload"], "/wCA");
        assert_eq!(doc["payload_encoding"], "base64");
        assert_eq!(doc["code"], "failed");
        let doc = failure_document("m1", "pump-7", "boom", b"{\"seq\":1}");
        assert_eq!(doc["payload"], "{\"seq\":1}");
        assert_eq!(doc["payload_encoding"], "utf8");
        assert_eq!(doc["payload_truncated"], false);
        assert_eq!(doc["payload_bytes"], 9);
    }

    fn size(doc: &Value) -> usize {
        serde_json::to_string(doc).unwrap().len()
    }

    #[test]
    fn dead_letters_stay_under_their_cap_whatever_the_payload() {
        // Quotes and control characters escape to 2 and 6 bytes: the worst payloads there are.
        let payloads: Vec<Vec<u8>> = vec![
            vec![b'"'; 70_000],
            vec![0x01; 70_000],
            vec![0xff; 70_000],
            "é\\\n".repeat(30_000).into_bytes(),
            vec![b'a'; 128 * 1024],
        ];
        let long = "\"\u{1}é".repeat(100_000);
        for payload in &payloads {
            for cap in [MAX_DEAD_LETTER_BYTES, SQS_DEAD_LETTER_MAX_BYTES, 10] {
                let doc = dead_letter(
                    &DeadLetter {
                        message_id: &long,
                        device: Some(&long),
                        code: "oversize",
                        field: &long,
                        reason: &long,
                        error: &long,
                    },
                    payload,
                    cap,
                );
                assert!(
                    size(&doc) <= cap.max(MIN_DEAD_LETTER_BYTES),
                    "{} > {cap}",
                    size(&doc)
                );
                assert_eq!(doc["payload_truncated"], true);
                assert_eq!(doc["payload_bytes"], payload.len());
                assert_eq!(doc["payload_sha256"], payload_sha256(payload));
                if cap == SQS_DEAD_LETTER_MAX_BYTES {
                    // Most of the room goes to the payload.
                    assert!(size(&doc) > cap - 64, "{}", size(&doc));
                }
            }
        }
        assert_eq!(
            payload_sha256(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let doc = failure_document("m", "d", "boom", &[b'"'; 70_000]);
        assert!(size(&doc) <= MAX_DEAD_LETTER_BYTES);
    }
}
