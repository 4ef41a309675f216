//! The edge's output ports over MQTT: results (and the `condition` shadow), alerts, rejections.
//!
//! Publishes go through the same connection as the telemetry acknowledgements and before them,
//! and MQTT keeps a connection's packets in order: when the broker has a batch's
//! acknowledgements, it has the results that batch produced.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use rumqttc::{AsyncClient, QoS};
use vigil_core::documents::{reject_document, shadow_document};
use vigil_core::ports::{
    AlertEvent, AlertSink, PortError, RejectSink, Rejected, ResultSink, WindowResult,
};
use vigil_core::telemetry::condition_topic;

use vigil_mqtt::{alerts_topic, rejected_topic, shadow_update_topic};

use crate::monitor::FleetLog;
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
    /// Recent verdicts and rejections for the fleet page, and its live events.
    pub fleet: Arc<FleetLog>,
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
        self.fleet.verdict(result);
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
        // The body above carries the alarm (state, reason, escalation) as `alarm`.
        let alarm = alert.alarm.as_ref().map_or(String::new(), |n| {
            format!(" [alarm {}, {}]", n.state.as_str(), n.reason.as_str())
        });
        tracing::info!(
            device = %alert.device,
            window = alert.window,
            transition = alert.transition.kind(),
            alarm_state = alert.alarm.as_ref().map_or("none", |n| n.state.as_str()),
            "{}",
            alert.subject()
        );
        if self.print_alerts {
            println!(
                "alert: {}{alarm} (window {})",
                alert.subject(),
                alert.window
            );
        }
        if let Some(n) = &alert.alarm {
            self.fleet
                .alarm_changed(alert.device.as_str(), &n.condition, n.state.as_str());
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
        self.fleet.reject(&device);
        self.counters.rejects.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
