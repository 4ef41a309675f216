//! Calibration: a device's baseline fitted from its own normal data, for the streaming scorers.
//!
//! `vigil calibrate` gathers samples (a telemetry file) or closed windows (the S3 archive),
//! assembles them into windows exactly as the pipeline does ([`crate::window::assemble`]), runs
//! the profile's transform chain and the scorer's own reduction
//! ([`crate::scorer::window_features`]), and fits a [`Baseline`] stamped with a version
//! `calib-<UTC yyyymmddThhmmssZ>-<8 hex of a content hash>`.
//!
//! A calibrated baseline is *frozen* by default: the scorer judges against it and learns nothing
//! online, so the notion of normal stays put until the next calibration (and a slow fault is not
//! absorbed). `keep_learning` publishes it unfrozen instead: the scorer starts from it and goes on
//! adapting. The pipeline adopts a published baseline when its version differs from the one in
//! the device state, so either way a new calibration replaces the device's baseline once.

use crate::ports::{ClosedWindow, ResultStatus};
use crate::profile::{Profile, ScorerSpec};
use crate::scorer::{window_features, Baseline};
use crate::telemetry::Sample;
use crate::transform::{Chain, Matrix};
use crate::window::{assemble, dedup_by_seq, Assembly, WindowId};

/// Prefix of every calibrated baseline's version.
pub const VERSION_PREFIX: &str = "calib-";

/// Fewest windows any calibration accepts, whatever the scorer's warm-up.
pub const MIN_WINDOWS_FLOOR: u64 = 2;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CalibrationError {
    #[error(
        "profile {profile:?} scores with {scorer}, which has no per-device baseline to calibrate \
         (only the zscore and ewma scorers have one)"
    )]
    NoBaseline {
        profile: String,
        scorer: &'static str,
    },
    #[error(
        "profile {profile:?}: {got} usable windows, at least {min} needed (the scorer's warm-up; \
         {skipped} windows skipped: {why})"
    )]
    TooFewWindows {
        profile: String,
        got: usize,
        min: u64,
        skipped: usize,
        why: String,
    },
    #[error("window {window}: sample {seq}, channel {channel:?}: {value} is not a finite number")]
    NonFinite {
        window: WindowId,
        seq: u64,
        channel: String,
        value: f32,
    },
    #[error("window {window}: the transforms produced a non-finite feature {feature} ({value})")]
    NonFiniteFeature {
        window: WindowId,
        feature: usize,
        value: f64,
    },
    #[error("window {window}: {features} features where the others have {expected}")]
    Shape {
        window: WindowId,
        features: usize,
        expected: usize,
    },
}

/// Name of a scorer kind, for messages.
pub fn scorer_kind(spec: &ScorerSpec) -> &'static str {
    match spec {
        ScorerSpec::Onnx { .. } => "an ONNX model",
        ScorerSpec::Sagemaker { .. } => "a SageMaker endpoint",
        ScorerSpec::Zscore(_) => "zscore",
        ScorerSpec::Ewma(_) => "ewma",
    }
}

/// Whether a profile's scorer judges against a per-device baseline that can be calibrated.
pub fn has_baseline(spec: &ScorerSpec) -> bool {
    matches!(spec, ScorerSpec::Zscore(_) | ScorerSpec::Ewma(_))
}

/// Fewest windows a calibration of this profile needs: the scorer's warm-up (the windows its
/// online learner needs before it gives a verdict), and never fewer than [`MIN_WINDOWS_FLOOR`].
pub fn min_windows(profile: &Profile) -> Result<u64, CalibrationError> {
    let warmup = match &profile.scorer {
        ScorerSpec::Zscore(c) => c.warmup,
        ScorerSpec::Ewma(c) => c.warmup,
        other => {
            return Err(CalibrationError::NoBaseline {
                profile: profile.name.clone(),
                scorer: scorer_kind(other),
            })
        }
    };
    Ok(warmup.max(MIN_WINDOWS_FLOOR))
}

/// Samples turned into windows as the pipeline turns them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WindowSet {
    /// Windows ready to score (complete, or gap-filled past their close deadline), in order.
    pub ready: Vec<(WindowId, Matrix)>,
    /// Closed with too few samples: the pipeline would not score them either.
    pub incomplete: Vec<WindowId>,
    /// Not complete and not past their close deadline at the end of the data (the pipeline would
    /// still wait for them).
    pub pending: Vec<WindowId>,
    /// Samples filled by interpolation in the ready windows.
    pub filled: u64,
}

