//! Readers for the public datasets, in the layouts of `../shared/datasets/<name>`.

use std::path::Path;

use anyhow::{bail, Context};
use vigil_core::Sample;

/// Reads a whitespace/tab/comma separated numeric table, one row per line.
pub fn read_table(path: &Path) -> anyhow::Result<Vec<Vec<f32>>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let row = line
            .split(|c: char| c == '\t' || c == ',' || c == ' ')
            .filter(|f| !f.is_empty())
            .map(str::parse::<f32>)
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("{}:{}: not a number", path.display(), i + 1))?;
        rows.push(row);
    }
    Ok(rows)
}

/// The UCI hydraulic test rig: 60 s cycles, per-second channels, and the conditions per cycle.
#[derive(Debug, Clone)]
pub struct Hydraulic {
    /// Channel names in the order of `channels`.
    pub names: Vec<String>,
    /// `channels[c][cycle][t]`.
    pub channels: Vec<Vec<Vec<f32>>>,
    /// `profile.txt`: cooler %, valve %, pump leakage, accumulator bar, stable flag.
    pub conditions: Vec<[f32; 5]>,
}

impl Hydraulic {
    /// Loads the named 1 Hz channels (e.g. TS1..TS4) and `profile.txt` from `dir`.
    pub fn load(dir: &Path, names: &[&str]) -> anyhow::Result<Self> {
        let mut channels = Vec::new();
        for name in names {
            channels.push(read_table(&dir.join(format!("{name}.txt")))?);
        }
        let profile = read_table(&dir.join("profile.txt"))?;
        let cycles = profile.len();
        for (name, rows) in names.iter().zip(&channels) {
            if rows.len() != cycles {
                bail!(
                    "{name}.txt has {} cycles but profile.txt has {cycles}",
                    rows.len()
                );
            }
            if let Some((i, r)) = rows.iter().enumerate().find(|(_, r)| r.len() != 60) {
                bail!(
                    "{name}.txt row {}: {} columns, expected 60 (1 Hz over a 60 s cycle)",
                    i + 1,
                    r.len()
                );
            }
        }
        let conditions = profile
            .iter()
            .enumerate()
            .map(|(i, r)| {
                r.get(..5)
                    .and_then(|s| <[f32; 5]>::try_from(s).ok())
                    .with_context(|| format!("profile.txt row {}: expected 5 columns", i + 1))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            names: names.iter().map(|s| s.to_string()).collect(),
            channels,
            conditions,
        })
    }

    pub fn cycles(&self) -> usize {
        self.conditions.len()
    }

    /// Cycle `i` as 60 samples, seq-numbered from `i * 60`, one second apart.
    pub fn cycle_samples(&self, cycle: usize, ts0_ms: u64) -> Vec<Sample> {
        (0..60)
            .map(|t| Sample {
                seq: (cycle * 60 + t) as u64,
                ts: ts0_ms + (cycle * 60 + t) as u64 * 1000,
                values: self.channels.iter().map(|c| c[cycle][t]).collect(),
            })
            .collect()
    }
}

/// Label text of a profile.txt value (`3.0` → `"3"`).
pub fn label_of(value: f32) -> String {
    if value.fract() == 0.0 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}
