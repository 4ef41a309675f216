//! Ports: the small traits the pipeline needs from the outside world. Adapters implement them
//! for DynamoDB / IoT / SNS / S3 (crate `vigil-aws`), an embedded store and MQTT (the `vigil`
//! CLI), and memory (`crate::memory`). No SDK type crosses these traits.

use std::ops::RangeInclusive;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::alarm::{AlarmBook, AlarmNote};
use crate::alert::{AlertState, Transition};

use crate::scorer::Baseline;
pub use crate::scorer::Contribution;
use crate::telemetry::{DeviceId, Sample, TelemetryError};
use crate::window::WindowId;

/// A port failed. `retryable` tells the caller whether the same input may succeed later.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{port}: {message}")]
pub struct PortError {
    pub port: &'static str,
    pub message: String,
    pub retryable: bool,
}

impl PortError {
    pub fn retryable(port: &'static str, message: impl Into<String>) -> Self {
        Self {
            port,
            message: message.into(),
            retryable: true,
        }
    }
    pub fn permanent(port: &'static str, message: impl Into<String>) -> Self {
        Self {
            port,
            message: message.into(),
            retryable: false,
        }
    }
}

/// The windows of one device under one profile.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StreamKey {
    pub device: DeviceId,
    pub profile: String,
}

/// Samples of one window from one message (or one batch of messages): the unit of storage.
/// Its id is derived from the seqs it holds, so a redelivered message makes the same chunk.
#[derive(Clone, Debug, PartialEq)]
pub struct Chunk {
    pub id: String,
    pub samples: Vec<Sample>,
}

