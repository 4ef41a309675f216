//! `vigil eval nab`: streaming anomaly detection on the NAB corpus, leave one series out.
//!
//! Protocol (issue 13). The `robust` detector's parameters are never chosen on the series they
//! are judged on: for each series in turn, every candidate of [`candidates`] is scored on the
//! other series, the rule of [`choose`] picks one, and that one is judged on the held-out series.
//! The held-out figures of every series are the folds; the worst fold is reported first.
//! The whole protocol is repeated at other false-episode limits of the rule ([`TRADEOFF_LIMITS`]):
//! the trade-off between windows and false episodes, every point held out; and the family's
//! ceiling (per series, the most windows any candidate finds) bounds what retuning could reach.
//! The shipped profiles (`nab-robust`, and the older `nab-ewma`, `nab-zscore` for comparison)
//! then stream every series through the full pipeline.
//!
//! The search replays each series straight through the scorer and the alert policy — the same
//! core code the pipeline runs per window, in device time — because hundreds of candidates through
//! the pipeline would take minutes; the test checks that both paths raise the same alerts.
//!
//! Figures per series: a labelled window is detected when an alert is raised (or changes
//! condition) inside it; every alert raised outside all windows is a false episode; the NAB
//! standard-profile score counts each raised alert as a detection at the window's last sample.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use serde_json::json;
use vigil_core::alert::{self, AlertPolicy, AlertState, Transition};
use vigil_core::memory::MemoryPorts;
use vigil_core::ports::AlertEvent;
use vigil_core::streaming::{RobustConfig, RobustScorer};
use vigil_core::telemetry::encode_batch;
use vigil_core::transform::Matrix;
use vigil_core::{CompiledProfile, Message, Pipeline, PipelineConfig, Sample, ScorerSpec};

use vigil_datasets::models;
use vigil_datasets::{read_nab, NabSeries};

use crate::folds::Folds;
use crate::nab_score::{self, NabScore};
use crate::options::EvalArgs;
use crate::tasks::{all_accepted, device_of};

/// The shipped detector, whose family is searched, and the older ones reported beside it.
pub const PRIMARY: &str = "nab-robust";
pub const REFERENCES: [&str; 2] = ["nab-ewma", "nab-zscore"];

/// The selection rule's limit on false alert episodes per series (the bar).
pub const MAX_FALSE_EPISODES_PER_SERIES: f64 = 2.0;

/// Limits on false episodes per series at which the whole protocol is repeated: the trade-off
/// between windows detected and false episodes, each point held out like the main result.
pub const TRADEOFF_LIMITS: [f64; 6] = [0.5, 1.0, 1.5, 2.0, 3.0, 4.0];

/// Public NAB standard-profile scores on the full corpus (58 series), printed beside ours.
pub const ANCHORS: [(&str, f64); 3] = [
    ("ARTime", 74.9),
    ("Numenta HTM", 70.5),
    ("windowed Gaussian", 39.6),
];

/// Samples per message: one hour of 5-minute samples, as a logger would batch them.
const SAMPLES_PER_MESSAGE: usize = 12;

/// One series' figures.
#[derive(Debug, Default, Clone, Copy, PartialEq, serde::Serialize)]
pub struct NabFigures {
    pub windows: u64,
    pub windows_detected: u64,
    pub false_episodes: u64,
    #[serde(skip)]
    pub nab: NabScore,
}

impl NabFigures {
    pub fn add(&mut self, o: NabFigures) {
        self.windows += o.windows;
        self.windows_detected += o.windows_detected;
        self.false_episodes += o.false_episodes;
        self.nab.add(o.nab);
    }

    pub fn total<'a>(all: impl IntoIterator<Item = &'a NabFigures>) -> NabFigures {
        let mut t = NabFigures::default();
        for f in all {
            t.add(*f);
        }
        t
    }

    /// The figures with the normalised NAB score, for printing and the JSON line.
    pub fn json(&self, series: usize) -> serde_json::Value {
        json!({
            "windows": self.windows,
            "windows_detected": self.windows_detected,
            "false_episodes": self.false_episodes,
            "false_episodes_per_series": self.false_episodes as f64 / series.max(1) as f64,
            "nab_score": self.nab.normalised(),
        })
    }

    fn line(&self, series: usize) -> String {
        format!(
            "{}/{} windows, {} false episodes ({:.2}/series), NAB {}",
            self.windows_detected,
            self.windows,
            self.false_episodes,
            self.false_episodes as f64 / series.max(1) as f64,
            self.nab
                .normalised()
                .map_or("n/a".into(), |s| format!("{s:.1}"))
        )
    }
}

