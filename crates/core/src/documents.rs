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

/// The dead-letter record of a rejected message: the reason, and the payload.
pub fn reject_document(r: &Rejected) -> Value {
    dead_letter(
        &r.message_id,
        r.device.as_ref().map(|d| d.as_str()),
        r.error.code(),
        &r.error.field,
        &r.error.reason.to_string(),
        &r.error.to_string(),
        &r.payload,
    )
}

/// The record of a message that failed for good for another reason than bad input (e.g. a
/// scorer that cannot take the window): the shape of a rejection, with code `failed`.
pub fn failure_document(message_id: &str, device: &str, error: &str, payload: &[u8]) -> Value {
    dead_letter(
        message_id,
        Some(device),
        "failed",
        "$",
        error,
        error,
        payload,
    )
}

fn dead_letter(
    message_id: &str,
    device: Option<&str>,
    code: &str,
    field: &str,
    reason: &str,
    error: &str,
    payload: &[u8],
) -> Value {
    // Text stays readable in the queue; anything else survives as base64.
    let (payload, encoding) = match std::str::from_utf8(payload) {
        Ok(text) => (text.to_string(), "utf8"),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(payload),
            "base64",
        ),
    };
    json!({
        "message_id": message_id,
        "device": device,
        "code": code,
        "field": field,
        "reason": reason,
        "error": error,
        "payload": payload,
        "payload_encoding": encoding,
    })
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
    }
}
