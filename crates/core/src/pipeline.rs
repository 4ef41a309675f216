//! The pipeline: messages in, windows scored exactly once, results and alerts out — over ports.
//!
//! The same code runs in the Lambda (DynamoDB, IoT data plane, SNS, S3) and at the edge
//! (embedded store, MQTT). Every step is idempotent, so a redelivered message or a retried
//! batch changes nothing that was already done:
//! - samples are stored as chunks keyed by their seqs (a redelivery makes the same chunk);
//! - a window is scored by whoever claims it; the claim is exclusive while its lease lives;
//! - the device state (alert hysteresis, baseline) is saved with optimistic concurrency and
//!   records the last window applied, so a window is applied at most once and in order;
//! - a notification is re-sent when a retry finds its transition recorded but the window not
//!   finished (at-least-once, like SNS itself).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures_util::stream::{self, StreamExt};

use crate::ports::{
    AlertEvent, AlertSink, AppendOutcome, BaselineSource, Chunk, Claim, ClosedWindow,
    DeviceRegistry, DeviceState, DeviceStateStore, Pause, PortError, RejectSink, Rejected,
    ResultSink, ResultStatus, StreamKey, Versioned, WindowArchive, WindowInfo, WindowOutcome,
    WindowResult, WindowState, WindowStore,
};
use crate::profile::Profile;
use crate::scorer::Scorer;
use crate::seq_guard;

mod close;
use crate::telemetry::{parse_message, DeviceId, Sample, TelemetryError};
use crate::transform::Chain;
use crate::window::{assemble, dedup_by_seq, Assembly, WindowId};
use crate::{alarm, alert};
use close::{Closed, Closing};

/// A profile ready to run: its transforms compiled and its scorer built.
#[derive(Clone)]
pub struct CompiledProfile {
    pub profile: Profile,
    pub chain: Chain,
    pub scorer: Arc<dyn Scorer>,
}

impl std::fmt::Debug for CompiledProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledProfile")
            .field("profile", &self.profile.name)
            .finish()
    }
}

impl CompiledProfile {
    pub fn new(profile: Profile, scorer: Arc<dyn Scorer>) -> Result<Self, String> {
        let scorer = crate::scorer::ConfidenceFloor::wrap(scorer, profile.min_confidence);
        let chain = Chain::new(
            &profile.transforms,
            (profile.window.size as usize, profile.channels.len()),
        )?;
        Ok(Self {
            profile,
            chain,
            scorer,
        })
    }
}

/// The ports a pipeline runs over.
#[derive(Clone, Copy)]
pub struct Ports<'a> {
    pub windows: &'a dyn WindowStore,
    pub states: &'a dyn DeviceStateStore,
    pub registry: &'a dyn DeviceRegistry,
    pub baselines: &'a dyn BaselineSource,
    pub results: &'a dyn ResultSink,
    pub alerts: &'a dyn AlertSink,
    pub archive: &'a dyn WindowArchive,
    pub rejects: &'a dyn RejectSink,
    pub pause: &'a dyn Pause,
}

#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// Profile of devices the registry does not know.
    pub default_profile: String,
    /// How long a claim on a window lives; longer than the slowest scoring (a Lambda timeout).
    pub lease_ms: u64,
    /// Devices processed at once within a batch.
    pub device_concurrency: usize,
    /// Windows before the newest closable one that are re-checked for closing.
    pub close_lookback: u64,
    /// Pauses (ms) between claims of a window another invocation holds. Scoring takes tens of
    /// milliseconds, so a short wait usually finds it done; only after the last one does the
    /// batch fail retryably (the holder may have died, and only a retry after its lease helps).
    pub busy_waits_ms: Vec<u64>,
    /// Windows this process found incomplete at their last seq (shared by the invocations of
    /// one process).
    pub close_hints: CloseHints,
}

/// What this process learned about windows, shared by its invocations. Only hints: a window
/// another process handles is found through the store and the device state, one round trip
/// later.
/// - *armed*: windows whose last seq came before they were complete, so that the message that
///   completes one checks it at once (a store that does not count samples per window,
///   DynamoDB with one write per message, gives no other sign; when another process gets the
///   completing message, the window closes when its deadline is crossed);
/// - *closed*: windows this process saw closed (closing is permanent), so that re-checking
///   them at a crossed deadline costs nothing.
#[derive(Clone, Debug, Default)]
pub struct CloseHints(Arc<Mutex<Hints>>);

