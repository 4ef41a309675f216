//! `vigil eval nab`: NAB series streamed through the pipeline, one device per file, with the
//! streaming detectors of the `nab-zscore` and `nab-ewma` profiles and their alert policies.
//!
//! Score per series: a labelled window is detected when at least one alert is raised (or
//! changes condition) inside it; every alert raised outside all windows is a false episode.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use vigil_core::alert::Transition;
use vigil_core::memory::MemoryPorts;
use vigil_core::ports::AlertEvent;
use vigil_core::telemetry::encode_batch;
use vigil_core::{CompiledProfile, Message, Pipeline, PipelineConfig, Sample};

use crate::options::EvalArgs;
use crate::tasks::{all_accepted, device_of};
use vigil_datasets::models;
use vigil_datasets::{read_nab, NabSeries};

/// The detector whose figures make the JSON line, and the classic one reported beside it.
pub const PRIMARY: &str = "nab-ewma";
pub const BASELINE: &str = "nab-zscore";

/// Samples per message: one hour of 5-minute samples, as a logger would batch them.
const SAMPLES_PER_MESSAGE: usize = 12;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct NabFigures {
    pub windows: u64,
    pub windows_detected: u64,
    pub false_episodes: u64,
}

impl NabFigures {
    fn add(&mut self, o: NabFigures) {
        self.windows += o.windows;
        self.windows_detected += o.windows_detected;
        self.false_episodes += o.false_episodes;
    }
}

pub async fn eval(args: &EvalArgs) -> anyhow::Result<serde_json::Value> {
    let profiles = super::load_profiles(&models::models_dir(args.models.as_deref()))?;
    let series = read_nab(&args.data)?;
    let mut totals: BTreeMap<&str, NabFigures> = BTreeMap::new();
    for s in &series {
        for profile in [BASELINE, PRIMARY] {
            let alerts = stream_series(&profiles, profile, s).await?;
            let f = score_alerts(s, &alerts);
            println!(
                "{} [{profile}]: {}/{} windows detected, {} false episodes ({} alerts)",
                s.file,
                f.windows_detected,
                f.windows,
                f.false_episodes,
                alerts.len()
            );
            totals.entry(profile).or_default().add(f);
        }
    }
    let primary = totals[PRIMARY];
    let baseline = totals[BASELINE];
    println!(
        "nab ({}): {PRIMARY} {}/{} windows, {} false episodes; {BASELINE} {}/{} windows, {} false episodes",
        args.data.display(),
        primary.windows_detected,
        primary.windows,
        primary.false_episodes,
        baseline.windows_detected,
        baseline.windows,
        baseline.false_episodes
    );
    Ok(serde_json::json!({
        "windows": primary.windows,
        "windows_detected": primary.windows_detected,
        "false_episodes": primary.false_episodes,
        "detector": PRIMARY,
        "zscore": baseline,
    }))
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

/// Windows with an alert raised or changed inside, and alerts raised outside every window.
pub fn score_alerts(series: &NabSeries, alerts: &[AlertEvent]) -> NabFigures {
    let inside = |ts: u64| series.windows.iter().any(|&(a, b)| a <= ts && ts <= b);
    let detected = series
        .windows
        .iter()
        .filter(|&&(a, b)| {
            alerts.iter().any(|e| {
                matches!(
                    e.transition,
                    Transition::Raised { .. } | Transition::Changed { .. }
                ) && a <= e.ts
                    && e.ts <= b
            })
        })
        .count();
    let false_episodes = alerts
        .iter()
        .filter(|e| matches!(e.transition, Transition::Raised { .. }) && !inside(e.ts))
        .count();
    NabFigures {
        windows: series.windows.len() as u64,
        windows_detected: detected as u64,
        false_episodes: false_episodes as u64,
    }
}
