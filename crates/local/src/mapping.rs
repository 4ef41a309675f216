//! The batched ingest modes, as the Terraform wires them: the topic rule's SQS or Kinesis action
//! puts the rule's output on the ingest queue or stream in moto, and an event source mapping
//! stand-in polls it and invokes the function with the events Lambda builds.
//!
//! - SQS: `Records` of up to `batch_size` messages gathered for at most the batching window,
//!   each with `messageId`, `receiptHandle`, `body`, `attributes`; with
//!   `ReportBatchItemFailures` the messages the function names in `batchItemFailures` stay on
//!   the queue and the others are deleted (an invalid report, or a function error, fails the
//!   whole batch). A failed message becomes visible again after [`SqsMapping::retry_after`]
//!   (AWS: when the queue's visibility timeout runs out) and moto's redrive policy moves it to
//!   the dead-letter queue after `maxReceiveCount` receives.
//! - Kinesis: per shard, in order, `Records` with base64 `data`, `partitionKey` (the thing, from
//!   the rule's `partition_key`) and `sequenceNumber`. A partial failure is retried from the
//!   first failed record; a function error splits the batch in two while it holds more than
//!   one record (`bisect_batch_on_function_error`, not counted as a retry); past
//!   `maximum_retry_attempts` Lambda's on-failure record (`RetryAttemptsExhausted`, with the
//!   `KinesisBatchInfo`) goes to the failure destination and the shard moves on.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::awsjson::AwsJson;
use crate::invoke::{now_ms, AsyncInvoker, FailureSink, Function, Outcome};
use crate::terraform::{KinesisSource, SqsSource};

/// SQS hands out at most 10 messages per receive.
const SQS_RECEIVE_MAX: usize = 10;
/// Pause between two polls of an empty queue or shard (Lambda polls a shard once a second).
const IDLE_POLL: Duration = Duration::from_millis(100);

/// What the mappings did, for the operator's log and the tests.
#[derive(Debug, Default)]
pub struct MappingCounters {
    pub invocations: AtomicU64,
    pub records: AtomicU64,
    /// Records the function processed (deleted from the queue, or passed on the shard).
    pub succeeded: AtomicU64,
    /// Records named in `batchItemFailures`, or in a batch whose invocation failed.
    pub failed_records: AtomicU64,
    pub function_errors: AtomicU64,
    /// Kinesis batches split in two after a function error.
    pub bisected: AtomicU64,
    /// Kinesis records given up on (their batch sent to the failure destination).
    pub exhausted_records: AtomicU64,
    pub poll_errors: AtomicU64,
}

/// Where the topic rule's output goes: the function (direct mode), the ingest queue or the
/// ingest stream.
#[derive(Clone)]
pub enum Target {
    Lambda(AsyncInvoker),
    Sqs {
        sqs: AwsJson,
        queue_url: String,
    },
    Kinesis {
        kinesis: AwsJson,
        stream: String,
        /// The action's `partition_key` substitution template (`${topic(3)}`).
        partition_key: String,
    },
}

/// The rule's `error_action`: IoT's error message for an action that failed, to a queue.
#[derive(Clone)]
pub struct ErrorAction {
    pub sqs: AwsJson,
    pub queue_url: String,
    pub rule: String,
}

/// The topic rule's action and error action.
#[derive(Clone)]
pub struct RuleAction {
    pub target: Target,
    pub error_action: Option<ErrorAction>,
    /// Messages the action failed on (each sent to the error action when there is one).
    pub failed: Arc<AtomicU64>,
}

impl From<AsyncInvoker> for RuleAction {
    fn from(invoker: AsyncInvoker) -> Self {
        Self::new(Target::Lambda(invoker), None)
    }
}

/// Why an action failed: IoT's `failedAction`, `failedResource`, `errorMessage`.
struct ActionFailure {
    action: &'static str,
    resource: String,
    message: String,
}

impl RuleAction {
    pub fn new(target: Target, error_action: Option<ErrorAction>) -> Self {
        Self {
            target,
            error_action,
            failed: Arc::default(),
        }
    }