impl WindowSet {
    /// Why windows were left out, for messages.
    pub fn skipped_summary(&self) -> String {
        format!(
            "{} incomplete, {} still open at the end of the data",
            self.incomplete.len(),
            self.pending.len()
        )
    }

    /// Keeps only the newest `n` ready windows.
    pub fn keep_last(&mut self, n: usize) {
        let extra = self.ready.len().saturating_sub(n);
        self.ready.drain(..extra);
    }
}

/// Splits samples (any order, duplicates allowed) into the profile's windows and assembles each
/// one with [`assemble`], the device's highest seq deciding which incomplete windows are closed.
pub fn windows_from_samples(profile: &Profile, samples: &[Sample]) -> WindowSet {
    let spec = &profile.window;
    let mut all = samples.to_vec();
    dedup_by_seq(&mut all);
    let high_water = all.last().map_or(0, |s| s.seq);
    let mut set = WindowSet::default();
    for (window, samples) in spec.split(&all) {
        match assemble(spec, window, &samples, profile.channels.len(), high_water) {
            Assembly::Ready { matrix, filled } => {
                set.filled += u64::from(filled);
                set.ready.push((window, matrix));
            }
            Assembly::Incomplete { .. } => set.incomplete.push(window),
            Assembly::Pending { .. } => set.pending.push(window),
        }
    }
    set
}

/// Why an archived window is not used for a calibration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Closed incomplete (not scored).
    Incomplete,
    /// The pipeline judged it unhealthy (its label is one of the profile's unhealthy labels).
    Flagged(String),
    /// Archived under another channel list (the profile changed since).
    Channels,
}

/// An archived closed window, assembled as the pipeline assembled it when it closed. Windows the
/// pipeline judged unhealthy are skipped unless `include_flagged`.
pub fn archived_window(
    profile: &Profile,
    closed: &ClosedWindow,
    include_flagged: bool,
) -> Result<(WindowId, Matrix), Skip> {
    if closed.channels != profile.channels {
        return Err(Skip::Channels);
    }
    if closed.result.status != ResultStatus::Scored {
        return Err(Skip::Incomplete);
    }
    if !include_flagged && profile.alert.is_unhealthy(&closed.result.label) {
        return Err(Skip::Flagged(closed.result.label.clone()));
    }
    let window = closed.result.window;
    let mut samples = closed.samples.clone();
    dedup_by_seq(&mut samples);
    // The window was closed: assemble it as at its close (past any deadline).
    match assemble(
        &profile.window,
        window,
        &samples,
        profile.channels.len(),
        u64::MAX,
    ) {
        Assembly::Ready { matrix, .. } => Ok((window, matrix)),
        Assembly::Incomplete { .. } | Assembly::Pending { .. } => Err(Skip::Incomplete),
    }
}

/// A fitted baseline and what it was fitted from.
#[derive(Clone, Debug, PartialEq)]
pub struct Fitted {
    pub baseline: Baseline,
    pub windows: usize,
    pub first_window: WindowId,
    pub last_window: WindowId,
}

/// How a calibration is stamped and published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FitOptions {
    /// Time of the calibration (epoch ms, UTC), written into the version.
    pub fitted_at_ms: u64,
    /// Publish the baseline unfrozen: the scorer keeps adapting from it online.
    pub keep_learning: bool,
}

