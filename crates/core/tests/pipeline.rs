//! Pipeline behaviour over the in-memory ports: at-least-once delivery (duplicates, reordering,
//! loss, retries, concurrent invocations) never changes a completed window's content and never
//! scores a window twice.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use futures_executor::block_on;
use proptest::prelude::*;
use vigil_core::memory::{MemoryPorts, MemoryWindowStore};
use vigil_core::ports::{ResultStatus, StreamKey};
use vigil_core::scorer::{Baseline, Score, ScoreError, Scorer};
use vigil_core::telemetry::encode_batch;
use vigil_core::transform::Matrix;
use vigil_core::{
    CompiledProfile, DeviceId, Message, MessageOutcome, Pipeline, PipelineConfig, Profile, Sample,
};

/// Labels a window "hot" when its mean is above 50, and counts how often it is called.
struct ThresholdScorer {
    labels: Vec<String>,
    calls: AtomicU64,
}

#[async_trait]
impl Scorer for ThresholdScorer {
    fn labels(&self) -> &[String] {
        &self.labels
    }
    fn version(&self) -> String {
        "threshold-v1".into()
    }
    async fn score(&self, input: &Matrix, _: &mut Option<Baseline>) -> Result<Score, ScoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mean = input.data.iter().sum::<f32>() / input.data.len() as f32;
        let label = if mean > 50.0 { "hot" } else { "ok" };
        Ok(Score {
            label: label.into(),
            probabilities: vec![],
            anomaly_score: Some(f64::from(mean)),
            source: "test".into(),
            model_version: self.version(),
            contributions: Vec::new(),
            candidate: None,
        })
    }
}

fn profile(size: u32, hop: u32) -> Profile {
    Profile::from_toml(
        &format!(
            r#"
name = "test"
channels = ["a", "b"]
sample_rate_hz = 1.0
[window]
size = {size}
hop = {hop}
close_after = {size}
min_completeness = 0.5
[scorer]
kind = "onnx"
model = "unused.onnx"
labels = ["ok", "hot"]
[alert]
unhealthy = ["hot"]
raise_after = 2
clear_after = 2
"#
        ),
        "test.toml",
    )
    .unwrap()
}

fn compiled(size: u32, hop: u32) -> (BTreeMap<String, CompiledProfile>, Arc<ThresholdScorer>) {
    let scorer = Arc::new(ThresholdScorer {
        labels: vec!["ok".into(), "hot".into()],
        calls: AtomicU64::new(0),
    });
    let p = CompiledProfile::new(profile(size, hop), scorer.clone()).unwrap();
    (BTreeMap::from([("test".to_string(), p)]), scorer)
}

fn config() -> PipelineConfig {
    PipelineConfig {
        default_profile: "test".into(),
        ..PipelineConfig::default()
    }
}

fn channels() -> Vec<String> {
    vec!["a".into(), "b".into()]
}

/// Device samples: windows alternate cold (~10) and hot (~90) in blocks so alerts happen.
fn samples(n: u64) -> Vec<Sample> {
    (0..n)
        .map(|seq| {
            let hot = (seq / 24) % 2 == 1;
            let base = if hot { 90.0 } else { 10.0 };
            Sample {
                seq,
                ts: 1_000 * seq,
                values: vec![base + (seq % 7) as f32, base - (seq % 5) as f32],
            }
        })
        .collect()
}

fn message(device: &DeviceId, id: usize, batch: &[Sample]) -> Message {
    Message {
        id: format!("m{id}"),
        device: device.clone(),
        payload: encode_batch(batch, &channels()),
    }
}

fn all_accepted(outcomes: &[MessageOutcome]) -> bool {
    outcomes
        .iter()
        .all(|o| matches!(o, MessageOutcome::Accepted { .. }))
}

/// The kinds of the alerts sent so far, in order.
fn alert_kinds(ports: &MemoryPorts) -> Vec<&'static str> {
    ports
        .recorder
        .alerts()
        .iter()
        .map(|a| a.transition.kind())
        .collect()
}

