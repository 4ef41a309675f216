//! ONNX Runtime scorer for Vigil, and the loader that turns a models directory into compiled
//! profiles.
//!
//! ONNX Runtime is loaded at run time (`ort`'s `load-dynamic`) from `ORT_DYLIB_PATH`, which
//! points at `libonnxruntime.so` from the `onnxruntime` Python wheel (`make setup` installs it;
//! the Lambda zip carries it under `lib/`). Nothing is downloaded at build time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::Tensor;
use sha2::{Digest, Sha256};
use vigil_core::profile::{OnnxOutput, ProfileSet};
use vigil_core::scorer::{
    argmax_label, Baseline, EwmaScorer, Score, ScoreError, Scorer, ZScoreScorer,
};
use vigil_core::transform::Matrix;
use vigil_core::{CompiledProfile, Profile, ScorerSpec};

#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("ONNX Runtime library: {0}")]
    Runtime(String),
    #[error("model {path}: {reason}")]
    Model { path: String, reason: String },
    #[error("inference with {model}: {reason}")]
    Inference { model: String, reason: String },
    #[error(transparent)]
    Profile(#[from] vigil_core::profile::ProfileError),
    #[error("profile {profile}: {reason}")]
    Build { profile: String, reason: String },
}

static ENVIRONMENT: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();

/// The one ONNX Runtime environment of the process, loading the library on first use.
fn environment() -> Result<&'static ort::environment::Environment, OnnxError> {
    ENVIRONMENT
        .get_or_init(|| {
            let path = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()).ok_or_else(|| {
                "ORT_DYLIB_PATH is not set: point it at libonnxruntime.so.1.31.1 \
                 (`make setup` installs it under .tools/venv/lib/python3.11/site-packages/onnxruntime/capi/)"
                    .to_string()
            })?;
            let path = PathBuf::from(path);
            if !path.is_file() {
                return Err(format!("ORT_DYLIB_PATH={} does not exist", path.display()));
            }
            ort::init_from(&path)
                .map_err(|e| format!("loading {}: {e}", path.display()))?
                .with_name("vigil")
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| OnnxError::Runtime(e.clone()))
}

/// How much of ONNX Runtime's graph optimisation a session runs when it is built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GraphOptimization {
    /// Semantics-preserving rewrites only (constant folding, redundant nodes): the optimiser's
    /// other passes are never run, so their code is never paged in — about 0.5 MB less resident
    /// memory, which the Lambda's memory bound needs (docs/aws.md). The outputs of the bundled
    /// models differ from `All` by less than 1e-6.
    Basic,
    /// Everything ONNX Runtime offers (its default).
    #[default]
    All,
}

static GRAPH_OPTIMIZATION: OnceLock<GraphOptimization> = OnceLock::new();

/// Sets the graph optimisation of every session the process builds from now on; only the first
/// call counts (returns whether it did), so that all sessions of a process are built alike. Like
/// the ONNX Runtime environment it tunes, this is process-wide: the Lambda's wiring calls it
/// before its first model.
pub fn use_graph_optimization(level: GraphOptimization) -> bool {
    GRAPH_OPTIMIZATION.set(level).is_ok()
}

/// A model scored by ONNX Runtime. Sessions are not shareable for `run`, so calls serialise on
/// a mutex; one window takes well under a millisecond.
pub struct OnnxScorer {
    session: Mutex<Session>,
    labels: Vec<String>,
    input: String,
    output: String,
    output_kind: OnnxOutput,
    /// Rank of the model input: 3 for `[batch, time, channels]`, 2 for `[batch, features]`.
    input_rank: usize,
    version: String,
}

impl std::fmt::Debug for OnnxScorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxScorer")
            .field("version", &self.version)
            .field("labels", &self.labels)
            .finish()
    }
}

impl OnnxScorer {
    /// Loads a model; `labels` are its outputs in order.
    pub fn load(
        path: &Path,
        labels: Vec<String>,
        input: &str,
        output: &str,
        output_kind: OnnxOutput,
    ) -> Result<Self, OnnxError> {
        let bytes = std::fs::read(path).map_err(|e| model_error(path, e))?;
        Self::from_bytes(
            &bytes,
            &path.display().to_string(),
            labels,
            input,
            output,
            output_kind,
        )
    }