/// Fits the baseline of a profile's scorer from ready windows (as [`windows_from_samples`] or
/// [`archived_window`] return them): each goes through the profile's transform chain and the
/// scorer's own reduction, then the statistics are fitted in the scorer's convention.
///
/// `skipped`: how many windows were left out before, and why (for the too-few-windows message).
pub fn fit(
    profile: &Profile,
    chain: &Chain,
    windows: &[(WindowId, Matrix)],
    skipped: (usize, &str),
    options: FitOptions,
) -> Result<Fitted, CalibrationError> {
    let min = min_windows(profile)?;
    if (windows.len() as u64) < min {
        return Err(CalibrationError::TooFewWindows {
            profile: profile.name.clone(),
            got: windows.len(),
            min,
            skipped: skipped.0,
            why: skipped.1.to_string(),
        });
    }
    let mut rows: Vec<Vec<f64>> = Vec::with_capacity(windows.len());
    for (window, matrix) in windows {
        if let Some(i) = matrix.data.iter().position(|v| !v.is_finite()) {
            let (row, col) = (i / matrix.cols.max(1), i % matrix.cols.max(1));
            return Err(CalibrationError::NonFinite {
                window: *window,
                seq: profile.window.start(*window) + row as u64,
                channel: profile.channels.get(col).cloned().unwrap_or_default(),
                value: matrix.data[i],
            });
        }
        let features = window_features(&chain.apply(matrix.clone()));
        if let Some((j, v)) = features.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(CalibrationError::NonFiniteFeature {
                window: *window,
                feature: j,
                value: *v,
            });
        }
        if let Some(first) = rows.first() {
            if first.len() != features.len() {
                return Err(CalibrationError::Shape {
                    window: *window,
                    features: features.len(),
                    expected: first.len(),
                });
            }
        }
        rows.push(features);
    }
    let mut baseline = Baseline::fit(&rows, String::new()).expect("rows checked: same width");
    if let ScorerSpec::Ewma(_) = profile.scorer {
        // The EWMA scorer keeps a variance in `spread` (not Welford's sum of squares); during its
        // warm-up it learns the population variance, which is what this gives.
        let n = baseline.count as f64;
        for s in &mut baseline.spread {
            *s /= n;
        }
    }
    baseline.frozen = !options.keep_learning;
    baseline.version = version(options.fitted_at_ms, &profile.name, &baseline);
    Ok(Fitted {
        baseline,
        windows: windows.len(),
        first_window: windows.first().map_or(0, |w| w.0),
        last_window: windows.last().map_or(0, |w| w.0),
    })
}

/// `calib-<yyyymmddThhmmssZ>-<8 hex>`: the UTC time of the fit, then a hash of the profile name
/// and the fitted numbers (so two calibrations on different data never share a version, and the
/// same data fitted twice in one second gives the same one).
pub fn version(fitted_at_ms: u64, profile: &str, baseline: &Baseline) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(profile.as_bytes());
    eat(&[0xff, u8::from(baseline.frozen)]);
    eat(&baseline.count.to_le_bytes());
    for v in baseline.mean.iter().chain(&baseline.spread) {
        eat(&v.to_bits().to_le_bytes());
    }
    let short = ((hash >> 32) ^ hash) as u32;
    format!("{VERSION_PREFIX}{}-{short:08x}", utc_compact(fitted_at_ms))
}

/// Whether a baseline was published by a calibration (rather than learned online).
pub fn is_calibrated(baseline: &Baseline) -> bool {
    baseline.version.starts_with(VERSION_PREFIX)
}

