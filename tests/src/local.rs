//! The local cloud path (`make local`, tests/tests/local.rs, tests/tests/local_batched.rs): the
//! IoT Core stand-in of `vigil-local` started against the emulators, with a fixture's resources
//! named as the Terraform names them, and the arguments of a `vigil device` that replays the
//! committed hydraulic sample through it. The certificates come from a CA made for the run
//! ([`pki`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use clap::Parser;
use serde_json::Value;
use vigil_edge::gateway::GatewayConfig;
use vigil_local::stack::{self, IngestMode, Stack};

use crate::fixture::{models_dir, Fixture, Names, Options};
use crate::{emulators, ort_dylib, repo_root};

/// The thing `make local` runs.
pub const THING: &str = "local-rig";
/// A second thing with its own certificate: an impostor for [`THING`]'s topics.
pub const OTHER_THING: &str = "other-rig";

#[derive(Parser)]
struct DeviceCli {
    #[command(flatten)]
    args: vigil_device::agent::DeviceArgs,
}

/// A file of this run's PKI (see [`pki`]).
pub fn tls(name: &str) -> PathBuf {
    pki().join(name)
}

/// The PKI of this run, made once per process with `openssl` (in
/// `target/local-e2e/pki-<pid>`): `ca` (stands for Amazon's root and IoT Core's device CA),
/// `endpoint` (the gateway's certificate, 127.0.0.1), `device` ([`THING`]'s), `other`
/// ([`OTHER_THING`]'s, same CA) and `impostor` (a certificate naming [`THING`] from another
/// CA), each `.pem` with its `.key`; valid for two days. The CA keys are deleted once signed.
pub fn pki() -> &'static Path {
    static PKI: OnceLock<PathBuf> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir = repo_root().join(format!("target/local-e2e/pki-{}", std::process::id()));
        make_pki(&dir).unwrap_or_else(|e| panic!("a local CA in {}: {e:#}", dir.display()));
        dir
    })
}

fn make_pki(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let openssl = |args: &[&str]| -> anyhow::Result<()> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .map_err(|e| anyhow::anyhow!("openssl (needed for the local CA): {e}"))?;
        anyhow::ensure!(
            out.status.success(),
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    };
    let key = |name: &str| {
        openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &format!("{name}.key"),
        ])
    };
    let ca = |name: &str, cn: &str| -> anyhow::Result<()> {
        key(name)?;
        openssl(&[
            "req",
            "-x509",
            "-new",
            "-key",
            &format!("{name}.key"),
            "-subj",
            &format!("/CN={cn}"),
            "-days",
            "2",
            "-out",
            &format!("{name}.pem"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ])
    };
    let leaf = |name: &str, cn: &str, ca: &str, ext: &str| -> anyhow::Result<()> {
        key(name)?;
        openssl(&[
            "req",
            "-new",
            "-key",
            &format!("{name}.key"),
            "-subj",
            &format!("/CN={cn}"),
            "-out",
            &format!("{name}.csr"),
        ])?;
        std::fs::write(dir.join(format!("{name}.ext")), ext)?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ])
    };
    let client = "extendedKeyUsage=clientAuth\nbasicConstraints=critical,CA:FALSE\n";
    ca("ca", "Vigil local CA")?;
    ca("other-ca", "Someone else's CA")?;
    leaf(
        "endpoint",
        "127.0.0.1",
        "ca",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\n",
    )?;
    leaf("device", THING, "ca", client)?;
    leaf("other", OTHER_THING, "ca", client)?;
    leaf("impostor", THING, "other-ca", client)?;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.ends_with(".csr")
            || name.ends_with(".ext")
            || name.ends_with(".srl")
            || name == "ca.key"
            || name == "other-ca.key"
        {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A stack name unique to this run, in the form the Terraform's `name` variable accepts
/// (3-20 characters: lower case letters, digits and dashes).
/// The debug ingest `bootstrap` the local stack runs (`make test` builds it).
pub fn debug_bootstrap() -> PathBuf {
    let bootstrap = repo_root().join("target/debug/bootstrap");
    assert!(
        bootstrap.is_file(),
        "{} missing: cargo build -p vigil-ingest --bin bootstrap",
        bootstrap.display()
    );
    bootstrap
}

pub fn run_name() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("vl-{}-{n}", std::process::id() % 10_000_000)
}

/// A fixture whose table, topic, queue and buckets carry the names the Terraform gives a stack
/// called `name` (the alerts topic's subscribed queue is local only: `<topic>-inbox`).
pub async fn fixture(name: &str) -> Fixture {
    let tf = stack::resource_names(&repo_root(), name).expect("the Terraform's resource names");
    Fixture::with_names(
        Options::default(),
        Names {
            name: name.to_string(),
            table: tf.table,
            alerts_queue: format!("{}-inbox", tf.alerts_topic),
            alerts_topic: tf.alerts_topic,
            rejects_queue: tf.rejects_queue,
            archive_bucket: tf.archive_bucket,
            models_bucket: tf.models_bucket,
        },
    )
    .await
}

