//! The edge's output ports over MQTT: results (and the `condition` shadow), alerts, rejections.
//!
//! Nothing leaves before it is on disk: a batch's publishes go to the store's outbox
//! (`store/outbox.rs`) and are sent by [`MqttSinks::release`] once the store has synced the
//! batch that produced them; what a crash left there is sent at the next start. Then they go
//! through the same connection as the telemetry acknowledgements and before them, and MQTT
//! keeps a connection's packets in order: when the broker has a batch's acknowledgements, it
//! has the results that batch produced.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use rumqttc::{AsyncClient, QoS};
use vigil_core::documents::{
    payload_sha256, reject_document, shadow_document, shadow_update_accepted,
};
use vigil_core::ports::{
    AlertEvent, AlertSink, PortError, RejectSink, Rejected, ResultSink, WindowResult,
};
use vigil_core::telemetry::condition_topic;

use vigil_mqtt::{alerts_topic, rejected_topic, shadow_update_topic, MAX_PACKET_BYTES};

use crate::monitor::FleetLog;
use crate::shadow;
use crate::store::EdgeStore;

/// What the sinks sent, for the edge's statistics.
#[derive(Debug, Default)]
pub struct SinkCounters {
    pub results: AtomicU64,
    pub alerts: AtomicU64,
    pub rejects: AtomicU64,
    /// Dead letters that could not be published (counted, logged, never retried).
    pub rejects_undelivered: AtomicU64,
    /// Shadow `get` requests answered on `get/accepted` and on `get/rejected` ([`crate::shadow`]).
    pub shadow_gets_accepted: AtomicU64,
    pub shadow_gets_rejected: AtomicU64,
    /// Shadow replies dropped because the client's request queue was full.
    pub shadow_replies_dropped: AtomicU64,
    /// Shadow `get` requests over a thing's budget, not answered.
    pub shadow_gets_limited: AtomicU64,
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
        // What the broker would refuse drops the connection, and the client re-sends it on the
        // next one, and the next: refused here instead, for good.
        let remaining = 2 + topic.len() + 2 + payload.len();
        if remaining > MAX_PACKET_BYTES {
            return Err(PortError::permanent(
                port,
                format!("publish to {topic}: {remaining} bytes, over the broker's {MAX_PACKET_BYTES} byte packet limit"),
            ));
        }
        self.store.outbox_push(&topic, &payload)
    }

    /// Sends what is in the outbox, in order, and removes it. Call only once the store has
    /// synced the batch (and at start, for what a crash left). A publish fails only when the
    /// connection task is gone (shutting down): the rest stays for the next start. Returns
    /// how many were sent.
    pub async fn release(&self) -> Result<usize, PortError> {
        let outgoing = self.store.outbox()?;
        let mut sent = Vec::with_capacity(outgoing.len());
        for o in outgoing {
            let queued = self
                .client
                .publish(o.topic, QoS::AtLeastOnce, false, o.payload)
                .await;
            if let Err(e) = queued {
                self.store.outbox_remove(&sent)?;
                return Err(PortError::retryable("outbox", format!("publish: {e}")));
            }
            sent.push(o.id);
        }
        self.store.outbox_remove(&sent)?;
        Ok(sent.len())
    }
}

impl MqttSinks {
    /// Publishes a dead letter (a rejection or a failure document).
    pub async fn send_dead_letter(
        &self,
        topic: String,
        doc: &serde_json::Value,
    ) -> Result<(), PortError> {
        let body = serde_json::to_vec(doc)
            .map_err(|e| PortError::permanent("rejects", format!("serialize: {e}")))?;
        self.send("rejects", topic, body).await
    }

    /// A dead letter that could not be published: counted and logged with what finds the
    /// message again (its id, device, payload length and sha256).
    pub fn undelivered(&self, message_id: &str, device: &str, payload: &[u8], error: &PortError) {
        self.counters
            .rejects_undelivered
            .fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            %message_id,
            %device,
            payload_bytes = payload.len(),
            payload_sha256 = %payload_sha256(payload),
            error = %error,
            "dead letter not delivered"
        );
    }
}

#[async_trait]
impl ResultSink for MqttSinks {
    async fn publish(&self, result: &WindowResult) -> Result<(), PortError> {
        let body = serde_json::to_vec(result)
            .map_err(|e| PortError::permanent("results", format!("serialize: {e}")))?;
        let device = result.device.as_str();
        // The shadow first: whoever has seen the result can `get` it from the shadow. A retry
        // saves it again (one more version of the same verdict), as a repeated update would.
        let update = shadow_document(result);
        let now_s = result.scored_at_ms / 1000;
        let current = self.store.save_shadow(device, &update, now_s)?;
        self.send("results", condition_topic(&result.device), body)
            .await?;
        self.send(
            "results",
            shadow_update_topic(device),
            serde_json::to_vec(&update).expect("JSON value serializes"),
        )
        .await?;
        // What the shadow service tells the device of the update (IoT's shape).
        let version = current["version"].as_u64().unwrap_or(0);
        let accepted = shadow_update_accepted(&update["state"], version, now_s);
        self.send(
            "results",
            shadow::broker_topic(device, "update/accepted"),
            serde_json::to_vec(&accepted).expect("JSON value serializes"),
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
        match self
            .send_dead_letter(rejected_topic(&device), &reject_document(rejected))
            .await
        {
            Ok(()) => {
                self.fleet.reject(&device);
                self.counters.rejects.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            // Still rejected, and acknowledged: a dead letter that cannot go out must not hold
            // the batch (it would be redelivered, refused again, forever).
            Err(e) if !e.retryable => {
                let id = &rejected.message_id;
                self.undelivered(id, &device, &rejected.payload, &e);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Durability;

    /// A publish the broker would refuse is refused here for good, before it reaches the
    /// client (which would drop the connection and re-send it on every reconnect).
    #[tokio::test]
    async fn a_publish_over_the_packet_limit_is_refused_for_good_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let options = rumqttc::MqttOptions::new("vigil-test", "127.0.0.1", 1);
        let (client, _eventloop) = AsyncClient::new(options, 4);
        let sinks = MqttSinks {
            client,
            store: Arc::new(EdgeStore::open_dir(dir.path(), Durability::PerCommit).unwrap()),
            counters: Arc::default(),
            print_alerts: false,
            fleet: Arc::default(),
        };
        let topic = rejected_topic("rig-001");
        let fits = MAX_PACKET_BYTES - 4 - topic.len();
        assert!(sinks
            .send("rejects", topic.clone(), vec![b'x'; fits])
            .await
            .is_ok());
        let e = sinks
            .send("rejects", topic, vec![b'x'; fits + 1])
            .await
            .unwrap_err();
        assert!(!e.retryable, "{e}");
        assert!(e.to_string().contains("packet limit"), "{e}");
        // The one that fits waits in the store's outbox until the batch is on disk, then is sent.
        assert_eq!(sinks.store.outbox().unwrap().len(), 1);
        sinks.release().await.unwrap();
        assert!(sinks.store.outbox().unwrap().is_empty());
        sinks.undelivered("m1", "rig-001", b"{}", &e);
        assert_eq!(
            sinks.counters.rejects_undelivered.load(Ordering::Relaxed),
            1
        );
        assert_eq!(sinks.counters.rejects.load(Ordering::Relaxed), 0);
    }
}
