//! What the pipeline tests over the in-memory ports share: a scorer that needs no model file and
//! the profile set it judges with.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use vigil_core::scorer::{Baseline, Score, ScoreError, Scorer};
use vigil_core::transform::Matrix;
use vigil_core::{CompiledProfile, Profile};

/// "hot" when the window's mean is above 50, else "ok".
pub struct Threshold;

const LABELS: [&str; 2] = ["ok", "hot"];

#[async_trait]
impl Scorer for Threshold {
    fn labels(&self) -> &[String] {
        static LABELS_OWNED: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        LABELS_OWNED.get_or_init(|| LABELS.map(String::from).to_vec())
    }
    fn version(&self) -> String {
        "threshold".into()
    }
    async fn score(&self, input: &Matrix, _: &mut Option<Baseline>) -> Result<Score, ScoreError> {
        let mean = input.data.iter().sum::<f32>() / input.data.len() as f32;
        Ok(Score {
            label: LABELS[usize::from(mean > 50.0)].into(),
            probabilities: vec![],
            anomaly_score: Some(f64::from(mean)),
            source: "test".into(),
            model_version: self.version(),
            contributions: vec![],
            candidate: None,
        })
    }
}

/// The profile named `test` (its TOML, scored by [`Threshold`]) as the pipeline's profile set.
pub fn threshold_profiles(toml: &str) -> BTreeMap<String, CompiledProfile> {
    let profile = Profile::from_toml(toml, "test.toml").unwrap();
    BTreeMap::from([(
        "test".to_string(),
        CompiledProfile::new(profile, Arc::new(Threshold)).unwrap(),
    )])
}

/// The `test` profile over the one channel `a`, windows of `size` samples without overlap,
/// scored by [`Threshold`]: `window` adds lines to its `[window]` table, `alert` is its
/// `[alert]` table's body.
pub fn one_channel_profiles(
    size: u64,
    window: &str,
    alert: &str,
) -> BTreeMap<String, CompiledProfile> {
    threshold_profiles(&format!(
        r#"
name = "test"
channels = ["a"]
sample_rate_hz = 1.0
[window]
size = {size}
hop = {size}
{window}
[scorer]
kind = "onnx"
model = "unused.onnx"
labels = ["ok", "hot"]
[alert]
unhealthy = ["hot"]
{alert}
"#
    ))
}

/// The pipeline configuration of these tests: the `test` profile for every device.
pub fn test_config() -> vigil_core::PipelineConfig {
    vigil_core::PipelineConfig {
        default_profile: "test".into(),
        ..vigil_core::PipelineConfig::default()
    }
}

/// One message `id` from `device` carrying `samples` of the one channel `a`.
pub fn message_a(
    device: &vigil_core::DeviceId,
    id: String,
    samples: &[vigil_core::Sample],
) -> vigil_core::Message {
    vigil_core::Message {
        id,
        device: device.clone(),
        payload: vigil_core::telemetry::encode_batch(samples, &["a".to_string()]),
    }
}
