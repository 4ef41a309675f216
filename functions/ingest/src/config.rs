//! The function's configuration: one typed struct from the environment, validated at cold
//! start. An error lists every missing and every invalid name at once.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Every environment variable the function reads (Terraform sets each of them).
pub const NAMES: &[&str] = &[
    "VIGIL_TABLE_NAME",
    "VIGIL_ALERT_TOPIC_ARN",
    "VIGIL_ARCHIVE_BUCKET",
    "VIGIL_MODELS_BUCKET",
    "VIGIL_REJECTS_QUEUE_URL",
    "VIGIL_IOT_DATA_ENDPOINT",
    "VIGIL_DEFAULT_PROFILE",
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
    /// Bundled models: `*.onnx` and `profiles/*.toml`.
    pub models_dir: PathBuf,
    /// Endpoint used by SageMaker profiles instead of the one they name; `None`: their own.
    pub sagemaker_endpoint: Option<String>,
    /// Whether SageMaker profiles fall back to their bundled ONNX model when the endpoint fails.
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
