//! The scale-free streaming detector (`kind = "robust"`): every number it compares is in units
//! it learned online from the device itself, so one set of parameters carries over to machines
//! nobody tuned it on (a temperature in °C, a byte counter in 10⁸, a CPU share in %).
//!
//! Per window and channel it judges three features — the mean (level), the max and the min
//! (spikes) — against a robust location and scale per feature:
//! - location and scale start as the median and the MAD of the first `warmup` windows, then
//!   follow exponentially with a half-life; a deviation moves them as if it were at most `clip`
//!   scales, so a fault cannot drag the baseline, yet a lasting change of level is absorbed;
//! - seasonality, if present: a level per bin of device time (hour of the week by default). The
//!   seasonal residual replaces the plain one when it is clearly more predictable than the last
//!   window (its learned scale below `season_ratio` of the window-to-window scale), which is the
//!   case for a daily traffic cycle and not for a drifting temperature;
//! - the verdict: a feature is anomalous when its robust z exceeds `threshold` **and** its
//!   deviation exceeds `record_margin` × the record of that feature's past deviations. Deviations
//!   the device has shown before (a nightly backup's spike) stop alarming; only what is new in
//!   size does. The record decays slowly and is delayed by one block of `record_block` windows,
//!   so that a slow slide (a temperature falling over hours) is compared with the past, not with
//!   its own last step.
//!
//! Every update is affine-equivariant: multiplying a series by a positive factor and adding an
//! offset changes no verdict (tested below).

use serde::{Deserialize, Serialize};

use async_trait::async_trait;

use crate::scorer::{Baseline, Score, ScoreError, Scorer, ANOMALY_LABELS};
use crate::transform::Matrix;

/// MAD × this estimates a normal distribution's standard deviation.
const MAD_TO_SIGMA: f64 = 1.4826;
/// Mean absolute deviation × this estimates a normal distribution's standard deviation.
const MEAN_ABS_TO_SIGMA: f64 = 1.2533;
/// A deviation from a scale of exactly zero (a constant signal that moves): huge but finite.
const MAX_Z: f64 = 1e9;
/// Windows a seasonal bin must have seen before its level is trusted.
const SEASON_MIN_SEEN: u32 = 2;
/// Features per channel: mean, max, min.
const FEATURES: usize = 3;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RobustConfig {
    /// Windows whose features set the first location and scale (median and MAD).
    #[serde(default = "default_warmup")]
    pub warmup: u64,
    /// Windows after the warm-up that are scored (and teach the records) but never anomalous.
    #[serde(default = "default_settle")]
    pub settle: u64,
    /// Half-life of location and scale, in windows.
    #[serde(default = "default_half_life")]
    pub half_life: f64,
    /// Least robust z (in learned scales) that can be anomalous.
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    /// A feature's deviation must also exceed this multiple of its record of past deviations.
    #[serde(default = "default_record_margin")]
    pub record_margin: f64,
    /// Half-life of the records, in windows.
    #[serde(default = "default_record_half_life")]
    pub record_half_life: f64,
    /// Windows a deviation waits before it enters the record (0: at once).
    #[serde(default = "default_record_block")]
    pub record_block: u64,
    /// Whether the window max and min are judged too (spikes), not only the mean.
    #[serde(default = "yes")]
    pub spikes: bool,
    /// Bounded influence: a deviation moves location and scale as if it were at most this many scales.
    #[serde(default = "default_clip")]
    pub clip: f64,
    /// Seasonal bins, in seconds of device time (3600: hourly).
    #[serde(default = "default_season_bin_s")]
    pub season_bin_s: u64,
    /// Bins per seasonal cycle (168 hourly bins: the hour of the week); 0 turns seasonality off.
    #[serde(default = "default_season_bins")]
    pub season_bins: u32,
    /// The seasonal residual is used while its scale is below this fraction of the
    /// window-to-window scale.
    #[serde(default = "default_season_ratio")]
    pub season_ratio: f64,
    /// Least rate at which a seasonal bin follows a new value (the first values weigh 1/n).
    #[serde(default = "default_season_rate")]
    pub season_rate: f64,
    /// While the records have seen few blocks, `record_margin` is raised by this much over the
    /// square of the blocks seen (0: never): the largest of one or two days' deviations
    /// understates the largest of a week's, so a young record alarms on ordinary days.
    #[serde(default = "default_early_margin")]
    pub early_margin: f64,
}

