//! In-memory adapters for every port: for handler tests, benchmarks, `vigil eval`, and as the
//! reference behaviour the persistent adapters must match.

use std::collections::{BTreeMap, HashMap};
use std::ops::RangeInclusive;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::ports::{
    AlarmReports, AlertEvent, AlertSink, AppendOutcome, BaselineSource, Chunk, Claim, ClosedWindow,
    DeviceRegistry, DeviceState, DeviceStateStore, PortError, RejectSink, Rejected, ResultSink,
    StreamKey, Versioned, WindowArchive, WindowInfo, WindowOutcome, WindowResult, WindowState,
    WindowStore,
};
use crate::scorer::Baseline;
use crate::telemetry::{DeviceId, Sample};
use crate::window::{dedup_by_seq, WindowId};

#[derive(Debug, Default)]
struct WindowEntry {
    state: Option<WindowState>,
    /// Chunks by id: a BTreeMap so that "first stored copy wins" is deterministic by id.
    chunks: BTreeMap<String, Vec<Sample>>,
    received: u32,
    outcome: Option<WindowOutcome>,
}

/// Windows in a map; each stream's windows ordered by id.
#[derive(Debug, Default)]
pub struct MemoryWindowStore {
    inner: Mutex<HashMap<StreamKey, BTreeMap<WindowId, WindowEntry>>>,
    commit_first: bool,
}

impl MemoryWindowStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store whose windows close without claims, committed before their effects, as
    /// DynamoDB's do (see [`WindowStore::commits_first`]): the pipeline's other protocol.
    pub fn committing_first() -> Self {
        Self {
            commit_first: true,
            ..Self::default()
        }
    }

    /// Number of windows held (open or done), for memory accounting in benchmarks.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .expect("lock")
            .values()
            .map(BTreeMap::len)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets finished windows (what a TTL does in DynamoDB).
    pub fn prune_done(&self) {
        for windows in self.inner.lock().expect("lock").values_mut() {
            windows.retain(|_, w| w.state != Some(WindowState::Done));
        }
    }
}

fn info(window: WindowId, e: &WindowEntry) -> WindowInfo {
    WindowInfo {
        window,
        state: e.state.unwrap_or(WindowState::Open),
        received: e.received,
    }
}

#[async_trait]
impl WindowStore for MemoryWindowStore {
    async fn append(
        &self,
        stream: &StreamKey,
        window: WindowId,
        chunk: &Chunk,
        _now_ms: u64,
    ) -> Result<AppendOutcome, PortError> {
        let mut inner = self.inner.lock().expect("lock");
        let entry = inner
            .entry(stream.clone())
            .or_default()
            .entry(window)
            .or_default();
        if entry.state == Some(WindowState::Done) {
            return Ok(AppendOutcome {
                stored: false,
                info: info(window, entry),
            });
        }
        let stored = !entry.chunks.contains_key(&chunk.id);
        if stored {
            entry.chunks.insert(chunk.id.clone(), chunk.samples.clone());
            entry.received += chunk.samples.len() as u32;
            entry.state.get_or_insert(WindowState::Open);
        }
        Ok(AppendOutcome {
            stored,
            info: info(window, entry),
        })
    }

    async fn load(&self, stream: &StreamKey, window: WindowId) -> Result<Vec<Sample>, PortError> {
        let inner = self.inner.lock().expect("lock");
        let mut out: Vec<Sample> = inner
            .get(stream)
            .and_then(|w| w.get(&window))
            .map(|e| e.chunks.values().flatten().cloned().collect())
            .unwrap_or_default();
        // Stable sort keeps chunk order among equal seqs: the first stored copy (by id) wins.
        dedup_by_seq(&mut out);
        Ok(out)
    }

    async fn windows(
        &self,
        stream: &StreamKey,
        range: RangeInclusive<WindowId>,
    ) -> Result<Vec<WindowInfo>, PortError> {
        if range.is_empty() {
            // BTreeMap::range panics on a reversed range; an empty query has no windows.
            return Ok(Vec::new());
        }
        let inner = self.inner.lock().expect("lock");
        Ok(inner
            .get(stream)
            .map(|w| w.range(range).map(|(id, e)| info(*id, e)).collect())
            .unwrap_or_default())
    }

