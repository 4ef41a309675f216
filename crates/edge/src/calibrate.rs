//! `vigil calibrate`: fits a device's baseline from its own recent normal data and publishes it,
//! versioned, where the edge and the Lambda read it. See docs/calibrate.md.
//!
//! Sources:
//! - `--from FILE`: telemetry as devices publish it, one JSON message per line (a sample or a
//!   `{"samples": [...]}` batch, parsed by the pipeline's own parser), or CSV whose header names
//!   the profile's channels (any order) plus optional `seq` and `ts` columns;
//! - `--from-archive s3://BUCKET[/PREFIX]`: the device's closed windows archived by the ingest
//!   function (`PREFIX` defaults to `windows`), optionally `--since YYYY-MM-DD`.
//!
//! Windows are assembled exactly as the pipeline assembles them, run through the profile's
//! transforms and the scorer's own reduction, and fitted by [`vigil_core::calibrate`]. Targets:
//! - `--to DIR`: an edge's state directory; written to `DIR/baselines/<profile>/<device>.json`
//!   atomically (temporary file, fsync, rename);
//! - `--to s3://BUCKET[/PREFIX]`: `PREFIX/<profile>/<device>.json` (`PREFIX` defaults to
//!   `baselines`, where the ingest function reads).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{ArgGroup, Args};
use serde::Serialize;
use vigil_core::calibrate::{self as core_calibrate, CalibrationError, FitOptions, Fitted};
use vigil_core::ports::{PortError, StreamKey};
use vigil_core::telemetry::{parse_message, TelemetryError};
use vigil_core::transform::{Chain, Matrix};
use vigil_core::window::WindowId;
use vigil_core::{DeviceId, Profile, ProfileSet, Sample};

use vigil_datasets::models;

#[cfg(feature = "s3")]
mod s3;
#[cfg(feature = "s3")]
pub use s3::s3_client;

/// The client calibration reads the archive and publishes baselines with. Without the `s3`
/// feature there is none (the type is empty) and `s3://` locations are refused.
#[cfg(feature = "s3")]
pub type S3Client = aws_sdk_s3::Client;
#[cfg(not(feature = "s3"))]
#[derive(Clone, Debug)]
pub enum S3Client {}

#[cfg(not(feature = "s3"))]
fn no_s3(url: &str) -> CalibrateError {
    CalibrateError::Location(format!(
        "{url:?}: this build has no S3 support (cargo feature `s3` of vigil-edge)"
    ))
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["from", "from_archive"])))]
pub struct CalibrateArgs {
    /// Profile of the device (a name in <models>/profiles).
    #[arg(long)]
    pub profile: String,
    /// The device (thing name).
    #[arg(long)]
    pub device: String,
    /// Telemetry file: JSON lines as devices publish them, or CSV with a header of channel names
    /// (plus optional seq, ts).
    #[arg(long, value_name = "FILE")]
    pub from: Option<PathBuf>,
    /// The device's archived closed windows: s3://BUCKET[/PREFIX] (PREFIX defaults to `windows`).
    #[arg(long, value_name = "S3_URL")]
    pub from_archive: Option<String>,
    /// Archive: only windows of this UTC day (of device time) or later, YYYY-MM-DD.
    #[arg(long, value_name = "DATE", requires = "from_archive")]
    pub since: Option<String>,
    /// Use only the newest N usable windows.
    #[arg(long, value_name = "N")]
    pub last: Option<usize>,
    /// Archive: also use windows the pipeline judged unhealthy (skipped by default).
    #[arg(long)]
    pub include_flagged: bool,
    /// Where to publish: an edge's state directory, or s3://BUCKET[/PREFIX] (PREFIX defaults to
    /// `baselines`, where the ingest function reads).
    #[arg(long, value_name = "DIR|S3_URL", required_unless_present = "dry_run")]
    pub to: Option<String>,
    /// Publish a baseline that keeps adapting online (default: frozen until the next calibration).
    #[arg(long)]
    pub keep_learning: bool,
    /// Fit and print, publish nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Models directory (default: models/ of this checkout, or VIGIL_MODELS_DIR).
    #[arg(long)]
    pub models: Option<PathBuf>,
}