/// `yyyymmddThhmmssZ` of epoch milliseconds (H. Hinnant's `civil_from_days`).
fn utc_compact(epoch_ms: u64) -> String {
    let secs = epoch_ms / 1000;
    let days = (secs / 86_400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let s = secs % 86_400;
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::WindowResult;
    use crate::scorer::{EwmaConfig, EwmaScorer, ZScoreConfig, ZScoreScorer};
    use crate::telemetry::DeviceId;

    fn profile(scorer: &str) -> Profile {
        Profile::from_toml(
            &format!(
                r#"
name = "cal"
channels = ["a", "b"]
sample_rate_hz = 1.0
[window]
size = 4
hop = 4
min_completeness = 0.5
[scorer]
{scorer}
[alert]
unhealthy = ["anomaly"]
"#
            ),
            "cal.toml",
        )
        .unwrap()
    }

    fn zscore() -> Profile {
        profile("kind = \"zscore\"\nthreshold = 3.0\nwarmup = 3")
    }

    fn chain(p: &Profile) -> Chain {
        Chain::new(&p.transforms, (p.window.size as usize, p.channels.len())).unwrap()
    }

    /// Window `k` holds 4 rows of (a, b) whose column means are `(means[k].0, means[k].1)`.
    fn samples(means: &[(f32, f32)]) -> Vec<Sample> {
        let mut out = Vec::new();
        for (k, &(a, b)) in means.iter().enumerate() {
            for (i, d) in [-1.0f32, 1.0, -0.5, 0.5].into_iter().enumerate() {
                let seq = (k * 4 + i) as u64;
                out.push(Sample {
                    seq,
                    ts: seq * 1000,
                    values: vec![a + d, b - d],
                });
            }
        }
        out
    }

    const OPTS: FitOptions = FitOptions {
        fitted_at_ms: 1_700_000_000_123,
        keep_learning: false,
    };

    #[test]
    fn fits_known_means_and_deviations_frozen_and_stamped() {
        let p = zscore();
        let means = [
            (1.0, 10.0),
            (2.0, 10.0),
            (3.0, 13.0),
            (4.0, 7.0),
            (5.0, 10.0),
        ];
        let mut shuffled = samples(&means);
        shuffled.reverse();
        shuffled.extend(samples(&means[..2])); // duplicates change nothing
        let set = windows_from_samples(&p, &shuffled);
        assert_eq!(set.ready.len(), 5);
        let f = fit(&p, &chain(&p), &set.ready, (0, ""), OPTS).unwrap();
        let b = &f.baseline;
        assert_eq!((f.windows, f.first_window, f.last_window), (5, 0, 4));
        assert_eq!(b.count, 5);
        assert!((b.mean[0] - 3.0).abs() < 1e-9 && (b.mean[1] - 10.0).abs() < 1e-9);
        // Sample standard deviations: a = sqrt(2.5); b = sqrt(18 / 4).
        assert!((b.std(0) - 2.5f64.sqrt()).abs() < 1e-9, "{}", b.std(0));
        assert!((b.std(1) - 4.5f64.sqrt()).abs() < 1e-9, "{}", b.std(1));
        assert!(b.frozen && is_calibrated(b));
        assert!(
            b.version.starts_with("calib-20231114T221320Z-"),
            "{}",
            b.version
        );
        let hex = b.version.rsplit('-').next().unwrap();
        assert_eq!(hex.len(), 8);
        assert!(hex.chars().all(|c| c.is_ascii_hexdigit()));

        // The scorer judges against it without learning: z of a window at a = 3 + 4 std.
        let scorer = ZScoreScorer::new(ZScoreConfig {
            threshold: 3.0,
            warmup: 3,
            learn_anomalies: false,
        });
        let mut state = Some(b.clone());
        let x = 3.0 + 4.0 * 2.5f64.sqrt();
        let m = Matrix::new(1, 2, vec![x as f32, 10.0]);
        let s = scorer.score_sync(&m, &mut state);
        assert_eq!(s.label, "anomaly");
        assert_eq!(s.model_version, b.version);
        assert!((s.anomaly_score.unwrap() - 4.0).abs() < 1e-5);
        let s = scorer.score_sync(&Matrix::new(1, 2, vec![3.5, 10.5]), &mut state);
        assert_eq!(s.label, "normal");
        assert_eq!(state.as_ref(), Some(b), "a frozen baseline does not learn");

        let learning = fit(
            &p,
            &chain(&p),
            &set.ready,
            (0, ""),
            FitOptions {
                keep_learning: true,
                ..OPTS
            },
        )
        .unwrap();
        assert!(!learning.baseline.frozen);
        assert_ne!(learning.baseline.version, b.version);
    }

    #[test]
    fn ewma_fit_equals_what_the_ewma_learns_in_its_warmup() {
        let p = profile("kind = \"ewma\"\nwarmup = 8\nthreshold = 3.0\nmin_relative_std = 0.0");
        let means: Vec<(f32, f32)> = (0..8)
            .map(|k| (5.0 + (k % 3) as f32, 1.0 - k as f32 * 0.25))
            .collect();
        let set = windows_from_samples(&p, &samples(&means));
        let fitted = fit(&p, &chain(&p), &set.ready, (0, ""), OPTS).unwrap();
        // Let the EWMA learn the same windows online (all within its warm-up).
        let scorer = EwmaScorer::new(EwmaConfig {
            half_life: 50.0,
            threshold: 1e9,
            warmup: 20,
            min_relative_std: 0.0,
        });
        let mut learned = None;
        for (_, m) in &set.ready {
            scorer.score_sync(m, &mut learned);
        }
        let learned = learned.unwrap();
        assert_eq!(learned.count, fitted.baseline.count);
        for j in 0..2 {
            assert!((learned.mean[j] - fitted.baseline.mean[j]).abs() < 1e-9);
            assert!((learned.spread[j] - fitted.baseline.spread[j]).abs() < 1e-9);
        }
    }

    #[test]
    fn versions_are_utc_and_follow_the_content() {
        let b = Baseline::fit(&[vec![1.0], vec![2.0]], "").unwrap();
        assert!(version(0, "p", &b).starts_with("calib-19700101T000000Z-"));
        assert!(version(951_827_696_000, "p", &b).starts_with("calib-20000229T123456Z-"));
        assert_eq!(version(5, "p", &b), version(5, "p", &b));
        let mut other = b.clone();
        other.mean[0] += 1e-12;
        assert_ne!(version(5, "p", &b), version(5, "p", &other));
        assert_ne!(version(5, "p", &b), version(5, "q", &b));
    }

    #[test]
    fn rejects_models_without_a_baseline_too_few_windows_and_non_finite_data() {
        let onnx =
            profile("kind = \"onnx\"\nmodel = \"m.onnx\"\nlabels = [\"normal\", \"anomaly\"]");
        let set = windows_from_samples(&onnx, &samples(&[(1.0, 1.0); 4]));
        let e = fit(&onnx, &chain(&onnx), &set.ready, (0, ""), OPTS).unwrap_err();
        assert!(matches!(e, CalibrationError::NoBaseline { .. }), "{e}");
        assert!(e.to_string().contains("ONNX"), "{e}");

        let p = zscore();
        let set = windows_from_samples(&p, &samples(&[(1.0, 1.0), (2.0, 2.0)]));
        let e = fit(&p, &chain(&p), &set.ready, (3, "3 incomplete"), OPTS).unwrap_err();
        assert_eq!(
            e,
            CalibrationError::TooFewWindows {
                profile: "cal".into(),
                got: 2,
                min: 3,
                skipped: 3,
                why: "3 incomplete".into()
            }
        );

        let mut bad = samples(&[(1.0, 1.0), (2.0, 2.0), (3.0, 3.0)]);
        bad[6].values[1] = f32::NAN;
        let set = windows_from_samples(&p, &bad);
        let e = fit(&p, &chain(&p), &set.ready, (0, ""), OPTS).unwrap_err();
        assert!(
            matches!(&e, CalibrationError::NonFinite { window: 1, seq: 6, channel, .. } if channel == "b"),
            "{e}"
        );
        let mut inf = samples(&[(1.0, 1.0), (2.0, 2.0), (3.0, 3.0)]);
        inf[0].values[0] = f32::INFINITY;
        let set = windows_from_samples(&p, &inf);
        assert!(matches!(
            fit(&p, &chain(&p), &set.ready, (0, ""), OPTS),
            Err(CalibrationError::NonFinite { window: 0, .. })
        ));
    }

    #[test]
    fn windows_are_assembled_as_the_pipeline_does() {
        let p = zscore();
        let mut s = samples(&[(1.0, 1.0), (2.0, 2.0), (3.0, 3.0), (4.0, 4.0)]);
        // Window 1 loses two of four samples (50 %: gap-filled, min_completeness 0.5); window 2
        // keeps one (incomplete); window 3 is complete but window 4 only starts (pending).
        s.retain(|x| ![5, 6, 8, 9, 10].contains(&x.seq));
        s.push(Sample {
            seq: 16,
            ts: 16_000,
            values: vec![0.0, 0.0],
        });
        let mut set = windows_from_samples(&p, &s);
        let ready: Vec<u64> = set.ready.iter().map(|w| w.0).collect();
        assert_eq!(ready, vec![0, 1, 3]);
        assert_eq!(set.incomplete, vec![2]);
        assert_eq!(set.pending, vec![4]);
        assert_eq!(set.filled, 2);
        set.keep_last(2);
        assert_eq!(
            set.ready.iter().map(|w| w.0).collect::<Vec<_>>(),
            vec![1, 3]
        );

        // Archived windows: scored ones are used, flagged or incomplete ones are not.
        let closed = |window: u64, label: &str, status: ResultStatus| ClosedWindow {
            result: WindowResult {
                device: DeviceId::new("d-1").unwrap(),
                profile: "cal".into(),
                window,
                seq_start: window * 4,
                seq_end: window * 4 + 4,
                ts_start: 0,
                ts_end: 0,
                status,
                label: label.into(),
                labels: vec![],
                probabilities: vec![],
                anomaly_score: None,
                completeness: 1.0,
                filled: 0,
                source: "zscore".into(),
                model_version: "learned".into(),
                scored_at_ms: 0,
                alert: None,
                contributions: vec![],
            },
            channels: p.channels.clone(),
            samples: s.iter().filter(|x| x.seq / 4 == window).cloned().collect(),
        };
        let (w, m) =
            archived_window(&p, &closed(1, "normal", ResultStatus::Scored), false).unwrap();
        assert_eq!((w, m), set.ready[0].clone());
        assert_eq!(
            archived_window(&p, &closed(0, "anomaly", ResultStatus::Scored), false),
            Err(Skip::Flagged("anomaly".into()))
        );
        assert!(archived_window(&p, &closed(0, "anomaly", ResultStatus::Scored), true).is_ok());
        assert_eq!(
            archived_window(&p, &closed(2, "incomplete", ResultStatus::Incomplete), true),
            Err(Skip::Incomplete)
        );
        let mut other = closed(0, "normal", ResultStatus::Scored);
        other.channels.reverse();
        assert_eq!(archived_window(&p, &other, false), Err(Skip::Channels));
    }
}
