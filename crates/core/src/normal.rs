//! Learned normal: a multivariate model of one machine's own normal windows (the replacement for
//! Lookout for Equipment's per-machine model), with per-channel diagnostics.
//!
//! `vigil train-normal` fits it from windows the machine produced while healthy:
//! - each window becomes features per channel (its mean, and its standard deviation when the
//!   window has more than one row after the transforms), standardised on the training windows;
//! - PCA keeps the components that explain `variance_kept` of the variance; a window is judged
//!   by Hotelling's T² (distance inside the model's subspace) and Q/SPE (distance off it);
//! - the limits of both come from *held-out* normal windows (recent ones, never used for the
//!   fit), and the newest held-out windows, used for neither, measure the false-alarm rate the
//!   model is published with.
//!
//! The score is `max(T²/T²_limit, SPE/SPE_limit)`: above 1 the window is anomalous. Each
//! channel's share of it ("TS3 drove 70 % of the score") sums the shares of its features in both
//! statistics (see [`NormalModel::contributions`]).
//!
//! A new model goes live only if its false-alarm rate on the newest held-out normal windows is no
//! worse than the live model's on the same windows; otherwise it is published as a candidate,
//! scored beside the live one, until promoted by hand ([`decide`]).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::scorer::{
    Baseline, CandidateScore, Contribution, Score, ScoreError, Scorer, ANOMALY_LABELS,
};
use crate::transform::Matrix;

/// Profile settings of the learned-normal scorer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NormalConfig {
    /// Share of the standardised variance the principal components keep (0 < v < 1).
    #[serde(default = "default_variance_kept")]
    pub variance_kept: f64,
    /// Share of the newest training windows held out to set the limits (0 < h < 1).
    #[serde(default = "default_holdout")]
    pub holdout: f64,
    /// Limits sit at this quantile of the held-out windows' statistics (1.0: their maximum, so
    /// no held-out normal window alarms), times `margin`.
    #[serde(default = "default_quantile")]
    pub quantile: f64,
    #[serde(default = "default_margin")]
    pub margin: f64,
    /// Fewest windows a fit accepts (fit + held out).
    #[serde(default = "default_min_windows")]
    pub min_windows: u64,
}

fn default_variance_kept() -> f64 {
    0.95
}
fn default_holdout() -> f64 {
    0.25
}
fn default_quantile() -> f64 {
    1.0
}
fn default_margin() -> f64 {
    1.0
}
fn default_min_windows() -> u64 {
    20
}

impl Default for NormalConfig {
    fn default() -> Self {
        Self {
            variance_kept: default_variance_kept(),
            holdout: default_holdout(),
            quantile: default_quantile(),
            margin: default_margin(),
            min_windows: default_min_windows(),
        }
    }
}

impl NormalConfig {
    pub(crate) fn validate(&self) -> Result<(), (&'static str, String)> {
        let open_unit = |v: f64| v.is_finite() && v > 0.0 && v < 1.0;
        if !open_unit(self.variance_kept) {
            return Err((
                "variance_kept",
                format!("{} must be in (0, 1)", self.variance_kept),
            ));
        }
        if !open_unit(self.holdout) {
            return Err(("holdout", format!("{} must be in (0, 1)", self.holdout)));
        }
        if !(self.quantile.is_finite() && self.quantile > 0.5 && self.quantile <= 1.0) {
            return Err(("quantile", format!("{} must be in (0.5, 1]", self.quantile)));
        }
        if !(self.margin.is_finite() && self.margin >= 1.0) {
            return Err(("margin", format!("{} must be at least 1", self.margin)));
        }
        if self.min_windows < 8 {
            return Err((
                "min_windows",
                format!("{} must be at least 8", self.min_windows),
            ));
        }
        Ok(())
    }
}

/// Why a learned-normal model could not be fitted.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum NormalError {
    #[error("{got} windows, at least {min} needed to fit and hold out")]
    TooFewWindows { got: usize, min: u64 },
    #[error("window {index}: {got} features where the first has {expected}")]
    Shape {
        index: usize,
        got: usize,
        expected: usize,
    },
    #[error("window {index}: feature {feature} is not finite")]
    NonFinite { index: usize, feature: usize },
    #[error("every feature is constant over the training windows: nothing to learn")]
    Constant,
}