/// One point of the search: the detector's parameters and the alert policy's.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub scorer: RobustConfig,
    pub alert: AlertPolicy,
}

impl Candidate {
    pub fn label(&self) -> String {
        let s = &self.scorer;
        format!(
            "threshold={} record_margin={} early_margin={} record_half_life={} record_block={} settle={} cooldown_s={}",
            s.threshold,
            s.record_margin,
            s.early_margin,
            s.record_half_life,
            s.record_block,
            s.settle,
            self.alert.cooldown_s
        )
    }
}

/// The search grid around the shipped profile: threshold, record margin and its early raise,
/// record half-life and block, settle time, alert cooldown. Everything else is the shipped
/// profile's.
pub fn candidates(base: &RobustConfig, alert: &AlertPolicy) -> Vec<Candidate> {
    let mut out = Vec::new();
    for threshold in [2.5, 3.0, 4.0, 5.0] {
        for record_margin in [1.2, 1.5, 2.0] {
            for early_margin in [0.0, 1.0] {
                for record_half_life in [336.0, 1008.0, 4032.0] {
                    for record_block in [24, 48] {
                        for settle in [24, 72] {
                            for cooldown_s in [0, 86_400] {
                                out.push(Candidate {
                                    scorer: RobustConfig {
                                        threshold,
                                        record_margin,
                                        early_margin,
                                        record_half_life,
                                        record_block,
                                        settle,
                                        ..base.clone()
                                    },
                                    alert: AlertPolicy {
                                        cooldown_s,
                                        ..alert.clone()
                                    },
                                });
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// The rule that picks a candidate from its figures on the training series: the most windows
/// detected among those with at most `limit` false episodes per series (the bar:
/// [`MAX_FALSE_EPISODES_PER_SERIES`]), ties by NAB score; when none is that quiet, the fewest
/// false episodes.
pub fn choose(per_candidate: &[NabFigures], series: usize, limit: f64) -> usize {
    let key = |f: &NabFigures| {
        let quiet = f.false_episodes as f64 <= limit * series as f64;
        let primary = if quiet {
            f.windows_detected as f64
        } else {
            -(f.false_episodes as f64)
        };
        (
            quiet,
            primary,
            f.nab.normalised().unwrap_or(f64::NEG_INFINITY),
        )
    };
    (0..per_candidate.len())
        .max_by(|&a, &b| {
            let (ka, kb) = (key(&per_candidate[a]), key(&per_candidate[b]));
            ka.0.cmp(&kb.0)
                .then(ka.1.total_cmp(&kb.1))
                .then(ka.2.total_cmp(&kb.2))
                // The first of equals: the grid's order, not chance.
                .then(b.cmp(&a))
        })
        .unwrap_or(0)
}

/// Leave one series out: for each series `i` of `figures[candidate][series]`, the candidate the
/// rule at `limit` chooses on all the other series.
pub fn leave_one_out(figures: &[Vec<NabFigures>], limit: f64) -> Vec<usize> {
    let n = figures.first().map_or(0, Vec::len);
    (0..n)
        .map(|i| {
            let training: Vec<NabFigures> = figures
                .iter()
                .map(|per| {
                    NabFigures::total(
                        per.iter()
                            .enumerate()
                            .filter(|&(j, _)| j != i)
                            .map(|(_, f)| f),
                    )
                })
                .collect();
            choose(&training, n - 1, limit)
        })
        .collect()
}

/// The held-out figures of a leave-one-out choice, summed over the series.
fn held_out_total(figures: &[Vec<NabFigures>], chosen: &[usize]) -> NabFigures {
    NabFigures::total(chosen.iter().enumerate().map(|(i, &c)| &figures[c][i]))
}

pub async fn eval(args: &EvalArgs) -> anyhow::Result<serde_json::Value> {
    let profiles = super::load_profiles(&models::models_dir(args.models.as_deref()))?;
    let series = read_nab(&args.data)?;
    let primary = profiles
        .get(PRIMARY)
        .with_context(|| format!("no profile {PRIMARY:?} in the models directory"))?;
    let ScorerSpec::Robust(base) = &primary.profile.scorer else {
        bail!("profile {PRIMARY} must use the robust scorer");
    };
    let size = primary.profile.window.size as usize;
    let grid = candidates(base, &primary.profile.alert);

    // figures[c][s]: candidate c on series s.
    let figures: Vec<Vec<NabFigures>> = grid
        .iter()
        .map(|c| series.iter().map(|s| replay(c, size, s)).collect())
        .collect();

    let n = series.len();
    let mut folds = Folds::new("nab_score");
    let mut held_out = Vec::with_capacity(n);
    let chosen = leave_one_out(&figures, MAX_FALSE_EPISODES_PER_SERIES);
    for (i, s) in series.iter().enumerate() {
        let c = chosen[i];
        let f = figures[c][i];
        let mut j = f.json(1);
        j["chosen"] = json!(grid[c].label());
        j["missed_windows"] = json!(missed_windows(&grid[c], size, s));
        // A series without windows cannot rank by NAB score; its false episodes still count.
        folds.push(s.file.clone(), j, f.nab.normalised());
        held_out.push(f);
    }
    let loso = NabFigures::total(&held_out);
    folds.print(&format!(
        "nab leave-one-series-out ({PRIMARY} family, {} candidates)",
        grid.len()
    ));
    println!("nab leave-one-series-out: {}", loso.line(n));
    let anchors: Vec<String> = ANCHORS.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!(
        "  beside the public NAB scores (full corpus, standard profile): {}",
        anchors.join(", ")
    );

    // The trade-off: the same protocol with the rule's false-episode limit moved.
    let mut tradeoff = Vec::with_capacity(TRADEOFF_LIMITS.len());
    for limit in TRADEOFF_LIMITS {
        let t = held_out_total(&figures, &leave_one_out(&figures, limit));
        println!(
            "nab trade-off, held out, rule limit {limit} false episodes/series: {}",
            t.line(n)
        );
        let mut j = t.json(n);
        j["limit"] = json!(limit);
        tradeoff.push(j);
    }
    // What the family can find at all: per series, the most windows any candidate detects (in
    // sample, an upper bound of the search, not a result).
    let ceiling: u64 = (0..n)
        .map(|i| {
            figures
                .iter()
                .map(|per| per[i].windows_detected)
                .max()
                .unwrap_or(0)
        })
        .sum();
    println!(
        "nab ceiling of the family: {ceiling}/{} windows detected by some candidate (in sample)",
        loso.windows
    );

    let all: Vec<NabFigures> = figures.iter().map(NabFigures::total).collect();
    let chosen_on_all = choose(&all, n, MAX_FALSE_EPISODES_PER_SERIES);
    let shipped_is_chosen =
        grid[chosen_on_all].scorer == *base && grid[chosen_on_all].alert == primary.profile.alert;
    println!(
        "chosen on all {n} series: {} ({}); the shipped {PRIMARY} is {}",
        grid[chosen_on_all].label(),
        all[chosen_on_all].line(n),
        if shipped_is_chosen {
            "that choice"
        } else {
            "NOT that choice"
        }
    );

    // The shipped profiles through the full pipeline; the primary must raise exactly what the
    // search's replay of its parameters raised.
    let shipped_replay: Vec<NabFigures> = {
        let c = Candidate {
            scorer: base.clone(),
            alert: primary.profile.alert.clone(),
        };
        series.iter().map(|s| replay(&c, size, s)).collect()
    };
    let mut pipeline_matches_replay = true;
    let mut shipped = serde_json::Map::new();
    for profile in std::iter::once(PRIMARY).chain(REFERENCES) {
        let mut per = Vec::with_capacity(n);
        for (i, s) in series.iter().enumerate() {
            let alerts = stream_series(&profiles, profile, s).await?;
            let f = score_alerts(&profiles[profile], s, &alerts);
            println!("  {} [{profile}]: {}", s.file, f.line(1));
            if profile == PRIMARY && f != shipped_replay[i] {
                println!("    differs from the replay: {}", shipped_replay[i].line(1));
                pipeline_matches_replay = false;
            }
            per.push(f);
        }
        let t = NabFigures::total(&per);
        println!("nab [{profile}] through the pipeline: {}", t.line(n));
        shipped.insert(profile.to_string(), t.json(n));
    }

    let mut summary = loso.json(n);
    summary["detector"] = json!(PRIMARY);
    summary["protocol"] = json!("leave-one-series-out");
    summary["series"] = json!(n);
    summary["candidates"] = json!(grid.len());
    summary["chosen_on_all"] = json!(grid[chosen_on_all].label());
    summary["shipped_is_chosen"] = json!(shipped_is_chosen);
    summary["pipeline_matches_replay"] = json!(pipeline_matches_replay);
    summary["tradeoff"] = json!(tradeoff);
    summary["ceiling_windows"] = json!(ceiling);
    summary["anchors"] = json!(ANCHORS
        .iter()
        .map(|&(k, v)| (k.to_string(), json!(v)))
        .collect::<serde_json::Map<_, _>>());
    summary["shipped"] = serde_json::Value::Object(shipped);
    folds.attach(&mut summary);
    Ok(summary)
}

/// One series straight through a candidate's scorer and alert policy: tumbling windows of
/// `size` samples in order, each judged at its last sample's time, as the pipeline does.
pub fn replay(candidate: &Candidate, size: usize, series: &NabSeries) -> NabFigures {
    figures(series, &replay_alerts(candidate, size, series))
}

/// The labelled windows (numbered from 1) in which a candidate raises nothing.
pub fn missed_windows(candidate: &Candidate, size: usize, series: &NabSeries) -> Vec<usize> {
    let alerts = replay_alerts(candidate, size, series);
    (1..)
        .zip(&series.windows)
        .filter(|&(_, &window)| !detected(&alerts, window))
        .map(|(k, _)| k)
        .collect()
}

/// The alerts a candidate raises (`true`) or changes (`false`) on a series, as `(ts, row, raised)`.
fn replay_alerts(
    candidate: &Candidate,
    size: usize,
    series: &NabSeries,
) -> Vec<(u64, usize, bool)> {
    let scorer = RobustScorer::new(candidate.scorer.clone());
    let mut baseline = None;
    let mut state = AlertState::default();
    let mut raised = Vec::new();
    for (w, chunk) in series.values.chunks_exact(size).enumerate() {
        let last = w * size + size - 1;
        let ts = series.ts_ms[last];
        let score = scorer.score_sync(&Matrix::new(size, 1, chunk.to_vec()), &mut baseline, ts);
        if let Some(t) = alert::apply(&candidate.alert, &mut state, &score.label, ts) {
            if !matches!(t, Transition::Cleared { .. }) {
                raised.push((ts, last, matches!(t, Transition::Raised { .. })));
            }
        }
    }
    raised
}

/// Alerts raised by the pipeline, as `(ts, row, raised)`: the row of the window's last sample.
pub fn score_alerts(
    profile: &CompiledProfile,
    series: &NabSeries,
    alerts: &[AlertEvent],
) -> NabFigures {
    let spec = &profile.profile.window;
    let raised: Vec<(u64, usize, bool)> = alerts
        .iter()
        .filter(|e| !matches!(e.transition, Transition::Cleared { .. }))
        .map(|e| {
            let row = (e.window * u64::from(spec.hop) + u64::from(spec.size) - 1) as usize;
            (e.ts, row, matches!(e.transition, Transition::Raised { .. }))
        })
        .collect();
    figures(series, &raised)
}

/// Whether an alert was raised or changed inside a labelled window (inclusive times).
fn detected(alerts: &[(u64, usize, bool)], (a, b): (u64, u64)) -> bool {
    alerts.iter().any(|&(ts, _, _)| a <= ts && ts <= b)
}

/// Figures of raised (`true`) or changed (`false`) alerts at `(ts, row)`.
fn figures(series: &NabSeries, alerts: &[(u64, usize, bool)]) -> NabFigures {
    let inside = |ts: u64| series.windows.iter().any(|&(a, b)| a <= ts && ts <= b);
    let windows_detected = series
        .windows
        .iter()
        .filter(|&&window| detected(alerts, window))
        .count() as u64;
    let false_episodes = alerts
        .iter()
        .filter(|&&(ts, _, raised)| raised && !inside(ts))
        .count() as u64;
    let rows = nab_score::window_rows(&series.ts_ms, &series.windows);
    let detections: Vec<usize> = alerts.iter().filter(|a| a.2).map(|a| a.1).collect();
    NabFigures {
        windows: series.windows.len() as u64,
        windows_detected,
        false_episodes,
        nab: nab_score::score(series.ts_ms.len(), &rows, &detections, nab_score::STANDARD),
    }
}

/// Streams one series, in order, through a fresh pipeline; returns the alerts it raised.
pub async fn stream_series(
    profiles: &BTreeMap<String, CompiledProfile>,
    profile: &str,
    series: &NabSeries,
) -> anyhow::Result<Vec<AlertEvent>> {
    let compiled = profiles
        .get(profile)
        .with_context(|| format!("no profile {profile:?} in the models directory"))?;
    let channels = &compiled.profile.channels;
    if channels.len() != 1 {
        bail!("profile {profile} must have one channel for a NAB series");
    }
    let ports = MemoryPorts::new();
    let config = PipelineConfig {
        default_profile: profile.to_string(),
        ..PipelineConfig::default()
    };
    let pipeline = Pipeline::new(profiles, ports.ports(), config)?;
    let device = device_of(&series.file)?;
    let samples: Vec<Sample> = series
        .ts_ms
        .iter()
        .zip(&series.values)
        .enumerate()
        .map(|(i, (&ts, &v))| Sample {
            seq: i as u64,
            ts,
            values: vec![v],
        })
        .collect();
    let mut alerts = Vec::new();
    // Sixteen messages (hours) per call: the windows are still closed and scored in seq order.
    for (b, batch) in samples.chunks(SAMPLES_PER_MESSAGE * 16).enumerate() {
        let messages: Vec<Message> = batch
            .chunks(SAMPLES_PER_MESSAGE)
            .enumerate()
            .map(|(m, chunk)| Message {
                id: format!("{}-{b}-{m}", device.as_str()),
                device: device.clone(),
                payload: encode_batch(chunk, channels),
            })
            .collect();
        let report = pipeline.process(&messages, 0).await;
        all_accepted(&report, &series.file)?;
        alerts.extend(report.alerts);
    }
    Ok(alerts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(windows_detected: u64, false_episodes: u64) -> NabFigures {
        NabFigures {
            windows: 2,
            windows_detected,
            false_episodes,
            nab: NabScore {
                raw: windows_detected as f64 - 0.11 * false_episodes as f64,
                null: -2.0,
                perfect: 2.0,
            },
        }
    }

    #[test]
    fn the_rule_takes_the_most_windows_within_the_limit_else_the_quietest() {
        // Over 2 series: limit 2 allows 4 false episodes.
        let c = [f(3, 9), f(2, 4), f(1, 0), f(2, 4)];
        assert_eq!(
            choose(&c, 2, 2.0),
            1,
            "most windows within the limit, first of equals"
        );
        assert_eq!(choose(&c, 2, 5.0), 0, "a looser limit buys the noisy one");
        assert_eq!(choose(&c, 2, 0.0), 2, "nothing else is that quiet");
        assert_eq!(
            choose(&[f(3, 9), f(1, 7)], 2, 1.0),
            1,
            "none quiet: fewest episodes"
        );
    }

    #[test]
    fn leave_one_out_never_looks_at_the_held_out_series() {
        // figures[candidate][series]: A is best on series 0, B on series 1 and 2.
        let figures = vec![
            vec![f(3, 0), f(0, 0), f(1, 0)],
            vec![f(0, 0), f(2, 0), f(2, 0)],
        ];
        // Held out 0: on {1, 2} A finds 1, B 4 -> B. Held out 1: on {0, 2} A 4, B 2 -> A.
        // Held out 2: on {0, 1} A 3, B 2 -> A.
        let chosen = leave_one_out(&figures, 2.0);
        assert_eq!(chosen, vec![1, 0, 0]);
        // Each series is judged with the other series' choice: 0 + 0 + 1 windows.
        assert_eq!(held_out_total(&figures, &chosen).windows_detected, 1);
    }
}
