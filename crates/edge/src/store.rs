//! The edge's embedded store: windows, device state and shadows in one `redb` file, with the
//! exact semantics of [`vigil_core::memory`]'s reference adapters (checked by the tests below,
//! which run the same scenarios on both), plus what a single process needs to survive a restart.
//!
//! Layout of `<state>/vigil.redb` (keys are tuples, ordered element by element):
//!
//! | table      | key                                   | value                                  |
//! |------------|---------------------------------------|----------------------------------------|
//! | `chunks`   | (device, profile, window, chunk id)   | samples, binary (see [`encode_samples`]) |
//! | `windows`  | (device, profile, window)             | JSON `{state, received, outcome}`      |
//! | `floors`   | (device, profile)                     | highest window pruned                  |
//! | `states`   | (device, profile)                     | JSON `{version, state}` (`DeviceState`) |
//! | `shadows`  | device                                | JSON shadow document (last result)     |
//!
//! Restart semantics: only one process may open the file for writing (redb locks it), so a claim
//! found at open was held by a process that is gone: [`EdgeStore::open`] releases it at once
//! rather than waiting for its lease to expire.
//!
//! Durability: in [`Durability::PerCommit`] every commit is synced. The edge uses
//! [`Durability::OnFlush`]: commits are made visible at once but synced only by
//! [`EdgeStore::flush`], which it calls before acknowledging a batch to the broker. A crash loses
//! at most the unsynced commits of the batch in flight, whose messages were not acknowledged and
//! are redelivered; windows that batch finished are then scored again, so their results may be
//! published twice (results are at least once across a crash). Syncing every `finish` instead
//! would narrow that to one window per crash but costs one fsync per window (~5 ms here): 180
//! windows/s at most instead of one fsync per batch.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use async_trait::async_trait;
use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};
use serde::{Deserialize, Serialize};
use vigil_core::ports::{
    AppendOutcome, BaselineSource, Chunk, Claim, DeviceState, DeviceStateStore, PortError,
    StreamKey, Versioned, WindowInfo, WindowOutcome, WindowState, WindowStore,
};
use vigil_core::scorer::Baseline;
use vigil_core::window::{dedup_by_seq, WindowId};
use vigil_core::Sample;

type StreamWindow<'a> = (&'a str, &'a str, u64);

const CHUNKS: TableDefinition<(&str, &str, u64, &str), &[u8]> = TableDefinition::new("chunks");
const WINDOWS: TableDefinition<StreamWindow, &[u8]> = TableDefinition::new("windows");
const FLOORS: TableDefinition<(&str, &str), u64> = TableDefinition::new("floors");
const STATES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("states");
const SHADOWS: TableDefinition<&str, &[u8]> = TableDefinition::new("shadows");

/// File name of the database inside the state directory.
pub const DB_FILE: &str = "vigil.redb";

/// When commits reach the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Every commit is synced before it returns.
    PerCommit,
    /// Commits are synced by [`EdgeStore::flush`].
    OnFlush,
}

#[derive(Debug, thiserror::Error)]
#[error("store {path}: {message}")]
pub struct StoreError {
    pub path: String,
    pub message: String,
    /// The file itself is bad (what `--reset-store` is for), not its surroundings.
    pub damaged: bool,
}

/// The message of a caught panic.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panicked".into())
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct WindowRecord {
    state: WindowState,
    received: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    outcome: Option<WindowOutcome>,
}

#[derive(Serialize, Deserialize)]
struct StateRecord {
    version: u64,
    state: DeviceState,
}

/// What [`EdgeStore::open`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    pub open_windows: usize,
    pub done_windows: usize,
    pub devices: usize,
    /// Claims of a previous process, released.
    pub released_claims: usize,
}

/// Windows, device state and shadows in one redb file.
pub struct EdgeStore {
    db: Database,
    path: PathBuf,
    durability: Durability,
    report: OpenReport,
    /// `OnFlush`: the last synced shadow of each device whose shadow changed since the last
    /// sync (`None`: it had none). A device's shadow `get` is answered from it, never from a
    /// verdict a crash before the sync would take back. One entry per device at most.
    unsynced_shadows: std::sync::Mutex<HashMap<String, Option<serde_json::Value>>>,
}

impl std::fmt::Debug for EdgeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeStore")
            .field("path", &self.path)
            .field("durability", &self.durability)
            .finish()
    }
}

