//! `vigil eval <task> --data DIR`: a dataset through the full pipeline, with accuracy figures.
//! The last line printed is always one JSON object with the task's figures.

pub use crate::options::{EvalArgs, Task};
use crate::tasks;

pub async fn run(args: EvalArgs) -> anyhow::Result<()> {
    let summary = match args.task {
        Task::Hydraulic => tasks::hydraulic::eval(&args).await?,
        Task::Rmg941 => tasks::rmg941::eval(&args).await?,
        Task::Cwru => tasks::cwru::eval(&args).await?,
        Task::Nab => tasks::nab::eval(&args).await?,
    };
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}
