//! The rules engine's side of IoT Core: a broker subscriber that runs every message through the
//! topic rule and hands the rule's output to its action (the function asynchronously, or the
//! ingest queue or stream).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

use crate::mapping::RuleAction;
use crate::rule::TopicRule;

/// What the bridge did.
#[derive(Debug, Default)]
pub struct BridgeCounters {
    pub matched: AtomicU64,
    /// Messages the rule could not evaluate (IoT counts these as rule errors).
    pub rule_errors: AtomicU64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Subscribes to the rule's filter on the broker and runs until the task is aborted
/// (reconnecting with a persistent session, so nothing published meanwhile is lost).
pub async fn run(
    broker: (String, u16),
    rule: TopicRule,
    action: RuleAction,
    counters: Arc<BridgeCounters>,
) {
    let mut options = MqttOptions::new(
        format!("vigil-local-rule-{}", rule.name),
        broker.0,
        broker.1,
    );
    options
        .set_clean_session(false)
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(vigil_mqtt::MAX_PACKET_BYTES, vigil_mqtt::MAX_PACKET_BYTES);
    let (client, mut events) = AsyncClient::new(options, 1024);
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                if let Err(e) = client.subscribe(rule.filter(), QoS::AtLeastOnce).await {
                    tracing::warn!(error = %e, "rule bridge: subscribe");
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let Some(topic) = rule.applies_to(&p.topic) else {
                    continue;
                };
                counters.matched.fetch_add(1, Ordering::Relaxed);
                match rule.evaluate(&topic, &p.payload, now_ms()) {
                    Ok(event) => {
                        if !action.submit(&topic, &p.payload, event).await {
                            tracing::warn!(%topic, "rule bridge: rule action failed; message dropped");
                        }
                    }
                    Err(e) => {
                        counters.rule_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%topic, error = %e, "rule bridge: rule error");
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "rule bridge: broker connection; reconnecting");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
