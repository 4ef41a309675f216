//! The function's configuration: one typed struct from the environment, validated at cold
//! start. An error lists every missing and every invalid name at once.
//!
//! Two steps: [`Config::from_lookup`] checks each variable on its own, [`Config::check_profiles`]
//! checks them against the profiles that were loaded (the names of `VIGIL_DEFAULT_PROFILE` and
//! `VIGIL_REQUIRED_PROFILES` exist; `VIGIL_SAGEMAKER_ENDPOINT` is used by a SageMaker profile;
//! with `VIGIL_SAGEMAKER_FALLBACK` every SageMaker profile names its fallback model). Terraform
//! makes the same profile checks at plan time (infra/modules/profiles).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use vigil_core::{Profile, ScorerSpec};

/// Every environment variable the function reads (Terraform sets each of them).
pub const NAMES: &[&str] = &[
    "VIGIL_TABLE_NAME",
    "VIGIL_ALERT_TOPIC_ARN",
    "VIGIL_ARCHIVE_BUCKET",
    "VIGIL_MODELS_BUCKET",
    "VIGIL_REJECTS_QUEUE_URL",
    "VIGIL_IOT_DATA_ENDPOINT",
    "VIGIL_DEFAULT_PROFILE",
    "VIGIL_REQUIRED_PROFILES",
    "VIGIL_MODELS_DIR",
    "VIGIL_SAGEMAKER_ENDPOINT",
    "VIGIL_SAGEMAKER_FALLBACK",
    "VIGIL_WINDOW_TTL_HOURS",
    "VIGIL_BASELINES_BUCKET",
    "VIGIL_BASELINE_TTL_S",
    "ORT_DYLIB_PATH",
];

