//! `vigil train-normal`: fits a machine's learned normal (see `vigil_core::normal`) from its own
//! normal windows — a telemetry file or the cloud's window archive, gathered exactly as
//! `vigil calibrate` gathers them — and publishes it, versioned, where the edge (`--state` dir)
//! or the Lambda (baselines bucket) adopts it without a redeploy.
//!
//! The new model goes live only if its false-alarm rate on the newest held-out normal windows
//! is no worse than that of the model live now; otherwise it is published as the candidate,
//! scored beside the live one (results carry both) until `--promote` makes it live by hand.

use clap::Args;
use serde::Serialize;
use vigil_core::calibrate::{self as core_calibrate, FitOptions};
use vigil_core::ScorerSpec;

use crate::calibrate::{self, CalibrateArgs, CalibrateError, Request, S3Client};

#[derive(Debug, Args)]
pub struct TrainNormalArgs {
    #[command(flatten)]
    pub source: CalibrateArgs,
    /// Make the new model live even if it alarms more on the held-out windows than the live one
    /// (the by-hand promotion of a candidate: train on the same data with this flag).
    #[arg(long)]
    pub promote: bool,
}

/// What a training did.
#[derive(Clone, Debug, Serialize)]
pub struct TrainReport {
    pub device: String,
    pub profile: String,
    /// Version of the baseline document now published (live, `+candidate-…` when one is kept).
    pub version: String,
    pub live_version: String,
    pub candidate_version: Option<String>,
    pub promoted: bool,
    pub fit_windows: usize,
    pub holdout_windows: usize,
    pub components: usize,
    pub t2_limit: f64,
    pub spe_limit: f64,
    /// False-alarm rates on the new fit's held-out windows: the new model, the one live before.
    pub new_false_alarm_rate: f64,
    pub live_false_alarm_rate: Option<f64>,
    pub skipped: usize,
    pub skipped_why: String,
    pub published: Option<String>,
}

/// Fits, decides live or candidate against what is published at the target, and publishes.
pub async fn train(
    req: &Request,
    promote: bool,
    s3: Option<&S3Client>,
) -> Result<TrainReport, CalibrateError> {
    let profile = &req.profile;
    if !matches!(profile.scorer, ScorerSpec::LearnedNormal(_)) {
        return Err(CalibrateError::Location(format!(
            "profile {:?} does not score with kind = \"learned_normal\"; `vigil calibrate` fits \
             the streaming scorers' baselines",
            profile.name
        )));
    }
    if req.keep_learning {
        return Err(CalibrateError::Location(
            "--keep-learning: a learned normal never learns online (train it again instead)".into(),
        ));
    }
    let chain = calibrate::chain_of(profile)?;
    let (windows, skipped, why) = calibrate::gather(req, s3).await?;
    let current = calibrate::published(req, s3).await?;
    let fitted = core_calibrate::fit_normal(
        profile,
        &chain,
        &windows,
        current.as_ref(),
        promote,
        FitOptions {
            fitted_at_ms: req.now_ms,
            keep_learning: false,
        },
    )?;
    let published = calibrate::publish(req, &fitted.fitted.baseline, s3).await?;
    let models = fitted
        .fitted
        .baseline
        .normal
        .as_ref()
        .expect("fit_normal publishes a learned normal");
    // The new model is the live one when promoted, the candidate otherwise.
    let new = models.candidate.as_ref().unwrap_or(&models.live);
    Ok(TrainReport {
        device: req.device.to_string(),
        profile: profile.name.clone(),
        version: fitted.fitted.baseline.version.clone(),
        live_version: models.live.version.clone(),
        candidate_version: models.candidate.as_ref().map(|c| c.version.clone()),
        promoted: fitted.promoted,
        fit_windows: new.fit_windows,
        holdout_windows: new.holdout_windows,
        components: new.components.len(),
        t2_limit: new.t2_limit,
        spe_limit: new.spe_limit,
        new_false_alarm_rate: fitted.new_rate,
        live_false_alarm_rate: fitted.live_rate,
        skipped,
        skipped_why: why,
        published,
    })
}

pub async fn run(args: TrainNormalArgs) -> anyhow::Result<()> {
    let req = Request::from_args(&args.source)?;
    let s3 = calibrate::s3_for(&req).await;
    let r = train(&req, args.promote, s3.as_ref()).await?;
    println!(
        "vigil train-normal: {} ({}): fitted on {} windows, limits set on the newest {} held out \
         ({} skipped: {})",
        r.device, r.profile, r.fit_windows, r.holdout_windows, r.skipped, r.skipped_why
    );
    println!(
        "  {} components, T² limit {:.3}, SPE limit {:.3}",
        r.components, r.t2_limit, r.spe_limit
    );
    let rate = |v: f64| format!("{:.1} %", v * 100.0);
    match (r.promoted, r.live_false_alarm_rate) {
        (true, None) => println!("  live: {} (the device's first model)", r.live_version),
        (true, Some(old)) => println!(
            "  live: {} (false alarms on the held-out windows {} vs {} for the model it replaces)",
            r.live_version,
            rate(r.new_false_alarm_rate),
            rate(old)
        ),
        (false, old) => println!(
            "  candidate: {} (false alarms {} vs {} for the live {}): scored beside it; \
             --promote makes it live",
            r.candidate_version.as_deref().unwrap_or("?"),
            rate(r.new_false_alarm_rate),
            rate(old.unwrap_or(0.0)),
            r.live_version
        ),
    }
    match &r.published {
        Some(p) => println!("  published to {p}"),
        None => println!("  dry run: not published"),
    }
    println!("{}", serde_json::to_string(&r)?);
    Ok(())
}
