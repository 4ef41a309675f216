//! The agent's sensor sources (`--source`): a hydraulic dataset replay, a CSV file, or JSON
//! lines on stdin, read on a blocking thread into the on-disk queue.

use std::io::BufRead;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::sync::Notify;
use vigil_datasets::Hydraulic;

use crate::queue::{FullPolicy, Queue};

/// Parsed `--source`.
#[derive(Debug, Clone)]
pub enum Source {
    Hydraulic(PathBuf),
    Csv(PathBuf),
    Stdin,
}

impl Source {
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        if let Some(dir) = text.strip_prefix("replay-hydraulic:") {
            Ok(Self::Hydraulic(dir.into()))
        } else if let Some(file) = text.strip_prefix("csv:") {
            Ok(Self::Csv(file.into()))
        } else if text == "stdin" {
            Ok(Self::Stdin)
        } else {
            bail!("--source {text:?}: expected replay-hydraulic:DIR, csv:FILE or stdin")
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Reads the source on a blocking thread, skipping what was read before a restart, and appends
/// to the queue in fsynced batches.
pub(crate) fn read_source(
    source: Source,
    args: ReaderArgs,
    queue: Arc<Queue>,
    wake: Arc<Notify>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let start = queue.stats()?.source_pos as usize;
    // A live source: each line is queued as it comes, unpaced (`--speed` is for replays).
    let live = matches!(source, Source::Stdin);
    let readings: Box<dyn Iterator<Item = anyhow::Result<(u64, Vec<f32>)>>> = match source {
        Source::Hydraulic(dir) => {
            let names: Vec<&str> = args.channels.iter().map(String::as_str).collect();
            let data = Hydraulic::load(&dir, &names)?;
            let cycles = args.cycles.unwrap_or(usize::MAX).min(data.cycles());
            let total = cycles * 60;
            Box::new((start..total).map(move |i| {
                let (c, t) = (i / 60, i % 60);
                Ok((now_ms(), data.channels.iter().map(|ch| ch[c][t]).collect()))
            }))
        }
        Source::Csv(path) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let mut lines = text.lines().filter(|l| !l.trim().is_empty());
            let header: Vec<String> = lines
                .next()
                .context("empty CSV file")?
                .split(',')
                .map(|s| s.trim().to_string())
                .collect();
            let cols = args
                .channels
                .iter()
                .map(|c| {
                    header
                        .iter()
                        .position(|h| h == c)
                        .with_context(|| format!("{}: no column {c:?}", path.display()))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let ts_col = header.iter().position(|h| h == "ts");
            let rows: Vec<String> = lines.map(str::to_string).collect();
            Box::new(
                rows.into_iter()
                    .enumerate()
                    .skip(start)
                    .map(move |(i, row)| {
                        let fields: Vec<&str> = row.split(',').map(str::trim).collect();
                        let num = |c: usize| -> anyhow::Result<f64> {
                            fields
                                .get(c)
                                .context("short row")?
                                .parse::<f64>()
                                .with_context(|| format!("row {}: not a number", i + 2))
                        };
                        let ts = match ts_col {
                            Some(c) => num(c)? as u64,
                            None => now_ms(),
                        };
                        let values = cols
                            .iter()
                            .map(|&c| num(c).map(|v| v as f32))
                            .collect::<anyhow::Result<Vec<_>>>()?;
                        Ok((ts, values))
                    }),
            )
        }
        Source::Stdin => {
            let channels = args.channels.clone();
            Box::new(
                std::io::stdin()
                    .lock()
                    .lines()
                    .filter(|l| l.as_ref().map_or(true, |l| !l.trim().is_empty()))
                    .map(move |line| parse_json_line(&line?, &channels)),
            )
        }
    };
    let interval = if args.speed > 0.0 && !live {
        Some(Duration::from_secs_f64(1.0 / args.speed))
    } else {
        None
    };
    // Readings not yet queued, each with how many source lines were read up to it (bad lines
    // skipped count too), so that a part of them moves the source position exactly.
    let mut pending: Vec<(u64, Vec<f32>)> = Vec::new();
    let mut lines_at: Vec<u64> = Vec::new();
    let mut consumed = 0u64;
    let flush = |pending: &mut Vec<(u64, Vec<f32>)>,
                 lines_at: &mut Vec<u64>,
                 consumed: &mut u64|
     -> anyhow::Result<()> {
        // Blocking: in steps of what fits (at least one sample), so that any bound the start
        // check admits makes progress as confirmations come.
        while !pending.is_empty() {
            let take = match queue.policy() {
                FullPolicy::Block => {
                    let room = queue.room()?;
                    if room == 0 {
                        if stop.load(Ordering::Relaxed) {
                            return Ok(());
                        }
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                    pending
                        .len()
                        .min(usize::try_from(room).unwrap_or(usize::MAX))
                }
                FullPolicy::DropOldest => pending.len(),
            };
            let lines = if take == pending.len() {
                *consumed
            } else {
                lines_at[take - 1]
            };
            let (_, dropped) = queue.push(&pending[..take], lines)?;
            if dropped > 0 {
                tracing::warn!(
                    dropped,
                    "queue full: dropped the oldest unconfirmed samples"
                );
            }
            pending.drain(..take);
            lines_at.drain(..take);
            for l in lines_at.iter_mut() {
                *l -= lines;
            }
            *consumed -= lines;
            wake.notify_one();
        }
        if *consumed > 0 {
            // Only bad lines left: the position moves past them.
            queue.push(&[], *consumed)?;
            *consumed = 0;
        }
        Ok(())
    };
    let mut next_at = Instant::now();
    for reading in readings {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        consumed += 1;
        match reading {
            Ok(r) => {
                pending.push(r);
                lines_at.push(consumed);
            }
            Err(e) => tracing::warn!(error = %e, "skipping a bad reading"),
        }
        let batch_limit = if interval.is_some() || live { 1 } else { 500 };
        if pending.len() >= batch_limit {
            flush(&mut pending, &mut lines_at, &mut consumed)?;
        }
        if let Some(iv) = interval {
            next_at += iv;
            let now = Instant::now();
            if next_at > now {
                std::thread::sleep(next_at - now);
            }
        }
    }
    flush(&mut pending, &mut lines_at, &mut consumed)?;
    Ok(())
}

#[derive(Clone)]
pub(crate) struct ReaderArgs {
    pub(crate) channels: Vec<String>,
    pub(crate) cycles: Option<usize>,
    pub(crate) speed: f64,
}

/// One JSON line `{"ts": 1700000000123, "values": {"TS1": 35.5, ...}}` (ts optional: now).
pub fn parse_json_line(line: &str, channels: &[String]) -> anyhow::Result<(u64, Vec<f32>)> {
    let v: serde_json::Value = serde_json::from_str(line).context("not JSON")?;
    let ts = v
        .get("ts")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(now_ms);
    let values = v.get("values").context("no `values` object")?;
    let out = channels
        .iter()
        .map(|c| {
            values
                .get(c)
                .and_then(serde_json::Value::as_f64)
                .map(|x| x as f32)
                .with_context(|| format!("values.{c}: missing or not a number"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((ts, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines() {
        let ch = vec!["A".to_string(), "B".to_string()];
        let (ts, v) = parse_json_line(r#"{"ts": 5, "values": {"B": 2, "A": 1.5}}"#, &ch).unwrap();
        assert_eq!((ts, v), (5, vec![1.5, 2.0]));
        assert!(parse_json_line(r#"{"values": {"A": 1}}"#, &ch).is_err());
    }
}
