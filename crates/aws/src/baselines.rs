//! Calibrated baselines in S3: `vigil calibrate` publishes `baselines/<profile>/<device>.json`
//! (a [`Baseline`] as JSON); the ingest function reads it through [`S3Baselines`].
//!
//! Pickup: each stream's object is cached for a TTL (`VIGIL_BASELINE_TTL_S`, default 60 s). When
//! the TTL has passed the next scored window asks S3 again, with `If-None-Match` on the ETag it
//! holds: an unchanged object costs a `304 Not Modified`, a new one is read and adopted by the
//! pipeline (its version differs from the device state's). A new calibration therefore reaches
//! a device within one TTL plus one window, on every warm instance, without a redeploy.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use vigil_core::ports::{BaselineSource, PortError, StreamKey};
use vigil_core::scorer::Baseline;

use crate::error::port_error;

const PORT: &str = "baselines";

/// Prefix the ingest function reads baselines from (the IAM policy allows exactly this prefix).
pub const BASELINES_PREFIX: &str = "baselines";

/// Key of a stream's baseline under `prefix`: `<prefix>/<profile>/<device>.json`.
pub fn baseline_key(prefix: &str, stream: &StreamKey) -> String {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        format!("{}/{}.json", stream.profile, stream.device)
    } else {
        format!("{prefix}/{}/{}.json", stream.profile, stream.device)
    }
}

/// Publishes a baseline to `s3://bucket/<prefix>/<profile>/<device>.json`; returns the key.
/// One PUT replaces the object atomically: readers see the old baseline or the new one.
pub async fn put_baseline(
    client: &Client,
    bucket: &str,
    prefix: &str,
    stream: &StreamKey,
    baseline: &Baseline,
) -> Result<String, PortError> {
    let key = baseline_key(prefix, stream);
    let body = serde_json::to_vec_pretty(baseline)
        .map_err(|e| PortError::permanent(PORT, format!("{key}: {e}")))?;
    client
        .put_object()
        .bucket(bucket)
        .key(&key)
        .content_type("application/json")
        .metadata("vigil-baseline-version", &baseline.version)
        .body(ByteStream::from(body))
        .send()
        .await
        .map_err(|e| port_error(PORT, &format!("put s3://{bucket}/{key}"), e))?;
    Ok(key)
}

#[derive(Clone, Debug)]
struct Entry {
    checked: Instant,
    etag: Option<String>,
    baseline: Option<Baseline>,
}

/// The [`BaselineSource`] of the ingest function: one object per stream, cached for `ttl`,
/// revalidated by ETag.
#[derive(Debug)]
pub struct S3Baselines {
    client: Client,
    bucket: String,
    prefix: String,
    ttl: Duration,
    /// Profiles whose scorer has a baseline; `None`: every profile. Streams of other profiles
    /// never cost a request.
    profiles: Option<BTreeSet<String>>,
    cache: Mutex<HashMap<StreamKey, Entry>>,
}

impl S3Baselines {
    pub fn new(client: Client, bucket: impl Into<String>, ttl: Duration) -> Self {
        Self {
            client,
            bucket: bucket.into(),
            prefix: BASELINES_PREFIX.into(),
            ttl,
            profiles: None,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Reads under another key prefix than [`BASELINES_PREFIX`].
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Reads baselines of these profiles only (those whose scorer has one).
    pub fn only_profiles(mut self, profiles: impl IntoIterator<Item = String>) -> Self {
        self.profiles = Some(profiles.into_iter().collect());
        self
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn key(&self, stream: &StreamKey) -> String {
        baseline_key(&self.prefix, stream)
    }

    /// [`BaselineSource::latest`] at a given instant (tests move the clock instead of sleeping).
    pub async fn latest_at(
        &self,
        stream: &StreamKey,
        now: Instant,
    ) -> Result<Option<Baseline>, PortError> {
        if self
            .profiles
            .as_ref()
            .is_some_and(|p| !p.contains(&stream.profile))
        {
            return Ok(None);
        }
        let cached = self.cache.lock().expect("lock").get(stream).cloned();
        if let Some(e) = &cached {
            if now.saturating_duration_since(e.checked) < self.ttl {
                return Ok(e.baseline.clone());
            }
        }
        let key = self.key(stream);
        let etag = cached
            .as_ref()
            .and_then(|e| e.baseline.as_ref().and(e.etag.clone()));
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&key)
            .set_if_none_match(etag.clone());
        let entry = match request.send().await {
            Ok(out) => {
                let new_etag = out.e_tag().map(str::to_string);
                let bytes = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| {
                        PortError::retryable(PORT, format!("s3://{}/{key}: {e}", self.bucket))
                    })?
                    .into_bytes();
                match serde_json::from_slice::<Baseline>(&bytes) {
                    Ok(b) => {
                        tracing::info!(key = %key, version = %b.version, "baseline read");
                        Entry {
                            checked: now,
                            etag: new_etag,
                            baseline: Some(b),
                        }
                    }
                    Err(e) => {
                        // A bad object must not stop the device: keep the last good baseline
                        // (or none) and look again after the TTL.
                        tracing::warn!(key = %key, error = %e, "baseline object unreadable; keeping the previous one");
                        Entry {
                            checked: now,
                            etag: None,
                            baseline: cached.and_then(|c| c.baseline),
                        }
                    }
                }
            }
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                let no_such_bucket = e
                    .as_service_error()
                    .and_then(aws_sdk_s3::error::ProvideErrorMetadata::code)
                    == Some("NoSuchBucket");
                match status {
                    Some(304) => Entry {
                        checked: now,
                        etag,
                        baseline: cached.and_then(|c| c.baseline),
                    },
                    // Without s3:ListBucket S3 answers 403 for a missing key, hence both.
                    Some(403 | 404) if !no_such_bucket => Entry {
                        checked: now,
                        etag: None,
                        baseline: None,
                    },
                    _ => {
                        let mut err =
                            port_error(PORT, &format!("get s3://{}/{key}", self.bucket), e);
                        // The window is not scored against a stale notion of normal: the
                        // message is retried, and S3 is usually back by then.
                        err.retryable = true;
                        return Err(err);
                    }
                }
            }
        };
        let baseline = entry.baseline.clone();
        self.cache
            .lock()
            .expect("lock")
            .insert(stream.clone(), entry);
        Ok(baseline)
    }
}

#[async_trait]
impl BaselineSource for S3Baselines {
    async fn latest(&self, stream: &StreamKey) -> Result<Option<Baseline>, PortError> {
        self.latest_at(stream, Instant::now()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::DeviceId;

    #[test]
    fn keys_follow_the_documented_layout() {
        let s = StreamKey {
            device: DeviceId::new("rig-001").unwrap(),
            profile: "rig-zscore".into(),
        };
        assert_eq!(
            baseline_key(BASELINES_PREFIX, &s),
            "baselines/rig-zscore/rig-001.json"
        );
        assert_eq!(baseline_key("/x/y/", &s), "x/y/rig-zscore/rig-001.json");
        assert_eq!(baseline_key("", &s), "rig-zscore/rig-001.json");
    }
}
