//! What an evaluation is asked: the task, its dataset and the models (the flags of `vigil eval`).

use std::path::PathBuf;

use clap::{Args, ValueEnum};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Task {
    /// UCI hydraulic rig (cooler by default; `--target` for valve, pump, accumulator).
    Hydraulic,
    /// PC fan IMU frames: soft sensor of the fan state.
    Rmg941,
    /// CWRU bearings: fault detection trained on normal data only.
    Cwru,
    /// NAB machine temperature: streaming anomaly detection.
    Nab,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    pub task: Task,
    /// Dataset directory, laid out as ../shared/datasets/<task>.
    #[arg(long)]
    pub data: PathBuf,
    /// What to predict, for tasks with several targets (hydraulic: cooler, valve, pump, accumulator).
    #[arg(long)]
    pub target: Option<String>,
    /// Models directory (default: models/ of this checkout, or VIGIL_MODELS_DIR).
    #[arg(long)]
    pub models: Option<PathBuf>,
}
