//! Profiles: what a kind of device sends and how it is judged. TOML files in `models/profiles/`,
//! validated once at start; every error names the file and the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::alert::AlertPolicy;
use crate::transform::TransformSpec;
use crate::window::WindowSpec;

/// Most channels a profile may declare (the parser tracks them in a 64-bit mask).
pub const MAX_CHANNELS: usize = 64;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Unique name, also the file stem (`hydraulic-cooler.toml` holds `name = "hydraulic-cooler"`).
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Ordered channel names; samples must carry exactly these.
    pub channels: Vec<String>,
    /// Nominal sample rate, used for time-based reasoning and documentation.
    pub sample_rate_hz: f64,
    pub window: WindowSpec,
    #[serde(default)]
    pub transforms: Vec<TransformSpec>,
    pub scorer: ScorerSpec,
    /// Least top probability for a verdict: below it the window's label is
    /// [`UNCERTAIN_LABEL`](crate::scorer::UNCERTAIN_LABEL), which raises and clears nothing and is
    /// counted. For scorers with probabilities (ONNX classifiers, SageMaker); unset = always a verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_confidence: Option<f32>,
    pub alert: AlertPolicy,
}

/// Which scorer judges a window. Built into a `Scorer` by the binary that owns the adapters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ScorerSpec {
    /// A bundled ONNX model run by ONNX Runtime.
    Onnx {
        /// File name relative to the models directory.
        model: String,
        /// Output labels, in the order of the model's output.
        labels: Vec<String>,
        #[serde(default = "default_input")]
        input: String,
        #[serde(default = "default_output")]
        output: String,
        #[serde(default)]
        output_kind: OnnxOutput,
    },
    /// A SageMaker endpoint, optionally falling back to a bundled ONNX model.
    Sagemaker {
        endpoint: String,
        labels: Vec<String>,
        #[serde(default)]
        format: SagemakerFormat,
        #[serde(default = "default_timeout_ms")]
        timeout_ms: u64,
        /// ONNX model (relative to the models directory) used when the endpoint fails.
        #[serde(default)]
        fallback_model: Option<String>,
    },
    /// Streaming z-score against the device's own running statistics.
    Zscore(crate::scorer::ZScoreConfig),
    /// Streaming detector combining a robust EWMA baseline with a level-shift test.
    Ewma(crate::scorer::EwmaConfig),
    /// The machine's own learned normal (PCA, T² and SPE), fitted by `vigil train-normal`.
    LearnedNormal(crate::normal::NormalConfig),
    /// Scale-free streaming detector: robust, seasonal, judged against its own record.
    Robust(crate::streaming::RobustConfig),
}

/// How an ONNX model's output is read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnnxOutput {
    /// Class probabilities, one per label; the label is the arg-max.
    #[default]
    Probabilities,
    /// One anomaly score per window (higher = more anomalous) compared with `threshold`:
    /// labels are `[normal, anomaly]`. The threshold lives in the model's labels file.
    AnomalyScore { threshold: f32 },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SagemakerFormat {
    /// TensorFlow Serving: `{"instances": [...]}` in, `{"predictions": [[...]]}` out.
    #[default]
    TfServing,
    /// CSV rows in, CSV probabilities out.
    Csv,
}

fn default_input() -> String {
    "window".into()
}
fn default_output() -> String {
    "probabilities".into()
}
fn default_timeout_ms() -> u64 {
    2000
}

/// A profile that failed validation: which file, which key, why.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}: {reason}")]
pub struct ProfileError {
    pub file: String,
    pub key: String,
    pub reason: String,
}

impl ProfileError {
    fn new(file: &str, key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            file: file.to_string(),
            key: key.into(),
            reason: reason.into(),
        }
    }
}

impl Profile {
    /// Parses and validates a profile from TOML text; `file` names the source in errors.
    pub fn from_toml(text: &str, file: &str) -> Result<Self, ProfileError> {
        let profile: Profile = toml::from_str(text).map_err(|e| {
            let key = e
                .span()
                .map(|s| key_at(text, s.start))
                .unwrap_or_else(|| "$".into());
            ProfileError::new(file, key, e.message().to_string())
        })?;
        profile.validate(file)?;
        Ok(profile)
    }

