//! `vigil eval hydraulic`: cycles of the UCI hydraulic rig through the full pipeline
//! (parse → window → transforms → scorer), compared with the rig's recorded condition.
//!
//! Targets with fold models (valve, pump, accumulator: models/hydraulic-health.md) are evaluated
//! under contiguous 5-fold by blocks of each class: fold k's cycles are scored with
//! `models/folds/hydraulic-T-fold<k>.onnx`, fitted without them; the JSON line holds the pooled
//! figures, `folds`, `worst_fold`, `mean`, and the coverage left by the `uncertain` verdict.
//! The cooler (its own model and card) is scored over every cycle with the shipped model.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use vigil_core::memory::MemoryPorts;
use vigil_core::telemetry::encode_batch;
use vigil_core::{CompiledProfile, DeviceId, Pipeline, PipelineConfig};

use crate::confusion::Confusion;
use crate::folds::models::{self as folds, FoldFigures, FOLDS};
use crate::options::EvalArgs;
use crate::tasks::{score_each_window, Verdict};
use vigil_datasets::models;
use vigil_datasets::{label_of, Hydraulic};

/// Column of `profile.txt` holding each target's truth.
pub fn target_column(target: &str) -> anyhow::Result<usize> {
    Ok(match target {
        "cooler" => 0,
        "valve" => 1,
        "pump" => 2,
        "accumulator" => 3,
        other => bail!("unknown hydraulic target {other:?} (cooler, valve, pump, accumulator)"),
    })
}

pub async fn eval(args: &EvalArgs) -> anyhow::Result<serde_json::Value> {
    let target = args.target.as_deref().unwrap_or("cooler");
    let column = target_column(target)?;
    let profile_name = format!("hydraulic-{target}");
    let models = models::models_dir(args.models.as_deref());
    let profiles = super::load_profiles(&models)?;
    let profile = profiles
        .get(&profile_name)
        .with_context(|| format!("no profile {profile_name:?} in the models directory"))?;
    let channel_names: Vec<&str> = profile
        .profile
        .channels
        .iter()
        .map(String::as_str)
        .collect();
    let data = Hydraulic::load(&args.data, &channel_names)?;
    let labels = profile.scorer.labels().to_vec();
    let truth: Vec<String> = data
        .conditions
        .iter()
        .map(|c| label_of(c[column]))
        .collect();
    let title = format!("hydraulic {target} ({})", args.data.display());
    if !folds::has_fold_models(&models, &profile_name) {
        let cycles: Vec<usize> = (0..data.cycles()).collect();
        let verdicts = classify_cycles(&profiles, &profile_name, &data, &cycles).await?;
        let mut confusion = Confusion::new(&labels);
        for (v, t) in verdicts.iter().zip(&truth) {
            confusion.add(t, &v.label);
        }
        confusion.print(&title);
        return Ok(confusion.summary());
    }
    let fold_of = folds::class_block_folds(&truth, FOLDS);
    let mut pooled = FoldFigures::new(&labels);
    let mut per_fold = Vec::new();
    for k in 0..FOLDS {
        let cycles: Vec<usize> = (0..truth.len()).filter(|&i| fold_of[i] == k).collect();
        let fold_profiles = folds::fold_profiles(&models, &profile_name, k)?;
        let verdicts = classify_cycles(&fold_profiles, &profile_name, &data, &cycles).await?;
        let mut figures = FoldFigures::new(&labels);
        for (v, &i) in verdicts.iter().zip(&cycles) {
            figures.add(&truth[i], v);
            pooled.add(&truth[i], v);
        }
        per_fold.push(figures);
    }
    folds::print(&format!("hydraulic {target}"), &per_fold);
    pooled.confusion.print(&format!("{title}, out of fold"));
    let mut out = folds::report(&pooled, &per_fold);
    out["min_confidence"] = profile.profile.min_confidence.into();
    Ok(out)
}

/// Replays `cycles` (dataset rows) as one device's consecutive windows and returns each cycle's
/// verdict.
pub async fn classify_cycles(
    profiles: &BTreeMap<String, CompiledProfile>,
    profile: &str,
    data: &Hydraulic,
    cycles: &[usize],
) -> anyhow::Result<Vec<Verdict>> {
    let ports = MemoryPorts::new();
    let config = PipelineConfig {
        default_profile: profile.to_string(),
        ..PipelineConfig::default()
    };
    let pipeline = Pipeline::new(profiles, ports.ports(), config)?;
    let device = DeviceId::new("hydraulic-rig")?;
    let channels = &profiles[profile].profile.channels;
    // One message per cycle (a 60-sample batch), 64 messages per pipeline call.
    score_each_window(&pipeline, &device, cycles.len(), 64, "hydraulic", |i| {
        let samples = folds::as_window(data.cycle_samples(cycles[i], 0), i, 1.0);
        encode_batch(&samples, channels)
    })
    .await
}
