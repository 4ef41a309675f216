//! Vigil on AWS: adapters implementing the core ports with the AWS SDK. SDK errors are mapped to
//! [`PortError`](vigil_core::ports::PortError)s here, with retryable vs permanent decided by
//! [`error::is_retryable`]; no SDK type crosses a port.
//!
//! - [`dynamo`]: window store, device state and device registry in one DynamoDB table;
//! - [`iot`]: results on `dt/vigil/{thing}/condition` and the `condition` shadow;
//! - [`sns`]: alerts on transitions, with filterable message attributes;
//! - [`s3`]: closed windows archived for retraining, models fetched at cold start;
//! - [`baselines`]: calibrated baselines published to and read from S3;
//! - [`sqs`]: rejected messages to the dead-letter queue;
//! - [`sagemaker`]: a scorer calling a SageMaker endpoint, with a fallback scorer.

pub mod baselines;
pub mod codec;
pub mod dynamo;
pub mod error;
pub mod iot;
pub mod s3;
pub mod sagemaker;
pub mod sns;
pub mod sqs;
pub mod time;

use std::time::Duration;

use aws_config::SdkConfig;
use vigil_core::ports::NoBaselines;
use vigil_core::Ports;

pub use baselines::S3Baselines;
pub use dynamo::{
    DynamoRegistry, DynamoStateStore, DynamoWindowStore, Table, Usage, UsageSnapshot,
};
pub use iot::IotResultSink;
pub use s3::S3Archive;
pub use sagemaker::SagemakerScorer;
pub use sns::SnsAlertSink;
pub use sqs::SqsRejectSink;

/// Where the adapters write: names and endpoints from the function's configuration.
#[derive(Clone, Debug)]
pub struct AwsSettings {
    pub table_name: String,
    /// How long window data (manifests, chunks) lives after its last write.
    pub window_ttl: Duration,
    pub alert_topic_arn: String,
    pub archive_bucket: String,
    pub rejects_queue_url: String,
    /// The account's `iot:Data-ATS` endpoint, as an https URL.
    pub iot_data_endpoint: String,
    /// How long a device's profile is cached.
    pub registry_cache: Duration,
    /// Bucket of calibrated baselines (`baselines/<profile>/<device>.json`); `None`: streaming
    /// scorers learn online only.
    pub baselines_bucket: Option<String>,
    /// How long a baseline read from S3 is used before S3 is asked again.
    pub baseline_ttl: Duration,
}

/// An S3 client; path-style addressing when an endpoint override is configured (emulators do
/// not resolve `bucket.127.0.0.1`).
pub fn s3_client(sdk: &SdkConfig) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(sdk.endpoint_url().is_some())
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// The SageMaker runtime client. Its calls are bounded by each profile's `timeout_ms` (up to
/// 60 s, `SagemakerScorer`), not by the function's per-request bounds (a few seconds), which a
/// cold serverless endpoint would exceed: only the connect timeout is kept.
pub fn sagemaker_client(sdk: &SdkConfig) -> aws_sdk_sagemakerruntime::Client {
    // Explicitly disabled (not merely unset, which would inherit the SDK configuration's).
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .disable_operation_timeout()
        .disable_operation_attempt_timeout()
        .build();
    let conf = aws_sdk_sagemakerruntime::config::Builder::from(sdk)
        .timeout_config(timeouts)
        .build();
    aws_sdk_sagemakerruntime::Client::from_conf(conf)
}

/// Every adapter the pipeline needs, built once per cold start from one SDK configuration.
#[derive(Debug)]
pub struct AwsPorts {
    pub windows: DynamoWindowStore,
    pub states: DynamoStateStore,
    pub registry: DynamoRegistry,
    /// `None`: no baselines bucket configured (see [`AwsPorts::ports`]).
    pub baselines: Option<S3Baselines>,
    pub results: IotResultSink,
    pub alerts: SnsAlertSink,
    pub archive: S3Archive,
    pub rejects: SqsRejectSink,
}

impl AwsPorts {
    pub fn new(sdk: &SdkConfig, settings: &AwsSettings) -> Self {
        let table = Table::new(
            aws_sdk_dynamodb::Client::new(sdk),
            &settings.table_name,
            settings.window_ttl,
        );
        let iot = aws_sdk_iotdataplane::Client::from_conf(
            aws_sdk_iotdataplane::config::Builder::from(sdk)
                .endpoint_url(&settings.iot_data_endpoint)
                .build(),
        );
        Self {
            windows: DynamoWindowStore::new(table.clone()),
            states: DynamoStateStore::new(table.clone()),
            registry: DynamoRegistry::new(table, settings.registry_cache),
            baselines: settings
                .baselines_bucket
                .as_ref()
                .map(|b| S3Baselines::new(s3_client(sdk), b, settings.baseline_ttl)),
            results: IotResultSink::new(iot),
            alerts: SnsAlertSink::new(aws_sdk_sns::Client::new(sdk), &settings.alert_topic_arn),
            archive: S3Archive::new(s3_client(sdk), &settings.archive_bucket),
            rejects: SqsRejectSink::new(aws_sdk_sqs::Client::new(sdk), &settings.rejects_queue_url),
        }
    }

    pub fn ports(&self) -> Ports<'_> {
        Ports {
            windows: &self.windows,
            states: &self.states,
            registry: &self.registry,
            baselines: match &self.baselines {
                Some(b) => b,
                None => &NoBaselines,
            },
            results: &self.results,
            alerts: &self.alerts,
            archive: &self.archive,
            rejects: &self.rejects,
            pause: &time::TokioPause,
        }
    }

    /// DynamoDB capacity consumed through these adapters.
    pub fn usage(&self) -> &Usage {
        self.windows.table().usage()
    }
}