fn stream(device: &DeviceId) -> StreamKey {
    StreamKey {
        device: device.clone(),
        profile: "test".into(),
    }
}

/// Reference: what each window should contain when every sample arrived once, in order.
fn expected_windows(all: &[Sample], size: u64, hop: u64) -> BTreeMap<u64, Vec<Sample>> {
    let mut out: BTreeMap<u64, Vec<Sample>> = BTreeMap::new();
    let last = all.last().map_or(0, |s| s.seq);
    let mut k = 0;
    while k * hop + size <= last + 1 {
        out.insert(
            k,
            all.iter()
                .filter(|s| s.seq >= k * hop && s.seq < k * hop + size)
                .cloned()
                .collect(),
        );
        k += 1;
    }
    out
}

#[derive(Debug, Clone)]
struct Delivery {
    /// Groups of sample indexes, each group one message; groups processed in batches.
    messages: Vec<Vec<usize>>,
    batch_sizes: Vec<usize>,
}

/// Duplicates some samples, drops some (when `loss`), reorders within a small distance, and
/// groups the result into messages and batches.
fn delivery(n: usize, loss: bool) -> impl Strategy<Value = Delivery> {
    (
        prop::collection::vec(0u8..10, n),
        prop::collection::vec(0usize..6, n * 2),
        prop::collection::vec(1usize..5, n * 2),
        prop::collection::vec(1usize..6, n * 2),
    )
        .prop_map(move |(fate, jitter, groups, batches)| {
            let mut order: Vec<(usize, usize)> = Vec::new();
            for (i, f) in fate.iter().enumerate() {
                let copies = match f {
                    0 if loss => 0,
                    1 | 2 => 2,
                    3 => 3,
                    _ => 1,
                };
                for c in 0..copies {
                    order.push((i + jitter[(i + c * 7) % jitter.len()] + c * 5, i));
                }
            }
            order.sort();
            let indexes: Vec<usize> = order.into_iter().map(|(_, i)| i).collect();
            let mut messages = Vec::new();
            let mut at = 0;
            let mut g = 0;
            while at < indexes.len() {
                // A message may not repeat a seq: split a group where one repeats.
                let want = groups[g % groups.len()];
                let mut group: Vec<usize> = Vec::new();
                while at < indexes.len() && group.len() < want && !group.contains(&indexes[at]) {
                    group.push(indexes[at]);
                    at += 1;
                }
                messages.push(group);
                g += 1;
            }
            Delivery {
                messages,
                batch_sizes: batches,
            }
        })
}

/// Memory ports with the lease protocol, or committing closes first as DynamoDB does.
fn memory_ports(commit_first: bool) -> MemoryPorts {
    if commit_first {
        MemoryPorts {
            windows: MemoryWindowStore::committing_first(),
            ..MemoryPorts::default()
        }
    } else {
        MemoryPorts::new()
    }
}

fn run_delivery(
    size: u32,
    hop: u32,
    all: &[Sample],
    d: &Delivery,
    commit_first: bool,
) -> (MemoryPorts, Arc<ThresholdScorer>, Vec<MessageOutcome>) {
    let (profiles, scorer) = compiled(size, hop);
    let ports = memory_ports(commit_first);
    let device = DeviceId::new("dev-1").unwrap();
    let outcomes = {
        let pipeline = Pipeline::new(&profiles, ports.ports(), config()).unwrap();
        let messages: Vec<Message> = d
            .messages
            .iter()
            .enumerate()
            .map(|(i, g)| {
                message(
                    &device,
                    i,
                    &g.iter().map(|&j| all[j].clone()).collect::<Vec<_>>(),
                )
            })
            .collect();
        let mut outcomes = Vec::new();
        let mut at = 0;
        let mut b = 0;
        while at < messages.len() {
            let n = d.batch_sizes[b % d.batch_sizes.len()].min(messages.len() - at);
            outcomes.extend(block_on(pipeline.process(&messages[at..at + n], 0)).outcomes);
            at += n;
            b += 1;
        }
        outcomes
    };
    (ports, scorer, outcomes)
}