fn port_err(port: &'static str, e: impl std::fmt::Display) -> PortError {
    // Storage failures (I/O, a full disk) may pass; the caller retries.
    PortError::retryable(port, format!("redb: {e}"))
}

fn decode_err(port: &'static str, what: &str, e: impl std::fmt::Display) -> PortError {
    PortError::permanent(port, format!("corrupt {what} in the store: {e}"))
}

impl EdgeStore {
    /// Opens (or creates) `<dir>/vigil.redb`, creating `dir` if needed.
    pub fn open_dir(dir: &Path, durability: Durability) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError {
            path: dir.display().to_string(),
            message: format!("creating the state directory: {e}"),
            damaged: false,
        })?;
        Self::open(&dir.join(DB_FILE), durability)
    }

    /// [`EdgeStore::open_dir`]; with `reset`, a store that cannot be opened (damaged,
    /// truncated, not a store) is set aside as `vigil.redb.bad-<time>` and an empty one made.
    pub fn open_dir_or_reset(
        dir: &Path,
        durability: Durability,
        reset: bool,
    ) -> Result<Self, StoreError> {
        match Self::open_dir(dir, durability) {
            Err(e) if reset && e.damaged => {
                let path = dir.join(DB_FILE);
                let aside = vigil_core::state_file::set_aside(&path).map_err(|io| StoreError {
                    path: path.display().to_string(),
                    message: format!("setting the damaged store aside: {io}"),
                    damaged: true,
                })?;
                tracing::warn!(store = %path.display(), set_aside = %aside.display(), error = %e.message,
                    "store could not be opened: set aside, starting with an empty one");
                Self::open_dir(dir, durability)
            }
            other => other,
        }
    }

    /// Opens (or creates) the database file and releases the claims a previous process left.
    /// A file that is not a readable store is an error that names it and the way out, never a
    /// panic.
    pub fn open(path: &Path, durability: Durability) -> Result<Self, StoreError> {
        let damaged = |why: String| StoreError {
            path: path.display().to_string(),
            message: format!(
                "cannot be read ({why}): the file is damaged, truncated or not a Vigil store; \
                 `vigil edge --reset-store` sets it aside (as {DB_FILE}.bad-<time>) and starts \
                 empty (devices re-send what has no result yet)"
            ),
            damaged: true,
        };
        // redb asserts on some damage it finds while opening: a panic there is a damaged file
        // too, not a crash of the edge.
        let opened = std::panic::catch_unwind(|| Database::create(path))
            .map_err(|panic| damaged(panic_text(&*panic)))?;
        let db = opened.map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError {
                path: path.display().to_string(),
                message: "already open (another `vigil edge` uses this state directory?)".into(),
                damaged: false,
            },
            // Permissions, a missing directory: the file's surroundings, not its bytes.
            redb::DatabaseError::Storage(redb::StorageError::Io(io))
                if !matches!(
                    io.kind(),
                    std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData
                ) =>
            {
                StoreError {
                    path: path.display().to_string(),
                    message: io.to_string(),
                    damaged: false,
                }
            }
            other => damaged(other.to_string()),
        })?;
        let mut store = Self {
            db,
            path: path.to_path_buf(),
            durability,
            report: OpenReport::default(),
            unsynced_shadows: Default::default(),
        };
        store.report = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.recover()))
            .map_err(|panic| damaged(panic_text(&*panic)))?
            .map_err(|e| damaged(e.to_string()))?;
        Ok(store)
    }

    /// Creates the tables, releases stale claims, counts what is there.
    fn recover(&self) -> Result<OpenReport, PortError> {
        let txn = self.db.begin_write().map_err(|e| port_err("store", e))?;
        let mut report = OpenReport::default();
        {
            txn.open_table(CHUNKS).map_err(|e| port_err("store", e))?;
            txn.open_table(FLOORS).map_err(|e| port_err("store", e))?;
            txn.open_table(SHADOWS).map_err(|e| port_err("store", e))?;
            txn.open_table(outbox::OUTBOX)
                .map_err(|e| port_err("store", e))?;
            let states = txn.open_table(STATES).map_err(|e| port_err("store", e))?;
            report.devices = states.len().map_err(|e| port_err("store", e))? as usize;
            let mut windows = txn.open_table(WINDOWS).map_err(|e| port_err("store", e))?;
            let mut claimed: Vec<((String, String, u64), WindowRecord)> = Vec::new();
            for entry in windows.iter().map_err(|e| port_err("store", e))? {
                let (k, v) = entry.map_err(|e| port_err("store", e))?;
                let record: WindowRecord = serde_json::from_slice(v.value())
                    .map_err(|e| decode_err("store", "window", e))?;
                match record.state {
                    WindowState::Done => report.done_windows += 1,
                    WindowState::Open => report.open_windows += 1,
                    WindowState::Claimed { .. } => {
                        let (d, p, w) = k.value();
                        claimed.push(((d.to_string(), p.to_string(), w), record));
                    }
                }
            }
            for ((d, p, w), mut record) in claimed {
                record.state = WindowState::Open;
                let bytes = serde_json::to_vec(&record).expect("window record serializes");
                windows
                    .insert((d.as_str(), p.as_str(), w), bytes.as_slice())
                    .map_err(|e| port_err("store", e))?;
                report.released_claims += 1;
                report.open_windows += 1;
            }
        }
        txn.commit().map_err(|e| port_err("store", e))?;
        Ok(report)
    }

    /// What was found at open.
    pub fn open_report(&self) -> OpenReport {
        self.report
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn begin_write(&self, port: &'static str) -> Result<WriteTransaction, PortError> {
        let mut txn = self.db.begin_write().map_err(|e| port_err(port, e))?;
        if self.durability == Durability::OnFlush {
            txn.set_durability(redb::Durability::None)
                .map_err(|e| port_err(port, e))?;
        }
        Ok(txn)
    }

    /// Makes every commit so far durable (a synced, empty commit).
    pub fn flush(&self) -> Result<(), PortError> {
        let txn = self.db.begin_write().map_err(|e| port_err("store", e))?;
        txn.commit().map_err(|e| port_err("store", e))?;
        // Every shadow saved before this write transaction began is on disk now (a save
        // records itself before its own commit, and write transactions are serialised).
        self.unsynced_shadows.lock().expect("lock").clear();
        Ok(())
    }

    /// Forgets finished windows except the newest `keep` of each stream, and remembers per
    /// stream the highest one forgotten: a late sample for it is still recognised as late.
    /// Returns the number of windows forgotten.
    pub fn prune(&self, keep: u64) -> Result<usize, PortError> {
        let txn = self.begin_write("store")?;
        let mut pruned = 0;
        {
            let mut windows = txn.open_table(WINDOWS).map_err(|e| port_err("store", e))?;
            let mut floors = txn.open_table(FLOORS).map_err(|e| port_err("store", e))?;
            // Per stream: the newest window, and its done windows.
            let mut streams: HashMap<(String, String), (u64, Vec<u64>)> = HashMap::new();
            for entry in windows.iter().map_err(|e| port_err("store", e))? {
                let (k, v) = entry.map_err(|e| port_err("store", e))?;
                let (d, p, w) = k.value();
                let record: WindowRecord = serde_json::from_slice(v.value())
                    .map_err(|e| decode_err("store", "window", e))?;
                let s = streams
                    .entry((d.to_string(), p.to_string()))
                    .or_insert((w, Vec::new()));
                s.0 = s.0.max(w);
                if record.state == WindowState::Done {
                    s.1.push(w);
                }
            }
            for ((d, p), (newest, done)) in streams {
                let doomed: Vec<u64> = done
                    .into_iter()
                    .filter(|w| w.saturating_add(keep) <= newest)
                    .collect();
                let Some(&highest) = doomed.iter().max() else {
                    continue;
                };
                for w in &doomed {
                    windows
                        .remove((d.as_str(), p.as_str(), *w))
                        .map_err(|e| port_err("store", e))?;
                }
                let floor = floors
                    .get((d.as_str(), p.as_str()))
                    .map_err(|e| port_err("store", e))?
                    .map(|g| g.value());
                floors
                    .insert((d.as_str(), p.as_str()), floor.unwrap_or(0).max(highest))
                    .map_err(|e| port_err("store", e))?;
                pruned += doomed.len();
            }
        }
        txn.commit().map_err(|e| port_err("store", e))?;
        Ok(pruned)
    }

    /// Applies a `condition` shadow update (a [`vigil_core::documents::shadow_document`]) to the
    /// device's stored shadow, as the shadow service would: the new document (the update's
    /// `reported`, without `null`s) with the version after the stored one and `timestamp_s`.
    /// Returns it. One document per device, replaced in place: bounded by the fleet's size.
    pub fn save_shadow(
        &self,
        device: &str,
        update: &serde_json::Value,
        timestamp_s: u64,
    ) -> Result<serde_json::Value, PortError> {
        let txn = self.begin_write("results")?;
        let current = {
            let mut table = txn
                .open_table(SHADOWS)
                .map_err(|e| port_err("results", e))?;
            let previous_doc = table
                .get(device)
                .map_err(|e| port_err("results", e))?
                .and_then(|v| serde_json::from_slice::<serde_json::Value>(v.value()).ok());
            let previous = previous_doc
                .as_ref()
                .and_then(|doc| doc["version"].as_u64())
                .unwrap_or(0);
            if self.durability == Durability::OnFlush {
                // Before the commit: a flush that starts after it clears this entry.
                self.unsynced_shadows
                    .lock()
                    .expect("lock")
                    .entry(device.to_string())
                    .or_insert(previous_doc);
            }
            let current =
                vigil_core::documents::shadow_after_update(update, previous + 1, timestamp_s);
            let bytes = serde_json::to_vec(&current).expect("JSON value serializes");
            table
                .insert(device, bytes.as_slice())
                .map_err(|e| port_err("results", e))?;
            current
        };
        txn.commit().map_err(|e| port_err("results", e))?;
        Ok(current)
    }

    /// The stored `condition` shadow of one device, if it has one.
    pub fn shadow(&self, device: &str) -> Result<Option<serde_json::Value>, PortError> {
        let txn = self.db.begin_read().map_err(|e| port_err("results", e))?;
        let table = txn
            .open_table(SHADOWS)
            .map_err(|e| port_err("results", e))?;
        let Some(v) = table.get(device).map_err(|e| port_err("results", e))? else {
            return Ok(None);
        };
        serde_json::from_slice(v.value())
            .map(Some)
            .map_err(|e| decode_err("results", "shadow", e))
    }

    /// The device's `condition` shadow as it is on disk: what a device asking for its shadow
    /// is told. A document saved since the last sync is not told yet (a crash would take it
    /// back, and the device would drop samples the restarted edge never scored); the one
    /// before it is.
    pub fn synced_shadow(&self, device: &str) -> Result<Option<serde_json::Value>, PortError> {
        if let Some(previous) = self.unsynced_shadows.lock().expect("lock").get(device) {
            return Ok(previous.clone());
        }
        self.shadow(device)
    }

    /// Shadow documents by device.
    pub fn shadows(&self) -> Result<Vec<(String, serde_json::Value)>, PortError> {
        let txn = self.db.begin_read().map_err(|e| port_err("results", e))?;
        let table = txn
            .open_table(SHADOWS)
            .map_err(|e| port_err("results", e))?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(|e| port_err("results", e))? {
            let (k, v) = entry.map_err(|e| port_err("results", e))?;
            let doc = serde_json::from_slice(v.value())
                .map_err(|e| decode_err("results", "shadow", e))?;
            out.push((k.value().to_string(), doc));
        }
        Ok(out)
    }

    fn read_window(
        table: &impl ReadableTable<StreamWindow<'static>, &'static [u8]>,
        stream: &StreamKey,
        window: WindowId,
    ) -> Result<Option<WindowRecord>, PortError> {
        table
            .get((stream.device.as_str(), stream.profile.as_str(), window))
            .map_err(|e| port_err("windows", e))?
            .map(|v| {
                serde_json::from_slice(v.value()).map_err(|e| decode_err("windows", "window", e))
            })
            .transpose()
    }
}

