//! The whole stand-in wired together, as `make local` and the end-to-end test run it: the
//! embedded broker behind the device gateway (mutual TLS, per-device policy), the local IoT
//! data plane, the ingest function under the Runtime API emulator with the environment the
//! Terraform gives it, and the Terraform's topic rule handing messages to it asynchronously
//! (direct mode) or to the ingest queue or stream that an event source mapping polls (the
//! batched modes). The rule, function, queues and stream carry the Terraform's names.

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

use crate::awsjson::{AwsJson, Endpoint};
use crate::bridge::BridgeCounters;
use crate::dataplane::DataPlane;
use crate::invoke::{AsyncInvoker, FailureSink, InvokeCounters};
use crate::lambda::{LambdaSpec, RunningLambda};
use crate::mapping::{
    ErrorAction, KinesisMapping, MappingCounters, RuleAction, SqsMapping, Target,
};
use crate::rule::TopicRule;
use crate::terraform::{NameInputs, PipelineTerraform, ResourceNames};

/// The pipeline's `ingest_mode`: how the topic rule reaches the function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IngestMode {
    Direct,
    Sqs,
    Kinesis,
}

impl std::str::FromStr for IngestMode {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "direct" => Ok(Self::Direct),
            "sqs" => Ok(Self::Sqs),
            "kinesis" => Ok(Self::Kinesis),
            _ => bail!("ingest mode {s:?}: direct, sqs or kinesis"),
        }
    }
}

/// moto's account and region: what the Terraform's `aws_caller_identity` and `aws_region` would
/// report against it, so what its names are formed with.
pub fn moto_names(name: &str) -> NameInputs {
    NameInputs {
        name: name.to_string(),
        account_id: "123456789012".into(),
        region: "us-east-1".into(),
    }
}

/// The names the pipeline module gives a stack called `name` in moto.
pub fn resource_names(repo: &std::path::Path, name: &str) -> anyhow::Result<ResourceNames> {
    PipelineTerraform::read(&repo.join("infra/modules/pipeline"))?.resource_names(&moto_names(name))
}

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
    /// The pause before the first retry (Lambda: about a minute; locally shorter); in the
    /// batched modes the pause before a failed record is delivered again.
    pub first_retry_pause: Duration,
    /// The Terraform's `var.name` for this stack: every resource name is formed from it.
    pub name: String,
    pub mode: IngestMode,
}

/// The running stand-in; everything stops when it is dropped (children killed, tasks with the
/// runtime).
pub struct Stack {
    pub broker: EmbeddedBroker,
    pub gateway: SocketAddr,
    pub gateway_counters: Arc<GatewayCounters>,
    pub data_plane_url: String,
    pub plane: DataPlane,
    /// The direct mode's asynchronous invocations.
    pub invocations: Arc<InvokeCounters>,
    /// The batched modes' event source mapping.
    pub mapping: Arc<MappingCounters>,
    /// The topic rule: messages it matched, rule errors.
    pub rule: Arc<BridgeCounters>,
    /// Messages the rule's action failed on (sent to its error action, the failures queue).
    pub rule_action_failures: Arc<std::sync::atomic::AtomicU64>,
    pub mode: IngestMode,
    pub names: ResourceNames,
    /// Lambda's on-failure records: direct events whose retries were exhausted, Kinesis
    /// batches past `maximum_retry_attempts`; each also sent to the failures queue (the
    /// Terraform's on-failure destination), [`Stack::failures_queue_url`].
    pub failures: mpsc::UnboundedReceiver<Value>,
    pub failures_queue_url: String,
    _lambda: RunningLambda,
}

