//! `bench-aws` (`make bench-aws`): the deployed `bootstrap` (`deploy` profile) under cargo-lambda's Runtime API
//! emulator (`cargo lambda watch --only-lambda-apis`), against DynamoDB Local and moto server,
//! for every scenario of `vigil_tests::bench` (direct, SQS, Kinesis; 1 and 60 samples per
//! message). Prints one JSON object: per scenario, DynamoDB write/read units and requests per
//! sample (from the function's own metrics lines), CPU per message (the process's user+system
//! time), handler latency p50/p99, and for the process its cold start (exec → first response)
//! and peak RSS.
//!
//! ```sh
//! cargo build --profile deploy -p vigil-ingest --bin bootstrap && cargo run -p vigil-tests --bin bench-aws -- --cycles 20
//! ```

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vigil_tests::bench::{check_bounds, events, figures, scenarios, Measured};
use vigil_tests::fixture::{env_for, Fixture, Options};
use vigil_tests::fleet::{cpu_seconds, pid_status_mb};
use vigil_tests::{emulators, http, http_with, repo_root, Hydraulic};

/// Metrics lines the function printed, and a signal for each new one.
#[derive(Default)]
struct Lines {
    emf: Mutex<Vec<Value>>,
    more: Condvar,
}

impl Lines {
    /// Waits until `n` lines were printed (the function prints one per invocation).
    fn wait_for(&self, n: usize) -> Value {
        let mut emf = self.emf.lock().expect("lock");
        let deadline = Instant::now() + Duration::from_secs(60);
        while emf.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no metrics line for invocation {n}");
            emf = self.more.wait_timeout(emf, left).expect("lock").0;
        }
        emf[n - 1].clone()
    }
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cycles: usize = arg(&args, "--cycles").map_or(20, |v| v.parse().expect("--cycles N"));
    let root = repo_root();
    let bootstrap = arg(&args, "--bootstrap")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/deploy/bootstrap"));
    let cargo_lambda = arg(&args, "--cargo-lambda")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".tools/venv/bin/cargo-lambda"));
    assert!(bootstrap.is_file(), "{} not built", bootstrap.display());

    let fx = Fixture::new(Options::default()).await;
    let e = emulators();
    let data = Hydraulic::load();
    let samples = data.samples(0..cycles);
    // The emulators' own warm-up (DynamoDB Local's JIT: its PutItem p50 falls from 2.5 to
    // 0.8 ms over the first ~1,000 requests; moto's first resources) is neither the
    // function's cold start nor its latency: warm them with the in-process handler first, on
    // the direct one-sample path (every request shape the bench makes).
    let warm = fx.thing("warm").await;
    let direct = scenarios()
        .into_iter()
        .find(|s| s.name == "direct_1")
        .expect("direct_1");
    for (i, inv) in events(&direct, &warm, &data.samples(0..cycles.clamp(3, 20)))
        .iter()
        .enumerate()
    {
        fx.invoke(&inv.event, &format!("warm-{i}")).await;
    }
    // What one request costs the emulator alone, from this process: the floor under the
    // function's per-message latency (a one-sample message is one such write).
    let put_alone = put_alone_ms(&fx).await;
    // Things exist before the function starts: the cold start is the function's alone.
    let mut things = Vec::new();
    for s in scenarios() {
        things.push(fx.thing(&s.name.replace('_', "-")).await);
    }

    // The Runtime API emulator, without a function: we start the deployed binary ourselves.
    let port = free_port();
    let mut emulator = Command::new(&cargo_lambda)
        .args([
            "lambda",
            "watch",
            "--only-lambda-apis",
            "-A",
            "127.0.0.1",
            "-P",
        ])
        .arg(port.to_string())
        .current_dir(&root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(
            std::fs::File::create(root.join("target/emulators/bench-aws-emulator.log"))
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null()),
        )
        .spawn()
        .unwrap_or_else(|err| panic!("{}: {err}", cargo_lambda.display()));
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the Runtime API emulator did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let env = env_for(
        &fx.table,
        &fx.topic_arn,
        &fx.archive_bucket,
        &fx.rejects_queue_url,
        &fx.models_bucket,
        &fx.options,
    );
    let spawned = Instant::now();
    let mut function = Command::new(&bootstrap)
        .env_clear()
        .envs(env)
        .env(
            "AWS_LAMBDA_RUNTIME_API",
            format!("http://127.0.0.1:{port}/.rt"),
        )
        .env("AWS_LAMBDA_FUNCTION_NAME", "_")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("AWS_ENDPOINT_URL", &e.moto)
        .env("AWS_ENDPOINT_URL_DYNAMODB", &e.dynamodb)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(
            std::fs::File::create(root.join("target/emulators/bench-aws-bootstrap.log"))
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null()),
        )
        .spawn()
        .expect("bootstrap");
    let pid = function.id().to_string();
    let lines = Arc::new(Lines::default());
    let reader = {
        let lines = lines.clone();
        let out = function.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if v.get("_aws").is_some() {
                        lines.emf.lock().expect("lock").push(v);
                        lines.more.notify_all();
                    }
                }
            }
        })
    };
    let invoke_url = format!("http://127.0.0.1:{port}/2015-03-31/functions/_/invocations");

    let mut report = serde_json::Map::new();
    let mut failures = Vec::new();
    let mut invoked = 0usize;
    let mut cold_start_ms = None;
    let mut rss_after_cold_start = None;
    // Direct one-sample messages: latency of those that close a window and of the others.
    let (mut closing_ms, mut other_ms) = (Vec::new(), Vec::new());
    let mut direct_thing = String::new();
    // Every direct one-sample invocation's metrics line, for looking into the tail.
    let mut direct_lines = String::new();
    for (s, thing) in scenarios().into_iter().zip(things) {
        let cpu_before = cpu_seconds(&pid).unwrap_or(0.0);
        let mut runs = Vec::new();
        let mut round_trip_ms = Vec::new();
        for inv in events(&s, &thing, &samples) {
            let t = Instant::now();
            let (status, body) = http("POST", &invoke_url, inv.event.to_string().as_bytes());
            round_trip_ms.push(t.elapsed().as_secs_f64() * 1000.0);
            if cold_start_ms.is_none() {
                cold_start_ms = Some(spawned.elapsed().as_secs_f64() * 1000.0);
                // Before any window closed: runtime, SDK clients, profiles (no ONNX yet).
                rss_after_cold_start = pid_status_mb(&pid, "VmRSS:");
            }
            assert_eq!(
                status,
                200,
                "{}: {}",
                s.name,
                String::from_utf8_lossy(&body)
            );
            let response: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if let Some(f) = response.get("batchItemFailures") {
                assert_eq!(f, &json!([]), "{}", s.name);
            }
            invoked += 1;
            let emf = lines.wait_for(invoked);
            let mut measured = Measured::from_emf(&emf);
            if invoked == 1 {
                // The cold invocation is the cold start, not a latency sample (its DynamoDB
                // units count).
                measured.latency_ms = f64::NAN;
            }
            if s.name == "direct_1" {
                direct_lines.push_str(&format!("{emf}\n"));
            }
            if s.name == "direct_1" && invoked > 1 {
                let closes = emf["WindowsScored"].as_f64().unwrap_or(0.0) > 0.0;
                if closes {
                    &mut closing_ms
                } else {
                    &mut other_ms
                }
                .push(measured.latency_ms);
            }
            runs.push((inv, measured));
        }
        if s.name == "direct_1" {
            direct_thing = thing.clone();
        }
        let cpu = cpu_seconds(&pid).unwrap_or(0.0) - cpu_before;
        let f = figures(&runs);
        failures.extend(check_bounds(s.name, &f));
        round_trip_ms.sort_by(f64::total_cmp);
        let mut v = serde_json::to_value(&f).expect("figures");
        v["cpu_ms_per_message"] = json!(cpu * 1000.0 / f.messages.max(1) as f64);
        v["cpu_ms_per_invocation"] = json!(cpu * 1000.0 / f.invocations.max(1) as f64);
        v["invoke_round_trip_ms_p50"] = json!(round_trip_ms[round_trip_ms.len() / 2]);
        v["samples_per_message"] = json!(s.samples_per_message);
        v["records_per_batch"] = json!(s.records_per_batch);
        report.insert(s.name.to_string(), v);
    }
    let _ = std::fs::write(
        root.join("target/emulators/bench-aws-direct_1.jsonl"),
        &direct_lines,
    );
    report.insert(
        "direct_1_latency_split_ms".into(),
        json!({
            "closing_p50": percentile(&mut closing_ms, 0.5),
            "closing_p99": percentile(&mut closing_ms, 0.99),
            "closing_share": closing_ms.len() as f64 / (closing_ms.len() + other_ms.len()).max(1) as f64,
            "other_p50": percentile(&mut other_ms, 0.5),
            "other_p99": percentile(&mut other_ms, 0.99),
        }),
    );
    report.insert(
        "close_requests_p50_ms".into(),
        close_breakdown(&fx, &direct_thing).await,
    );
    report.insert("dynamodb_put_alone_ms".into(), put_alone);
    report.insert("cold_start_ms".into(), json!(cold_start_ms));
    report.insert("peak_rss_mb".into(), json!(pid_status_mb(&pid, "VmHWM:")));
    report.insert("rss_by_mapping_mb".into(), rss_by_mapping(&pid));
    report.insert(
        "rss_after_cold_start_mb".into(),
        json!(rss_after_cold_start),
    );
    report.insert(
        "setup".into(),
        json!(format!(
            "bootstrap (`deploy` profile) under `cargo lambda watch --only-lambda-apis`, DynamoDB Local + moto server on loopback, {cycles} hydraulic cycles per scenario, cooler profile"
        )),
    );
    let _ = function.kill();
    let _ = function.wait();
    let _ = emulator.kill();
    let _ = emulator.wait();
    let _ = reader.join();
    println!(
        "{}",
        serde_json::to_string_pretty(&Value::Object(report)).expect("json")
    );
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("bounds exceeded: {failures:#?}");
        ExitCode::FAILURE
    }
}

