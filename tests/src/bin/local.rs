//! `make local`: the cloud path as deployed, on this machine (docs/local.md). Starts DynamoDB
//! Local and moto, the function's resources in them, and the IoT Core stand-in of `vigil-local`
//! with the ingest `bootstrap` under cargo-lambda's Runtime API emulator; replays the committed
//! hydraulic sample once from a `vigil device` with a certificate from a CA made for the run
//! (target/local-e2e/pki-<pid>), printing every verdict and every SNS alert, then keeps serving
//! (gateway on 127.0.0.1:8883) until Ctrl-C.
//!
//! `VIGIL_LOCAL_BOOTSTRAP`: the bootstrap to run (default target/debug/bootstrap; `make local`
//! passes the one unzipped from `make build`'s x86_64 package when it exists).
//! `VIGIL_LOCAL_MODE`: the pipeline's `ingest_mode`, `direct` (default), `sqs` or `kinesis`.
//! `VIGIL_LOCAL_NAME`: the stack's `name`, which every resource name is formed from as the
//! Terraform forms it (default: `infra/envs/localstack`'s default `name`).

use std::path::PathBuf;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use vigil_local::stack::IngestMode;
use vigil_local::terraform::PipelineTerraform;
use vigil_tests::local::{self, THING};
use vigil_tests::repo_root;

const GATEWAY: &str = "127.0.0.1:8883";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let root = repo_root();
    let bootstrap = std::env::var_os("VIGIL_LOCAL_BOOTSTRAP")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/debug/bootstrap"));
    anyhow::ensure!(
        bootstrap.is_file(),
        "{} missing (make build, or cargo build -p vigil-ingest --bin bootstrap)",
        bootstrap.display()
    );
    let mode: IngestMode = std::env::var("VIGIL_LOCAL_MODE")
        .unwrap_or_else(|_| "direct".into())
        .parse()
        .map_err(|e| anyhow::anyhow!("VIGIL_LOCAL_MODE: {e}"))?;
    let name = match std::env::var("VIGIL_LOCAL_NAME") {
        Ok(name) if !name.is_empty() => name,
        _ => PipelineTerraform::read(&root.join("infra/envs/localstack"))?.name_default()?,
    };
    let fx = local::fixture(&name).await;
    let (stack, logs) = local::start(&fx, bootstrap, GATEWAY, mode).await;
    println!(
        "IoT Core stand-in: gateway (mutual TLS) {GATEWAY}, broker {}, data plane {}",
        stack.broker.url(),
        stack.data_plane_url
    );
    let names = &stack.names;
    let source = match mode {
        IngestMode::Direct => format!(
            "rule {} -> function {} (asynchronous)",
            names.rule, names.function
        ),
        IngestMode::Sqs => format!(
            "rule {} -> queue {} (dead letters: {}) -> function {}",
            names.rule, names.ingest_queue, names.ingest_dlq, names.function
        ),
        IngestMode::Kinesis => format!(
            "rule {} -> stream {} -> function {}",
            names.rule, names.ingest_stream, names.function
        ),
    };
    println!("ingest mode {mode:?}: {source}");
    println!(
        "resources: table {}, alerts {}, rejects {}, archive {}, logs {}",
        fx.table,
        fx.topic_arn,
        names.rejects_queue,
        fx.archive_bucket,
        logs.display()
    );

    // Verdicts as the device sees them, on its topic.
    let (observer, mut observed) = AsyncClient::new(
        MqttOptions::new(
            "vigil-local-console",
            "127.0.0.1",
            stack.broker.addr().port(),
        ),
        256,
    );
    observer
        .subscribe("dt/vigil/+/condition", QoS::AtLeastOnce)
        .await?;
    tokio::spawn(async move {
        loop {
            match observed.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    println!(
                        "verdict  {} {}",
                        p.topic,
                        String::from_utf8_lossy(&p.payload)
                    )
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    });

    let state = root.join(format!("target/local/device-{}", std::process::id()));
    println!("device {THING}: replaying models/samples/hydraulic over mutual TLS");
    vigil_device::agent::run(local::device_args(stack.gateway.port(), 36, &state)).await?;

    // The thing's next seq after the 36 cycles of 60 samples: a run from a new queue must
    // continue there, or the pipeline drops every sample as a duplicate.
    let next_seq = 36 * 60;
    println!("serving until Ctrl-C; replay again as {THING} (from another terminal): cargo run -q -p vigil-cli -- device --thing {THING} --endpoint {GATEWAY} --cert {} --key {} --ca {} --state target/local/device-again --start-seq {next_seq} --source replay-hydraulic:models/samples/hydraulic",
        local::tls("device.pem").display(), local::tls("device.key").display(), local::tls("ca.pem").display());
    let mut stop = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        tokio::select! {
            _ = &mut stop => break,
            () = tokio::time::sleep(Duration::from_secs(1)) => {
                for alert in fx.alerts().await {
                    println!("ALERT    {}", alert["Message"].as_str().unwrap_or_default());
                }
            }
        }
    }
    println!(
        "invocations: {:?}; event source mapping: {:?}; gateway: {:?}",
        stack.invocations,
        stack.mapping,
        stack.gateway_counters.snapshot()
    );
    Ok(())
}
