//! Replays of real hydraulic cycles with duplicates, reordering and redelivered batches: every
//! window is scored exactly once and the verdicts, alerts and state equal a clean in-order run
//! of the same pipeline in memory.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use vigil_core::memory::MemoryPorts;
use vigil_core::{DeviceId, Message, Pipeline, PipelineConfig};
use vigil_tests::fixture::{direct_b64, one, s, sqs_batch, Fixture, Options};
use vigil_tests::{condition_results, Rng};

use crate::cycles;

/// The reference: the same profiles over in-memory ports, one message per sample, in order.
pub async fn reference(
    fx: &Fixture,
    device: &str,
    samples: &[vigil_core::Sample],
) -> (
    Vec<vigil_core::ports::WindowResult>,
    Vec<vigil_core::ports::AlertEvent>,
) {
    let ports = MemoryPorts::new();
    let config = PipelineConfig {
        default_profile: fx.options.default_profile.clone(),
        ..PipelineConfig::default()
    };
    let pipeline = Pipeline::new(&fx.runtime.profiles, ports.ports(), config).unwrap();
    for (i, smp) in samples.iter().enumerate() {
        let m = Message {
            id: i.to_string(),
            device: DeviceId::new(device).unwrap(),
            payload: one(smp),
        };
        pipeline.process(&[m], 1_700_000_000_000).await;
    }
    (ports.recorder.results(), ports.recorder.alerts())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_with_duplicates_and_reordering_scores_each_window_once() {
    let fx = Fixture::new(Options::default()).await;
    let thing = fx.thing("replay").await;
    let samples = cycles(0..36);
    let (ref_results, ref_alerts) = reference(&fx, &thing, &samples).await;
    assert_eq!(ref_results.len(), 36);
    assert!(
        !ref_alerts.is_empty(),
        "the excerpt goes from healthy to failing: alerts expected"
    );

    // Bounded reordering, then ~15% of messages delivered again a little later.
    let mut rng = Rng::new(7);
    let mut order: Vec<usize> = (0..samples.len()).collect();
    rng.shuffle_blocks(&mut order, 25);
    let mut stream: Vec<usize> = Vec::new();
    for (k, &i) in order.iter().enumerate() {
        stream.push(i);
        if rng.below(100) < 15 {
            let at = (k + 1 + rng.below(30)).min(order.len());
            stream.push(order[at.min(order.len() - 1)]);
        }
    }
    let mut sent_batches = 0;
    let mut accepted_samples = 0;
    let mut reported = Vec::new();
    let mut scored_total = 0;
    for (b, ids) in stream.chunks(10).enumerate() {
        let records: Vec<(String, Value)> = ids
            .iter()
            .enumerate()
            .map(|(k, &i)| {
                let body = direct_b64(&thing, &one(&samples[i]));
                (format!("m-{b}-{k}"), body)
            })
            .collect();
        let event = sqs_batch(&records);
        // SQS redelivers whole batches now and then (at-least-once).
        let deliveries = if b % 17 == 5 { 2 } else { 1 };
        for d in 0..deliveries {
            let h = fx.invoke(&event, &format!("req-{b}-{d}")).await;
            assert_eq!(
                h.response.as_ref().unwrap()["batchItemFailures"],
                json!([]),
                "batch {b}: {:?}",
                h.outcomes
            );
            accepted_samples += h.metrics.counters.samples as usize;
            scored_total += h.metrics.counters.windows_scored;
            reported.extend(h.results);
            if d == 1 {
                // The same batch makes the same chunks: every sample is known as a duplicate,
                // or as late when its window closed in between.
                let c = &h.metrics.counters;
                assert_eq!((c.duplicates + c.late) as usize, ids.len(), "batch {b}");
                assert_eq!(h.metrics.counters.windows_scored, 0, "batch {b}");
            }
            sent_batches += 1;
        }
    }
    assert!(sent_batches > 216);
    assert_eq!(scored_total, 36);
    assert!(
        accepted_samples > stream.len(),
        "every delivery is accepted"
    );

    // Exactly one result per window, equal to the reference.
    let mut by_window: BTreeMap<u64, Vec<Value>> = BTreeMap::new();
    for v in condition_results(&thing, &reported) {
        by_window
            .entry(v["window"].as_u64().unwrap())
            .or_default()
            .push(v);
    }
    assert_eq!(by_window.len(), 36);
    for r in &ref_results {
        let got = &by_window[&r.window];
        assert_eq!(
            got.len(),
            1,
            "window {} published {} times",
            r.window,
            got.len()
        );
        assert_eq!(got[0]["label"], r.label.as_str(), "window {}", r.window);
        assert_eq!(got[0]["completeness"], 1.0);
        assert_eq!(got[0]["filled"], 0);
        let probs: Vec<f32> = got[0]["probabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(probs, r.probabilities, "window {}", r.window);
    }
    // DynamoDB: no window markers (no claims); every window closed in the state, which applied
    // each window once, in order.
    assert!(fx.manifests(&thing, "hydraulic-cooler").await.is_empty());
    let chunks = fx
        .partition(&format!("C#{thing}#hydraulic-cooler#{:020}", 7))
        .await;
    assert!(!chunks.is_empty());
    for c in &chunks {
        assert!(s(c, "expires_at").parse::<u64>().unwrap() > 1_700_000_000);
    }
    assert_eq!(
        fx.closed_windows(&thing, "hydraulic-cooler", 0..40).await,
        (0..36).collect::<Vec<_>>()
    );
    let (state, version) = fx.state(&thing, "hydraulic-cooler").await.unwrap();
    assert_eq!(state["applied_window"], 35);
    // One state write per window: the commit of its close (its effects are sent after it).
    assert_eq!(version, 36);
    assert!(state.get("outbox").is_none(), "nothing left unsent");
    // Alerts: the same transitions as the reference, delivered through SNS to SQS.
    let alerts = fx.alerts().await;
    assert_eq!(alerts.len(), ref_alerts.len());
    let mut got: Vec<(u64, String)> = alerts
        .iter()
        .map(|a| {
            let msg = a["Message"].as_str().unwrap();
            let json_part = &msg[msg.find("-- event --").unwrap() + 12..];
            let ev: Value = serde_json::from_str(json_part.trim()).unwrap();
            (
                ev["window"].as_u64().unwrap(),
                ev["transition"]["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    let want: Vec<(u64, String)> = ref_alerts
        .iter()
        .map(|a| (a.window, a.transition.kind().to_string()))
        .collect();
    assert_eq!(got, want);
    // Archive and shadow.
    assert_eq!(fx.archived().await.len(), 36);
    let shadow = fx.shadow(&thing).await;
    assert_eq!(shadow["state"]["reported"]["window"], 35);
    assert_eq!(
        shadow["state"]["reported"]["label"],
        ref_results[35].label.as_str()
    );
}
