//! End to end over real MQTT: the embedded broker on a free loopback port, `vigil edge` in this
//! process with a temporary store, the replay of the committed hydraulic sample (36 cycles:
//! 12 at cooler 100 %, 12 at 20 %, 12 at 3 %) as two things, and a watcher subscribed to the
//! result, alert and rejection topics.
//!
//! No sleeps: every wait is on an event (SUBACK, PUBACK counts, the edge's statistics, messages
//! on the watcher's channel) with a deadline.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use vigil_core::alert::Transition;
use vigil_core::ports::{AlertEvent, ResultStatus, WindowResult};
use vigil_core::CompiledProfile;
use vigil_datasets::models;
use vigil_datasets::{label_of, Hydraulic};
use vigil_edge::store::{Durability, EdgeStore};
use vigil_edge::{self as edge, broker, EdgeConfig, EdgeStats};
use vigil_mqtt::{BrokerUrl, Subscriber, TELEMETRY_FILTER};
use vigil_sim::replay::{self, Plan, PlanOptions, PlannedMessage, Replayer};

const PROFILE: &str = "hydraulic-cooler";
const CYCLES: usize = 36;
const DEADLINE: Duration = Duration::from_secs(60);

fn sample_dir() -> PathBuf {
    models::repo_root().join("models/samples/hydraulic")
}

fn data() -> &'static Hydraulic {
    static DATA: OnceLock<Hydraulic> = OnceLock::new();
    DATA.get_or_init(|| Hydraulic::load(&sample_dir(), &["TS1", "TS2", "TS3", "TS4"]).unwrap())
}

/// The hydraulic profile, compiled once for all tests (an ONNX session).
fn profiles() -> Arc<BTreeMap<String, CompiledProfile>> {
    static PROFILES: OnceLock<Arc<BTreeMap<String, CompiledProfile>>> = OnceLock::new();
    PROFILES
        .get_or_init(|| {
            Arc::new(
                edge::load_profiles_named(&models::models_dir(None), &[PROFILE])
                    .expect("profile hydraulic-cooler (is ORT installed? make setup)"),
            )
        })
        .clone()
}

fn channels() -> Vec<String> {
    profiles()[PROFILE].profile.channels.clone()
}

fn truth(cycle: usize) -> String {
    label_of(data().conditions[cycle][0])
}

async fn start_edge(url: &BrokerUrl, state: &Path) -> edge::EdgeHandle {
    let mut config = EdgeConfig::new(url.clone(), state);
    config.default_profile = PROFILE.into();
    let mut handle = edge::start_with(config, profiles())
        .await
        .expect("edge starts");
    handle.ready(DEADLINE).await.expect("edge subscribes");
    handle
}

/// Everything seen on the result, alert and rejection topics.
struct Watcher {
    sub: Subscriber,
    results: Vec<WindowResult>,
    alerts: Vec<AlertEvent>,
    rejected: Vec<serde_json::Value>,
}

impl Watcher {
    async fn start(url: &BrokerUrl, id: &str) -> Self {
        let sub = Subscriber::connect(
            url,
            id,
            &[
                "dt/vigil/+/condition",
                "dt/vigil/+/alerts",
                "dt/vigil/+/rejected",
            ],
        )
        .await
        .expect("watcher subscribes");
        Self {
            sub,
            results: vec![],
            alerts: vec![],
            rejected: vec![],
        }
    }

    /// Receives until `done` holds, failing after the deadline.
    async fn until(&mut self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        let end = Instant::now() + DEADLINE;
        while !done(self) {
            let left = end.saturating_duration_since(Instant::now());
            let Some(m) = self.sub.recv_timeout(left).await else {
                panic!(
                    "timed out waiting for {what}: {} results, {} alerts, {} rejected",
                    self.results.len(),
                    self.alerts.len(),
                    self.rejected.len()
                );
            };
            if m.topic.ends_with("/condition") {
                self.results
                    .push(serde_json::from_slice(&m.payload).unwrap());
            } else if m.topic.ends_with("/alerts") {
                self.alerts
                    .push(serde_json::from_slice(&m.payload).unwrap());
            } else if m.topic.ends_with("/rejected") {
                self.rejected
                    .push(serde_json::from_slice(&m.payload).unwrap());
            }
        }
    }