fn check_no_window_twice(
    ports: &MemoryPorts,
    scorer: &ThresholdScorer,
) -> BTreeMap<u64, vigil_core::ports::WindowResult> {
    let mut by_window = BTreeMap::new();
    for r in ports.recorder.results() {
        assert!(
            by_window.insert(r.window, r.clone()).is_none(),
            "window {} published twice",
            r.window
        );
    }
    let scored = by_window
        .values()
        .filter(|r| r.status == ResultStatus::Scored)
        .count() as u64;
    assert_eq!(
        scorer.calls.load(Ordering::SeqCst),
        scored,
        "each scored window is scored by exactly one call"
    );
    by_window
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// Duplicates and reordering, no loss: every window is scored exactly once, with exactly
    /// its own samples, and the same label as in-order delivery gives.
    #[test]
    fn duplicates_and_reordering_change_nothing(d in delivery(120, false), sliding in any::<bool>(), commit_first in any::<bool>()) {
        let (size, hop) = if sliding { (12, 6) } else { (12, 12) };
        let all = samples(120);
        let (ports, scorer, outcomes) = run_delivery(size, hop, &all, &d, commit_first);
        prop_assert!(all_accepted(&outcomes), "{outcomes:?}");
        let results = check_no_window_twice(&ports, &scorer);
        let expected = expected_windows(&all, u64::from(size), u64::from(hop));
        prop_assert_eq!(results.keys().copied().collect::<Vec<_>>(), expected.keys().copied().collect::<Vec<_>>());
        for w in ports.recorder.archived.lock().unwrap().iter() {
            prop_assert_eq!(&w.samples, &expected[&w.result.window], "window {} content", w.result.window);
            prop_assert_eq!(w.result.completeness, 1.0);
            prop_assert_eq!(w.result.filled, 0);
        }
        // The same labels as a clean, in-order run.
        let clean = Delivery { messages: (0..all.len()).map(|i| vec![i]).collect(), batch_sizes: vec![1] };
        let (clean_ports, _, _) = run_delivery(size, hop, &all, &clean, false);
        let clean_labels: Vec<String> = clean_ports.recorder.results().into_iter().map(|r| r.label).collect();
        let labels: Vec<String> = results.values().map(|r| r.label.clone()).collect();
        prop_assert_eq!(labels, clean_labels);
    }

    /// With loss as well: no window is scored twice, and a window never holds a sample that is
    /// not its own, nor one twice; complete windows hold exactly their samples.
    #[test]
    fn loss_never_corrupts_or_double_scores(d in delivery(120, true), commit_first in any::<bool>()) {
        let all = samples(120);
        let (ports, scorer, _) = run_delivery(12, 12, &all, &d, commit_first);
        check_no_window_twice(&ports, &scorer);
        let expected = expected_windows(&all, 12, 12);
        for w in ports.recorder.archived.lock().unwrap().iter() {
            let own = &expected[&w.result.window];
            let seqs: BTreeSet<u64> = w.samples.iter().map(|s| s.seq).collect();
            prop_assert_eq!(seqs.len(), w.samples.len(), "no sample twice");
            for s in &w.samples {
                prop_assert!(own.contains(s), "sample {} is not window {}'s", s.seq, w.result.window);
            }
            prop_assert_eq!(w.result.completeness, w.samples.len() as f32 / 12.0);
        }
    }
}

#[test]
fn a_retried_batch_changes_nothing() {
    for commit_first in [false, true] {
        a_retried_batch_changes_nothing_with(commit_first);
    }
}

