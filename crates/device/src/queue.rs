//! The device's on-disk queue: every sample read, with its seq, until the pipeline confirms it.
//!
//! One redb file (`queue.redb` in the state directory) holds two tables:
//! - `samples`: seq → sample (`ts` then the values as little-endian f32), in seq order;
//! - `meta`: `next_seq` (the seq the next sample read gets), `source_pos` (how many samples of
//!   the source were read, so that a restarted replay resumes where it stopped), and the
//!   counters `dropped` and `given_up`.
//!
//! Durability: appending samples commits with `Durability::Immediate` (fsync) — the seq cursor,
//! the source position and the samples move together, so a `kill -9` or a power cut loses
//! neither a sample nor a seq. Removals (confirmations) commit without fsync: losing one only
//! means resending samples the pipeline already has, which it drops as duplicates.
//!
//! Bound: at most `max_samples` samples. When full, [`FullPolicy::DropOldest`] removes the
//! oldest samples to make room and counts them in `dropped` (persisted, logged);
//! [`FullPolicy::Block`] makes the reader wait for confirmations instead.
//!
//! A file that cannot be read (damaged, truncated, empty) is an error naming it and the way
//! out, never a panic and never a silent restart at seq 0 — which would have the pipeline drop
//! every later sample as a duplicate of one it had. See [`OpenOptions`].

use std::ops::Range;
use std::path::Path;

use anyhow::{bail, Context};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use vigil_core::Sample;

const SAMPLES: TableDefinition<u64, &[u8]> = TableDefinition::new("samples");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// What to do when the queue holds `max_samples` samples and more are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FullPolicy {
    /// Remove the oldest unconfirmed samples (counted in `dropped`) and keep reading.
    DropOldest,
    /// Stop reading the source until confirmations make room (nothing is dropped; a live
    /// sensor's readings are then not taken while the queue is full).
    Block,
}

/// Counters kept with the queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueStats {
    pub queued: u64,
    pub next_seq: u64,
    pub source_pos: u64,
    pub dropped: u64,
    pub given_up: u64,
}

pub struct Queue {
    db: Database,
    max_samples: u64,
    policy: FullPolicy,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("max_samples", &self.max_samples)
            .finish()
    }
}

fn encode(sample: &Sample) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + 4 * sample.values.len());
    out.extend_from_slice(&sample.ts.to_le_bytes());
    for v in &sample.values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

fn decode(seq: u64, bytes: &[u8]) -> anyhow::Result<Sample> {
    let (ts, values) = bytes
        .split_first_chunk::<8>()
        .filter(|(_, rest)| rest.len() % 4 == 0)
        .with_context(|| format!("queued sample {seq}: {} bytes is not a sample", bytes.len()))?;
    let values = values
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok(Sample {
        seq,
        ts: u64::from_le_bytes(*ts),
        values,
    })
}

/// How to open a queue whose file is new, empty or damaged (`--start-seq`, `--reset-store`).
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenOptions {
    /// The seq the next sample gets, for a queue that has none yet (new, or set aside): the
    /// seq after this thing's last result. Refused if below the queue's own next seq.
    pub start_seq: Option<u64>,
    /// Set a file that cannot be opened aside (`queue.redb.bad-<time>`) and start a new one.
    pub reset_store: bool,
}

/// The way out, for errors about the file.
const WAY_OUT: &str = "restart with --start-seq N (the seq after this thing's last result, e.g. \
    `seq_end` of its `condition` shadow or of `vigil edge --shadows`), adding --reset-store to \
    set the file aside first (as queue.redb.bad-<time>); starting again at seq 0 would have the \
    pipeline drop every sample up to its last seq as a duplicate";

/// The file name of a queue in its state directory.
pub const QUEUE_FILE: &str = "queue.redb";