/// The fitted model of one machine's normal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NormalModel {
    pub version: String,
    /// Channel of each feature (features are channel-major: mean, then std, per channel).
    pub feature_channels: Vec<String>,
    pub center: Vec<f64>,
    /// Standard deviation per feature; 0 marks a feature constant in training (ignored).
    pub scale: Vec<f64>,
    /// Principal directions, one row per component (unit vectors in standardised space).
    pub components: Vec<Vec<f64>>,
    /// Variance along each component.
    pub eigenvalues: Vec<f64>,
    pub t2_limit: f64,
    pub spe_limit: f64,
    /// Windows fitted on and held out; the newest `check_windows` of those held out set no
    /// limit and measure the false-alarm rate.
    pub fit_windows: usize,
    pub holdout_windows: usize,
    pub check_windows: usize,
    /// False-alarm rate on the newest held-out windows.
    pub holdout_false_alarm_rate: f64,
}

/// One window judged by a model.
#[derive(Clone, Debug, PartialEq)]
pub struct NormalScore {
    pub t2: f64,
    pub spe: f64,
    /// `max(T²/T²_limit, SPE/SPE_limit)`; above 1: anomalous.
    pub score: f64,
    /// Each channel's share of the score, in channel order, summing to 1 (or all 0).
    pub contributions: Vec<(String, f64)>,
}

impl NormalScore {
    pub fn is_anomalous(&self) -> bool {
        self.score > 1.0
    }
}

/// Features of one transformed window: per channel its mean, and its standard deviation when
/// the window has more than one row (a one-row window, e.g. FFT bands, is its own features).
pub fn window_features(input: &Matrix, channels: &[String]) -> (Vec<f64>, Vec<String>) {
    let name = |c: usize| {
        channels
            .get(c)
            .cloned()
            .unwrap_or_else(|| format!("feature{c}"))
    };
    let mut values = Vec::new();
    let mut names = Vec::new();
    for c in 0..input.cols {
        let column: Vec<f64> = input.column(c).map(f64::from).collect();
        let n = column.len().max(1) as f64;
        let mean = column.iter().sum::<f64>() / n;
        values.push(mean);
        names.push(name(c));
        if input.rows > 1 {
            let var = column.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
            values.push(var.sqrt());
            names.push(name(c));
        }
    }
    (values, names)
}