fn default_warmup() -> u64 {
    24
}
fn default_settle() -> u64 {
    72
}
fn default_half_life() -> f64 {
    336.0
}
fn default_threshold() -> f64 {
    2.5
}
fn default_record_margin() -> f64 {
    1.2
}
fn default_record_half_life() -> f64 {
    336.0
}
fn default_record_block() -> u64 {
    48
}
fn default_early_margin() -> f64 {
    1.0
}
fn yes() -> bool {
    true
}
fn default_clip() -> f64 {
    3.0
}
fn default_season_bin_s() -> u64 {
    3600
}
fn default_season_bins() -> u32 {
    168
}
fn default_season_ratio() -> f64 {
    0.7
}
fn default_season_rate() -> f64 {
    0.25
}

impl Default for RobustConfig {
    fn default() -> Self {
        Self {
            warmup: default_warmup(),
            settle: default_settle(),
            half_life: default_half_life(),
            threshold: default_threshold(),
            record_margin: default_record_margin(),
            record_half_life: default_record_half_life(),
            record_block: default_record_block(),
            spikes: true,
            clip: default_clip(),
            season_bin_s: default_season_bin_s(),
            season_bins: default_season_bins(),
            season_ratio: default_season_ratio(),
            season_rate: default_season_rate(),
            early_margin: default_early_margin(),
        }
    }
}

/// Most seasonal bins a profile may ask for (the state is kept per device).
pub const MAX_SEASON_BINS: u32 = 10_080;

impl RobustConfig {
    pub(crate) fn validate(&self) -> Result<(), (&'static str, String)> {
        let positive = |key: &'static str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err((key, format!("{v} must be a positive number")))
            }
        };
        if self.warmup < 3 {
            return Err((
                "warmup",
                format!("{} must be at least 3 windows", self.warmup),
            ));
        }
        for (key, v) in [
            ("half_life", self.half_life),
            ("record_half_life", self.record_half_life),
        ] {
            if !(v.is_finite() && v >= 1.0) {
                return Err((key, format!("{v} must be at least 1 window")));
            }
        }
        positive("threshold", self.threshold)?;
        positive("record_margin", self.record_margin)?;
        positive("clip", self.clip)?;
        if self.season_bins > MAX_SEASON_BINS {
            return Err((
                "season_bins",
                format!("{} must be at most {MAX_SEASON_BINS}", self.season_bins),
            ));
        }
        if self.season_bins > 0 && self.season_bin_s == 0 {
            return Err(("season_bin_s", "must be at least 1 second".into()));
        }
        positive("season_ratio", self.season_ratio)?;
        if !(self.early_margin.is_finite() && self.early_margin >= 0.0) {
            return Err((
                "early_margin",
                format!("{} must be zero or a positive number", self.early_margin),
            ));
        }
        if !(self.season_rate > 0.0 && self.season_rate <= 1.0) {
            return Err((
                "season_rate",
                format!("{} must be within (0, 1]", self.season_rate),
            ));
        }
        Ok(())
    }

    fn alpha(half_life: f64) -> f64 {
        1.0 - 0.5f64.powf(1.0 / half_life)
    }
}

/// The detector's per-device state, kept in the device's [`Baseline`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RobustState {
    /// Windows seen.
    pub windows: u64,
    /// Features of the warm-up windows (window-major), until location and scale are set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warm: Vec<f64>,
    /// Per feature (channel-major: mean, max, min of channel 0, then channel 1, …).
    pub location: Vec<f64>,
    pub scale: Vec<f64>,
    /// Per record slot (every feature, then the seasonal residual of every channel): the
    /// decaying record of past deviations, and the largest deviation of the current block.
    pub record: Vec<f64>,
    pub block_max: Vec<f64>,
    /// Per channel: the previous window's mean and the scale of the window-to-window change.
    pub previous: Vec<f64>,
    pub step_scale: Vec<f64>,
    /// Per channel: the scale of the seasonal residual.
    pub season_scale: Vec<f64>,
    /// Per bin and channel (bin-major): the seasonal level; per bin: windows seen.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub season_level: Vec<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub season_seen: Vec<u32>,
}

/// Robust z of `x` against `location`/`scale`.
fn z_of(x: f64, location: f64, scale: f64) -> f64 {
    let d = (x - location).abs();
    if scale > 0.0 {
        (d / scale).min(MAX_Z)
    } else if d > 0.0 {
        MAX_Z
    } else {
        0.0
    }
}