    /// Performs the action for one message (`payload` as published on `topic`, `event` the
    /// rule's output); `false` when it failed (logged, counted, and sent to the error action).
    pub async fn submit(&self, topic: &str, payload: &[u8], event: Value) -> bool {
        let Err(failure) = self.deliver(topic, event).await else {
            return true;
        };
        self.failed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%topic, action = failure.action, error = %failure.message, "rule action failed");
        if let Some(error_action) = &self.error_action {
            let message = json!({
                "ruleName": error_action.rule,
                "topic": topic,
                "cloudwatchTraceId": format!("local-{}-{}", now_ms(), self.failed.load(Ordering::Relaxed)),
                // The MQTT client id does not travel with a message through the broker.
                "clientId": Value::Null,
                "base64OriginalPayload": base64::engine::general_purpose::STANDARD.encode(payload),
                "failures": [{
                    "failedAction": failure.action,
                    "failedResource": failure.resource,
                    "errorMessage": failure.message,
                }],
            });
            let sent = error_action
                .sqs
                .call(
                    "SendMessage",
                    &json!({"QueueUrl": error_action.queue_url, "MessageBody": message.to_string()}),
                )
                .await;
            if let Err(e) = sent {
                tracing::error!(%topic, error = %e, "rule error action failed: message lost");
            }
        }
        false
    }

    async fn deliver(&self, topic: &str, event: Value) -> Result<(), ActionFailure> {
        match &self.target {
            Target::Lambda(invoker) => {
                if invoker.submit(event) {
                    Ok(())
                } else {
                    Err(ActionFailure {
                        action: "LambdaAction",
                        resource: "the function's asynchronous invocation queue".into(),
                        message: "the asynchronous invocation queue is full".into(),
                    })
                }
            }
            // use_base64 = false: the rule's JSON is the body.
            Target::Sqs { sqs, queue_url } => sqs
                .call(
                    "SendMessage",
                    &json!({"QueueUrl": queue_url, "MessageBody": event.to_string()}),
                )
                .await
                .map(drop)
                .map_err(|e| ActionFailure {
                    action: "SqsAction",
                    resource: queue_url.clone(),
                    message: e.to_string(),
                }),
            Target::Kinesis {
                kinesis,
                stream,
                partition_key,
            } => {
                let failure = |e: anyhow::Error| ActionFailure {
                    action: "KinesisAction",
                    resource: stream.clone(),
                    message: e.to_string(),
                };
                let key = substitute(partition_key, topic).map_err(failure)?;
                kinesis
                    .call(
                        "PutRecord",
                        &json!({
                            "StreamName": stream,
                            "PartitionKey": key,
                            "Data": base64::engine::general_purpose::STANDARD.encode(event.to_string()),
                        }),
                    )
                    .await
                    .map(drop)
                    .map_err(failure)
            }
        }
    }
}

/// A rule action's substitution template, in the forms the Terraform uses: literal text and
/// `${topic(n)}` / `${topic()}`.
pub fn substitute(template: &str, topic: &str) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let close = rest[at..]
            .find('}')
            .ok_or_else(|| anyhow::anyhow!("substitution template {template:?}: unclosed ${{"))?
            + at;
        let expr: String = rest[at + 2..close]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if expr == "topic()" {
            out.push_str(topic);
        } else if let Some(n) = expr
            .strip_prefix("topic(")
            .and_then(|s| s.strip_suffix(')'))
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n >= 1)
        {
            out.push_str(topic.split('/').nth(n - 1).unwrap_or(""));
        } else {
            anyhow::bail!("substitution template {template:?}: ${{{expr}}} is not evaluated here");
        }
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    if out.is_empty() {
        anyhow::bail!("substitution template {template:?} gives an empty value on {topic:?}");
    }
    Ok(out)
}

/// What a batch invocation came to: the ids the function failed, or all of them.
#[derive(Debug, PartialEq, Eq)]
enum BatchResult {
    Failed(BTreeSet<String>),
    FunctionError,
}