    /// Reads one profile file.
    pub fn load(path: &Path) -> Result<Self, ProfileError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ProfileError::new(&file, "$", e.to_string()))?;
        let profile = Self::from_toml(&text, &file)?;
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        if stem != profile.name {
            return Err(ProfileError::new(
                &file,
                "name",
                format!("{:?} differs from the file name {stem:?}", profile.name),
            ));
        }
        Ok(profile)
    }

    fn validate(&self, file: &str) -> Result<(), ProfileError> {
        let err = |key: &str, reason: String| Err(ProfileError::new(file, key, reason));
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return err(
                "name",
                format!("{:?} must be non-empty and use A-Z a-z 0-9 - _", self.name),
            );
        }
        if self.channels.is_empty() || self.channels.len() > MAX_CHANNELS {
            return err(
                "channels",
                format!(
                    "{} channels; between 1 and {MAX_CHANNELS} are allowed",
                    self.channels.len()
                ),
            );
        }
        for (i, c) in self.channels.iter().enumerate() {
            if c.is_empty()
                || !c
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
            {
                return err(
                    &format!("channels[{i}]"),
                    format!("{c:?} must be non-empty and use A-Z a-z 0-9 _ -"),
                );
            }
            if self.channels[..i].contains(c) {
                return err(&format!("channels[{i}]"), format!("{c:?} is listed twice"));
            }
        }
        if !(self.sample_rate_hz.is_finite() && self.sample_rate_hz > 0.0) {
            return err(
                "sample_rate_hz",
                format!("{} must be a positive number", self.sample_rate_hz),
            );
        }
        self.window
            .validate()
            .map_err(|(key, reason)| ProfileError::new(file, format!("window.{key}"), reason))?;
        let mut shape = (self.window.size as usize, self.channels.len());
        for (i, t) in self.transforms.iter().enumerate() {
            shape = t
                .output_shape(shape)
                .map_err(|reason| ProfileError::new(file, format!("transforms[{i}]"), reason))?;
        }
        let labels = match &self.scorer {
            ScorerSpec::Onnx {
                model,
                labels,
                output_kind,
                ..
            } => {
                if model.is_empty() || model.contains("..") {
                    return err(
                        "scorer.model",
                        format!("{model:?} must be a file name inside the models directory"),
                    );
                }
                if matches!(output_kind, OnnxOutput::AnomalyScore { .. }) && labels.len() != 2 {
                    return err(
                        "scorer.labels",
                        "an anomaly-score model needs exactly [normal, anomaly]".into(),
                    );
                }
                labels.clone()
            }
            ScorerSpec::Sagemaker {
                endpoint,
                labels,
                timeout_ms,
                fallback_model,
                ..
            } => {
                if endpoint.is_empty() {
                    return err("scorer.endpoint", "must not be empty".into());
                }
                if *timeout_ms == 0 || *timeout_ms > 60_000 {
                    return err(
                        "scorer.timeout_ms",
                        format!("{timeout_ms} must be within 1..=60000"),
                    );
                }
                if fallback_model
                    .as_deref()
                    .is_some_and(|m| m.is_empty() || m.contains(".."))
                {
                    return err(
                        "scorer.fallback_model",
                        "must be a file name inside the models directory".into(),
                    );
                }
                labels.clone()
            }
            ScorerSpec::Zscore(c) => {
                c.validate().map_err(|(key, reason)| {
                    ProfileError::new(file, format!("scorer.{key}"), reason)
                })?;
                crate::scorer::ANOMALY_LABELS
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            }
            ScorerSpec::Ewma(c) => {
                c.validate().map_err(|(key, reason)| {
                    ProfileError::new(file, format!("scorer.{key}"), reason)
                })?;
                crate::scorer::ANOMALY_LABELS
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            }
            ScorerSpec::LearnedNormal(c) => {
                c.validate().map_err(|(key, reason)| {
                    ProfileError::new(file, format!("scorer.{key}"), reason)
                })?;
                self.labels()
            }
            ScorerSpec::Robust(c) => {
                c.validate().map_err(|(key, reason)| {
                    ProfileError::new(file, format!("scorer.{key}"), reason)
                })?;
                self.labels()
            }
        };
        if labels.is_empty() {
            return err("scorer.labels", "must list at least one label".into());
        }
        for (i, l) in labels.iter().enumerate() {
            if labels[..i].contains(l) {
                return err(
                    &format!("scorer.labels[{i}]"),
                    format!("{l:?} is listed twice"),
                );
            }
        }
        if let Some(m) = self.min_confidence {
            let probabilistic = matches!(
                self.scorer,
                ScorerSpec::Onnx {
                    output_kind: OnnxOutput::Probabilities,
                    ..
                } | ScorerSpec::Sagemaker { .. }
            );
            if !probabilistic {
                return err(
                    "min_confidence",
                    "needs a scorer that gives class probabilities (onnx or sagemaker)".into(),
                );
            }
            if !(m > 0.0 && m <= 1.0) {
                return err("min_confidence", format!("{m} must be within (0, 1]"));
            }
            if labels.iter().any(|l| l == crate::scorer::UNCERTAIN_LABEL) {
                return err(
                    "scorer.labels",
                    format!(
                        "{:?} is the verdict below min_confidence, not a class",
                        crate::scorer::UNCERTAIN_LABEL
                    ),
                );
            }
        }
        self.alert
            .validate(&labels)
            .map_err(|(key, reason)| ProfileError::new(file, format!("alert.{key}"), reason))?;
        Ok(())
    }

    /// The labels a scorer of this profile may produce.
    pub fn labels(&self) -> Vec<String> {
        match &self.scorer {
            ScorerSpec::Onnx { labels, .. } | ScorerSpec::Sagemaker { labels, .. } => {
                labels.clone()
            }
            ScorerSpec::Zscore(_)
            | ScorerSpec::Ewma(_)
            | ScorerSpec::Robust(_)
            | ScorerSpec::LearnedNormal(_) => crate::scorer::ANOMALY_LABELS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

/// Best-effort dotted key at a byte offset of a TOML document, for error messages.
fn key_at(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let mut table = String::new();
    for line in before.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            table = t.trim_matches(|c| c == '[' || c == ']').to_string();
        }
    }
    let line = before.rsplit('\n').next().unwrap_or("");
    let current = text[before.len() - line.len()..]
        .lines()
        .next()
        .unwrap_or("");
    let key = current.split('=').next().unwrap_or("").trim();
    match (table.is_empty(), key.is_empty() || key.starts_with('[')) {
        (true, true) => "$".into(),
        (true, false) => key.into(),
        (false, true) => table,
        (false, false) => format!("{table}.{key}"),
    }
}

