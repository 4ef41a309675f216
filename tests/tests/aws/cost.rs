//! The cost bounds of the direct path (docs/aws.md), asserted: DynamoDB write units, read
//! units and requests per sample, as DynamoDB Local reports them (`ReturnConsumedCapacity`),
//! for the scenarios of `make bench-aws` run in-process over a few cycles. These counts are
//! deterministic; time and memory are measured by `make bench-aws` (release `bootstrap`).

use vigil_tests::bench::{check_bounds, events, figures, scenarios, Measured};
use vigil_tests::fixture::{Fixture, Options};

use crate::cycles;

#[tokio::test(flavor = "current_thread")]
async fn write_read_units_and_requests_per_sample_stay_within_bounds() {
    let fx = Fixture::new(Options::default()).await;
    // Six cycles, healthy then reduced cooling: windows 0..5 close (the last one at its last
    // seq), so every per-window cost is in the figures, an alert's too (the state item, with
    // the pending close and the alarm, must stay one write unit).
    let samples: Vec<_> = cycles(10..16)
        .into_iter()
        .map(|mut smp| {
            smp.seq -= 600; // a device counting from 0 (windows 0..5)
            smp
        })
        .collect();
    let mut failures = Vec::new();
    for s in scenarios() {
        let thing = fx.thing(&s.name.replace('_', "-")).await;
        let mut runs = Vec::new();
        for (k, inv) in events(&s, &thing, &samples).into_iter().enumerate() {
            let h = fx.invoke(&inv.event, &format!("{}-{k}", s.name)).await;
            let response = h.response.as_ref().expect("invocation");
            if let Some(f) = response.get("batchItemFailures") {
                assert_eq!(f, &serde_json::json!([]), "{}", s.name);
            }
            let m = Measured {
                write_units: h.metrics.dynamo_write_units,
                read_units: h.metrics.dynamo_read_units,
                requests: h.metrics.dynamo_requests as f64,
                latency_ms: h.metrics.latency_ms,
            };
            runs.push((inv, m));
        }
        let f = figures(&runs);
        if let Some((state, _)) = fx.state(&thing, "hydraulic-cooler").await {
            eprintln!("{}: state {} bytes", s.name, state.to_string().len());
        }
        eprintln!("{}: {}", s.name, serde_json::to_string(&f).unwrap());
        let results = vigil_tests::condition_results(&thing, &[]);
        if vigil_tests::recorded() {
            assert_eq!(results.len(), 6, "{}: one result per window", s.name);
        }
        failures.extend(check_bounds(s.name, &f));
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
