//! `vigil eval cwru`: every 1024-sample frame of the CWRU recordings through the pipeline, one
//! device per file and one frame per message, scored by the `cwru` anomaly model.
//!
//! Healthy frames: the last quarter of each `normal*` file (the model was trained on the first
//! three quarters; see models/cwru.md). Fault frames: every frame of every other file.

use anyhow::Context;
use vigil_core::memory::MemoryPorts;
use vigil_core::telemetry::encode_batch;
use vigil_core::{Pipeline, PipelineConfig, Sample};

use crate::confusion::ratio;
use crate::options::EvalArgs;
use crate::tasks::{device_of, label_each_window};
use vigil_datasets::models;
use vigil_datasets::{read_cwru, CwruFile};

pub const PROFILE: &str = "cwru";
/// Fraction of each healthy recording (its first part) used for training.
pub const TRAIN_FRACTION: f64 = 0.75;

pub async fn eval(args: &EvalArgs) -> anyhow::Result<serde_json::Value> {
    let profiles = super::load_profiles(&models::models_dir(args.models.as_deref()))?;
    let files = read_cwru(&args.data)?;
    let (mut normal_held, mut normal_held_fp, mut normal_all, mut normal_all_fp) = (0, 0, 0, 0);
    let (mut fault, mut detected) = (0u64, 0u64);
    for f in &files {
        let labels = classify_file(&profiles, f).await?;
        let anomalies = labels.iter().filter(|l| *l == "anomaly").count() as u64;
        println!(
            "{:<32} {:>4} frames, {:>4} anomalous ({})",
            f.name,
            labels.len(),
            anomalies,
            if f.normal { "healthy" } else { "fault" }
        );
        if f.normal {
            let first_held = (labels.len() as f64 * TRAIN_FRACTION).floor() as usize;
            normal_all += labels.len() as u64;
            normal_all_fp += anomalies;
            normal_held += (labels.len() - first_held) as u64;
            normal_held_fp += labels[first_held..]
                .iter()
                .filter(|l| *l == "anomaly")
                .count() as u64;
        } else {
            fault += labels.len() as u64;
            detected += anomalies;
        }
    }
    let summary = serde_json::json!({
        "frames_normal": normal_held,
        "frames_fault": fault,
        "detection_rate": ratio(detected, fault),
        "false_positive_rate": ratio(normal_held_fp, normal_held),
        "false_positive_rate_all_normal": ratio(normal_all_fp, normal_all),
    });
    println!(
        "cwru ({}): detection {:.4} of {fault} fault frames, false positives {:.4} of {normal_held} held-out healthy frames",
        args.data.display(),
        ratio(detected, fault),
        ratio(normal_held_fp, normal_held)
    );
    Ok(summary)
}

/// Streams one recording as one device (a 1024-sample frame per message) and returns the label
/// of each frame's window.
pub async fn classify_file(
    profiles: &std::collections::BTreeMap<String, vigil_core::CompiledProfile>,
    file: &CwruFile,
) -> anyhow::Result<Vec<String>> {
    let compiled = profiles
        .get(PROFILE)
        .with_context(|| format!("no profile {PROFILE:?} in the models directory"))?;
    let size = compiled.profile.window.size as usize;
    let rate = compiled.profile.sample_rate_hz;
    let channels = &compiled.profile.channels;
    let ports = MemoryPorts::new();
    let config = PipelineConfig {
        default_profile: PROFILE.into(),
        ..PipelineConfig::default()
    };
    let pipeline = Pipeline::new(profiles, ports.ports(), config)?;
    let device = device_of(&file.name)?;
    let frames = file.values.len() / size;
    label_each_window(&pipeline, &device, frames, 32, &file.name, |f| {
        let samples: Vec<Sample> = (0..size)
            .map(|i| {
                let seq = (f * size + i) as u64;
                Sample {
                    seq,
                    ts: (seq as f64 * 1000.0 / rate) as u64,
                    values: vec![file.values[f * size + i]],
                }
            })
            .collect();
        encode_batch(&samples, channels)
    })
    .await
}
