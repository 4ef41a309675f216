//! The handler over in-memory ports: event shapes, partial batch failures, direct-mode errors.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use serde_json::json;
use vigil_core::memory::MemoryPorts;
use vigil_core::ports::{PortError, RejectSink, Rejected};
use vigil_core::scorer::ZScoreScorer;
use vigil_core::{CompiledProfile, Profile, ScorerSpec};
use vigil_ingest::{handle_detailed, App, HandlerError, Invocation, RecordOutcome};

const PROFILE: &str = r#"
name = "tiny"
channels = ["a"]
sample_rate_hz = 1.0
[window]
size = 2
hop = 2
[scorer]
kind = "zscore"
warmup = 2
[alert]
unhealthy = ["anomaly"]
"#;

fn profiles() -> BTreeMap<String, CompiledProfile> {
    let p = Profile::from_toml(PROFILE, "tiny.toml").unwrap();
    let ScorerSpec::Zscore(c) = &p.scorer else {
        unreachable!()
    };
    let scorer = Arc::new(ZScoreScorer::new(c.clone()));
    BTreeMap::from([("tiny".to_string(), CompiledProfile::new(p, scorer).unwrap())])
}

fn app<'a>(profiles: &'a BTreeMap<String, CompiledProfile>, mem: &'a MemoryPorts) -> App<'a> {
    App {
        profiles,
        ports: mem.ports(),
        default_profile: "tiny".into(),
        usage: None,
        function: "test".into(),
        print_metrics: false,
        close_hints: Default::default(),
        alarm_reports: None,
    }
}

fn inv() -> Invocation {
    Invocation {
        request_id: "req-1".into(),
        deadline_ms: None,
        now_ms: Some(1_000),
    }
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn sample(seq: u64) -> String {
    format!(r#"{{"seq":{seq},"ts":{seq},"values":{{"a":1.5}}}}"#)
}

#[tokio::test]
async fn sqs_batches_report_only_failed_records() {
    let profiles = profiles();
    let mem = MemoryPorts::new();
    let good = json!({"device": "d1", "payload": b64(&sample(0))}).to_string();
    let event = json!({"Records": [
        {"eventSource": "aws:sqs", "messageId": "ok", "body": good},
        {"eventSource": "aws:sqs", "messageId": "bad", "body": json!({"device": "d1", "payload": b64(r#"{"seq":"x","ts":1,"values":{"a":1}}"#)}).to_string()},
        {"eventSource": "aws:sqs", "messageId": "nodevice", "body": json!({"payload": b64(&sample(1))}).to_string()},
    ]});
    let h = handle_detailed(&app(&profiles, &mem), &event, &inv()).await;
    assert_eq!(h.response.unwrap(), json!({"batchItemFailures": []}));
    assert!(matches!(
        h.outcomes[0].1,
        RecordOutcome::Accepted { samples: 1, .. }
    ));
    assert!(matches!(
        h.outcomes[1].1,
        RecordOutcome::Rejected {
            code: "wrong_type",
            ..
        }
    ));
    assert!(matches!(
        h.outcomes[2].1,
        RecordOutcome::Rejected {
            code: "missing_field",
            ..
        }
    ));
    let rejected = mem.recorder.rejected.lock().unwrap().clone();
    let mut ids: Vec<(&str, Option<&str>)> = rejected
        .iter()
        .map(|r| (r.message_id.as_str(), r.device.as_ref().map(|d| d.as_str())))
        .collect();
    ids.sort();
    assert_eq!(ids, vec![("bad", Some("d1")), ("nodevice", None)]);
    assert_eq!(h.metrics.counters.rejected, 2);
    assert_eq!(h.metrics.counters.messages, 3);
}

struct BrokenRejects;

#[async_trait]
impl RejectSink for BrokenRejects {
    async fn reject(&self, _: &Rejected) -> Result<(), PortError> {
        Err(PortError::retryable("rejects", "queue unavailable"))
    }
}

#[tokio::test]
async fn a_bad_message_that_cannot_be_dead_lettered_is_retried() {
    let profiles = profiles();
    let mem = MemoryPorts::new();
    let mut app = app(&profiles, &mem);
    app.ports.rejects = &BrokenRejects;
    let event = json!({"Records": [
        {"eventSource": "aws:sqs", "messageId": "bad", "body": "nope"},
        {"eventSource": "aws:sqs", "messageId": "ok", "body": json!({"device": "d1", "payload": b64(&sample(0))}).to_string()},
        {"eventSource": "aws:sqs", "messageId": "bad-payload", "body": json!({"device": "d1", "payload": b64("{}")}).to_string()},
    ]});
    let h = handle_detailed(&app, &event, &inv()).await;
    // Only the two whose dead letter failed are retried (within the queue's redrive bound);
    // the rest of the batch is processed, and nothing counts as rejected that was not delivered.
    assert_eq!(
        h.response.unwrap(),
        json!({"batchItemFailures": [{"itemIdentifier": "bad"}, {"itemIdentifier": "bad-payload"}]})
    );
    assert!(matches!(
        h.outcomes[1].1,
        RecordOutcome::Accepted { samples: 1, .. }
    ));
    assert_eq!(h.metrics.counters.rejected, 0);
    assert!(h.metrics.counters.rejects_by_reason.is_empty());
    assert_eq!(h.metrics.dead_letters_undelivered, 2);
    assert_eq!(h.emf["DeadLettersUndelivered"], 2.0);
    // Direct mode: the invocation fails, retryable, so Lambda retries the event.
    let h = handle_detailed(&app, &json!({"device": "d1", "payload": "%%"}), &inv()).await;
    match h.response {
        Err(
            e @ HandlerError::Failed {
                retryable: true, ..
            },
        ) => assert_eq!(e.error_type(), "Vigil.Retryable"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn direct_events_answer_with_their_outcome_and_close_windows() {
    let profiles = profiles();
    let mem = MemoryPorts::new();
    let app = app(&profiles, &mem);
    let h = handle_detailed(
        &app,
        &json!({"device": "d1", "payload": b64(&sample(0))}),
        &inv(),
    )
    .await;
    assert_eq!(
        h.response.unwrap(),
        json!({"status": "accepted", "samples": 1, "duplicates": 0, "late": 0})
    );
    let h = handle_detailed(
        &app,
        &json!({"device": "d1", "payload": b64(&sample(1))}),
        &inv(),
    )
    .await;
    assert_eq!(h.results.len(), 1, "window 0 is complete");
    let h = handle_detailed(
        &app,
        &json!({"device": "d1", "payload": b64(&sample(1))}),
        &inv(),
    )
    .await;
    assert_eq!(h.response.unwrap()["late"], 1);
    let h = handle_detailed(&app, &json!({"device": "d1", "payload": b64("{}")}), &inv()).await;
    assert_eq!(h.response.unwrap()["status"], "rejected");
}

#[tokio::test]
async fn unsupported_events_fail_the_invocation() {
    let profiles = profiles();
    let mem = MemoryPorts::new();
    let h = handle_detailed(
        &app(&profiles, &mem),
        &json!({"Records": [{"eventSource": "aws:s3"}]}),
        &inv(),
    )
    .await;
    let e = h.response.unwrap_err();
    assert_eq!(e.error_type(), "Vigil.UnsupportedEvent");
    assert!(!e.is_retryable());
    assert_eq!(h.emf["Trigger"], "unknown");
}