/// Fits a model on `rows` (feature vectors of normal windows, oldest first): the newest
/// `config.holdout` share is held out to set the limits.
// Matrix arithmetic reads as the formulas do with indices.
#[allow(clippy::needless_range_loop)]
pub fn fit(
    rows: &[Vec<f64>],
    feature_channels: Vec<String>,
    config: &NormalConfig,
    version: impl Into<String>,
) -> Result<NormalModel, NormalError> {
    check_rows(rows)?;
    if (rows.len() as u64) < config.min_windows {
        return Err(NormalError::TooFewWindows {
            got: rows.len(),
            min: config.min_windows,
        });
    }
    // Held out, oldest first: the first part sets the limits, the newest part (`check`) measures
    // the false-alarm rate on windows that played no part in the model or its limits.
    let held = ((rows.len() as f64 * config.holdout).round() as usize).clamp(2, rows.len() - 2);
    let (train, holdout) = rows.split_at(rows.len() - held);
    let (limits_from, check) = holdout.split_at(held - held / 2);
    let d = train[0].len();
    let n = train.len() as f64;
    let center: Vec<f64> = (0..d)
        .map(|j| train.iter().map(|r| r[j]).sum::<f64>() / n)
        .collect();
    let scale: Vec<f64> = (0..d)
        .map(|j| {
            let var = train
                .iter()
                .map(|r| (r[j] - center[j]).powi(2))
                .sum::<f64>()
                / (n - 1.0);
            let sd = var.sqrt();
            // Constant in training (to rounding): ignored rather than divided by ~0.
            if sd > 1e-9 * center[j].abs().max(1.0) {
                sd
            } else {
                0.0
            }
        })
        .collect();
    if scale.iter().all(|&s| s == 0.0) {
        return Err(NormalError::Constant);
    }
    let standardise = |r: &Vec<f64>| -> Vec<f64> { standardised(r, &center, &scale) };
    let z: Vec<Vec<f64>> = train.iter().map(standardise).collect();
    let mut cov = vec![vec![0.0; d]; d];
    for r in &z {
        for a in 0..d {
            for b in a..d {
                cov[a][b] += r[a] * r[b];
            }
        }
    }
    for a in 0..d {
        for b in a..d {
            cov[a][b] /= n - 1.0;
            cov[b][a] = cov[a][b];
        }
    }
    let (values, vectors) = symmetric_eigen(cov);
    let total: f64 = values.iter().map(|v| v.max(0.0)).sum();
    let mut kept = 0;
    let mut acc = 0.0;
    for &v in &values {
        if v <= total * 1e-12 {
            break;
        }
        kept += 1;
        acc += v;
        if acc >= config.variance_kept * total {
            break;
        }
    }
    let kept = kept.max(1);
    let mut model = NormalModel {
        version: version.into(),
        feature_channels,
        center,
        scale,
        components: vectors.into_iter().take(kept).collect(),
        eigenvalues: values
            .into_iter()
            .take(kept)
            .map(|v| v.max(1e-12))
            .collect(),
        t2_limit: 1.0,
        spe_limit: 1.0,
        fit_windows: train.len(),
        holdout_windows: holdout.len(),
        check_windows: 0,
        holdout_false_alarm_rate: 0.0,
    };
    let stats: Vec<(f64, f64)> = limits_from.iter().map(|r| model.statistics(r)).collect();
    let limit = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let q = quantile_sorted(&v, config.quantile) * config.margin;
        // A zero limit would make every window anomalous: a floor relative to the fit's scale.
        q.max(1e-9)
    };
    model.t2_limit = limit(stats.iter().map(|s| s.0).collect());
    model.spe_limit = limit(stats.iter().map(|s| s.1).collect());
    model.check_windows = check.len();
    model.holdout_false_alarm_rate = model.false_alarm_rate(check);
    Ok(model)
}

impl NormalModel {
    /// T² and SPE of a feature vector (features of the wrong width score as far off).
    fn statistics(&self, x: &[f64]) -> (f64, f64) {
        let z = standardised(x, &self.center, &self.scale);
        let t: Vec<f64> = self.components.iter().map(|p| dot(p, &z)).collect();
        let t2 = t
            .iter()
            .zip(&self.eigenvalues)
            .map(|(t, l)| t * t / l)
            .sum();
        let spe = residual(&z, &self.components, &t)
            .iter()
            .map(|r| r * r)
            .sum();
        (t2, spe)
    }

    /// Judges one window's features.
    pub fn score(&self, x: &[f64]) -> NormalScore {
        if x.len() != self.center.len() || x.iter().any(|v| !v.is_finite()) {
            return NormalScore {
                t2: f64::INFINITY,
                spe: f64::INFINITY,
                score: f64::INFINITY,
                contributions: Vec::new(),
            };
        }
        let (t2, spe) = self.statistics(x);
        let score = (t2 / self.t2_limit).max(spe / self.spe_limit);
        NormalScore {
            t2,
            spe,
            score,
            contributions: self.contributions(x),
        }
    }

