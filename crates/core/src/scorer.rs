//! The scorer port and the native streaming scorers.
//!
//! A scorer turns a transformed window into a label. Model scorers (ONNX, SageMaker) live in
//! adapter crates; the streaming statistics scorers live here because they are plain maths over
//! a per-device baseline that the pipeline loads from and saves to the device state.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::transform::Matrix;

/// The verdict of a window whose top probability is below its profile's `min_confidence`: the
/// data cannot tell the classes apart there. The alert policy neither raises nor clears on it.
pub const UNCERTAIN_LABEL: &str = "uncertain";

/// Labels of the streaming anomaly scorers, healthy first.
pub const ANOMALY_LABELS: [&str; 2] = ["normal", "anomaly"];

/// The verdict on one window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Score {
    pub label: String,
    /// Per-label probabilities in the scorer's label order (empty for anomaly scorers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probabilities: Vec<f32>,
    /// Anomaly score for anomaly scorers (e.g. the largest |z|).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anomaly_score: Option<f64>,
    /// Which scorer produced it: `onnx`, `sagemaker`, `sagemaker-fallback-onnx`, `zscore`, `ewma`,
    /// `robust`, `learned-normal`.
    pub source: String,
    pub model_version: String,
    /// Why: each channel's share of the verdict, where the scorer can say.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contributions: Vec<Contribution>,
    /// A candidate model scored beside the live one (learned normal not yet promoted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<CandidateScore>,
}

/// One channel's share of a verdict (shares of a result sum to 1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    pub channel: String,
    pub share: f64,
}

impl Contribution {
    /// Shares per input column, named by channel when the columns are the channels, else
    /// `feature <j>` (after transforms that change the columns).
    pub fn named(shares: &[f32], channels: &[String]) -> Vec<Self> {
        let mut list = Self::unnamed(shares);
        Self::name_columns(&mut list, channels);
        list
    }

    /// Shares per input column, to be named by [`Contribution::name_columns`].
    pub fn unnamed(shares: &[f32]) -> Vec<Self> {
        shares
            .iter()
            .map(|&share| Self {
                channel: String::new(),
                share: f64::from(share),
            })
            .collect()
    }

    /// Names unnamed column shares after the profile's channels (scorers that know their own
    /// names, like the learned normal, have named them already).
    pub fn name_columns(list: &mut [Self], channels: &[String]) {
        let same = list.len() == channels.len();
        for (j, c) in list.iter_mut().enumerate() {
            if c.channel.is_empty() {
                c.channel = if same {
                    channels[j].clone()
                } else {
                    format!("feature {j}")
                };
            }
        }
    }
}

/// The verdict a candidate model would have given (reported, never alerted on).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CandidateScore {
    pub label: String,
    pub anomaly_score: f64,
    pub model_version: String,
}

/// Non-negative weights normalised to shares summing to 1; empty when they are all zero (or
/// not finite), since then nothing stands out.
pub fn shares(weights: &[f64]) -> Vec<f32> {
    let clean: Vec<f64> = weights
        .iter()
        .map(|w| if w.is_finite() { w.abs() } else { 0.0 })
        .collect();
    let total: f64 = clean.iter().sum();
    if total <= 0.0 {
        return Vec::new();
    }
    clean.iter().map(|w| (w / total) as f32).collect()
}

#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    /// Worth retrying later (an endpoint timed out, throttling).
    #[error("scorer unavailable: {0}")]
    Unavailable(String),
    /// The input or model is wrong; retrying will not help.
    #[error("scoring failed: {0}")]
    Failed(String),
}

impl ScoreError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

#[async_trait]
pub trait Scorer: Send + Sync {
    /// Labels this scorer may produce, in output order.
    fn labels(&self) -> &[String];
    /// Version of the model or detector (carried in every result).
    fn version(&self) -> String;
    /// Scores a window. Stateful scorers read and update the device's `baseline`.
    async fn score(
        &self,
        input: &Matrix,
        baseline: &mut Option<Baseline>,
    ) -> Result<Score, ScoreError>;
    /// Scores a window that ended at device time `ts_ms` (the pipeline calls this); scorers
    /// with a seasonal baseline need the time, the others ignore it.
    async fn score_at(
        &self,
        input: &Matrix,
        baseline: &mut Option<Baseline>,
        ts_ms: u64,
    ) -> Result<Score, ScoreError> {
        let _ = ts_ms;
        self.score(input, baseline).await
    }
}