/// The stand-in in front of `fx`'s table, topic, queues and buckets (`fx.name` is the stack's
/// name), in `mode`, running `bootstrap`; the gateway on `gateway_listen` (port 0: any).
pub async fn start(
    fx: &Fixture,
    bootstrap: PathBuf,
    gateway_listen: &str,
    mode: IngestMode,
) -> (Stack, PathBuf) {
    let root = repo_root();
    let cargo_lambda = root.join(".tools/venv/bin/cargo-lambda");
    assert!(cargo_lambda.is_file(), "cargo-lambda missing: make setup");
    let e = emulators();
    let certs = root.join(format!("target/local-e2e/certs-{}", fx.name));
    std::fs::create_dir_all(&certs).unwrap();
    // Both things' certificates attached, as `aws_iot_thing_principal_attachment` does.
    std::fs::copy(tls("device.pem"), certs.join(format!("{THING}.pem"))).unwrap();
    std::fs::copy(tls("other.pem"), certs.join(format!("{OTHER_THING}.pem"))).unwrap();
    let function_env: BTreeMap<String, String> = [
        ("VIGIL_TABLE_NAME", fx.table.clone()),
        ("VIGIL_ALERT_TOPIC_ARN", fx.topic_arn.clone()),
        ("VIGIL_ARCHIVE_BUCKET", fx.archive_bucket.clone()),
        ("VIGIL_MODELS_BUCKET", String::new()),
        ("VIGIL_REJECTS_QUEUE_URL", fx.rejects_queue_url.clone()),
        ("VIGIL_DEFAULT_PROFILE", "hydraulic-cooler".into()),
        ("VIGIL_REQUIRED_PROFILES", "hydraulic-cooler".into()),
        ("VIGIL_MODELS_DIR", models_dir().display().to_string()),
        ("VIGIL_SAGEMAKER_ENDPOINT", String::new()),
        ("VIGIL_SAGEMAKER_FALLBACK", "true".into()),
        ("VIGIL_WINDOW_TTL_HOURS", "48".into()),
        ("VIGIL_BASELINES_BUCKET", String::new()),
        ("VIGIL_BASELINE_TTL_S", String::new()),
        ("ORT_DYLIB_PATH", ort_dylib().display().to_string()),
        ("RUST_LOG", "info".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let logs = root.join(format!("target/local-e2e/logs-{}", fx.name));
    let stack = stack::start(stack::StackConfig {
        repo: root.clone(),
        gateway: GatewayConfig {
            listen: gateway_listen.parse().expect("gateway address"),
            cert: tls("endpoint.pem"),
            key: tls("endpoint.key"),
            device_ca: Some(tls("ca.pem")),
            device_certs: certs,
        },
        moto: e.moto.clone(),
        dynamodb: e.dynamodb.clone(),
        function_env,
        cargo_lambda,
        bootstrap,
        task_root: root.clone(),
        logs: logs.clone(),
        runtime_api_port: free_port(),
        data_plane_listen: "127.0.0.1:0".parse().unwrap(),
        first_retry_pause: Duration::from_millis(500),
        name: fx.name.clone(),
        mode,
    })
    .await
    .expect("the local stand-in starts");
    (stack, logs)
}

/// `vigil device` as `THING` over mutual TLS to the gateway on `gateway_port`, replaying
/// `cycles` cycles of the committed hydraulic sample as fast as it can, subscribed to its
/// shadow.
pub fn device_args(
    gateway_port: u16,
    cycles: usize,
    state: &Path,
) -> vigil_device::agent::DeviceArgs {
    device_args_via(gateway_port, cycles, state, None, 30)
}

/// [`device_args`], publishing through Basic Ingest to `basic_ingest` (a rule name) when
/// given, `batch` samples per message.
pub fn device_args_via(
    gateway_port: u16,
    cycles: usize,
    state: &Path,
    basic_ingest: Option<&str>,
    batch: usize,
) -> vigil_device::agent::DeviceArgs {
    let root = repo_root();
    let endpoint = format!("127.0.0.1:{gateway_port}");
    let source = format!(
        "replay-hydraulic:{}",
        root.join("models/samples/hydraulic").display()
    );
    let cycles = cycles.to_string();
    let batch = batch.to_string();
    let (cert, key, ca) = (tls("device.pem"), tls("device.key"), tls("ca.pem"));
    let mut args = vec![
        "device",
        "--thing",
        THING,
        "--endpoint",
        &endpoint,
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--ca",
        ca.to_str().unwrap(),
        "--source",
        &source,
        "--cycles",
        &cycles,
        "--speed",
        "0",
        "--batch",
        &batch,
        "--state",
        state.to_str().unwrap(),
        "--exit-when-drained",
        "--quiet",
    ];
    if let Some(rule) = basic_ingest {
        args.extend(["--basic-ingest", rule]);
    }
    DeviceCli::parse_from(args).args
}

/// Runs `vigil device` for `cycles` cycles against `stack` and returns the verdicts seen on the
/// device's condition topic, in the order they arrived (one per cycle), or panics after
/// `within` naming what came.
pub async fn replay_and_observe(stack: &Stack, cycles: usize, within: Duration) -> Vec<Value> {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let broker_port = stack.broker.addr().port();
    let (observer, mut observed) = AsyncClient::new(
        MqttOptions::new(
            format!("observer-{}", stack.names.rule),
            "127.0.0.1",
            broker_port,
        ),
        256,
    );
    observer
        .subscribe(format!("dt/vigil/{THING}/condition"), QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = observed.poll().await.expect("observer") {
            break;
        }
    }
    let state = repo_root().join(format!("target/local-e2e/device-{}", stack.names.rule));
    let device = tokio::spawn(vigil_device::agent::run(device_args(
        stack.gateway.port(),
        cycles,
        &state,
    )));
    let mut verdicts = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while verdicts.len() < cycles {
        let Ok(event) = tokio::time::timeout_at(deadline, observed.poll()).await else {
            panic!(
                "{} of {cycles} verdicts within {within:?}: {verdicts:?}; mapping {:?}; invocations {:?}",
                verdicts.len(),
                stack.mapping,
                stack.invocations
            )
        };
        if let Event::Incoming(Packet::Publish(p)) = event.expect("observer's broker connection") {
            verdicts.push(serde_json::from_slice(&p.payload).expect("verdict JSON"));
        }
    }
    device.await.expect("device task").expect("vigil device");
    verdicts
}
