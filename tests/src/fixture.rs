//! Per-test resources (table, topic, queues, buckets, things) with unique names, and the
//! function's runtime built through the same wiring as the Lambda's `main`.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::OnceLock;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, TimeToLiveSpecification,
};
use serde_json::{json, Value};
use vigil_core::telemetry::{encode_batch, encode_sample, Sample};
use vigil_ingest::{Config, Handled, Invocation, Runtime};

use crate::{emulators, http_with, repo_root, unique};

type Item = HashMap<String, AttributeValue>;

/// A models directory laid out like the bundled one: the repo's cooler model and profile, plus
/// the test profiles of `tests/fixtures/profiles` (the other bundled models are left out: they
/// only slow the cold start down).
pub fn models_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = repo_root();
        let dir = root.join(format!("target/emulators/models-{}", std::process::id()));
        let profiles = dir.join("profiles");
        std::fs::create_dir_all(&profiles).expect("models dir");
        let copy = |from: PathBuf, to: PathBuf| {
            std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
        };
        copy(
            root.join("models/hydraulic-cooler.onnx"),
            dir.join("hydraulic-cooler.onnx"),
        );
        copy(
            root.join("models/profiles/hydraulic-cooler.toml"),
            profiles.join("hydraulic-cooler.toml"),
        );
        for entry in std::fs::read_dir(root.join("tests/fixtures/profiles")).expect("profiles") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                copy(path.clone(), profiles.join(path.file_name().expect("name")));
            }
        }
        dir
    })
    .clone()
}

/// How a fixture's function is configured.
#[derive(Clone, Debug)]
pub struct Options {
    pub default_profile: String,
    pub sagemaker_endpoint: Option<String>,
    pub sagemaker_fallback: bool,
    pub models_bucket: bool,
    /// Read calibrated baselines from the models bucket (`VIGIL_BASELINES_BUCKET`), cached this
    /// many seconds (`VIGIL_BASELINE_TTL_S`); `None`: no baselines bucket.
    pub baseline_ttl_s: Option<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            default_profile: "hydraulic-cooler".into(),
            sagemaker_endpoint: None,
            sagemaker_fallback: true,
            models_bucket: false,
            baseline_ttl_s: None,
        }
    }
}

/// The names of a fixture's resources.
#[derive(Clone, Debug)]
pub struct Names {
    /// Prefix of the things the fixture creates.
    pub name: String,
    pub table: String,
    pub alerts_topic: String,
    /// The SQS queue subscribed to the alerts topic (the operator's inbox).
    pub alerts_queue: String,
    pub rejects_queue: String,
    pub archive_bucket: String,
    pub models_bucket: String,
}

impl Names {
    /// Names unique to this fixture (tests run in parallel against shared emulators).
    pub fn unique() -> Self {
        let name = unique("vigil");
        Self {
            table: format!("{name}-table"),
            alerts_topic: format!("{name}-alerts"),
            alerts_queue: format!("{name}-alerts"),
            rejects_queue: format!("{name}-rejects"),
            archive_bucket: format!("{name}-archive"),
            models_bucket: format!("{name}-models"),
            name,
        }
    }
}

pub struct Fixture {
    pub name: String,
    pub table: String,
    pub topic_arn: String,
    pub alerts_queue_url: String,
    pub rejects_queue_url: String,
    pub archive_bucket: String,
    pub models_bucket: String,
    pub sdk: SdkConfig,
    pub ddb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub s3: aws_sdk_s3::Client,
    pub iot: aws_sdk_iotdataplane::Client,
    pub options: Options,
    pub runtime: Runtime,
}

impl std::fmt::Debug for Fixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fixture").field("name", &self.name).finish()
    }
}

pub async fn sdk_config() -> SdkConfig {
    emulators();
    aws_config::load_defaults(BehaviorVersion::latest()).await
}

impl Fixture {
    pub async fn new(options: Options) -> Self {
        Self::with_names(options, Names::unique()).await
    }

