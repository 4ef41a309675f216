//! Concurrent invocations on one device, each holding samples of every window, half of them
//! redelivered by other invocations: no sample lost, no window scored twice, state applied once.

use std::collections::BTreeMap;

use futures_util::future::join_all;
use serde_json::Value;
use vigil_ingest::RecordOutcome;
use vigil_tests::fixture::{direct_b64, one, sqs_batch, Fixture, Options};
use vigil_tests::publishes;

use crate::cycles;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_invocations_on_one_device_score_each_window_once() {
    let fx = Fixture::new(Options::default()).await;
    let thing = fx.thing("busy").await;
    let samples = cycles(10..16); // healthy, then reduced cooling: an alert on the way
    let n = 12;
    let mut batches: Vec<Vec<(String, Value)>> = Vec::new();
    for shift in [0, 5] {
        for j in 0..n {
            batches.push(
                samples
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| (i + shift) % n == j)
                    .map(|(i, smp)| (format!("m{shift}-{i}"), direct_b64(&thing, &one(smp))))
                    .collect(),
            );
        }
    }
    // All at once, then Lambda's retries of the reported failures, until none is left.
    let mut pending = batches;
    let mut rounds = 0;
    let mut scored = 0;
    let mut alerts_sent = 0;
    while !pending.is_empty() {
        rounds += 1;
        assert!(rounds <= 10, "failures keep coming back");
        let handled = join_all(pending.iter().enumerate().map(|(k, records)| {
            let event = sqs_batch(records);
            let fx = &fx;
            async move { fx.invoke(&event, &format!("req-{rounds}-{k}")).await }
        }))
        .await;
        let mut next = Vec::new();
        for (records, h) in pending.iter().zip(&handled) {
            let failures = h.response.as_ref().unwrap()["batchItemFailures"]
                .as_array()
                .unwrap()
                .clone();
            for (id, o) in &h.outcomes {
                if let RecordOutcome::Failed { retryable, error } = o {
                    assert!(retryable, "{error}");
                    assert!(failures.iter().any(|f| f["itemIdentifier"] == id.as_str()));
                }
            }
            let failed: Vec<(String, Value)> = records
                .iter()
                .filter(|(id, _)| failures.iter().any(|f| f["itemIdentifier"] == id.as_str()))
                .cloned()
                .collect();
            if !failed.is_empty() {
                next.push(failed);
            }
            scored += h.metrics.counters.windows_scored;
            alerts_sent += h.alerts.len();
        }
        pending = next;
    }

    // Every window exactly once, with all of its samples.
    assert_eq!(scored, 6);
    if vigil_tests::recorded() {
        let pubs = publishes(&format!("dt/vigil/{thing}/condition"));
        let mut by_window: BTreeMap<u64, usize> = BTreeMap::new();
        for p in &pubs {
            let v: Value = serde_json::from_slice(&p.payload).unwrap();
            assert_eq!(v["completeness"], 1.0, "{v}");
            assert_eq!(v["filled"], 0, "{v}");
            *by_window.entry(v["window"].as_u64().unwrap()).or_default() += 1;
        }
        assert_eq!(by_window, (10..16).map(|w| (w, 1)).collect());
    }
    // No window markers: a close is one conditional write, the state save.
    assert!(fx.manifests(&thing, "hydraulic-cooler").await.is_empty());
    assert_eq!(
        fx.closed_windows(&thing, "hydraulic-cooler", 0..20).await,
        (10..16).collect::<Vec<_>>()
    );
    // Chunks hold each window's seqs (duplicates included), except perhaps its last: the
    // delivery that committed the close had it in memory and never stored it.
    for w in 10u64..16 {
        let mut seqs = fx.stored_seqs(&thing, "hydraulic-cooler", w).await;
        if seqs.last() != Some(&(w * 60 + 59)) {
            seqs.push(w * 60 + 59);
        }
        assert_eq!(seqs, (w * 60..(w + 1) * 60).collect::<Vec<_>>());
    }
    assert_eq!(fx.archived().await.len(), 6);
    // The state moved forward once per applied window; alerts went out once each.
    let (state, version) = fx.state(&thing, "hydraulic-cooler").await.unwrap();
    assert_eq!(state["applied_window"], 15);
    assert!(state.get("outbox").is_none(), "nothing left unsent");
    assert_eq!(state["pending"]["window"], 15);
    assert!(version <= 6 + alerts_sent as u64, "version {version}");
    let delivered = fx.alerts().await;
    assert_eq!(delivered.len(), alerts_sent);
    let mut keys: Vec<String> = delivered
        .iter()
        .map(|a| a["Subject"].as_str().unwrap().to_string())
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), delivered.len(), "no alert twice");
}