impl Chunk {
    /// Builds a chunk from samples sorted by seq with no repeats.
    pub fn new(samples: Vec<Sample>) -> Self {
        // FNV-1a over the seqs: stable across processes and platforms.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for s in &samples {
            for b in s.seq.to_le_bytes() {
                hash ^= u64::from(b);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        }
        let first = samples.first().map_or(0, |s| s.seq);
        let last = samples.last().map_or(0, |s| s.seq);
        Self {
            id: format!("{first:016x}-{last:016x}-{:04x}-{hash:016x}", samples.len()),
            samples,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowState {
    Open,
    /// Being scored by someone whose lease ends at `until_ms`.
    Claimed {
        until_ms: u64,
    },
    Done,
}

/// What a store knows about a window without reading its samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowInfo {
    pub window: WindowId,
    pub state: WindowState,
    /// Samples received, counted per stored chunk: an upper bound on distinct seqs
    /// (overlapping chunks are possible when batching differs between deliveries). A store
    /// that does not count on append (DynamoDB: one write per chunk, no counter) reports 0; the
    /// pipeline then checks a window when its last seq is seen or its deadline is crossed.
    pub received: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendOutcome {
    /// False when this chunk was already stored (a redelivery).
    pub stored: bool,
    pub info: WindowInfo,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The caller now holds the window; it must `finish` it.
    Granted,
    /// Someone else holds a live lease.
    Busy,
    Done,
    Missing,
}

/// Summary stored with a finished window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowOutcome {
    pub label: String,
    pub finished_ms: u64,
}

#[async_trait]
pub trait WindowStore: Send + Sync {
    /// Stores a chunk of one window. Idempotent per chunk id. When the window is already done,
    /// nothing is stored and the returned state says `Done` (the samples are late).
    async fn append(
        &self,
        stream: &StreamKey,
        window: WindowId,
        chunk: &Chunk,
        now_ms: u64,
    ) -> Result<AppendOutcome, PortError>;
    /// The window's samples, sorted by seq, one per seq (the first stored copy wins).
    async fn load(&self, stream: &StreamKey, window: WindowId) -> Result<Vec<Sample>, PortError>;
    /// Windows that exist in the range (absent ones are left out), in ascending order. A store
    /// that cannot tell an open window from an absent one without reading its samples may list
    /// it as open with `received` 0: loading it then finds no samples.
    async fn windows(
        &self,
        stream: &StreamKey,
        range: RangeInclusive<WindowId>,
    ) -> Result<Vec<WindowInfo>, PortError>;
    /// Takes the window for scoring, or says why not. Exactly one caller gets `Granted` while
    /// the lease lives; an expired lease may be taken over (its holder died).
    async fn claim(
        &self,
        stream: &StreamKey,
        window: WindowId,
        now_ms: u64,
        lease_ms: u64,
    ) -> Result<Claim, PortError>;
    /// Takes the window like `claim` and stores `pending` (a chunk of it not yet appended) in
    /// the same step when granted: the message that completes a window pays one write for
    /// both. Also says what became of `pending`: `Some(true)` stored by this call,
    /// `Some(false)` it was stored already (a redelivery), `None` not stored (the claim was not
    /// granted: the caller appends it if it still needs it). Stores without a cheaper way
    /// append first.
    async fn claim_with(
        &self,
        stream: &StreamKey,
        window: WindowId,
        now_ms: u64,
        lease_ms: u64,
        pending: Option<&Chunk>,
    ) -> Result<(Claim, Option<bool>), PortError> {
        let stored = match pending {
            Some(chunk) => Some(self.append(stream, window, chunk, now_ms).await?.stored),
            None => None,
        };
        Ok((self.claim(stream, window, now_ms, lease_ms).await?, stored))
    }
    /// Whether the pipeline may claim a window it holds the last chunk of *while* loading it
    /// (one round trip less on the critical path), releasing the claim when the window turns
    /// out not to be ready. Stores that do not implement `release` keep the default (false).
    fn claims_before_load(&self) -> bool {
        false
    }
    /// Whether windows close without a claim: the close is committed in the device state
    /// *before* its effects (the commit is the only write of a close, and the chunk holding the
    /// window's last seq is never stored), with the verdict kept as [`DeviceState::pending`] so
    /// that a retry of the committing delivery sends the effects again. Stores that count writes
    /// (DynamoDB) say true; the default keeps the lease protocol.
    fn commits_first(&self) -> bool {
        false
    }
    /// Gives up a claim granted with this lease end before its window was ready (only called
    /// when `claims_before_load`); a chunk stored with the claim stays.
    async fn release(
        &self,
        _stream: &StreamKey,
        _window: WindowId,
        _until_ms: u64,
    ) -> Result<(), PortError> {
        Ok(())
    }
    /// Marks the window done. Later appends to it are late. A store may leave this to the
    /// device state (DynamoDB does: [`DeviceState::is_closed`] is what the pipeline checks).
    async fn finish(
        &self,
        stream: &StreamKey,
        window: WindowId,
        outcome: &WindowOutcome,
    ) -> Result<(), PortError>;
}

/// Per device and profile: alert state, scorer baseline, and what was last applied.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceState {
    pub alert: AlertState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Baseline>,
    /// Highest window applied to the alert state and baseline. Windows are applied in order;
    /// one that completes after a later one is reported but does not move the state.
    #[serde(default)]
    pub applied_window: Option<WindowId>,
    /// Notifications recorded with the state change that caused them and removed once sent,
    /// so that a crash or an SNS failure between the two cannot lose an alert.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbox: Vec<AlertEvent>,
    /// The latest result, as shown to the device.
    #[serde(default)]
    pub last_label: Option<String>,
    /// Every window up to this one is closed (or given up: see [`DeviceState::mark_closed`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_through: Option<WindowId>,
    /// Closed windows above `closed_through`, ascending (windows closing out of order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub closed_after: Vec<WindowId>,
    /// Operators' alarms per condition (acknowledged, snoozed...), see [`crate::alarm`].
    #[serde(default)]
    pub alarms: AlarmBook,
    /// The last close committed before its effects (stores that [`WindowStore::commits_first`]):
    /// what it sends, and which delivery committed it. A later close of the same window by that
    /// delivery (a retry: same request or message id) sends it again; any other finds the window
    /// closed and sends nothing. Replaced by the next commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingClose>,
}

/// A committed close and its effects, kept until the next commit replaces it. Kept small (the
/// state item is one write unit up to 1 KB): what the stream key, the window and the result
/// already say is left out and put back by [`PendingClose::result`] and [`PendingClose::alerts`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PendingClose {
    pub window: WindowId,
    /// The delivery that committed it (a hash of its Lambda request id, SQS message id or
    /// Kinesis sequence number): what a retry of that delivery carries again.
    pub by: String,
    #[serde(rename = "r")]
    verdict: Verdict,
    /// The alerts of the close: transition and alarm (the rest is the result's).
    #[serde(rename = "a", default, skip_serializing_if = "Vec::is_empty")]
    alerts: Vec<(Transition, Option<AlarmNote>)>,
}