#[derive(Debug, Default)]
struct Hints {
    armed: HashSet<(StreamKey, WindowId)>,
    closed: HashSet<(StreamKey, WindowId)>,
    /// The last applied window of each device's state as last read here (a lower bound of the
    /// truth, which only grows): the seq guard needs no read while a sample is within the
    /// bound of it.
    marks: HashMap<StreamKey, Option<WindowId>>,
}

impl CloseHints {
    /// Bound on the windows remembered (forgotten all at once beyond it: hints only).
    const MAX: usize = 100_000;

    fn with<T>(&self, f: impl FnOnce(&mut Hints) -> T) -> T {
        f(&mut self.0.lock().expect("lock"))
    }

    fn arm(&self, stream: &StreamKey, window: WindowId) {
        self.with(|h| {
            if h.armed.len() >= Self::MAX {
                h.armed.clear();
            }
            h.armed.insert((stream.clone(), window));
        });
    }

    fn armed(&self, stream: &StreamKey, window: WindowId) -> bool {
        self.with(|h| h.armed.contains(&(stream.clone(), window)))
    }

    fn closed(&self, stream: &StreamKey, window: WindowId) {
        self.with(|h| {
            let key = (stream.clone(), window);
            h.armed.remove(&key);
            if h.closed.len() >= Self::MAX {
                h.closed.clear();
            }
            h.closed.insert(key);
        });
    }

    fn known_closed(&self, stream: &StreamKey, window: WindowId) -> bool {
        self.with(|h| h.closed.contains(&(stream.clone(), window)))
    }

    fn mark(&self, stream: &StreamKey) -> Option<Option<WindowId>> {
        self.with(|h| h.marks.get(stream).copied())
    }

    fn set_mark(&self, stream: &StreamKey, applied: Option<WindowId>) {
        self.with(|h| {
            if h.marks.len() >= Self::MAX {
                h.marks.clear();
            }
            let m = h.marks.entry(stream.clone()).or_insert(applied);
            *m = (*m).max(applied);
        });
    }
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            default_profile: String::new(),
            lease_ms: 60_000,
            device_concurrency: 16,
            close_lookback: 4,
            busy_waits_ms: vec![25, 50, 100, 200, 400],
            close_hints: CloseHints::default(),
        }
    }
}

/// One incoming message. The device comes from the topic, never from the payload.
#[derive(Clone, Debug)]
pub struct Message {
    /// Unique per delivery source (SQS message id, Kinesis sequence number, MQTT pkid...).
    pub id: String,
    pub device: DeviceId,
    pub payload: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum MessageOutcome {
    Accepted {
        samples: usize,
        duplicates: usize,
        late: usize,
    },
    /// Bad input: sent to the dead-letter target; retrying cannot help.
    Rejected(TelemetryError),
    /// A port or scorer failed; the message should be retried when `retryable`.
    Failed { error: String, retryable: bool },
}

/// Counters for logs and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    pub messages: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub failed: u64,
    pub samples: u64,
    pub duplicates: u64,
    pub late: u64,
    pub windows_scored: u64,
    pub windows_incomplete: u64,
    pub windows_busy: u64,
    pub alerts: u64,
    /// Rejections per reason code.
    pub rejects_by_reason: BTreeMap<String, u64>,
}

impl Counters {
    pub fn merge(&mut self, other: &Counters) {
        self.messages += other.messages;
        self.accepted += other.accepted;
        self.rejected += other.rejected;
        self.failed += other.failed;
        self.samples += other.samples;
        self.duplicates += other.duplicates;
        self.late += other.late;
        self.windows_scored += other.windows_scored;
        self.windows_incomplete += other.windows_incomplete;
        self.windows_busy += other.windows_busy;
        self.alerts += other.alerts;
        for (k, v) in &other.rejects_by_reason {
            *self.rejects_by_reason.entry(k.clone()).or_default() += v;
        }
    }
}