fn a_retried_batch_changes_nothing_with(commit_first: bool) {
    let all = samples(96);
    let (profiles, scorer) = compiled(12, 12);
    let ports = memory_ports(commit_first);
    let pipeline = Pipeline::new(&profiles, ports.ports(), config()).unwrap();
    let device = DeviceId::new("dev-1").unwrap();
    let messages: Vec<Message> = all
        .chunks(5)
        .enumerate()
        .map(|(i, c)| message(&device, i, c))
        .collect();
    let first = block_on(pipeline.process(&messages, 0));
    let again = block_on(pipeline.process(&messages, 0));
    // The same delivery in another process (no hints): its commit is found, and its archived
    // windows say the effects went out.
    let elsewhere = Pipeline::new(&profiles, ports.ports(), config()).unwrap();
    let third = block_on(elsewhere.process(&messages, 0));
    assert_eq!(third.counters.windows_scored, 0);
    assert_eq!(first.counters.windows_scored, 8);
    assert_eq!(again.counters.windows_scored, 0);
    assert_eq!(
        again.counters.late + again.counters.duplicates,
        96,
        "{:?}",
        again.counters
    );
    assert_eq!(scorer.calls.load(Ordering::SeqCst), 8);
    assert_eq!(ports.recorder.results().len(), 8);
}

#[test]
fn a_failed_notification_is_resent_once_after_the_lease() {
    let all = samples(72); // windows 0,1 cold; 2,3 hot → raise at window 3; 4,5 cold → clear at 5
    let (profiles, _) = compiled(12, 12);
    let ports = MemoryPorts::new();
    let pipeline = Pipeline::new(
        &profiles,
        ports.ports(),
        PipelineConfig {
            lease_ms: 1_000,
            ..config()
        },
    )
    .unwrap();
    let device = DeviceId::new("dev-1").unwrap();
    let messages: Vec<Message> = all
        .chunks(12)
        .enumerate()
        .map(|(i, c)| message(&device, i, c))
        .collect();

    *ports.recorder.fail_alerts.lock().unwrap() = 1;
    let first = block_on(pipeline.process(&messages, 0));
    assert!(
        first.outcomes.iter().all(|o| matches!(
            o,
            MessageOutcome::Failed {
                retryable: true,
                ..
            }
        )),
        "{:?}",
        first.outcomes
    );
    assert!(ports.recorder.alerts().is_empty());

    // An immediate retry finds the window still held by the failed attempt's lease.
    let busy = block_on(pipeline.process(&messages, 10));
    assert!(busy.outcomes.iter().all(|o| matches!(
        o,
        MessageOutcome::Failed {
            retryable: true,
            ..
        }
    )));

    // After the lease the retry finishes the job: the raise is sent once, then the clear.
    let retry = block_on(pipeline.process(&messages, 5_000));
    assert!(all_accepted(&retry.outcomes), "{:?}", retry.outcomes);
    let kinds = alert_kinds(&ports);
    assert_eq!(kinds, vec!["raised", "cleared"]);
    let windows: Vec<u64> = ports
        .recorder
        .results()
        .iter()
        .map(|r| r.window)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(windows, (0..6).collect::<Vec<_>>());
    let state = ports.states.get(&stream(&device)).unwrap();
    assert_eq!(state.applied_window, Some(5));
    assert_eq!(state.alert.active, None);
}

#[test]
fn concurrent_invocations_on_one_device_score_each_window_once() {
    let all = samples(240);
    let (profiles, scorer) = compiled(12, 12);
    let ports = MemoryPorts::new();
    let device = DeviceId::new("dev-1").unwrap();
    // Every message is delivered to two invocations running at once.
    let messages: Vec<Message> = all
        .chunks(3)
        .enumerate()
        .map(|(i, c)| message(&device, i, c))
        .collect();
    std::thread::scope(|s| {
        for _ in 0..2 {
            let (profiles, ports, messages) = (&profiles, &ports, &messages);
            s.spawn(move || {
                let pipeline = Pipeline::new(profiles, ports.ports(), config()).unwrap();
                for m in messages.chunks(2) {
                    // Busy (the other holds the window) is retryable: retry as Lambda would.
                    for attempt in 0..100 {
                        let report = block_on(pipeline.process(m, 0));
                        if all_accepted(&report.outcomes) {
                            break;
                        }
                        assert!(attempt < 99, "never accepted: {:?}", report.outcomes);
                        std::thread::yield_now();
                    }
                }
            });
        }
    });
    let results = check_no_window_twice(&ports, &scorer);
    assert_eq!(results.len(), 20);
    assert!(results.values().all(|r| r.completeness == 1.0));
}