    fn distinct_windows(&self) -> usize {
        self.results
            .iter()
            .map(|r| (r.device.as_str().to_string(), r.window))
            .collect::<BTreeSet<_>>()
            .len()
    }

    /// Results by (thing, window), asserting each window was published once.
    fn exactly_once(&self) -> BTreeMap<(String, u64), &WindowResult> {
        let mut by_key = BTreeMap::new();
        for r in &self.results {
            let key = (r.device.as_str().to_string(), r.window);
            assert!(
                by_key.insert(key.clone(), r).is_none(),
                "window {key:?} published twice"
            );
        }
        by_key
    }
}

/// Every window of every thing: scored, complete, nothing filled, the rig's true condition.
fn assert_all_correct(plan: &Plan, results: &BTreeMap<(String, u64), &WindowResult>) {
    for thing in &plan.things {
        for window in 0..CYCLES as u64 {
            let r = results
                .get(&(thing.as_str().to_string(), window))
                .unwrap_or_else(|| panic!("no result for {thing} window {window}"));
            let cycle = plan.cycle_of(thing.as_str(), window).unwrap();
            assert_eq!(r.status, ResultStatus::Scored, "{thing} window {window}");
            assert_eq!(r.completeness, 1.0, "{thing} window {window}");
            assert_eq!(r.filled, 0, "{thing} window {window}");
            assert_eq!(r.label, truth(cycle), "{thing} window {window}");
            assert_eq!((r.seq_start, r.seq_end), (window * 60, window * 60 + 60));
        }
    }
    assert_eq!(results.len(), plan.things.len() * CYCLES);
}

/// The alert story of the sample, per thing: raised at "20" on the second 20 % cycle, changed to
/// "3" on the second 3 % cycle; nothing else. `allow_repeats`: a crash may re-send one.
fn assert_alert_story(plan: &Plan, alerts: &[AlertEvent], allow_repeats: bool) {
    for thing in &plan.things {
        let mut seen: Vec<(u64, String)> = alerts
            .iter()
            .filter(|a| a.device == *thing)
            .map(|a| {
                let t = match &a.transition {
                    Transition::Raised { label, .. } => format!("raised {label}"),
                    Transition::Changed { from, to, .. } => format!("changed {from}->{to}"),
                    Transition::Cleared { label } => format!("cleared {label}"),
                };
                (a.window, t)
            })
            .collect();
        if allow_repeats {
            seen.sort();
            seen.dedup();
        }
        assert_eq!(
            seen,
            vec![
                (13, "raised 20".to_string()),
                (25, "changed 20->3".to_string())
            ],
            "alerts of {thing}"
        );
    }
}

fn plan(duplicates: f64, reorder: usize, seed: u64) -> Plan {
    let mut options = PlanOptions::new(replay::thing_names("rig", 2).unwrap(), 0..CYCLES);
    options.duplicates = duplicates;
    options.reorder = reorder;
    options.seed = seed;
    replay::plan(data(), &channels(), &options).unwrap()
}

async fn publish(url: &BrokerUrl, id: &str, messages: &[PlannedMessage]) -> u64 {
    let mut replayer = Replayer::connect(url, id).await.unwrap();
    replayer.publish(messages, 0.0, |_| {}).await.unwrap();
    let acked = replayer.wait_acked(DEADLINE).await.unwrap();
    replayer.disconnect().await;
    acked
}

/// A message the pipeline must reject (`missing_channel`: the profile wants TS1-TS4).
fn missing_channels(thing: &str) -> PlannedMessage {
    PlannedMessage {
        thing: 0,
        topic: format!("dt/vigil/{thing}/telemetry"),
        payload: br#"{"seq": 1, "ts": 5, "values": {"TS1": 1.0}}"#.to_vec(),
        first_seq: 1,
        last_seq: 1,
        samples: 1,
        duplicate: false,
        due: Duration::ZERO,
    }
}