    /// Loads a model from memory (e.g. fetched from S3); `name` is used in the version.
    pub fn from_bytes(
        bytes: &[u8],
        name: &str,
        labels: Vec<String>,
        input: &str,
        output: &str,
        output_kind: OnnxOutput,
    ) -> Result<Self, OnnxError> {
        let level = GRAPH_OPTIMIZATION.get().copied().unwrap_or_default();
        Self::from_bytes_with(bytes, name, labels, input, output, output_kind, level)
    }

    /// [`OnnxScorer::from_bytes`] with the graph optimisation given, not the process's.
    pub fn from_bytes_with(
        bytes: &[u8],
        name: &str,
        labels: Vec<String>,
        input: &str,
        output: &str,
        output_kind: OnnxOutput,
        level: GraphOptimization,
    ) -> Result<Self, OnnxError> {
        let env = environment()?;
        let session = Session::builder(env)
            .and_then(|mut b| {
                // One intra-op thread: a Lambda has one vCPU per 1.8 GB, and at the edge many
                // small windows are better served by the caller's own concurrency.
                b = b.with_intra_threads(1)?;
                if level == GraphOptimization::Basic {
                    b = b.with_optimization_level(GraphOptimizationLevel::Level1)?;
                }
                b.commit_from_memory(bytes)
            })
            .map_err(|e| OnnxError::Model {
                path: name.into(),
                reason: e.to_string(),
            })?;
        let in_outlet = session
            .inputs()
            .iter()
            .find(|i| i.name() == input)
            .ok_or_else(|| OnnxError::Model {
                path: name.into(),
                reason: format!(
                    "no input named {input:?} (has {:?})",
                    session
                        .inputs()
                        .iter()
                        .map(|i| i.name())
                        .collect::<Vec<_>>()
                ),
            })?;
        let input_rank = in_outlet.dtype().tensor_shape().map_or(3, |s| s.len());
        if !session.outputs().iter().any(|o| o.name() == output) {
            return Err(OnnxError::Model {
                path: name.into(),
                reason: format!(
                    "no output named {output:?} (has {:?})",
                    session
                        .outputs()
                        .iter()
                        .map(|o| o.name())
                        .collect::<Vec<_>>()
                ),
            });
        }
        let digest = Sha256::digest(bytes);
        let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        let stem = Path::new(name)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or(name);
        Ok(Self {
            session: Mutex::new(session),
            labels,
            input: input.into(),
            output: output.into(),
            output_kind,
            input_rank,
            version: format!("{stem}@{hex}"),
        })
    }

    /// Builds the scorer of an `onnx` profile from the models directory.
    pub fn from_spec(spec: &ScorerSpec, models_dir: &Path) -> Result<Self, OnnxError> {
        match spec {
            ScorerSpec::Onnx {
                model,
                labels,
                input,
                output,
                output_kind,
            } => Self::load(
                &models_dir.join(model),
                labels.clone(),
                input,
                output,
                *output_kind,
            ),
            ScorerSpec::Sagemaker {
                fallback_model: Some(model),
                labels,
                ..
            } => Self::load(
                &models_dir.join(model),
                labels.clone(),
                "window",
                "probabilities",
                OnnxOutput::Probabilities,
            ),
            other => Err(OnnxError::Model {
                path: format!("{other:?}"),
                reason: "not an ONNX scorer".into(),
            }),
        }
    }