fn percentile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(((v.len() as f64 - 1.0) * q).round() as usize)
        .copied()
        .unwrap_or(f64::NAN)
}

/// Where the resident memory is at the end (after every scenario): the largest mappings of
/// `/proc/<pid>/smaps` by file (anonymous memory as `[anon]`), in MB.
fn rss_by_mapping(pid: &str) -> Value {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut by: std::collections::BTreeMap<String, f64> = Default::default();
    let mut name = String::new();
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("Rss:") => {
                let kb: f64 = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
                *by.entry(name.clone()).or_default() += kb / 1024.0;
            }
            Some(first) if first.contains('-') && first.len() > 8 && !first.ends_with(':') => {
                let path = line.split_whitespace().nth(5).unwrap_or("");
                name = if path.starts_with('/') {
                    path.rsplit('/').next().unwrap_or(path).to_string()
                } else {
                    "[anon]".to_string()
                };
            }
            _ => {}
        }
    }
    let mut top: Vec<(String, f64)> = by.into_iter().filter(|(_, mb)| *mb >= 0.1).collect();
    top.sort_by(|a, b| b.1.total_cmp(&a.1));
    Value::Object(
        top.into_iter()
            .take(8)
            .map(|(k, mb)| (k, json!((mb * 10.0).round() / 10.0)))
            .collect(),
    )
}