pub async fn start(config: StackConfig) -> anyhow::Result<Stack> {
    let tf = PipelineTerraform::read(&config.repo.join("infra/modules/pipeline"))?;
    let inputs = moto_names(&config.name);
    let names = tf.resource_names(&inputs)?;
    let rule = TopicRule::parse(&names.rule, &tf.topic_rule_sql()?)?;

    let broker = vigil_edge::broker::start_embedded("127.0.0.1:0".parse()?)?;
    let broker_at = ("127.0.0.1".to_string(), broker.addr().port());
    // The device policy the Terraform attaches, and Basic Ingest straight to the rule.
    let policy = crate::terraform::policy::device_policy_json(
        &config.repo.join("infra/modules/fleet"),
        &crate::terraform::policy::local_values(&names.rule),
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
            function_name: names.function.clone(),
            account_id: inputs.account_id.clone(),
            region: inputs.region.clone(),
            timeout: tf.function_timeout()?,
            logs: config.logs.clone(),
        },
        config.runtime_api_port,
    )
    .await?;

    let moto = Endpoint::parse(&config.moto)?;
    let (failed_tx, failures_queue_url, failures) =
        failure_destination(AwsJson::sqs(moto.clone(), &inputs.region), &names).await?;
    let mapping = Arc::<MappingCounters>::default();
    let mut invocations = Arc::<InvokeCounters>::default();
    let target = match config.mode {
        IngestMode::Direct => {
            let invoker = AsyncInvoker::new(
                lambda.function.clone(),
                tf.async_retries()?,
                config.first_retry_pause,
                1,
                Some(failed_tx),
            );
            invocations = Arc::clone(&invoker.counters);
            Target::Lambda(invoker)
        }
        IngestMode::Sqs => {
            let sqs = AwsJson::sqs(moto.clone(), &inputs.region);
            let source = tf.sqs_source()?;
            let (queue_url, queue_arn) =
                create_ingest_queue(&sqs, &names, source.max_receive_count).await?;
            tokio::spawn(
                SqsMapping {
                    sqs: sqs.clone(),
                    queue_url: queue_url.clone(),
                    queue_arn,
                    function: lambda.function.clone(),
                    source,
                    retry_after: config.first_retry_pause,
                    counters: Arc::clone(&mapping),
                }
                .run(),
            );
            Target::Sqs { sqs, queue_url }
        }
        IngestMode::Kinesis => {
            let kinesis = AwsJson::kinesis(moto.clone(), &inputs.region);
            let source = tf.kinesis_source()?;
            let stream_arn = create_ingest_stream(&kinesis, &names.ingest_stream).await?;
            let partition_key = source.partition_key.clone();
            spawn_kinesis(KinesisMapping {
                kinesis: kinesis.clone(),
                stream: names.ingest_stream.clone(),
                stream_arn,
                function: lambda.function.clone(),
                source,
                retry_after: config.first_retry_pause,
                on_failure: Some(failed_tx),
                counters: Arc::clone(&mapping),
            });
            Target::Kinesis {
                kinesis,
                stream: names.ingest_stream.clone(),
                partition_key,
            }
        }
    };
    // The rule's error_action: the failures queue.
    let action = RuleAction::new(
        target,
        Some(ErrorAction {
            sqs: AwsJson::sqs(moto, &inputs.region),
            queue_url: failures_queue_url.clone(),
            rule: names.rule.clone(),
        }),
    );
    let rule_action_failures = Arc::clone(&action.failed);
    let rule_counters = Arc::<BridgeCounters>::default();
    tokio::spawn(crate::bridge::run_basic_ingest(
        basic_ingest_rx,
        rule.clone(),
        action.clone(),
        Arc::clone(&rule_counters),
    ));
    tokio::spawn(crate::bridge::run(
        broker_at,
        rule,
        action,
        Arc::clone(&rule_counters),
    ));
    Ok(Stack {
        broker,
        gateway: gateway_addr,
        gateway_counters,
        data_plane_url,
        plane,
        invocations,
        mapping,
        rule: rule_counters,
        rule_action_failures,
        mode: config.mode,
        names,
        failures,
        failures_queue_url,
        _lambda: lambda,
    })
}