/// A [`WindowResult`] without its device, profile, window and labels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Verdict {
    #[serde(rename = "s0")]
    seq_start: u64,
    #[serde(rename = "s1")]
    seq_end: u64,
    #[serde(rename = "t0")]
    ts_start: u64,
    #[serde(rename = "t1")]
    ts_end: u64,
    #[serde(rename = "st")]
    status: ResultStatus,
    #[serde(rename = "l")]
    label: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[serde(rename = "p")]
    probabilities: Vec<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "an")]
    anomaly_score: Option<f64>,
    #[serde(rename = "c")]
    completeness: f32,
    #[serde(rename = "f")]
    filled: u32,
    #[serde(rename = "src")]
    source: String,
    #[serde(rename = "mv")]
    model_version: String,
    #[serde(rename = "at")]
    scored_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "al")]
    alert: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[serde(rename = "co")]
    contributions: Vec<Contribution>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "ca")]
    candidate: Option<crate::scorer::CandidateScore>,
}

impl PendingClose {
    /// `delivery`: the committing delivery's id, kept as a 64-bit hash (ids run to 56 digits).
    pub fn new(delivery: &str, result: &WindowResult, alerts: &[AlertEvent]) -> Self {
        let r = result.clone();
        Self {
            window: r.window,
            by: Self::token(delivery),
            verdict: Verdict {
                seq_start: r.seq_start,
                seq_end: r.seq_end,
                ts_start: r.ts_start,
                ts_end: r.ts_end,
                status: r.status,
                label: r.label,
                probabilities: r.probabilities,
                anomaly_score: r.anomaly_score,
                completeness: r.completeness,
                filled: r.filled,
                source: r.source,
                model_version: r.model_version,
                scored_at_ms: r.scored_at_ms,
                alert: r.alert,
                contributions: r.contributions,
                candidate: r.candidate,
            },
            alerts: alerts
                .iter()
                .map(|a| (a.transition.clone(), a.alarm.clone()))
                .collect(),
        }
    }

