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
    let windows: Vec<Vec<Sample>> = windows.iter().map(|&(k, mean)| window(k, mean)).collect();
    publish_windows(url, id, THING, &windows, &channels()).await;
}

/// Publishes each window's samples as one batch message to `thing`'s telemetry topic.
async fn publish_windows(
    url: &BrokerUrl,
    id: &str,
    thing: &str,
    windows: &[Vec<Sample>],
    channels: &[String],
) {
    let messages: Vec<PlannedMessage> = windows
        .iter()
        .map(|samples| PlannedMessage {
            thing: 0,
            topic: format!("dt/vigil/{thing}/telemetry"),
            payload: encode_batch(samples, channels),
            first_seq: samples.first().map_or(0, |s| s.seq),
            last_seq: samples.last().map_or(0, |s| s.seq),
            samples: samples.len(),
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

/// An embedded broker and an edge on it judging with `profile` from `models`, and a watcher of
/// the condition topics; the broker lives as long as the first value.
async fn start_edge(
    models: &Path,
    state: &Path,
    profile: &str,
    name: &str,
) -> (broker::EmbeddedBroker, BrokerUrl, edge::EdgeHandle, Results) {
    let broker = broker::start_embedded("127.0.0.1:0".parse().unwrap()).unwrap();
    let url = BrokerUrl::parse(&broker.url()).unwrap();
    let mut config = EdgeConfig::new(url.clone(), state);
    config.models_dir = models.to_path_buf();
    config.default_profile = profile.into();
    config.client_id = format!("{name}-edge");
    let mut edge = edge::start(config).await.expect("edge starts");
    edge.ready(DEADLINE).await.expect("edge subscribes");
    let watcher = format!("{name}-watch");
    let results = Results {
        sub: Subscriber::connect(&url, &watcher, &["dt/vigil/+/condition"])
            .await
            .unwrap(),
        by_window: BTreeMap::new(),
    };
    (broker, url, edge, results)
}

/// Runs the `vigil calibrate` binary; returns its report (the last line, JSON).
async fn calibrate(models: &Path, from: &Path, state: &Path) -> serde_json::Value {
    run_vigil("calibrate", models, PROFILE, THING, from, state).await
}

/// Runs `vigil <command> --models M --profile P --device D --from F --to S`; returns its report.
async fn run_vigil(
    command: &str,
    models: &Path,
    profile: &str,
    thing: &str,
    from: &Path,
    state: &Path,
) -> serde_json::Value {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg(command)
        .arg("--models")
        .arg(models)
        .args(["--profile", profile, "--device", thing, "--from"])
        .arg(from)
        .arg("--to")
        .arg(state)
        .output()
        .await
        .expect("vigil runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "vigil {command} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprint!("{stdout}");
    serde_json::from_str(stdout.lines().last().expect("a report line")).expect("JSON report")
}

/// A telemetry file as the device publishes it: one JSON batch per line, window means given.
fn telemetry_file(path: &Path, means: &[f32]) {
    let windows: Vec<Vec<Sample>> = (0..means.len())
        .map(|k| window(k as u64, means[k]))
        .collect();
    windows_file(path, &windows, &channels());
}

/// One JSON batch per line, a window each.
fn windows_file(path: &Path, windows: &[Vec<Sample>], channels: &[String]) {
    let lines: Vec<String> = windows
        .iter()
        .map(|w| String::from_utf8(encode_batch(w, channels)).unwrap())
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

    let (_broker, url, edge, mut results) =
        start_edge(models.path(), state.path(), PROFILE, "calib").await;

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

/// The hydraulic rig's cycle `cycle` as window `k` of a device (seqs `k*60 ..`).
fn rig_window(rig: &vigil_datasets::Hydraulic, cycle: usize, k: u64) -> Vec<Sample> {
    rig.cycle_samples(cycle, 0)
        .into_iter()
        .enumerate()
        .map(|(t, mut s)| {
            s.seq = k * 60 + t as u64;
            s.ts = 1_700_000_000_000 + s.seq * 1000;
            s
        })
        .collect()
}

/// The learned normal at the edge: a rig's device is not judged until `vigil train-normal`
/// publishes its model into the edge's state directory; the running edge adopts it at the next
/// window and flags degraded cycles with each channel's share; a candidate published beside the
/// live model is scored and reported without changing the verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_adopts_a_learned_normal_and_reports_why_and_the_candidate() {
    const NORMAL: &str = "hydraulic-normal";
    const RIG: &str = "rig-007";
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let models = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(models.path().join("profiles")).unwrap();
    let profile_file = format!("profiles/{NORMAL}.toml");
    std::fs::copy(
        repo.join("models").join(&profile_file),
        models.path().join(&profile_file),
    )
    .unwrap();
    let profile = vigil_core::Profile::load(&models.path().join(&profile_file)).unwrap();
    let rig = vigil_datasets::Hydraulic::load(
        &repo.join("../shared/datasets/hydraulic"),
        &profile
            .channels
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();

    let (_broker, url, edge, mut results) =
        start_edge(models.path(), state.path(), NORMAL, "normal").await;
    let channels = profile.channels.clone();

    // 1. Untrained: not judged.
    let w: Vec<Vec<Sample>> = (0..2).map(|k| rig_window(&rig, k, k as u64)).collect();
    publish_windows(&url, "normal-pub-1", RIG, &w, &channels).await;
    let r = results.until(1).await;
    assert!(r
        .values()
        .all(|r| r.model_version == "untrained" && r.label == "normal"));

    // 2. Trained on the rig's first 150 healthy cycles.
    let history = work.path().join("healthy.jsonl");
    let healthy: Vec<Vec<Sample>> = (0..150).map(|c| rig_window(&rig, c, c as u64)).collect();
    windows_file(&history, &healthy, &channels);
    let v1 = run_vigil(
        "train-normal",
        models.path(),
        NORMAL,
        RIG,
        &history,
        state.path(),
    )
    .await;
    assert_eq!(v1["promoted"], true, "{v1}");
    let live = v1["live_version"].as_str().unwrap().to_string();
    assert!(live.starts_with("normal-"), "{v1}");

    // 3. Later cycles: healthy (160, never trained on) and degraded valve+pump (175), valve (231),
    //    accumulator (261).
    let later = [(160, false), (175, true), (231, true), (261, true)];
    let w: Vec<Vec<Sample>> = later
        .iter()
        .enumerate()
        .map(|(i, &(c, _))| rig_window(&rig, c, 2 + i as u64))
        .collect();
    publish_windows(&url, "normal-pub-2", RIG, &w, &channels).await;
    let r = results.until(5).await;
    for (i, &(cycle, degraded)) in later.iter().enumerate() {
        let res = &r[&(2 + i as u64)];
        assert_eq!(res.model_version, live, "{res:?}");
        assert_eq!(res.label == "anomaly", degraded, "cycle {cycle}: {res:?}");
        if degraded {
            let shares: f64 = res.contributions.iter().map(|c| c.share).sum();
            assert!((shares - 1.0).abs() < 1e-6, "{res:?}");
            assert!(res
                .contributions
                .iter()
                .all(|c| channels.contains(&c.channel)));
        }
        assert!(res.candidate.is_none());
    }

    // 4. A candidate beside the live model (as a fit that alarmed more would be published):
    //    the verdict stays the live model's, the candidate's is reported with it.
    let path = state.path().join(format!("baselines/{NORMAL}/{RIG}.json"));
    let mut doc: vigil_core::scorer::Baseline =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let models_doc = doc.normal.as_mut().unwrap();
    let mut candidate = models_doc.live.clone();
    candidate.version = "normal-candidate-test".into();
    candidate.spe_limit *= 1e6;
    candidate.t2_limit *= 1e6;
    models_doc.candidate = Some(candidate);
    doc.version = format!("{live}+candidate-normal-candidate-test");
    let stream = StreamKey {
        device: DeviceId::new(RIG).unwrap(),
        profile: NORMAL.into(),
    };
    vigil_edge::calibrate::publish_to_dir(state.path(), &stream, &doc).unwrap();
    let w = vec![rig_window(&rig, 175, 6)];
    publish_windows(&url, "normal-pub-3", RIG, &w, &channels).await;
    let r = results.until(6).await;
    let res = &r[&6];
    assert_eq!(
        (res.label.as_str(), res.model_version.as_str()),
        ("anomaly", live.as_str())
    );
    let cand = res.candidate.as_ref().expect("the candidate's verdict");
    assert_eq!(cand.model_version, "normal-candidate-test");
    assert_eq!(cand.label, "normal");
    edge.shutdown().await.unwrap();
}
