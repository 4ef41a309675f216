//! `fleet-lambda`: many simulated devices through the ingest handler against the emulators (the
//! Lambda path of `vigil fleet`). See `vigil_tests::fleet` for what is simulated and measured.
//!
//! ```sh
//! cargo build --release -p vigil-tests --bin fleet-lambda
//! target/release/fleet-lambda --devices 2500 --cycles 2 --batch 10 --mode sqs
//! ```
//!
//! Prints a summary, then the figures as one JSON object on the last line; exits with 1 on any
//! loss, duplicate result, given-up or rejected message, 2 on bad arguments.

use std::process::ExitCode;

use vigil_tests::fleet::{run, FleetOptions};

const USAGE: &str = "usage: fleet-lambda [--devices N] [--cycles N] [--batch N] [--mode sqs|direct] \
[--concurrency N] [--sqs-batch N] [--max-attempts N] [--redelivery-delay-ms N] [--seed N] [--threads N] [--no-dynamodb-check]";

fn parse(args: &[String]) -> Result<(FleetOptions, Option<usize>), String> {
    let mut o = FleetOptions::default();
    let mut threads = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if flag == "--no-dynamodb-check" {
            o.check_dynamodb = false;
            continue;
        }
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.into());
        }
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), v.to_string()),
            None => (
                flag.clone(),
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?,
            ),
        };
        let num = |v: &str| -> Result<usize, String> {
            v.parse().map_err(|_| format!("{name} {v:?}: not a number"))
        };
        match name.as_str() {
            "--devices" => o.devices = num(&value)?,
            "--cycles" => o.cycles = num(&value)?,
            "--batch" => o.batch = num(&value)?,
            "--mode" => o.mode = value.parse()?,
            "--concurrency" => o.concurrency = num(&value)?,
            "--sqs-batch" => o.sqs_batch = num(&value)?,
            "--max-attempts" => o.max_attempts = Some(num(&value)? as u32),
            "--seed" => o.seed = num(&value)? as u64,
            "--redelivery-delay-ms" => o.redelivery_delay_ms = num(&value)? as u64,
            "--threads" => threads = Some(num(&value)?),
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        }
    }
    o.validate()?;
    Ok((o, threads))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (opts, threads) = match parse(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    // Emulators first: starting them blocks, and they set the SDK's environment.
    vigil_tests::emulators();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(t) = threads {
        builder.worker_threads(t.max(1));
    }
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = match rt.block_on(run(opts)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fleet-lambda: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", report.summary());
    match serde_json::to_string(&report) {
        Ok(json) => println!("{json}"),
        Err(e) => eprintln!("report: {e}"),
    }
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