/// All profiles of a directory, by name.
#[derive(Clone, Debug, Default)]
pub struct ProfileSet {
    pub profiles: BTreeMap<String, Profile>,
    pub dir: PathBuf,
}

impl ProfileSet {
    /// Loads every `*.toml` of `dir`; the first invalid file fails the whole set.
    pub fn load_dir(dir: &Path) -> Result<Self, ProfileError> {
        let dir_name = dir.display().to_string();
        let entries =
            std::fs::read_dir(dir).map_err(|e| ProfileError::new(&dir_name, "$", e.to_string()))?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        let mut profiles = BTreeMap::new();
        for path in paths {
            let p = Profile::load(&path)?;
            profiles.insert(p.name.clone(), p);
        }
        if profiles.is_empty() {
            return Err(ProfileError::new(&dir_name, "$", "no *.toml profile found"));
        }
        Ok(Self {
            profiles,
            dir: dir.to_path_buf(),
        })
    }

    pub fn get(&self, name: &str) -> Option<&Profile> {
        self.profiles.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "rig"
channels = ["TS1", "TS2"]
sample_rate_hz = 1.0
[window]
size = 4
hop = 4
[scorer]
kind = "onnx"
model = "m.onnx"
labels = ["bad", "ok"]
[alert]
unhealthy = ["bad"]
"#;

    #[test]
    fn accepts_a_good_profile_with_defaults() {
        let p = Profile::from_toml(GOOD, "rig.toml").unwrap();
        assert_eq!(p.window.close_gap(), 4);
        assert_eq!(p.alert.raise_after, 1);
        assert_eq!(p.labels(), vec!["bad", "ok"]);
    }

    #[test]
    fn robust_scorer_parses_with_defaults_and_validates() {
        let robust = GOOD
            .replace(
                "kind = \"onnx\"\nmodel = \"m.onnx\"\nlabels = [\"bad\", \"ok\"]",
                "kind = \"robust\"",
            )
            .replace("unhealthy = [\"bad\"]", "unhealthy = [\"anomaly\"]");
        let p = Profile::from_toml(&robust, "rig.toml").unwrap();
        assert_eq!(p.labels(), vec!["normal", "anomaly"]);
        let e = Profile::from_toml(
            &robust.replace("kind = \"robust\"", "kind = \"robust\"\nrecord_margin = -1"),
            "rig.toml",
        )
        .unwrap_err();
        assert_eq!(e.key, "scorer.record_margin");
    }

    #[test]
    fn errors_name_file_and_key() {
        let e = Profile::from_toml(&GOOD.replace("hop = 4", "hop = 0"), "rig.toml").unwrap_err();
        assert_eq!(
            (e.file.as_str(), e.key.as_str()),
            ("rig.toml", "window.hop")
        );

        let e = Profile::from_toml(
            &GOOD.replace("unhealthy = [\"bad\"]", "unhealthy = [\"worse\"]"),
            "rig.toml",
        )
        .unwrap_err();
        assert_eq!(e.key, "alert.unhealthy");

        let e = Profile::from_toml(
            &GOOD.replace("[\"TS1\", \"TS2\"]", "[\"TS1\", \"TS1\"]"),
            "rig.toml",
        )
        .unwrap_err();
        assert_eq!(e.key, "channels[1]");

        let e = Profile::from_toml(&GOOD.replace("size = 4", "size = 4\nbogus = 1"), "rig.toml")
            .unwrap_err();
        assert_eq!(e.key, "window.bogus");
        assert!(e.reason.contains("unknown field"), "{e}");

        let e = Profile::from_toml(
            &GOOD.replace("kind = \"onnx\"", "kind = \"magic\""),
            "rig.toml",
        )
        .unwrap_err();
        assert!(e.key.starts_with("scorer"), "{e}");

        let bad_transform = GOOD.replace(
            "[scorer]",
            "[[transforms]]\nkind = \"decimate\"\nfactor = 9\n[scorer]",
        );
        let e = Profile::from_toml(&bad_transform, "rig.toml").unwrap_err();
        assert_eq!(e.key, "transforms[0]");
    }

    #[test]
    fn min_confidence_is_a_probability_of_a_classifier() {
        let with = |v: &str, text: &str| {
            text.replace("[window]", &format!("min_confidence = {v}\n[window]"))
        };
        let p = Profile::from_toml(&with("0.7", GOOD), "rig.toml").unwrap();
        assert_eq!(p.min_confidence, Some(0.7));
        assert_eq!(
            Profile::from_toml(GOOD, "rig.toml").unwrap().min_confidence,
            None
        );
        for bad in ["0.0", "1.5", "-0.2", "nan"] {
            let e = Profile::from_toml(&with(bad, GOOD), "rig.toml").unwrap_err();
            assert_eq!(e.key, "min_confidence", "{bad}: {e}");
        }
        let zscore = GOOD
            .replace(
                "kind = \"onnx\"\nmodel = \"m.onnx\"\nlabels = [\"bad\", \"ok\"]",
                "kind = \"zscore\"",
            )
            .replace("unhealthy = [\"bad\"]", "unhealthy = [\"anomaly\"]");
        Profile::from_toml(&zscore, "rig.toml").unwrap();
        let e = Profile::from_toml(&with("0.7", &zscore), "rig.toml").unwrap_err();
        assert_eq!(e.key, "min_confidence");
        assert!(e.reason.contains("probabilities"), "{e}");
        let e = Profile::from_toml(
            &with("0.7", &GOOD.replace("\"ok\"]", "\"uncertain\"]")),
            "rig.toml",
        )
        .unwrap_err();
        assert_eq!(e.key, "scorer.labels", "{e}");
    }
}
