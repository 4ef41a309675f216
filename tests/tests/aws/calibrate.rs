//! Calibration on the Lambda path: the handler archives closed windows to S3 (moto), `vigil
//! calibrate --from-archive s3://… --to s3://…` fits and publishes a baseline, and the next
//! invocations adopt it (no redeploy, no new cold start); plus the S3 baseline source's cache:
//! TTL, ETag revalidation, absent objects, failures.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use vigil_aws::baselines::{put_baseline, S3Baselines};
use vigil_core::ports::{BaselineSource, StreamKey};
use vigil_core::scorer::Baseline;
use vigil_core::DeviceId;
use vigil_edge::calibrate::{self, CalibrateArgs, Report, Request};
use vigil_tests::condition_results;
use vigil_tests::fixture::{batch, direct_b64, models_dir, Fixture, Options};

use crate::{cycles, data};

const PROFILE: &str = "rig-zscore";

/// `vigil calibrate --profile rig-zscore --device THING --from-archive s3://ARCHIVE
/// --to s3://MODELS [--last N]`, through the command's own argument handling and S3 client.
async fn calibrate_from_archive(fx: &Fixture, thing: &str, last: Option<usize>) -> Report {
    let args = CalibrateArgs {
        profile: PROFILE.into(),
        device: thing.into(),
        from: None,
        from_archive: Some(format!("s3://{}", fx.archive_bucket)),
        since: Some("2023-11-14".into()),
        last,
        include_flagged: false,
        to: Some(format!("s3://{}", fx.models_bucket)),
        keep_learning: false,
        dry_run: false,
        models: Some(models_dir()),
    };
    let req = Request::from_args(&args).expect("valid request");
    let s3 = calibrate::s3_client().await;
    calibrate::calibrate(&req, Some(&s3))
        .await
        .expect("calibration")
}