    async fn claim(
        &self,
        stream: &StreamKey,
        window: WindowId,
        now_ms: u64,
        lease_ms: u64,
    ) -> Result<Claim, PortError> {
        let mut inner = self.inner.lock().expect("lock");
        let Some(entry) = inner.get_mut(stream).and_then(|w| w.get_mut(&window)) else {
            return Ok(Claim::Missing);
        };
        Ok(match entry.state.unwrap_or(WindowState::Open) {
            WindowState::Done => Claim::Done,
            WindowState::Claimed { until_ms } if until_ms > now_ms => Claim::Busy,
            _ => {
                entry.state = Some(WindowState::Claimed {
                    until_ms: now_ms + lease_ms,
                });
                Claim::Granted
            }
        })
    }

    async fn claim_with(
        &self,
        stream: &StreamKey,
        window: WindowId,
        now_ms: u64,
        lease_ms: u64,
        pending: Option<&Chunk>,
    ) -> Result<(Claim, Option<bool>), PortError> {
        let Some(chunk) = pending else {
            return Ok((self.claim(stream, window, now_ms, lease_ms).await?, None));
        };
        // The claimer's chunk may be the window's first; it is stored only with a granted claim.
        let mut inner = self.inner.lock().expect("lock");
        let entry = inner
            .entry(stream.clone())
            .or_default()
            .entry(window)
            .or_default();
        match entry.state.unwrap_or(WindowState::Open) {
            WindowState::Done => return Ok((Claim::Done, None)),
            WindowState::Claimed { until_ms } if until_ms > now_ms => {
                return Ok((Claim::Busy, None))
            }
            _ => {}
        }
        entry.state = Some(WindowState::Claimed {
            until_ms: now_ms + lease_ms,
        });
        let new = !entry.chunks.contains_key(&chunk.id);
        if new {
            entry.chunks.insert(chunk.id.clone(), chunk.samples.clone());
            entry.received += chunk.samples.len() as u32;
        }
        Ok((Claim::Granted, Some(new)))
    }

    fn claims_before_load(&self) -> bool {
        true
    }

    fn commits_first(&self) -> bool {
        self.commit_first
    }

    async fn release(
        &self,
        stream: &StreamKey,
        window: WindowId,
        until_ms: u64,
    ) -> Result<(), PortError> {
        let mut inner = self.inner.lock().expect("lock");
        if let Some(entry) = inner.get_mut(stream).and_then(|w| w.get_mut(&window)) {
            if entry.state == Some(WindowState::Claimed { until_ms }) {
                entry.state = Some(WindowState::Open);
            }
        }
        Ok(())
    }

    async fn finish(
        &self,
        stream: &StreamKey,
        window: WindowId,
        outcome: &WindowOutcome,
    ) -> Result<(), PortError> {
        let mut inner = self.inner.lock().expect("lock");
        let entry = inner
            .entry(stream.clone())
            .or_default()
            .entry(window)
            .or_default();
        entry.state = Some(WindowState::Done);
        entry.outcome = Some(outcome.clone());
        // Samples of a finished window are no longer needed (they are archived).
        entry.chunks.clear();
        Ok(())
    }
}

#[derive(Debug, Default)]
pub struct MemoryStateStore {
    inner: Mutex<HashMap<StreamKey, Versioned<DeviceState>>>,
}

impl MemoryStateStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, stream: &StreamKey) -> Option<DeviceState> {
        self.inner
            .lock()
            .expect("lock")
            .get(stream)
            .map(|v| v.value.clone())
    }
}

#[async_trait]
impl DeviceStateStore for MemoryStateStore {
    async fn load(&self, stream: &StreamKey) -> Result<Versioned<DeviceState>, PortError> {
        Ok(self
            .inner
            .lock()
            .expect("lock")
            .get(stream)
            .cloned()
            .unwrap_or_default())
    }

    async fn save(
        &self,
        stream: &StreamKey,
        state: &DeviceState,
        expected: u64,
    ) -> Result<bool, PortError> {
        let mut inner = self.inner.lock().expect("lock");
        let current = inner.get(stream).map_or(0, |v| v.version);
        if current != expected {
            return Ok(false);
        }
        inner.insert(
            stream.clone(),
            Versioned {
                value: state.clone(),
                version: expected + 1,
            },
        );
        Ok(true)
    }
}

/// Device → profile map.
#[derive(Debug, Default)]
pub struct MemoryRegistry {
    pub profiles: Mutex<HashMap<DeviceId, String>>,
}

