//! What the fleet page shows that the store does not keep: each device's recent verdicts and its
//! rejections, and the live events (server-sent) that tell open pages what changed. Fed by the
//! MQTT sinks as they publish; bounded in devices, verdicts per device and listeners.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::broadcast;
use vigil_core::ports::{ResultStatus, WindowResult};

/// Verdicts kept per device for the device view.
pub const RECENT_VERDICTS: usize = 120;
/// Devices tracked; beyond, new devices are counted in the store's shadows only.
pub const MAX_DEVICES: usize = 10_000;
/// Pages following the live events at once.
pub const MAX_LISTENERS: usize = 16;

/// One window's verdict, as the page plots it.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    pub window: u64,
    pub label: String,
    /// Probability of the label, for classifiers.
    pub probability: Option<f32>,
    pub anomaly_score: Option<f64>,
    pub ts_end: u64,
    pub scored_at_ms: u64,
    pub alert: Option<String>,
    /// Per-channel shares of why the window was judged so, when the scorer gives them.
    pub contributions: Value,
}

impl Verdict {
    pub fn of(result: &WindowResult) -> Self {
        let probability = result
            .labels
            .iter()
            .position(|l| *l == result.label)
            .and_then(|i| result.probabilities.get(i).copied());
        let contributions = serde_json::to_value(result)
            .ok()
            .and_then(|v| v.get("contributions").cloned())
            .unwrap_or(Value::Null);
        Self {
            window: result.window,
            label: result.label.clone(),
            probability,
            anomaly_score: result.anomaly_score,
            ts_end: result.ts_end,
            scored_at_ms: result.scored_at_ms,
            alert: result.alert.clone(),
            contributions,
        }
    }
}

#[derive(Debug, Default)]
struct DeviceLog {
    profile: String,
    recent: VecDeque<Verdict>,
    rejects: u64,
}

/// A change an open page should show: `verdict`, `alarm` or `reject`, with its data.
#[derive(Clone, Debug)]
pub struct LiveEvent {
    pub kind: &'static str,
    pub data: Value,
}

pub struct FleetLog {
    devices: Mutex<BTreeMap<String, DeviceLog>>,
    events: broadcast::Sender<LiveEvent>,
    listeners: AtomicUsize,
}

impl Default for FleetLog {
    fn default() -> Self {
        Self {
            devices: Mutex::new(BTreeMap::new()),
            events: broadcast::channel(256).0,
            listeners: AtomicUsize::new(0),
        }
    }
}

impl std::fmt::Debug for FleetLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetLog").finish_non_exhaustive()
    }
}

impl FleetLog {
    fn with_device(&self, device: &str, f: impl FnOnce(&mut DeviceLog)) {
        let mut devices = self.devices.lock().expect("fleet log lock");
        if !devices.contains_key(device) && devices.len() >= MAX_DEVICES {
            return;
        }
        f(devices.entry(device.to_string()).or_default());
    }

    pub fn verdict(&self, result: &WindowResult) {
        if result.status != ResultStatus::Scored {
            return;
        }
        let verdict = Verdict::of(result);
        self.with_device(result.device.as_str(), |d| {
            d.profile = result.profile.clone();
            d.recent.push_back(verdict.clone());
            while d.recent.len() > RECENT_VERDICTS {
                d.recent.pop_front();
            }
        });
        let mut data = serde_json::to_value(&verdict).expect("verdict serializes");
        data["device"] = json!(result.device.as_str());
        data["profile"] = json!(result.profile);
        // No listener is fine: the send only fails when nobody follows.
        let _ = self.events.send(LiveEvent {
            kind: "verdict",
            data,
        });
    }

    pub fn reject(&self, device: &str) {
        let mut rejects = 0;
        self.with_device(device, |d| {
            d.rejects += 1;
            rejects = d.rejects;
        });
        let _ = self.events.send(LiveEvent {
            kind: "reject",
            data: json!({"device": device, "rejects": rejects}),
        });
    }

    /// An alarm of the device changed (a notification went out, or an operator acted).
    pub fn alarm_changed(&self, device: &str, condition: &str, state: &str) {
        let _ = self.events.send(LiveEvent {
            kind: "alarm",
            data: json!({"device": device, "condition": condition, "state": state}),
        });
    }

    pub fn rejects(&self, device: &str) -> u64 {
        self.devices
            .lock()
            .expect("fleet log lock")
            .get(device)
            .map_or(0, |d| d.rejects)
    }

    /// Devices the log knows with their profile (those with only rejections have none).
    pub fn devices(&self) -> Vec<(String, String)> {
        self.devices
            .lock()
            .expect("fleet log lock")
            .iter()
            .map(|(k, d)| (k.clone(), d.profile.clone()))
            .collect()
    }

    pub fn recent(&self, device: &str) -> Vec<Verdict> {
        self.devices
            .lock()
            .expect("fleet log lock")
            .get(device)
            .map_or_else(Vec::new, |d| d.recent.iter().cloned().collect())
    }

    /// A receiver of live events, or `None` when too many pages follow already. The slot is
    /// given back when the [`Listener`] drops.
    pub fn listen(&self) -> Option<Listener<'_>> {
        let n = self.listeners.fetch_add(1, Ordering::SeqCst);
        if n >= MAX_LISTENERS {
            self.listeners.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Listener {
            log: self,
            rx: self.events.subscribe(),
        })
    }
}

pub struct Listener<'a> {
    log: &'a FleetLog,
    pub rx: broadcast::Receiver<LiveEvent>,
}

impl Drop for Listener<'_> {
    fn drop(&mut self) {
        self.log.listeners.fetch_sub(1, Ordering::SeqCst);
    }
}