/// Running per-feature statistics of one device: the streaming scorers' state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// `learned` while the scorer learns online; a calibration writes its own version and
    /// freezes the baseline so that faults are not learned as normal.
    pub version: String,
    pub count: u64,
    pub mean: Vec<f64>,
    /// Welford: sum of squared deviations; EWMA: the exponentially weighted variance.
    pub spread: Vec<f64>,
    #[serde(default)]
    pub frozen: bool,
    /// The learned-normal scorer's models (its `mean`/`spread` stay empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normal: Option<crate::normal::LearnedNormal>,
    /// State of the scale-free `robust` scorer (its own richer statistics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub robust: Option<crate::streaming::RobustState>,
}

impl Baseline {
    pub fn empty(features: usize) -> Self {
        Self {
            version: "learned".into(),
            count: 0,
            mean: vec![0.0; features],
            spread: vec![0.0; features],
            frozen: false,
            normal: None,
            robust: None,
        }
    }

    /// Fits a frozen baseline from normal feature rows (used by `vigil calibrate`).
    pub fn fit(rows: &[Vec<f64>], version: impl Into<String>) -> Option<Self> {
        let features = rows.first()?.len();
        let mut b = Self::empty(features);
        for r in rows {
            if r.len() != features {
                return None;
            }
            b.welford_add(r);
        }
        b.version = version.into();
        b.frozen = true;
        Some(b)
    }

    fn welford_add(&mut self, x: &[f64]) {
        self.count += 1;
        let n = self.count as f64;
        for (j, &v) in x.iter().enumerate() {
            let d = v - self.mean[j];
            self.mean[j] += d / n;
            self.spread[j] += d * (v - self.mean[j]);
        }
    }

    /// Welford standard deviation of feature `j`.
    pub fn std(&self, j: usize) -> f64 {
        if self.count < 2 {
            0.0
        } else {
            (self.spread[j] / (self.count - 1) as f64).sqrt()
        }
    }
}

/// The streaming scorers' feature reduction: one feature per column, the column mean over the
/// window's rows. Public so that `vigil calibrate` fits baselines from the very same numbers the
/// scorers judge (see [`crate::calibrate`]).
pub fn window_features(input: &Matrix) -> Vec<f64> {
    (0..input.cols)
        .map(|c| input.column(c).map(f64::from).sum::<f64>() / input.rows.max(1) as f64)
        .collect()
}

fn baseline_for(baseline: &mut Option<Baseline>, features: usize) -> &mut Baseline {
    if baseline.as_ref().is_none_or(|b| b.mean.len() != features) {
        *baseline = Some(Baseline::empty(features));
    }
    baseline.as_mut().expect("just set")
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZScoreConfig {
    /// |z| above which a window is anomalous.
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    /// Windows learned before any verdict other than `normal` is given.
    #[serde(default = "default_warmup")]
    pub warmup: u64,
    /// Whether anomalous windows are learned too (default: no, so a fault is not absorbed).
    #[serde(default)]
    pub learn_anomalies: bool,
}

fn default_threshold() -> f64 {
    4.0
}
fn default_warmup() -> u64 {
    30
}

impl ZScoreConfig {
    pub(crate) fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(self.threshold.is_finite() && self.threshold > 0.0) {
            return Err((
                "threshold",
                format!("{} must be a positive number", self.threshold),
            ));
        }
        if self.warmup < 2 {
            return Err((
                "warmup",
                format!("{} must be at least 2 windows", self.warmup),
            ));
        }
        Ok(())
    }
}

/// Streaming z-score per device and feature (Welford), the classic baseline detector.
#[derive(Debug)]
pub struct ZScoreScorer {
    config: ZScoreConfig,
    labels: Vec<String>,
}

