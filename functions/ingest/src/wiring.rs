//! Cold start: configuration → SDK clients, models, profiles and scorers, built once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use vigil_aws::{AwsPorts, AwsSettings, SagemakerScorer};
use vigil_core::pipeline::CloseHints;
use vigil_core::scorer::{Baseline, Score, ScoreError, Scorer};
use vigil_core::transform::Matrix;
use vigil_core::{CompiledProfile, Profile, ScorerSpec};
use vigil_onnx::OnnxScorer;

use crate::config::Config;
use crate::handler::App;

/// Where models fetched from S3 are written (Lambda's only writable directory).
pub const FETCHED_MODELS_DIR: &str = "/tmp/vigil-models";

#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("loading models from S3: {0}")]
    Models(#[from] vigil_aws::s3::ModelFetchError),
    #[error("loading profiles from {dir}: {message}")]
    Profiles { dir: PathBuf, message: String },
}

/// What the function holds between invocations.
#[derive(Debug)]
pub struct Runtime {
    pub config: Config,
    pub profiles: BTreeMap<String, CompiledProfile>,
    pub ports: AwsPorts,
    /// The directory the profiles were loaded from (bundled, or fetched from S3).
    pub models_dir: PathBuf,
    pub function: String,
    /// Windows to check again when their missing samples come (see `CloseHints`).
    pub close_hints: CloseHints,
}

impl Runtime {
    pub fn app(&self) -> App<'_> {
        App {
            profiles: &self.profiles,
            ports: self.ports.ports(),
            default_profile: self.config.default_profile.clone(),
            usage: Some(self.ports.usage()),
            function: self.function.clone(),
            print_metrics: true,
            close_hints: self.close_hints.clone(),
            alarm_reports: Some(&self.ports.results),
        }
    }
}

/// Bounds on every AWS request: a stalled endpoint fails its call (and the message, to be
/// retried) long before the function's timeout (30 s by default) kills the process half-way
/// through a close's effects.
pub fn sdk_timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(Duration::from_secs(3))
        .operation_timeout(Duration::from_secs(8))
        .build()
}

pub fn settings(config: &Config) -> AwsSettings {
    AwsSettings {
        table_name: config.table_name.clone(),
        window_ttl: config.window_ttl,
        alert_topic_arn: config.alert_topic_arn.clone(),
        archive_bucket: config.archive_bucket.clone(),
        rejects_queue_url: config.rejects_queue_url.clone(),
        iot_data_endpoint: config.iot_data_endpoint.clone(),
        registry_cache: Duration::from_secs(60),
        baselines_bucket: config.baselines_bucket.clone(),
        baseline_ttl: config.baseline_ttl,
    }
}

/// Builds everything from a validated configuration and an SDK configuration.
/// ONNX sessions are built with basic graph optimisation only: the optimiser's other passes
/// would page in code worth ~0.5 MB of the function's peak memory (docs/aws.md), for models
/// that score a window in well under a millisecond either way.
pub async fn build(
    config: Config,
    sdk: &SdkConfig,
    function: &str,
) -> Result<Runtime, WiringError> {
    vigil_onnx::use_graph_optimization(vigil_onnx::GraphOptimization::Basic);
    let mut models_dir = config.models_dir.clone();
    if let Some(bucket) = &config.models_bucket {
        let dest = Path::new(FETCHED_MODELS_DIR);
        let s3 = vigil_aws::s3_client(sdk);
        match vigil_aws::s3::fetch_models(&s3, bucket, dest).await? {
            Some(fetched) => {
                tracing::info!(bucket = %bucket, profiles = ?fetched.profiles, models = ?fetched.models, "models loaded from S3");
                models_dir = dest.to_path_buf();
            }
            None => {
                tracing::info!(bucket = %bucket, "no profiles/index.json in the models bucket: using the bundled models");
            }
        }
    }
    // The configuration against the profiles, every problem at once, before any scorer is built.
    let set = vigil_core::ProfileSet::load_dir(&models_dir.join("profiles")).map_err(|e| {
        WiringError::Profiles {
            dir: models_dir.clone(),
            message: e.to_string(),
        }
    })?;
    config.check_profiles(set.profiles.values())?;
    let sagemaker = vigil_aws::sagemaker_client(sdk);
    let profiles = load_profiles(&models_dir, &config, &sagemaker)?;
    let mut ports = AwsPorts::new(sdk, &settings(&config));
    // Only streaming-statistics profiles have a baseline: the others never ask S3 for one.
    ports.baselines = ports.baselines.take().map(|b| {
        b.only_profiles(
            profiles
                .values()
                .filter(|p| vigil_core::calibrate::has_baseline(&p.profile.scorer))
                .map(|p| p.profile.name.clone()),
        )
    });
    if let Some(b) = &ports.baselines {
        tracing::info!(bucket = %b.bucket(), ttl_s = b.ttl().as_secs(), "calibrated baselines read from S3");
    }
    Ok(Runtime {
        config,
        profiles,
        ports,
        models_dir,
        function: function.to_string(),
        close_hints: CloseHints::default(),
    })
}

