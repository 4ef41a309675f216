//! S3: closed windows archived for retraining (and read back by `vigil calibrate`), and
//! models/profiles fetched at cold start.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use vigil_core::ports::{ClosedWindow, PortError, WindowArchive, WindowResult};
use vigil_core::Profile;

use crate::error::{is_retryable, port_error};
use crate::time::date;

const PORT: &str = "archive";

/// Writes each closed window as one JSON object under
/// `windows/profile=<profile>/date=<YYYY-MM-DD>/device=<device>/<window>.json` (Hive-style
/// partitions, so Athena or Glue can prune by profile, day and device). The date is the window's
/// first sample time (device time), so a retry writes the very same key.
#[derive(Clone, Debug)]
pub struct S3Archive {
    client: Client,
    bucket: String,
}

impl S3Archive {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }
}

pub fn archive_key(window: &ClosedWindow) -> String {
    result_key(&window.result)
}

fn result_key(r: &WindowResult) -> String {
    format!(
        "{ARCHIVE_PREFIX}/profile={}/date={}/device={}/{:020}.json",
        r.profile,
        date(r.ts_start),
        r.device,
        r.window
    )
}

#[async_trait]
impl WindowArchive for S3Archive {
    fn tells_contents(&self) -> bool {
        true
    }

    async fn archive(&self, window: &ClosedWindow) -> Result<(), PortError> {
        let key = archive_key(window);
        let body = serde_json::to_vec(window)
            .map_err(|e| PortError::permanent(PORT, format!("{key}: {e}")))?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/json")
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| port_error(PORT, &format!("put s3://{}/{key}", self.bucket), e))?;
        Ok(())
    }

    /// A `HeadObject` (needs `s3:GetObject` on the key). Missing answers 404, or 403 without
    /// `s3:ListBucket` (the function has none): both mean "not archived", so the effects are
    /// sent again (at-least-once) rather than lost.
    async fn contains(&self, result: &WindowResult) -> Result<bool, PortError> {
        let key = result_key(result);
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e)
                if e.raw_response()
                    .is_some_and(|r| matches!(r.status().as_u16(), 403 | 404)) =>
            {
                Ok(false)
            }
            Err(e) => Err(port_error(
                PORT,
                &format!("head s3://{}/{key}", self.bucket),
                e,
            )),
        }
    }

    /// A `DeleteObject` (needs `s3:DeleteObject` on the key; in a versioned bucket it adds a
    /// delete marker, and `HeadObject` then answers 404). S3 answers a missing key with 204.
    async fn withdraw(&self, result: &WindowResult) -> Result<(), PortError> {
        let key = result_key(result);
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| port_error(PORT, &format!("delete s3://{}/{key}", self.bucket), e))?;
        Ok(())
    }
}

/// Prefix under which [`S3Archive`] writes closed windows.
pub const ARCHIVE_PREFIX: &str = "windows";

/// One archived window of a device, as its key names it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ArchivedKey {
    /// `YYYY-MM-DD` partition (device time of the window's first sample).
    pub date: String,
    pub window: u64,
    pub key: String,
}

/// The archived windows of one device and profile under `prefix` (the archive's `windows`, or
/// wherever a copy of it lives), in (date, window) order; only partitions on or after `since`
/// (`YYYY-MM-DD`) when given. Lists the profile's date partitions first, then the device's keys
/// in each: no scan of other devices' objects. Needs `s3:ListBucket` (operators have it; the
/// ingest function does not).
pub async fn list_archived(
    client: &Client,
    bucket: &str,
    prefix: &str,
    profile: &str,
    device: &str,
    since: Option<&str>,
) -> Result<Vec<ArchivedKey>, PortError> {
    let root = match prefix.trim_matches('/') {
        "" => String::new(),
        p => format!("{p}/"),
    };
    let dates_prefix = format!("{root}profile={profile}/date=");
    let mut dates = Vec::new();
    let mut token = None;
    loop {
        let out = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(&dates_prefix)
            .delimiter("/")
            .set_continuation_token(token)
            .send()
            .await
            .map_err(|e| port_error(PORT, &format!("list s3://{bucket}/{dates_prefix}"), e))?;
        for p in out.common_prefixes() {
            if let Some(date) = p
                .prefix()
                .and_then(|p| p.strip_prefix(&dates_prefix))
                .map(|d| d.trim_end_matches('/'))
            {
                if since.is_none_or(|s| date >= s) {
                    dates.push(date.to_string());
                }
            }
        }
        match out.next_continuation_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    let mut keys = Vec::new();
    for date in dates {
        let device_prefix = format!("{dates_prefix}{date}/device={device}/");
        let mut token = None;
        loop {
            let out = client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(&device_prefix)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| port_error(PORT, &format!("list s3://{bucket}/{device_prefix}"), e))?;
            for o in out.contents() {
                let Some(key) = o.key() else { continue };
                let window = key
                    .strip_prefix(&device_prefix)
                    .and_then(|n| n.strip_suffix(".json"))
                    .and_then(|n| n.parse::<u64>().ok());
                if let Some(window) = window {
                    keys.push(ArchivedKey {
                        date: date.clone(),
                        window,
                        key: key.to_string(),
                    });
                }
            }
            match out.next_continuation_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
    }
    keys.sort();
    Ok(keys)
}

/// Reads one archived window.
pub async fn get_archived(
    client: &Client,
    bucket: &str,
    key: &str,
) -> Result<ClosedWindow, PortError> {
    let out = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| port_error(PORT, &format!("get s3://{bucket}/{key}"), e))?;
    let bytes = out
        .body
        .collect()
        .await
        .map_err(|e| PortError::retryable(PORT, format!("s3://{bucket}/{key}: {e}")))?
        .into_bytes();
    serde_json::from_slice(&bytes).map_err(|e| {
        PortError::permanent(
            PORT,
            format!("s3://{bucket}/{key}: not a closed window: {e}"),
        )
    })
}