    /// What `by` holds for a delivery id: FNV-1a, 16 hex digits.
    pub fn token(delivery: &str) -> String {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for b in delivery.bytes() {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{hash:016x}")
    }

    /// Whether this close was committed by the delivery with this id.
    pub fn committed_by(&self, delivery: &str) -> bool {
        self.by == Self::token(delivery)
    }

    /// The result as published, for the stream it was committed in (`labels`: the scorer's).
    pub fn result(&self, stream: &StreamKey, labels: &[String]) -> WindowResult {
        let v = self.verdict.clone();
        WindowResult {
            device: stream.device.clone(),
            profile: stream.profile.clone(),
            window: self.window,
            seq_start: v.seq_start,
            seq_end: v.seq_end,
            ts_start: v.ts_start,
            ts_end: v.ts_end,
            status: v.status,
            label: v.label,
            labels: labels.to_vec(),
            probabilities: v.probabilities,
            anomaly_score: v.anomaly_score,
            completeness: v.completeness,
            filled: v.filled,
            source: v.source,
            model_version: v.model_version,
            scored_at_ms: v.scored_at_ms,
            alert: v.alert,
            contributions: v.contributions,
            candidate: v.candidate,
        }
    }

    /// The alerts as sent with `result` (see `Pipeline::alert_event`).
    pub fn alerts(&self, result: &WindowResult) -> Vec<AlertEvent> {
        self.alerts
            .iter()
            .map(|(transition, alarm)| AlertEvent {
                device: result.device.clone(),
                profile: result.profile.clone(),
                window: self.window,
                transition: transition.clone(),
                ts: result.ts_end,
                model_version: result.model_version.clone(),
                alarm: alarm.clone(),
                contributions: result.contributions.clone(),
            })
            .collect()
    }
}

/// Closed windows kept above `closed_through` before the oldest gap is given up.
pub const CLOSED_AFTER_MAX: usize = 16;

impl DeviceState {
    /// Whether the window was closed: its result published and its state change saved with
    /// this state. This, not the window store, is what makes a close happen once: it is saved
    /// in the same conditional write as the alert state it moved.
    pub fn is_closed(&self, window: WindowId) -> bool {
        self.closed_through.is_some_and(|t| window <= t) || self.closed_after.contains(&window)
    }

    /// Records the window as closed. Windows close mostly in order, so this stays small: a
    /// prefix and a few above it. When more than [`CLOSED_AFTER_MAX`] windows closed above a
    /// gap, the gap is given up (that many later windows are past their deadlines: its samples
    /// are late).
    pub fn mark_closed(&mut self, window: WindowId) {
        if self.is_closed(window) {
            return;
        }
        let at = self.closed_after.partition_point(|&w| w < window);
        self.closed_after.insert(at, window);
        loop {
            let next = match self.closed_through {
                Some(t) => t + 1,
                None => 0,
            };
            if self.closed_after.first() == Some(&next) {
                self.closed_through = Some(next);
                self.closed_after.remove(0);
            } else if self.closed_after.len() > CLOSED_AFTER_MAX {
                self.closed_through = Some(self.closed_after.remove(0));
            } else {
                return;
            }
        }
    }
}

/// A value and the version it was read at (0: absent).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub version: u64,
}

#[async_trait]
pub trait DeviceStateStore: Send + Sync {
    async fn load(&self, stream: &StreamKey) -> Result<Versioned<DeviceState>, PortError>;
    /// Saves if the stored version is still `expected`; returns false on a conflict.
    async fn save(
        &self,
        stream: &StreamKey,
        state: &DeviceState,
        expected: u64,
    ) -> Result<bool, PortError>;
}

/// Which profile a device uses (`None`: the default).
#[async_trait]
pub trait DeviceRegistry: Send + Sync {
    async fn profile_of(&self, device: &DeviceId) -> Result<Option<String>, PortError>;
}

/// Versioned baselines published by `vigil calibrate`; the pipeline adopts a newer one.
#[async_trait]
pub trait BaselineSource: Send + Sync {
    async fn latest(&self, stream: &StreamKey) -> Result<Option<Baseline>, PortError>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultStatus {
    Scored,
    /// Closed with too few samples to score; not fed to the alert policy.
    Incomplete,
}

/// The verdict on one window, as published to the device and archived.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowResult {
    pub device: DeviceId,
    pub profile: String,
    pub window: WindowId,
    /// Seq range `[seq_start, seq_end)`.
    pub seq_start: u64,
    pub seq_end: u64,
    pub ts_start: u64,
    pub ts_end: u64,
    pub status: ResultStatus,
    pub label: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probabilities: Vec<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anomaly_score: Option<f64>,
    /// Fraction of the window's samples that were received.
    pub completeness: f32,
    /// Samples filled by interpolation.
    pub filled: u32,
    pub source: String,
    pub model_version: String,
    pub scored_at_ms: u64,
    /// The alert open after this window, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    /// Each channel's share of the verdict, where the scorer can say.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contributions: Vec<crate::scorer::Contribution>,
    /// A candidate model's verdict, scored beside the live one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<crate::scorer::CandidateScore>,
}

