//! Lambda retrying an event that half-succeeded: after a crash between two writes, after SNS
//! failed once the close was committed, after S3 failed once the result was out.

use serde_json::Value;
use vigil_aws::codec;
use vigil_core::ports::{AlertSink, WindowArchive};
use vigil_core::ports::{Chunk, PendingClose};
use vigil_ingest::{Handled, HandlerError, Invocation, RecordOutcome};
use vigil_tests::fixture::{batch, direct_b64, sqs_batch, Fixture, Options};
use vigil_tests::flaky::Flaky;
use vigil_tests::publishes;

use crate::cycles;

/// Invokes with some ports replaced.
async fn invoke_with(
    fx: &Fixture,
    alerts: Option<&dyn AlertSink>,
    archive: Option<&dyn WindowArchive>,
    event: &Value,
    request_id: &str,
    now: Option<u64>,
) -> Handled {
    let mut app = fx.runtime.app();
    app.print_metrics = false;
    if let Some(a) = alerts {
        app.ports.alerts = a;
    }
    if let Some(a) = archive {
        app.ports.archive = a;
    }
    let inv = Invocation {
        request_id: request_id.into(),
        deadline_ms: None,
        now_ms: now,
    };
    vigil_ingest::handle_detailed(&app, event, &inv).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_stored_before_a_crash_is_counted_on_the_retry() {
    let fx = Fixture::new(Options::default()).await;
    let thing = fx.thing("crash").await;
    let samples = cycles(0..1);
    // The first attempt stored the chunk and died before counting it in the window.
    let chunk = Chunk::new(samples.clone());
    fx.ddb
        .put_item()
        .table_name(&fx.table)
        .item(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!(
                "C#{thing}#hydraulic-cooler#{:020}",
                0
            )),
        )
        .item(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S(chunk.id.clone()),
        )
        .item(
            "d",
            aws_sdk_dynamodb::types::AttributeValue::B(codec::encode(&samples).unwrap().into()),
        )
        .send()
        .await
        .unwrap();
    let event = direct_b64(&thing, &batch(&samples));
    let h = fx.invoke(&event, "req-1").await;
    // Its samples were stored already (by the attempt that died): known, and in the window.
    assert_eq!(
        h.outcomes[0].1,
        RecordOutcome::Accepted {
            samples: 60,
            duplicates: 60,
            late: 0
        }
    );
    assert_eq!(h.results.len(), 1);
    assert_eq!(h.results[0].completeness, 1.0);
    assert_eq!(
        fx.closed_windows(&thing, "hydraulic-cooler", 0..2).await,
        vec![0]
    );
    assert_eq!(
        fx.stored_seqs(&thing, "hydraulic-cooler", 0).await.len(),
        60
    );
    // And a third delivery changes nothing.
    let h = fx.invoke(&event, "req-1").await;
    assert_eq!(
        h.outcomes[0].1,
        RecordOutcome::Accepted {
            samples: 60,
            duplicates: 0,
            late: 60
        }
    );
    if vigil_tests::recorded() {
        assert_eq!(publishes(&format!("dt/vigil/{thing}/condition")).len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_lost_to_an_sns_failure_is_sent_by_the_retry_and_applied_once() {
    let fx = Fixture::new(Options::default()).await;
    let thing = fx.thing("sns").await;
    // Cycles 0..12 healthy, 12 and 13 reduced: the alert is raised by window 13.
    for c in 0..13 {
        let h = fx
            .invoke(
                &direct_b64(&thing, &batch(&cycles(c..c + 1))),
                &format!("req-{c}"),
            )
            .await;
        assert!(h.response.is_ok(), "{:?}", h.response);
        assert!(h.alerts.is_empty());
    }
    let (_, version_before) = fx.state(&thing, "hydraulic-cooler").await.unwrap();
    let event = direct_b64(&thing, &batch(&cycles(13..14)));
    let sns_down = Flaky::new(&fx.runtime.ports.alerts, u32::MAX);
    let h = invoke_with(&fx, Some(&sns_down), None, &event, "req-13", None).await;
    match &h.response {
        Err(
            e @ HandlerError::Failed {
                retryable: true, ..
            },
        ) => assert_eq!(e.error_type(), "Vigil.Retryable"),
        other => panic!("expected a retryable failure, got {other:?}"),
    }
    // The close was committed before its effects, with what they send and who committed it.
    let (state, version) = fx.state(&thing, "hydraulic-cooler").await.unwrap();
    assert_eq!(version, version_before + 1);
    assert_eq!(state["applied_window"], 13);
    assert_eq!(state["pending"]["window"], 13);
    assert_eq!(state["pending"]["by"], PendingClose::token("req-13"));
    assert_eq!(
        state["pending"]["a"].as_array().unwrap().len(),
        1,
        "its alert"
    );
    assert!(fx.alerts().await.is_empty());
    // The archive went out together with the alert that failed, and was withdrawn: it must
    // not tell the retry that everything went out.
    assert_eq!(
        fx.archived().await.len(),
        13,
        "window 13's archive withdrawn"
    );
    // Another delivery of the same samples (another request id) finds the window closed by
    // someone else: it sends nothing.
    let h = fx.invoke(&event, "req-13-duplicate").await;
    assert!(h.response.is_ok(), "{:?}", h.response);
    assert!(h.alerts.is_empty() && h.results.is_empty());
    // Lambda's retry of the failed invocation (same request id) finds its own commit and sends
    // what it recorded: the alert goes out, the state is not applied twice.
    let h = fx.invoke(&event, "req-13").await;
    assert!(h.response.is_ok(), "{:?}", h.response);
    let alerts = fx.alerts().await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["MessageAttributes"]["condition"]["Value"], "20");
    assert_eq!(
        alerts[0]["MessageAttributes"]["severity"]["Value"],
        "warning"
    );
    let (state, version) = fx.state(&thing, "hydraulic-cooler").await.unwrap();
    assert_eq!(state["applied_window"], 13);
    assert_eq!(
        state["alert"]["unhealthy_streak"], 2,
        "window 13 counted once"
    );
    assert_eq!(version, version_before + 1, "applied once");
    assert_eq!(fx.archived().await.len(), 14);
    // A duplicate of that retry (same id) finds the window archived: everything went out.
    let h = fx.invoke(&event, "req-13").await;
    assert!(h.response.is_ok(), "{:?}", h.response);
    assert!(h.alerts.is_empty() && h.results.is_empty());
    assert!(fx.alerts().await.is_empty(), "no alert twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_failure_fails_only_its_device_and_the_retry_finishes_the_window() {
    let fx = Fixture::new(Options::default()).await;
    let a = fx.thing("a").await;
    let b = fx.thing("b").await;
    let records = vec![
        ("ma".to_string(), direct_b64(&a, &batch(&cycles(0..1)))),
        ("mb".to_string(), direct_b64(&b, &batch(&cycles(1..2)))),
    ];
    let s3_down_for_a = Flaky::new(&fx.runtime.ports.archive, 1).for_device(&a);
    let h = invoke_with(
        &fx,
        None,
        Some(&s3_down_for_a),
        &sqs_batch(&records),
        "req-1",
        None,
    )
    .await;
    assert_eq!(
        h.response.as_ref().unwrap()["batchItemFailures"],
        serde_json::json!([{"itemIdentifier": "ma"}])
    );
    assert_eq!(
        fx.closed_windows(&b, "hydraulic-cooler", 0..3).await,
        vec![1]
    );
    // a's close was committed (before its effects) in the name of its SQS message.
    let (state, version) = fx.state(&a, "hydraulic-cooler").await.unwrap();
    assert_eq!(state["pending"]["by"], PendingClose::token("ma"));
    assert_eq!(version, 1);
    assert_eq!(
        fx.closed_windows(&a, "hydraulic-cooler", 0..3).await,
        vec![0]
    );
    // SQS redelivers the failed record (same message id, another invocation): it sends again.
    let retry = sqs_batch(&records[..1]);
    let h = fx.invoke(&retry, "req-2").await;
    assert_eq!(
        h.response.as_ref().unwrap()["batchItemFailures"],
        serde_json::json!([])
    );
    assert_eq!(
        fx.closed_windows(&a, "hydraulic-cooler", 0..3).await,
        vec![0]
    );
    assert_eq!(
        fx.state(&a, "hydraulic-cooler").await.unwrap().1,
        1,
        "applied once"
    );
    let keys = fx.archived().await;
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().any(|k| k.contains(&format!("device={a}/"))));
}