#[derive(Debug, Default)]
pub struct BatchReport {
    /// One outcome per input message, in input order.
    pub outcomes: Vec<MessageOutcome>,
    pub results: Vec<WindowResult>,
    pub alerts: Vec<AlertEvent>,
    pub counters: Counters,
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("default profile {0:?} is not among the loaded profiles ({1})")]
    UnknownDefaultProfile(String, String),
}

pub struct Pipeline<'a> {
    profiles: &'a BTreeMap<String, CompiledProfile>,
    ports: Ports<'a>,
    config: PipelineConfig,
}

impl std::fmt::Debug for Pipeline<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("profiles", &self.profiles.keys().collect::<Vec<_>>())
            .field("config", &self.config)
            .finish()
    }
}

struct DeviceBatch<'m> {
    device: DeviceId,
    /// Indexes into the input of this device's messages.
    indexes: Vec<usize>,
    messages: Vec<&'m Message>,
}

struct DeviceReport {
    outcomes: Vec<(usize, MessageOutcome)>,
    results: Vec<WindowResult>,
    alerts: Vec<AlertEvent>,
    counters: Counters,
}

impl<'a> Pipeline<'a> {
    pub fn new(
        profiles: &'a BTreeMap<String, CompiledProfile>,
        ports: Ports<'a>,
        config: PipelineConfig,
    ) -> Result<Self, PipelineError> {
        if !profiles.contains_key(&config.default_profile) {
            let names = profiles.keys().cloned().collect::<Vec<_>>().join(", ");
            return Err(PipelineError::UnknownDefaultProfile(
                config.default_profile.clone(),
                names,
            ));
        }
        Ok(Self {
            profiles,
            ports,
            config,
        })
    }

    /// Processes messages of any number of devices. Never fails as a whole: each message gets
    /// its own outcome, so one device's trouble does not fail another's messages.
    pub async fn process(&self, messages: &[Message], now_ms: u64) -> BatchReport {
        let mut by_device: BTreeMap<&DeviceId, DeviceBatch<'_>> = BTreeMap::new();
        for (i, m) in messages.iter().enumerate() {
            let entry = by_device.entry(&m.device).or_insert_with(|| DeviceBatch {
                device: m.device.clone(),
                indexes: vec![],
                messages: vec![],
            });
            entry.indexes.push(i);
            entry.messages.push(m);
        }
        let reports: Vec<DeviceReport> = stream::iter(by_device.into_values())
            .map(|batch| self.process_device(batch, now_ms))
            .buffer_unordered(self.config.device_concurrency.max(1))
            .collect()
            .await;

        let mut report = BatchReport {
            outcomes: vec![
                MessageOutcome::Failed {
                    error: "not processed".into(),
                    retryable: true
                };
                messages.len()
            ],
            ..Default::default()
        };
        for r in reports {
            for (i, o) in r.outcomes {
                report.outcomes[i] = o;
            }
            report.results.extend(r.results);
            report.alerts.extend(r.alerts);
            report.counters.merge(&r.counters);
        }
        report
            .results
            .sort_by(|a, b| (&a.device, a.window).cmp(&(&b.device, b.window)));
        report
    }