fn info(window: WindowId, record: &WindowRecord) -> WindowInfo {
    WindowInfo {
        window,
        state: record.state,
        received: record.received,
    }
}

fn put_window(
    table: &mut redb::Table<StreamWindow<'static>, &'static [u8]>,
    stream: &StreamKey,
    window: WindowId,
    record: &WindowRecord,
) -> Result<(), PortError> {
    let bytes = serde_json::to_vec(record).expect("window record serializes");
    table
        .insert(
            (stream.device.as_str(), stream.profile.as_str(), window),
            bytes.as_slice(),
        )
        .map_err(|e| port_err("windows", e))?;
    Ok(())
}

#[async_trait]
impl WindowStore for EdgeStore {
    async fn append(
        &self,
        stream: &StreamKey,
        window: WindowId,
        chunk: &Chunk,
        _now_ms: u64,
    ) -> Result<AppendOutcome, PortError> {
        let (d, p) = (stream.device.as_str(), stream.profile.as_str());
        let txn = self.begin_write("windows")?;
        let outcome = {
            let mut windows = txn
                .open_table(WINDOWS)
                .map_err(|e| port_err("windows", e))?;
            let record = Self::read_window(&windows, stream, window)?;
            let record = match record {
                Some(r) => r,
                None => {
                    let floor = txn
                        .open_table(FLOORS)
                        .map_err(|e| port_err("windows", e))?
                        .get((d, p))
                        .map_err(|e| port_err("windows", e))?
                        .map(|g| g.value());
                    if floor.is_some_and(|f| window <= f) {
                        // Finished and forgotten: late, as if the window were still on record.
                        return Ok(AppendOutcome {
                            stored: false,
                            info: WindowInfo {
                                window,
                                state: WindowState::Done,
                                received: 0,
                            },
                        });
                    }
                    WindowRecord {
                        state: WindowState::Open,
                        received: 0,
                        outcome: None,
                    }
                }
            };
            if record.state == WindowState::Done {
                return Ok(AppendOutcome {
                    stored: false,
                    info: info(window, &record),
                });
            }
            let mut chunks = txn.open_table(CHUNKS).map_err(|e| port_err("windows", e))?;
            let key = (d, p, window, chunk.id.as_str());
            let stored = chunks
                .get(key)
                .map_err(|e| port_err("windows", e))?
                .is_none();
            let mut record = record;
            if stored {
                chunks
                    .insert(key, encode_samples(&chunk.samples).as_slice())
                    .map_err(|e| port_err("windows", e))?;
                record.received += chunk.samples.len() as u32;
                put_window(&mut windows, stream, window, &record)?;
            }
            AppendOutcome {
                stored,
                info: info(window, &record),
            }
        };
        if outcome.stored {
            txn.commit().map_err(|e| port_err("windows", e))?;
        } else {
            txn.abort().map_err(|e| port_err("windows", e))?;
        }
        Ok(outcome)
    }

