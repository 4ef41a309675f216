//! The edge's output ports over MQTT: results (and the `condition` shadow), alerts, rejections.
//!
//! Publishes go through the same connection as the telemetry acknowledgements and before them,
//! and MQTT keeps a connection's packets in order: when the broker has a batch's
//! acknowledgements, it has the results that batch produced.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use rumqttc::{AsyncClient, QoS};
use serde_json::{json, Map, Value};
use vigil_core::ports::{
    AlertEvent, AlertSink, PortError, RejectSink, Rejected, ResultSink, WindowResult,
};
use vigil_core::telemetry::condition_topic;

use crate::broker::{alerts_topic, rejected_topic, shadow_update_topic};
use crate::store::EdgeStore;

/// What the sinks sent, for the edge's statistics.
#[derive(Debug, Default)]
pub struct SinkCounters {
    pub results: AtomicU64,
    pub alerts: AtomicU64,
    pub rejects: AtomicU64,
}

pub struct MqttSinks {
    pub client: AsyncClient,
    pub store: Arc<EdgeStore>,
    pub counters: Arc<SinkCounters>,
    /// Also print alert transitions on stdout (the `vigil edge` command does).
    pub print_alerts: bool,
}

impl MqttSinks {
    async fn send(
        &self,
        port: &'static str,
        topic: String,
        payload: Vec<u8>,
    ) -> Result<(), PortError> {
        self.client
            .publish(topic.clone(), QoS::AtLeastOnce, false, payload)
            .await
            // Only fails when the connection task is gone (shutting down): worth a retry.
            .map_err(|e| PortError::retryable(port, format!("publish to {topic}: {e}")))
    }
}

/// The shadow document, as the ingest Lambda writes it (`crates/aws/src/iot.rs`).
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
                "alert": result.alert,
                "time": result.scored_at_ms,
            }
        }
    })
}

/// The rejection document, as the ingest Lambda sends it to its dead-letter queue.
pub fn reject_document(r: &Rejected) -> Value {
    let (payload, encoding) = match std::str::from_utf8(&r.payload) {
        Ok(text) => (text.to_string(), "utf8"),
        Err(_) => (base64(&r.payload), "base64"),
    };
    json!({
        "message_id": r.message_id,
        "device": r.device.as_ref().map(|d| d.as_str()),
        "code": r.error.code(),
        "field": r.error.field,
        "reason": r.error.reason.to_string(),
        "error": r.error.to_string(),
        "payload": payload,
        "payload_encoding": encoding,
    })
}

/// The document for a message that failed for good (not bad input: e.g. a scorer that cannot
/// take the window), in the same shape as a rejection, with code `failed`.
pub fn failure_document(message_id: &str, device: &str, error: &str, payload: &[u8]) -> Value {
    let (payload, encoding) = match std::str::from_utf8(payload) {
        Ok(text) => (text.to_string(), "utf8"),
        Err(_) => (base64(payload), "base64"),
    };
    json!({
        "message_id": message_id,
        "device": device,
        "code": "failed",
        "field": "$",
        "reason": error,
        "error": error,
        "payload": payload,
        "payload_encoding": encoding,
    })
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[async_trait]
impl ResultSink for MqttSinks {
    async fn publish(&self, result: &WindowResult) -> Result<(), PortError> {
        let body = serde_json::to_vec(result)
            .map_err(|e| PortError::permanent("results", format!("serialize: {e}")))?;
        self.send("results", condition_topic(&result.device), body)
            .await?;
        let shadow = shadow_document(result);
        self.store.save_shadow(result.device.as_str(), &shadow)?;
        self.send(
            "results",
            shadow_update_topic(result.device.as_str()),
            serde_json::to_vec(&shadow).expect("JSON value serializes"),
        )
        .await?;
        self.counters.results.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[async_trait]
impl AlertSink for MqttSinks {
    async fn notify(&self, alert: &AlertEvent) -> Result<(), PortError> {
        let body = serde_json::to_vec(alert)
            .map_err(|e| PortError::permanent("alerts", format!("serialize: {e}")))?;
        self.send("alerts", alerts_topic(alert.device.as_str()), body)
            .await?;
        tracing::info!(
            device = %alert.device,
            window = alert.window,
            transition = alert.transition.kind(),
            "{}",
            alert.subject()
        );
        if self.print_alerts {
            println!("alert: {} (window {})", alert.subject(), alert.window);
        }
        self.counters.alerts.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[async_trait]
impl RejectSink for MqttSinks {
    async fn reject(&self, rejected: &Rejected) -> Result<(), PortError> {
        let device = rejected
            .device
            .as_ref()
            .map_or("unknown", |d| d.as_str())
            .to_string();
        tracing::warn!(
            device = %device,
            message_id = %rejected.message_id,
            code = rejected.error.code(),
            "rejected: {}",
            rejected.error
        );
        let body = serde_json::to_vec(&reject_document(rejected)).expect("JSON value serializes");
        self.send("rejects", rejected_topic(&device), body).await?;
        self.counters.rejects.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&[0xff, 0x00, 0x80]), "/wCA");
    }
}