    async fn process_device(&self, batch: DeviceBatch<'_>, now_ms: u64) -> DeviceReport {
        let mut report = DeviceReport {
            outcomes: vec![],
            results: vec![],
            alerts: vec![],
            counters: Counters::default(),
        };
        report.counters.messages = batch.messages.len() as u64;
        let fail_all = |report: &mut DeviceReport, indexes: &[usize], e: &PortError| {
            for &i in indexes {
                report.outcomes.push((
                    i,
                    MessageOutcome::Failed {
                        error: e.to_string(),
                        retryable: e.retryable,
                    },
                ));
            }
            report.counters.failed += indexes.len() as u64;
        };

        let profile = match self.profile_for(&batch.device).await {
            Ok(p) => p,
            Err(e) => {
                fail_all(&mut report, &batch.indexes, &e);
                return report;
            }
        };
        let stream_key = StreamKey {
            device: batch.device.clone(),
            profile: profile.profile.name.clone(),
        };

        // Parse; bad messages go to the dead-letter target and out of the batch.
        let mut parsed: Vec<Result<Vec<Sample>, TelemetryError>> = batch
            .messages
            .iter()
            .map(|m| parse_message(&m.payload, &profile.profile.channels))
            .collect();
        // Seq sanity (crate::seq_guard): the device state is read only when a seq is high
        // enough to be a jump at all, and not even then while every sample is within the bound
        // of the mark this process last read (the mark only grows, so a stale one is stricter;
        // a sample past it is checked against a fresh read before it is rejected).
        let spec = &profile.profile.window;
        let hints = &self.config.close_hints;
        let within = |applied: Option<WindowId>, parsed: &[Result<Vec<Sample>, TelemetryError>]| {
            parsed.iter().all(|p| {
                p.as_ref().map_or(true, |s| {
                    seq_guard::check_seq_jump(s, spec, applied).is_ok()
                })
            })
        };
        if parsed
            .iter()
            .any(|p| p.as_ref().is_ok_and(|s| seq_guard::needs_mark(s, spec)))
            && !hints.mark(&stream_key).is_some_and(|m| within(m, &parsed))
        {
            match self.ports.states.load(&stream_key).await {
                Ok(state) => {
                    let applied = state.value.applied_window;
                    hints.set_mark(&stream_key, applied);
                    for p in &mut parsed {
                        if let Ok(samples) = p {
                            if let Err(e) = seq_guard::check_seq_jump(samples, spec, applied) {
                                *p = Err(e);
                            }
                        }
                    }
                }
                Err(e) => {
                    fail_all(&mut report, &batch.indexes, &e);
                    return report;
                }
            }
        }
        let mut accepted: Vec<(usize, Vec<Sample>)> = Vec::new();
        for ((&i, m), parsed) in batch.indexes.iter().zip(&batch.messages).zip(parsed) {
            match parsed {
                Ok(samples) => accepted.push((i, samples)),
                Err(error) => {
                    let rejected = Rejected {
                        message_id: m.id.clone(),
                        device: Some(m.device.clone()),
                        error: error.clone(),
                        payload: m.payload.clone(),
                    };
                    match self.ports.rejects.reject(&rejected).await {
                        Ok(()) => {
                            report.counters.rejected += 1;
                            *report
                                .counters
                                .rejects_by_reason
                                .entry(error.code().to_string())
                                .or_default() += 1;
                            report.outcomes.push((i, MessageOutcome::Rejected(error)));
                        }
                        Err(e) => fail_all(&mut report, &[i], &e),
                    }
                }
            }
        }
        if accepted.is_empty() {
            return report;
        }
        let accepted_indexes: Vec<usize> = accepted.iter().map(|(i, _)| *i).collect();
        // Which delivery carried each seq (the first, in input order): a close is committed in
        // the name of the delivery holding its window's last seq here.
        let mut carriers = Carriers::default();
        for (i, samples) in &accepted {
            if let Some(k) = batch.indexes.iter().position(|j| j == i) {
                for s in samples {
                    carriers
                        .0
                        .entry(s.seq)
                        .or_insert_with(|| batch.messages[k].id.clone());
                }
            }
        }
        match self
            .store_and_score(
                &stream_key,
                profile,
                &accepted,
                &carriers,
                now_ms,
                &mut report,
            )
            .await
        {
            Ok(per_message) => {
                for ((i, samples), (duplicates, late)) in accepted.iter().zip(per_message) {
                    report.outcomes.push((
                        *i,
                        MessageOutcome::Accepted {
                            samples: samples.len(),
                            duplicates,
                            late,
                        },
                    ));
                    report.counters.accepted += 1;
                    report.counters.samples += samples.len() as u64;
                    report.counters.duplicates += duplicates as u64;
                    report.counters.late += late as u64;
                }
            }
            Err(e) => fail_all(&mut report, &accepted_indexes, &e),
        }
        report
    }

    async fn profile_for(&self, device: &DeviceId) -> Result<&CompiledProfile, PortError> {
        let name = self
            .ports
            .registry
            .profile_of(device)
            .await?
            .unwrap_or_else(|| self.config.default_profile.clone());
        self.profiles.get(&name).ok_or_else(|| {
            // A registry pointing at a profile this deployment does not have is a configuration
            // error: retrying will not fix it, and the messages must not be dropped silently.
            PortError::permanent(
                "registry",
                format!("device {device} uses profile {name:?}, which is not loaded"),
            )
        })
    }