#[test]
fn bad_messages_are_rejected_without_failing_the_batch() {
    let (profiles, _) = compiled(12, 12);
    let ports = MemoryPorts::new();
    let pipeline = Pipeline::new(&profiles, ports.ports(), config()).unwrap();
    let a = DeviceId::new("dev-a").unwrap();
    let b = DeviceId::new("dev-b").unwrap();
    let good = samples(12);
    let messages = vec![
        message(&a, 0, &good[..6]),
        Message {
            id: "bad-json".into(),
            device: a.clone(),
            payload: b"{not json".to_vec(),
        },
        Message {
            id: "bad-channel".into(),
            device: b.clone(),
            payload: br#"{"seq":1,"ts":1,"values":{"a":1}}"#.to_vec(),
        },
        message(&a, 3, &good[6..]),
        message(&b, 4, &good),
    ];
    let report = block_on(pipeline.process(&messages, 0));
    assert!(matches!(
        report.outcomes[0],
        MessageOutcome::Accepted { samples: 6, .. }
    ));
    assert!(
        matches!(&report.outcomes[1], MessageOutcome::Rejected(e) if e.code() == "invalid_json")
    );
    assert!(
        matches!(&report.outcomes[2], MessageOutcome::Rejected(e) if e.field == "values" && e.code() == "missing_channel")
    );
    assert!(matches!(
        report.outcomes[3],
        MessageOutcome::Accepted { .. }
    ));
    assert!(matches!(
        report.outcomes[4],
        MessageOutcome::Accepted { samples: 12, .. }
    ));
    assert_eq!(report.counters.rejected, 2);
    assert_eq!(
        report.counters.rejects_by_reason.get("invalid_json"),
        Some(&1)
    );
    assert_eq!(
        report.counters.windows_scored, 2,
        "both devices' windows scored"
    );
    let rejected = ports.recorder.rejected.lock().unwrap();
    assert_eq!(rejected.len(), 2);
    assert_eq!(rejected[0].payload, b"{not json");
}

#[test]
fn an_incomplete_window_closes_after_the_gap() {
    let all = samples(48);
    let (profiles, _) = compiled(12, 12);
    let ports = MemoryPorts::new();
    let pipeline = Pipeline::new(&profiles, ports.ports(), config()).unwrap();
    let device = DeviceId::new("dev-1").unwrap();
    // Window 0 misses 3 of 12 (75 % ≥ 50 %: filled and scored); window 1 misses 8 (incomplete).
    let kept: Vec<Sample> = all
        .iter()
        .filter(|s| !(3..6).contains(&s.seq) && !(12..20).contains(&s.seq))
        .cloned()
        .collect();
    let messages: Vec<Message> = kept
        .iter()
        .enumerate()
        .map(|(i, s)| message(&device, i, std::slice::from_ref(s)))
        .collect();
    // Up to seq 33: window 0's deadline (23) has passed, window 1's (35) not yet.
    let report = block_on(pipeline.process(&messages[..23], 0));
    let r: Vec<_> = report
        .results
        .iter()
        .map(|r| (r.window, r.status, r.filled))
        .collect();
    assert_eq!(r, vec![(0, ResultStatus::Scored, 3)]);
    // Seq 35 completes window 2 and closes window 1 with 4 of 12: incomplete, not scored.
    let report = block_on(pipeline.process(&messages[23..25], 0));
    let r: Vec<_> = report
        .results
        .iter()
        .map(|r| (r.window, r.status, r.filled))
        .collect();
    assert_eq!(
        r,
        vec![
            (1, ResultStatus::Incomplete, 0),
            (2, ResultStatus::Scored, 0)
        ]
    );
    let rest = block_on(pipeline.process(&messages[25..], 0));
    assert_eq!(
        rest.results.iter().map(|r| r.window).collect::<Vec<_>>(),
        vec![3]
    );
    // A straggler for the closed window 1 is late, not counted.
    let late = block_on(pipeline.process(&[message(&device, 99, &all[14..15])], 0));
    assert_eq!(late.counters.late, 1);
    assert!(late.results.is_empty());
}

