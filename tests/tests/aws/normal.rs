//! The learned normal on the Lambda path: the handler archives a device's windows to S3 (moto)
//! while it has no model (`untrained`, not judged); `vigil train-normal --from-archive s3://…
//! --to s3://…` fits its normal and publishes it; the next invocations of the same warm function
//! adopt it and flag the cycles off the machine's normal, with each channel's share.

use vigil_edge::calibrate::{self, CalibrateArgs, Request};
use vigil_edge::train_normal::train;
use vigil_tests::fixture::{batch, direct_b64, models_dir, Fixture, Options};

use crate::{cycles, data};

const PROFILE: &str = "rig-normal";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learned_normal_from_the_archive_is_adopted_by_the_function() {
    let fx = Fixture::new(Options {
        baseline_ttl_s: Some(0),
        ..Options::default()
    })
    .await;
    let thing = fx.thing("normal").await;
    fx.register(&thing, PROFILE).await;
    // The committed sample: 12 cycles of each cooler condition, healthy (100 %) first.
    let healthy = 0..12;
    assert!(
        healthy.clone().all(|c| data().cooler[c] == 100),
        "{:?}",
        data().cooler
    );

    // 1. No model yet: windows are not judged, and archived.
    let h = fx
        .invoke(&direct_b64(&thing, &batch(&cycles(healthy.clone()))), "n-1")
        .await;
    assert_eq!(h.results.len(), 12);
    assert!(h
        .results
        .iter()
        .all(|r| r.model_version == "untrained" && r.label == "normal"));

    // 2. Trained from the archive, published to the models bucket.
    let args = CalibrateArgs {
        profile: PROFILE.into(),
        device: thing.clone(),
        from: None,
        from_archive: Some(format!("s3://{}", fx.archive_bucket)),
        since: Some("2023-11-14".into()),
        last: None,
        include_flagged: false,
        to: Some(format!("s3://{}", fx.models_bucket)),
        keep_learning: false,
        dry_run: false,
        models: Some(models_dir()),
    };
    let req = Request::from_args(&args).expect("valid request");
    let s3 = calibrate::s3_client().await;
    let report = train(&req, false, Some(&s3)).await.expect("training");
    assert!(report.promoted, "{report:?}");
    assert_eq!(report.fit_windows + report.holdout_windows, 12);
    assert_eq!(
        report.published.as_deref(),
        Some(format!("s3://{}/baselines/{PROFILE}/{thing}.json", fx.models_bucket).as_str())
    );

    // 3. The same warm function judges the next cycles against it: the reduced-efficiency
    //    cooler (20 %) is off this machine's normal, and the result says which channels.
    let h = fx
        .invoke(&direct_b64(&thing, &batch(&cycles(12..15))), "n-2")
        .await;
    assert_eq!(h.results.len(), 3);
    for r in &h.results {
        assert_eq!(r.model_version, report.live_version, "{r:?}");
        assert_eq!(r.label, "anomaly", "{r:?}");
        assert!(r.anomaly_score.unwrap() > 1.0);
        let shares: f64 = r.contributions.iter().map(|c| c.share).sum();
        assert!((shares - 1.0).abs() < 1e-6, "{r:?}");
        assert_eq!(r.contributions.len(), 4, "{r:?}");
    }
    // The device state holds the model the function adopted.
    let (state, _) = fx.state(&thing, PROFILE).await.unwrap();
    assert_eq!(state["baseline"]["version"], report.version.as_str());
    assert!(state["baseline"]["normal"]["live"]["components"].is_array());
}