/// Default of `VIGIL_BASELINE_TTL_S`: how long a calibrated baseline is used before S3 is asked
/// whether a newer one was published.
pub const DEFAULT_BASELINE_TTL_S: u64 = 60;
/// Largest `VIGIL_BASELINE_TTL_S` accepted.
pub const MAX_BASELINE_TTL_S: u64 = 3600;

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The one DynamoDB table (windows, chunks, device state, registry).
    pub table_name: String,
    pub alert_topic_arn: String,
    /// Bucket closed windows are archived to (under `windows/`).
    pub archive_bucket: String,
    /// Bucket models and profiles are read from at cold start; `None`: the bundled ones.
    pub models_bucket: Option<String>,
    /// SQS queue rejected messages are sent to.
    pub rejects_queue_url: String,
    /// The account's `iot:Data-ATS` endpoint (https URL).
    pub iot_data_endpoint: String,
    /// Profile of devices the registry does not know.
    pub default_profile: String,
    /// Profiles the deployment scores with (`VIGIL_REQUIRED_PROFILES`, comma separated: the
    /// profiles of the device registry Terraform wrote); cold start fails when one is missing.
    pub required_profiles: Vec<String>,
    /// Bundled models: `*.onnx` and `profiles/*.toml`.
    pub models_dir: PathBuf,
    /// The deployment's SageMaker endpoint: every `kind = "sagemaker"` profile is scored with it
    /// instead of the endpoint the profile names (at least one such profile must be loaded, or
    /// the endpoint would never be called); `None`: each profile's own endpoint.
    pub sagemaker_endpoint: Option<String>,
    /// Whether SageMaker profiles fall back to their bundled ONNX model when the endpoint fails
    /// (each of them must then name a `fallback_model`).
    pub sagemaker_fallback: bool,
    /// How long window data is kept after its last write.
    pub window_ttl: Duration,
    /// Bucket of baselines published by `vigil calibrate` (`baselines/<profile>/<device>.json`);
    /// `None`: streaming scorers learn online only.
    pub baselines_bucket: Option<String>,
    /// How long a baseline read from S3 is used before S3 is asked again (0: every window).
    pub baseline_ttl: Duration,
    /// ONNX Runtime shared library (read by `ort` itself; checked here).
    pub ort_dylib_path: Option<PathBuf>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub missing: Vec<&'static str>,
    pub invalid: Vec<(&'static str, String)>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid configuration:")?;
        if !self.missing.is_empty() {
            write!(f, " missing {}", self.missing.join(", "))?;
        }
        if !self.invalid.is_empty() {
            if !self.missing.is_empty() {
                f.write_str(";")?;
            }
            let list: Vec<String> = self
                .invalid
                .iter()
                .map(|(n, why)| format!("{n} ({why})"))
                .collect();
            write!(f, " invalid {}", list.join(", "))?;
        }
        Ok(())
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads through `lookup` (tests pass a map). `LAMBDA_TASK_ROOT` gives the default models
    /// directory when `VIGIL_MODELS_DIR` is unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut err = ConfigError::default();
        let get = |name: &str| lookup(name).map(|v| v.trim().to_string());
        let required = |name: &'static str, err: &mut ConfigError| match get(name) {
            Some(v) if !v.is_empty() => v,
            _ => {
                err.missing.push(name);
                String::new()
            }
        };
        let optional = |name: &str| get(name).filter(|v| !v.is_empty());

        let table_name = required("VIGIL_TABLE_NAME", &mut err);
        let alert_topic_arn = required("VIGIL_ALERT_TOPIC_ARN", &mut err);
        let archive_bucket = required("VIGIL_ARCHIVE_BUCKET", &mut err);
        let rejects_queue_url = required("VIGIL_REJECTS_QUEUE_URL", &mut err);
        let iot_data_endpoint = required("VIGIL_IOT_DATA_ENDPOINT", &mut err);
        let default_profile = required("VIGIL_DEFAULT_PROFILE", &mut err);
        let ttl_text = required("VIGIL_WINDOW_TTL_HOURS", &mut err);
        let models_bucket = optional("VIGIL_MODELS_BUCKET");
        let sagemaker_endpoint = optional("VIGIL_SAGEMAKER_ENDPOINT");
        let required_profiles: Vec<String> = optional("VIGIL_REQUIRED_PROFILES")
            .map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        if let Some(bad) = required_profiles.iter().find(|p| !is_profile_name(p)) {
            err.invalid.push((
                "VIGIL_REQUIRED_PROFILES",
                format!("{bad:?} is not a profile name (a-z, 0-9, '-', '_')"),
            ));
        }
        let baselines_bucket = optional("VIGIL_BASELINES_BUCKET");
        let baseline_ttl = match optional("VIGIL_BASELINE_TTL_S") {
            None => Duration::from_secs(DEFAULT_BASELINE_TTL_S),
            Some(text) => match text.parse::<u64>() {
                Ok(s) if s <= MAX_BASELINE_TTL_S => Duration::from_secs(s),
                _ => {
                    err.invalid.push((
                        "VIGIL_BASELINE_TTL_S",
                        format!(
                            "{text:?} is not a whole number of seconds within 0..={MAX_BASELINE_TTL_S}"
                        ),
                    ));
                    Duration::ZERO
                }
            },
        };
        let models_dir = match optional("VIGIL_MODELS_DIR") {
            Some(d) => PathBuf::from(d),
            None => match lookup("LAMBDA_TASK_ROOT") {
                Some(root) => PathBuf::from(root).join("models"),
                None => {
                    err.missing.push("VIGIL_MODELS_DIR");
                    PathBuf::new()
                }
            },
        };
        let ort_dylib_path = optional("ORT_DYLIB_PATH").map(PathBuf::from);

        if !table_name.is_empty() && !(3..=255).contains(&table_name.len()) {
            err.invalid.push((
                "VIGIL_TABLE_NAME",
                "a table name has 3 to 255 characters".into(),
            ));
        }
        if !alert_topic_arn.is_empty() && !alert_topic_arn.starts_with("arn:") {
            err.invalid.push((
                "VIGIL_ALERT_TOPIC_ARN",
                format!("{alert_topic_arn:?} is not an ARN"),
            ));
        }
        for (name, url) in [
            ("VIGIL_REJECTS_QUEUE_URL", &rejects_queue_url),
            ("VIGIL_IOT_DATA_ENDPOINT", &iot_data_endpoint),
        ] {
            if !(url.is_empty() || url.starts_with("https://") || url.starts_with("http://")) {
                err.invalid
                    .push((name, format!("{url:?} is not an http(s) URL")));
            }
        }
        let sagemaker_fallback = match optional("VIGIL_SAGEMAKER_FALLBACK").as_deref() {
            None | Some("false" | "0") => false,
            Some("true" | "1") => true,
            Some(other) => {
                err.invalid.push((
                    "VIGIL_SAGEMAKER_FALLBACK",
                    format!("{other:?} is not true or false"),
                ));
                false
            }
        };
        let window_ttl = match ttl_text.parse::<u64>() {
            Ok(h) if (1..=8760).contains(&h) => Duration::from_secs(h * 3600),
            _ if ttl_text.is_empty() => Duration::ZERO,
            _ => {
                err.invalid.push((
                    "VIGIL_WINDOW_TTL_HOURS",
                    format!("{ttl_text:?} is not a whole number of hours within 1..=8760"),
                ));
                Duration::ZERO
            }
        };
        if !models_dir.as_os_str().is_empty() && !models_dir.join("profiles").is_dir() {
            err.invalid.push((
                "VIGIL_MODELS_DIR",
                format!("{} has no profiles/ directory", models_dir.display()),
            ));
        }
        if let Some(p) = &ort_dylib_path {
            if !p.is_file() {
                err.invalid
                    .push(("ORT_DYLIB_PATH", format!("{} is not a file", p.display())));
            }
        }
        if !err.missing.is_empty() || !err.invalid.is_empty() {
            return Err(err);
        }
        Ok(Self {
            table_name,
            alert_topic_arn,
            archive_bucket,
            models_bucket,
            rejects_queue_url,
            iot_data_endpoint,
            default_profile,
            required_profiles,
            models_dir,
            sagemaker_endpoint,
            sagemaker_fallback,
            window_ttl,
            baselines_bucket,
            baseline_ttl,
            ort_dylib_path,
        })
    }
}

