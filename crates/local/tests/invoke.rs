//! IoT's asynchronous hand-off against cargo-lambda's real Runtime API emulator: a function that
//! never answers (no runtime polls the emulator) times out on each attempt, is retried, and
//! the event lands in the failure destination as Lambda's on-failure record.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;
use tokio::process::Command;
use vigil_local::invoke::{AsyncInvoker, Function};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_the_function_never_answers_is_retried_then_parked_with_lambdas_record() {
    let cargo_lambda = repo().join(".tools/venv/bin/cargo-lambda");
    assert!(cargo_lambda.is_file(), "cargo-lambda missing: make setup");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let logs = repo().join(format!("target/local-invoke-{}.log", std::process::id()));
    let log = std::fs::File::create(&logs).unwrap();
    let _emulator = Command::new(&cargo_lambda)
        .args([
            "lambda",
            "watch",
            "--only-lambda-apis",
            "-A",
            "127.0.0.1",
            "-P",
        ])
        .arg(port.to_string())
        .arg("--manifest-path")
        .arg(repo().join("functions/ingest/Cargo.toml"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "emulator did not listen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let function = Function {
        host: "127.0.0.1".into(),
        port,
        name: vigil_local::lambda::EMULATED_FUNCTION.into(),
        arn: "arn:aws:lambda:us-east-1:000000000000:function:vigil-ingest".into(),
        timeout: Duration::from_millis(300),
    };
    let (failures_tx, mut failures) = tokio::sync::mpsc::unbounded_channel();
    let invoker = AsyncInvoker::new(function, 2, Duration::from_millis(50), 1, Some(failures_tx));
    let event = json!({"payload": "e30=", "device": "rig-001", "received_at": 1});
    assert!(invoker.submit(event.clone()));
    let record = tokio::time::timeout(Duration::from_secs(20), failures.recv())
        .await
        .expect("a failure record within 20 s")
        .expect("record");
    assert_eq!(record["requestContext"]["condition"], "RetriesExhausted");
    assert_eq!(record["requestContext"]["approximateInvokeCount"], 3);
    assert_eq!(record["requestPayload"], event);
    assert_eq!(record["responsePayload"]["errorType"], "Sandbox.Timedout");
    let c = &invoker.counters;
    assert_eq!(c.invocations.load(Ordering::Relaxed), 3);
    assert_eq!(c.retried.load(Ordering::Relaxed), 2);
    assert_eq!(c.exhausted.load(Ordering::Relaxed), 1);
    assert_eq!(c.succeeded.load(Ordering::Relaxed), 0);
}
