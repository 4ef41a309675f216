//! The data Vigil is shown and judged on: readers for the public datasets (in the layouts of
//! `../shared/datasets/<name>`) and where this checkout keeps its models and samples.
//! Plain Rust over `vigil-core`: must not depend on ONNX Runtime, MQTT, redb or AWS.

pub mod models;

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
            .split(['\t', ',', ' '])
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

/// Reads a CSV with a header row: the header names and the rows as raw text fields.
pub fn read_csv(path: &Path) -> anyhow::Result<(Vec<String>, Vec<Vec<String>>)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = lines
        .next()
        .with_context(|| format!("{} is empty", path.display()))?
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    let rows = lines
        .map(|l| l.split(',').map(|s| s.trim().to_string()).collect())
        .collect();
    Ok((header, rows))
}

/// Milliseconds since the Unix epoch of a `YYYY-MM-DD HH:MM:SS[.ffffff]` timestamp (taken as UTC).
pub fn parse_timestamp_ms(text: &str) -> anyhow::Result<u64> {
    let bad = || anyhow::anyhow!("{text:?} is not a YYYY-MM-DD HH:MM:SS timestamp");
    let t = text.trim().trim_matches('"');
    let (date, time) = t.split_once([' ', 'T']).ok_or_else(bad)?;
    let d: Vec<i64> = date
        .split('-')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let h: Vec<i64> = hms
        .split(':')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    if d.len() != 3 || h.len() != 3 {
        return Err(bad());
    }
    let ms_frac: i64 = if frac.is_empty() {
        0
    } else {
        format!("{:0<3}", &frac[..frac.len().min(3)])
            .parse()
            .map_err(|_| bad())?
    };
    // Days from civil (Howard Hinnant's algorithm).
    let (y, m, day) = (d[0] - i64::from(d[1] <= 2), d[1], d[2]);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let ms = ((days * 86_400 + h[0] * 3600 + h[1] * 60 + h[2]) * 1000) + ms_frac;
    u64::try_from(ms).map_err(|_| bad())
}

/// One NAB series: timestamps (ms) and values, with its labelled anomaly windows.
#[derive(Debug, Clone)]
pub struct NabSeries {
    /// File name, e.g. `machine_temperature_system_failure.csv`.
    pub file: String,
    pub ts_ms: Vec<u64>,
    pub values: Vec<f32>,
    /// `[start, end]` in ms, inclusive.
    pub windows: Vec<(u64, u64)>,
}