    async fn load(&self, stream: &StreamKey, window: WindowId) -> Result<Vec<Sample>, PortError> {
        let (d, p) = (stream.device.as_str(), stream.profile.as_str());
        let txn = self.db.begin_read().map_err(|e| port_err("windows", e))?;
        let chunks = txn.open_table(CHUNKS).map_err(|e| port_err("windows", e))?;
        let mut out = Vec::new();
        // Chunks come in key order, i.e. by chunk id: the first stored copy of a seq wins by id,
        // as in the memory store.
        for entry in chunks
            .range((d, p, window, "")..)
            .map_err(|e| port_err("windows", e))?
        {
            let (k, v) = entry.map_err(|e| port_err("windows", e))?;
            let (kd, kp, kw, _) = k.value();
            if kd != d || kp != p || kw != window {
                break;
            }
            decode_samples(v.value(), &mut out).map_err(|e| decode_err("windows", "chunk", e))?;
        }
        dedup_by_seq(&mut out);
        Ok(out)
    }

    async fn windows(
        &self,
        stream: &StreamKey,
        range: RangeInclusive<WindowId>,
    ) -> Result<Vec<WindowInfo>, PortError> {
        let (d, p) = (stream.device.as_str(), stream.profile.as_str());
        if range.start() > range.end() {
            return Ok(vec![]);
        }
        let txn = self.db.begin_read().map_err(|e| port_err("windows", e))?;
        let table = txn
            .open_table(WINDOWS)
            .map_err(|e| port_err("windows", e))?;
        let mut out = Vec::new();
        for entry in table
            .range((d, p, *range.start())..=(d, p, *range.end()))
            .map_err(|e| port_err("windows", e))?
        {
            let (k, v) = entry.map_err(|e| port_err("windows", e))?;
            let record: WindowRecord = serde_json::from_slice(v.value())
                .map_err(|e| decode_err("windows", "window", e))?;
            out.push(info(k.value().2, &record));
        }
        Ok(out)
    }

