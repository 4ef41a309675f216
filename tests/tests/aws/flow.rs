//! The main flow: direct events of both shapes, Kinesis batches, the device registry, results on
//! the topic and the shadow, alerts with attributes, archived windows, models from S3.

use serde_json::{json, Value};
use vigil_ingest::RecordOutcome;
use vigil_tests::fixture::{
    batch, direct_b64, kinesis_batch, one, Fixture, Options, S3_PROFILE_DESCRIPTION,
};
use vigil_tests::{condition_results, publishes, repo_root};

use crate::cycles;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_events_of_both_shapes_score_a_window() {
    let fx = Fixture::new(Options::default()).await;
    let thing = fx.thing("rig").await;
    let samples = cycles(0..2);
    let mut reported = Vec::new();
    for (i, smp) in samples.iter().enumerate() {
        let event = direct_b64(&thing, &one(smp));
        let h = fx.invoke(&event, &format!("req-{i}")).await;
        assert_eq!(
            h.outcomes[0].1,
            RecordOutcome::Accepted {
                samples: 1,
                duplicates: 0,
                late: 0
            }
        );
        let response = h.response.as_ref().unwrap();
        assert_eq!(response["status"], "accepted");
        // One EMF document per invocation, in the Vigil namespace.
        assert_eq!(h.emf["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Vigil");
        assert_eq!(h.emf["Messages"], 1.0);
        assert_eq!(h.emf["WindowsScored"], if i % 60 == 59 { 1.0 } else { 0.0 });
        // One write per message: a chunk, or for the one holding the window's last seq, the
        // state save that commits the close.
        let wcu = h.emf["DynamoWriteUnits"].as_f64().unwrap();
        assert!((1.0..=3.0).contains(&wcu), "{wcu}");
        reported.extend(h.results);
    }
    assert!(fx.manifests(&thing, "hydraulic-cooler").await.is_empty());
    assert_eq!(
        fx.closed_windows(&thing, "hydraulic-cooler", 0..4).await,
        vec![0, 1]
    );
    let pubs = condition_results(&thing, &reported);
    assert_eq!(pubs.len(), 2, "one result per window");
    if vigil_tests::recorded() {
        assert!(publishes("dt/vigil/")
            .iter()
            .filter(|p| p.topic.contains(&thing))
            .all(|p| p.qos == Some(1)));
    }
    let first = pubs[0].clone();
    assert_eq!(
        (
            first["window"].as_u64(),
            first["seq_start"].as_u64(),
            first["seq_end"].as_u64()
        ),
        (Some(0), Some(0), Some(60))
    );
    assert_eq!(first["device"], thing.as_str());
    // The shadow holds the latest window's verdict.
    let reported = fx.shadow(&thing).await["state"]["reported"].clone();
    assert_eq!(reported["window"], 1);
    assert_eq!(
        (reported["seq_start"].as_u64(), reported["seq_end"].as_u64()),
        (Some(60), Some(120))
    );
    let second = pubs[1].clone();
    assert_eq!(reported["label"], second["label"]);
    assert_eq!(reported["model_version"], second["model_version"]);
    assert_eq!(reported["time"], second["scored_at_ms"]);
    let probs = reported["probabilities"].as_object().unwrap();
    assert_eq!(probs.keys().collect::<Vec<_>>().len(), 3);
    assert!((probs.values().map(|p| p.as_f64().unwrap()).sum::<f64>() - 1.0).abs() < 1e-3);
    // Archive: partitioned by profile, date (device time) and device; the window's samples.
    let keys = fx.archived().await;
    assert_eq!(keys, vec![
        format!("windows/profile=hydraulic-cooler/date=2023-11-14/device={thing}/00000000000000000000.json"),
        format!("windows/profile=hydraulic-cooler/date=2023-11-14/device={thing}/00000000000000000001.json"),
    ]);
    let archived: Value =
        serde_json::from_slice(&fx.object(&fx.archive_bucket, &keys[0]).await).unwrap();
    assert_eq!(archived["channels"], json!(["TS1", "TS2", "TS3", "TS4"]));
    assert_eq!(archived["samples"].as_array().unwrap().len(), 60);
    assert_eq!(
        archived["samples"][59]["values"][0].as_f64().unwrap() as f32,
        samples[59].values[0]
    );
    assert_eq!(archived["result"]["label"], first["label"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_batches_alerts_and_the_registry() {
    let fx = Fixture::new(Options::default()).await;
    let cooler = fx.thing("cooler").await;
    let stats = fx.thing("stats").await;
    fx.register(&stats, "rig-zscore").await;
    // 16 cycles, 60 samples per record: healthy, then reduced cooling from cycle 12.
    let records: Vec<(String, Value)> = (0..16)
        .flat_map(|c| {
            let body = direct_b64(&cooler, &batch(&cycles(c..c + 1)));
            let other = direct_b64(&stats, &batch(&cycles(c..c + 1)));
            [
                (format!("4965{c:04}0"), body),
                (format!("4965{c:04}1"), other),
            ]
        })
        .collect();
    let mut alerts = Vec::new();
    let mut reported = Vec::new();
    for chunk in records.chunks(8) {
        let h = fx.invoke(&kinesis_batch(chunk), "req").await;
        assert_eq!(h.response.as_ref().unwrap()["batchItemFailures"], json!([]));
        assert_eq!(h.trigger, Some(vigil_ingest::event::Trigger::Kinesis));
        alerts.extend(h.alerts);
        reported.extend(h.results);
    }
    // The registry sent `stats` to its own profile.
    assert_eq!(
        fx.closed_windows(&stats, "rig-zscore", 0..64).await.len(),
        16
    );
    assert!(fx.state(&stats, "hydraulic-cooler").await.is_none());
    let zs = condition_results(&stats, &reported)[0].clone();
    assert_eq!(zs["source"], "zscore");
    // The cooler's reduced cooling raised one alert, delivered through SNS with attributes.
    assert_eq!(
        alerts
            .iter()
            .filter(|a| a.device.as_str() == cooler)
            .count(),
        1
    );
    let delivered = fx.alerts().await;
    let mine: Vec<&Value> = delivered
        .iter()
        .filter(|a| a["MessageAttributes"]["device"]["Value"] == cooler.as_str())
        .collect();
    assert_eq!(mine.len(), 1);
    let a = mine[0];
    assert_eq!(a["TopicArn"], fx.topic_arn.as_str());
    let attr = |k: &str| {
        a["MessageAttributes"][k]["Value"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(attr("severity"), "warning");
    assert_eq!(attr("condition"), "20");
    assert_eq!(attr("profile"), "hydraulic-cooler");
    assert_eq!(attr("transition"), "raised");
    assert_eq!(attr("alarm_state"), "active_unacknowledged");
    assert_eq!(attr("alarm_reason"), "transition");
    let subject = a["Subject"].as_str().unwrap();
    assert_eq!(
        subject,
        format!("[WARNING] {cooler} (hydraulic-cooler): condition 20")
    );
    let message = a["Message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("Device {cooler} entered condition \"20\"")),
        "{message}"
    );
    let event: Value =
        serde_json::from_str(message.split("-- event --").nth(1).unwrap().trim()).unwrap();
    assert_eq!(event["window"], 13);
    assert_eq!(event["transition"]["kind"], "raised");
    // The shadow shows the open alert.
    assert_eq!(fx.shadow(&cooler).await["state"]["reported"]["alert"], "20");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_events_run_through_the_handler() {
    let fx = Fixture::new(Options::default()).await;
    let dir = repo_root().join("events/ingest");
    for name in [
        "direct-b64.json",
        "direct-batch.json",
        "sqs-batch.json",
        "kinesis-batch.json",
    ] {
        let event: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap();
        let h = fx.invoke(&event, name).await;
        assert!(h.response.is_ok(), "{name}: {:?}", h.response);
        for (id, o) in &h.outcomes {
            assert!(
                matches!(
                    o,
                    RecordOutcome::Accepted {
                        duplicates: 0,
                        late: 0,
                        ..
                    }
                ),
                "{name}/{id}: {o:?}"
            );
        }
    }
    assert_eq!(
        fx.stored_seqs("rig-001", "hydraulic-cooler", 0).await,
        vec![0, 2, 3, 4, 5, 6, 9, 10],
        "seqs 0, 2-6 and 9-10 of rig-001 (seq 1 came in a retired SELECT * event, rejected)"
    );
    assert_eq!(
        fx.stored_seqs("rig-002", "hydraulic-cooler", 0).await.len(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_and_profiles_come_from_s3_at_cold_start() {
    let fx = Fixture::new(Options {
        models_bucket: true,
        ..Options::default()
    })
    .await;
    assert_eq!(
        fx.runtime.models_dir,
        std::path::Path::new(vigil_ingest::wiring::FETCHED_MODELS_DIR)
    );
    let names: Vec<&String> = fx.runtime.profiles.keys().collect();
    assert_eq!(names, vec!["hydraulic-cooler"]);
    assert_eq!(
        fx.runtime.profiles["hydraulic-cooler"].profile.description,
        S3_PROFILE_DESCRIPTION
    );
    let thing = fx.thing("s3").await;
    let h = fx
        .invoke(&direct_b64(&thing, &batch(&cycles(0..1))), "r")
        .await;
    assert_eq!(h.results.len(), 1);
    assert!(h.results[0].model_version.starts_with("hydraulic-cooler"));
}
