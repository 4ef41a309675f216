//! Write units per sample (DynamoDB Local reports consumed capacity) and warm handler latency,
//! for one sample per message, 60 samples per message, and SQS batches of ten 1-sample messages.
//! The figures are printed and written to `target/emulators/cost.json` for docs/aws.md.

use serde_json::{json, Value};
use vigil_tests::fixture::{batch, direct_b64, one, sqs_batch, Fixture, Options};
use vigil_tests::repo_root;

use crate::cycles;

struct Run {
    messages: usize,
    samples: usize,
    wcu: f64,
    rcu: f64,
    latency_ms: Vec<f64>,
}

impl Run {
    fn json(&self) -> Value {
        let mut l = self.latency_ms.clone();
        l.sort_by(f64::total_cmp);
        json!({
            "messages": self.messages,
            "samples": self.samples,
            "wcu_per_sample": self.wcu / self.samples as f64,
            "rcu_per_sample": self.rcu / self.samples as f64,
            "latency_ms_p50": l[l.len() / 2],
            "latency_ms_p90": l[l.len() * 9 / 10],
            "latency_ms_mean": l.iter().sum::<f64>() / l.len() as f64,
        })
    }
}

async fn run(fx: &Fixture, events: Vec<(Value, usize, usize)>) -> Run {
    let mut r = Run {
        messages: 0,
        samples: 0,
        wcu: 0.0,
        rcu: 0.0,
        latency_ms: vec![],
    };
    for (k, (event, messages, samples)) in events.into_iter().enumerate() {
        let h = fx.invoke(&event, &format!("req-{k}")).await;
        assert!(h.response.is_ok(), "{:?}", h.response);
        if let Some(f) = h.response.as_ref().unwrap().get("batchItemFailures") {
            assert_eq!(f, &json!([]));
        }
        r.messages += messages;
        r.samples += samples;
        r.wcu += h.metrics.dynamo_write_units;
        r.rcu += h.metrics.dynamo_read_units;
        r.latency_ms.push(h.metrics.latency_ms / messages as f64);
    }
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_units_per_sample_and_latency() {
    let fx = Fixture::new(Options::default()).await;
    let single = fx.thing("single").await;
    let batched = fx.thing("batched").await;
    let sqs = fx.thing("sqs").await;
    // Warm up (first calls open connections).
    fx.invoke(&direct_b64(&single, &one(&cycles(0..1)[0])), "warm")
        .await;

    let s = cycles(0..4);
    let single_run = run(
        &fx,
        s[1..]
            .iter()
            .map(|smp| (direct_b64(&single, &one(smp)), 1, 1))
            .collect(),
    )
    .await;
    let b = cycles(0..10);
    let batched_run = run(
        &fx,
        b.chunks(60)
            .map(|c| (direct_b64(&batched, &batch(c)), 1, 60))
            .collect(),
    )
    .await;
    let q = cycles(0..4);
    let sqs_run = run(
        &fx,
        q.chunks(10)
            .enumerate()
            .map(|(i, c)| {
                let records: Vec<(String, Value)> = c
                    .iter()
                    .enumerate()
                    .map(|(k, smp)| (format!("m{i}-{k}"), direct_b64(&sqs, &one(smp))))
                    .collect();
                (sqs_batch(&records), c.len(), c.len())
            })
            .collect(),
    )
    .await;

    let report = json!({
        "single_sample_messages": single_run.json(),
        "batched_60_samples_per_message": batched_run.json(),
        "sqs_batches_of_10_single_sample_messages": sqs_run.json(),
        "note": "debug build, in-process handler, DynamoDB Local + moto server on loopback; latency is per message",
    });
    eprintln!("{}", serde_json::to_string_pretty(&report).unwrap());
    let out = repo_root().join("target/emulators/cost.json");
    std::fs::write(&out, serde_json::to_string_pretty(&report).unwrap()).unwrap();

    // The design's bounds: two 1-KB writes per single-sample message (chunk + manifest) plus
    // the window's claim/finish/state amortized; a 60-sample message is one window's chunk.
    let per = |r: &Run| r.wcu / r.samples as f64;
    assert!(
        per(&single_run) > 1.9 && per(&single_run) < 2.3,
        "single: {}",
        per(&single_run)
    );
    assert!(per(&batched_run) < 0.15, "batched: {}", per(&batched_run));
    assert!(per(&sqs_run) < 0.4, "sqs: {}", per(&sqs_run));
}