async fn wait_processed(edge: &mut edge::EdgeHandle, deliveries: u64) -> EdgeStats {
    edge.wait_until(DEADLINE, |s| s.acked >= deliveries)
        .await
        .expect("edge processes everything")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_things_with_duplicates_and_reordering_get_one_correct_result_per_window() {
    let broker = broker::start_embedded("127.0.0.1:0".parse().unwrap()).unwrap();
    let url = BrokerUrl::parse(&broker.url()).unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut edge = start_edge(&url, state.path()).await;
    let mut watch = Watcher::start(&url, "e2e-watch-1").await;

    // Every sample once, 10 % of the messages again a few messages later, shuffled in groups
    // of 8; plus one message the pipeline must reject.
    let plan = plan(0.1, 8, 7);
    let dups = plan.messages.iter().filter(|m| m.duplicate).count();
    assert!(dups > 300, "{dups} duplicates planned");
    let mut messages = plan.messages.clone();
    messages.push(missing_channels("rig-bad"));
    let acked = publish(&url, "e2e-replay-1", &messages).await;
    assert_eq!(acked, messages.len() as u64);
    let stats = wait_processed(&mut edge, acked).await;

    let expected = plan.windows();
    assert_eq!(expected, 2 * CYCLES);
    let alerts = stats.alerts_published as usize;
    watch
        .until("every result, alert and rejection", |w| {
            w.results.len() >= expected && w.alerts.len() >= alerts && !w.rejected.is_empty()
        })
        .await;
    let stats = edge.shutdown().await.unwrap();

    // Exactly one result per window, published by the edge and received by the watcher.
    assert_eq!(
        stats.results_published as usize,
        expected,
        "{}",
        stats.summary()
    );
    let results = watch.exactly_once();
    assert_all_correct(&plan, &results);
    assert_alert_story(&plan, &watch.alerts, false);
    assert_eq!(stats.alerts_published, 4);

    // Every sample and every copy was accepted; copies were counted as duplicates, or as late
    // when their window had closed already (a copy of a window's last sample).
    let p = &stats.pipeline;
    assert_eq!(
        p.samples,
        2 * CYCLES as u64 * 60 + dups as u64,
        "{}",
        stats.summary()
    );
    assert!(
        p.duplicates > 0 && p.duplicates + p.late <= dups as u64,
        "{}",
        stats.summary()
    );
    assert_eq!((p.rejected, stats.failed, stats.invalid_topic), (1, 0, 0));
    let bad = &watch.rejected[0];
    assert_eq!(bad["device"], "rig-bad");
    assert_eq!(bad["code"], "missing_channel");
    assert_eq!(bad["payload_encoding"], "utf8");

    // The shadow of each thing holds its last result.
    let store = EdgeStore::open_dir(state.path(), Durability::PerCommit).unwrap();
    let shadows: BTreeMap<String, serde_json::Value> =
        store.shadows().unwrap().into_iter().collect();
    for thing in ["rig-001", "rig-002"] {
        let reported = &shadows[thing]["state"]["reported"];
        assert_eq!(reported["window"], 35, "{thing}");
        assert_eq!(reported["label"], "3", "{thing}");
        assert_eq!(reported["alert"], "3", "{thing}");
    }
    assert_eq!(store.open_report().open_windows, 0);
}

/// Index of the message that carries sample `second` of window `window` of `thing`.
fn split_at(plan: &Plan, thing: usize, window: u64, second: u64) -> usize {
    let seq = window * 60 + second;
    plan.messages
        .iter()
        .position(|m| m.thing == thing && !m.duplicate && m.first_seq <= seq && seq <= m.last_seq)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_split_by_a_restart_is_scored_once_and_complete() {
    let broker = broker::start_embedded("127.0.0.1:0".parse().unwrap()).unwrap();
    let url = BrokerUrl::parse(&broker.url()).unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut watch = Watcher::start(&url, "e2e-watch-2").await;
    let plan = plan(0.05, 4, 11);

    // First part: up to the middle of cycle 18 of rig-001.
    let k = split_at(&plan, 0, 18, 30);
    let (first, second) = plan.messages.split_at(k);
    let mut edge = start_edge(&url, state.path()).await;
    let acked = publish(&url, "e2e-replay-2a", first).await;
    wait_processed(&mut edge, acked).await;
    let before = edge.shutdown().await.unwrap();
    watch
        .until("results of the first part", |w| {
            w.results.len() as u64 >= before.results_published
        })
        .await;
    let scored: BTreeSet<(String, u64)> = watch
        .results
        .iter()
        .map(|r| (r.device.as_str().to_string(), r.window))
        .collect();
    assert!(scored.contains(&("rig-001".to_string(), 17)));
    assert!(
        !scored.contains(&("rig-001".to_string(), 18)),
        "cycle 18 is split"
    );

    // Second part while the edge is down: the broker keeps it for the edge's session.
    let acked = publish(&url, "e2e-replay-2b", second).await;
    assert_eq!(acked, second.len() as u64);

    // A new edge on the same state: the half cycle is in the store, the rest comes from the
    // broker; each window is scored exactly once and complete.
    let mut edge = start_edge(&url, state.path()).await;
    assert!(edge.open_report.open_windows >= 1, "{:?}", edge.open_report);
    let after = wait_processed(&mut edge, acked).await;
    watch
        .until("all results", |w| w.distinct_windows() >= 2 * CYCLES)
        .await;
    let alerts = before.alerts_published + after.alerts_published;
    watch
        .until("all alerts", |w| w.alerts.len() as u64 >= alerts)
        .await;
    let after = edge.shutdown().await.unwrap();
    assert_eq!(
        before.results_published + after.results_published,
        2 * CYCLES as u64,
        "{} / {}",
        before.summary(),
        after.summary()
    );
    let results = watch.exactly_once();
    assert_all_correct(&plan, &results);
    assert_alert_story(&plan, &watch.alerts, false);
    // Copies of samples of windows the first edge finished count as late, nothing else.
    let copies = second.iter().filter(|m| m.duplicate).count() as u64;
    assert!(after.pipeline.late <= copies, "{}", after.summary());
    assert_eq!(after.pipeline.rejected + after.failed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_batch_loses_nothing() {
    let broker = broker::start_embedded("127.0.0.1:0".parse().unwrap()).unwrap();
    let url = BrokerUrl::parse(&broker.url()).unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut watch = Watcher::start(&url, "e2e-watch-3").await;
    let plan = plan(0.0, 0, 3);

    // The edge is killed while telemetry is flowing: the batch in hand is neither finished nor
    // acknowledged.
    let mut edge = start_edge(&url, state.path()).await;
    let mut replayer = Replayer::connect(&url, "e2e-replay-3").await.unwrap();
    let messages = plan.messages.clone();
    let publishing = tokio::spawn(async move {
        replayer.publish(&messages, 0.0, |_| {}).await.unwrap();
        let acked = replayer.wait_acked(DEADLINE).await.unwrap();
        replayer.disconnect().await;
        acked
    });
    let at_kill = edge
        .wait_until(DEADLINE, |s| s.deliveries >= 1500)
        .await
        .unwrap();
    edge.kill().await;
    let acked = publishing.await.unwrap();
    assert_eq!(acked, plan.messages.len() as u64);

    let edge = start_edge(&url, state.path()).await;
    watch
        .until("every window", |w| w.distinct_windows() >= 2 * CYCLES)
        .await;
    let after = edge.shutdown().await.unwrap();
    // At least once: a window scored just before the kill may be published again.
    let by_key: BTreeMap<(String, u64), &WindowResult> = watch
        .results
        .iter()
        .map(|r| ((r.device.as_str().to_string(), r.window), r))
        .collect();
    assert_all_correct(&plan, &by_key);
    eprintln!("before the kill (last stats): {}", at_kill.summary());
    eprintln!("after the restart: {}", after.summary());
    let repeats = watch.results.len() - by_key.len();
    assert!(repeats <= 4, "{repeats} results repeated");
    assert!(
        at_kill.acked > 0 && after.deliveries > 0,
        "{}",
        after.summary()
    );
    watch
        .until("the alerts", |w| {
            let kinds: BTreeSet<(String, u64)> = w
                .alerts
                .iter()
                .map(|a| (a.device.as_str().to_string(), a.window))
                .collect();
            kinds.len() >= 4
        })
        .await;
    assert_alert_story(&plan, &watch.alerts, true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_sent_before_the_edge_connects_is_kept_for_it() {
    // The broker starts with the edge's session already in place, as `vigil edge` starts it.
    let broker = broker::start_embedded_with(
        "127.0.0.1:0".parse().unwrap(),
        &[("e2e-edge-4", TELEMETRY_FILTER)],
    )
    .unwrap();
    let url = BrokerUrl::parse(&broker.url()).unwrap();
    let mut watch = Watcher::start(&url, "e2e-watch-4").await;
    let mut options = PlanOptions::new(replay::thing_names("early", 1).unwrap(), 0..14);
    options.seed = 4;
    let plan = replay::plan(data(), &channels(), &options).unwrap();
    // Devices publish while no edge is connected yet.
    let acked = publish(&url, "e2e-replay-4", &plan.messages).await;

    let state = tempfile::tempdir().unwrap();
    let mut config = EdgeConfig::new(url.clone(), state.path());
    config.default_profile = PROFILE.into();
    config.client_id = "e2e-edge-4".into();
    let mut edge = edge::start_with(config, profiles()).await.unwrap();
    wait_processed(&mut edge, acked).await;
    watch
        .until("every window", |w| w.distinct_windows() >= 14)
        .await;
    let stats = edge.shutdown().await.unwrap();
    assert_eq!(stats.results_published, 14, "{}", stats.summary());
    let results = watch.exactly_once();
    for window in 0..14u64 {
        let r = results[&("early-001".to_string(), window)];
        assert_eq!((r.completeness, r.filled), (1.0, 0));
        assert_eq!(r.label, truth(window as usize));
    }
}

/// One request to the edge's monitoring endpoint, as curl would send it: (status, body).
async fn http(edge: &edge::EdgeHandle, method: &str, path: &str) -> (u16, String) {
    let token = edge.http_token.as_ref().map(|t| t.0.as_str());
    http_as(edge.http_addr.unwrap(), token, method, path).await
}

/// With `token`, as a bearer token.
async fn http_as(
    addr: std::net::SocketAddr,
    token: Option<&str>,
    method: &str,
    path: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    stream
        .write_all(format!("{method} {path} HTTP/1.1\r\nHost: vigil\r\n{auth}\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut answer))
        .await
        .expect("the endpoint answers and closes")
        .unwrap();
    let text = String::from_utf8(answer).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// POST with a bearer token and a JSON body: (status, body).
async fn post(addr: std::net::SocketAddr, token: &str, path: &str, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: vigil\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut answer))
        .await
        .expect("the endpoint answers and closes")
        .unwrap();
    let text = String::from_utf8(answer).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    (
        head.split(' ').nth(1).unwrap().parse().unwrap(),
        body.to_string(),
    )
}

/// The value of one sample line of a Prometheus text answer.
fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{series} missing from:\n{text}"))
        .parse()
        .unwrap()
}

async fn start_monitored_edge(url: &BrokerUrl, state: &Path, id: &str) -> edge::EdgeHandle {
    let mut config = EdgeConfig::new(url.clone(), state);
    config.default_profile = PROFILE.into();
    config.client_id = id.into();
    config.http = Some("127.0.0.1:0".parse().unwrap());
    edge::start_with(config, profiles())
        .await
        .expect("edge starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitoring_endpoint_reports_health_counters_and_conditions() {
    let broker = broker::start_embedded("127.0.0.1:0".parse().unwrap()).unwrap();
    let url = BrokerUrl::parse(&broker.url()).unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut edge = start_monitored_edge(&url, state.path(), "e2e-edge-5").await;
    edge.http_addr.expect("the endpoint listens");
    edge.ready(DEADLINE).await.unwrap();
    assert_eq!(http(&edge, "GET", "/healthz").await, (200, "ok\n".into()));

    let options = PlanOptions::new(replay::thing_names("mon", 1).unwrap(), 0..3);
    let mut messages = replay::plan(data(), &channels(), &options)
        .unwrap()
        .messages;
    messages.push(missing_channels("mon-bad"));
    let acked = publish(&url, "e2e-replay-5", &messages).await;
    wait_processed(&mut edge, acked).await;

    let (status, text) = http(&edge, "GET", "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(metric(&text, "vigil_edge_up"), 1);
    assert_eq!(metric(&text, "vigil_edge_deliveries_total"), acked);
    assert_eq!(metric(&text, "vigil_edge_acked_total"), acked);
    assert_eq!(metric(&text, "vigil_windows_scored_total"), 3);
    assert_eq!(metric(&text, "vigil_messages_rejected_total"), 1);
    assert_eq!(
        metric(&text, "vigil_rejects_total{reason=\"missing_channel\"}"),
        1
    );

    let (status, body) = http(&edge, "GET", "/shadows").await;
    assert_eq!(status, 200);
    let shadows: serde_json::Value = serde_json::from_str(&body).unwrap();
    let reported = &shadows["mon-001"]["state"]["reported"];
    assert_eq!(reported["window"], 2, "{body}");
    assert_eq!(reported["label"], truth(2).as_str(), "{body}");
    assert!(
        shadows.get("mon-bad").is_none(),
        "a rejected device has no condition"
    );

    // Data and actions need the token; health and the page shell do not.
    let addr = edge.http_addr.unwrap();
    for path in [
        "/metrics",
        "/shadows",
        "/api/fleet",
        "/api/devices/mon-001",
        "/api/events",
    ] {
        assert_eq!(http_as(addr, None, "GET", path).await.0, 401, "{path}");
        assert_eq!(
            http_as(addr, Some("wrong-token-0123456789"), "GET", path)
                .await
                .0,
            401,
            "{path}"
        );
    }
    assert_eq!(http_as(addr, None, "GET", "/healthz").await.0, 200);
    assert_eq!(http_as(addr, None, "GET", "/").await.0, 200);

    // The fleet: the scored device with its verdict, the rejected one with its rejection.
    let (status, body) = http(&edge, "GET", "/api/fleet").await;
    assert_eq!(status, 200);
    let fleet: serde_json::Value = serde_json::from_str(&body).unwrap();
    let rows = fleet["devices"].as_array().unwrap();
    let row = |d: &str| {
        rows.iter()
            .find(|r| r["device"] == d)
            .unwrap_or_else(|| panic!("{d} in {body}"))
    };
    assert_eq!(row("mon-001")["label"], truth(2).as_str());
    assert_eq!(row("mon-001")["profile"], PROFILE);
    assert_eq!(row("mon-bad")["rejects"], 1);

    // An operator's action over HTTP: refused when meaningless, applied once per id.
    let action = |id: &str, what: &str| {
        format!(r#"{{"device":"mon-001","condition":"3","by":"ana","id":"{id}",{what}}}"#)
    };
    let token = edge.http_token.clone().unwrap().0;
    let ack = action("a1", r#""action":"acknowledge","note":"x""#);
    assert_eq!(post(addr, &token, "/api/alarm", &ack).await.0, 409);
    let snooze = action("s1", r#""action":"snooze","for_s":600"#);
    let (status, body) = post(addr, &token, "/api/alarm", &snooze).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""outcome":"applied""#), "{body}");
    let (status, body) = post(addr, &token, "/api/alarm", &snooze).await;
    assert_eq!(status, 200);
    assert!(body.contains(r#""outcome":"duplicate""#), "{body}");
    assert_eq!(
        post(addr, "nope-nope-nope-nope", "/api/alarm", &snooze)
            .await
            .0,
        401
    );
    assert_eq!(post(addr, &token, "/api/alarm", "{").await.0, 400);
    let bad_condition = action("b1", r#""action":"reset""#).replace(r#""3""#, r#""77""#);
    assert_eq!(
        post(addr, &token, "/api/alarm", &bad_condition).await.0,
        400
    );
    let (_, body) = http(&edge, "GET", "/api/devices/mon-001").await;
    let device: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(device["alarms"]["3"]["state"]["state"], "snoozed", "{body}");
    assert_eq!(device["verdicts"].as_array().unwrap().len(), 3, "{body}");

    assert_eq!(http(&edge, "GET", "/nope").await.0, 404);
    assert_eq!(http(&edge, "POST", "/metrics").await.0, 405);
    assert_eq!(http(&edge, "HEAD", "/metrics").await, (200, String::new()));

    // Stopping the edge stops the endpoint and releases the store.
    edge.shutdown().await.unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    EdgeStore::open_dir(state.path(), Durability::PerCommit).expect("store released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_unavailable_until_the_edge_is_subscribed() {
    // A port nobody listens on yet: the edge starts, serves its endpoint and keeps dialling.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let broker_addr = free.local_addr().unwrap();
    drop(free);
    let url = BrokerUrl::parse(&format!("mqtt://{broker_addr}")).unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut edge = start_monitored_edge(&url, state.path(), "e2e-edge-6").await;
    assert_eq!(http(&edge, "GET", "/healthz").await.0, 503);
    assert_eq!(
        metric(&http(&edge, "GET", "/metrics").await.1, "vigil_edge_up"),
        0
    );

    // The broker comes up on that port; the edge's reconnect finds it.
    let _broker = broker::start_embedded(broker_addr).unwrap();
    edge.ready(DEADLINE).await.unwrap();
    assert_eq!(http(&edge, "GET", "/healthz").await.0, 200);
    edge.shutdown().await.unwrap();
}
