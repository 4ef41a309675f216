//! The batched ingest modes of the local cloud path (docs/local.md): the topic rule's SQS or
//! Kinesis action as the Terraform writes it puts each message on the ingest queue or stream in
//! moto, and the event source mapping stand-in hands batches to the ingest `bootstrap` under
//! cargo-lambda's Runtime API emulator. Then the mappings' failure handling on their own, with a
//! loopback function that fails chosen records: partial batch responses, visibility, the
//! dead-letter queue after the Terraform's `maxReceiveCount`, bisection and the on-failure
//! record.
//!
//! Needs `target/debug/bootstrap` (`make test` builds it) and cargo-lambda (`make setup`).

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use vigil_local::awsjson::{AwsJson, Endpoint};
use vigil_local::invoke::Function;
use vigil_local::mapping::{KinesisMapping, MappingCounters, SqsMapping};
use vigil_local::stack::{self, IngestMode};
use vigil_local::terraform::PipelineTerraform;
use vigil_tests::local::{self, THING};
use vigil_tests::{emulators, repo_root};

/// 12 healthy cycles then 2 reduced ones: the second unhealthy window raises the alert.
const CYCLES: usize = 14;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqs_mode_batches_the_rules_messages_through_the_ingest_queue() {
    tokio::time::timeout(Duration::from_secs(240), through_the_stack(IngestMode::Sqs))
        .await
        .expect("the sqs mode within 240 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kinesis_mode_batches_the_rules_messages_in_order_through_the_stream() {
    tokio::time::timeout(
        Duration::from_secs(240),
        through_the_stack(IngestMode::Kinesis),
    )
    .await
    .expect("the kinesis mode within 240 s");
}

async fn through_the_stack(mode: IngestMode) {
    let bootstrap = local::debug_bootstrap();
    let name = local::run_name();
    let fx = local::fixture(&name).await;
    let (mut stack, logs) = local::start(&fx, bootstrap, "127.0.0.1:0", mode).await;
    // The Terraform's names, with this run's stack name.
    assert_eq!(fx.table, format!("{name}-state"));
    assert_eq!(stack.names.ingest_queue, format!("{name}-ingest"));
    assert_eq!(
        stack.names.rule,
        format!("{}_ingest", name.replace('-', "_"))
    );

    let verdicts = local::replay_and_observe(&stack, CYCLES, Duration::from_secs(180)).await;
    let windows: Vec<u64> = verdicts
        .iter()
        .map(|v| v["window"].as_u64().expect("window"))
        .collect();
    let distinct: BTreeSet<u64> = windows.iter().copied().collect();
    assert_eq!(
        distinct,
        (0..CYCLES as u64).collect(),
        "one verdict per cycle: {windows:?}"
    );
    if mode == IngestMode::Kinesis {
        // One shard, the thing as partition key: the device's records arrive in order.
        assert!(windows.windows(2).all(|w| w[0] < w[1]), "{windows:?}");
    }
    let label = |w: u64| {
        verdicts
            .iter()
            .find(|v| v["window"] == w)
            .and_then(|v| v["label"].as_str())
            .unwrap_or("")
            .to_string()
    };
    assert!((0..12).all(|w| label(w) == "100"), "{verdicts:?}");
    assert!(
        (12..CYCLES as u64).all(|w| label(w) != "100"),
        "{verdicts:?}"
    );

    // Every message the rule matched (two or three per cycle: the device batches by count and
    // time) went through the mapping, in batches, none failed.
    let c = Arc::clone(&stack.mapping);
    let matched = || stack.rule.matched.load(Ordering::Relaxed);
    assert!(matched() >= (CYCLES * 2) as u64, "{:?}", stack.rule);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while c.succeeded.load(Ordering::Relaxed) < matched() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "mapping {c:?}; rule {:?}; logs {}",
            stack.rule,
            logs.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let messages = matched();
    assert_eq!(stack.rule.rule_errors.load(Ordering::Relaxed), 0);
    assert_eq!(c.records.load(Ordering::Relaxed), messages, "{c:?}");
    assert_eq!(c.succeeded.load(Ordering::Relaxed), messages, "{c:?}");
    assert_eq!(c.failed_records.load(Ordering::Relaxed), 0, "{c:?}");
    assert_eq!(c.function_errors.load(Ordering::Relaxed), 0, "{c:?}");
    let invocations = c.invocations.load(Ordering::Relaxed);
    assert!((1..=messages).contains(&invocations), "{c:?}");
    println!("{mode:?}: {messages} messages in {invocations} invocations");
    assert_eq!(stack.invocations.invocations.load(Ordering::Relaxed), 0);

    // The shadow, the alert (once), the device's state in DynamoDB.
    let shadow = stack
        .plane
        .shadow(THING, "condition")
        .expect("condition shadow");
    assert!(shadow["state"]["reported"]["window"].is_u64(), "{shadow}");
    let alerts = fx.alerts().await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["MessageAttributes"]["device"]["Value"], THING);
    let (state, _version) = fx
        .state(THING, "hydraulic-cooler")
        .await
        .expect("device state in DynamoDB");
    assert_eq!(state["applied_window"], CYCLES as u64 - 1, "{state}");
    assert!(state["alert"]["active"].is_string(), "{state}");

    if mode == IngestMode::Sqs {
        let sqs = AwsJson::sqs(Endpoint::parse(&emulators().moto).unwrap(), "us-east-1");
        for queue in [&stack.names.ingest_queue, &stack.names.ingest_dlq] {
            assert_eq!(
                visible(&sqs, &url_of(&sqs, queue).await).await,
                0,
                "{queue}"
            );
        }
    }
    assert!(stack.failures.try_recv().is_err());
    assert_eq!(stack.gateway_counters.snapshot().policy_violations, 0);
}

