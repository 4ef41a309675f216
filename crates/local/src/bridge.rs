//! The rules engine's side of IoT Core: a broker subscriber that runs every message through the
//! topic rule and hands the rule's output to its action (the function asynchronously, or the
//! ingest queue or stream); and the same for the Basic Ingest messages the gateway hands over
//! directly ([`run_basic_ingest`]), which never pass the broker.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;
use vigil_edge::gateway::IngestMessage;

use crate::mapping::RuleAction;
use crate::rule::TopicRule;

/// What the bridge did.
#[derive(Debug, Default)]
pub struct BridgeCounters {
    pub matched: AtomicU64,
    /// Messages the rule could not evaluate (IoT counts these as rule errors).
    pub rule_errors: AtomicU64,
    /// Basic Ingest messages for another rule (IoT drops them).
    pub other_rule: AtomicU64,
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
                handle(&rule, &action, &counters, &p.topic, &p.payload).await;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "rule bridge: broker connection; reconnecting");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Runs each Basic Ingest message from the gateway through `rule` until the gateway is gone.
pub async fn run_basic_ingest(
    mut messages: mpsc::Receiver<IngestMessage>,
    rule: TopicRule,
    action: RuleAction,
    counters: Arc<BridgeCounters>,
) {
    while let Some(m) = messages.recv().await {
        if rule.applies_to(&m.topic).is_none() {
            counters.other_rule.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(topic = %m.topic, thing = %m.thing, "rule bridge: Basic Ingest for another rule; dropped");
            continue;
        }
        handle(&rule, &action, &counters, &m.topic, &m.payload).await;
    }
}

/// One message published on `published`: through the rule, if it applies, to its action.
async fn handle(
    rule: &TopicRule,
    action: &RuleAction,
    counters: &BridgeCounters,
    published: &str,
    payload: &[u8],
) {
    let Some(topic) = rule.applies_to(published) else {
        return;
    };
    counters.matched.fetch_add(1, Ordering::Relaxed);
    match rule.evaluate(&topic, payload, now_ms()) {
        Ok(event) => {
            if !action.submit(&topic, payload, event).await {
                tracing::warn!(%topic, "rule bridge: rule action failed; message dropped");
            }
        }
        Err(e) => {
            counters.rule_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%topic, error = %e, "rule bridge: rule error");
        }
    }
}