/// Reads every series named in `anomaly_windows.json` of `dir` (NAB's `combined_windows` layout:
/// `{"file.csv": [["start", "end"], ...]}`), skipping names whose CSV is not in `dir`.
pub fn read_nab(dir: &Path) -> anyhow::Result<Vec<NabSeries>> {
    let path = dir.join("anomaly_windows.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let labels: std::collections::BTreeMap<String, Vec<(String, String)>> =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let mut out = Vec::new();
    for (name, windows) in labels {
        // NAB keys may carry a category folder ("realKnownCause/x.csv"): look for the file name.
        let file = name.rsplit('/').next().unwrap_or(&name).to_string();
        let csv = dir.join(&file);
        if !csv.exists() {
            continue;
        }
        let (header, rows) = read_csv(&csv)?;
        let ti = header.iter().position(|h| h == "timestamp").unwrap_or(0);
        let vi = header.iter().position(|h| h == "value").unwrap_or(1);
        let mut ts_ms = Vec::with_capacity(rows.len());
        let mut values = Vec::with_capacity(rows.len());
        for (i, r) in rows.iter().enumerate() {
            let (Some(t), Some(v)) = (r.get(ti), r.get(vi)) else {
                bail!("{}:{}: expected timestamp,value", csv.display(), i + 2);
            };
            ts_ms.push(
                parse_timestamp_ms(t).with_context(|| format!("{}:{}", csv.display(), i + 2))?,
            );
            values.push(
                v.parse::<f32>()
                    .with_context(|| format!("{}:{}: not a number", csv.display(), i + 2))?,
            );
        }
        let windows = windows
            .iter()
            .map(|(a, b)| Ok((parse_timestamp_ms(a)?, parse_timestamp_ms(b)?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        out.push(NabSeries {
            file,
            ts_ms,
            values,
            windows,
        });
    }
    if out.is_empty() {
        bail!("no series of {} found in {}", path.display(), dir.display());
    }
    Ok(out)
}

/// The rmg941 fan IMU frames: `frames[f]` is 600 rows × 6 channels (row-major), `labels[f]` its state.
#[derive(Debug, Clone)]
pub struct Rmg941 {
    pub channels: Vec<String>,
    pub frame_size: usize,
    /// `frames[f][t * channels + c]`.
    pub frames: Vec<Vec<f32>>,
    pub labels: Vec<u8>,
}

impl Rmg941 {
    /// Reads `x_<CH>_.csv` for each channel and `y_.csv` from `dir`.
    pub fn load(dir: &Path, channels: &[&str]) -> anyhow::Result<Self> {
        let tables = channels
            .iter()
            .map(|c| read_table(&dir.join(format!("x_{c}_.csv"))))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let labels: Vec<u8> = read_table(&dir.join("y_.csv"))?
            .into_iter()
            .flatten()
            .map(|v| v as u8)
            .collect();
        let n = labels.len();
        let frame_size = tables.first().and_then(|t| t.first()).map_or(0, Vec::len);
        for (c, t) in channels.iter().zip(&tables) {
            if t.len() != n {
                bail!("x_{c}_.csv has {} frames but y_.csv has {n}", t.len());
            }
            if let Some(i) = t.iter().position(|r| r.len() != frame_size) {
                bail!("x_{c}_.csv row {}: expected {frame_size} samples", i + 1);
            }
        }
        let k = channels.len();
        let frames = (0..n)
            .map(|f| {
                let mut m = vec![0f32; frame_size * k];
                for (c, t) in tables.iter().enumerate() {
                    for (i, v) in t[f].iter().enumerate() {
                        m[i * k + c] = *v;
                    }
                }
                m
            })
            .collect();
        Ok(Self {
            channels: channels.iter().map(|s| s.to_string()).collect(),
            frame_size,
            frames,
            labels,
        })
    }

    /// Frame `f` as samples seq-numbered from `f * frame_size`, at `rate_hz`.
    pub fn frame_samples(&self, f: usize, rate_hz: f64) -> Vec<Sample> {
        let k = self.channels.len();
        (0..self.frame_size)
            .map(|i| {
                let seq = (f * self.frame_size + i) as u64;
                Sample {
                    seq,
                    ts: (seq as f64 * 1000.0 / rate_hz) as u64,
                    values: self.frames[f][i * k..(i + 1) * k].to_vec(),
                }
            })
            .collect()
    }
}

/// One CWRU recording: the file name, whether it is healthy (`normal*`), and its samples.
#[derive(Debug, Clone)]
pub struct CwruFile {
    pub name: String,
    pub normal: bool,
    pub values: Vec<f32>,
}

/// Reads every `*.csv` of `dir` (one column, header `de_accel_g`), sorted by name.
pub fn read_cwru(dir: &Path) -> anyhow::Result<Vec<CwruFile>> {
    let mut paths: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        let name = p
            .file_name()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let (header, rows) = read_csv(&p)?;
        let col = header.iter().position(|h| h == "de_accel_g").unwrap_or(0);
        let values = rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                r.get(col)
                    .and_then(|v| v.parse::<f32>().ok())
                    .with_context(|| format!("{}:{}: not a number", p.display(), i + 2))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        out.push(CwruFile {
            normal: name.to_ascii_lowercase().starts_with("normal"),
            name,
            values,
        });
    }
    if out.is_empty() {
        bail!("no *.csv in {}", dir.display());
    }
    Ok(out)
}
