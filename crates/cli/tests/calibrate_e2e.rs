//! Calibration end to end at the edge: `vigil edge` (in this process, embedded broker on a free
//! loopback port) scores a z-score profile while the `vigil calibrate` binary publishes baselines
//! into its state directory; the edge adopts each new version at the next window, without a
//! restart, and scores against it.
//!
//! No sleeps: every wait is on a message or on the edge's statistics, with a deadline.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use vigil_core::ports::{DeviceStateStore, StreamKey, WindowResult};
use vigil_core::telemetry::encode_batch;
use vigil_core::{DeviceId, Sample};
use vigil_edge::store::{Durability, EdgeStore};
use vigil_edge::{self as edge, broker, EdgeConfig};
use vigil_mqtt::{BrokerUrl, Subscriber};
use vigil_sim::replay::{PlannedMessage, Replayer};

const DEADLINE: Duration = Duration::from_secs(60);
const PROFILE: &str = "calib-zscore";
const THING: &str = "calib-001";
const SIZE: u64 = 10;

const PROFILE_TOML: &str = r#"
name = "calib-zscore"
description = "test profile: z-score of 10-sample window means"
channels = ["x"]
sample_rate_hz = 1.0
[window]
size = 10
hop = 10
[scorer]
kind = "zscore"
threshold = 4.0
warmup = 5
[alert]
unhealthy = ["anomaly"]
raise_after = 1
clear_after = 1
"#;

/// Samples of window `k` (seqs `k*10 ..`), alternating ±0.1 around `mean`.
fn window(k: u64, mean: f32) -> Vec<Sample> {
    (0..SIZE)
        .map(|i| {
            let seq = k * SIZE + i;
            Sample {
                seq,
                ts: 1_700_000_000_000 + seq * 1000,
                values: vec![mean + if i % 2 == 0 { 0.1 } else { -0.1 }],
            }
        })
        .collect()
}

fn channels() -> Vec<String> {
    vec!["x".into()]
}

/// Publishes one batch message per window and waits for the broker's acknowledgements.
async fn publish(url: &BrokerUrl, id: &str, windows: &[(u64, f32)]) {
    let messages: Vec<PlannedMessage> = windows
        .iter()
        .map(|&(k, mean)| PlannedMessage {
            thing: 0,
            topic: format!("dt/vigil/{THING}/telemetry"),
            payload: encode_batch(&window(k, mean), &channels()),
            first_seq: k * SIZE,
            last_seq: k * SIZE + SIZE - 1,
            samples: SIZE as usize,
            duplicate: false,
            due: Duration::ZERO,
        })
        .collect();
    let mut replayer = Replayer::connect(url, id).await.unwrap();
    replayer.publish(&messages, 0.0, |_| {}).await.unwrap();
    let acked = replayer.wait_acked(DEADLINE).await.unwrap();
    assert_eq!(acked, messages.len() as u64);
    replayer.disconnect().await;
}

/// Results on the condition topic, by window.
struct Results {
    sub: Subscriber,
    by_window: BTreeMap<u64, WindowResult>,
}

impl Results {
    async fn until(&mut self, last_window: u64) -> &BTreeMap<u64, WindowResult> {
        let end = Instant::now() + DEADLINE;
        while !self.by_window.contains_key(&last_window) {
            let left = end.saturating_duration_since(Instant::now());
            let m = self.sub.recv_timeout(left).await.unwrap_or_else(|| {
                panic!(
                    "no result for window {last_window}; have {:?}",
                    self.by_window.keys()
                )
            });
            let r: WindowResult = serde_json::from_slice(&m.payload).unwrap();
            assert!(
                self.by_window.insert(r.window, r).is_none(),
                "a window published twice"
            );
        }
        &self.by_window
    }
}