    async fn claim(
        &self,
        stream: &StreamKey,
        window: WindowId,
        now_ms: u64,
        lease_ms: u64,
    ) -> Result<Claim, PortError> {
        let txn = self.begin_write("windows")?;
        let claim = {
            let mut windows = txn
                .open_table(WINDOWS)
                .map_err(|e| port_err("windows", e))?;
            match Self::read_window(&windows, stream, window)? {
                None => Claim::Missing,
                Some(r) if r.state == WindowState::Done => Claim::Done,
                Some(WindowRecord {
                    state: WindowState::Claimed { until_ms },
                    ..
                }) if until_ms > now_ms => Claim::Busy,
                Some(mut r) => {
                    r.state = WindowState::Claimed {
                        until_ms: now_ms + lease_ms,
                    };
                    put_window(&mut windows, stream, window, &r)?;
                    Claim::Granted
                }
            }
        };
        if claim == Claim::Granted {
            txn.commit().map_err(|e| port_err("windows", e))?;
        } else {
            txn.abort().map_err(|e| port_err("windows", e))?;
        }
        Ok(claim)
    }

    async fn finish(
        &self,
        stream: &StreamKey,
        window: WindowId,
        outcome: &WindowOutcome,
    ) -> Result<(), PortError> {
        let (d, p) = (stream.device.as_str(), stream.profile.as_str());
        let txn = self.begin_write("windows")?;
        {
            let mut windows = txn
                .open_table(WINDOWS)
                .map_err(|e| port_err("windows", e))?;
            let mut record = Self::read_window(&windows, stream, window)?.unwrap_or(WindowRecord {
                state: WindowState::Open,
                received: 0,
                outcome: None,
            });
            record.state = WindowState::Done;
            record.outcome = Some(outcome.clone());
            put_window(&mut windows, stream, window, &record)?;
            // Samples of a finished window are no longer needed (they are archived).
            let mut chunks = txn.open_table(CHUNKS).map_err(|e| port_err("windows", e))?;
            let mut ids = Vec::new();
            for entry in chunks
                .range((d, p, window, "")..)
                .map_err(|e| port_err("windows", e))?
            {
                let (k, _) = entry.map_err(|e| port_err("windows", e))?;
                let (kd, kp, kw, id) = k.value();
                if kd != d || kp != p || kw != window {
                    break;
                }
                ids.push(id.to_string());
            }
            for id in &ids {
                chunks
                    .remove((d, p, window, id.as_str()))
                    .map_err(|e| port_err("windows", e))?;
            }
        }
        txn.commit().map_err(|e| port_err("windows", e))
    }
}

