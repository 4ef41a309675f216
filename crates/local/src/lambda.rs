//! The function as Lambda runs it: cargo-lambda's Runtime API emulator
//! (`cargo lambda watch --only-lambda-apis`, which serves the Runtime API and the Invoke API but
//! starts no function) and the `bootstrap` binary started by us against it, with the function's
//! environment. Both are child processes killed when dropped; their output goes to log files
//! outside the crate directories (cargo-lambda's watcher would rebuild on changes there).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::process::{Child, Command};

use crate::invoke::Function;

/// The name cargo-lambda's emulator gives a function it does not start itself.
pub const EMULATED_FUNCTION: &str = "_";

/// What to run, and where.
#[derive(Clone, Debug)]
pub struct LambdaSpec {
    /// `cargo-lambda` (the PyPI package's executable).
    pub cargo_lambda: PathBuf,
    /// A Cargo manifest for cargo-lambda to read (it needs one; nothing is built).
    pub manifest: PathBuf,
    /// The `bootstrap` to run (unzipped from the Lambda package, or a debug build).
    pub bootstrap: PathBuf,
    /// The working directory of the bootstrap (`LAMBDA_TASK_ROOT`, the unzipped package).
    pub task_root: PathBuf,
    /// The function's environment (from the Terraform, resolved for local).
    pub env: BTreeMap<String, String>,
    pub function_name: String,
    /// Where the function's ARN says it runs.
    pub account_id: String,
    pub region: String,
    pub timeout: Duration,
    pub logs: PathBuf,
}

/// The running emulator and function.
#[derive(Debug)]
pub struct RunningLambda {
    pub function: Function,
    _emulator: Child,
    _bootstrap: Child,
}

fn log_file(dir: &Path, name: &str) -> anyhow::Result<std::fs::File> {
    std::fs::create_dir_all(dir).with_context(|| format!("log dir {}", dir.display()))?;
    let path = dir.join(name);
    std::fs::File::create(&path).with_context(|| format!("log {}", path.display()))
}

/// Starts the emulator on `port` (loopback), waits until it listens, then the bootstrap.
pub async fn start(spec: &LambdaSpec, port: u16) -> anyhow::Result<RunningLambda> {
    let emulator_log = log_file(&spec.logs, "runtime-api.log")?;
    let emulator = Command::new(&spec.cargo_lambda)
        .args([
            "lambda",
            "watch",
            "--only-lambda-apis",
            "-A",
            "127.0.0.1",
            "-P",
        ])
        .arg(port.to_string())
        .arg("--manifest-path")
        .arg(&spec.manifest)
        .stdin(Stdio::null())
        .stdout(emulator_log.try_clone()?)
        .stderr(emulator_log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("start {}", spec.cargo_lambda.display()))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if Instant::now() > deadline {
            bail!(
                "the Runtime API emulator did not listen on {port} within 60 s (see {})",
                spec.logs.join("runtime-api.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let bootstrap_log = log_file(&spec.logs, "function.log")?;
    let bootstrap = Command::new(&spec.bootstrap)
        .current_dir(&spec.task_root)
        .env_clear()
        .envs(&spec.env)
        // The form cargo-lambda prints: its Runtime API sits under `/.rt`.
        .env(
            "AWS_LAMBDA_RUNTIME_API",
            format!("http://127.0.0.1:{port}/.rt"),
        )
        .env("AWS_LAMBDA_FUNCTION_NAME", &spec.function_name)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("LAMBDA_TASK_ROOT", &spec.task_root)
        .stdin(Stdio::null())
        .stdout(bootstrap_log.try_clone()?)
        .stderr(bootstrap_log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("start {}", spec.bootstrap.display()))?;
    Ok(RunningLambda {
        function: Function {
            host: "127.0.0.1".into(),
            port,
            name: EMULATED_FUNCTION.into(),
            arn: format!(
                "arn:aws:lambda:{}:{}:function:{}",
                spec.region, spec.account_id, spec.function_name
            ),
            timeout: spec.timeout,
        },
        _emulator: emulator,
        _bootstrap: bootstrap,
    })
}