/// Lambda's reading of a batch answer: without `ReportBatchItemFailures` any answer is a
/// success; with it, `batchItemFailures` must name records of the batch (an empty or unknown
/// identifier fails the whole batch, as in Lambda).
fn batch_result(outcome: &Outcome, ids: &[String], report: bool) -> BatchResult {
    let answer = match outcome {
        Outcome::Failed(_) => return BatchResult::FunctionError,
        Outcome::Ok(answer) => answer,
    };
    if !report {
        return BatchResult::Failed(BTreeSet::new());
    }
    let failures = match answer.get("batchItemFailures") {
        None | Some(Value::Null) => return BatchResult::Failed(BTreeSet::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return BatchResult::FunctionError,
    };
    let mut failed = BTreeSet::new();
    for item in failures {
        match item.get("itemIdentifier").and_then(Value::as_str) {
            Some(id) if ids.iter().any(|i| i == id) => {
                failed.insert(id.to_string());
            }
            _ => return BatchResult::FunctionError,
        }
    }
    BatchResult::Failed(failed)
}

/// The SQS event source mapping of one queue.
pub struct SqsMapping {
    pub sqs: AwsJson,
    pub queue_url: String,
    pub queue_arn: String,
    pub function: Function,
    pub source: SqsSource,
    /// When a failed message is visible again (AWS: the rest of the queue's visibility timeout,
    /// 6 × the function timeout + the batching window as the Terraform sets it).
    pub retry_after: Duration,
    pub counters: Arc<MappingCounters>,
}

impl SqsMapping {
    /// Polls until the task is dropped.
    pub async fn run(self) {
        loop {
            match self.gather().await {
                Ok(batch) if batch.is_empty() => tokio::time::sleep(IDLE_POLL).await,
                Ok(batch) => self.deliver(batch).await,
                Err(e) => {
                    self.counters.poll_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(queue = %self.queue_url, error = %e, "sqs mapping: poll");
                    tokio::time::sleep(IDLE_POLL).await;
                }
            }
        }
    }

    /// Up to `batch_size` messages, gathered for at most the batching window once the first
    /// arrived.
    async fn gather(&self) -> anyhow::Result<Vec<Value>> {
        let mut batch: Vec<Value> = Vec::new();
        let mut deadline = None::<Instant>;
        // Messages stay invisible while the function runs (its timeout, with a margin).
        let invisible = self.function.timeout.as_secs() + 10;
        while batch.len() < self.source.batch_size {
            let want = (self.source.batch_size - batch.len()).min(SQS_RECEIVE_MAX);
            let answer = self
                .sqs
                .call(
                    "ReceiveMessage",
                    &json!({
                        "QueueUrl": self.queue_url,
                        "MaxNumberOfMessages": want,
                        "VisibilityTimeout": invisible,
                        "WaitTimeSeconds": 0,
                        "AttributeNames": ["All"],
                        "MessageAttributeNames": ["All"],
                    }),
                )
                .await?;
            let messages = answer["Messages"].as_array().cloned().unwrap_or_default();
            if messages.is_empty() {
                match deadline {
                    None => return Ok(batch),
                    Some(d) if Instant::now() >= d => break,
                    Some(_) => tokio::time::sleep(IDLE_POLL).await,
                }
            }
            batch.extend(messages.iter().map(|m| self.record(m)));
            if deadline.is_none() {
                deadline = Some(Instant::now() + self.source.batching_window);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
        }
        Ok(batch)
    }

    /// Lambda's SQS record for one received message.
    fn record(&self, m: &Value) -> Value {
        json!({
            "messageId": m["MessageId"],
            "receiptHandle": m["ReceiptHandle"],
            "body": m["Body"],
            "attributes": m.get("Attributes").cloned().unwrap_or_else(|| json!({})),
            "messageAttributes": m.get("MessageAttributes").cloned().unwrap_or_else(|| json!({})),
            "md5OfBody": m["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue_arn,
            "awsRegion": self.sqs.region,
        })
    }

    async fn deliver(&self, batch: Vec<Value>) {
        let ids: Vec<String> = batch
            .iter()
            .map(|r| r["messageId"].as_str().unwrap_or_default().to_string())
            .collect();
        let c = &self.counters;
        c.invocations.fetch_add(1, Ordering::Relaxed);
        c.records.fetch_add(batch.len() as u64, Ordering::Relaxed);
        let outcome = self.function.invoke(&json!({ "Records": batch })).await;
        let failed = match batch_result(&outcome, &ids, self.source.report_batch_item_failures) {
            BatchResult::Failed(failed) => failed,
            BatchResult::FunctionError => {
                c.function_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(queue = %self.queue_url, answer = ?outcome, "sqs mapping: the batch failed");
                ids.iter().cloned().collect()
            }
        };
        let handle = |r: &Value| r["receiptHandle"].as_str().unwrap_or_default().to_string();
        let (retry, done): (Vec<&Value>, Vec<&Value>) = batch
            .iter()
            .partition(|r| failed.contains(r["messageId"].as_str().unwrap_or_default()));
        for chunk in done.chunks(SQS_RECEIVE_MAX) {
            let entries: Vec<Value> = chunk
                .iter()
                .enumerate()
                .map(|(i, r)| json!({"Id": i.to_string(), "ReceiptHandle": handle(r)}))
                .collect();
            match self
                .sqs
                .call(
                    "DeleteMessageBatch",
                    &json!({"QueueUrl": self.queue_url, "Entries": entries}),
                )
                .await
            {
                Ok(_) => {
                    c.succeeded.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "sqs mapping: delete (the messages come back)")
                }
            }
        }
        c.failed_records
            .fetch_add(retry.len() as u64, Ordering::Relaxed);
        for r in retry {
            let visible_in = self.retry_after.as_secs().max(1);
            if let Err(e) = self
                .sqs
                .call(
                    "ChangeMessageVisibility",
                    &json!({"QueueUrl": self.queue_url, "ReceiptHandle": handle(r), "VisibilityTimeout": visible_in}),
                )
                .await
            {
                tracing::warn!(error = %e, "sqs mapping: change visibility");
            }
        }
    }
}

/// One Kinesis record as received, and Lambda's record for it.
#[derive(Clone, Debug)]
struct StreamRecord {
    sequence: String,
    arrival: f64,
    event: Value,
}

/// The Kinesis event source mapping of one stream.
pub struct KinesisMapping {
    pub kinesis: AwsJson,
    pub stream: String,
    pub stream_arn: String,
    pub function: Function,
    pub source: KinesisSource,
    /// The pause before retrying a failed batch.
    pub retry_after: Duration,
    pub on_failure: Option<FailureSink>,
    pub counters: Arc<MappingCounters>,
}

impl KinesisMapping {
    /// One poller per shard (the Terraform's `parallelization_factor = 1`), until dropped.
    pub async fn run(self) -> anyhow::Result<()> {
        let shards = self
            .kinesis
            .call("ListShards", &json!({"StreamName": self.stream}))
            .await?;
        let shards: Vec<String> = shards["Shards"]
            .as_array()
            .map(|s| {
                s.iter()
                    .filter_map(|s| s["ShardId"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        anyhow::ensure!(!shards.is_empty(), "stream {}: no shards", self.stream);
        let this = Arc::new(self);
        let mut pollers = Vec::new();
        for shard in shards {
            let this = Arc::clone(&this);
            pollers.push(tokio::spawn(async move { this.poll_shard(shard).await }));
        }
        for p in pollers {
            let _ = p.await;
        }
        Ok(())
    }

    async fn iterator(&self, shard: &str) -> anyhow::Result<String> {
        let answer = self
            .kinesis
            .call(
                "GetShardIterator",
                &json!({
                    "StreamName": self.stream,
                    "ShardId": shard,
                    "ShardIteratorType": self.source.starting_position,
                }),
            )
            .await?;
        answer["ShardIterator"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow::anyhow!("GetShardIterator: no ShardIterator"))
    }

    async fn poll_shard(&self, shard: String) {
        let mut iterator = None::<String>;
        let mut pending: VecDeque<StreamRecord> = VecDeque::new();
        let mut deadline = None::<Instant>;
        loop {
            let it = match iterator.take() {
                Some(it) => it,
                None => match self.iterator(&shard).await {
                    Ok(it) => it,
                    Err(e) => {
                        self.poll_error(&shard, &e);
                        tokio::time::sleep(IDLE_POLL).await;
                        continue;
                    }
                },
            };
            let want = self.source.batch_size.saturating_sub(pending.len()).max(1);
            let answer = match self
                .kinesis
                .call("GetRecords", &json!({"ShardIterator": it, "Limit": want}))
                .await
            {
                Ok(a) => a,
                Err(e) => {
                    // A lost iterator would re-read the shard from the start: keep the pending
                    // records' position by retrying with the same iterator.
                    self.poll_error(&shard, &e);
                    iterator = Some(it);
                    tokio::time::sleep(IDLE_POLL).await;
                    continue;
                }
            };
            iterator = answer["NextShardIterator"].as_str().map(str::to_string);
            let records = answer["Records"].as_array().cloned().unwrap_or_default();
            let got = !records.is_empty();
            pending.extend(records.iter().map(|r| self.record(&shard, r)));
            if got && deadline.is_none() {
                deadline = Some(Instant::now() + self.source.batching_window);
            }
            let full = pending.len() >= self.source.batch_size;
            let due = deadline.is_some_and(|d| Instant::now() >= d);
            if !pending.is_empty() && (full || due) {
                let batch: Vec<StreamRecord> = pending
                    .drain(..pending.len().min(self.source.batch_size))
                    .collect();
                self.deliver(&shard, batch).await;
                deadline = (!pending.is_empty()).then(Instant::now);
            } else if !got {
                tokio::time::sleep(IDLE_POLL).await;
            }
            if iterator.is_none() {
                tracing::warn!(%shard, "kinesis mapping: the shard is closed");
                return;
            }
        }
    }

    fn poll_error(&self, shard: &str, e: &anyhow::Error) {
        self.counters.poll_errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(stream = %self.stream, %shard, error = %e, "kinesis mapping: poll");
    }

    /// Lambda's Kinesis record for one record of `shard`.
    fn record(&self, shard: &str, r: &Value) -> StreamRecord {
        let sequence = r["SequenceNumber"].as_str().unwrap_or_default().to_string();
        let arrival = r["ApproximateArrivalTimestamp"].as_f64().unwrap_or(0.0);
        let event = json!({
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": r["PartitionKey"],
                "sequenceNumber": sequence,
                "data": r["Data"],
                "approximateArrivalTimestamp": arrival,
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": format!("{shard}:{sequence}"),
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": self.function.arn.replace(":function:", ":role/"),
            "awsRegion": self.kinesis.region,
            "eventSourceARN": self.stream_arn,
        });
        StreamRecord {
            sequence,
            arrival,
            event,
        }
    }

    /// One batch through to the end: retried, bisected, or given up on, in shard order.
    async fn deliver(&self, shard: &str, batch: Vec<StreamRecord>) {
        let c = &self.counters;
        // (records, retries so far, invocations so far)
        let mut work: VecDeque<(Vec<StreamRecord>, u32, u32)> = VecDeque::from([(batch, 0, 0)]);
        while let Some((records, retries, invokes)) = work.pop_front() {
            let ids: Vec<String> = records.iter().map(|r| r.sequence.clone()).collect();
            let event =
                json!({"Records": records.iter().map(|r| r.event.clone()).collect::<Vec<_>>()});
            c.invocations.fetch_add(1, Ordering::Relaxed);
            c.records.fetch_add(records.len() as u64, Ordering::Relaxed);
            let outcome = self.function.invoke(&event).await;
            let invokes = invokes + 1;
            let rest = match batch_result(&outcome, &ids, self.source.report_batch_item_failures) {
                BatchResult::Failed(failed) if failed.is_empty() => {
                    c.succeeded
                        .fetch_add(records.len() as u64, Ordering::Relaxed);
                    continue;
                }
                // Retried from the first failed record (Lambda's checkpoint).
                BatchResult::Failed(failed) => {
                    let first = records
                        .iter()
                        .position(|r| failed.contains(&r.sequence))
                        .unwrap_or(0);
                    c.succeeded.fetch_add(first as u64, Ordering::Relaxed);
                    c.failed_records
                        .fetch_add((records.len() - first) as u64, Ordering::Relaxed);
                    records[first..].to_vec()
                }
                BatchResult::FunctionError => {
                    c.function_errors.fetch_add(1, Ordering::Relaxed);
                    c.failed_records
                        .fetch_add(records.len() as u64, Ordering::Relaxed);
                    if self.source.bisect_on_error && records.len() > 1 {
                        c.bisected.fetch_add(1, Ordering::Relaxed);
                        let mut first = records;
                        let second = first.split_off(first.len() / 2);
                        work.push_front((second, retries, invokes));
                        work.push_front((first, retries, invokes));
                        continue;
                    }
                    records
                }
            };
            if retries < self.source.max_retries {
                tokio::time::sleep(self.retry_after).await;
                work.push_front((rest, retries + 1, invokes));
                continue;
            }
            c.exhausted_records
                .fetch_add(rest.len() as u64, Ordering::Relaxed);
            tracing::warn!(stream = %self.stream, %shard, records = rest.len(), "kinesis mapping: retries exhausted; batch to the failure destination");
            if let Some(sink) = &self.on_failure {
                let _ = sink.send(self.failure_record(shard, &rest, invokes));
            }
        }
    }

    /// Lambda's on-failure record for a stream batch.
    fn failure_record(&self, shard: &str, records: &[StreamRecord], invokes: u32) -> Value {
        let (first, last) = (records.first(), records.last());
        let iso = |r: Option<&StreamRecord>| {
            vigil_aws::time::iso8601_ms(r.map_or(0, |r| (r.arrival * 1000.0) as u64))
        };
        json!({
            "requestContext": {
                "functionArn": format!("{}:$LATEST", self.function.arn),
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": invokes,
            },
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled",
            },
            "version": "1.0",
            "timestamp": vigil_aws::time::iso8601_ms(now_ms()),
            "KinesisBatchInfo": {
                "shardId": shard,
                "startSequenceNumber": first.map(|r| r.sequence.clone()),
                "endSequenceNumber": last.map(|r| r.sequence.clone()),
                "approximateArrivalOfFirstRecord": iso(first),
                "approximateArrivalOfLastRecord": iso(last),
                "batchSize": records.len(),
                "streamArn": self.stream_arn,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_keys_are_substituted_from_the_topic() {
        assert_eq!(
            substitute("${topic(3)}", "dt/vigil/rig-1/telemetry").unwrap(),
            "rig-1"
        );
        assert_eq!(substitute("k-${topic()}", "a/b").unwrap(), "k-a/b");
        assert!(substitute("${topic(9)}", "a/b").is_err());
        assert!(substitute("${clientid()}", "a/b").is_err());
        assert!(substitute("${topic(3)", "a/b/c").is_err());
    }

    #[test]
    fn batch_answers_are_read_as_lambda_reads_them() {
        let ids = vec!["a".to_string(), "b".to_string()];
        let ok = |v: Value| Outcome::Ok(v);
        let none = BatchResult::Failed(BTreeSet::new());
        assert_eq!(
            batch_result(&ok(json!({"batchItemFailures": []})), &ids, true),
            none
        );
        assert_eq!(batch_result(&ok(Value::Null), &ids, true), none);
        assert_eq!(
            batch_result(
                &ok(json!({"batchItemFailures": [{"itemIdentifier": "b"}]})),
                &ids,
                true
            ),
            BatchResult::Failed(BTreeSet::from(["b".to_string()]))
        );
        // An identifier not in the batch, or an empty one, fails the whole batch.
        for bad in [
            json!([{"itemIdentifier": "z"}]),
            json!([{"itemIdentifier": ""}]),
            json!([{}]),
            json!("x"),
        ] {
            assert_eq!(
                batch_result(&ok(json!({ "batchItemFailures": bad })), &ids, true),
                BatchResult::FunctionError
            );
        }
        // Without ReportBatchItemFailures the report is not read.
        assert_eq!(
            batch_result(
                &ok(json!({"batchItemFailures": [{"itemIdentifier": "b"}]})),
                &ids,
                false
            ),
            none
        );
        assert_eq!(
            batch_result(&Outcome::Failed(json!({})), &ids, true),
            BatchResult::FunctionError
        );
    }
}
