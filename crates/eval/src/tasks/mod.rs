//! One module per evaluation task: how its dataset is replayed through the pipeline and scored.

pub mod cwru;
pub mod hydraulic;
pub mod nab;
pub mod rmg941;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use vigil_core::pipeline::BatchReport;
use vigil_core::{CompiledProfile, DeviceId, Message, MessageOutcome, Pipeline};
use vigil_datasets::models::ensure_onnxruntime;

/// Loads and compiles every profile of the models directory.
pub fn load_profiles(models: &Path) -> anyhow::Result<BTreeMap<String, CompiledProfile>> {
    ensure_onnxruntime();
    vigil_onnx::load_profiles(models, None).with_context(|| {
        format!(
            "loading profiles from {}",
            models.join("profiles").display()
        )
    })
}

/// A device id for a dataset file: its stem, with what a thing name may not hold replaced by `-`.
pub fn device_of(file: &str) -> anyhow::Result<DeviceId> {
    let stem = file.strip_suffix(".csv").unwrap_or(file);
    let name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(100)
        .collect();
    Ok(DeviceId::new(name)?)
}

/// Fails naming the first message of the batch the pipeline did not accept: a dataset replay
/// must go through whole, or its figures mean nothing.
pub fn all_accepted(report: &BatchReport, what: &str) -> anyhow::Result<()> {
    match report
        .outcomes
        .iter()
        .find(|o| !matches!(o, MessageOutcome::Accepted { .. }))
    {
        Some(bad) => bail!("a message of {what} was not accepted: {bad:?}"),
        None => Ok(()),
    }
}

/// Sends `windows` messages as `device`, message `i` (built by `payload(i)`) holding exactly
/// window `i`, `per_call` messages per pipeline call, and returns each window's label.
pub async fn label_each_window(
    pipeline: &Pipeline<'_>,
    device: &DeviceId,
    windows: usize,
    per_call: usize,
    what: &str,
    payload: impl Fn(usize) -> Vec<u8>,
) -> anyhow::Result<Vec<String>> {
    let verdicts = score_each_window(pipeline, device, windows, per_call, what, payload).await?;
    Ok(verdicts.into_iter().map(|v| v.label).collect())
}

/// One window's verdict as the pipeline published it.
#[derive(Clone, Debug)]
pub struct Verdict {
    /// The published label (`uncertain` below the profile's `min_confidence`).
    pub label: String,
    /// The scorer's probabilities in label order (empty for anomaly scorers).
    pub probabilities: Vec<f32>,
}

/// Like [`label_each_window`], with each window's probabilities.
pub async fn score_each_window(
    pipeline: &Pipeline<'_>,
    device: &DeviceId,
    windows: usize,
    per_call: usize,
    what: &str,
    payload: impl Fn(usize) -> Vec<u8>,
) -> anyhow::Result<Vec<Verdict>> {
    let mut verdicts: Vec<Option<Verdict>> = vec![None; windows];
    for start in (0..windows).step_by(per_call) {
        let messages: Vec<Message> = (start..(start + per_call).min(windows))
            .map(|i| Message {
                id: format!("{}-{i}", device.as_str()),
                device: device.clone(),
                payload: payload(i),
            })
            .collect();
        let report = pipeline.process(&messages, 0).await;
        all_accepted(&report, what)?;
        for r in report.results {
            if let Some(slot) = verdicts.get_mut(r.window as usize) {
                *slot = Some(Verdict {
                    label: r.label,
                    probabilities: r.probabilities,
                });
            }
        }
    }
    verdicts
        .into_iter()
        .enumerate()
        .map(|(i, v)| v.with_context(|| format!("{what}: window {i} was not scored")))
        .collect()
}
