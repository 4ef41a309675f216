//! The counters in Prometheus text format 0.0.4.

use std::fmt::Write as _;

use crate::gateway::GatewayStats;
use crate::EdgeStats;

/// The statistics in Prometheus text format. Counter names end in `_total`; they restart from
/// zero with the process, which Prometheus' `rate()` handles as a counter reset.
pub fn prometheus(stats: &EdgeStats, subscribed: bool, gateway: Option<&GatewayStats>) -> String {
    let p = &stats.pipeline;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    metric(
        "vigil_edge_up",
        "gauge",
        "1 while the edge is subscribed to the broker.",
        u8::from(subscribed).to_string(),
    );
    metric(
        "vigil_edge_uptime_seconds",
        "gauge",
        "Seconds since the edge started.",
        format!("{:.3}", stats.uptime_s),
    );
    let mut counters: Vec<(&str, &str, u64)> = vec![
        (
            "vigil_edge_deliveries_total",
            "Telemetry deliveries received, redeliveries included.",
            stats.deliveries,
        ),
        (
            "vigil_edge_acked_total",
            "Deliveries acknowledged to the broker.",
            stats.acked,
        ),
        (
            "vigil_edge_batches_total",
            "Batches processed.",
            stats.batches,
        ),
        (
            "vigil_edge_batch_retries_total",
            "Batches retried after a retryable failure.",
            stats.retries,
        ),
        (
            "vigil_edge_invalid_topic_total",
            "Deliveries on a topic that names no valid thing (dropped).",
            stats.invalid_topic,
        ),
        (
            "vigil_edge_failed_total",
            "Messages that failed for good (published as rejections with code failed).",
            stats.failed,
        ),
        (
            "vigil_edge_dead_letters_undelivered_total",
            "Dead letters that could not be published (logged; the message is acknowledged).",
            stats.dead_letters_undelivered,
        ),
        (
            "vigil_edge_results_published_total",
            "Window results published.",
            stats.results_published,
        ),
        (
            "vigil_edge_alerts_published_total",
            "Alert transitions published.",
            stats.alerts_published,
        ),
        (
            "vigil_edge_rejects_published_total",
            "Rejections published on the dead-letter topics.",
            stats.rejects_published,
        ),
        (
            "vigil_edge_shadow_gets_accepted_total",
            "Shadow get requests answered with the stored condition shadow.",
            stats.shadow_gets_accepted,
        ),
        (
            "vigil_edge_shadow_gets_rejected_total",
            "Shadow get requests refused (404 before any result, 400/413 for a bad request).",
            stats.shadow_gets_rejected,
        ),
        (
            "vigil_edge_shadow_replies_dropped_total",
            "Shadow replies dropped because the edge's MQTT request queue was full.",
            stats.shadow_replies_dropped,
        ),
        (
            "vigil_edge_shadow_gets_limited_total",
            "Shadow get requests not answered: over the thing's budget per second.",
            stats.shadow_gets_limited,
        ),
        (
            "vigil_edge_connections_total",
            "Connections to the broker (1 + reconnections).",
            stats.connections,
        ),
        (
            "vigil_messages_total",
            "Messages through the pipeline, retries included.",
            p.messages,
        ),
        (
            "vigil_messages_accepted_total",
            "Messages accepted.",
            p.accepted,
        ),
        (
            "vigil_messages_rejected_total",
            "Messages rejected as bad input (see vigil_rejects_total).",
            p.rejected,
        ),
        (
            "vigil_messages_failed_total",
            "Message attempts that failed in a port or scorer.",
            p.failed,
        ),
        (
            "vigil_samples_total",
            "Samples accepted, duplicates and late ones included.",
            p.samples,
        ),
        (
            "vigil_samples_duplicate_total",
            "Samples seen before (same device and seq), not counted again.",
            p.duplicates,
        ),
        (
            "vigil_samples_late_total",
            "Samples for a window already scored.",
            p.late,
        ),
        (
            "vigil_windows_scored_total",
            "Windows scored.",
            p.windows_scored,
        ),
        (
            "vigil_windows_incomplete_total",
            "Windows closed with missing samples (scored if complete enough).",
            p.windows_incomplete,
        ),
        (
            "vigil_alerts_total",
            "Alert transitions decided by the alert policy.",
            p.alerts,
        ),
    ];
    if let Some(g) = gateway {
        counters.extend([
            (
                "vigil_gateway_connections_total",
                "Device connections admitted (certificate attached to a thing).",
                g.connections,
            ),
            (
                "vigil_gateway_failed_handshakes_total",
                "TLS handshakes refused: no client certificate, or one not admitted (unattached included).",
                g.failed_handshakes,
            ),
            (
                "vigil_gateway_unattached_certificates_total",
                "Handshakes refused because the certificate is attached to no thing.",
                g.unattached_certificates,
            ),
            (
                "vigil_gateway_policy_violations_total",
                "Connections closed for a packet outside the thing's policy.",
                g.policy_violations,
            ),
        ]);
    }
    for (name, help, value) in counters {
        metric(name, "counter", help, value.to_string());
    }
    let _ = writeln!(
        out,
        "# HELP vigil_rejects_total Rejected messages by reason code.\n# TYPE vigil_rejects_total counter"
    );
    for (reason, n) in &p.rejects_by_reason {
        let _ = writeln!(
            out,
            "vigil_rejects_total{{reason=\"{}\"}} {n}",
            label_value(reason)
        );
    }
    out
}

/// A label value as the text format wants it: backslash, double quote and newline escaped.
fn label_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_carry_every_counter_with_its_value() {
        let mut stats = EdgeStats {
            deliveries: 2160,
            acked: 2159,
            failed: 3,
            ..EdgeStats::default()
        };
        stats.pipeline.windows_scored = 36;
        stats
            .pipeline
            .rejects_by_reason
            .insert("missing_channel".into(), 2);
        stats
            .pipeline
            .rejects_by_reason
            .insert("odd\"code\\".into(), 1);
        let gateway = GatewayStats {
            policy_violations: 4,
            ..GatewayStats::default()
        };
        let text = prometheus(&stats, true, Some(&gateway));
        let lines: Vec<&str> = text.lines().collect();
        for expected in [
            "vigil_edge_up 1",
            "vigil_edge_deliveries_total 2160",
            "vigil_edge_acked_total 2159",
            "vigil_edge_failed_total 3",
            "vigil_windows_scored_total 36",
            "vigil_rejects_total{reason=\"missing_channel\"} 2",
            "vigil_gateway_policy_violations_total 4",
            "vigil_rejects_total{reason=\"odd\\\"code\\\\\"} 1",
        ] {
            assert!(
                lines.contains(&expected),
                "{expected:?} missing from:\n{text}"
            );
        }
        // Every sample line has its TYPE line first, once.
        for line in lines.iter().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let typed = format!("# TYPE {name} ");
            assert_eq!(
                lines.iter().filter(|l| l.starts_with(&typed)).count(),
                1,
                "{name}"
            );
        }
        let without = prometheus(&stats, false, None);
        assert!(without.contains("vigil_edge_up 0\n"));
        assert!(!without.contains("vigil_gateway_"));
    }
}
