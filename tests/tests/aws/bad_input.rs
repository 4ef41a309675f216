//! Every bad-input case: rejected with its reason, dead-lettered with attributes, counted, and
//! never failing the rest of its batch.

use std::collections::HashMap;

use serde_json::{json, Value};
use vigil_ingest::RecordOutcome;
use vigil_tests::fixture::{batch, direct_b64, one, sqs_batch, Fixture, Options};
use vigil_tests::repo_root;

use crate::cycles;

/// `events/ingest/bad-<code>[--variant].json`.
fn bad_events() -> Vec<(String, String, Value)> {
    let dir = repo_root().join("events/ingest");
    let mut out: Vec<(String, String, Value)> = std::fs::read_dir(&dir)
        .expect("events/ingest")
        .filter_map(|e| {
            let path = e.ok()?.path();
            let name = path.file_name()?.to_str()?.to_string();
            let code = name.strip_prefix("bad-")?.strip_suffix(".json")?;
            let code = code.split("--").next()?.to_string();
            let event = serde_json::from_str(&std::fs::read_to_string(&path).ok()?).ok()?;
            Some((name, code, event))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_event_file_is_rejected_with_its_reason() {
    let fx = Fixture::new(Options::default()).await;
    let events = bad_events();
    assert!(events.len() >= 15, "bad-input events: {}", events.len());
    let mut expected_rejects = 0;
    let mut expected_by_code: HashMap<String, usize> = HashMap::new();
    for (name, code, event) in &events {
        let h = fx.invoke(event, &format!("req-{name}")).await;
        assert!(!h.outcomes.is_empty(), "{name}");
        for (id, outcome) in &h.outcomes {
            match outcome {
                RecordOutcome::Rejected { code: got, .. } => {
                    assert_eq!(got, code, "{name}: record {id}")
                }
                other => panic!("{name}: record {id} was not rejected: {other:?}"),
            }
        }
        let response = h
            .response
            .as_ref()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        if let Some(failures) = response.get("batchItemFailures") {
            assert_eq!(
                failures,
                &json!([]),
                "{name}: rejects are not batch failures"
            );
        } else {
            assert_eq!(response["status"], "rejected", "{name}");
            assert_eq!(response["code"], code.as_str(), "{name}");
        }
        assert_eq!(
            h.metrics.counters.rejected as usize,
            h.outcomes.len(),
            "{name}"
        );
        assert_eq!(
            h.metrics.counters.rejects_by_reason.get(code).copied(),
            Some(h.outcomes.len() as u64),
            "{name}"
        );
        assert_eq!(h.emf["Rejected"], h.outcomes.len() as f64, "{name}");
        expected_rejects += h.outcomes.len();
        *expected_by_code.entry(code.clone()).or_default() += h.outcomes.len();
    }
    // Each rejected message is on the dead-letter queue with its reason and payload.
    let dead = fx.drain(&fx.rejects_queue_url).await;
    assert_eq!(dead.len(), expected_rejects);
    let mut by_code: HashMap<String, usize> = HashMap::new();
    for (body, attrs) in &dead {
        assert_eq!(attrs.get("code").map(String::as_str), body["code"].as_str());
        assert!(!body["reason"].as_str().unwrap_or("").is_empty(), "{body}");
        assert!(body["payload"].is_string(), "{body}");
        *by_code
            .entry(body["code"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(by_code, expected_by_code);
    // Nothing reached the window store.
    assert!(fx.manifests("rig-001", "hydraulic-cooler").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_message_never_fails_the_rest_of_its_batch() {
    let fx = Fixture::new(Options::default()).await;
    let thing = fx.thing("mixed").await;
    let good = cycles(0..1);
    let oversize = vec![b' '; 200 * 1024];
    let mut records: Vec<(String, Value)> = good[..30]
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("good-{i}"), direct_b64(&thing, &one(s))))
        .collect();
    records.insert(3, ("bad-json".into(), json!("not an event")));
    records.insert(
        7,
        (
            "bad-dup".into(),
            direct_b64(&thing, &batch(&[good[40].clone(), good[40].clone()])),
        ),
    );
    records.insert(11, ("bad-size".into(), direct_b64(&thing, &oversize)));
    records.insert(
        13,
        (
            "bad-device".into(),
            direct_b64("no such/thing", &one(&good[0])),
        ),
    );
    let h = fx.invoke(&sqs_batch(&records), "req-mixed").await;
    assert_eq!(h.response.as_ref().unwrap()["batchItemFailures"], json!([]));
    let codes: HashMap<&str, &str> = h
        .outcomes
        .iter()
        .filter_map(|(id, o)| match o {
            RecordOutcome::Rejected { code, .. } => Some((id.as_str(), *code)),
            _ => None,
        })
        .collect();
    assert_eq!(
        codes,
        HashMap::from([
            ("bad-json", "wrong_type"),
            ("bad-dup", "duplicate_seq"),
            ("bad-size", "oversize"),
            ("bad-device", "invalid_device"),
        ])
    );
    let accepted = h
        .outcomes
        .iter()
        .filter(|(_, o)| matches!(o, RecordOutcome::Accepted { samples: 1, .. }))
        .count();
    assert_eq!(accepted, 30);
    let stored = fx.stored_seqs(&thing, "hydraulic-cooler", 0).await;
    assert_eq!(stored.len(), 30);
    assert_eq!(fx.drain(&fx.rejects_queue_url).await.len(), 4);
}