    /// Each channel's share of the window's distance from normal. A feature's part of SPE is its
    /// squared residual; its part of T² is `|z_j · Σ_i t_i p_ij / λ_i|` (the "complete
    /// decomposition", whose signed parts sum to T²); both are scaled by their limits so the
    /// statistic that drives the verdict drives the shares too, and summed per channel.
    pub fn contributions(&self, x: &[f64]) -> Vec<(String, f64)> {
        let z = standardised(x, &self.center, &self.scale);
        let t: Vec<f64> = self.components.iter().map(|p| dot(p, &z)).collect();
        let r = residual(&z, &self.components, &t);
        let mut per_channel: Vec<(String, f64)> = Vec::new();
        for (j, channel) in self.feature_channels.iter().enumerate() {
            let t2_part: f64 = self
                .components
                .iter()
                .zip(&t)
                .zip(&self.eigenvalues)
                .map(|((p, t), l)| t * p.get(j).copied().unwrap_or(0.0) / l)
                .sum::<f64>()
                * z.get(j).copied().unwrap_or(0.0);
            let part =
                t2_part.abs() / self.t2_limit + r.get(j).map_or(0.0, |r| r * r) / self.spe_limit;
            match per_channel.iter_mut().find(|(c, _)| c == channel) {
                Some((_, v)) => *v += part,
                None => per_channel.push((channel.clone(), part)),
            }
        }
        let total: f64 = per_channel.iter().map(|(_, v)| v).sum();
        if total > 0.0 && total.is_finite() {
            for (_, v) in &mut per_channel {
                *v /= total;
            }
        } else {
            for (_, v) in &mut per_channel {
                *v = 0.0;
            }
        }
        per_channel
    }

    /// Share of `rows` this model calls anomalous.
    pub fn false_alarm_rate(&self, rows: &[Vec<f64>]) -> f64 {
        if rows.is_empty() {
            return 0.0;
        }
        let alarms = rows.iter().filter(|r| self.score(r).is_anomalous()).count();
        alarms as f64 / rows.len() as f64
    }

    /// The newest held-out windows of a fit's rows: neither fitted on nor used for the limits.
    pub fn check_of<'r>(&self, rows: &'r [Vec<f64>]) -> &'r [Vec<f64>] {
        &rows[rows.len().saturating_sub(self.check_windows)..]
    }
}

/// The live model of a device and, when a newer fit was not better, the candidate scored beside.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearnedNormal {
    pub live: NormalModel,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<NormalModel>,
}

/// What to publish after a new fit.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub published: LearnedNormal,
    /// Whether the new model became live.
    pub promoted: bool,
    /// False-alarm rates of the new and the live model on the new fit's held-out windows.
    pub new_rate: f64,
    pub live_rate: Option<f64>,
}

/// A new fit becomes live only if its false-alarm rate on the newest of its held-out windows (the
/// device's most recent normal windows, which set no limit) is no worse than the live model's on
/// the same windows; otherwise
/// it is kept as the candidate beside the unchanged live model. `force` promotes by hand.
pub fn decide(
    new: NormalModel,
    live: Option<&LearnedNormal>,
    rows: &[Vec<f64>],
    force: bool,
) -> Decision {
    let check = new.check_of(rows);
    let new_rate = new.false_alarm_rate(check);
    let Some(live) = live else {
        return Decision {
            published: LearnedNormal {
                live: new,
                candidate: None,
            },
            promoted: true,
            new_rate,
            live_rate: None,
        };
    };
    let live_rate = live.live.false_alarm_rate(check);
    let promoted = force || new_rate <= live_rate;
    let published = if promoted {
        LearnedNormal {
            live: new,
            candidate: None,
        }
    } else {
        LearnedNormal {
            live: live.live.clone(),
            candidate: Some(new),
        }
    };
    Decision {
        published,
        promoted,
        new_rate,
        live_rate: Some(live_rate),
    }
}

/// Promotes the candidate by hand; `None` when there is none.
pub fn promote_candidate(current: &LearnedNormal) -> Option<LearnedNormal> {
    current.candidate.clone().map(|live| LearnedNormal {
        live,
        candidate: None,
    })
}

/// The learned-normal scorer: judges a window against the device's live model (published by
/// `vigil train-normal` and adopted like a calibration) and reports the candidate's verdict
/// beside it. A device with no model yet is not judged: `normal`, model version `untrained`.
#[derive(Debug)]
pub struct LearnedNormalScorer {
    labels: Vec<String>,
}