/// Why a calibration failed.
#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    #[error("loading profiles: {0}")]
    Profiles(#[from] vigil_core::profile::ProfileError),
    #[error("unknown profile {name:?} (in {dir}: {known})")]
    UnknownProfile {
        name: String,
        dir: String,
        known: String,
    },
    #[error("profile {profile:?}: transforms: {message}")]
    Transforms { profile: String, message: String },
    #[error("--device: {0}")]
    Device(TelemetryError),
    #[error("{0}")]
    Location(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {error}")]
    Telemetry {
        path: String,
        line: usize,
        error: TelemetryError,
    },
    #[error("{path}:{line}: {message}")]
    Csv {
        path: String,
        line: usize,
        message: String,
    },
    #[error("{0}: no samples")]
    Empty(String),
    #[error("no archived windows of {device} ({profile}) under {url}{since}")]
    NothingArchived {
        device: String,
        profile: String,
        url: String,
        since: String,
    },
    #[error("reading the archive: {0}")]
    Archive(PortError),
    #[error("publishing: {0}")]
    Publish(PortError),
    #[error(transparent)]
    Calibration(#[from] CalibrationError),
}

/// An `s3://bucket/prefix` location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    pub prefix: String,
}

impl S3Location {
    /// Parses `s3://BUCKET[/PREFIX]`; an empty prefix becomes `default_prefix`.
    pub fn parse(url: &str, default_prefix: &str) -> Result<Self, CalibrateError> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| CalibrateError::Location(format!("{url:?} is not an s3:// URL")))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(CalibrateError::Location(format!("{url:?} names no bucket")));
        }
        let prefix = prefix.trim_matches('/');
        Ok(Self {
            bucket: bucket.to_string(),
            prefix: if prefix.is_empty() {
                default_prefix.to_string()
            } else {
                prefix.to_string()
            },
        })
    }
}

impl std::fmt::Display for S3Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

/// Where the data comes from.
#[derive(Clone, Debug)]
pub enum Source {
    File(PathBuf),
    Archive {
        location: S3Location,
        since: Option<String>,
    },
}

/// Where the baseline goes.
#[derive(Clone, Debug)]
pub enum Target {
    /// An edge's state directory.
    Dir(PathBuf),
    S3(S3Location),
    /// Nowhere (dry run).
    None,
}

impl Target {
    pub fn parse(to: Option<&str>) -> Result<Self, CalibrateError> {
        match to {
            None => Ok(Self::None),
            #[cfg(feature = "s3")]
            Some(url) if url.starts_with("s3://") => {
                Ok(Self::S3(S3Location::parse(url, s3::BASELINES_PREFIX)?))
            }
            #[cfg(not(feature = "s3"))]
            Some(url) if url.starts_with("s3://") => Err(no_s3(url)),
            Some(dir) => Ok(Self::Dir(PathBuf::from(dir))),
        }
    }
}

/// One calibration, fully specified.
#[derive(Clone, Debug)]
pub struct Request {
    pub profile: Profile,
    pub device: DeviceId,
    pub source: Source,
    pub last: Option<usize>,
    pub include_flagged: bool,
    pub keep_learning: bool,
    pub target: Target,
    /// Time written into the version (epoch ms).
    pub now_ms: u64,
}

/// What a calibration did.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub device: String,
    pub profile: String,
    pub version: String,
    pub frozen: bool,
    pub windows: usize,
    pub first_window: WindowId,
    pub last_window: WindowId,
    /// Windows left out, and why.
    pub skipped: usize,
    pub skipped_why: String,
    pub mean: Vec<f64>,
    /// Standard deviation per feature, in the scorer's convention.
    pub std: Vec<f64>,
    /// Where the baseline was written (`None`: dry run).
    pub published: Option<String>,
    #[serde(skip)]
    pub fitted: Fitted,
}

/// Reads `<models>/profiles`, validating every profile like the edge does, and returns one.
pub fn load_profile(models_dir: &Path, name: &str) -> Result<Profile, CalibrateError> {
    let dir = models_dir.join("profiles");
    let set = ProfileSet::load_dir(&dir)?;
    let profile = set
        .get(name)
        .cloned()
        .ok_or_else(|| CalibrateError::UnknownProfile {
            name: name.into(),
            dir: dir.display().to_string(),
            known: set.profiles.keys().cloned().collect::<Vec<_>>().join(", "),
        })?;
    // Refused before any data is read.
    core_calibrate::min_windows(&profile)?;
    Ok(profile)
}