/// A pause during which "the other invocation" holding window 0 finishes it (or, when
/// `finishes` is false, never does), counting the pauses.
struct HolderFinishesDuringPause<'a> {
    ports: &'a MemoryPorts,
    stream: StreamKey,
    finishes: bool,
    pauses: AtomicU64,
}

#[async_trait]
impl vigil_core::ports::Pause for HolderFinishesDuringPause<'_> {
    async fn pause(&self, _: u64) {
        use vigil_core::ports::{WindowOutcome, WindowStore};
        if self.pauses.fetch_add(1, Ordering::SeqCst) == 0 && self.finishes {
            let outcome = WindowOutcome {
                label: "ok".into(),
                finished_ms: 1,
            };
            self.ports
                .windows
                .finish(&self.stream, 0, &outcome)
                .await
                .unwrap();
        }
    }
}

/// Window 0 received in full by a first message, then claimed by "another invocation"; a
/// second message completes window 1 and brings window 0 back as a candidate.
fn busy_window_case(finishes: bool) -> (vigil_core::pipeline::BatchReport, u64, u64) {
    use vigil_core::ports::{Claim, WindowStore};
    let (profiles, scorer) = compiled(12, 12);
    let ports = MemoryPorts::new();
    let device = DeviceId::new("dev-busy").unwrap();
    let all = samples(24);
    let pause = HolderFinishesDuringPause {
        ports: &ports,
        stream: stream(&device),
        finishes,
        pauses: AtomicU64::new(0),
    };
    // The first 11 samples of window 0 arrive; then its last sample and window 1 together,
    // while another invocation has claimed window 0 (as if it had raced this one to it).
    let first = Pipeline::new(&profiles, ports.ports(), config()).unwrap();
    block_on(first.process(&[message(&device, 0, &all[..11])], 0));
    let pipeline = Pipeline::new(
        &profiles,
        vigil_core::Ports {
            pause: &pause,
            ..ports.ports()
        },
        config(),
    )
    .unwrap();
    block_on(async {
        let held = ports
            .windows
            .append(
                &stream(&device),
                0,
                &vigil_core::ports::Chunk::new(all[11..12].to_vec()),
                0,
            )
            .await
            .unwrap();
        assert!(held.stored);
        let claim = ports.windows.claim(&stream(&device), 0, 0, 60_000).await;
        assert_eq!(claim.unwrap(), Claim::Granted);
    });
    let report = block_on(pipeline.process(&[message(&device, 1, &all[11..])], 0));
    let calls = scorer.calls.load(Ordering::SeqCst);
    (report, pause.pauses.load(Ordering::SeqCst), calls)
}

#[test]
fn a_window_held_elsewhere_is_waited_for_briefly_instead_of_failing_the_batch() {
    let (report, pauses, scored) = busy_window_case(true);
    assert!(
        matches!(report.outcomes[0], MessageOutcome::Accepted { .. }),
        "{:?}",
        report.outcomes[0]
    );
    assert_eq!(pauses, 1, "one pause was enough");
    assert_eq!(report.counters.windows_busy, 0);
    // Window 0 was scored by its holder, not here; window 1 is scored here.
    assert_eq!(scored, 1);
    assert_eq!(report.results.len(), 1);
    assert_eq!(report.results[0].window, 1);
}

#[test]
fn a_window_held_past_every_wait_fails_the_batch_retryably() {
    let (report, pauses, scored) = busy_window_case(false);
    assert!(
        matches!(
            report.outcomes[0],
            MessageOutcome::Failed {
                retryable: true,
                ..
            }
        ),
        "{:?}",
        report.outcomes[0]
    );
    assert_eq!(
        pauses as usize,
        PipelineConfig::default().busy_waits_ms.len()
    );
    assert_eq!(report.counters.windows_busy, 1);
    assert_eq!(
        scored, 0,
        "window 1 waits for window 0: states apply in order"
    );
}