    /// Raw model outputs for a batch of windows of equal shape: one row per window.
    pub fn predict(&self, windows: &[&Matrix]) -> Result<Vec<Vec<f32>>, OnnxError> {
        let Some(first) = windows.first() else {
            return Ok(vec![]);
        };
        let (rows, cols) = (first.rows, first.cols);
        let mut data = Vec::with_capacity(windows.len() * rows * cols);
        for w in windows {
            if (w.rows, w.cols) != (rows, cols) {
                return Err(self.inference_error(format!(
                    "windows differ in shape: {}x{} vs {rows}x{cols}",
                    w.rows, w.cols
                )));
            }
            data.extend_from_slice(&w.data);
        }
        let shape: Vec<i64> = if self.input_rank == 2 {
            vec![windows.len() as i64, (rows * cols) as i64]
        } else {
            vec![windows.len() as i64, rows as i64, cols as i64]
        };
        let tensor =
            Tensor::from_array((shape, data)).map_err(|e| self.inference_error(e.to_string()))?;
        let mut session = self
            .session
            .lock()
            .map_err(|_| self.inference_error("session lock poisoned".into()))?;
        let outputs = session
            .run(ort::inputs![self.input.as_str() => tensor])
            .map_err(|e| self.inference_error(e.to_string()))?;
        let (shape, values) = outputs[self.output.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(|e| self.inference_error(e.to_string()))?;
        let per_window = if windows.is_empty() {
            0
        } else {
            values.len() / windows.len()
        };
        if per_window == 0 || per_window * windows.len() != values.len() {
            return Err(self.inference_error(format!(
                "output shape {shape:?} does not fit {} windows",
                windows.len()
            )));
        }
        Ok(values.chunks(per_window).map(<[f32]>::to_vec).collect())
    }

    /// Turns one window's raw output into a score.
    pub fn interpret(&self, output: Vec<f32>) -> Result<Score, ScoreError> {
        match self.output_kind {
            OnnxOutput::Probabilities => {
                if output.len() != self.labels.len() {
                    return Err(ScoreError::Failed(format!(
                        "{} gave {} outputs for {} labels",
                        self.version,
                        output.len(),
                        self.labels.len()
                    )));
                }
                let label = argmax_label(&self.labels, &output)
                    .ok_or_else(|| ScoreError::Failed("empty output".into()))?;
                Ok(Score {
                    label,
                    probabilities: output,
                    anomaly_score: None,
                    source: "onnx".into(),
                    model_version: self.version.clone(),
                    contributions: Vec::new(),
                    candidate: None,
                })
            }
            OnnxOutput::AnomalyScore { threshold } => {
                let score = *output
                    .first()
                    .ok_or_else(|| ScoreError::Failed("empty output".into()))?;
                let label = self.labels[usize::from(score > threshold)].clone();
                Ok(Score {
                    label,
                    probabilities: vec![],
                    anomaly_score: Some(f64::from(score)),
                    source: "onnx".into(),
                    model_version: self.version.clone(),
                    contributions: Vec::new(),
                    candidate: None,
                })
            }
        }
    }

    /// Each column's share of the verdict by occlusion: how much the verdict's evidence (the
    /// label's probability, or the anomaly score) drops when that column is replaced by its own
    /// window mean (its shape removed, its level kept). Columns whose removal does not lower
    /// the evidence get no share.
    fn occlusion_shares(&self, score: &Score, occluded: &[Vec<f32>]) -> Vec<f32> {
        let evidence = |out: &[f32]| -> Option<f64> {
            match self.output_kind {
                OnnxOutput::Probabilities => {
                    let i = self.labels.iter().position(|l| *l == score.label)?;
                    out.get(i).map(|p| f64::from(*p))
                }
                OnnxOutput::AnomalyScore { .. } => out.first().map(|s| f64::from(*s)),
            }
        };
        let Some(base) = score
            .anomaly_score
            .or_else(|| evidence(&score.probabilities))
        else {
            return vec![];
        };
        let drops: Vec<f64> = occluded
            .iter()
            .map(|o| evidence(o).map_or(0.0, |e| (base - e).max(0.0)))
            .collect();
        vigil_core::scorer::shares(&drops)
    }

    fn inference_error(&self, reason: String) -> OnnxError {
        OnnxError::Inference {
            model: self.version.clone(),
            reason,
        }
    }
}

fn model_error(path: &Path, e: impl std::fmt::Display) -> OnnxError {
    OnnxError::Model {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

#[async_trait]
impl Scorer for OnnxScorer {
    fn labels(&self) -> &[String] {
        &self.labels
    }
    fn version(&self) -> String {
        self.version.clone()
    }
    async fn score(
        &self,
        input: &Matrix,
        _baseline: &mut Option<Baseline>,
    ) -> Result<Score, ScoreError> {
        // The window and its occluded copies go through the model as one batch: one run.
        let occluded = occlusions(input);
        let mut batch: Vec<&Matrix> = vec![input];
        batch.extend(occluded.iter());
        let mut out = self
            .predict(&batch)
            .map_err(|e| ScoreError::Failed(e.to_string()))?;
        let rest = out.split_off(1.min(out.len()));
        let mut score = self.interpret(out.pop().unwrap_or_default())?;
        score.contributions =
            vigil_core::scorer::Contribution::unnamed(&self.occlusion_shares(&score, &rest));
        Ok(score)
    }
}

/// One copy of the window per column, that column replaced by its mean over the window. None
/// for a single column (nothing to tell apart). Costs one model row per column, run in the same
/// batch as the window itself.
pub fn occlusions(input: &Matrix) -> Vec<Matrix> {
    if input.cols < 2 {
        return vec![];
    }
    (0..input.cols)
        .map(|c| {
            let mean = input.column(c).sum::<f32>() / input.rows.max(1) as f32;
            let mut m = input.clone();
            for r in 0..m.rows {
                m.data[r * m.cols + c] = mean;
            }
            m
        })
        .collect()
}

/// Builds scorers the core and this crate know: ONNX and the streaming statistics scorers.
/// Returns `None` for kinds another adapter must build (SageMaker).
pub fn build_scorer(
    spec: &ScorerSpec,
    models_dir: &Path,
) -> Option<Result<Arc<dyn Scorer>, OnnxError>> {
    match spec {
        ScorerSpec::Onnx { .. } => {
            Some(OnnxScorer::from_spec(spec, models_dir).map(|s| Arc::new(s) as Arc<dyn Scorer>))
        }
        ScorerSpec::Zscore(c) => Some(Ok(Arc::new(ZScoreScorer::new(c.clone())))),
        ScorerSpec::Ewma(c) => Some(Ok(Arc::new(EwmaScorer::new(c.clone())))),
        ScorerSpec::LearnedNormal(_) => Some(Ok(Arc::new(
            vigil_core::normal::LearnedNormalScorer::default(),
        ))),
        ScorerSpec::Robust(c) => Some(Ok(Arc::new(vigil_core::streaming::RobustScorer::new(
            c.clone(),
        )))),
        ScorerSpec::Sagemaker { .. } => None,
    }
}

/// A factory for the scorer kinds this crate cannot build (given by the AWS adapter).
pub type ScorerFactory<'a> = dyn Fn(&Profile) -> Option<Result<Arc<dyn Scorer>, String>> + 'a;

/// Loads `models_dir/profiles/*.toml` and builds every profile's scorer. `extra` is asked first,
/// so an adapter can take over a kind (SageMaker).
pub fn load_profiles(
    models_dir: &Path,
    extra: Option<&ScorerFactory<'_>>,
) -> Result<BTreeMap<String, CompiledProfile>, OnnxError> {
    let set = ProfileSet::load_dir(&models_dir.join("profiles"))?;
    compile_profiles(set.profiles.into_values(), models_dir, extra)
}

/// Builds scorers for already-loaded profiles.
pub fn compile_profiles(
    profiles: impl IntoIterator<Item = Profile>,
    models_dir: &Path,
    extra: Option<&ScorerFactory<'_>>,
) -> Result<BTreeMap<String, CompiledProfile>, OnnxError> {
    let mut out = BTreeMap::new();
    for profile in profiles {
        let name = profile.name.clone();
        let scorer =
            match extra.and_then(|f| f(&profile)) {
                Some(built) => built.map_err(|reason| OnnxError::Build {
                    profile: name.clone(),
                    reason,
                })?,
                None => match build_scorer(&profile.scorer, models_dir) {
                    Some(built) => built?,
                    None => return Err(OnnxError::Build {
                        profile: name,
                        reason:
                            "a SageMaker scorer needs the AWS adapter (the Lambda or `--sagemaker`)"
                                .into(),
                    }),
                },
            };
        let compiled =
            CompiledProfile::new(profile, scorer).map_err(|reason| OnnxError::Build {
                profile: name.clone(),
                reason,
            })?;
        out.insert(name, compiled);
    }
    Ok(out)
}
