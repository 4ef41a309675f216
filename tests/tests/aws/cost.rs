//! The cost bounds of the direct path (docs/aws.md), asserted: DynamoDB write units, read
//! units and requests per sample, as DynamoDB Local reports them (`ReturnConsumedCapacity`),
//! for the scenarios of `make bench-aws` run in-process over a few cycles. These counts are
//! deterministic; time and memory are measured by `make bench-aws` (the deployed `bootstrap`).

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

/// A device whose operators used its alarms a lot: 40 actions with notes fill the condition's
/// history (32 changes) and the remembered action ids, ~4 KB of state JSON, which every close
/// saves whole. Stored deflated (`crates/aws/src/dynamo/state_item.rs`), a close still costs
/// one write unit, and the direct path stays at one write unit per sample.
#[tokio::test(flavor = "current_thread")]
async fn a_state_grown_by_alarm_history_still_closes_for_one_write_unit() {
    let fx = Fixture::new(Options::default()).await;
    let thing = fx.thing("busy-alarms").await;
    for v in 0..40u64 {
        let action = if v % 2 == 0 { "disable" } else { "enable" };
        let delta = serde_json::json!({
            "vigil_event": "alarm", "thing": thing, "version": v + 1,
            "state": {"action": {"condition": "20", "by": "operator-on-call", "action": action,
                      "note": format!("shift {v}: maintenance window, pump B checked and logged")}},
        });
        let h = fx.invoke(&delta, &format!("alarm-{v}")).await;
        assert!(h.response.is_ok(), "action {v}: {:?}", h.response);
    }
    let (state, _) = fx.state(&thing, "hydraulic-cooler").await.expect("state");
    let json_len = state.to_string().len();
    assert!(
        json_len > 3_000,
        "the history fills the state: {json_len} bytes"
    );
    let samples: Vec<_> = cycles(10..12)
        .into_iter()
        .map(|mut smp| {
            smp.seq -= 600;
            smp
        })
        .collect();
    let direct = scenarios()
        .into_iter()
        .find(|s| s.name == "direct_1")
        .expect("direct_1");
    let mut runs = Vec::new();
    for (k, inv) in events(&direct, &thing, &samples).into_iter().enumerate() {
        let h = fx.invoke(&inv.event, &format!("busy-{k}")).await;
        assert!(h.response.is_ok(), "{:?}", h.response);
        let m = Measured {
            write_units: h.metrics.dynamo_write_units,
            read_units: h.metrics.dynamo_read_units,
            requests: h.metrics.dynamo_requests as f64,
            latency_ms: h.metrics.latency_ms,
        };
        if h.metrics.counters.windows_scored > 0 {
            assert_eq!(m.write_units, 1.0, "closing message {k}: one write unit");
        }
        runs.push((inv, m));
    }
    let f = figures(&runs);
    assert_eq!(check_bounds("direct_1", &f), None, "{f:?}");
    assert!(fx.state(&thing, "hydraulic-cooler").await.unwrap().0["applied_window"] == 1);
}