/// Reads a telemetry file: JSON lines (each line one message, as a device publishes it) or, when
/// the first non-blank line does not start with `{`, CSV.
pub fn read_samples(path: &Path, profile: &Profile) -> Result<Vec<Sample>, CalibrateError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| CalibrateError::Io {
        path: name.clone(),
        source,
    })?;
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let samples = if first.trim_start().starts_with('{') {
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let samples = parse_message(line.as_bytes(), &profile.channels).map_err(|error| {
                CalibrateError::Telemetry {
                    path: name.clone(),
                    line: i + 1,
                    error,
                }
            })?;
            out.extend(samples);
        }
        out
    } else {
        read_csv(&name, &text, profile)?
    };
    if samples.is_empty() {
        return Err(CalibrateError::Empty(name));
    }
    Ok(samples)
}

/// CSV: a header naming every channel of the profile (any order) and optionally `seq` and `ts`;
/// one sample per row. Without `seq` the rows are numbered from 0; without `ts` it is derived
/// from `seq` and the profile's sample rate.
fn read_csv(path: &str, text: &str, profile: &Profile) -> Result<Vec<Sample>, CalibrateError> {
    let err = |line: usize, message: String| CalibrateError::Csv {
        path: path.into(),
        line,
        message,
    };
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((h, header)) = lines.next() else {
        return Ok(vec![]);
    };
    let columns: Vec<&str> = header.split(',').map(str::trim).collect();
    let (mut seq_col, mut ts_col) = (None, None);
    let mut channel_of: Vec<Option<usize>> = vec![None; columns.len()];
    for (i, c) in columns.iter().enumerate() {
        if columns[..i].contains(c) {
            return Err(err(h + 1, format!("column {c:?} appears twice")));
        }
        match *c {
            "seq" => seq_col = Some(i),
            "ts" => ts_col = Some(i),
            _ => match profile.channels.iter().position(|ch| ch == c) {
                Some(j) => channel_of[i] = Some(j),
                None => {
                    return Err(err(
                        h + 1,
                        format!(
                            "unknown column {c:?} (expected the channels of {}: {}, and optionally seq, ts)",
                            profile.name,
                            profile.channels.join(", ")
                        ),
                    ))
                }
            },
        }
    }
    if let Some(missing) = profile
        .channels
        .iter()
        .enumerate()
        .find(|(j, _)| !channel_of.contains(&Some(*j)))
    {
        return Err(err(h + 1, format!("no column for channel {:?}", missing.1)));
    }
    let period_ms = 1000.0 / profile.sample_rate_hz;
    let mut out = Vec::new();
    for (row, (i, line)) in lines.enumerate() {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if cells.len() != columns.len() {
            return Err(err(
                i + 1,
                format!("{} cells, the header has {}", cells.len(), columns.len()),
            ));
        }
        let int = |col: usize, what: &str| -> Result<u64, CalibrateError> {
            cells[col].parse::<u64>().map_err(|_| {
                err(
                    i + 1,
                    format!("{what} {:?} is not a whole number ≥ 0", cells[col]),
                )
            })
        };
        let seq = match seq_col {
            Some(c) => int(c, "seq")?,
            None => row as u64,
        };
        let ts = match ts_col {
            Some(c) => int(c, "ts")?,
            None => (seq as f64 * period_ms) as u64,
        };
        let mut values = vec![0f32; profile.channels.len()];
        for (col, j) in channel_of.iter().enumerate() {
            let Some(j) = j else { continue };
            let v: f32 = cells[col].parse().map_err(|_| {
                err(
                    i + 1,
                    format!("{}: {:?} is not a number", columns[col], cells[col]),
                )
            })?;
            if !v.is_finite() {
                return Err(err(
                    i + 1,
                    format!("{}: {:?} is not a finite number", columns[col], cells[col]),
                ));
            }
            values[*j] = v;
        }
        out.push(Sample { seq, ts, values });
    }
    Ok(out)
}