    /// Stores the accepted samples and scores every window they make ready. Returns, per
    /// accepted message, how many of its samples were duplicates and how many were late.
    async fn store_and_score(
        &self,
        stream_key: &StreamKey,
        profile: &CompiledProfile,
        accepted: &[(usize, Vec<Sample>)],
        carriers: &Carriers,
        now_ms: u64,
        report: &mut DeviceReport,
    ) -> Result<Vec<(usize, usize)>, PortError> {
        let spec = &profile.profile.window;
        // Merge all messages of this device: one chunk per window, fewer writes in batched mode.
        let mut all: Vec<Sample> = accepted
            .iter()
            .flat_map(|(_, s)| s.iter().cloned())
            .collect();
        dedup_by_seq(&mut all);
        let high_water = all.last().map_or(0, |s| s.seq);

        let mut touched: BTreeMap<WindowId, WindowInfo> = BTreeMap::new();
        let mut seqs = Seqs::default();
        // A chunk that holds its window's last seq may complete the window: it is not appended
        // here but stored with the claim (one write for both), or appended if the window turns
        // out not to be ready.
        let mut deferred: BTreeMap<WindowId, Chunk> = BTreeMap::new();
        for (window, samples) in spec.split(&all) {
            let chunk = Chunk::new(samples);
            if chunk.samples.last().map(|s| s.seq) == Some(spec.end(window) - 1) {
                deferred.insert(window, chunk);
                continue;
            }
            let outcome = self
                .ports
                .windows
                .append(stream_key, window, &chunk, now_ms)
                .await?;
            seqs.classify(window, &outcome, &chunk);
            touched.insert(window, outcome.info);
        }

        // Candidates: windows that may be complete (their last seq is here, or the store counted
        // enough samples), and, when this batch crosses a close deadline, the windows around it
        // (re-checked at every crossing, so a lost trigger cannot strand one). Nothing is read
        // for a message that can close nothing.
        let hints = &self.config.close_hints;
        let mut candidates: BTreeSet<WindowId> = touched
            .iter()
            .filter(|(w, i)| {
                i.state != WindowState::Done
                    && (i.received >= spec.size || hints.armed(stream_key, **w))
            })
            .map(|(w, _)| *w)
            .chain(deferred.keys().copied())
            .collect();
        let low = all.first().map_or(0, |s| s.seq);
        if let Some(crossed) = spec.closable_between(low.checked_sub(1), high_water) {
            let last = *crossed.end();
            let first = last.saturating_sub(
                self.config.close_lookback + u64::from(spec.size.div_ceil(spec.hop)),
            );
            // Usually all closed already, as this process saw: then nothing is read.
            if (first..=last).any(|w| !hints.known_closed(stream_key, w)) {
                for info in self.ports.windows.windows(stream_key, first..=last).await? {
                    if info.state != WindowState::Done {
                        candidates.insert(info.window);
                    }
                }
            }
        }
        candidates.retain(|&w| !hints.known_closed(stream_key, w));
        // A held-back chunk must not wait behind the re-check of an earlier window (others
        // would find its window incomplete meanwhile): it keeps only behind windows of this
        // batch about to be closed.
        let first_recheck = candidates
            .iter()
            .find(|w| !deferred.contains_key(w))
            .copied();
        for (w, chunk) in std::mem::take(&mut deferred) {
            if hints.known_closed(stream_key, w) {
                seqs.late(w, &chunk);
            } else if first_recheck.is_some_and(|f| f < w) {
                let outcome = self
                    .ports
                    .windows
                    .append(stream_key, w, &chunk, now_ms)
                    .await?;
                seqs.classify(w, &outcome, &chunk);
                touched.insert(w, outcome.info);
            } else {
                deferred.insert(w, chunk);
            }
        }

        let mut busy = None;
        // The device state, read with the first window looked at and kept up to date after.
        let mut state = None;
        for window in candidates {
            let pending = deferred.remove(&window);
            let mut ctx = Closing {
                stream_key,
                profile,
                high_water,
                now_ms,
                carriers,
                state: &mut state,
                seqs: &mut seqs,
                report,
            };
            match self.close_window(&mut ctx, window, pending).await? {
                Closed::Yes | Closed::NotReady => {}
                Closed::Busy => {
                    // Windows are applied to the device state in order: stop at a held one.
                    busy = Some(window);
                    break;
                }
            }
        }
        if let Some(window) = busy {
            // The chunks not looked at yet are stored before failing, like any other.
            for (w, chunk) in std::mem::take(&mut deferred) {
                let outcome = self
                    .ports
                    .windows
                    .append(stream_key, w, &chunk, now_ms)
                    .await?;
                seqs.classify(w, &outcome, &chunk);
            }
            // Another invocation holds a ready window. If it is alive it will finish; if it died
            // only a retry of this batch (after its lease) can close the window, so ask for one.
            return Err(PortError::retryable(
                "windows",
                format!(
                    "window {window} of {} is being scored elsewhere",
                    stream_key.device
                ),
            ));
        }

        let (late_seqs, duplicate_seqs) = seqs.resolve(spec);
        // Attribute duplicates and late samples back to the messages that carried them.
        let mut seen_in_batch: BTreeSet<u64> = BTreeSet::new();
        let mut per_message = Vec::with_capacity(accepted.len());
        for (_, samples) in accepted {
            let (mut duplicates, mut late) = (0, 0);
            for s in samples {
                if !seen_in_batch.insert(s.seq) || duplicate_seqs.contains(&s.seq) {
                    duplicates += 1;
                } else if late_seqs.contains(&s.seq) {
                    late += 1;
                }
            }
            per_message.push((duplicates, late));
        }
        Ok(per_message)
    }
}