    /// A fixture whose resources carry the given names.
    pub async fn with_names(options: Options, names: Names) -> Self {
        let sdk = sdk_config().await;
        let name = names.name.clone();
        let ddb = aws_sdk_dynamodb::Client::new(&sdk);
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let sns = aws_sdk_sns::Client::new(&sdk);
        let s3 = vigil_aws::s3_client(&sdk);
        let iot = aws_sdk_iotdataplane::Client::from_conf(
            aws_sdk_iotdataplane::config::Builder::from(&sdk)
                .endpoint_url(&emulators().moto)
                .build(),
        );

        let table = names.table.clone();
        ddb.create_table()
            .table_name(&table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr_def("pk"))
            .attribute_definitions(attr_def("sk"))
            .key_schema(key("pk", KeyType::Hash))
            .key_schema(key("sk", KeyType::Range))
            .send()
            .await
            .expect("create table");
        ddb.update_time_to_live()
            .table_name(&table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name("expires_at")
                    .build()
                    .expect("ttl spec"),
            )
            .send()
            .await
            .expect("enable TTL");

        let topic_arn = sns
            .create_topic()
            .name(&names.alerts_topic)
            .send()
            .await
            .expect("create topic")
            .topic_arn
            .expect("topic arn");
        let alerts_queue_url = create_queue(&sqs, &names.alerts_queue).await;
        let alerts_queue_arn = sqs
            .get_queue_attributes()
            .queue_url(&alerts_queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("queue attributes")
            .attributes
            .and_then(|a| {
                a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                    .cloned()
            })
            .expect("queue arn");
        sns.subscribe()
            .topic_arn(&topic_arn)
            .protocol("sqs")
            .endpoint(&alerts_queue_arn)
            .send()
            .await
            .expect("subscribe");
        let rejects_queue_url = create_queue(&sqs, &names.rejects_queue).await;
        let (archive_bucket, models_bucket) = (names.archive_bucket, names.models_bucket);
        for b in [&archive_bucket, &models_bucket] {
            s3.create_bucket()
                .bucket(b)
                .send()
                .await
                .expect("create bucket");
        }

        if options.models_bucket {
            upload_models(&s3, &models_bucket).await;
        }
        let config = config_for(
            &table,
            &topic_arn,
            &archive_bucket,
            &rejects_queue_url,
            &models_bucket,
            &options,
        );
        let runtime = vigil_ingest::build(config, &sdk, "vigil-ingest-test")
            .await
            .expect("cold start");
        Self {
            name,
            table,
            topic_arn,
            alerts_queue_url,
            rejects_queue_url,
            archive_bucket,
            models_bucket,
            sdk,
            ddb,
            sqs,
            s3,
            iot,
            options,
            runtime,
        }
    }

    /// A thing name unique to this fixture, created in the IoT registry (shadows need it).
    pub async fn thing(&self, label: &str) -> String {
        let thing = format!("{}-{label}", self.name);
        create_thing(&thing);
        thing
    }

    /// Runs the handler in-process with the fixture's runtime.
    pub async fn invoke(&self, event: &Value, request_id: &str) -> Handled {
        self.invoke_at(event, request_id, None).await
    }

    pub async fn invoke_at(&self, event: &Value, request_id: &str, now_ms: Option<u64>) -> Handled {
        let mut app = self.runtime.app();
        app.print_metrics = false;
        let inv = Invocation {
            request_id: request_id.into(),
            deadline_ms: None,
            now_ms,
        };
        vigil_ingest::handle_detailed(&app, event, &inv).await
    }

    /// Registers a device's profile, as Terraform does.
    pub async fn register(&self, device: &str, profile: &str) {
        self.ddb
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(format!("DEVICE#{device}")))
            .item("sk", AttributeValue::S("PROFILE".into()))
            .item("profile", AttributeValue::S(profile.into()))
            .send()
            .await
            .expect("register device");
    }