async fn url_of(sqs: &AwsJson, queue: &str) -> String {
    sqs.call("GetQueueUrl", &json!({ "QueueName": queue }))
        .await
        .expect("queue URL")["QueueUrl"]
        .as_str()
        .expect("QueueUrl")
        .to_string()
}

async fn visible(sqs: &AwsJson, url: &str) -> u64 {
    let a = sqs
        .call(
            "GetQueueAttributes",
            &json!({"QueueUrl": url, "AttributeNames": ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]}),
        )
        .await
        .expect("attributes");
    [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
    ]
    .iter()
    .map(|k| {
        a["Attributes"][k]
            .as_str()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    })
    .sum()
}

/// A loopback function: records every event it is invoked with and answers with `answer`
/// (`Err`: a function error, as Lambda's Invoke API reports one).
async fn function(
    name: &str,
    answer: impl Fn(&Value) -> Result<Value, Value> + Send + Sync + 'static,
) -> (Function, Arc<Mutex<Vec<Value>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&events);
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let mut request = Vec::new();
            let mut buf = [0u8; 8192];
            let body = loop {
                let n = s.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    break None;
                }
                request.extend_from_slice(&buf[..n]);
                let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|n| n.trim().parse().ok())
                    .unwrap_or(0);
                if request.len() >= end + 4 + length {
                    break Some(request[end + 4..end + 4 + length].to_vec());
                }
            };
            let Some(body) = body else { continue };
            let event: Value = serde_json::from_slice(&body).expect("event JSON");
            let (extra, out) = match answer(&event) {
                Ok(v) => ("", v),
                Err(v) => ("X-Amz-Function-Error: Unhandled\r\n", v),
            };
            seen.lock().unwrap().push(event);
            let out = out.to_string();
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{out}",
                out.len()
            );
            let _ = s.write_all(reply.as_bytes()).await;
        }
    });
    let function = Function {
        host: "127.0.0.1".into(),
        port,
        name: name.into(),
        arn: format!("arn:aws:lambda:us-east-1:123456789012:function:{name}"),
        timeout: Duration::from_secs(10),
    };
    (function, events)
}

fn pipeline() -> PipelineTerraform {
    PipelineTerraform::read(&repo_root().join("infra/modules/pipeline")).unwrap()
}

async fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_failed_items_come_back_then_end_in_the_dead_letter_queue() {
    let source = pipeline().sqs_source().unwrap();
    let receives = source.max_receive_count as usize;
    let names = stack::resource_names(&repo_root(), &local::run_name()).unwrap();
    let sqs = AwsJson::sqs(Endpoint::parse(&emulators().moto).unwrap(), "us-east-1");
    let (queue_url, queue_arn) = stack::create_ingest_queue(&sqs, &names, source.max_receive_count)
        .await
        .unwrap();
    for body in ["good-1", "poison", "good-2"] {
        sqs.call(
            "SendMessage",
            &json!({"QueueUrl": queue_url, "MessageBody": body}),
        )
        .await
        .unwrap();
    }
    // The function fails the poison message of every batch, by its messageId.
    let (function, events) = function(&names.function, |event| {
        let failures: Vec<Value> = event["Records"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["body"] == "poison")
            .map(|r| json!({"itemIdentifier": r["messageId"]}))
            .collect();
        Ok(json!({ "batchItemFailures": failures }))
    })
    .await;
    let counters = Arc::<MappingCounters>::default();
    let mapping = tokio::spawn(
        SqsMapping {
            sqs: sqs.clone(),
            queue_url: queue_url.clone(),
            queue_arn: queue_arn.clone(),
            function,
            source,
            retry_after: Duration::from_secs(1),
            counters: Arc::clone(&counters),
        }
        .run(),
    );
    // The poison message is received maxReceiveCount times, then moto's redrive moves it.
    let dlq = url_of(&sqs, &names.ingest_dlq).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while visible(&sqs, &dlq).await < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the poison message in the DLQ; {counters:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    mapping.abort();
    let moved = sqs
        .call(
            "ReceiveMessage",
            &json!({"QueueUrl": dlq, "MaxNumberOfMessages": 10}),
        )
        .await
        .unwrap();
    let bodies: Vec<&str> = moved["Messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["Body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["poison"]);
    assert_eq!(visible(&sqs, &queue_url).await, 0);

    let events = events.lock().unwrap().clone();
    let records: Vec<&Value> = events
        .iter()
        .flat_map(|e| e["Records"].as_array().unwrap())
        .collect();
    for r in &records {
        assert_eq!(r["eventSource"], "aws:sqs");
        assert_eq!(r["eventSourceARN"], queue_arn.as_str());
        assert!(
            r["messageId"].is_string() && r["receiptHandle"].is_string(),
            "{r}"
        );
    }
    let good: Vec<&Value> = records
        .iter()
        .copied()
        .filter(|r| r["body"] != "poison")
        .collect();
    assert_eq!(good.len(), 2, "each good message once: {records:?}");
    let poison: Vec<u64> = records
        .iter()
        .filter(|r| r["body"] == "poison")
        .map(|r| {
            r["attributes"]["ApproximateReceiveCount"]
                .as_str()
                .and_then(|n| n.parse().ok())
                .unwrap()
        })
        .collect();
    assert_eq!(poison, (1..=receives as u64).collect::<Vec<_>>());
    assert_eq!(counters.succeeded.load(Ordering::Relaxed), 2);
    assert_eq!(
        counters.failed_records.load(Ordering::Relaxed),
        receives as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_errors_bisect_to_the_bad_record_which_goes_to_the_failure_destination() {
    let source = pipeline().kinesis_source().unwrap();
    let retries = source.max_retries as usize;
    let names = stack::resource_names(&repo_root(), &local::run_name()).unwrap();
    let kinesis = AwsJson::kinesis(Endpoint::parse(&emulators().moto).unwrap(), "us-east-1");
    let stream_arn = stack::create_ingest_stream(&kinesis, &names.ingest_stream)
        .await
        .unwrap();
    let mut sequences = Vec::new();
    for data in ["a", "b", "poison", "d"] {
        let put = kinesis
            .call(
                "PutRecord",
                &json!({
                    "StreamName": names.ingest_stream,
                    "PartitionKey": THING,
                    "Data": base64::engine::general_purpose::STANDARD.encode(data),
                }),
            )
            .await
            .unwrap();
        sequences.push(put["SequenceNumber"].as_str().unwrap().to_string());
    }
    let decode = |r: &Value| {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(r["kinesis"]["data"].as_str().unwrap())
                .unwrap(),
        )
        .unwrap()
    };
    // The function fails any batch that holds the poison record.
    let (function, events) = function(&names.function, move |event| {
        let poisoned = event["Records"].as_array().unwrap().iter().any(|r| {
            r["kinesis"]["data"] == base64::engine::general_purpose::STANDARD.encode("poison")
        });
        if poisoned {
            Err(json!({"errorType": "Poison", "errorMessage": "poison"}))
        } else {
            Ok(json!({"batchItemFailures": []}))
        }
    })
    .await;
    let (failed_tx, mut failures) = mpsc::unbounded_channel();
    let counters = Arc::<MappingCounters>::default();
    let mapping = tokio::spawn(
        KinesisMapping {
            kinesis,
            stream: names.ingest_stream.clone(),
            stream_arn: stream_arn.clone(),
            function,
            source,
            retry_after: Duration::from_millis(100),
            on_failure: Some(failed_tx),
            counters: Arc::clone(&counters),
        }
        .run(),
    );
    let failure = tokio::time::timeout(Duration::from_secs(60), failures.recv())
        .await
        .expect("an on-failure record within 60 s")
        .expect("failure record");
    let c = Arc::clone(&counters);
    wait_until("the last record", Duration::from_secs(30), || {
        c.succeeded.load(Ordering::Relaxed) == 3
    })
    .await;
    mapping.abort();

    let info = &failure["KinesisBatchInfo"];
    assert_eq!(
        failure["requestContext"]["condition"],
        "RetryAttemptsExhausted"
    );
    assert_eq!(info["batchSize"], 1, "{failure}");
    assert_eq!(info["startSequenceNumber"], sequences[2].as_str());
    assert_eq!(info["shardId"], "shardId-000000000000");
    assert_eq!(info["streamArn"], stream_arn.as_str());

    // [a b poison d] fails and splits: [a b] passes, [poison d] fails and splits, [poison]
    // fails 1 + maximum_retry_attempts times, then [d] passes: in shard order.
    let batches: Vec<Vec<String>> = events
        .lock()
        .unwrap()
        .iter()
        .map(|e| {
            e["Records"]
                .as_array()
                .unwrap()
                .iter()
                .map(decode)
                .collect()
        })
        .collect();
    let mut expected = vec![
        vec!["a", "b", "poison", "d"],
        vec!["a", "b"],
        vec!["poison", "d"],
    ];
    expected.extend(std::iter::repeat_n(vec!["poison"], 1 + retries));
    expected.push(vec!["d"]);
    assert_eq!(batches, expected);
    let first = &events.lock().unwrap()[0]["Records"][0];
    assert_eq!(first["eventSource"], "aws:kinesis");
    assert_eq!(first["kinesis"]["partitionKey"], THING);
    assert_eq!(first["kinesis"]["sequenceNumber"], sequences[0].as_str());
    assert_eq!(counters.bisected.load(Ordering::Relaxed), 2);
    assert_eq!(counters.exhausted_records.load(Ordering::Relaxed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqs_messages_the_real_function_fails_end_in_the_dead_letter_queue() {
    tokio::time::timeout(Duration::from_secs(180), function_failures(IngestMode::Sqs))
        .await
        .expect("within 180 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kinesis_records_the_real_function_fails_end_in_the_failures_queue() {
    tokio::time::timeout(
        Duration::from_secs(180),
        function_failures(IngestMode::Kinesis),
    )
    .await
    .expect("within 180 s");
}

/// The ingest `bootstrap` itself fails the messages: its table is gone. SQS: each message is
/// received `maxReceiveCount` times (the Terraform's redrive policy), then moto moves it to the
/// ingest dead-letter queue, unchanged, ready to be redriven. Kinesis: the batch is retried
/// `maximum_retry_attempts` times, then Lambda's on-failure record goes to the failures queue.
async fn function_failures(mode: IngestMode) {
    use rumqttc::{AsyncClient, MqttOptions, QoS};
    let bootstrap = local::debug_bootstrap();
    let fx = local::fixture(&local::run_name()).await;
    let (mut stack, logs) = local::start(&fx, bootstrap, "127.0.0.1:0", mode).await;
    fx.ddb
        .delete_table()
        .table_name(&fx.table)
        .send()
        .await
        .expect("delete the table");

    // Two messages on the device's topic, straight to the broker the rule listens on.
    let hydraulic = vigil_tests::Hydraulic::load();
    let samples = hydraulic.samples(0..1);
    let (client, mut events) = AsyncClient::new(
        MqttOptions::new("publisher", "127.0.0.1", stack.broker.addr().port()),
        16,
    );
    let topic = format!("dt/vigil/{THING}/telemetry");
    for part in samples.chunks(30) {
        client
            .publish(
                &topic,
                QoS::AtLeastOnce,
                false,
                vigil_tests::fixture::batch(part),
            )
            .await
            .unwrap();
    }
    tokio::spawn(async move { while events.poll().await.is_ok() {} });
    let sqs = AwsJson::sqs(Endpoint::parse(&emulators().moto).unwrap(), "us-east-1");
    let c = Arc::clone(&stack.mapping);

    if mode == IngestMode::Kinesis {
        // Both records given up on, in one batch or, bisected, in two.
        let retries = pipeline().kinesis_source().unwrap().max_retries;
        let mut given_up = 0;
        while given_up < 2 {
            let record = tokio::time::timeout(Duration::from_secs(120), stack.failures.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!("on-failure records; mapping {c:?}; logs {}", logs.display())
                })
                .expect("failure record");
            assert_eq!(
                record["requestContext"]["condition"],
                "RetryAttemptsExhausted"
            );
            assert!(
                record["requestContext"]["approximateInvokeCount"].as_u64() > Some(retries.into()),
                "{record}"
            );
            given_up += record["KinesisBatchInfo"]["batchSize"].as_u64().unwrap();
        }
        assert_eq!(c.succeeded.load(Ordering::Relaxed), 0, "{c:?}");
        assert_eq!(c.exhausted_records.load(Ordering::Relaxed), 2, "{c:?}");
        // The failures queue (the Terraform's on-failure destination) holds them too.
        let queue = url_of(&sqs, &stack.names.failures_queue).await;
        assert_eq!(queue, stack.failures_queue_url);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while visible(&sqs, &queue).await < 1 {
            assert!(tokio::time::Instant::now() < deadline, "the failures queue");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        return;
    }

    let receives = pipeline().sqs_source().unwrap().max_receive_count as u64;
    let dlq = url_of(&sqs, &stack.names.ingest_dlq).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while visible(&sqs, &dlq).await < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "both messages in the DLQ; mapping {c:?}; logs {}",
            logs.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(c.succeeded.load(Ordering::Relaxed), 0, "{c:?}");
    assert_eq!(c.records.load(Ordering::Relaxed), 2 * receives, "{c:?}");
    assert_eq!(
        c.failed_records.load(Ordering::Relaxed),
        2 * receives,
        "{c:?}"
    );
    let ingest = url_of(&sqs, &stack.names.ingest_queue).await;
    assert_eq!(visible(&sqs, &ingest).await, 0);
    // The dead letters are the rule's documents, as sent: they can be redriven as they are.
    let moved = sqs
        .call(
            "ReceiveMessage",
            &json!({"QueueUrl": dlq, "MaxNumberOfMessages": 10}),
        )
        .await
        .unwrap();
    for m in moved["Messages"].as_array().unwrap() {
        let doc: Value = serde_json::from_str(m["Body"].as_str().unwrap()).unwrap();
        assert_eq!(doc["device"], THING, "{doc}");
        assert!(
            doc["payload"].is_string() && doc["received_at"].is_u64(),
            "{doc}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_sqs_action_goes_to_the_rules_error_action() {
    tokio::time::timeout(Duration::from_secs(120), error_action())
        .await
        .expect("within 120 s");
}

/// The ingest queue is gone: the rule's SQS action fails, and IoT's error message (the rule,
/// the topic, the original payload, what failed) goes to the failures queue, the Terraform's
/// `error_action`.
async fn error_action() {
    use rumqttc::{AsyncClient, MqttOptions, QoS};
    let bootstrap = local::debug_bootstrap();
    let fx = local::fixture(&local::run_name()).await;
    let (stack, _logs) = local::start(&fx, bootstrap, "127.0.0.1:0", IngestMode::Sqs).await;
    let sqs = AwsJson::sqs(Endpoint::parse(&emulators().moto).unwrap(), "us-east-1");
    let ingest = url_of(&sqs, &stack.names.ingest_queue).await;
    sqs.call("DeleteQueue", &json!({ "QueueUrl": ingest }))
        .await
        .unwrap();

    let payload = vigil_tests::fixture::batch(&vigil_tests::Hydraulic::load().samples(0..1)[..5]);
    let (client, mut events) = AsyncClient::new(
        MqttOptions::new("publisher", "127.0.0.1", stack.broker.addr().port()),
        16,
    );
    let topic = format!("dt/vigil/{THING}/telemetry");
    client
        .publish(&topic, QoS::AtLeastOnce, false, payload.clone())
        .await
        .unwrap();
    tokio::spawn(async move { while events.poll().await.is_ok() {} });

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let message = loop {
        let got = sqs
            .call(
                "ReceiveMessage",
                &json!({"QueueUrl": stack.failures_queue_url, "MaxNumberOfMessages": 1}),
            )
            .await
            .unwrap();
        if let Some(m) = got["Messages"].as_array().and_then(|m| m.first()) {
            break serde_json::from_str::<Value>(m["Body"].as_str().unwrap()).unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "an error action message; rule {:?}",
            stack.rule
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(message["ruleName"], stack.names.rule.as_str());
    assert_eq!(message["topic"], topic.as_str());
    let original = base64::engine::general_purpose::STANDARD
        .decode(message["base64OriginalPayload"].as_str().unwrap())
        .unwrap();
    assert_eq!(original, payload);
    assert_eq!(message["failures"][0]["failedAction"], "SqsAction");
    assert_eq!(message["failures"][0]["failedResource"], ingest.as_str());
    assert_eq!(stack.rule_action_failures.load(Ordering::Relaxed), 1);
    assert_eq!(stack.mapping.invocations.load(Ordering::Relaxed), 0);
}