/// `d` limited to `clip` scales (to itself when the scale is still zero).
fn clipped(d: f64, scale: f64, clip: f64) -> f64 {
    if scale > 0.0 {
        d.clamp(-clip * scale, clip * scale)
    } else {
        d
    }
}

/// Exponential update of a scale by the (clipped) deviation `d`.
fn follow_scale(scale: f64, d: f64, alpha: f64, clip: f64) -> f64 {
    (1.0 - alpha) * scale + alpha * clipped(d, scale, clip).abs() * MEAN_ABS_TO_SIGMA
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Median and robust scale of a sample: MAD, or the mean absolute deviation when more than half
/// of the values are equal (a mostly idle counter), or zero for a constant.
fn location_scale(mut v: Vec<f64>) -> (f64, f64) {
    let m = median(&mut v);
    let mut dev: Vec<f64> = v.iter().map(|x| (x - m).abs()).collect();
    let mean_abs = dev.iter().sum::<f64>() / dev.len().max(1) as f64;
    let mad = median(&mut dev);
    let s = if mad > 0.0 {
        MAD_TO_SIGMA * mad
    } else {
        MEAN_ABS_TO_SIGMA * mean_abs
    };
    (m, s)
}

/// Mean, max and min of every column, channel-major.
fn window_features(input: &Matrix) -> Vec<f64> {
    let mut out = Vec::with_capacity(input.cols * FEATURES);
    for c in 0..input.cols {
        let (mut sum, mut max, mut min) = (0.0f64, f64::NEG_INFINITY, f64::INFINITY);
        for v in input.column(c).map(f64::from) {
            sum += v;
            max = max.max(v);
            min = min.min(v);
        }
        let mean = sum / input.rows.max(1) as f64;
        if input.rows == 0 {
            (max, min) = (mean, mean);
        }
        out.extend([mean, max, min]);
    }
    out
}

/// The scale-free streaming scorer. Learns online; a frozen baseline is judged without learning.
#[derive(Debug, Clone)]
pub struct RobustScorer {
    config: RobustConfig,
    labels: Vec<String>,
}

impl RobustScorer {
    pub fn new(config: RobustConfig) -> Self {
        Self {
            config,
            labels: ANOMALY_LABELS.iter().map(|s| s.to_string()).collect(),
        }
    }

    pub fn config(&self) -> &RobustConfig {
        &self.config
    }

    /// Scores one window that ended at device time `ts_ms`, updating the device's state.
    pub fn score_sync(&self, input: &Matrix, baseline: &mut Option<Baseline>, ts_ms: u64) -> Score {
        let x = window_features(input);
        let channels = input.cols;
        let b = baseline.get_or_insert_with(|| Baseline::empty(0));
        // Telemetry is finite when validated; a transform could still overflow. Such a window
        // is judged normal and not learned, so it cannot poison the state.
        let learn = !b.frozen && x.iter().all(|v| v.is_finite());
        let state = b.robust.get_or_insert_with(RobustState::default);
        let (z, anomalous) = self.step(state, &x, channels, ts_ms, learn);
        Score {
            label: ANOMALY_LABELS[usize::from(anomalous)].into(),
            probabilities: Vec::new(),
            anomaly_score: Some(z),
            source: "robust".into(),
            model_version: b.version.clone(),
            contributions: Vec::new(),
            candidate: None,
        }
    }

    /// One window: its z and verdict; learns from it unless `learn` is false.
    fn step(
        &self,
        st: &mut RobustState,
        x: &[f64],
        channels: usize,
        ts_ms: u64,
        learn: bool,
    ) -> (f64, bool) {
        let c = &self.config;
        if st.windows < c.warmup {
            if !learn {
                return (0.0, false);
            }
            if st.warm.len() % x.len().max(1) != 0 {
                st.warm.clear();
            }
            st.warm.extend_from_slice(x);
            st.windows += 1;
            if st.windows == c.warmup {
                self.start(st, x.len(), channels);
            }
            return (0.0, false);
        }
        if !self.fits(st, x.len(), channels) {
            // A state from a profile with other channels or bins: learn afresh.
            *st = RobustState::default();
            return self.step(st, x, channels, ts_ms, learn);
        }
        let bin = self.bin(ts_ms);
        let features = x.len();
        // z and deviation per record slot; a slot not judged this window stays 0.
        let mut z = vec![0.0; features + channels];
        let mut dev = vec![0.0; features + channels];
        for (f, &v) in x.iter().enumerate() {
            if c.spikes || f % FEATURES == 0 {
                z[f] = z_of(v, st.location[f], st.scale[f]);
                dev[f] = (v - st.location[f]).abs();
            }
        }
        for ch in 0..channels {
            let Some(b) = bin.filter(|&b| st.season_seen[b] >= SEASON_MIN_SEEN) else {
                continue;
            };
            if st.season_scale[ch] < c.season_ratio * st.step_scale[ch] {
                // The seasonal residual replaces the plain one of the mean.
                let f = ch * FEATURES;
                let level = st.season_level[b * channels + ch];
                (z[f], dev[f]) = (0.0, 0.0);
                z[features + ch] = z_of(x[f], level, st.season_scale[ch]);
                dev[features + ch] = (x[f] - level).abs();
            }
        }
        let judged = st.windows >= c.warmup + c.settle;
        let margin = c.record_margin * (1.0 + c.early_margin / self.blocks_seen(st).powi(2));
        let anomalous =
            judged && (0..z.len()).any(|i| z[i] > c.threshold && dev[i] > margin * st.record[i]);
        let worst = z.iter().copied().fold(0.0, f64::max);
        if learn {
            self.remember(st, &dev);
            self.learn(st, x, channels, bin);
            st.windows += 1;
        }
        (worst, anomalous)
    }

    /// Feeds this window's deviations to the records: at once, or when the block ends.
    fn remember(&self, st: &mut RobustState, dev: &[f64]) {
        let c = &self.config;
        let decay = 0.5f64.powf(1.0 / c.record_half_life);
        if c.record_block == 0 {
            for (r, &d) in st.record.iter_mut().zip(dev) {
                *r = (*r * decay).max(d);
            }
            return;
        }
        for (m, &d) in st.block_max.iter_mut().zip(dev) {
            *m = m.max(d);
        }
        if (st.windows - c.warmup) % c.record_block == c.record_block - 1 {
            let decay = decay.powf(c.record_block as f64);
            for (r, m) in st.record.iter_mut().zip(st.block_max.iter_mut()) {
                *r = (*r * decay).max(*m);
                *m = 0.0;
            }
        }
    }

    /// Record blocks completed since the warm-up (at least 1; windows without blocks).
    fn blocks_seen(&self, st: &RobustState) -> f64 {
        let since = st.windows.saturating_sub(self.config.warmup);
        (since / self.config.record_block.max(1)).max(1) as f64
    }

    /// Whether a warmed-up state has the shape this configuration and input need.
    fn fits(&self, st: &RobustState, features: usize, channels: usize) -> bool {
        let bins = self.config.season_bins as usize;
        let slots = features + channels;
        st.location.len() == features
            && st.scale.len() == features
            && [&st.previous, &st.step_scale, &st.season_scale]
                .iter()
                .all(|v| v.len() == channels)
            && st.record.len() == slots
            && st.block_max.len() == slots
            && st.season_level.len() == bins * channels
            && st.season_seen.len() == bins
    }

    /// Sets location and scale from the warm-up windows.
    fn start(&self, st: &mut RobustState, features: usize, channels: usize) {
        let windows = st.warm.len() / features;
        st.location = Vec::with_capacity(features);
        st.scale = Vec::with_capacity(features);
        for f in 0..features {
            let column: Vec<f64> = (0..windows).map(|w| st.warm[w * features + f]).collect();
            let (m, s) = location_scale(column);
            st.location.push(m);
            st.scale.push(s);
        }
        let last = &st.warm[(windows - 1) * features..];
        st.previous = (0..channels).map(|ch| last[ch * FEATURES]).collect();
        st.step_scale = (0..channels).map(|ch| st.scale[ch * FEATURES]).collect();
        st.season_scale = st.step_scale.clone();
        st.record = vec![0.0; features + channels];
        st.block_max = vec![0.0; features + channels];
        let bins = self.config.season_bins as usize;
        st.season_level = vec![0.0; bins * channels];
        st.season_seen = vec![0; bins];
        st.warm = Vec::new();
    }

    fn learn(&self, st: &mut RobustState, x: &[f64], channels: usize, bin: Option<usize>) {
        let c = &self.config;
        let alpha = RobustConfig::alpha(c.half_life);
        for (f, &v) in x.iter().enumerate() {
            let d = v - st.location[f];
            st.location[f] += alpha * clipped(d, st.scale[f], c.clip);
            st.scale[f] = follow_scale(st.scale[f], d, alpha, c.clip);
        }
        for ch in 0..channels {
            let mean = x[ch * FEATURES];
            st.step_scale[ch] =
                follow_scale(st.step_scale[ch], mean - st.previous[ch], alpha, c.clip);
            st.previous[ch] = mean;
        }
        if let Some(b) = bin {
            let seen = st.season_seen[b];
            for ch in 0..channels {
                let mean = x[ch * FEATURES];
                let level = &mut st.season_level[b * channels + ch];
                if seen == 0 {
                    *level = mean;
                    continue;
                }
                let d = mean - *level;
                st.season_scale[ch] = follow_scale(st.season_scale[ch], d, alpha, c.clip);
                let rate = (1.0 / f64::from(seen + 1)).max(c.season_rate);
                *level += rate * clipped(d, st.season_scale[ch], c.clip);
            }
            st.season_seen[b] = seen.saturating_add(1);
        }
    }

    fn bin(&self, ts_ms: u64) -> Option<usize> {
        let c = &self.config;
        (c.season_bins > 0)
            .then(|| ((ts_ms / 1000 / c.season_bin_s) % u64::from(c.season_bins)) as usize)
    }
}

#[async_trait]
impl Scorer for RobustScorer {
    fn labels(&self) -> &[String] {
        &self.labels
    }
    fn version(&self) -> String {
        let c = &self.config;
        format!(
            "robust(threshold={},record_margin={},early_margin={},record_half_life={},record_block={},half_life={},spikes={},season={}x{}s)",
            c.threshold,
            c.record_margin,
            c.early_margin,
            c.record_half_life,
            c.record_block,
            c.half_life,
            c.spikes,
            c.season_bins,
            c.season_bin_s
        )
    }
    async fn score(
        &self,
        input: &Matrix,
        baseline: &mut Option<Baseline>,
    ) -> Result<Score, ScoreError> {
        self.score_at(input, baseline, 0).await
    }
    async fn score_at(
        &self,
        input: &Matrix,
        baseline: &mut Option<Baseline>,
        ts_ms: u64,
    ) -> Result<Score, ScoreError> {
        Ok(self.score_sync(input, baseline, ts_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(v: f64) -> Matrix {
        Matrix::new(1, 1, vec![v as f32])
    }

    /// A daily cycle with noise and two faults (a spike, a level drop), 30-minute windows.
    fn series() -> Vec<(u64, f64)> {
        let mut seed = 7u64;
        let mut noise = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) as f64 / (1u64 << 31) as f64) - 0.5
        };
        (0..2000u64)
            .map(|i| {
                let ts = 1_400_000_000_000 + i * 1_800_000;
                let hour = (i % 48) as f64 / 2.0;
                let mut v = 50.0 + 10.0 * (hour / 24.0 * std::f64::consts::TAU).sin() + noise();
                if i == 1200 {
                    v += 40.0;
                }
                if (1600..1620).contains(&i) {
                    v -= 25.0;
                }
                (ts, v)
            })
            .collect()
    }

    fn verdicts(scale: f64, offset: f64) -> Vec<bool> {
        let s = RobustScorer::new(RobustConfig::default());
        let mut b = None;
        series()
            .into_iter()
            .map(|(ts, v)| s.score_sync(&one(v * scale + offset), &mut b, ts).label == "anomaly")
            .collect()
    }

    #[test]
    fn finds_the_faults_of_a_seasonal_series_and_little_else() {
        let v = verdicts(1.0, 0.0);
        assert!(v[1200], "the spike");
        assert!(v[1600..1620].iter().any(|&a| a), "the level drop");
        let elsewhere = v
            .iter()
            .enumerate()
            .filter(|&(i, &a)| a && i != 1200 && !(1600..1640).contains(&i))
            .count();
        assert!(elsewhere <= 2, "{elsewhere} false verdicts");
    }

    #[test]
    fn a_change_of_units_or_offset_changes_no_verdict() {
        let base = verdicts(1.0, 0.0);
        assert!(base.iter().any(|&a| a));
        assert_eq!(verdicts(1000.0, 0.0), base);
        assert_eq!(verdicts(1000.0, -3.5e4), base);
        assert_eq!(verdicts(0.001, 7.0), base);
    }

    #[test]
    fn a_spike_of_known_size_stops_alarming() {
        let s = RobustScorer::new(RobustConfig {
            season_bins: 0,
            ..RobustConfig::default()
        });
        let mut b = None;
        let mut alarms = Vec::new();
        for i in 0..3000u64 {
            let v = if i % 48 == 40 {
                9.0
            } else {
                1.0 + (i % 3) as f64 * 0.01
            };
            if s.score_sync(&one(v), &mut b, i * 300_000).label == "anomaly" {
                alarms.push(i);
            }
        }
        assert!(alarms.len() <= 1, "recurring spikes alarm: {alarms:?}");
        let big = s.score_sync(&one(30.0), &mut b, 3000 * 300_000);
        assert_eq!(big.label, "anomaly", "a spike larger than any before");
    }

    #[test]
    fn a_young_record_asks_for_a_larger_deviation() {
        // A quiet level with a 0.1 excursion every 20 windows, and a 0.18 spike twice: two windows
        // after the settling time (the record has seen one block) and ten days later.
        let alarms = |early_margin: f64| {
            let s = RobustScorer::new(RobustConfig {
                season_bins: 0,
                early_margin,
                ..RobustConfig::default()
            });
            let mut b = None;
            let mut alarms = Vec::new();
            for i in 0..700u64 {
                let mut v = 1.0 + (i % 3) as f64 * 0.01;
                if i % 20 == 0 {
                    v += 0.1;
                }
                if i == 98 || i == 600 {
                    v += 0.18;
                }
                if s.score_sync(&one(v), &mut b, i * 1_800_000).label == "anomaly" {
                    alarms.push(i);
                }
            }
            alarms
        };
        assert_eq!(alarms(0.0), vec![98, 600], "without the early raise");
        assert_eq!(alarms(1.0), vec![600], "the young record: margin doubled");
    }

    #[test]
    fn a_frozen_baseline_is_judged_without_learning() {
        let s = RobustScorer::new(RobustConfig::default());
        let mut b = None;
        for (ts, v) in series().into_iter().take(500) {
            s.score_sync(&one(v), &mut b, ts);
        }
        b.as_mut().unwrap().frozen = true;
        let before = b.clone();
        s.score_sync(&one(500.0), &mut b, 1_500_000_000_000);
        assert_eq!(b, before);
    }

    #[test]
    fn a_state_of_another_shape_is_relearned_not_a_panic() {
        let s = RobustScorer::new(RobustConfig::default());
        let mut b = None;
        for (ts, v) in series().into_iter().take(300) {
            s.score_sync(&one(v), &mut b, ts);
        }
        // The profile's seasonality changes, then its channels: the state is relearned.
        let more_bins = RobustScorer::new(RobustConfig {
            season_bins: 24 * 7 * 2,
            ..RobustConfig::default()
        });
        let score = more_bins.score_sync(&one(50.0), &mut b, 1_500_000_000_000);
        assert_eq!(score.label, "normal");
        assert_eq!(b.as_ref().unwrap().robust.as_ref().unwrap().windows, 1);
        let two = Matrix::new(1, 2, vec![1.0, 2.0]);
        assert_eq!(s.score_sync(&two, &mut b, 0).label, "normal");
        let mut corrupt = b.clone();
        corrupt.as_mut().unwrap().robust.as_mut().unwrap().windows = 10_000;
        assert_eq!(s.score_sync(&two, &mut corrupt, 0).label, "normal");
        let nan = Matrix::new(1, 2, vec![f32::NAN, 2.0]);
        let before = b.clone();
        assert_eq!(s.score_sync(&nan, &mut b, 0).label, "normal");
        assert_eq!(b, before, "a non-finite window is not learned");
    }

    #[test]
    fn validation_names_the_key() {
        let bad = RobustConfig {
            record_half_life: 0.5,
            ..RobustConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().0, "record_half_life");
        let bad = RobustConfig {
            season_bins: MAX_SEASON_BINS + 1,
            ..RobustConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().0, "season_bins");
        let bad = RobustConfig {
            early_margin: -1.0,
            ..RobustConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().0, "early_margin");
        assert!(RobustConfig::default().validate().is_ok());
    }
}