/// Model version reported for a device that has no learned normal yet.
pub const UNTRAINED: &str = "untrained";

impl Default for LearnedNormalScorer {
    fn default() -> Self {
        Self {
            labels: ANOMALY_LABELS.iter().map(|s| s.to_string()).collect(),
        }
    }
}

impl LearnedNormalScorer {
    pub fn score_sync(&self, input: &Matrix, baseline: &Option<Baseline>) -> Score {
        let Some(models) = baseline.as_ref().and_then(|b| b.normal.as_ref()) else {
            return Score {
                label: ANOMALY_LABELS[0].into(),
                probabilities: Vec::new(),
                anomaly_score: None,
                source: SOURCE.into(),
                model_version: UNTRAINED.into(),
                contributions: Vec::new(),
                candidate: None,
            };
        };
        let (x, _) = window_features(input, &[]);
        let live = models.live.score(&x);
        let candidate = models.candidate.as_ref().map(|m| {
            let s = m.score(&x);
            CandidateScore {
                label: ANOMALY_LABELS[usize::from(s.is_anomalous())].into(),
                anomaly_score: s.score,
                model_version: m.version.clone(),
            }
        });
        Score {
            label: ANOMALY_LABELS[usize::from(live.is_anomalous())].into(),
            probabilities: Vec::new(),
            anomaly_score: Some(live.score),
            source: SOURCE.into(),
            model_version: models.live.version.clone(),
            contributions: live
                .contributions
                .into_iter()
                .map(|(channel, share)| Contribution { channel, share })
                .collect(),
            candidate,
        }
    }
}

const SOURCE: &str = "learned-normal";

#[async_trait]
impl Scorer for LearnedNormalScorer {
    fn labels(&self) -> &[String] {
        &self.labels
    }
    fn version(&self) -> String {
        "learned-normal-1".into()
    }
    async fn score(
        &self,
        input: &Matrix,
        baseline: &mut Option<Baseline>,
    ) -> Result<Score, ScoreError> {
        Ok(self.score_sync(input, baseline))
    }
}

fn check_rows(rows: &[Vec<f64>]) -> Result<(), NormalError> {
    let expected = rows.first().map_or(0, Vec::len);
    for (index, r) in rows.iter().enumerate() {
        if r.len() != expected {
            return Err(NormalError::Shape {
                index,
                got: r.len(),
                expected,
            });
        }
        if let Some(feature) = r.iter().position(|v| !v.is_finite()) {
            return Err(NormalError::NonFinite { index, feature });
        }
    }
    Ok(())
}