/// Windows of the source, assembled as the pipeline does; plus how many were skipped and why.
pub(crate) async fn gather(
    req: &Request,
    s3: Option<&S3Client>,
) -> Result<(Vec<(WindowId, Matrix)>, usize, String), CalibrateError> {
    match &req.source {
        Source::File(path) => {
            let samples = read_samples(path, &req.profile)?;
            let mut set = core_calibrate::windows_from_samples(&req.profile, &samples);
            let skipped = set.incomplete.len() + set.pending.len();
            let why = set.skipped_summary();
            if let Some(n) = req.last {
                set.keep_last(n);
            }
            Ok((set.ready, skipped, why))
        }
        Source::Archive { location, since } => {
            #[cfg(feature = "s3")]
            {
                let s3 = s3.ok_or_else(|| CalibrateError::Location("no S3 client".into()))?;
                s3::archive_windows(req, location, since.as_deref(), s3).await
            }
            #[cfg(not(feature = "s3"))]
            {
                let _ = (since, s3);
                Err(no_s3(&location.to_string()))
            }
        }
    }
}

/// The profile's transform chain, as the pipeline builds it.
pub(crate) fn chain_of(profile: &Profile) -> Result<Chain, CalibrateError> {
    Chain::new(
        &profile.transforms,
        (profile.window.size as usize, profile.channels.len()),
    )
    .map_err(|message| CalibrateError::Transforms {
        profile: profile.name.clone(),
        message,
    })
}

/// Fits and publishes. The S3 client is needed when the source or the target is in S3.
pub async fn calibrate(req: &Request, s3: Option<&S3Client>) -> Result<Report, CalibrateError> {
    let profile = &req.profile;
    let chain = chain_of(profile)?;
    let (windows, skipped, why) = gather(req, s3).await?;
    let fitted = core_calibrate::fit(
        profile,
        &chain,
        &windows,
        (skipped, &why),
        FitOptions {
            fitted_at_ms: req.now_ms,
            keep_learning: req.keep_learning,
        },
    )?;
    let published = publish(req, &fitted.baseline, s3).await?;
    let b = &fitted.baseline;
    let std = (0..b.mean.len())
        .map(|j| match profile.scorer {
            vigil_core::ScorerSpec::Ewma(_) => b.spread[j].max(0.0).sqrt(),
            _ => b.std(j),
        })
        .collect();
    Ok(Report {
        device: req.device.to_string(),
        profile: profile.name.clone(),
        version: b.version.clone(),
        frozen: b.frozen,
        windows: fitted.windows,
        first_window: fitted.first_window,
        last_window: fitted.last_window,
        skipped,
        skipped_why: why,
        mean: b.mean.clone(),
        std,
        published,
        fitted,
    })
}

/// The stream a request is for.
pub(crate) fn stream_of(req: &Request) -> StreamKey {
    StreamKey {
        device: req.device.clone(),
        profile: req.profile.name.clone(),
    }
}

/// Publishes to the request's target; returns where (none for a dry run).
pub(crate) async fn publish(
    req: &Request,
    baseline: &vigil_core::scorer::Baseline,
    s3: Option<&S3Client>,
) -> Result<Option<String>, CalibrateError> {
    let stream = stream_of(req);
    Ok(match &req.target {
        Target::None => None,
        Target::Dir(dir) => Some(
            publish_to_dir(dir, &stream, baseline)?
                .display()
                .to_string(),
        ),
        Target::S3(location) => {
            #[cfg(feature = "s3")]
            {
                let s3 = s3.ok_or_else(|| CalibrateError::Location("no S3 client".into()))?;
                let key = s3::put(s3, location, &stream, baseline).await?;
                Some(format!("s3://{}/{key}", location.bucket))
            }
            #[cfg(not(feature = "s3"))]
            {
                let _ = s3;
                return Err(no_s3(&location.to_string()));
            }
        }
    })
}

/// The baseline published at the request's target now, if any (what the edge or the Lambda
/// would adopt).
pub(crate) async fn published(
    req: &Request,
    s3: Option<&S3Client>,
) -> Result<Option<vigil_core::scorer::Baseline>, CalibrateError> {
    let stream = stream_of(req);
    match &req.target {
        Target::None => Ok(None),
        Target::Dir(dir) => {
            let path = edge_baseline_path(dir, &stream);
            match std::fs::read(&path) {
                Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                    CalibrateError::Location(format!(
                        "{}: the published baseline is unreadable ({e}); move it aside to start over",
                        path.display()
                    ))
                }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(CalibrateError::Io {
                    path: path.display().to_string(),
                    source,
                }),
            }
        }
        Target::S3(location) => {
            #[cfg(feature = "s3")]
            {
                let s3 = s3.ok_or_else(|| CalibrateError::Location("no S3 client".into()))?;
                s3::get(s3, location, &stream).await
            }
            #[cfg(not(feature = "s3"))]
            {
                let _ = s3;
                Err(no_s3(&location.to_string()))
            }
        }
    }
}