#[async_trait]
impl DeviceRegistry for MemoryRegistry {
    async fn profile_of(&self, device: &DeviceId) -> Result<Option<String>, PortError> {
        Ok(self.profiles.lock().expect("lock").get(device).cloned())
    }
}

/// Published baselines by stream.
#[derive(Debug, Default)]
pub struct MemoryBaselines {
    pub baselines: Mutex<HashMap<StreamKey, Baseline>>,
}

#[async_trait]
impl BaselineSource for MemoryBaselines {
    async fn latest(&self, stream: &StreamKey) -> Result<Option<Baseline>, PortError> {
        Ok(self.baselines.lock().expect("lock").get(stream).cloned())
    }
}

/// Records everything sent to it; can be told to fail, to exercise retry paths.
#[derive(Debug, Default)]
pub struct Recorder {
    pub results: Mutex<Vec<WindowResult>>,
    pub alerts: Mutex<Vec<AlertEvent>>,
    pub archived: Mutex<Vec<ClosedWindow>>,
    pub rejected: Mutex<Vec<Rejected>>,
    /// `reported` documents of `alarm` shadows, in order.
    pub alarm_reports: Mutex<Vec<(DeviceId, serde_json::Value)>>,
    /// While > 0, `notify` fails (and decrements): a flaky SNS.
    pub fail_alerts: Mutex<u32>,
}

impl Recorder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn results(&self) -> Vec<WindowResult> {
        self.results.lock().expect("lock").clone()
    }

    pub fn alerts(&self) -> Vec<AlertEvent> {
        self.alerts.lock().expect("lock").clone()
    }
}

#[async_trait]
impl ResultSink for Recorder {
    async fn publish(&self, result: &WindowResult) -> Result<(), PortError> {
        self.results.lock().expect("lock").push(result.clone());
        Ok(())
    }
}

#[async_trait]
impl AlertSink for Recorder {
    async fn notify(&self, alert: &AlertEvent) -> Result<(), PortError> {
        let mut fail = self.fail_alerts.lock().expect("lock");
        if *fail > 0 {
            *fail -= 1;
            return Err(PortError::retryable("alerts", "injected failure"));
        }
        self.alerts.lock().expect("lock").push(alert.clone());
        Ok(())
    }
}

fn same_window(a: &WindowResult, b: &WindowResult) -> bool {
    (&a.device, &a.profile, a.window) == (&b.device, &b.profile, b.window)
}

#[async_trait]
impl WindowArchive for Recorder {
    fn tells_contents(&self) -> bool {
        true
    }

    async fn archive(&self, window: &ClosedWindow) -> Result<(), PortError> {
        self.archived.lock().expect("lock").push(window.clone());
        Ok(())
    }

    async fn contains(&self, result: &WindowResult) -> Result<bool, PortError> {
        Ok(self
            .archived
            .lock()
            .expect("lock")
            .iter()
            .any(|w| same_window(&w.result, result)))
    }

    async fn withdraw(&self, result: &WindowResult) -> Result<(), PortError> {
        self.archived
            .lock()
            .expect("lock")
            .retain(|w| !same_window(&w.result, result));
        Ok(())
    }
}

#[async_trait]
impl AlarmReports for Recorder {
    async fn report(
        &self,
        device: &DeviceId,
        reported: &serde_json::Value,
    ) -> Result<(), PortError> {
        self.alarm_reports
            .lock()
            .expect("lock")
            .push((device.clone(), reported.clone()));
        Ok(())
    }
}

#[async_trait]
impl RejectSink for Recorder {
    async fn reject(&self, rejected: &Rejected) -> Result<(), PortError> {
        self.rejected.lock().expect("lock").push(rejected.clone());
        Ok(())
    }
}

/// Every in-memory adapter in one place, with `ports()` to hand them to a pipeline.
#[derive(Debug, Default)]
pub struct MemoryPorts {
    pub windows: MemoryWindowStore,
    pub states: MemoryStateStore,
    pub registry: MemoryRegistry,
    pub baselines: MemoryBaselines,
    pub recorder: Recorder,
}

impl MemoryPorts {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn ports(&self) -> crate::pipeline::Ports<'_> {
        crate::pipeline::Ports {
            windows: &self.windows,
            states: &self.states,
            registry: &self.registry,
            baselines: &self.baselines,
            results: &self.recorder,
            alerts: &self.recorder,
            archive: &self.recorder,
            rejects: &self.recorder,
            pause: &crate::ports::NoPause,
        }
    }
}