#[async_trait]
impl DeviceStateStore for EdgeStore {
    async fn load(&self, stream: &StreamKey) -> Result<Versioned<DeviceState>, PortError> {
        let txn = self.db.begin_read().map_err(|e| port_err("states", e))?;
        let table = txn.open_table(STATES).map_err(|e| port_err("states", e))?;
        let value = table
            .get((stream.device.as_str(), stream.profile.as_str()))
            .map_err(|e| port_err("states", e))?;
        match value {
            None => Ok(Versioned::default()),
            Some(v) => {
                let r: StateRecord = serde_json::from_slice(v.value())
                    .map_err(|e| decode_err("states", "device state", e))?;
                Ok(Versioned {
                    value: r.state,
                    version: r.version,
                })
            }
        }
    }

    async fn save(
        &self,
        stream: &StreamKey,
        state: &DeviceState,
        expected: u64,
    ) -> Result<bool, PortError> {
        let key = (stream.device.as_str(), stream.profile.as_str());
        let txn = self.begin_write("states")?;
        let saved = {
            let mut table = txn.open_table(STATES).map_err(|e| port_err("states", e))?;
            let current = match table.get(key).map_err(|e| port_err("states", e))? {
                None => 0,
                Some(v) => {
                    serde_json::from_slice::<StateRecord>(v.value())
                        .map_err(|e| decode_err("states", "device state", e))?
                        .version
                }
            };
            if current != expected {
                false
            } else {
                let bytes = serde_json::to_vec(&StateRecord {
                    version: expected + 1,
                    state: state.clone(),
                })
                .map_err(|e| PortError::permanent("states", format!("serialize: {e}")))?;
                table
                    .insert(key, bytes.as_slice())
                    .map_err(|e| port_err("states", e))?;
                true
            }
        };
        if saved {
            txn.commit().map_err(|e| port_err("states", e))?;
        } else {
            txn.abort().map_err(|e| port_err("states", e))?;
        }
        Ok(saved)
    }
}

