//! `vigil eval hydraulic`: every cycle of the UCI hydraulic rig through the full pipeline
//! (parse → window → transforms → scorer), compared with the rig's recorded condition.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use vigil_core::memory::MemoryPorts;
use vigil_core::telemetry::encode_batch;
use vigil_core::{CompiledProfile, DeviceId, Message, MessageOutcome, Pipeline, PipelineConfig};

use crate::confusion::Confusion;
use crate::options::EvalArgs;
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
    let profiles = super::load_profiles(&models::models_dir(args.models.as_deref()))?;
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
    let predictions = classify_cycles(&profiles, &profile_name, &data).await?;

    let mut confusion = Confusion::new(&labels);
    for (cycle, predicted) in predictions.iter().enumerate() {
        confusion.add(&label_of(data.conditions[cycle][column]), predicted);
    }
    confusion.print(&format!("hydraulic {target} ({})", args.data.display()));
    Ok(confusion.summary())
}

/// Replays every cycle as one device's telemetry and returns the label of each cycle's window.
pub async fn classify_cycles(
    profiles: &BTreeMap<String, CompiledProfile>,
    profile: &str,
    data: &Hydraulic,
) -> anyhow::Result<Vec<String>> {
    let ports = MemoryPorts::new();
    let config = PipelineConfig {
        default_profile: profile.to_string(),
        ..PipelineConfig::default()
    };
    let pipeline = Pipeline::new(profiles, ports.ports(), config)?;
    let device = DeviceId::new("hydraulic-rig")?;
    let channels = &profiles[profile].profile.channels;
    let mut labels: Vec<Option<String>> = vec![None; data.cycles()];
    // One message per cycle (a 60-sample batch), processed 64 messages at a time.
    for start in (0..data.cycles()).step_by(64) {
        let messages: Vec<Message> = (start..(start + 64).min(data.cycles()))
            .map(|cycle| Message {
                id: format!("cycle-{cycle}"),
                device: device.clone(),
                payload: encode_batch(&data.cycle_samples(cycle, 0), channels),
            })
            .collect();
        let report = pipeline.process(&messages, 0).await;
        if let Some(bad) = report
            .outcomes
            .iter()
            .find(|o| !matches!(o, MessageOutcome::Accepted { .. }))
        {
            bail!("a cycle was not accepted: {bad:?}");
        }
        for r in report.results {
            labels[r.window as usize] = Some(r.label);
        }
    }
    labels
        .into_iter()
        .enumerate()
        .map(|(i, l)| l.with_context(|| format!("cycle {i} was not scored")))
        .collect()
}
