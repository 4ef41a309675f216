//! `vigil eval rmg941`: the fan's IMU frames through the pipeline (one 600 × 6 frame per
//! message), classified by the `rmg941` model, under contiguous 5-fold by blocks of each class:
//! fold k's frames are scored with `models/folds/rmg941-fold<k>.onnx`, fitted without them
//! (models/rmg941.md). The JSON line holds the pooled figures, `folds`, `worst_fold` and `mean`,
//! with the error class's recall (`error_recall`) at each level.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use vigil_core::memory::MemoryPorts;
use vigil_core::telemetry::encode_batch;
use vigil_core::{CompiledProfile, DeviceId, Pipeline, PipelineConfig};

use crate::folds::models::{self as folds, FoldFigures, FOLDS};
use crate::options::EvalArgs;
use crate::tasks::{score_each_window, Verdict};
use vigil_datasets::models;
use vigil_datasets::Rmg941;

pub const PROFILE: &str = "rmg941";
/// The error class, whose recall has a bar of its own.
pub const ERROR: &str = "2";

pub async fn eval(args: &EvalArgs) -> anyhow::Result<serde_json::Value> {
    let models = models::models_dir(args.models.as_deref());
    let profiles = super::load_profiles(&models)?;
    let profile = profiles
        .get(PROFILE)
        .with_context(|| format!("no profile {PROFILE:?} in the models directory"))?;
    if !folds::has_fold_models(&models, PROFILE) {
        bail!(
            "no fold models {} in {} (models/train/rmg941.py writes them)",
            folds::fold_model(PROFILE, 0),
            models.display()
        );
    }
    let channels: Vec<&str> = profile
        .profile
        .channels
        .iter()
        .map(String::as_str)
        .collect();
    let data = Rmg941::load(&args.data, &channels)?;
    let labels = profile.scorer.labels().to_vec();
    let truth: Vec<String> = data.labels.iter().map(u8::to_string).collect();
    let fold_of = folds::class_block_folds(&truth, FOLDS);
    let mut pooled = FoldFigures::new(&labels);
    let mut per_fold = Vec::new();
    for k in 0..FOLDS {
        let frames: Vec<usize> = (0..truth.len()).filter(|&i| fold_of[i] == k).collect();
        let fold_profiles = folds::fold_profiles(&models, PROFILE, k)?;
        let verdicts = classify_frames(&fold_profiles, &data, &frames).await?;
        let mut figures = FoldFigures::new(&labels);
        for (v, &i) in verdicts.iter().zip(&frames) {
            figures.add(&truth[i], v);
            pooled.add(&truth[i], v);
        }
        per_fold.push(figures);
    }
    folds::print("rmg941", &per_fold);
    pooled
        .confusion
        .print(&format!("rmg941 out of fold ({})", args.data.display()));
    let mut out = folds::report(&pooled, &per_fold);
    let recall = |f: &FoldFigures| f.confusion.per_class().get(ERROR).copied().unwrap_or(0.0);
    out["error_recall"] = recall(&pooled).into();
    for (j, f) in per_fold.iter().enumerate() {
        out["folds"][j]["error_recall"] = recall(f).into();
    }
    out["worst_fold"]["error_recall"] = per_fold
        .iter()
        .map(recall)
        .fold(f64::INFINITY, f64::min)
        .into();
    out["mean"]["error_recall"] = (per_fold.iter().map(recall).sum::<f64>() / FOLDS as f64).into();
    Ok(out)
}

/// Replays `frames` (dataset frame indices) as one device's consecutive windows; returns each
/// frame's verdict.
pub async fn classify_frames(
    profiles: &BTreeMap<String, CompiledProfile>,
    data: &Rmg941,
    frames: &[usize],
) -> anyhow::Result<Vec<Verdict>> {
    let compiled = &profiles[PROFILE];
    let channels = &compiled.profile.channels;
    let rate = compiled.profile.sample_rate_hz;
    let ports = MemoryPorts::new();
    let config = PipelineConfig {
        default_profile: PROFILE.into(),
        ..PipelineConfig::default()
    };
    let pipeline = Pipeline::new(profiles, ports.ports(), config)?;
    let device = DeviceId::new("rmg941-fan")?;
    score_each_window(&pipeline, &device, frames.len(), 16, "rmg941", |i| {
        let samples = folds::as_window(data.frame_samples(frames[i], rate), i, rate);
        encode_batch(&samples, channels)
    })
    .await
}
