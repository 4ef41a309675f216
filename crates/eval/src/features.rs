//! `vigil features <task> --data DIR --out FILE.csv`: the feature rows the pipeline computes.
//!
//! Each dataset window is assembled exactly as the pipeline assembles it (rows = time, columns =
//! the profile's channels, f32) and run through the profile's own transform chain
//! (`vigil_core::transform::Chain`), so the Python training scripts learn from the very numbers
//! the product scores at run time: no train/serve skew.
//!
//! Output: CSV with a header `index,group,label,f0,f1,...`: `index` is the window's position in
//! the dataset (frame, cycle), `group` the file or block it comes from, `label` its truth.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use vigil_core::transform::{Chain, Matrix};
use vigil_core::Profile;

use vigil_datasets::models;
use vigil_datasets::{label_of, read_cwru, Hydraulic, Rmg941};

use crate::options::Task;

#[derive(Debug, Args)]
pub struct FeaturesArgs {
    pub task: Task,
    /// Dataset directory, laid out as ../shared/datasets/<task>.
    #[arg(long)]
    pub data: PathBuf,
    /// Output CSV file.
    #[arg(long)]
    pub out: PathBuf,
    /// Hydraulic target (cooler, valve, pump, accumulator).
    #[arg(long)]
    pub target: Option<String>,
    /// Profile whose transforms to run (default: the task's profile), a name in the models
    /// directory or a path to a .toml file.
    #[arg(long)]
    pub profile: Option<String>,
    /// Models directory (default: models/ of this checkout, or VIGIL_MODELS_DIR).
    #[arg(long)]
    pub models: Option<PathBuf>,
}

/// One window of a dataset, before the transforms.
pub struct Window {
    pub index: usize,
    pub group: String,
    pub label: String,
    pub matrix: Matrix,
}

/// The profile a task's features and evaluation use.
pub fn default_profile(task: Task, target: Option<&str>) -> String {
    match task {
        Task::Hydraulic => format!("hydraulic-{}", target.unwrap_or("cooler")),
        Task::Rmg941 => "rmg941".into(),
        Task::Cwru => "cwru".into(),
        Task::Nab => "nab-ewma".into(),
    }
}

/// Reads a profile by name from the models directory, or from a `.toml` path.
pub fn read_profile(name_or_path: &str, models: Option<&Path>) -> anyhow::Result<Profile> {
    let path = if name_or_path.ends_with(".toml") {
        PathBuf::from(name_or_path)
    } else {
        models::models_dir(models)
            .join("profiles")
            .join(format!("{name_or_path}.toml"))
    };
    Ok(Profile::load(&path)?)
}

/// The dataset's windows in the profile's channel order.
pub fn windows(
    task: Task,
    data: &Path,
    profile: &Profile,
    target: Option<&str>,
) -> anyhow::Result<Vec<Window>> {
    let channels: Vec<&str> = profile.channels.iter().map(String::as_str).collect();
    let size = profile.window.size as usize;
    Ok(match task {
        Task::Hydraulic => {
            let column = crate::tasks::hydraulic::target_column(target.unwrap_or("cooler"))?;
            let d = Hydraulic::load(data, &channels)?;
            if size != 60 {
                bail!("hydraulic profiles use 60-sample windows (one cycle), not {size}");
            }
            (0..d.cycles())
                .map(|c| {
                    let samples = d.cycle_samples(c, 0);
                    Window {
                        index: c,
                        group: "rig".into(),
                        label: label_of(d.conditions[c][column]),
                        matrix: Matrix::new(
                            60,
                            channels.len(),
                            samples.into_iter().flat_map(|s| s.values).collect(),
                        ),
                    }
                })
                .collect()
        }
        Task::Rmg941 => {
            let d = Rmg941::load(data, &channels)?;
            if size != d.frame_size {
                bail!(
                    "profile window {size} differs from the frame size {}",
                    d.frame_size
                );
            }
            d.frames
                .iter()
                .zip(&d.labels)
                .enumerate()
                .map(|(i, (f, l))| Window {
                    index: i,
                    group: "fan".into(),
                    label: l.to_string(),
                    matrix: Matrix::new(size, channels.len(), f.clone()),
                })
                .collect()
        }
        Task::Cwru => {
            if channels.len() != 1 {
                bail!("cwru profiles have one channel (de_accel_g)");
            }
            let mut out = Vec::new();
            for f in read_cwru(data)? {
                for (i, frame) in f.values.chunks_exact(size).enumerate() {
                    out.push(Window {
                        index: i,
                        group: f.name.clone(),
                        label: if f.normal { "normal" } else { "fault" }.into(),
                        matrix: Matrix::new(size, 1, frame.to_vec()),
                    });
                }
            }
            out
        }
        Task::Nab => bail!("nab is scored by streaming detectors; it has no feature export"),
    })
}

pub async fn run(args: FeaturesArgs) -> anyhow::Result<()> {
    let name = args
        .profile
        .clone()
        .unwrap_or_else(|| default_profile(args.task, args.target.as_deref()));
    let profile = read_profile(&name, args.models.as_deref())?;
    let chain = Chain::new(
        &profile.transforms,
        (profile.window.size as usize, profile.channels.len()),
    )
    .map_err(|e| anyhow::anyhow!("profile {name}: {e}"))?;
    let windows = windows(args.task, &args.data, &profile, args.target.as_deref())?;
    let file = std::fs::File::create(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let mut width = None;
    for w in windows.iter() {
        let f = chain.apply(w.matrix.clone());
        if width.is_none() {
            write!(out, "index,group,label")?;
            for j in 0..f.data.len() {
                write!(out, ",f{j}")?;
            }
            writeln!(out)?;
            width = Some(f.data.len());
        }
        write!(out, "{},{},{}", w.index, w.group, w.label)?;
        for v in &f.data {
            write!(out, ",{v}")?;
        }
        writeln!(out)?;
    }
    out.flush()?;
    eprintln!(
        "{} windows × {} features of profile {} → {}",
        windows.len(),
        width.unwrap_or(0),
        profile.name,
        args.out.display()
    );
    Ok(())
}