/// `<state>/baselines/<profile>/<device>.json`: where `vigil edge --state <state>` reads.
pub fn edge_baseline_path(state_dir: &Path, stream: &StreamKey) -> PathBuf {
    state_dir
        .join("baselines")
        .join(&stream.profile)
        .join(format!("{}.json", stream.device))
}

/// Writes the baseline atomically: a temporary file in the same directory, synced, then renamed
/// over the target (the edge reads either the old file or the new one, never half of one).
pub fn publish_to_dir(
    state_dir: &Path,
    stream: &StreamKey,
    baseline: &vigil_core::scorer::Baseline,
) -> Result<PathBuf, CalibrateError> {
    let path = edge_baseline_path(state_dir, stream);
    let dir = path.parent().expect("has a parent").to_path_buf();
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |source| CalibrateError::Io { path: p, source }
    };
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let tmp = dir.join(format!(
        ".{}.json.tmp-{}",
        stream.device,
        std::process::id()
    ));
    let body = serde_json::to_vec_pretty(baseline).expect("a baseline serializes");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        // The rename itself is durable once the directory is synced.
        std::fs::File::open(&dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(&path)(e)
    })?;
    Ok(path)
}

fn valid_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

impl Request {
    /// The request the flags describe (profile loaded and checked, locations parsed).
    pub fn from_args(args: &CalibrateArgs) -> Result<Self, CalibrateError> {
        let device = DeviceId::new(args.device.clone()).map_err(CalibrateError::Device)?;
        let source = match (&args.from, &args.from_archive) {
            (Some(path), None) => Source::File(path.clone()),
            (None, Some(url)) => {
                if let Some(s) = &args.since {
                    if !valid_date(s) {
                        return Err(CalibrateError::Location(format!(
                            "--since {s:?}: expected YYYY-MM-DD"
                        )));
                    }
                }
                #[cfg(not(feature = "s3"))]
                return Err(no_s3(url));
                #[cfg(feature = "s3")]
                Source::Archive {
                    location: S3Location::parse(url, s3::ARCHIVE_PREFIX)?,
                    since: args.since.clone(),
                }
            }
            _ => {
                return Err(CalibrateError::Location(
                    "give exactly one of --from and --from-archive".into(),
                ))
            }
        };
        if args.last == Some(0) {
            return Err(CalibrateError::Location("--last must be at least 1".into()));
        }
        let target = if args.dry_run {
            Target::None
        } else {
            Target::parse(args.to.as_deref())?
        };
        let profile = load_profile(&models::models_dir(args.models.as_deref()), &args.profile)?;
        Ok(Self {
            profile,
            device,
            source,
            last: args.last,
            include_flagged: args.include_flagged,
            keep_learning: args.keep_learning,
            target,
            now_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        })
    }

    #[cfg(feature = "s3")]
    fn needs_s3(&self) -> bool {
        matches!(self.source, Source::Archive { .. }) || matches!(self.target, Target::S3(_))
    }
}

/// An S3 client when the request's source or target is in S3.
pub(crate) async fn s3_for(req: &Request) -> Option<S3Client> {
    #[cfg(feature = "s3")]
    {
        if req.needs_s3() {
            return Some(s3_client().await);
        }
        None
    }
    #[cfg(not(feature = "s3"))]
    {
        let _ = req;
        None
    }
}

pub async fn run(args: CalibrateArgs) -> anyhow::Result<()> {
    let req = Request::from_args(&args)?;
    let s3 = s3_for(&req).await;
    let report = calibrate(&req, s3.as_ref()).await?;
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.6}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "vigil calibrate: {} ({}): {} windows ({}..={}), {} skipped ({})",
        report.device,
        report.profile,
        report.windows,
        report.first_window,
        report.last_window,
        report.skipped,
        report.skipped_why
    );
    println!(
        "  version {} ({})",
        report.version,
        if report.frozen {
            "frozen until the next calibration"
        } else {
            "keeps learning online"
        }
    );
    println!("  mean [{}]", fmt(&report.mean));
    println!("  std  [{}]", fmt(&report.std));
    match &report.published {
        Some(p) => println!("  published to {p}"),
        None => println!("  dry run: not published"),
    }
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

#[cfg(test)]
mod tests;