#[derive(Debug, thiserror::Error)]
pub enum ModelFetchError {
    #[error("s3://{bucket}/{key}: {message}")]
    S3 {
        bucket: String,
        key: String,
        message: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("s3://{bucket}/profiles/index.json: {message}")]
    Index { bucket: String, message: String },
    #[error("{0}")]
    Profile(String),
}

/// What [`fetch_models`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Fetched {
    pub profiles: Vec<String>,
    pub models: Vec<String>,
}

/// Downloads the models and profiles a deployment uses from `bucket` into `dest` (laid out like
/// the bundled directory: `*.onnx` and `profiles/*.toml`).
///
/// The function may only `GetObject` (no `ListBucket`), so the bucket says what it holds in
/// `profiles/index.json`: a JSON array of profile names. Each name is fetched from
/// `profiles/<name>.toml`, and each model file a profile names from `models/<file>`.
/// Returns `Ok(None)` when the bucket has no index: the bundled models are used.
pub async fn fetch_models(
    client: &Client,
    bucket: &str,
    dest: &Path,
) -> Result<Option<Fetched>, ModelFetchError> {
    let Some(index) = get_optional(client, bucket, "profiles/index.json").await? else {
        return Ok(None);
    };
    let names: Vec<String> =
        serde_json::from_slice(&index).map_err(|e| ModelFetchError::Index {
            bucket: bucket.into(),
            message: format!("expected a JSON array of profile names: {e}"),
        })?;
    let profiles_dir = dest.join("profiles");
    std::fs::create_dir_all(&profiles_dir).map_err(|source| ModelFetchError::Io {
        path: profiles_dir.clone(),
        source,
    })?;
    let mut fetched = Fetched::default();
    for name in names {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ModelFetchError::Index {
                bucket: bucket.into(),
                message: format!("{name:?} is not a profile name"),
            });
        }
        let key = format!("profiles/{name}.toml");
        let text = get_required(client, bucket, &key).await?;
        let path = profiles_dir.join(format!("{name}.toml"));
        write(&path, &text)?;
        let profile = Profile::load(&path).map_err(|e| ModelFetchError::Profile(e.to_string()))?;
        fetched.profiles.push(name);
        let files = match &profile.scorer {
            vigil_core::ScorerSpec::Onnx { model, .. } => vec![model.clone()],
            vigil_core::ScorerSpec::Sagemaker { fallback_model, .. } => {
                fallback_model.iter().cloned().collect()
            }
            _ => vec![],
        };
        for file in files {
            if fetched.models.contains(&file) {
                continue;
            }
            let data = get_required(client, bucket, &format!("models/{file}")).await?;
            write(&dest.join(&file), &data)?;
            fetched.models.push(file);
        }
    }
    Ok(Some(fetched))
}

fn write(path: &Path, data: &[u8]) -> Result<(), ModelFetchError> {
    std::fs::write(path, data).map_err(|source| ModelFetchError::Io {
        path: path.to_path_buf(),
        source,
    })
}

async fn get_required(
    client: &Client,
    bucket: &str,
    key: &str,
) -> Result<Vec<u8>, ModelFetchError> {
    get_optional(client, bucket, key)
        .await?
        .ok_or_else(|| ModelFetchError::S3 {
            bucket: bucket.into(),
            key: key.into(),
            message: "not found (listed in profiles/index.json)".into(),
        })
}

/// The object, or `None` when it does not exist. Without `ListBucket` S3 answers 403 rather
/// than 404 for a missing key, so both count as absent.
async fn get_optional(
    client: &Client,
    bucket: &str,
    key: &str,
) -> Result<Option<Vec<u8>>, ModelFetchError> {
    let err = |message: String| ModelFetchError::S3 {
        bucket: bucket.into(),
        key: key.into(),
        message,
    };
    match client.get_object().bucket(bucket).key(key).send().await {
        Ok(out) => {
            let bytes = out
                .body
                .collect()
                .await
                .map_err(|e| err(e.to_string()))?
                .into_bytes();
            Ok(Some(bytes.to_vec()))
        }
        Err(e) => {
            let status = e.raw_response().map(|r| r.status().as_u16());
            if e.as_service_error().is_some_and(|s| s.is_no_such_key())
                || matches!(status, Some(403 | 404))
            {
                Ok(None)
            } else {
                let retry = if is_retryable(&e) { " (retryable)" } else { "" };
                Err(err(format!(
                    "{}{retry}",
                    aws_sdk_s3::error::DisplayErrorContext(&e)
                )))
            }
        }
    }
}