/// Runs the `vigil calibrate` binary; returns its report (the last line, JSON).
async fn calibrate(models: &Path, from: &Path, state: &Path) -> serde_json::Value {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("calibrate")
        .arg("--models")
        .arg(models)
        .args(["--profile", PROFILE, "--device", THING, "--from"])
        .arg(from)
        .arg("--to")
        .arg(state)
        .output()
        .await
        .expect("vigil calibrate runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "vigil calibrate failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprint!("{stdout}");
    serde_json::from_str(stdout.lines().last().expect("a report line")).expect("JSON report")
}

/// A telemetry file as the device publishes it: one JSON batch per line, window means given.
fn telemetry_file(path: &Path, means: &[f32]) {
    let lines: Vec<String> = means
        .iter()
        .enumerate()
        .map(|(k, &m)| String::from_utf8(encode_batch(&window(k as u64, m), &channels())).unwrap())
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_adopts_each_calibration_without_a_restart() {
    let started = Instant::now();
    let models = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(models.path().join("profiles")).unwrap();
    std::fs::write(
        models.path().join(format!("profiles/{PROFILE}.toml")),
        PROFILE_TOML,
    )
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();

    let broker = broker::start_embedded("127.0.0.1:0".parse().unwrap()).unwrap();
    let url = BrokerUrl::parse(&broker.url()).unwrap();
    let mut config = EdgeConfig::new(url.clone(), state.path());
    config.models_dir = models.path().to_path_buf();
    config.default_profile = PROFILE.into();
    config.client_id = "calib-edge".into();
    let mut edge = edge::start(config).await.expect("edge starts");
    edge.ready(DEADLINE).await.expect("edge subscribes");
    let mut results = Results {
        sub: Subscriber::connect(&url, "calib-watch", &["dt/vigil/+/condition"])
            .await
            .unwrap(),
        by_window: BTreeMap::new(),
    };

    // 1. No baseline published: the scorer learns online around 10 (window means 9.8..10.2).
    let learn: Vec<(u64, f32)> = (0..12)
        .map(|k| (k, 10.0 + 0.2 * ((k % 3) as f32 - 1.0)))
        .collect();
    publish(&url, "calib-pub-1", &learn).await;
    let r = results.until(11).await;
    assert!(r.values().all(|r| r.model_version == "learned"), "{r:?}");
    assert!(r.values().all(|r| r.label == "normal"));

    // 2. Calibrate from a file of the device's normal at 50 (window means 49, 50, 51).
    let first = work.path().join("normal-50.jsonl");
    telemetry_file(
        &first,
        &[49.0, 50.0, 51.0, 49.0, 50.0, 51.0, 49.0, 50.0, 51.0],
    );
    let v1 = calibrate(models.path(), &first, state.path()).await;
    let v1_version = v1["version"].as_str().unwrap().to_string();
    assert!(v1_version.starts_with("calib-"), "{v1}");
    assert_eq!(v1["windows"], 9);
    assert_eq!(v1["frozen"], true);
    assert!((v1["mean"][0].as_f64().unwrap() - 50.0).abs() < 1e-4);
    let published = state
        .path()
        .join(format!("baselines/{PROFILE}/{THING}.json"));
    assert_eq!(v1["published"], published.display().to_string());

    // The next windows are scored against it: 50 is normal now (the learned baseline of 10 ±
    // 0.2 would call it an anomaly), and 10 is an anomaly (the learned one: normal).
    publish(&url, "calib-pub-2", &[(12, 50.0), (13, 10.0)]).await;
    let r = results.until(13).await;
    assert_eq!(r[&12].model_version, v1_version);
    assert_eq!(r[&12].label, "normal", "{:?}", r[&12]);
    assert!(r[&12].anomaly_score.unwrap() < 0.1, "{:?}", r[&12]);
    assert_eq!(r[&13].model_version, v1_version);
    assert_eq!(r[&13].label, "anomaly", "{:?}", r[&13]);
    let sd = v1["std"][0].as_f64().unwrap();
    let z = r[&13].anomaly_score.unwrap();
    assert!((z - 40.0 / sd).abs() < 1e-3, "z {z}, std {sd}");

    // 3. A second calibration (normal at 30) replaces it while the edge runs.
    let second = work.path().join("normal-30.jsonl");
    telemetry_file(&second, &[29.5, 30.0, 30.5, 29.5, 30.0, 30.5]);
    let v2 = calibrate(models.path(), &second, state.path()).await;
    let v2_version = v2["version"].as_str().unwrap().to_string();
    assert_ne!(v2_version, v1_version);
    publish(&url, "calib-pub-3", &[(14, 30.0), (15, 50.0)]).await;
    let r = results.until(15).await;
    assert_eq!(r[&14].model_version, v2_version);
    assert_eq!(r[&14].label, "normal", "{:?}", r[&14]);
    assert_eq!(r[&15].model_version, v2_version);
    assert_eq!(r[&15].label, "anomaly", "{:?}", r[&15]);
    let stats = edge.shutdown().await.unwrap();
    assert_eq!(stats.results_published, 16, "{}", stats.summary());

    // The device state holds the calibrated baseline, frozen: anomalies were not learned.
    let store = EdgeStore::open_dir(state.path(), Durability::PerCommit).unwrap();
    let st = DeviceStateStore::load(
        &store,
        &StreamKey {
            device: DeviceId::new(THING).unwrap(),
            profile: PROFILE.into(),
        },
    )
    .await
    .unwrap();
    let b = st.value.baseline.expect("a baseline");
    assert_eq!(
        (b.version.as_str(), b.frozen, b.count),
        (v2_version.as_str(), true, 6)
    );
    eprintln!("calibration e2e at the edge: {:?}", started.elapsed());
}