impl ZScoreScorer {
    pub fn new(config: ZScoreConfig) -> Self {
        Self {
            config,
            labels: ANOMALY_LABELS.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Synchronous core of `score`, used directly by evaluations.
    pub fn score_sync(&self, input: &Matrix, baseline: &mut Option<Baseline>) -> Score {
        let x = window_features(input);
        let b = baseline_for(baseline, x.len());
        let per_column: Vec<f64> = (0..x.len())
            .map(|j| {
                let sd = b.std(j);
                if sd > 0.0 {
                    ((x[j] - b.mean[j]) / sd).abs()
                } else {
                    0.0
                }
            })
            .collect();
        let z = per_column.iter().copied().fold(0.0, f64::max);
        let warm = b.frozen || b.count >= self.config.warmup;
        let anomalous = warm && z > self.config.threshold;
        if !b.frozen && (!anomalous || self.config.learn_anomalies) {
            b.welford_add(&x);
        }
        Score {
            label: ANOMALY_LABELS[usize::from(anomalous)].into(),
            probabilities: Vec::new(),
            anomaly_score: Some(z),
            source: "zscore".into(),
            model_version: b.version.clone(),
            contributions: Contribution::unnamed(&shares(&per_column)),
            candidate: None,
        }
    }
}

#[async_trait]
impl Scorer for ZScoreScorer {
    fn labels(&self) -> &[String] {
        &self.labels
    }
    fn version(&self) -> String {
        format!(
            "zscore(threshold={},warmup={})",
            self.config.threshold, self.config.warmup
        )
    }
    async fn score(
        &self,
        input: &Matrix,
        baseline: &mut Option<Baseline>,
    ) -> Result<Score, ScoreError> {
        Ok(self.score_sync(input, baseline))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EwmaConfig {
    /// Half-life of the baseline, in windows.
    #[serde(default = "default_half_life")]
    pub half_life: f64,
    /// Deviation (in baseline standard deviations) above which a window is anomalous.
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    #[serde(default = "default_warmup")]
    pub warmup: u64,
    /// Floor on the standard deviation, as a fraction of |mean|: a very quiet signal would
    /// otherwise turn noise into alarms.
    #[serde(default = "default_min_relative_std")]
    pub min_relative_std: f64,
}

fn default_half_life() -> f64 {
    288.0
}
fn default_min_relative_std() -> f64 {
    0.01
}

impl EwmaConfig {
    pub(crate) fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(self.half_life.is_finite() && self.half_life >= 1.0) {
            return Err((
                "half_life",
                format!("{} must be at least 1 window", self.half_life),
            ));
        }
        if !(self.threshold.is_finite() && self.threshold > 0.0) {
            return Err((
                "threshold",
                format!("{} must be a positive number", self.threshold),
            ));
        }
        if self.warmup < 2 {
            return Err((
                "warmup",
                format!("{} must be at least 2 windows", self.warmup),
            ));
        }
        if !(self.min_relative_std.is_finite() && self.min_relative_std >= 0.0) {
            return Err((
                "min_relative_std",
                format!("{} must be ≥ 0", self.min_relative_std),
            ));
        }
        Ok(())
    }
}

/// Exponentially weighted baseline that forgets slowly, does not learn from anomalous windows,
/// and has a floor on its spread: it follows slow drift without raising, and is not fooled by a
/// quiet stretch into alarming on noise — the two failure modes of a plain rolling z-score.
#[derive(Debug)]
pub struct EwmaScorer {
    config: EwmaConfig,
    labels: Vec<String>,
}

impl EwmaScorer {
    pub fn new(config: EwmaConfig) -> Self {
        Self {
            config,
            labels: ANOMALY_LABELS.iter().map(|s| s.to_string()).collect(),
        }
    }

    pub fn score_sync(&self, input: &Matrix, baseline: &mut Option<Baseline>) -> Score {
        let x = window_features(input);
        let b = baseline_for(baseline, x.len());
        let alpha = 1.0 - 0.5f64.powf(1.0 / self.config.half_life);
        let mut worst = 0f64;
        let mut per_column = vec![0f64; x.len()];
        for (j, &xj) in x.iter().enumerate() {
            let sd = b.spread[j]
                .max(0.0)
                .sqrt()
                .max(self.config.min_relative_std * b.mean[j].abs());
            if sd > 0.0 {
                per_column[j] = ((xj - b.mean[j]) / sd).abs();
                worst = worst.max(per_column[j]);
            }
        }
        let warm = b.frozen || b.count >= self.config.warmup;
        let anomalous = warm && worst > self.config.threshold;
        if !b.frozen && !anomalous {
            b.count += 1;
            // During warm-up use the plain running mean/variance so early values weigh fully.
            let a = if b.count <= self.config.warmup {
                1.0 / b.count as f64
            } else {
                alpha
            };
            for (j, &xj) in x.iter().enumerate() {
                let d = xj - b.mean[j];
                b.mean[j] += a * d;
                b.spread[j] = (1.0 - a) * (b.spread[j] + a * d * d);
            }
        }
        Score {
            label: ANOMALY_LABELS[usize::from(anomalous)].into(),
            probabilities: Vec::new(),
            anomaly_score: Some(worst),
            source: "ewma".into(),
            model_version: b.version.clone(),
            contributions: Contribution::unnamed(&shares(&per_column)),
            candidate: None,
        }
    }
}

#[async_trait]
impl Scorer for EwmaScorer {
    fn labels(&self) -> &[String] {
        &self.labels
    }
    fn version(&self) -> String {
        format!(
            "ewma(half_life={},threshold={})",
            self.config.half_life, self.config.threshold
        )
    }
    async fn score(
        &self,
        input: &Matrix,
        baseline: &mut Option<Baseline>,
    ) -> Result<Score, ScoreError> {
        Ok(self.score_sync(input, baseline))
    }
}

/// A scorer whose verdicts below a least top probability become [`UNCERTAIN_LABEL`]; the
/// probabilities (and so the arg-max class) stay in the score for whoever wants to look.
pub struct ConfidenceFloor {
    inner: Arc<dyn Scorer>,
    min_confidence: f32,
}

impl ConfidenceFloor {
    /// Wraps `inner` when the profile sets `min_confidence`; otherwise returns it as is.
    pub fn wrap(inner: Arc<dyn Scorer>, min_confidence: Option<f32>) -> Arc<dyn Scorer> {
        match min_confidence {
            Some(min_confidence) => Arc::new(Self {
                inner,
                min_confidence,
            }),
            None => inner,
        }
    }
}

/// The score with its label replaced by [`UNCERTAIN_LABEL`] if its top probability is below
/// `min_confidence` (scores without probabilities pass unchanged).
pub fn apply_min_confidence(mut score: Score, min_confidence: f32) -> Score {
    let top = score.probabilities.iter().copied().fold(f32::NAN, f32::max);
    // NaN probabilities are no grounds for a verdict either: `confident` is false for them.
    let confident = top >= min_confidence;
    if !score.probabilities.is_empty() && !confident {
        score.label = UNCERTAIN_LABEL.to_string();
    }
    score
}

#[async_trait]
impl Scorer for ConfidenceFloor {
    fn labels(&self) -> &[String] {
        self.inner.labels()
    }
    fn version(&self) -> String {
        self.inner.version()
    }
    async fn score(
        &self,
        input: &Matrix,
        baseline: &mut Option<Baseline>,
    ) -> Result<Score, ScoreError> {
        let score = self.inner.score(input, baseline).await?;
        Ok(apply_min_confidence(score, self.min_confidence))
    }
}

/// Arg-max label of a probability vector.
pub fn argmax_label(labels: &[String], probabilities: &[f32]) -> Option<String> {
    probabilities
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .and_then(|(i, _)| labels.get(i).cloned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classified(probabilities: Vec<f32>) -> Score {
        Score {
            label: "100".into(),
            probabilities,
            anomaly_score: None,
            source: "onnx".into(),
            model_version: "m@1".into(),
            contributions: Vec::new(),
            candidate: None,
        }
    }

    #[test]
    fn below_min_confidence_is_uncertain_and_keeps_the_probabilities() {
        let s = apply_min_confidence(classified(vec![0.55, 0.45]), 0.7);
        assert_eq!(s.label, UNCERTAIN_LABEL);
        assert_eq!(s.probabilities, vec![0.55, 0.45]);
        // At the threshold and above: the verdict stands.
        assert_eq!(
            apply_min_confidence(classified(vec![0.7, 0.3]), 0.7).label,
            "100"
        );
        assert_eq!(
            apply_min_confidence(classified(vec![0.9, 0.1]), 0.7).label,
            "100"
        );
        // NaN probabilities give no verdict; no probabilities (anomaly scorers) pass unchanged.
        let nan = apply_min_confidence(classified(vec![f32::NAN, f32::NAN]), 0.5);
        assert_eq!(nan.label, UNCERTAIN_LABEL);
        assert_eq!(apply_min_confidence(classified(vec![]), 0.99).label, "100");
    }

    fn one(v: f32) -> Matrix {
        Matrix::new(1, 1, vec![v])
    }

    #[test]
    fn zscore_flags_outliers_after_warmup_and_does_not_learn_them() {
        let s = ZScoreScorer::new(ZScoreConfig {
            threshold: 4.0,
            warmup: 10,
            learn_anomalies: false,
        });
        let mut b = None;
        for i in 0..50 {
            let v = 10.0 + if i % 2 == 0 { 0.5 } else { -0.5 };
            assert_eq!(s.score_sync(&one(v), &mut b).label, "normal");
        }
        let before = b.clone();
        let spike = s.score_sync(&one(30.0), &mut b);
        assert_eq!(spike.label, "anomaly");
        assert!(spike.anomaly_score.unwrap() > 4.0);
        assert_eq!(b, before, "anomalies are not learned");
    }

    #[test]
    fn streaming_contributions_point_at_the_deviating_channel() {
        let s = ZScoreScorer::new(ZScoreConfig {
            threshold: 4.0,
            warmup: 10,
            learn_anomalies: false,
        });
        let e = EwmaScorer::new(EwmaConfig {
            half_life: 50.0,
            threshold: 4.0,
            warmup: 10,
            min_relative_std: 0.0,
        });
        let row = |a: f32, b: f32, c: f32| Matrix::new(1, 3, vec![a, b, c]);
        let (mut bz, mut be) = (None, None);
        for i in 0..40 {
            let j = if i % 2 == 0 { 0.5 } else { -0.5 };
            s.score_sync(&row(10.0 + j, 20.0 - j, 5.0 + j), &mut bz);
            e.score_sync(&row(10.0 + j, 20.0 - j, 5.0 + j), &mut be);
        }
        // Channel 1 far off, channel 2 a little.
        for score in [
            s.score_sync(&row(10.0, 40.0, 6.0), &mut bz),
            e.score_sync(&row(10.0, 40.0, 6.0), &mut be),
        ] {
            assert_eq!(score.label, "anomaly");
            let c: Vec<f64> = score.contributions.iter().map(|c| c.share).collect();
            assert_eq!(c.len(), 3, "{c:?}");
            assert!((c.iter().sum::<f64>() - 1.0).abs() < 1e-5);
            assert!(
                c[1] > 0.8 && c[1] > c[2] && c[2] > c[0],
                "{} {c:?}",
                score.source
            );
        }
        assert!(shares(&[0.0, 0.0]).is_empty());
        assert!(shares(&[f64::NAN, 0.0]).is_empty());
    }

    #[test]
    fn welford_matches_two_pass() {
        let rows: Vec<Vec<f64>> = (0..100)
            .map(|i| vec![f64::from(i) * 0.37, (f64::from(i)).sin()])
            .collect();
        let b = Baseline::fit(&rows, "v1").unwrap();
        let mean0 = rows.iter().map(|r| r[0]).sum::<f64>() / 100.0;
        let var0 = rows.iter().map(|r| (r[0] - mean0).powi(2)).sum::<f64>() / 99.0;
        assert!((b.mean[0] - mean0).abs() < 1e-9);
        assert!((b.std(0) - var0.sqrt()).abs() < 1e-9);
        assert!(b.frozen);
    }

    #[test]
    fn ewma_follows_slow_drift_but_flags_jumps() {
        let s = EwmaScorer::new(EwmaConfig {
            half_life: 20.0,
            threshold: 5.0,
            warmup: 20,
            min_relative_std: 0.0,
        });
        let mut b = None;
        for i in 0..400 {
            let v = 50.0 + i as f32 * 0.01 + if i % 2 == 0 { 0.3 } else { -0.3 };
            assert_eq!(s.score_sync(&one(v), &mut b).label, "normal", "at {i}");
        }
        assert_eq!(s.score_sync(&one(20.0), &mut b).label, "anomaly");
    }
}