/// Samples as bytes: count (u32), then per sample seq (u64), ts (u64), value count (u32) and the
/// values (f32), all little-endian. Exact for every f32, compact, and fast.
pub fn encode_samples(samples: &[Sample]) -> Vec<u8> {
    let width = samples.first().map_or(0, |s| s.values.len());
    let mut out = Vec::with_capacity(4 + samples.len() * (20 + 4 * width));
    out.extend_from_slice(&(samples.len() as u32).to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.seq.to_le_bytes());
        out.extend_from_slice(&s.ts.to_le_bytes());
        out.extend_from_slice(&(s.values.len() as u32).to_le_bytes());
        for v in &s.values {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

/// Appends the samples held in `bytes` to `out`.
pub fn decode_samples(bytes: &[u8], out: &mut Vec<Sample>) -> Result<(), String> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
        if bytes.len() < n {
            return Err(format!("truncated: {} bytes left, {n} needed", bytes.len()));
        }
        let (head, tail) = bytes.split_at(n);
        *bytes = tail;
        Ok(head)
    }
    let mut b = bytes;
    let u32_of = |s: &[u8]| u32::from_le_bytes(s.try_into().expect("4 bytes"));
    let u64_of = |s: &[u8]| u64::from_le_bytes(s.try_into().expect("8 bytes"));
    let count = u32_of(take(&mut b, 4)?) as usize;
    // A count read from the file is not trusted with an allocation: at most what the bytes hold.
    out.reserve(count.min(b.len() / 20));
    for _ in 0..count {
        let seq = u64_of(take(&mut b, 8)?);
        let ts = u64_of(take(&mut b, 8)?);
        let n = u32_of(take(&mut b, 4)?) as usize;
        let raw = take(&mut b, n.checked_mul(4).ok_or("value count overflows")?)?;
        let values = raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        out.push(Sample { seq, ts, values });
    }
    if !b.is_empty() {
        return Err(format!("{} trailing bytes", b.len()));
    }
    Ok(())
}

/// Baselines published by `vigil calibrate` as files: `<dir>/<profile>/<device>.json`, each a
/// [`Baseline`] in JSON. Read when they change (by modification time and size), so a new
/// version is adopted without a restart. Writers should write a temporary file and rename it;
/// a file that does not parse is logged and the last good version is kept.
#[derive(Debug)]
pub struct FileBaselines {
    dir: PathBuf,
    cache: Mutex<HashMap<PathBuf, CachedBaseline>>,
}

/// A file's modification time and size when read, and what it held.
type CachedBaseline = (Option<SystemTime>, u64, Option<Baseline>);

impl FileBaselines {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// `<dir>/<profile>/<device>.json`.
    pub fn path_of(&self, stream: &StreamKey) -> PathBuf {
        self.dir
            .join(&stream.profile)
            .join(format!("{}.json", stream.device))
    }
}

#[async_trait]
impl BaselineSource for FileBaselines {
    async fn latest(&self, stream: &StreamKey) -> Result<Option<Baseline>, PortError> {
        let path = self.path_of(stream);
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(PortError::retryable(
                    "baselines",
                    format!("{}: {e}", path.display()),
                ))
            }
        };
        let stamp = (meta.modified().ok(), meta.len());
        let mut cache = self.cache.lock().expect("lock");
        if let Some((m, len, b)) = cache.get(&path) {
            if (*m, *len) == stamp {
                return Ok(b.clone());
            }
        }
        let previous = cache.get(&path).and_then(|(_, _, b)| b.clone());
        let parsed = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                serde_json::from_slice::<Baseline>(&bytes).map_err(|e| e.to_string())
            });
        let baseline = match parsed {
            Ok(b) => {
                tracing::info!(path = %path.display(), version = %b.version, "baseline adopted");
                Some(b)
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "baseline file unreadable; keeping the previous one");
                previous
            }
        };
        cache.insert(path, (stamp.0, stamp.1, baseline.clone()));
        Ok(baseline)
    }
}

mod outbox;
#[cfg(test)]
mod tests;