/// The z-score of cycle `c` against a baseline, computed here as the scorer defines it: the
/// largest |x - mean| / std over the window means of TS1..TS4.
fn z_of(c: usize, b: &Baseline) -> f64 {
    let rows = &data().cycles[c];
    (0..4)
        .map(|j| {
            let x = rows.iter().map(|r| f64::from(r[j])).sum::<f64>() / rows.len() as f64;
            let sd = b.std(j);
            if sd > 0.0 {
                ((x - b.mean[j]) / sd).abs()
            } else {
                0.0
            }
        })
        .fold(0.0, f64::max)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calibration_from_the_archive_is_adopted_by_the_function() {
    let started = Instant::now();
    // TTL 0: the function asks S3 (If-None-Match) at every window, so no waiting here.
    let fx = Fixture::new(Options {
        baseline_ttl_s: Some(0),
        ..Options::default()
    })
    .await;
    let thing = fx.thing("cal").await;
    fx.register(&thing, PROFILE).await;

    // 1. Ten healthy cycles: learned online, archived.
    let h = fx
        .invoke(&direct_b64(&thing, &batch(&cycles(0..10))), "cal-1")
        .await;
    assert_eq!(h.results.len(), 10);
    assert!(h.results.iter().all(|r| r.model_version == "learned"));
    // Windows the pipeline judged normal: the only ones a calibration uses by default.
    let mut labels: BTreeMap<u64, String> = h
        .results
        .iter()
        .map(|r| (r.window, r.label.clone()))
        .collect();
    let normal_tail = |labels: &BTreeMap<u64, String>, n: usize| -> Vec<u64> {
        let normal: Vec<u64> = labels
            .iter()
            .filter(|(_, l)| *l == "normal")
            .map(|(w, _)| *w)
            .collect();
        normal[normal.len().saturating_sub(n)..].to_vec()
    };
    let archived = fx.archived().await;
    assert_eq!(
        archived.iter().filter(|k| k.contains(&thing)).count(),
        10,
        "{archived:?}"
    );

    // 2. Calibrate from the newest 8 archived windows, publish to the models bucket.
    let v1 = calibrate_from_archive(&fx, &thing, Some(8)).await;
    let used = normal_tail(&labels, 8);
    assert!(
        used.len() >= 5,
        "the rig-zscore warm-up needs 5 windows: {labels:?}"
    );
    assert_eq!(
        (v1.windows, v1.first_window, v1.last_window),
        (used.len(), used[0], *used.last().unwrap()),
        "{labels:?}"
    );
    assert!(v1.version.starts_with("calib-") && v1.frozen);
    let key = format!("baselines/{PROFILE}/{thing}.json");
    assert_eq!(
        v1.published.as_deref(),
        Some(format!("s3://{}/{key}", fx.models_bucket).as_str())
    );
    let stored: Baseline =
        serde_json::from_slice(&fx.object(&fx.models_bucket, &key).await).unwrap();
    assert_eq!(stored, v1.fitted.baseline);

    // 3. The same runtime (a warm instance) scores the next windows against it.
    let h = fx
        .invoke(&direct_b64(&thing, &batch(&cycles(10..12))), "cal-2")
        .await;
    assert_eq!(h.results.len(), 2);
    for r in &h.results {
        assert_eq!(r.model_version, v1.version, "{r:?}");
        let want = z_of(r.window as usize, &stored);
        let got = r.anomaly_score.unwrap();
        assert!(
            (got - want).abs() <= 1e-9 * want.max(1.0),
            "z {got} vs {want}"
        );
    }
    // Published to the device (topic and shadow) and kept in the device state, frozen.
    let published = condition_results(&thing, &h.results);
    let last: &Value = published.last().unwrap();
    assert_eq!(last["window"], 11);
    assert_eq!(last["model_version"], v1.version.as_str());
    assert_eq!(
        fx.shadow(&thing).await["state"]["reported"]["model_version"],
        v1.version.as_str()
    );
    let (state, _) = fx.state(&thing, PROFILE).await.unwrap();
    assert_eq!(state["baseline"]["version"], v1.version.as_str());
    assert_eq!(state["baseline"]["frozen"], true);
    assert_eq!(state["baseline"]["count"], used.len());
    labels.extend(h.results.iter().map(|r| (r.window, r.label.clone())));

    // 4. A second calibration (the newest 5 normal windows) replaces it.
    let v2 = calibrate_from_archive(&fx, &thing, Some(5)).await;
    assert_ne!(v2.version, v1.version);
    let used = normal_tail(&labels, 5);
    assert_eq!(
        (v2.windows, v2.first_window, v2.last_window),
        (5, used[0], used[4]),
        "{labels:?}"
    );
    let h = fx
        .invoke(&direct_b64(&thing, &batch(&cycles(12..13))), "cal-3")
        .await;
    assert_eq!(h.results[0].model_version, v2.version);
    let want = z_of(12, &v2.fitted.baseline);
    assert!((h.results[0].anomaly_score.unwrap() - want).abs() <= 1e-9 * want.max(1.0));
    let (state, _) = fx.state(&thing, PROFILE).await.unwrap();
    assert_eq!(state["baseline"]["version"], v2.version.as_str());
    eprintln!(
        "calibration e2e on the Lambda path: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_baselines_are_cached_for_the_ttl_and_revalidated_by_etag() {
    let fx = Fixture::new(Options::default()).await;
    let stream = StreamKey {
        device: DeviceId::new(fx.thing("ttl").await).unwrap(),
        profile: PROFILE.into(),
    };
    let ttl = Duration::from_secs(60);
    let source = S3Baselines::new(fx.s3.clone(), &fx.models_bucket, ttl);
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    // Absent: none, and that answer is cached too.
    assert_eq!(source.latest_at(&stream, at(0)).await.unwrap(), None);
    let mut b = Baseline::fit(&[vec![1.0], vec![3.0]], "calib-v1").unwrap();
    put_baseline(&fx.s3, &fx.models_bucket, "baselines", &stream, &b)
        .await
        .unwrap();
    assert_eq!(source.latest_at(&stream, at(30)).await.unwrap(), None);
    // After the TTL: adopted.
    let got = source.latest_at(&stream, at(61)).await.unwrap().unwrap();
    assert_eq!(got.version, "calib-v1");
    // A new version is not seen within the TTL, then is.
    b.version = "calib-v2".into();
    put_baseline(&fx.s3, &fx.models_bucket, "baselines", &stream, &b)
        .await
        .unwrap();
    let cached = source.latest_at(&stream, at(100)).await.unwrap().unwrap();
    assert_eq!(cached.version, "calib-v1");
    let fresh = source.latest_at(&stream, at(122)).await.unwrap().unwrap();
    assert_eq!(fresh.version, "calib-v2");
    // Unchanged object: S3 answers 304 to the ETag the source holds, the baseline stays.
    let head = fx
        .s3
        .head_object()
        .bucket(&fx.models_bucket)
        .key(source.key(&stream))
        .send()
        .await
        .unwrap();
    let status = fx
        .s3
        .get_object()
        .bucket(&fx.models_bucket)
        .key(source.key(&stream))
        .if_none_match(head.e_tag().unwrap())
        .send()
        .await
        .map(|_| 200)
        .unwrap_or_else(|e| e.raw_response().map_or(0, |r| r.status().as_u16()));
    assert_eq!(status, 304, "the emulator honours If-None-Match");
    let again = source.latest_at(&stream, at(190)).await.unwrap().unwrap();
    assert_eq!(again.version, "calib-v2");
    // Deleted: back to none after the TTL (the device state keeps what it adopted).
    fx.s3
        .delete_object()
        .bucket(&fx.models_bucket)
        .key(source.key(&stream))
        .send()
        .await
        .unwrap();
    assert_eq!(source.latest_at(&stream, at(260)).await.unwrap(), None);

    // Profiles without a baseline never ask S3.
    let other = S3Baselines::new(fx.s3.clone(), "no-such-bucket-at-all", ttl)
        .only_profiles(["nab-ewma".to_string()]);
    assert_eq!(other.latest(&stream).await.unwrap(), None);

    // A failing S3 is a retryable error, not "no baseline".
    let dead = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&fx.sdk)
            .endpoint_url("http://127.0.0.1:9")
            .force_path_style(true)
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .build(),
    );
    let e = S3Baselines::new(dead, &fx.models_bucket, ttl)
        .latest(&stream)
        .await
        .unwrap_err();
    assert!(e.retryable && e.port == "baselines", "{e:?}");
    let missing_bucket = S3Baselines::new(fx.s3.clone(), "vigil-no-such-bucket", ttl)
        .latest(&stream)
        .await
        .unwrap_err();
    assert!(missing_bucket.retryable, "{missing_bucket:?}");
}