/// What a profile name may be (the same rule as Terraform's validation of `devices`).
fn is_profile_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.len() <= 64
}

impl Config {
    /// Checks the configuration against the profiles that were loaded; the error lists every
    /// problem at once, each under the variable that causes it.
    pub fn check_profiles<'a>(
        &self,
        profiles: impl IntoIterator<Item = &'a Profile>,
    ) -> Result<(), ConfigError> {
        let profiles: Vec<&Profile> = profiles.into_iter().collect();
        let known: Vec<&str> = profiles.iter().map(|p| p.name.as_str()).collect();
        let list = |names: &[&str]| names.join(", ");
        let mut err = ConfigError::default();
        if !known.contains(&self.default_profile.as_str()) {
            err.invalid.push((
                "VIGIL_DEFAULT_PROFILE",
                format!(
                    "{:?} is not among the loaded profiles ({})",
                    self.default_profile,
                    list(&known)
                ),
            ));
        }
        let unknown: Vec<&str> = self
            .required_profiles
            .iter()
            .map(String::as_str)
            .filter(|p| !known.contains(p))
            .collect();
        if !unknown.is_empty() {
            err.invalid.push((
                "VIGIL_REQUIRED_PROFILES",
                format!(
                    "{} not among the loaded profiles ({})",
                    list(&unknown),
                    list(&known)
                ),
            ));
        }
        let sagemaker: Vec<&Profile> = profiles
            .iter()
            .copied()
            .filter(|p| matches!(p.scorer, ScorerSpec::Sagemaker { .. }))
            .collect();
        if let (Some(endpoint), true) = (&self.sagemaker_endpoint, sagemaker.is_empty()) {
            err.invalid.push((
                "VIGIL_SAGEMAKER_ENDPOINT",
                format!(
                    "{endpoint:?} would never be called: no loaded profile has scorer kind = \"sagemaker\""
                ),
            ));
        }
        let unguarded: Vec<&str> = sagemaker
            .iter()
            .filter(|p| {
                matches!(
                    p.scorer,
                    ScorerSpec::Sagemaker {
                        fallback_model: None,
                        ..
                    }
                )
            })
            .map(|p| p.name.as_str())
            .collect();
        if self.sagemaker_fallback && !unguarded.is_empty() {
            err.invalid.push((
                "VIGIL_SAGEMAKER_FALLBACK",
                format!(
                    "true, but the SageMaker profiles {} name no fallback_model (add one, or set it false)",
                    list(&unguarded)
                ),
            ));
        }
        if err.invalid.is_empty() {
            Ok(())
        } else {
            Err(err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn models_dir() -> String {
        // A directory with a profiles/ subdirectory.
        let dir = std::env::temp_dir().join(format!("vigil-config-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("profiles")).unwrap();
        dir.display().to_string()
    }

    fn full() -> HashMap<&'static str, String> {
        HashMap::from([
            ("VIGIL_TABLE_NAME", "vigil".to_string()),
            (
                "VIGIL_ALERT_TOPIC_ARN",
                "arn:aws:sns:us-east-1:123456789012:alerts".into(),
            ),
            ("VIGIL_ARCHIVE_BUCKET", "archive".into()),
            ("VIGIL_MODELS_BUCKET", "".into()),
            (
                "VIGIL_REJECTS_QUEUE_URL",
                "https://sqs.us-east-1.amazonaws.com/1/rejects".into(),
            ),
            (
                "VIGIL_IOT_DATA_ENDPOINT",
                "https://abc-ats.iot.us-east-1.amazonaws.com".into(),
            ),
            ("VIGIL_DEFAULT_PROFILE", "hydraulic-cooler".into()),
            ("VIGIL_MODELS_DIR", models_dir()),
            ("VIGIL_SAGEMAKER_ENDPOINT", "".into()),
            ("VIGIL_SAGEMAKER_FALLBACK", "true".into()),
            ("VIGIL_WINDOW_TTL_HOURS", "48".into()),
            ("VIGIL_BASELINES_BUCKET", "models".into()),
            ("VIGIL_BASELINE_TTL_S", "15".into()),
        ])
    }

    fn load(env: &HashMap<&'static str, String>) -> Result<Config, ConfigError> {
        Config::from_lookup(|k| env.get(k).cloned())
    }

    #[test]
    fn reads_a_full_environment() {
        let c = load(&full()).unwrap();
        assert_eq!(c.window_ttl, Duration::from_secs(48 * 3600));
        assert_eq!(c.models_bucket, None);
        assert_eq!(c.sagemaker_endpoint, None);
        assert!(c.sagemaker_fallback);
        assert_eq!(c.baselines_bucket.as_deref(), Some("models"));
        assert_eq!(c.baseline_ttl, Duration::from_secs(15));
    }

    #[test]
    fn baselines_are_optional_with_a_default_ttl() {
        let mut env = full();
        env.remove("VIGIL_BASELINES_BUCKET");
        env.remove("VIGIL_BASELINE_TTL_S");
        let c = load(&env).unwrap();
        assert_eq!(c.baselines_bucket, None);
        assert_eq!(c.baseline_ttl, Duration::from_secs(DEFAULT_BASELINE_TTL_S));
        env.insert("VIGIL_BASELINE_TTL_S", "0".into());
        assert_eq!(load(&env).unwrap().baseline_ttl, Duration::ZERO);
        for bad in ["-1", "a minute", "3601"] {
            env.insert("VIGIL_BASELINE_TTL_S", bad.into());
            let e = load(&env).unwrap_err();
            assert_eq!(e.invalid[0].0, "VIGIL_BASELINE_TTL_S", "{bad}");
        }
    }

    #[test]
    fn lists_every_missing_and_invalid_name() {
        let mut env = full();
        env.remove("VIGIL_TABLE_NAME");
        env.remove("VIGIL_DEFAULT_PROFILE");
        env.insert("VIGIL_ARCHIVE_BUCKET", "  ".into());
        env.insert("VIGIL_WINDOW_TTL_HOURS", "two days".into());
        env.insert("VIGIL_SAGEMAKER_FALLBACK", "maybe".into());
        env.insert("VIGIL_ALERT_TOPIC_ARN", "alerts".into());
        let e = load(&env).unwrap_err();
        assert_eq!(
            e.missing,
            vec![
                "VIGIL_TABLE_NAME",
                "VIGIL_ARCHIVE_BUCKET",
                "VIGIL_DEFAULT_PROFILE"
            ]
        );
        let invalid: Vec<&str> = e.invalid.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            invalid,
            vec![
                "VIGIL_ALERT_TOPIC_ARN",
                "VIGIL_SAGEMAKER_FALLBACK",
                "VIGIL_WINDOW_TTL_HOURS"
            ]
        );
        let text = e.to_string();
        for name in [
            "VIGIL_TABLE_NAME",
            "VIGIL_DEFAULT_PROFILE",
            "VIGIL_WINDOW_TTL_HOURS",
        ] {
            assert!(text.contains(name), "{text}");
        }
    }

    const PROFILE: &str = r#"
name = "NAME"
channels = ["a"]
sample_rate_hz = 1.0
[window]
size = 4
hop = 4
[scorer]
SCORER
labels = ["bad", "ok"]
[alert]
unhealthy = ["bad"]
"#;

    fn profile(name: &str, scorer: &str) -> Profile {
        let text = PROFILE.replace("NAME", name).replace("SCORER", scorer);
        Profile::from_toml(&text, name).unwrap()
    }

    fn onnx(name: &str) -> Profile {
        profile(name, "kind = \"onnx\"\nmodel = \"m.onnx\"")
    }

    fn sagemaker(name: &str, fallback: bool) -> Profile {
        let fb = if fallback {
            "\nfallback_model = \"m.onnx\""
        } else {
            ""
        };
        profile(
            name,
            &format!("kind = \"sagemaker\"\nendpoint = \"own\"{fb}"),
        )
    }

    #[test]
    fn required_profiles_are_a_comma_list_of_names() {
        let mut env = full();
        assert!(load(&env).unwrap().required_profiles.is_empty());
        env.insert(
            "VIGIL_REQUIRED_PROFILES",
            "hydraulic-cooler, rmg941,".into(),
        );
        assert_eq!(
            load(&env).unwrap().required_profiles,
            vec!["hydraulic-cooler", "rmg941"]
        );
        env.insert("VIGIL_REQUIRED_PROFILES", "ok,Not A Name".into());
        let e = load(&env).unwrap_err();
        assert_eq!(e.invalid[0].0, "VIGIL_REQUIRED_PROFILES");
        assert!(e.to_string().contains("Not A Name"), "{e}");
    }

    #[test]
    fn a_coherent_configuration_passes_the_profile_check() {
        let mut env = full();
        env.insert("VIGIL_REQUIRED_PROFILES", "hydraulic-cooler,rig".into());
        let c = load(&env).unwrap();
        let loaded = [onnx("hydraulic-cooler"), onnx("rig"), onnx("unused")];
        assert_eq!(c.check_profiles(&loaded), Ok(()));
        // SageMaker on, with a SageMaker profile that has its fallback model.
        env.insert("VIGIL_SAGEMAKER_ENDPOINT", "vigil-scorer".into());
        let c = load(&env).unwrap();
        let loaded = [onnx("hydraulic-cooler"), onnx("rig"), sagemaker("sm", true)];
        assert_eq!(c.check_profiles(&loaded), Ok(()));
        // Fallback off: a SageMaker profile without fallback model is fine.
        env.insert("VIGIL_SAGEMAKER_FALLBACK", "false".into());
        let c = load(&env).unwrap();
        let loaded = [
            onnx("hydraulic-cooler"),
            onnx("rig"),
            sagemaker("sm", false),
        ];
        assert_eq!(c.check_profiles(&loaded), Ok(()));
    }

    #[test]
    fn the_profile_check_lists_every_incoherence_at_once() {
        let mut env = full();
        env.insert("VIGIL_DEFAULT_PROFILE", "hydraulic-coler".into());
        env.insert(
            "VIGIL_REQUIRED_PROFILES",
            "hydraulic-cooler,rigg,pump".into(),
        );
        env.insert("VIGIL_SAGEMAKER_ENDPOINT", "vigil-scorer".into());
        let c = load(&env).unwrap();
        // The endpoint is set but no SageMaker profile is loaded: it would never be called.
        let e = c
            .check_profiles(&[onnx("hydraulic-cooler"), onnx("pump")])
            .unwrap_err();
        let names: Vec<&str> = e.invalid.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            vec![
                "VIGIL_DEFAULT_PROFILE",
                "VIGIL_REQUIRED_PROFILES",
                "VIGIL_SAGEMAKER_ENDPOINT"
            ]
        );
        let text = e.to_string();
        for needle in ["\"hydraulic-coler\"", "rigg not among", "never be called"] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
        assert!(!text.contains("pump not"), "{text}");
        // The default fallback (true) with a SageMaker profile that has no fallback model.
        let e = c
            .check_profiles(&[
                onnx("hydraulic-coler"),
                onnx("rigg"),
                onnx("hydraulic-cooler"),
                onnx("pump"),
                sagemaker("sm-a", false),
                sagemaker("sm-b", true),
            ])
            .unwrap_err();
        assert_eq!(e.invalid.len(), 1, "{e}");
        assert_eq!(e.invalid[0].0, "VIGIL_SAGEMAKER_FALLBACK");
        assert!(
            e.invalid[0].1.contains("sm-a") && !e.invalid[0].1.contains("sm-b"),
            "{e}"
        );
    }

    #[test]
    fn models_dir_defaults_to_the_task_root() {
        let mut env = full();
        env.remove("VIGIL_MODELS_DIR");
        let e = load(&env).unwrap_err();
        assert_eq!(e.missing, vec!["VIGIL_MODELS_DIR"]);
        let root = std::env::temp_dir().join(format!("vigil-root-{}", std::process::id()));
        std::fs::create_dir_all(root.join("models/profiles")).unwrap();
        let c = Config::from_lookup(|k| {
            if k == "LAMBDA_TASK_ROOT" {
                Some(root.display().to_string())
            } else {
                env.get(k).cloned()
            }
        })
        .unwrap();
        assert_eq!(c.models_dir, root.join("models"));
    }
}