/// Opens the redb file; a panic or error of redb over a damaged file becomes an error.
fn open_db(path: &Path) -> anyhow::Result<Database> {
    match std::panic::catch_unwind(|| Database::create(path)) {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => bail!(
            "the device queue {} is already open (another `vigil device` for this thing?)",
            path.display()
        ),
        Ok(Err(e)) => bail!(
            "the device queue {} cannot be read ({e}): damaged or truncated; {WAY_OUT}",
            path.display()
        ),
        Err(_) => bail!(
            "the device queue {} cannot be read (its structure is damaged); {WAY_OUT}",
            path.display()
        ),
    }
}

fn meta_get(table: &impl ReadableTable<&'static str, u64>, key: &str) -> anyhow::Result<u64> {
    Ok(table.get(key)?.map_or(0, |v| v.value()))
}

impl Queue {
    /// Opens (or creates) the queue in `dir`, refusing a damaged or empty file.
    pub fn open(dir: &Path, max_samples: u64, policy: FullPolicy) -> anyhow::Result<Self> {
        Self::open_with(dir, max_samples, policy, OpenOptions::default())
    }

    /// [`Queue::open`] with what to do about a new, empty or damaged file. A new queue without
    /// `start_seq` starts at seq 0 with a warning (right for a thing's first start only).
    pub fn open_with(
        dir: &Path,
        max_samples: u64,
        policy: FullPolicy,
        options: OpenOptions,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(QUEUE_FILE);
        let set_aside = |why: &str| -> anyhow::Result<()> {
            let aside = vigil_core::state_file::set_aside(&path)
                .with_context(|| format!("setting {} aside", path.display()))?;
            tracing::warn!(queue = %path.display(), set_aside = %aside.display(), "{why}: set aside, starting a new queue");
            Ok(())
        };
        let empty = std::fs::metadata(&path).is_ok_and(|m| m.len() == 0);
        if empty {
            // redb would take a 0-byte file for a new one: the seq cursor would silently
            // restart at 0.
            match (options.reset_store, options.start_seq) {
                (true, _) => set_aside("the device queue is empty")?,
                (false, Some(_)) => {}
                (false, None) => bail!(
                    "the device queue {} is empty (0 bytes): the seq cursor it held is lost; {WAY_OUT}",
                    path.display()
                ),
            }
        }
        let db = match open_db(&path) {
            Ok(db) => db,
            Err(e) if options.reset_store && path.exists() => {
                set_aside(&format!("{e:#}"))?;
                open_db(&path)?
            }
            Err(e) => return Err(e),
        };
        let queue = Self {
            db,
            max_samples: max_samples.max(1),
            policy,
        };
        queue
            .init(options.start_seq)
            .with_context(|| format!("the device queue {}", path.display()))?;
        Ok(queue)
    }