/// Commit-first (DynamoDB's protocol): SNS fails after the commit of the raising window. The
/// retry of that delivery, in another process, sends what was committed; another delivery of
/// the same samples, and a repeat of the retry once done, send nothing.
#[test]
fn commit_first_a_failed_notification_is_sent_by_the_retry_of_the_committing_delivery() {
    let all = samples(72); // windows 0,1 cold; 2,3 hot → raise at window 3; 4,5 cold → clear at 5
    let (profiles, scorer) = compiled(12, 12);
    let ports = memory_ports(true);
    let device = DeviceId::new("dev-1").unwrap();
    let delivery = |first_id: usize| -> Vec<Message> {
        all.chunks(12)
            .enumerate()
            .map(|(i, c)| message(&device, first_id + i, c))
            .collect()
    };
    let run = |messages: &[Message]| {
        let pipeline = Pipeline::new(&profiles, ports.ports(), config()).unwrap();
        block_on(pipeline.process(messages, 0))
    };
    *ports.recorder.fail_alerts.lock().unwrap() = 1;
    let first = run(&delivery(0));
    assert!(first.outcomes.iter().all(|o| matches!(
        o,
        MessageOutcome::Failed {
            retryable: true,
            ..
        }
    )));
    assert!(ports.recorder.alerts().is_empty());
    let committed = ports.states.get(&stream(&device)).unwrap();
    assert_eq!(
        committed.applied_window,
        Some(3),
        "committed before its effects"
    );
    let pending = committed.pending.as_ref().unwrap();
    assert_eq!(pending.window, 3);
    assert!(pending.committed_by("m3"));
    // A duplicate from another delivery (other ids): window 3 is closed, not its commit. It
    // runs in the process the retry then comes through, which must not take the window for done.
    let shared = Pipeline::new(&profiles, ports.ports(), config()).unwrap();
    let other = block_on(shared.process(&delivery(100)[..4], 0));
    assert_eq!(other.counters.windows_scored, 0, "{:?}", other.counters);
    assert!(ports.recorder.alerts().is_empty());

    let retry = block_on(shared.process(&delivery(0), 0));
    assert!(all_accepted(&retry.outcomes), "{:?}", retry.outcomes);
    let kinds = alert_kinds(&ports);
    assert_eq!(kinds, vec!["raised", "cleared"]);
    let again = run(&delivery(0));
    assert_eq!(again.counters.windows_scored, 0);
    assert_eq!(ports.recorder.alerts().len(), 2);
    // Archived once per window; scored once per window (the retry sends what was committed).
    let archived: Vec<u64> = ports
        .recorder
        .archived
        .lock()
        .unwrap()
        .iter()
        .map(|w| w.result.window)
        .collect();
    assert_eq!(archived, (0..6).collect::<Vec<_>>());
    assert_eq!(scorer.calls.load(Ordering::SeqCst), 6);
    let state = ports.states.get(&stream(&device)).unwrap();
    assert_eq!(
        (state.applied_window, state.alert.active.clone()),
        (Some(5), None)
    );
}