/// The emulator's own latency, the floor under the function's: 2,000 conditional `PutItem`s
/// of a one-sample chunk's size, one at a time, as bare HTTP (DynamoDB Local does not check
/// signatures; one connection per request, ~0.05 ms on loopback), timed after 1,000 more:
/// p50, p99 and their ratio.
async fn put_alone_ms(fx: &Fixture) -> Value {
    let url = format!("{}/", emulators().dynamodb);
    let headers = "X-Amz-Target: DynamoDB_20120810.PutItem\r\nX-Amz-Date: 20261201T000000Z\r\n\
        Authorization: AWS4-HMAC-SHA256 Credential=test/20261201/us-east-1/dynamodb/aws4_request, \
        SignedHeaders=host, Signature=00\r\n";
    let mut ms = Vec::new();
    for i in 0..3_000 {
        let body = json!({
            "TableName": fx.table,
            "Item": {
                "pk": {"S": format!("C#bench-alone#{:020}", i / 60)},
                "sk": {"S": format!("{i:020}")},
                "d": {"B": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
            },
            "ConditionExpression": "attribute_not_exists(pk)",
        })
        .to_string();
        let t = Instant::now();
        let (status, answer) = http_with("POST", &url, body.as_bytes(), headers);
        let took = t.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
        if i >= 1_000 {
            ms.push(took);
        }
    }
    let (p50, p99) = (percentile(&mut ms, 0.5), percentile(&mut ms, 0.99));
    json!({ "p50": p50, "p99": p99, "p99_over_p50": p99 / p50 })
}

/// Where a close's time goes: each request it makes, timed alone against the same emulators
/// (p50 of 30), from this process. Reads use a window and state the bench wrote.
async fn close_breakdown(fx: &Fixture, thing: &str) -> Value {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    async fn time<F: std::future::Future<Output = ()>>(mut f: impl FnMut() -> F) -> f64 {
        let mut ms = Vec::new();
        for _ in 0..30 {
            let t = Instant::now();
            f().await;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        percentile(&mut ms, 0.5)
    }
    let profile = "hydraulic-cooler";
    let chunks = format!("C#{thing}#{profile}#{:020}", 1);
    let state_pk = format!("S#{thing}#{profile}");
    let sns = aws_sdk_sns::Client::new(&fx.sdk);
    let body = vec![b'x'; 9_000];
    let query = time(|| async {
        fx.ddb
            .query()
            .table_name(&fx.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", A::S(chunks.clone()))
            .consistent_read(true)
            .send()
            .await
            .expect("query");
    })
    .await;
    let get_state = time(|| async {
        fx.ddb
            .get_item()
            .table_name(&fx.table)
            .key("pk", A::S(state_pk.clone()))
            .key("sk", A::S("STATE".into()))
            .consistent_read(true)
            .send()
            .await
            .expect("get");
    })
    .await;
    let put_state = time(|| async {
        fx.ddb
            .put_item()
            .table_name(&fx.table)
            .item("pk", A::S("S#bench-scratch".into()))
            .item("sk", A::S("STATE".into()))
            .item("state", A::S("x".repeat(700)))
            .send()
            .await
            .expect("put");
    })
    .await;
    let publish = time(|| async {
        fx.iot
            .publish()
            .topic(format!("dt/vigil/{thing}/bench"))
            .qos(1)
            .payload(aws_sdk_iotdataplane::primitives::Blob::new(vec![b'x'; 500]))
            .send()
            .await
            .expect("publish");
    })
    .await;
    let shadow = time(|| async {
        fx.iot
            .update_thing_shadow()
            .thing_name(thing)
            .shadow_name("bench")
            .payload(aws_sdk_iotdataplane::primitives::Blob::new(
                br#"{"state":{"reported":{"label":"3"}}}"#.to_vec(),
            ))
            .send()
            .await
            .expect("shadow");
    })
    .await;
    let sns_publish = time(|| async {
        sns.publish()
            .topic_arn(&fx.topic_arn)
            .message("bench")
            .send()
            .await
            .expect("sns");
    })
    .await;
    let s3_put = time(|| async {
        fx.s3
            .put_object()
            .bucket(&fx.archive_bucket)
            .key("bench/scratch.json")
            .body(aws_sdk_s3::primitives::ByteStream::from(body.clone()))
            .send()
            .await
            .expect("put object");
    })
    .await;
    let s3_head = time(|| async {
        fx.s3
            .head_object()
            .bucket(&fx.archive_bucket)
            .key("bench/scratch.json")
            .send()
            .await
            .expect("head object");
    })
    .await;
    json!({
        "dynamodb_query_window_chunks": query,
        "dynamodb_get_state": get_state,
        "dynamodb_put_state": put_state,
        "iot_publish": publish,
        "iot_update_shadow": shadow,
        "sns_publish": sns_publish,
        "s3_put_archive": s3_put,
        "s3_head_archive": s3_head,
    })
}