    /// Creates the tables and sets the seq cursor of a queue that has none.
    fn init(&self, start_seq: Option<u64>) -> anyhow::Result<()> {
        let tx = self.db.begin_write()?;
        {
            tx.open_table(SAMPLES)?;
            let mut meta = tx.open_table(META)?;
            let next = meta.get("next_seq")?.map(|v| v.value());
            match (next, start_seq) {
                (Some(next), Some(start)) if start < next => bail!(
                    "--start-seq {start} is below the queue's next seq {next} (seqs are never reused)"
                ),
                (_, Some(start)) => {
                    meta.insert("next_seq", start)?;
                }
                (Some(_), None) => {}
                (None, None) => {
                    tracing::warn!(
                        "a new device queue: seqs start at 0. Right for a thing's first start; if \
                         this thing sent before (its queue was lost), {WAY_OUT}"
                    );
                    meta.insert("next_seq", 0)?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn policy(&self) -> FullPolicy {
        self.policy
    }

    pub fn max_samples(&self) -> u64 {
        self.max_samples
    }

    pub fn stats(&self) -> anyhow::Result<QueueStats> {
        let tx = self.db.begin_read()?;
        let samples = tx.open_table(SAMPLES)?;
        let meta = tx.open_table(META)?;
        Ok(QueueStats {
            queued: samples.len()?,
            next_seq: meta_get(&meta, "next_seq")?,
            source_pos: meta_get(&meta, "source_pos")?,
            dropped: meta_get(&meta, "dropped")?,
            given_up: meta_get(&meta, "given_up")?,
        })
    }

    /// Room left before the queue is full.
    pub fn room(&self) -> anyhow::Result<u64> {
        Ok(self.max_samples.saturating_sub(self.stats()?.queued))
    }

    /// Appends samples read from the source (`(ts, values)`), giving them the next seqs, and
    /// advances the source position by `consumed`; one fsynced transaction. Returns the seqs
    /// given and how many old samples were dropped to make room.
    pub fn push(
        &self,
        readings: &[(u64, Vec<f32>)],
        consumed: u64,
    ) -> anyhow::Result<(Range<u64>, u64)> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(Durability::Immediate)?;
        let (seqs, dropped) = {
            let mut samples = tx.open_table(SAMPLES)?;
            let mut meta = tx.open_table(META)?;
            let first = meta_get(&meta, "next_seq")?;
            for (i, (ts, values)) in readings.iter().enumerate() {
                let sample = Sample {
                    seq: first + i as u64,
                    ts: *ts,
                    values: values.clone(),
                };
                samples.insert(sample.seq, encode(&sample).as_slice())?;
            }
            let mut dropped = 0;
            let len = samples.len()?;
            if len > self.max_samples {
                let excess = len - self.max_samples;
                for _ in 0..excess {
                    if samples.pop_first()?.is_some() {
                        dropped += 1;
                    }
                }
            }
            let next = first + readings.len() as u64;
            meta.insert("next_seq", next)?;
            let pos = meta_get(&meta, "source_pos")? + consumed;
            meta.insert("source_pos", pos)?;
            if dropped > 0 {
                let total = meta_get(&meta, "dropped")? + dropped;
                meta.insert("dropped", total)?;
            }
            (first..next, dropped)
        };
        tx.commit()?;
        Ok((seqs, dropped))
    }

    /// Up to `limit` samples with seq >= `from`, in seq order.
    pub fn read_from(&self, from: u64, limit: usize) -> anyhow::Result<Vec<Sample>> {
        let tx = self.db.begin_read()?;
        let samples = tx.open_table(SAMPLES)?;
        let mut out = Vec::with_capacity(limit.min(4096));
        for entry in samples.range(from..)? {
            if out.len() >= limit {
                break;
            }
            let (k, v) = entry?;
            out.push(decode(k.value(), v.value())?);
        }
        Ok(out)
    }

    /// Lowest seq still queued.
    pub fn head(&self) -> anyhow::Result<Option<u64>> {
        let tx = self.db.begin_read()?;
        let samples = tx.open_table(SAMPLES)?;
        let head = samples.first()?.map(|(k, _)| k.value());
        Ok(head)
    }

    /// Removes the samples whose seq is in `range` (confirmed). `given_up` counts them as
    /// removed without a confirmation. Returns how many were removed.
    pub fn remove(&self, range: Range<u64>, given_up: bool) -> anyhow::Result<u64> {
        if range.is_empty() {
            return Ok(0);
        }
        let mut tx = self.db.begin_write()?;
        tx.set_durability(Durability::None)?;
        let removed = {
            let mut samples = tx.open_table(SAMPLES)?;
            let mut n = 0;
            samples.retain_in(range, |_, _| {
                n += 1;
                false
            })?;
            if given_up && n > 0 {
                let mut meta = tx.open_table(META)?;
                let total = meta_get(&meta, "given_up")? + n;
                meta.insert("given_up", total)?;
            }
            n
        };
        tx.commit()?;
        Ok(removed)
    }

    /// Makes the removals so far durable (called on a clean exit).
    pub fn flush(&self) -> anyhow::Result<()> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(Durability::Immediate)?;
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue_with_samples(dir: &Path) {
        let q = Queue::open(dir, 100, FullPolicy::DropOldest).unwrap();
        q.push(&[(1, vec![1.0]), (2, vec![2.0])], 2).unwrap();
    }

    #[test]
    fn an_empty_queue_file_is_refused_not_restarted_at_seq_0() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(QUEUE_FILE);
        std::fs::write(&path, b"").unwrap();
        let e = Queue::open(dir.path(), 100, FullPolicy::Block).unwrap_err();
        let text = format!("{e:#}");
        assert!(
            text.contains("queue.redb") && text.contains("empty"),
            "{text}"
        );
        assert!(
            text.contains("--start-seq") && text.contains("--reset-store"),
            "{text}"
        );
        // The way out: the next seq given, the file set aside.
        let options = OpenOptions {
            start_seq: Some(4_200),
            reset_store: true,
        };
        let q = Queue::open_with(dir.path(), 100, FullPolicy::Block, options).unwrap();
        assert_eq!(q.stats().unwrap().next_seq, 4_200);
        let (seqs, _) = q.push(&[(1, vec![1.0])], 1).unwrap();
        assert_eq!(seqs, 4_200..4_201);
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("queue.redb.bad-"))
            .collect();
        assert_eq!(aside.len(), 1, "{aside:?}");
    }

    #[test]
    fn a_damaged_or_truncated_queue_is_a_clear_error_never_a_panic() {
        for damage in ["garbage", "truncated", "zeroed"] {
            let dir = tempfile::tempdir().unwrap();
            queue_with_samples(dir.path());
            let path = dir.path().join(QUEUE_FILE);
            let bytes = std::fs::read(&path).unwrap();
            let bad = match damage {
                "garbage" => b"not a redb file at all, just text".repeat(100),
                "truncated" => bytes[..bytes.len() / 3].to_vec(),
                _ => {
                    let mut b = bytes.clone();
                    b[..512].fill(0);
                    b
                }
            };
            std::fs::write(&path, bad).unwrap();
            let e = Queue::open(dir.path(), 100, FullPolicy::Block).unwrap_err();
            let text = format!("{e:#}");
            assert!(
                text.contains(&path.display().to_string()),
                "{damage}: {text}"
            );
            assert!(text.contains("--reset-store"), "{damage}: {text}");
            let options = OpenOptions {
                start_seq: Some(2),
                reset_store: true,
            };
            let q = Queue::open_with(dir.path(), 100, FullPolicy::Block, options).unwrap();
            assert_eq!(q.stats().unwrap().next_seq, 2, "{damage}");
        }
    }

    #[test]
    fn start_seq_never_goes_back() {
        let dir = tempfile::tempdir().unwrap();
        queue_with_samples(dir.path());
        let back = OpenOptions {
            start_seq: Some(1),
            reset_store: false,
        };
        let e = Queue::open_with(dir.path(), 100, FullPolicy::Block, back).unwrap_err();
        assert!(
            format!("{e:#}").contains("below the queue's next seq 2"),
            "{e:#}"
        );
        let q = Queue::open(dir.path(), 100, FullPolicy::Block).unwrap();
        assert_eq!(q.stats().unwrap().next_seq, 2);
    }

    #[test]
    fn seqs_survive_reopen_and_drop_oldest_counts() {
        let dir = tempfile::tempdir().unwrap();
        {
            let q = Queue::open(dir.path(), 5, FullPolicy::DropOldest).unwrap();
            let (seqs, dropped) = q.push(&[(1, vec![1.0]), (2, vec![2.0])], 2).unwrap();
            assert_eq!((seqs, dropped), (0..2, 0));
            assert_eq!(q.remove(0..1, false).unwrap(), 1);
        }
        let q = Queue::open(dir.path(), 5, FullPolicy::DropOldest).unwrap();
        let s = q.stats().unwrap();
        assert_eq!((s.next_seq, s.source_pos, s.queued), (2, 2, 1));
        let readings: Vec<_> = (0..6).map(|i| (i, vec![i as f32])).collect();
        let (seqs, dropped) = q.push(&readings, 6).unwrap();
        assert_eq!((seqs, dropped), (2..8, 2));
        let left = q.read_from(0, 100).unwrap();
        assert_eq!(
            left.iter().map(|s| s.seq).collect::<Vec<_>>(),
            vec![3, 4, 5, 6, 7]
        );
        assert_eq!(left[0].values, vec![1.0]);
        assert_eq!(q.stats().unwrap().dropped, 2);
    }
}