fn standardised(x: &[f64], center: &[f64], scale: &[f64]) -> Vec<f64> {
    x.iter()
        .zip(center.iter().zip(scale))
        .map(|(v, (c, s))| if *s > 0.0 { (v - c) / s } else { 0.0 })
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn residual(z: &[f64], components: &[Vec<f64>], t: &[f64]) -> Vec<f64> {
    let mut r = z.to_vec();
    for (p, t) in components.iter().zip(t) {
        for (rj, pj) in r.iter_mut().zip(p) {
            *rj -= t * pj;
        }
    }
    r
}

/// Linear interpolation between order statistics of sorted values.
fn quantile_sorted(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let pos = q * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let w = pos - lo as f64;
    v[lo] * (1.0 - w) + v[hi.min(v.len() - 1)] * w
}

/// Eigenvalues (descending) and unit eigenvectors (as rows) of a symmetric matrix, by cyclic
/// Jacobi rotations: exact to rounding, and plenty fast for the tens of features a window has.
#[allow(clippy::needless_range_loop)]
pub fn symmetric_eigen(mut a: Vec<Vec<f64>>) -> (Vec<f64>, Vec<Vec<f64>>) {
    let n = a.len();
    let mut v: Vec<Vec<f64>> = (0..n)
        .map(|i| (0..n).map(|j| f64::from(u8::from(i == j))).collect())
        .collect();
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i][j] * a[i][j])
            .sum();
        let diag: f64 = (0..n).map(|i| a[i][i] * a[i][i]).sum();
        if off <= 1e-22 * diag.max(1e-300) {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                if a[p][q].abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k][p], a[k][q]);
                    a[k][p] = c * akp - s * akq;
                    a[k][q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p][k], a[q][k]);
                    a[p][k] = c * apk - s * aqk;
                    a[q][k] = s * apk + c * aqk;
                }
                for row in &mut v {
                    let (vp, vq) = (row[p], row[q]);
                    row[p] = c * vp - s * vq;
                    row[q] = s * vp + c * vq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| a[j][j].total_cmp(&a[i][i]));
    let values = order.iter().map(|&i| a[i][i]).collect();
    let vectors = order
        .iter()
        .map(|&i| (0..n).map(|k| v[k][i]).collect())
        .collect();
    (values, vectors)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random stream (xorshift), for data with known structure.
    fn noise(seed: &mut u64) -> f64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        (*seed % 10_000) as f64 / 10_000.0 - 0.5
    }

    /// Three channels: b follows a, c is independent.
    fn normal_rows(n: usize, seed: &mut u64) -> Vec<Vec<f64>> {
        (0..n)
            .map(|_| {
                let a = 10.0 + noise(seed);
                vec![a, 2.0 * a + 0.05 * noise(seed), 5.0 + noise(seed)]
            })
            .collect()
    }

    fn names() -> Vec<String> {
        vec!["a".into(), "b".into(), "c".into()]
    }

    #[test]
    fn jacobi_recovers_eigen_pairs() {
        let (values, vectors) = symmetric_eigen(vec![
            vec![4.0, 1.0, 0.0],
            vec![1.0, 3.0, 0.0],
            vec![0.0, 0.0, 1.0],
        ]);
        let expected = [(7.0 + 5f64.sqrt()) / 2.0, (7.0 - 5f64.sqrt()) / 2.0, 1.0];
        for (v, e) in values.iter().zip(expected) {
            assert!((v - e).abs() < 1e-10, "{values:?}");
        }
        for v in &vectors {
            assert!((dot(v, v) - 1.0).abs() < 1e-10);
        }
    }

    #[test]
    fn held_out_normal_windows_do_not_alarm_and_broken_correlation_does() {
        let mut seed = 7;
        let rows = normal_rows(200, &mut seed);
        let model = fit(&rows, names(), &NormalConfig::default(), "v1").unwrap();
        assert_eq!((model.holdout_windows, model.check_windows), (50, 25));
        assert!(model.holdout_false_alarm_rate <= 0.04, "{model:?}");
        // Each value inside its normal range, but b no longer follows a: only SPE sees it.
        let broken = model.score(&[10.3, 19.4, 5.0]);
        assert!(broken.is_anomalous(), "{broken:?}");
        assert!(broken.spe / model.spe_limit > broken.t2 / model.t2_limit);
        let share: f64 = broken.contributions.iter().map(|c| c.1).sum();
        assert!((share - 1.0).abs() < 1e-9);
        let c = broken.contributions.iter().find(|c| c.0 == "c").unwrap().1;
        assert!(c < 0.2, "c is unaffected: {:?}", broken.contributions);
    }

    #[test]
    fn the_channel_that_moved_drives_the_contributions() {
        let mut seed = 11;
        let rows = normal_rows(200, &mut seed);
        let model = fit(&rows, names(), &NormalConfig::default(), "v1").unwrap();
        let s = model.score(&[10.0, 20.0, 9.0]);
        assert!(s.is_anomalous());
        let top = s
            .contributions
            .iter()
            .max_by(|x, y| x.1.total_cmp(&y.1))
            .unwrap();
        assert_eq!(top.0, "c");
        assert!(top.1 > 0.7, "{:?}", s.contributions);
    }

    #[test]
    fn scale_of_the_data_changes_no_decision() {
        let mut seed = 3;
        let rows = normal_rows(120, &mut seed);
        let scaled: Vec<Vec<f64>> = rows
            .iter()
            .map(|r| r.iter().map(|v| v * 1000.0 + 7.0).collect())
            .collect();
        let m1 = fit(&rows, names(), &NormalConfig::default(), "v").unwrap();
        let m2 = fit(&scaled, names(), &NormalConfig::default(), "v").unwrap();
        for probe in [[10.0, 20.0, 5.0], [10.3, 19.4, 5.0], [11.0, 22.0, 6.0]] {
            let p2: Vec<f64> = probe.iter().map(|v| v * 1000.0 + 7.0).collect();
            let (a, b) = (m1.score(&probe), m2.score(&p2));
            assert_eq!(a.is_anomalous(), b.is_anomalous());
            assert!((a.score - b.score).abs() < 1e-6 * a.score.max(1.0));
        }
    }

    #[test]
    fn bad_input_is_refused_or_scored_as_far_off() {
        let mut seed = 5;
        let rows = normal_rows(40, &mut seed);
        assert!(matches!(
            fit(&rows[..5], names(), &NormalConfig::default(), "v"),
            Err(NormalError::TooFewWindows { .. })
        ));
        let mut bad = rows.clone();
        bad[3][1] = f64::NAN;
        assert!(matches!(
            fit(&bad, names(), &NormalConfig::default(), "v"),
            Err(NormalError::NonFinite {
                index: 3,
                feature: 1
            })
        ));
        let constant = vec![vec![1.0, 2.0, 3.0]; 40];
        assert_eq!(
            fit(&constant, names(), &NormalConfig::default(), "v"),
            Err(NormalError::Constant)
        );
        let model = fit(&rows, names(), &NormalConfig::default(), "v").unwrap();
        assert!(model.score(&[1.0]).is_anomalous());
        assert!(model.score(&[f64::NAN, 1.0, 1.0]).is_anomalous());
    }

    #[test]
    fn a_worse_fit_stays_a_candidate_until_promoted_by_hand() {
        let mut seed = 9;
        let rows = normal_rows(200, &mut seed);
        let live = fit(&rows, names(), &NormalConfig::default(), "live").unwrap();
        let current = LearnedNormal {
            live: live.clone(),
            candidate: None,
        };
        // A fit whose limits are far too tight: it alarms on its own newest normal windows.
        let mut tight = fit(&rows, names(), &NormalConfig::default(), "tight").unwrap();
        tight.t2_limit *= 0.05;
        tight.spe_limit *= 0.05;
        let d = decide(tight.clone(), Some(&current), &rows, false);
        assert!(!d.promoted);
        assert_eq!(d.published.live.version, "live");
        assert_eq!(d.published.candidate.as_ref().unwrap().version, "tight");
        assert!(d.new_rate > d.live_rate.unwrap());
        let by_hand = promote_candidate(&d.published).unwrap();
        assert_eq!(by_hand.live.version, "tight");
        assert!(by_hand.candidate.is_none());
        // A fit on a quiet stretch (the machine idling) whose newest windows are the usual
        // broad normal: it alarms on them, the live model does not — it stays a candidate.
        let mut quiet: Vec<Vec<f64>> = (0..175)
            .map(|_| {
                let a = 10.0 + 0.05 * noise(&mut seed);
                vec![
                    a,
                    2.0 * a + 0.005 * noise(&mut seed),
                    5.0 + 0.05 * noise(&mut seed),
                ]
            })
            .collect();
        quiet.extend(normal_rows(25, &mut seed));
        let narrow = fit(&quiet, names(), &NormalConfig::default(), "narrow").unwrap();
        let d = decide(narrow, Some(&current), &quiet, false);
        assert!(!d.promoted, "{d:?}");
        assert!(d.new_rate > 0.5 && d.live_rate.unwrap() < 0.1, "{d:?}");
        // A fit no worse than the live one goes live.
        let again = fit(&rows, names(), &NormalConfig::default(), "again").unwrap();
        let d = decide(again, Some(&current), &rows, false);
        assert!(d.promoted);
        assert_eq!(d.published.live.version, "again");
        // The first fit of a device goes live.
        assert!(decide(live, None, &rows, false).promoted);
    }
}