/// An alert transition, for operators.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    pub device: DeviceId,
    pub profile: String,
    pub window: WindowId,
    pub transition: Transition,
    pub ts: u64,
    pub model_version: String,
    /// The alarm this notification is about, and its state after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarm: Option<AlarmNote>,
    /// Why the window that caused it was judged so.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contributions: Vec<Contribution>,
}

impl AlertEvent {
    /// One line for an e-mail subject or a console.
    pub fn subject(&self) -> String {
        match &self.transition {
            Transition::Raised { label, severity } => {
                format!(
                    "[{}] {} ({}): condition {label}",
                    severity.as_str().to_uppercase(),
                    self.device,
                    self.profile
                )
            }
            Transition::Changed { from, to, severity } => {
                format!(
                    "[{}] {} ({}): condition {from} -> {to}",
                    severity.as_str().to_uppercase(),
                    self.device,
                    self.profile
                )
            }
            Transition::Cleared { label } => format!(
                "[CLEARED] {} ({}): back to healthy after {label}",
                self.device, self.profile
            ),
        }
    }
}

/// A closed window with its samples, for retraining.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClosedWindow {
    pub result: WindowResult,
    pub channels: Vec<String>,
    pub samples: Vec<Sample>,
}

/// A message that was rejected, for the dead-letter target.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejected {
    pub message_id: String,
    pub device: Option<DeviceId>,
    pub error: TelemetryError,
    pub payload: Vec<u8>,
}

#[async_trait]
pub trait ResultSink: Send + Sync {
    /// Publishes the result to the device: its condition topic and its `condition` shadow.
    async fn publish(&self, result: &WindowResult) -> Result<(), PortError>;
}

#[async_trait]
pub trait AlertSink: Send + Sync {
    async fn notify(&self, alert: &AlertEvent) -> Result<(), PortError>;
}

#[async_trait]
pub trait WindowArchive: Send + Sync {
    async fn archive(&self, window: &ClosedWindow) -> Result<(), PortError>;
    /// Whether the window of this result is archived. A commit-first close archives together
    /// with its other effects and withdraws the archive when one of them failed, so this tells
    /// a retry whose effects are done (a duplicate of the committing delivery) from one whose
    /// effects may not be. An archive
    /// that cannot tell says false (the effects are sent again: at-least-once).
    async fn contains(&self, _result: &WindowResult) -> Result<bool, PortError> {
        Ok(false)
    }
    /// Whether [`WindowArchive::contains`] answers from what is stored (not the default
    /// "false"): only then is a close's missing archive taken as effects that did not go out.
    fn tells_contents(&self) -> bool {
        false
    }
    /// Takes back the archive of this result: it was written together with effects of which
    /// one failed, and must not tell a retry that they all went out. Idempotent (a missing
    /// archive is not an error).
    async fn withdraw(&self, _result: &WindowResult) -> Result<(), PortError> {
        Ok(())
    }
}

/// The `reported` side of a device's `alarm` shadow: what became of the action an operator
/// wrote as desired (applied, a duplicate, refused), so that the shadow's delta clears and
/// operators' tools see the outcome, not only what they asked.
#[async_trait]
pub trait AlarmReports: Send + Sync {
    async fn report(
        &self,
        device: &DeviceId,
        reported: &serde_json::Value,
    ) -> Result<(), PortError>;
}

#[async_trait]
pub trait RejectSink: Send + Sync {
    async fn reject(&self, rejected: &Rejected) -> Result<(), PortError>;
}

/// Archive that keeps nothing (archiving is optional at the edge).
#[derive(Debug, Default)]
pub struct NoArchive;

