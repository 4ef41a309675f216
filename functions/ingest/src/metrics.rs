//! CloudWatch metrics in the Embedded Metric Format: one JSON line per invocation on stdout,
//! which Lambda's log pipeline turns into metrics in the `Vigil` namespace (no API calls).

use serde_json::{json, Map, Value};
use vigil_core::pipeline::Counters;

pub const NAMESPACE: &str = "Vigil";

/// What one invocation did, for metrics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InvocationMetrics {
    pub counters: Counters,
    pub latency_ms: f64,
    pub dynamo_write_units: f64,
    pub dynamo_read_units: f64,
    /// Dead letters the reject queue refused (their records are failed, so retried within the
    /// source's own bounds: SQS redrive, Kinesis retry attempts, async retries).
    pub dead_letters_undelivered: u64,
    /// DynamoDB requests (reads and writes).
    pub dynamo_requests: u64,
}

/// The EMF document. Dimensions: function and trigger (three values at most).
pub fn emf(function: &str, trigger: &str, m: &InvocationMetrics, timestamp_ms: u64) -> Value {
    let c = &m.counters;
    let metrics: [(&str, f64, &str); 15] = [
        ("Messages", c.messages as f64, "Count"),
        ("Accepted", c.accepted as f64, "Count"),
        ("Rejected", c.rejected as f64, "Count"),
        ("Failed", c.failed as f64, "Count"),
        ("Samples", c.samples as f64, "Count"),
        ("Duplicates", c.duplicates as f64, "Count"),
        ("Late", c.late as f64, "Count"),
        ("WindowsScored", c.windows_scored as f64, "Count"),
        ("WindowsIncomplete", c.windows_incomplete as f64, "Count"),
        ("Alerts", c.alerts as f64, "Count"),
        ("Latency", m.latency_ms, "Milliseconds"),
        ("DynamoWriteUnits", m.dynamo_write_units, "Count"),
        ("DynamoReadUnits", m.dynamo_read_units, "Count"),
        (
            "DeadLettersUndelivered",
            m.dead_letters_undelivered as f64,
            "Count",
        ),
        ("DynamoRequests", m.dynamo_requests as f64, "Count"),
    ];
    let mut doc = Map::new();
    doc.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Function", "Trigger"]],
                "Metrics": metrics.iter().map(|(n, _, u)| json!({"Name": n, "Unit": u})).collect::<Vec<_>>(),
            }]
        }),
    );
    doc.insert("Function".into(), json!(function));
    doc.insert("Trigger".into(), json!(trigger));
    for (name, value, _) in metrics {
        doc.insert(name.into(), json!(value));
    }
    // Not a metric (one series per reason would cost), but searchable in Logs Insights.
    doc.insert("RejectsByReason".into(), json!(c.rejects_by_reason));
    Value::Object(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_declared_metric_has_a_value() {
        let mut m = InvocationMetrics::default();
        m.counters.messages = 3;
        m.counters
            .rejects_by_reason
            .insert("invalid_json".into(), 1);
        let doc = emf("vigil-ingest", "sqs", &m, 1);
        let declared = doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap();
        assert!(declared.len() >= 10);
        for d in declared {
            let name = d["Name"].as_str().unwrap();
            assert!(doc[name].is_number(), "{name}");
        }
        assert_eq!(doc["Messages"], 3.0);
        assert_eq!(doc["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Vigil");
        assert_eq!(doc["RejectsByReason"]["invalid_json"], 1);
    }
}
