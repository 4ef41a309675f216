//! Fleet load on the Lambda path, small: 20 devices × 2 cycles in a reconnect storm through the
//! in-process handler, direct and SQS, 16 invocations at once. Nothing lost, nothing twice, every
//! device's windows published and applied (the bench: `fleet-lambda`, docs/aws.md).

use vigil_tests::fleet::{run, FleetOptions, FleetReport, Mode};

async fn storm(mode: Mode) -> FleetReport {
    let report = run(FleetOptions {
        devices: 20,
        cycles: 2,
        batch: 10,
        mode,
        concurrency: 16,
        ..FleetOptions::default()
    })
    .await
    .expect("fleet run");
    eprintln!("{}", report.summary());
    report
}

fn check(r: &FleetReport) {
    assert_eq!(r.messages, 20 * 12, "{r:?}");
    assert_eq!(r.windows_expected, 40);
    assert_eq!(r.loss, 0, "missing (device, window): {:?}", r.missing);
    assert_eq!(r.windows_published, 40);
    assert_eq!(r.duplicate_results, 0);
    assert_eq!(r.incomplete_results, 0);
    assert_eq!(r.lost_messages, 0);
    assert_eq!(r.rejected_messages, 0);
    // Samples can come back after their window closed: a record reported failed after it was
    // counted is redelivered (at-least-once); they change nothing (no incomplete nor duplicate
    // result above).
    // Every device got its windows: all manifests done, the state applied the last one.
    assert_eq!(r.windows_done_in_dynamodb, Some(40));
    assert_eq!(r.devices_complete, Some(20));
    assert!(r.ok());
    assert!(r.latency_ms_p50.is_finite() && r.latency_ms_p50 <= r.latency_ms_max);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_storm_direct_loses_nothing() {
    let r = storm(Mode::Direct).await;
    check(&r);
    assert_eq!(r.invocations, r.messages + r.redelivered_messages);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_storm_sqs_loses_nothing() {
    let r = storm(Mode::Sqs).await;
    check(&r);
    // 240 records in batches of 10, plus the redeliveries of reported failures.
    assert!(r.invocations >= 24, "{}", r.invocations);
}
