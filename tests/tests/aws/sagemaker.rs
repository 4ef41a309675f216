//! The SageMaker scorer: TF Serving answers from the endpoint, the bundled ONNX model when the
//! endpoint fails or times out, and a retryable failure when there is no fallback.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use vigil_aws::SagemakerScorer;
use vigil_core::profile::SagemakerFormat;
use vigil_core::scorer::{ScoreError, Scorer};
use vigil_core::transform::Matrix;
use vigil_ingest::RecordOutcome;
use vigil_tests::fixture::{batch, direct_b64, sqs_batch, Fixture, Options};
use vigil_tests::{publishes, sagemaker_answers, sagemaker_lock, unique};

use crate::{cycles, data};

fn window(c: usize) -> Matrix {
    let rows = &data().cycles[c];
    Matrix::new(60, 4, rows.iter().flat_map(|r| r.iter().copied()).collect())
}

fn options(endpoint: &str, fallback: bool) -> Options {
    Options {
        default_profile: "hydraulic-sagemaker".into(),
        sagemaker_endpoint: Some(endpoint.into()),
        sagemaker_fallback: fallback,
        ..Options::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_answers_then_fallback_to_the_bundled_model() {
    if !vigil_tests::emulators().is_moto {
        return; // canned SageMaker answers are a moto feature
    }
    let endpoint = unique("cooler");
    let fx = Fixture::new(options(&endpoint, true)).await;
    let thing = fx.thing("sm").await;
    let onnx = fx.runtime.profiles["hydraulic-cooler"].scorer.clone();
    let expected_fallback = onnx.score(&window(2), &mut None).await.unwrap();

    let _guard = sagemaker_lock().await;
    sagemaker_answers(&[
        r#"{"predictions": [[0.1, 0.2, 0.7]]}"#.into(),
        r#"{"predictions": [[0.8, 0.15, 0.05]]}"#.into(),
    ]);
    for c in 0..2 {
        let h = fx
            .invoke(
                &direct_b64(&thing, &batch(&cycles(c..c + 1))),
                &format!("r{c}"),
            )
            .await;
        assert!(h.response.is_ok(), "{:?}", h.response);
    }
    // No answer queued: moto returns a body that is not TF Serving JSON, the fallback scores.
    let h = fx
        .invoke(&direct_b64(&thing, &batch(&cycles(2..3))), "r2")
        .await;
    assert!(h.response.is_ok(), "{:?}", h.response);
    drop(_guard);

    let results: Vec<Value> = publishes(&format!("dt/vigil/{thing}/condition"))
        .iter()
        .map(|p| serde_json::from_slice(&p.payload).unwrap())
        .collect();
    assert_eq!(results.len(), 3);
    assert_eq!(
        (results[0]["label"].as_str(), results[0]["source"].as_str()),
        (Some("100"), Some("sagemaker"))
    );
    assert_eq!(results[0]["model_version"], format!("sagemaker:{endpoint}"));
    let probs: Vec<f32> = results[0]["probabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(probs, vec![0.1f32, 0.2, 0.7]);
    assert_eq!(
        (results[1]["label"].as_str(), results[1]["source"].as_str()),
        (Some("3"), Some("sagemaker"))
    );
    assert_eq!(results[2]["source"], "sagemaker-fallback-onnx");
    assert_eq!(results[2]["label"], expected_fallback.label.as_str());
    assert_eq!(
        results[2]["model_version"],
        expected_fallback.model_version.as_str()
    );
    let shadow = fx.shadow(&thing).await;
    assert_eq!(
        shadow["state"]["reported"]["source"],
        "sagemaker-fallback-onnx"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_fallback_a_failing_endpoint_fails_the_message() {
    if !vigil_tests::emulators().is_moto {
        return;
    }
    let fx = Fixture::new(options(&unique("cooler"), false)).await;
    let thing = fx.thing("nofb").await;
    // moto caches answers by request body whatever the endpoint: a cycle no other test sends.
    let records = vec![("m1".to_string(), direct_b64(&thing, &batch(&cycles(5..6))))];
    let _guard = sagemaker_lock().await;
    let h = fx.invoke(&sqs_batch(&records), "r").await;
    drop(_guard);
    assert_eq!(
        h.response.as_ref().unwrap()["batchItemFailures"],
        serde_json::json!([{"itemIdentifier": "m1"}])
    );
    assert!(
        matches!(&h.outcomes[0].1, RecordOutcome::Failed { error, .. } if error.contains("scorer")),
        "{:?}",
        h.outcomes
    );
    assert!(publishes(&format!("dt/vigil/{thing}/condition")).is_empty());
}

/// A SageMaker client pointed at a loopback port that accepts and never answers.
async fn silent_endpoint() -> (
    aws_sdk_sagemakerruntime::Client,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let sdk = vigil_tests::fixture::sdk_config().await;
    let conf = aws_sdk_sagemakerruntime::config::Builder::from(&sdk)
        .endpoint_url(url)
        .build();
    (aws_sdk_sagemakerruntime::Client::from_conf(conf), task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_falls_back_or_is_retryable() {
    let (client, task) = silent_endpoint().await;
    let labels: Vec<String> = ["3", "20", "100"].iter().map(|s| s.to_string()).collect();
    let fx_profiles = {
        let cfg = vigil_tests::fixture::config_for(
            "unused-table",
            "arn:aws:sns:us-east-1:1:x",
            "b",
            "http://q",
            "",
            &Options::default(),
        );
        vigil_ingest::wiring::load_profiles(&cfg.models_dir, &cfg, &client).unwrap()
    };
    let onnx = fx_profiles["hydraulic-cooler"].scorer.clone();
    let with_fallback = SagemakerScorer::new(
        client.clone(),
        "cooler",
        labels.clone(),
        SagemakerFormat::TfServing,
        Duration::from_millis(300),
        Some(Arc::clone(&onnx)),
    );
    let started = std::time::Instant::now();
    let score = with_fallback.score(&window(30), &mut None).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(score.source, "sagemaker-fallback-onnx");
    assert_eq!(
        score.label,
        onnx.score(&window(30), &mut None).await.unwrap().label
    );

    let without = SagemakerScorer::new(
        client,
        "cooler",
        labels,
        SagemakerFormat::TfServing,
        Duration::from_millis(300),
        None,
    );
    match without.score(&window(30), &mut None).await {
        Err(e @ ScoreError::Unavailable(_)) => assert!(e.is_retryable()),
        other => panic!("expected a retryable timeout, got {other:?}"),
    }
    task.abort();
}