/// The failures queue as the Terraform names it, and a sink whose records are sent there (the
/// on-failure destination of the asynchronous invocations and of the Kinesis mapping), then
/// handed on to the returned receiver.
async fn failure_destination(
    sqs: AwsJson,
    names: &ResourceNames,
) -> anyhow::Result<(FailureSink, String, mpsc::UnboundedReceiver<Value>)> {
    let created = sqs
        .call(
            "CreateQueue",
            &serde_json::json!({"QueueName": names.failures_queue}),
        )
        .await?;
    let url = created["QueueUrl"]
        .as_str()
        .context("CreateQueue: no QueueUrl")?
        .to_string();
    let (sink, mut records) = mpsc::unbounded_channel::<Value>();
    let (forward, received) = mpsc::unbounded_channel();
    let queue = url.clone();
    tokio::spawn(async move {
        while let Some(record) = records.recv().await {
            let sent = sqs
                .call(
                    "SendMessage",
                    &serde_json::json!({"QueueUrl": queue, "MessageBody": record.to_string()}),
                )
                .await;
            if let Err(e) = sent {
                tracing::error!(error = %e, %record, "on-failure destination: record not delivered");
            }
            let _ = forward.send(record);
        }
    });
    Ok((sink, url, received))
}

fn spawn_kinesis(mapping: KinesisMapping) {
    let stream = mapping.stream.clone();
    tokio::spawn(async move {
        if let Err(e) = mapping.run().await {
            tracing::error!(%stream, error = %e, "kinesis mapping stopped");
        }
    });
}

/// The sqs mode's ingest queue and its dead-letter queue, as the Terraform makes them (the
/// redrive policy's `maxReceiveCount`); returns the queue's URL and ARN.
pub async fn create_ingest_queue(
    sqs: &AwsJson,
    names: &ResourceNames,
    max_receive_count: u32,
) -> anyhow::Result<(String, String)> {
    let dlq = sqs
        .call(
            "CreateQueue",
            &serde_json::json!({"QueueName": names.ingest_dlq}),
        )
        .await?;
    let dlq_arn = queue_arn(sqs, dlq["QueueUrl"].as_str().unwrap_or_default()).await?;
    let redrive =
        serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count});
    let queue = sqs
        .call(
            "CreateQueue",
            &serde_json::json!({
                "QueueName": names.ingest_queue,
                "Attributes": {"RedrivePolicy": redrive.to_string()},
            }),
        )
        .await?;
    let url = queue["QueueUrl"]
        .as_str()
        .context("CreateQueue: no QueueUrl")?
        .to_string();
    let arn = queue_arn(sqs, &url).await?;
    Ok((url, arn))
}

pub async fn queue_arn(sqs: &AwsJson, url: &str) -> anyhow::Result<String> {
    let answer = sqs
        .call(
            "GetQueueAttributes",
            &serde_json::json!({"QueueUrl": url, "AttributeNames": ["QueueArn"]}),
        )
        .await?;
    answer["Attributes"]["QueueArn"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("queue {url}: no QueueArn"))
}

/// The kinesis mode's ingest stream (one shard); returns its ARN once it is active.
pub async fn create_ingest_stream(kinesis: &AwsJson, name: &str) -> anyhow::Result<String> {
    kinesis
        .call(
            "CreateStream",
            &serde_json::json!({"StreamName": name, "ShardCount": 1}),
        )
        .await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let summary = kinesis
            .call(
                "DescribeStreamSummary",
                &serde_json::json!({"StreamName": name}),
            )
            .await?;
        let s = &summary["StreamDescriptionSummary"];
        if s["StreamStatus"] == "ACTIVE" {
            return s["StreamARN"]
                .as_str()
                .map(str::to_string)
                .with_context(|| format!("stream {name}: no StreamARN"));
        }
        if std::time::Instant::now() > deadline {
            bail!("stream {name} not active within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
