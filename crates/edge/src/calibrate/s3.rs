//! Calibration's S3 side (the `s3` feature): the ingest function's window archive as a source,
//! the Lambda's baselines bucket as a target.

use vigil_core::calibrate::{self as core_calibrate, Skip};
use vigil_core::ports::{PortError, StreamKey};
use vigil_core::scorer::Baseline;
use vigil_core::transform::Matrix;
use vigil_core::window::WindowId;

use super::{CalibrateError, Request, S3Location};

pub use vigil_aws::baselines::BASELINES_PREFIX;
pub use vigil_aws::s3::ARCHIVE_PREFIX;

/// The device's archived windows, newest first until `req.last` usable ones are found; plus how
/// many were skipped and why.
pub(super) async fn archive_windows(
    req: &Request,
    location: &S3Location,
    since: Option<&str>,
    s3: &aws_sdk_s3::Client,
) -> Result<(Vec<(WindowId, Matrix)>, usize, String), CalibrateError> {
    let keys = vigil_aws::s3::list_archived(
        s3,
        &location.bucket,
        &location.prefix,
        &req.profile.name,
        req.device.as_str(),
        since,
    )
    .await
    .map_err(CalibrateError::Archive)?;
    if keys.is_empty() {
        return Err(CalibrateError::NothingArchived {
            device: req.device.to_string(),
            profile: req.profile.name.clone(),
            url: location.to_string(),
            since: since.map(|s| format!(" since {s}")).unwrap_or_default(),
        });
    }
    let want = req.last.unwrap_or(usize::MAX);
    let (mut ready, mut flagged, mut incomplete, mut other) = (Vec::new(), 0, 0, 0);
    // Newest first, 16 objects at a time, until enough usable windows are found.
    for batch in keys.rchunks(16) {
        if ready.len() >= want {
            break;
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (i, k) in batch.iter().enumerate() {
            let (s3, bucket, key) = (s3.clone(), location.bucket.clone(), k.key.clone());
            tasks.spawn(async move { (i, vigil_aws::s3::get_archived(&s3, &bucket, &key).await) });
        }
        let mut got = Vec::with_capacity(batch.len());
        while let Some(r) = tasks.join_next().await {
            let (i, closed) = r.map_err(|e| {
                CalibrateError::Archive(PortError::permanent("archive", e.to_string()))
            })?;
            got.push((i, closed.map_err(CalibrateError::Archive)?));
        }
        got.sort_by_key(|(i, _)| std::cmp::Reverse(*i));
        for (_, closed) in got {
            if ready.len() >= want {
                break;
            }
            match core_calibrate::archived_window(&req.profile, &closed, req.include_flagged) {
                Ok(w) => ready.push(w),
                Err(Skip::Flagged(_)) => flagged += 1,
                Err(Skip::Incomplete) => incomplete += 1,
                Err(Skip::Channels) => other += 1,
            }
        }
    }
    ready.reverse();
    let why = format!(
        "{flagged} judged unhealthy (--include-flagged uses them), {incomplete} incomplete, \
         {other} archived with other channels"
    );
    Ok((ready, flagged + incomplete + other, why))
}

/// Publishes `baseline` under `location`; returns the object's key.
pub(super) async fn put(
    s3: &aws_sdk_s3::Client,
    location: &S3Location,
    stream: &StreamKey,
    baseline: &Baseline,
) -> Result<String, CalibrateError> {
    vigil_aws::baselines::put_baseline(s3, &location.bucket, &location.prefix, stream, baseline)
        .await
        .map_err(CalibrateError::Publish)
}

/// The baseline published under `location` now, if any.
pub(super) async fn get(
    s3: &aws_sdk_s3::Client,
    location: &S3Location,
    stream: &StreamKey,
) -> Result<Option<Baseline>, CalibrateError> {
    vigil_aws::baselines::S3Baselines::new(s3.clone(), &location.bucket, std::time::Duration::ZERO)
        .with_prefix(&location.prefix)
        .latest_at(stream, std::time::Instant::now())
        .await
        .map_err(CalibrateError::Publish)
}

/// An S3 client from the usual AWS configuration (environment, profile, instance role);
/// `AWS_ENDPOINT_URL` points it at an emulator.
pub async fn s3_client() -> aws_sdk_s3::Client {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    vigil_aws::s3_client(&sdk)
}