#[async_trait]
impl WindowArchive for NoArchive {
    async fn archive(&self, _: &ClosedWindow) -> Result<(), PortError> {
        Ok(())
    }
}

/// Registry that gives every device the default profile.
#[derive(Debug, Default)]
pub struct DefaultProfileOnly;

#[async_trait]
impl DeviceRegistry for DefaultProfileOnly {
    async fn profile_of(&self, _: &DeviceId) -> Result<Option<String>, PortError> {
        Ok(None)
    }
}

/// Waiting a little, without tying the core to an async runtime: the pipeline waits briefly for
/// a window another invocation is scoring, instead of failing at once and being retried later.
#[async_trait]
pub trait Pause: Send + Sync {
    async fn pause(&self, ms: u64);
}

/// Never waits: a busy window fails the batch retryably at once (tests, benches).
#[derive(Debug, Default)]
pub struct NoPause;

#[async_trait]
impl Pause for NoPause {
    async fn pause(&self, _: u64) {}
}

/// No published baselines: streaming scorers learn online only.
#[derive(Debug, Default)]
pub struct NoBaselines;

#[async_trait]
impl BaselineSource for NoBaselines {
    async fn latest(&self, _: &StreamKey) -> Result<Option<Baseline>, PortError> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_close_gives_back_its_result_and_alerts() {
        let stream = StreamKey {
            device: DeviceId::new("rig-1").unwrap(),
            profile: "p".into(),
        };
        let result = WindowResult {
            device: stream.device.clone(),
            profile: "p".into(),
            window: 7,
            seq_start: 420,
            seq_end: 480,
            ts_start: 1,
            ts_end: 2,
            status: ResultStatus::Scored,
            label: "20".into(),
            labels: vec!["3".into(), "20".into()],
            probabilities: vec![0.1, 0.9],
            anomaly_score: None,
            completeness: 1.0,
            filled: 0,
            source: "onnx".into(),
            model_version: "m@1".into(),
            scored_at_ms: 3,
            alert: Some("20".into()),
            contributions: vec![],
            candidate: None,
        };
        let alert = AlertEvent {
            device: stream.device.clone(),
            profile: "p".into(),
            window: 7,
            transition: Transition::Cleared { label: "20".into() },
            ts: 2,
            model_version: "m@1".into(),
            alarm: None,
            contributions: vec![],
        };
        let p = PendingClose::new("req-1", &result, std::slice::from_ref(&alert));
        assert!(p.committed_by("req-1") && !p.committed_by("req-2"));
        let back: PendingClose = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        let r = back.result(&stream, &result.labels);
        assert_eq!(r, result);
        assert_eq!(back.alerts(&r), vec![alert]);
        assert!(
            serde_json::to_string(&p).unwrap().len() < 250,
            "{}",
            serde_json::to_string(&p).unwrap()
        );
    }

    #[test]
    fn closed_windows_stay_a_prefix_and_a_few() {
        let mut s = DeviceState::default();
        for w in [1, 0, 3, 2] {
            s.mark_closed(w);
        }
        assert_eq!(
            (s.closed_through, s.closed_after.clone()),
            (Some(3), vec![])
        );
        s.mark_closed(5);
        assert!(s.is_closed(5) && !s.is_closed(4) && s.is_closed(0));
        // A gap with more than CLOSED_AFTER_MAX windows closed above it is given up.
        for w in 6..6 + CLOSED_AFTER_MAX as u64 {
            s.mark_closed(w);
        }
        assert!(s.is_closed(4), "{s:?}");
        assert!(s.closed_after.is_empty());
        assert_eq!(s.closed_through, Some(5 + CLOSED_AFTER_MAX as u64));
        // A device whose seqs start high: its windows are kept above the empty prefix.
        let mut d = DeviceState::default();
        d.mark_closed(1_000);
        assert!(d.is_closed(1_000) && !d.is_closed(999));
    }
}