    /// Every item of one partition.
    pub async fn partition(&self, pk: &str) -> Vec<Item> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .ddb
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", AttributeValue::S(pk.into()))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .expect("query");
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        items
    }

    /// Window manifests of a device: window id → item.
    pub async fn manifests(&self, device: &str, profile: &str) -> BTreeMap<u64, Item> {
        self.partition(&format!("W#{device}#{profile}"))
            .await
            .into_iter()
            .map(|i| (s(&i, "sk").parse().expect("window id"), i))
            .collect()
    }

    /// The windows of `range` the device state records as closed (its commit of each close).
    pub async fn closed_windows(
        &self,
        device: &str,
        profile: &str,
        range: std::ops::Range<u64>,
    ) -> Vec<u64> {
        let state: vigil_core::ports::DeviceState = match self.state(device, profile).await {
            Some((v, _)) => serde_json::from_value(v).expect("device state"),
            None => return vec![],
        };
        range.filter(|&w| state.is_closed(w)).collect()
    }

    /// The seqs stored for one window: its chunk items and the chunks stored with its claim.
    pub async fn stored_seqs(&self, device: &str, profile: &str, window: u64) -> Vec<u64> {
        let mut blobs: Vec<Vec<u8>> = self
            .partition(&format!("C#{device}#{profile}#{window:020}"))
            .await
            .iter()
            .filter_map(|c| match c.get("d") {
                Some(AttributeValue::B(b)) => Some(b.as_ref().to_vec()),
                _ => None,
            })
            .collect();
        if let Some(marker) = self.manifests(device, profile).await.get(&window) {
            blobs.extend(marker.iter().filter_map(|(k, v)| match v {
                AttributeValue::B(b) if k.starts_with("c_") => Some(b.as_ref().to_vec()),
                _ => None,
            }));
        }
        let mut seqs: Vec<u64> = blobs
            .iter()
            .flat_map(|b| vigil_aws::codec::decode(b).expect("stored chunk"))
            .map(|smp| smp.seq)
            .collect();
        seqs.sort_unstable();
        seqs.dedup();
        seqs
    }

    /// The device state as stored.
    pub async fn state(&self, device: &str, profile: &str) -> Option<(Value, u64)> {
        let item = self
            .ddb
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(format!("S#{device}#{profile}")))
            .key("sk", AttributeValue::S("STATE".into()))
            .consistent_read(true)
            .send()
            .await
            .expect("get state")
            .item?;
        let json = vigil_aws::dynamo::state_item::decode(&item)
            .expect("state readable")
            .expect("a state");
        Some((
            serde_json::from_str(&json).expect("state JSON"),
            s(&item, "version").parse().expect("version"),
        ))
    }

    /// Drains a queue: message bodies and attributes.
    pub async fn drain(&self, queue_url: &str) -> Vec<(Value, HashMap<String, String>)> {
        let mut out = Vec::new();
        loop {
            let res = self
                .sqs
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(10)
                .message_attribute_names("All")
                .wait_time_seconds(0)
                .send()
                .await
                .expect("receive");
            let messages = res.messages.unwrap_or_default();
            if messages.is_empty() {
                return out;
            }
            for m in messages {
                let body: Value =
                    serde_json::from_str(m.body().unwrap_or("null")).expect("JSON body");
                let attrs = m
                    .message_attributes()
                    .map(|a| {
                        a.iter()
                            .map(|(k, v)| (k.clone(), v.string_value().unwrap_or("").to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                self.sqs
                    .delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(m.receipt_handle().unwrap_or(""))
                    .send()
                    .await
                    .expect("delete");
                out.push((body, attrs));
            }
        }
    }

    /// SNS notifications delivered to the subscribed queue (the SNS envelopes).
    pub async fn alerts(&self) -> Vec<Value> {
        self.drain(&self.alerts_queue_url)
            .await
            .into_iter()
            .map(|(b, _)| b)
            .collect()
    }

    /// Keys of the archived windows.
    pub async fn archived(&self) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .s3
                .list_objects_v2()
                .bucket(&self.archive_bucket)
                .set_continuation_token(token)
                .send()
                .await
                .expect("list archive");
            keys.extend(
                out.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
            match out.next_continuation_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        keys.sort();
        keys
    }

    pub async fn object(&self, bucket: &str, key: &str) -> Vec<u8> {
        self.s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .expect("get object")
            .body
            .collect()
            .await
            .expect("body")
            .into_bytes()
            .to_vec()
    }

    /// The `condition` shadow of a thing, read back through the IoT data plane.
    pub async fn shadow(&self, thing: &str) -> Value {
        self.named_shadow(thing, "condition").await
    }

    /// A named shadow of `thing` as moto holds it.
    pub async fn named_shadow(&self, thing: &str, name: &str) -> Value {
        let out = self
            .iot
            .get_thing_shadow()
            .thing_name(thing)
            .shadow_name(name)
            .send()
            .await
            .expect("get shadow");
        serde_json::from_slice(out.payload.expect("payload").as_ref()).expect("shadow JSON")
    }
}

pub fn s(item: &Item, name: &str) -> String {
    match item.get(name) {
        Some(AttributeValue::S(v)) | Some(AttributeValue::N(v)) => v.clone(),
        other => panic!("attribute {name}: {other:?}"),
    }
}

fn attr_def(name: &str) -> AttributeDefinition {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .expect("attribute")
}

fn key(name: &str, kind: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .expect("key")
}

async fn create_queue(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    sqs.create_queue()
        .queue_name(name)
        .send()
        .await
        .expect("create queue")
        .queue_url
        .expect("queue url")
}

/// Text of the cooler profile as published to the models bucket (marked, so tests can tell).
pub const S3_PROFILE_DESCRIPTION: &str = "published to the models bucket";

/// Publishes the cooler model and profile to a models bucket, as a release pipeline would.
pub async fn upload_models(s3: &aws_sdk_s3::Client, bucket: &str) {
    let root = repo_root();
    let profile = std::fs::read_to_string(root.join("models/profiles/hydraulic-cooler.toml"))
        .expect("profile");
    let profile = profile
        .lines()
        .map(|l| {
            if l.starts_with("description") {
                format!("description = \"{S3_PROFILE_DESCRIPTION}\"")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let model = std::fs::read(root.join("models/hydraulic-cooler.onnx")).expect("model");
    for (key, body) in [
        ("profiles/index.json", br#"["hydraulic-cooler"]"#.to_vec()),
        ("profiles/hydraulic-cooler.toml", profile.into_bytes()),
        ("models/hydraulic-cooler.onnx", model),
    ] {
        s3.put_object()
            .bucket(bucket)
            .key(key)
            .body(body.into())
            .send()
            .await
            .expect("upload model");
    }
}

/// Creates an IoT thing (no IoT control-plane SDK in the workspace: one REST call, which moto and
/// LocalStack route by the service named in the credential scope).
pub fn create_thing(name: &str) {
    let e = emulators();
    let (status, body) = http_with(
        "POST",
        &format!("{}/things/{name}", e.moto),
        b"{}",
        "Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/iot/aws4_request, SignedHeaders=host, Signature=0\r\n",
    );
    assert_eq!(
        status,
        200,
        "create thing: {}",
        String::from_utf8_lossy(&body)
    );
}

/// The function's environment for these resources, read through the real config parser.
/// `models_bucket` is used for models when `options.models_bucket`, for calibrated baselines
/// when `options.baseline_ttl_s` is set.
pub fn config_for(
    table: &str,
    topic_arn: &str,
    archive_bucket: &str,
    rejects_queue_url: &str,
    models_bucket: &str,
    options: &Options,
) -> Config {
    let env = env_for(
        table,
        topic_arn,
        archive_bucket,
        rejects_queue_url,
        models_bucket,
        options,
    );
    Config::from_lookup(|k| env.get(k).cloned()).expect("valid test configuration")
}

/// The function's environment variables for these resources (what Terraform sets).
pub fn env_for(
    table: &str,
    topic_arn: &str,
    archive_bucket: &str,
    rejects_queue_url: &str,
    models_bucket: &str,
    options: &Options,
) -> HashMap<&'static str, String> {
    HashMap::from([
        ("VIGIL_TABLE_NAME", table.to_string()),
        ("VIGIL_ALERT_TOPIC_ARN", topic_arn.to_string()),
        ("VIGIL_ARCHIVE_BUCKET", archive_bucket.to_string()),
        (
            "VIGIL_MODELS_BUCKET",
            if options.models_bucket {
                models_bucket.to_string()
            } else {
                String::new()
            },
        ),
        (
            "VIGIL_BASELINES_BUCKET",
            if options.baseline_ttl_s.is_some() {
                models_bucket.to_string()
            } else {
                String::new()
            },
        ),
        (
            "VIGIL_BASELINE_TTL_S",
            options
                .baseline_ttl_s
                .map(|t| t.to_string())
                .unwrap_or_default(),
        ),
        ("VIGIL_REJECTS_QUEUE_URL", rejects_queue_url.to_string()),
        ("VIGIL_IOT_DATA_ENDPOINT", emulators().moto.clone()),
        ("VIGIL_DEFAULT_PROFILE", options.default_profile.clone()),
        ("VIGIL_MODELS_DIR", models_dir().display().to_string()),
        (
            "VIGIL_SAGEMAKER_ENDPOINT",
            options.sagemaker_endpoint.clone().unwrap_or_default(),
        ),
        (
            "VIGIL_SAGEMAKER_FALLBACK",
            options.sagemaker_fallback.to_string(),
        ),
        ("VIGIL_WINDOW_TTL_HOURS", "48".into()),
        ("ORT_DYLIB_PATH", crate::ort_dylib().display().to_string()),
    ])
}

// ---- events, shaped as the IoT rule, SQS and Kinesis deliver them ----------------------------

pub const CHANNELS: [&str; 4] = ["TS1", "TS2", "TS3", "TS4"];

pub fn channels() -> Vec<String> {
    CHANNELS.iter().map(|c| c.to_string()).collect()
}

/// Direct event, rule `SELECT encode(*, 'base64') AS payload, topic(3) AS device, ...`.
pub fn direct_b64(device: &str, payload: &[u8]) -> Value {
    use base64::Engine as _;
    json!({
        "payload": base64::engine::general_purpose::STANDARD.encode(payload),
        "device": device,
        "received_at": 1_700_000_000_000u64,
    })
}

/// The event of the retired rule `SELECT *, topic(3) AS device`: the device's keys at the top
/// level. The Lambda rejects it (`unexpected_key`).
pub fn direct_star(device: &str, payload: &[u8]) -> Value {
    let mut v: Value = serde_json::from_slice(payload).expect("telemetry JSON");
    v["device"] = json!(device);
    v
}

/// An SQS batch of direct events.
pub fn sqs_batch(records: &[(String, Value)]) -> Value {
    json!({
        "Records": records.iter().map(|(id, body)| json!({
            "messageId": id,
            "receiptHandle": format!("rh-{id}"),
            "body": body.to_string(),
            "attributes": {"ApproximateReceiveCount": "1"},
            "messageAttributes": {},
            "md5OfBody": "",
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:vigil-telemetry",
            "awsRegion": "us-east-1"
        })).collect::<Vec<_>>()
    })
}

/// A Kinesis batch of direct events.
pub fn kinesis_batch(records: &[(String, Value)]) -> Value {
    use base64::Engine as _;
    json!({
        "Records": records.iter().map(|(seq, body)| json!({
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": body["device"],
                "sequenceNumber": seq,
                "data": base64::engine::general_purpose::STANDARD.encode(body.to_string()),
                "approximateArrivalTimestamp": 1_700_000_000.0
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": format!("shardId-000000000000:{seq}"),
            "eventName": "aws:kinesis:record",
            "awsRegion": "us-east-1",
            "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/vigil-telemetry"
        })).collect::<Vec<_>>()
    })
}

pub fn one(sample: &Sample) -> Vec<u8> {
    encode_sample(sample, &channels())
}

pub fn batch(samples: &[Sample]) -> Vec<u8> {
    encode_batch(samples, &channels())
}
