//! The cloud path as deployed, on one machine (what `make local` runs): a device with its own
//! certificate connects over mutual TLS to the IoT Core stand-in (the edge gateway with the
//! device policy, in front of the embedded broker); the topic rule from the Terraform hands each
//! message asynchronously to the ingest `bootstrap`, running under cargo-lambda's Runtime API
//! emulator with the environment the Terraform gives the function, against DynamoDB Local and
//! moto; the function's verdicts and shadow updates come back through the local IoT data plane.
//!
//! Needs `target/debug/bootstrap` (`make test` builds it: a debug build, minutes cheaper than the
//! release zip on 2 cores) and cargo-lambda in the tools venv (`make setup`).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use vigil_local::stack::IngestMode;
use vigil_tests::local::THING;
use vigil_tests::repo_root;

const CYCLES: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_device_replays_the_hydraulic_sample_through_the_deployed_cloud_path() {
    tokio::time::timeout(Duration::from_secs(240), run())
        .await
        .expect("the local cloud path within 240 s");
}

async fn run() {
    let root = repo_root();
    let bootstrap = root.join("target/debug/bootstrap");
    assert!(
        bootstrap.is_file(),
        "{} missing: cargo build -p vigil-ingest --bin bootstrap",
        bootstrap.display()
    );
    let fx = vigil_tests::local::fixture(&vigil_tests::local::run_name()).await;
    let (mut stack, logs) =
        vigil_tests::local::start(&fx, bootstrap, "127.0.0.1:0", IngestMode::Direct).await;
    let broker_at = ("127.0.0.1".to_string(), stack.broker.addr().port());
    let gateway_port = stack.gateway.port();
    let counters = Arc::clone(&stack.invocations);

    // An observer of the device's condition topic.
    let (observer, mut observed) =
        AsyncClient::new(MqttOptions::new("observer", "127.0.0.1", broker_at.1), 256);
    observer
        .subscribe(format!("dt/vigil/{THING}/condition"), QoS::AtLeastOnce)
        .await
        .unwrap();
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = observed.poll().await.unwrap() {
            break;
        }
    }

    // The device: `vigil device` over mutual TLS, replaying the committed sample.
    let state = root.join(format!("target/local-e2e/device-{}", std::process::id()));
    let device = vigil_tests::local::device_args(gateway_port, CYCLES, &state);
    let device = tokio::spawn(vigil_device::agent::run(device));

    // Every cycle's verdict reaches the device's topic.
    let mut verdicts: BTreeMap<u64, Value> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    while verdicts.len() < CYCLES {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(event) = tokio::time::timeout(left, observed.poll()).await else {
            panic!(
                "{} of {CYCLES} verdicts; invocations {:?}; logs in {}",
                verdicts.len(),
                counters,
                logs.display()
            )
        };
        let event = event.expect("observer's broker connection");
        if let Event::Incoming(Packet::Publish(p)) = event {
            let v: Value = serde_json::from_slice(&p.payload).expect("verdict JSON");
            verdicts.insert(v["window"].as_u64().expect("window"), v);
        }
    }
    device.await.unwrap().expect("vigil device");
    assert_eq!(
        verdicts.keys().copied().collect::<Vec<_>>(),
        (0..CYCLES as u64).collect::<Vec<_>>()
    );
    // Cycles 0-11 of the sample are a healthy cooler (100 %), 12-15 a reduced one (20 %).
    let labels: Vec<&str> = verdicts
        .values()
        .map(|v| v["label"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(labels[..12], ["100"; 12], "{labels:?}");
    assert!(labels[12..].iter().all(|l| *l != "100"), "{labels:?}");

    // Every message the rule matched (two or more per cycle: the device batches by count and
    // time) was handled once: the function has returned from all of them, so its shadow
    // updates, alerts and writes are done.
    let messages = stack.rule.matched.load(Ordering::Relaxed);
    assert!(messages >= (CYCLES * 2) as u64, "{:?}", stack.rule);
    while counters.succeeded.load(Ordering::Relaxed) < messages {
        assert!(Instant::now() < deadline, "invocations: {counters:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(counters.invocations.load(Ordering::Relaxed), messages);

    // The shadow holds the last verdict.
    let shadow = stack
        .plane
        .shadows
        .lock()
        .unwrap()
        .get(&(THING.to_string(), "condition".to_string()))
        .cloned()
        .expect("condition shadow");
    assert_eq!(
        shadow["state"]["reported"]["window"],
        verdicts[&(CYCLES as u64 - 1)]["window"]
    );

    // The operators heard of it once (two unhealthy cycles in a row raise the alert).
    let alerts = fx.alerts().await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["MessageAttributes"]["device"]["Value"], THING);
    let message = alerts[0]["Message"].as_str().expect("SNS message");
    assert!(message.contains(THING), "{message}");

    // DynamoDB holds the device's state: every window applied, the alert open.
    let (state, _version) = fx
        .state(THING, "hydraulic-cooler")
        .await
        .expect("device state in DynamoDB");
    assert_eq!(state["applied_window"], CYCLES as u64 - 1, "{state}");
    assert!(state["alert"]["active"].is_string(), "{state}");

    assert_eq!(counters.exhausted.load(Ordering::Relaxed), 0);
    assert!(stack.failures.try_recv().is_err());
    assert_eq!(stack.gateway_counters.snapshot().policy_violations, 0);
}