/// Loads every profile of `models_dir/profiles`; SageMaker profiles get a [`SagemakerScorer`]
/// (endpoint overridden by `VIGIL_SAGEMAKER_ENDPOINT`, fallback model when
/// `VIGIL_SAGEMAKER_FALLBACK` is true), the others are built by `vigil-onnx`.
pub fn load_profiles(
    models_dir: &Path,
    config: &Config,
    sagemaker: &aws_sdk_sagemakerruntime::Client,
) -> Result<BTreeMap<String, CompiledProfile>, WiringError> {
    let factory = |profile: &Profile| -> Option<Result<Arc<dyn Scorer>, String>> {
        if let ScorerSpec::Onnx { model, labels, .. } = &profile.scorer {
            // Checked now, built on first use: a missing file fails the cold start.
            if !models_dir.join(model).is_file() {
                return Some(Err(format!(
                    "model {} is missing",
                    models_dir.join(model).display()
                )));
            }
            return Some(Ok(Arc::new(LazyOnnx::new(
                &profile.scorer,
                labels,
                models_dir,
            ))));
        }
        let ScorerSpec::Sagemaker {
            endpoint,
            labels,
            format,
            timeout_ms,
            fallback_model,
        } = &profile.scorer
        else {
            return None;
        };
        let fallback: Option<Arc<dyn Scorer>> = match (config.sagemaker_fallback, fallback_model) {
            (true, Some(model)) => {
                if !models_dir.join(model).is_file() {
                    return Some(Err(format!(
                        "fallback model {} is missing",
                        models_dir.join(model).display()
                    )));
                }
                Some(Arc::new(LazyOnnx::new(&profile.scorer, labels, models_dir)))
            }
            (true, None) => {
                return Some(Err(
                    "VIGIL_SAGEMAKER_FALLBACK is true but the profile names no fallback_model"
                        .into(),
                ))
            }
            (false, _) => None,
        };
        let endpoint = config
            .sagemaker_endpoint
            .clone()
            .unwrap_or_else(|| endpoint.clone());
        Some(Ok(Arc::new(SagemakerScorer::new(
            sagemaker.clone(),
            endpoint,
            labels.clone(),
            *format,
            Duration::from_millis(*timeout_ms),
            fallback,
        ))))
    };
    vigil_onnx::load_profiles(models_dir, Some(&factory)).map_err(|e| WiringError::Profiles {
        dir: models_dir.to_path_buf(),
        message: e.to_string(),
    })
}

/// An ONNX scorer built on first use, so a cold start builds only the models its first devices
/// need; inference runs on a blocking thread, off the (single-threaded) executor.
struct LazyOnnx {
    spec: ScorerSpec,
    labels: Vec<String>,
    models_dir: PathBuf,
    built: OnceLock<Result<Arc<OnnxScorer>, String>>,
}

impl LazyOnnx {
    fn new(spec: &ScorerSpec, labels: &[String], models_dir: &Path) -> Self {
        Self {
            spec: spec.clone(),
            labels: labels.to_vec(),
            models_dir: models_dir.to_path_buf(),
            built: OnceLock::new(),
        }
    }

    fn scorer(&self) -> Result<&Arc<OnnxScorer>, ScoreError> {
        self.built
            .get_or_init(|| {
                let started = std::time::Instant::now();
                let built = OnnxScorer::from_spec(&self.spec, &self.models_dir)
                    .map(Arc::new)
                    .map_err(|e| e.to_string());
                tracing::info!(
                    elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
                    ok = built.is_ok(),
                    "model loaded on first use"
                );
                built
            })
            .as_ref()
            .map_err(|e| ScoreError::Failed(e.clone()))
    }
}

#[async_trait]
impl Scorer for LazyOnnx {
    fn labels(&self) -> &[String] {
        &self.labels
    }

    fn version(&self) -> String {
        match self.scorer() {
            Ok(s) => s.version(),
            Err(e) => format!("unavailable ({e})"),
        }
    }

    async fn score(
        &self,
        input: &Matrix,
        _baseline: &mut Option<Baseline>,
    ) -> Result<Score, ScoreError> {
        let scorer = self.scorer()?.clone();
        let input = input.clone();
        let run = scorer.clone();
        let out = tokio::task::spawn_blocking(move || run.predict(&[&input]))
            .await
            .map_err(|e| ScoreError::Failed(format!("inference thread: {e}")))?
            .map_err(|e| ScoreError::Failed(e.to_string()))?;
        scorer.interpret(out.into_iter().next().unwrap_or_default())
    }
}