/// Commit-first: SNS fails after the commit of the raising window and its delivery is never
/// retried (or its retry comes after the next commit, which replaces the pending record): the
/// next window's close finds the raising window unarchived and sends its result, alert and
/// archive then, once.
#[test]
fn commit_first_effects_lost_with_their_retry_go_out_with_the_next_close() {
    let all = samples(60); // windows 0,1 cold; 2,3 hot → raise at window 3; 4 cold
    let (profiles, scorer) = compiled(12, 12);
    let ports = memory_ports(true);
    let device = DeviceId::new("dev-1").unwrap();
    let messages: Vec<Message> = all
        .chunks(12)
        .enumerate()
        .map(|(i, c)| message(&device, i, c))
        .collect();
    let pipeline = Pipeline::new(&profiles, ports.ports(), config()).unwrap();
    let run = |m: &Message| block_on(pipeline.process(std::slice::from_ref(m), 0));
    for m in &messages[..3] {
        assert_eq!(run(m).counters.windows_scored, 1);
    }
    *ports.recorder.fail_alerts.lock().unwrap() = 1;
    assert!(matches!(
        run(&messages[3]).outcomes[..],
        [MessageOutcome::Failed {
            retryable: true,
            ..
        }]
    ));
    let windows_of = |results: Vec<vigil_core::ports::WindowResult>| -> Vec<u64> {
        results.iter().map(|r| r.window).collect::<Vec<_>>()
    };
    let archived = || -> Vec<u64> {
        let a = ports.recorder.archived.lock().unwrap();
        a.iter().map(|w| w.result.window).collect()
    };
    assert!(ports.recorder.alerts().is_empty());
    assert_eq!(
        archived(),
        vec![0, 1, 2],
        "window 3 committed, not archived"
    );
    // No retry of message 3: window 4's close, a lease later (window 3's committer is gone),
    // carries window 3's effects.
    let lease = config().lease_ms;
    let next = block_on(pipeline.process(std::slice::from_ref(&messages[4]), 2 * lease));
    assert_eq!(next.counters.windows_scored, 1);
    let alerts = ports.recorder.alerts();
    assert_eq!(
        alerts
            .iter()
            .map(|a| (a.transition.kind(), a.window))
            .collect::<Vec<_>>(),
        vec![("raised", 3)]
    );
    // Window 3's result may have gone out with the failed attempt (it goes with the alerts).
    let mut published = windows_of(ports.recorder.results());
    published.dedup();
    assert_eq!(published, vec![0, 1, 2, 3, 4]);
    let mut archived_now = archived();
    archived_now.sort_unstable();
    assert_eq!(archived_now, vec![0, 1, 2, 3, 4]);
    // Scored once per window: the carried effects are what window 3's commit recorded.
    assert_eq!(scorer.calls.load(Ordering::SeqCst), 5);
    // The late retry of message 3 now sends nothing more.
    let late = run(&messages[3]);
    assert_eq!(late.counters.windows_scored, 0);
    assert_eq!(ports.recorder.alerts().len(), 1);
    let mut published = windows_of(ports.recorder.results());
    published.dedup();
    assert_eq!(published, vec![0, 1, 2, 3, 4]);
}

/// Commit-first: two invocations at once deliver every sample (each its own delivery id): no
/// claim, the commit decides; each window is published and archived once, with all its samples.
#[test]
fn commit_first_concurrent_deliveries_close_each_window_once() {
    let all = samples(240);
    let (profiles, _) = compiled(12, 12);
    let ports = memory_ports(true);
    let device = DeviceId::new("dev-1").unwrap();
    std::thread::scope(|s| {
        for copy in 0..2 {
            let (profiles, ports, all, device) = (&profiles, &ports, &all, &device);
            s.spawn(move || {
                let pipeline = Pipeline::new(profiles, ports.ports(), config()).unwrap();
                let messages: Vec<Message> = all
                    .chunks(3)
                    .enumerate()
                    .map(|(i, c)| message(device, copy * 1_000 + i, c))
                    .collect();
                for m in messages.chunks(2) {
                    let report = block_on(pipeline.process(m, 0));
                    assert!(all_accepted(&report.outcomes), "{:?}", report.outcomes);
                }
            });
        }
    });
    let mut windows: Vec<u64> = ports.recorder.results().iter().map(|r| r.window).collect();
    windows.sort();
    assert_eq!(
        windows,
        (0..20).collect::<Vec<_>>(),
        "each window published once"
    );
    let archived = ports.recorder.archived.lock().unwrap();
    assert_eq!(archived.len(), 20);
    assert!(archived
        .iter()
        .all(|w| w.samples.len() == 12 && w.result.completeness == 1.0));
}
