//! The whole stand-in wired together, as `make local` and the end-to-end test run it: the
//! embedded broker behind the device gateway (mutual TLS, per-device policy), the local IoT
//! data plane, the ingest function under the Runtime API emulator with the environment the
//! Terraform gives it, and the Terraform's topic rule handing messages to it asynchronously.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use rumqttc::{AsyncClient, MqttOptions};
use serde_json::Value;
use tokio::sync::mpsc;
use vigil_edge::broker::EmbeddedBroker;
use vigil_edge::gateway::{Gateway, GatewayConfig, GatewayCounters, PolicyDocument};

use crate::dataplane::DataPlane;
use crate::invoke::{AsyncInvoker, InvokeCounters};
use crate::lambda::{LambdaSpec, RunningLambda};
use crate::rule::TopicRule;
use crate::terraform::PipelineTerraform;

/// Lambda's default for asynchronous invocations (the Terraform's `retry_attempts` default).
pub const RETRIES: u32 = 2;

/// What the stand-in needs.
#[derive(Clone, Debug)]
pub struct StackConfig {
    /// The repository: `infra/modules/pipeline` and `functions/ingest/Cargo.toml` are read.
    pub repo: PathBuf,
    pub gateway: GatewayConfig,
    /// moto (SNS, SQS, S3) and DynamoDB Local.
    pub moto: String,
    pub dynamodb: String,
    /// A local value for each environment variable the Terraform sets on the function, except
    /// `VIGIL_IOT_DATA_ENDPOINT` (the stand-in's own data plane).
    pub function_env: BTreeMap<String, String>,
    pub cargo_lambda: PathBuf,
    pub bootstrap: PathBuf,
    pub task_root: PathBuf,
    pub logs: PathBuf,
    pub runtime_api_port: u16,
    pub data_plane_listen: SocketAddr,
    /// The pause before the first retry (Lambda: about a minute; locally shorter).
    pub first_retry_pause: Duration,
    pub rule_name: String,
}

/// The running stand-in; everything stops when it is dropped (children killed, tasks with the
/// runtime).
pub struct Stack {
    pub broker: EmbeddedBroker,
    pub gateway: SocketAddr,
    pub gateway_counters: Arc<GatewayCounters>,
    pub data_plane_url: String,
    pub plane: DataPlane,
    pub invocations: Arc<InvokeCounters>,
    /// Lambda's on-failure records of events whose retries were exhausted.
    pub failures: mpsc::UnboundedReceiver<Value>,
    /// The rule's side: messages matched, rule errors.
    pub bridge: Arc<crate::bridge::BridgeCounters>,
    _lambda: RunningLambda,
}

pub async fn start(config: StackConfig) -> anyhow::Result<Stack> {
    let tf = PipelineTerraform::read(&config.repo.join("infra/modules/pipeline"))?;
    let rule = TopicRule::parse(&config.rule_name, &tf.topic_rule_sql()?)?;

    let broker = vigil_edge::broker::start_embedded("127.0.0.1:0".parse()?)?;
    let broker_at = ("127.0.0.1".to_string(), broker.addr().port());
    // The device policy the Terraform attaches, and Basic Ingest straight to the rule.
    let policy = crate::terraform::policy::device_policy_json(
        &config.repo.join("infra/modules/fleet"),
        &crate::terraform::policy::local_values(&config.rule_name),
    )?;
    let (basic_ingest, basic_ingest_rx) = mpsc::channel(1024);
    let gateway = Gateway::bind(&config.gateway, broker_at.clone())
        .await?
        .with_policy(PolicyDocument::from_json(&policy)?)
        .with_basic_ingest(basic_ingest);
    let (gateway_addr, gateway_counters) = (gateway.addr, Arc::clone(&gateway.counters));
    tokio::spawn(gateway.serve());

    let (mqtt, mqtt_events) = AsyncClient::new(
        MqttOptions::new("vigil-local-data-plane", "127.0.0.1", broker_at.1),
        256,
    );
    let plane = DataPlane::new(mqtt);
    tokio::spawn(plane.clone().serve_mqtt(mqtt_events));
    let listener = tokio::net::TcpListener::bind(config.data_plane_listen)
        .await
        .with_context(|| format!("data plane: bind {}", config.data_plane_listen))?;
    let data_plane_url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(plane.clone().serve(listener));

    // Every name the Terraform sets, resolved for local; none left out, none invented.
    let mut env = BTreeMap::new();
    let mut missing = Vec::new();
    for name in tf.function_environment()? {
        let value = if name == "VIGIL_IOT_DATA_ENDPOINT" {
            Some(data_plane_url.clone())
        } else {
            config.function_env.get(&name).cloned()
        };
        match value {
            Some(v) => {
                env.insert(name, v);
            }
            None => missing.push(name),
        }
    }
    if !missing.is_empty() {
        bail!("the Terraform sets {missing:?} on the function; no local value for them");
    }
    for (k, v) in [
        ("AWS_ENDPOINT_URL", config.moto.clone()),
        ("AWS_ENDPOINT_URL_DYNAMODB", config.dynamodb.clone()),
        ("AWS_ENDPOINT_URL_IOT_DATA_PLANE", data_plane_url.clone()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
    ] {
        env.insert(k.to_string(), v);
    }
    let lambda = crate::lambda::start(
        &LambdaSpec {
            cargo_lambda: config.cargo_lambda.clone(),
            manifest: config.repo.join("functions/ingest/Cargo.toml"),
            bootstrap: config.bootstrap.clone(),
            task_root: config.task_root.clone(),
            env,
            function_name: "vigil-ingest".into(),
            timeout: Duration::from_secs(30),
            logs: config.logs.clone(),
        },
        config.runtime_api_port,
    )
    .await?;

    let (failed_tx, failures) = mpsc::unbounded_channel();
    let invoker = AsyncInvoker::new(
        lambda.function.clone(),
        RETRIES,
        config.first_retry_pause,
        1,
        Some(failed_tx),
    );
    let invocations = Arc::clone(&invoker.counters);
    let bridge = Arc::<crate::bridge::BridgeCounters>::default();
    tokio::spawn(crate::bridge::run_basic_ingest(
        basic_ingest_rx,
        rule.clone(),
        invoker.clone(),
        Arc::clone(&bridge),
    ));
    tokio::spawn(crate::bridge::run(
        broker_at,
        rule,
        invoker,
        Arc::clone(&bridge),
    ));
    Ok(Stack {
        broker,
        gateway: gateway_addr,
        gateway_counters,
        data_plane_url,
        plane,
        invocations,
        failures,
        bridge,
        _lambda: lambda,
    })
}
