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

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures_util::stream::{self, StreamExt};

use crate::ports::{
    AlertEvent, AlertSink, BaselineSource, Chunk, Claim, ClosedWindow, Contribution,
    DeviceRegistry, DeviceStateStore, Pause, PortError, RejectSink, Rejected, ResultSink,
    ResultStatus, StreamKey, WindowArchive, WindowInfo, WindowOutcome, WindowResult, WindowState,
    WindowStore,
};
use crate::profile::Profile;
use crate::scorer::Scorer;
use crate::telemetry::{parse_message, DeviceId, Sample, TelemetryError};
use crate::transform::Chain;
use crate::window::{assemble, dedup_by_seq, Assembly, WindowId};
use crate::{alarm, alert};

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
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            default_profile: String::new(),
            lease_ms: 60_000,
            device_concurrency: 16,
            close_lookback: 4,
            busy_waits_ms: vec![25, 50, 100, 200, 400],
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
        let mut accepted: Vec<(usize, Vec<Sample>)> = Vec::new();
        for (&i, m) in batch.indexes.iter().zip(&batch.messages) {
            match parse_message(&m.payload, &profile.profile.channels) {
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
        match self
            .store_and_score(&stream_key, profile, &accepted, now_ms, &mut report)
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
        let mut late_seqs: BTreeSet<u64> = BTreeSet::new();
        let mut duplicate_seqs: BTreeSet<u64> = BTreeSet::new();
        for (window, samples) in spec.split(&all) {
            let chunk = Chunk::new(samples);
            let outcome = self
                .ports
                .windows
                .append(stream_key, window, &chunk, now_ms)
                .await?;
            if outcome.info.state == WindowState::Done {
                late_seqs.extend(chunk.samples.iter().map(|s| s.seq));
            } else if !outcome.stored {
                duplicate_seqs.extend(chunk.samples.iter().map(|s| s.seq));
            }
            touched.insert(window, outcome.info);
        }
        // A sample is late only if every window it belongs to was closed already.
        late_seqs.retain(|&seq| {
            spec.windows_of(seq)
                .all(|w| touched.get(&w).is_none_or(|i| i.state == WindowState::Done))
        });
        duplicate_seqs.retain(|seq| !late_seqs.contains(seq));

        // Candidates: touched windows that may be complete, and older windows now past their
        // close deadline (found again on every message, so a lost trigger cannot strand them).
        let mut candidates: BTreeMap<WindowId, WindowInfo> = touched
            .iter()
            .filter(|(_, i)| i.state != WindowState::Done && i.received >= spec.size)
            .map(|(w, i)| (*w, *i))
            .collect();
        if let Some(closable) = spec.closable_between(None, high_water) {
            let last = *closable.end();
            let first = last.saturating_sub(
                self.config.close_lookback + u64::from(spec.size.div_ceil(spec.hop)),
            );
            for info in self.ports.windows.windows(stream_key, first..=last).await? {
                if info.state != WindowState::Done {
                    candidates.insert(info.window, info);
                }
            }
        }

        let mut busy = None;
        for window in candidates.into_keys() {
            match self
                .close_window(stream_key, profile, window, high_water, now_ms, report)
                .await?
            {
                Closed::Yes | Closed::NotReady => {}
                Closed::Busy => {
                    // Windows are applied to the device state in order: stop at a held one.
                    busy = Some(window);
                    break;
                }
            }
        }
        if let Some(window) = busy {
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

    async fn close_window(
        &self,
        stream_key: &StreamKey,
        profile: &CompiledProfile,
        window: WindowId,
        high_water: u64,
        now_ms: u64,
        report: &mut DeviceReport,
    ) -> Result<Closed, PortError> {
        let spec = &profile.profile.window;
        let samples = self.ports.windows.load(stream_key, window).await?;
        let channels = profile.profile.channels.len();
        let assembly = assemble(spec, window, &samples, channels, high_water);
        if let Assembly::Pending { .. } = assembly {
            return Ok(Closed::NotReady);
        }
        let mut waits = self.config.busy_waits_ms.iter();
        loop {
            match self
                .ports
                .windows
                .claim(stream_key, window, now_ms, self.config.lease_ms)
                .await?
            {
                Claim::Granted => break,
                Claim::Busy => match waits.next() {
                    Some(&ms) => self.ports.pause.pause(ms).await,
                    None => {
                        report.counters.windows_busy += 1;
                        return Ok(Closed::Busy);
                    }
                },
                Claim::Done | Claim::Missing => return Ok(Closed::NotReady),
            }
        }

        let present = samples
            .iter()
            .filter(|s| s.seq >= spec.start(window) && s.seq < spec.end(window))
            .count();
        let mut result = WindowResult {
            device: stream_key.device.clone(),
            profile: profile.profile.name.clone(),
            window,
            seq_start: spec.start(window),
            seq_end: spec.end(window),
            ts_start: samples.first().map_or(0, |s| s.ts),
            ts_end: samples.last().map_or(0, |s| s.ts),
            status: ResultStatus::Incomplete,
            label: "incomplete".into(),
            labels: profile.scorer.labels().to_vec(),
            probabilities: vec![],
            anomaly_score: None,
            completeness: present as f32 / spec.size as f32,
            filled: 0,
            source: "none".into(),
            model_version: profile.scorer.version(),
            scored_at_ms: now_ms,
            alert: None,
            contributions: vec![],
        };

        let mut outbox = Vec::new();
        if let Assembly::Ready { matrix, filled } = assembly {
            result.filled = filled;
            result.status = ResultStatus::Scored;
            let features = profile.chain.apply(matrix);
            let published = self.ports.baselines.latest(stream_key).await?;
            // Optimistic concurrency on the device state: reload and redo on a conflict.
            loop {
                let stored = self.ports.states.load(stream_key).await?;
                let mut state = stored.value.clone();
                if let Some(b) = &published {
                    if state
                        .baseline
                        .as_ref()
                        .is_none_or(|cur| cur.version != b.version)
                    {
                        state.baseline = Some(b.clone());
                    }
                }
                let fresh = state.applied_window.is_none_or(|w| window > w);
                // A window out of order is scored against a copy: it must not move the baseline.
                let mut baseline = state.baseline.clone();
                let score = profile
                    .scorer
                    .score(&features, &mut baseline)
                    .await
                    .map_err(|e| PortError {
                        port: "scorer",
                        message: format!("window {window} of {}: {e}", stream_key.device),
                        retryable: e.is_retryable(),
                    })?;
                result.label = score.label.clone();
                result.probabilities = score.probabilities.clone();
                result.anomaly_score = score.anomaly_score;
                result.source = score.source.clone();
                result.model_version = score.model_version.clone();
                result.contributions =
                    Contribution::named(&score.contributions, &profile.profile.channels);
                if !fresh {
                    // Already applied (a retry after a crash) or out of order: report only. Any
                    // notification the earlier attempt left unsent is still in the outbox.
                    result.alert = state.alert.active.clone();
                    outbox = state.outbox.clone();
                    break;
                }
                state.baseline = baseline;
                let transition = alert::apply(
                    &profile.profile.alert,
                    &mut state.alert,
                    &score.label,
                    result.ts_end,
                );
                state.applied_window = Some(window);
                state.last_label = Some(score.label.clone());
                // Operators' alarms decide which transitions are told (snoozed, disabled) and
                // add escalations and reminders.
                for n in alarm::on_window(
                    &profile.profile.alert,
                    &mut state.alarms,
                    transition.as_ref(),
                    now_ms,
                ) {
                    let mut event = self.alert_event(stream_key, window, n.transition, &result);
                    event.alarm = Some(n.note);
                    state.outbox.push(event);
                }
                if self
                    .ports
                    .states
                    .save(stream_key, &state, stored.version)
                    .await?
                {
                    result.alert = state.alert.active.clone();
                    outbox = state.outbox.clone();
                    break;
                }
            }
            report.counters.windows_scored += 1;
        } else {
            report.counters.windows_incomplete += 1;
        }

        self.ports.results.publish(&result).await?;
        self.flush_outbox(stream_key, outbox, report).await?;
        let closed = ClosedWindow {
            result: result.clone(),
            channels: profile.profile.channels.clone(),
            samples,
        };
        self.ports.archive.archive(&closed).await?;
        self.ports
            .windows
            .finish(
                stream_key,
                window,
                &WindowOutcome {
                    label: result.label.clone(),
                    finished_ms: now_ms,
                },
            )
            .await?;
        report.results.push(result);
        Ok(Closed::Yes)
    }

    /// Sends the notifications recorded in the device state, then removes them from it. A crash
    /// in between sends one again on the next window (at-least-once, like SNS itself); a
    /// failure leaves them for the retry.
    async fn flush_outbox(
        &self,
        stream_key: &StreamKey,
        outbox: Vec<AlertEvent>,
        report: &mut DeviceReport,
    ) -> Result<(), PortError> {
        if outbox.is_empty() {
            return Ok(());
        }
        for event in &outbox {
            self.ports.alerts.notify(event).await?;
            report.counters.alerts += 1;
            report.alerts.push(event.clone());
        }
        loop {
            let stored = self.ports.states.load(stream_key).await?;
            let mut state = stored.value;
            let before = state.outbox.len();
            state.outbox.retain(|e| !outbox.contains(e));
            if state.outbox.len() == before
                || self
                    .ports
                    .states
                    .save(stream_key, &state, stored.version)
                    .await?
            {
                return Ok(());
            }
        }
    }

    fn alert_event(
        &self,
        stream_key: &StreamKey,
        window: WindowId,
        transition: alert::Transition,
        result: &WindowResult,
    ) -> AlertEvent {
        AlertEvent {
            device: stream_key.device.clone(),
            profile: stream_key.profile.clone(),
            window,
            transition,
            ts: result.ts_end,
            model_version: result.model_version.clone(),
            alarm: None,
            contributions: result.contributions.clone(),
        }
    }
}

enum Closed {
    Yes,
    NotReady,
    Busy,
}

/// Counts the accepted, rejected and failed outcomes (for callers that need only totals).
pub fn summarize(outcomes: &[MessageOutcome]) -> (usize, usize, usize) {
    outcomes.iter().fold((0, 0, 0), |(a, r, f), o| match o {
        MessageOutcome::Accepted { .. } => (a + 1, r, f),
        MessageOutcome::Rejected(_) => (a, r + 1, f),
        MessageOutcome::Failed { .. } => (a, r, f + 1),
    })
}
