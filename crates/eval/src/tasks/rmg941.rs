//! `vigil eval rmg941`: every IMU frame of the fan through the pipeline (one 600 × 6 frame per
//! message, seq = frame × 600 + i), classified by the `rmg941` model.
//!
//! The figures of the JSON line are on the validation split the model was not trained on: the
//! last 20 % of each class's contiguous block of frames (models/rmg941.md). Figures over every
//! frame are printed and reported under `all`.

use std::collections::BTreeMap;

use anyhow::Context;
use vigil_core::memory::MemoryPorts;
use vigil_core::telemetry::encode_batch;
use vigil_core::{CompiledProfile, DeviceId, Pipeline, PipelineConfig};

use crate::confusion::Confusion;
use crate::options::EvalArgs;
use crate::tasks::label_each_window;
use vigil_datasets::models;
use vigil_datasets::Rmg941;

pub const PROFILE: &str = "rmg941";
pub const VAL_FRACTION: f64 = 0.2;

/// Frames of the validation split: the last `VAL_FRACTION` of each class's frames.
pub fn validation_mask(labels: &[u8]) -> Vec<bool> {
    let mut mask = vec![false; labels.len()];
    let mut classes: Vec<u8> = labels.to_vec();
    classes.sort_unstable();
    classes.dedup();
    for c in classes {
        let idx: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == c).collect();
        let first = (idx.len() as f64 * (1.0 - VAL_FRACTION)) as usize;
        for &i in &idx[first..] {
            mask[i] = true;
        }
    }
    mask
}

pub async fn eval(args: &EvalArgs) -> anyhow::Result<serde_json::Value> {
    let profiles = super::load_profiles(&models::models_dir(args.models.as_deref()))?;
    let profile = profiles
        .get(PROFILE)
        .with_context(|| format!("no profile {PROFILE:?} in the models directory"))?;
    let channels: Vec<&str> = profile
        .profile
        .channels
        .iter()
        .map(String::as_str)
        .collect();
    let data = Rmg941::load(&args.data, &channels)?;
    let labels = profile.scorer.labels().to_vec();
    let predictions = classify_frames(&profiles, &data).await?;
    let val = validation_mask(&data.labels);
    let mut all = Confusion::new(&labels);
    let mut held = Confusion::new(&labels);
    for (f, p) in predictions.iter().enumerate() {
        let truth = data.labels[f].to_string();
        all.add(&truth, p);
        if val[f] {
            held.add(&truth, p);
        }
    }
    all.print(&format!("rmg941 all frames ({})", args.data.display()));
    held.print("rmg941 validation split (last 20 % of each class block)");
    let summarize = |c: &Confusion| {
        let per_class = c.per_class();
        serde_json::json!({
            "n": c.total(),
            "accuracy": c.accuracy(),
            "error_recall": per_class.get("2").copied().unwrap_or(0.0),
            "per_class": per_class,
        })
    };
    let mut out = summarize(&held);
    out["all"] = summarize(&all);
    Ok(out)
}

/// Replays every frame as one device's telemetry; returns each frame's label.
pub async fn classify_frames(
    profiles: &BTreeMap<String, CompiledProfile>,
    data: &Rmg941,
) -> anyhow::Result<Vec<String>> {
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
    label_each_window(&pipeline, &device, data.frames.len(), 16, "rmg941", |f| {
        encode_batch(&data.frame_samples(f, rate), channels)
    })
    .await
}
