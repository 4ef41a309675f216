//! The `vigil` command line: argument parsing and wiring only. The rooms are the crates:
//! `vigil-edge` (edge runtime, calibration), `vigil-device` (device agent), `vigil-sim` (replay,
//! fleet), `vigil-eval` (evaluations, feature export).

mod alarm;
mod demo;
mod edge;

use clap::{Parser, Subcommand};
use vigil_device as device;
use vigil_edge::calibrate;
use vigil_eval::{eval, features};
use vigil_sim::{fleet, replay};

/// Vigil: condition monitoring for machines — the edge runner and the tools around it.
#[derive(Parser)]
#[command(name = "vigil", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipeline against an MQTT broker (an embedded one by default).
    Edge(edge::EdgeArgs),
    /// Act on an alarm of a running edge: ack, snooze, disable, enable, reset.
    Alarm(alarm::AlarmArgs),
    /// Publish a dataset's cycles as seq-numbered telemetry (a device simulator).
    Replay(replay::ReplayArgs),
    /// Edge + replay together on the committed sample of the hydraulic rig.
    Demo(demo::DemoArgs),
    /// Run a dataset through the full pipeline and report accuracy; last line is JSON.
    Eval(eval::EvalArgs),
    /// Fit a device's baseline from its normal data and publish it, versioned.
    Calibrate(calibrate::CalibrateArgs),
    /// Fit a machine's learned normal (PCA, T² and SPE) from its normal windows and publish it.
    TrainNormal(vigil_edge::train_normal::TrainNormalArgs),
    /// Export the features the Rust transforms compute (training uses the same code).
    Features(features::FeaturesArgs),
    /// Device / gateway agent: a sensor source to MQTT, with an on-disk queue that loses nothing.
    Device(device::DeviceArgs),
    /// Many simulated devices against the edge pipeline; reports msgs/s, latency, memory, loss.
    Fleet(fleet::FleetArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VIGIL_LOG")
                // rumqttd logs every abrupt client disconnect (normal on flaky links) as an
                // error; VIGIL_LOG=rumqttd=info brings it back.
                .unwrap_or_else(|_| "warn,rumqttd=off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Edge(args) => edge::run(args).await,
        Command::Alarm(args) => alarm::run(args).await,
        Command::Replay(args) => replay::run(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Eval(args) => eval::run(args).await,
        Command::Calibrate(args) => calibrate::run(args).await,
        Command::TrainNormal(args) => vigil_edge::train_normal::run(args).await,
        Command::Features(args) => features::run(args).await,
        Command::Device(args) => device::run(args).await,
        Command::Fleet(args) => fleet::run(args).await,
    }
}