/// The delivery id that carried each seq of a device's batch.
#[derive(Default)]
struct Carriers(BTreeMap<u64, String>);

impl Carriers {
    /// The delivery a close of `window` is committed by: the one holding its highest seq in
    /// this batch, else (a window closed by a crossed deadline) the one holding the batch's
    /// highest seq. The same deliveries give the same answer, so a retry finds its own commit.
    fn committer(&self, spec: &crate::window::WindowSpec, window: WindowId) -> String {
        self.0
            .range(spec.start(window)..spec.end(window))
            .next_back()
            .or_else(|| self.0.last_key_value())
            .map(|(_, id)| id.clone())
            .unwrap_or_default()
    }
}

/// Which seqs of a batch were duplicates and which were late, as the windows answered.
#[derive(Default)]
struct Seqs {
    /// Windows that took (or already had) samples of this batch.
    open: BTreeSet<WindowId>,
    late: BTreeSet<u64>,
    duplicate: BTreeSet<u64>,
}

impl Seqs {
    fn classify(&mut self, window: WindowId, outcome: &AppendOutcome, chunk: &Chunk) {
        if outcome.info.state == WindowState::Done {
            self.late(window, chunk);
        } else if outcome.stored {
            self.stored(window, chunk);
        } else {
            self.duplicate(window, chunk);
        }
    }

    fn stored(&mut self, window: WindowId, _: &Chunk) {
        self.open.insert(window);
    }

    fn duplicate(&mut self, window: WindowId, chunk: &Chunk) {
        self.open.insert(window);
        self.duplicate.extend(chunk.samples.iter().map(|s| s.seq));
    }

    fn late(&mut self, _: WindowId, chunk: &Chunk) {
        self.late.extend(chunk.samples.iter().map(|s| s.seq));
    }

    /// (late, duplicate) seqs. A sample is late only if every window it belongs to was closed.
    fn resolve(self, spec: &crate::window::WindowSpec) -> (BTreeSet<u64>, BTreeSet<u64>) {
        let Self {
            open,
            mut late,
            mut duplicate,
        } = self;
        late.retain(|&seq| spec.windows_of(seq).all(|w| !open.contains(&w)));
        duplicate.retain(|seq| !late.contains(seq));
        (late, duplicate)
    }
}

/// Counts the accepted, rejected and failed outcomes (for callers that need only totals).
pub fn summarize(outcomes: &[MessageOutcome]) -> (usize, usize, usize) {
    outcomes.iter().fold((0, 0, 0), |(a, r, f), o| match o {
        MessageOutcome::Accepted { .. } => (a + 1, r, f),
        MessageOutcome::Rejected(_) => (a, r + 1, f),
        MessageOutcome::Failed { .. } => (a, r, f + 1),
    })
}
