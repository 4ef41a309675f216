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

use std::ops::Range;
use std::path::Path;

use anyhow::Context;
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

fn decode(seq: u64, bytes: &[u8]) -> Sample {
    let ts = u64::from_le_bytes(bytes[..8].try_into().unwrap_or([0; 8]));
    let values = bytes[8..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Sample { seq, ts, values }
}

fn meta_get(table: &impl ReadableTable<&'static str, u64>, key: &str) -> anyhow::Result<u64> {
    Ok(table.get(key)?.map_or(0, |v| v.value()))
}

impl Queue {
    /// Opens (or creates) the queue in `dir`.
    pub fn open(dir: &Path, max_samples: u64, policy: FullPolicy) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("queue.redb");
        let db = Database::create(&path)
            .with_context(|| format!("opening the device queue {}", path.display()))?;
        let tx = db.begin_write()?;
        {
            tx.open_table(SAMPLES)?;
            tx.open_table(META)?;
        }
        tx.commit()?;
        Ok(Self {
            db,
            max_samples: max_samples.max(1),
            policy,
        })
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
            out.push(decode(k.value(), v.value()));
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
