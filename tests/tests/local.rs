//! The cloud path as deployed, on one machine (what `make local` runs): a device with its own
//! certificate connects over mutual TLS to the IoT Core stand-in (the edge gateway with the
//! device policy, in front of the embedded broker); the topic rule from the Terraform hands each
//! message asynchronously to the ingest `bootstrap`, running under cargo-lambda's Runtime API
//! emulator with the environment the Terraform gives the function, against DynamoDB Local and
//! moto; the function's verdicts and shadow updates come back through the local IoT data plane,
//! the shadow's to the device on its `$aws/...` topic. Then one more cycle goes through Basic
//! Ingest, and impostors (another CA's certificate for the thing, another thing's certificate)
//! are refused. The certificates come from a CA made for the run.
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
use vigil_tests::local::{OTHER_THING, THING};
use vigil_tests::repo_root;

const CYCLES: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_device_replays_the_hydraulic_sample_through_the_deployed_cloud_path() {
    tokio::time::timeout(Duration::from_secs(240), run())
        .await
        .expect("the local cloud path within 240 s");
}

/// The next verdict the observer sees, before `deadline`.
async fn next_verdict(
    observed: &mut rumqttc::EventLoop,
    deadline: Instant,
    why: &dyn Fn() -> String,
) -> Value {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(event) = tokio::time::timeout(left, observed.poll()).await else {
            panic!("no verdict in time; {}", why())
        };
        if let Event::Incoming(Packet::Publish(p)) = event.expect("observer's connection") {
            return serde_json::from_slice(&p.payload).expect("verdict JSON");
        }
    }
}

async fn run() {
    let root = repo_root();
    let bootstrap = vigil_tests::local::debug_bootstrap();
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

    // The device: `vigil device` over mutual TLS, replaying the committed sample, subscribed to
    // its shadow.
    let state = root.join(format!("target/local-e2e/device-{}", std::process::id()));
    let device = vigil_tests::local::device_args(gateway_port, CYCLES, &state);
    let device = tokio::spawn(vigil_device::agent::run_with_summary(device));

    // Every cycle's verdict reaches the device's topic.
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut verdicts: BTreeMap<u64, Value> = BTreeMap::new();
    let why = || format!("invocations {counters:?}; logs in {}", logs.display());
    while verdicts.len() < CYCLES {
        let v = next_verdict(&mut observed, deadline, &why).await;
        verdicts.insert(v["window"].as_u64().expect("window"), v);
    }
    let summary = device.await.unwrap().expect("vigil device");
    let mut published = summary.messages_published;
    assert_eq!(
        verdicts.keys().copied().collect::<Vec<_>>(),
        (0..CYCLES as u64).collect::<Vec<_>>()
    );
    // The shadow's updates reached the device on `$aws/things/<thing>/shadow/name/condition/
    // update/accepted`, through the gateway and a broker that carries no `$` topic.
    assert!(summary.shadow_updates >= 1, "{summary:?}");
    assert_eq!(summary.results, CYCLES as u64, "{summary:?}");

    // One more cycle, as one message through Basic Ingest (`$aws/rules/<rule>/...`): the
    // gateway hands it to the rule, never to the broker, and it is scored like the others.
    let device = vigil_tests::local::device_args_via(
        gateway_port,
        CYCLES + 1,
        &state,
        Some(&stack.names.rule),
        60,
    );
    let device = tokio::spawn(vigil_device::agent::run_with_summary(device));
    // (A verdict published again for an earlier window, were there one, is not this one.)
    let ingested = loop {
        let v = next_verdict(&mut observed, deadline, &why).await;
        if v["window"] == CYCLES as u64 {
            break v;
        }
        assert!(
            verdicts.contains_key(&v["window"].as_u64().unwrap_or(u64::MAX)),
            "{v}"
        );
    };
    let summary = device
        .await
        .unwrap()
        .expect("vigil device over Basic Ingest");
    assert_eq!(ingested["window"], CYCLES as u64, "{ingested}");
    assert_eq!(ingested["seq_start"], (CYCLES * 60) as u64, "{ingested}");
    assert_eq!(
        (summary.messages_published, summary.results),
        (1, 1),
        "{summary:?}"
    );
    assert_eq!(stack.rule.other_rule.load(Ordering::Relaxed), 0);
    published += summary.messages_published;

    // Cycles 0-11 of the sample are a healthy cooler (100 %), 12-15 a reduced one (20 %).
    let labels: Vec<&str> = verdicts
        .values()
        .map(|v| v["label"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(labels[..12], ["100"; 12], "{labels:?}");
    assert!(labels[12..].iter().all(|l| *l != "100"), "{labels:?}");

    // Every message the device published (about two per cycle: a batch is cut short when the
    // reader has queued less) was handled once: the function has returned from all of them, so
    // its shadow updates, alerts and writes are done.
    let messages = published;
    while counters.succeeded.load(Ordering::Relaxed) < messages {
        assert!(Instant::now() < deadline, "invocations: {counters:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(counters.invocations.load(Ordering::Relaxed), messages);

    // The shadow holds the last verdict.
    let shadow = stack
        .plane
        .shadow(THING, "condition")
        .expect("condition shadow");
    assert_eq!(shadow["state"]["reported"]["window"], ingested["window"]);

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
    assert_eq!(state["applied_window"], CYCLES as u64, "{state}");
    assert!(state["alert"]["active"].is_string(), "{state}");

    assert_eq!(counters.exhausted.load(Ordering::Relaxed), 0);
    assert!(stack.failures.try_recv().is_err());
    let gateway = stack.gateway_counters.snapshot();
    assert_eq!(
        (gateway.policy_violations, gateway.failed_handshakes),
        (0, 0),
        "{gateway:?}"
    );

    impostors_are_refused(&stack, messages).await;
}

/// A certificate naming the thing from another CA gets no TLS session; another thing's own
/// certificate connects as that thing only, and its publish to this thing's topic closes the
/// connection before anything reaches the rule.
async fn impostors_are_refused(stack: &vigil_local::stack::Stack, messages: u64) {
    use vigil_tests::local::tls;
    let endpoint = format!("127.0.0.1:{}", stack.gateway.port());
    let counters = &stack.gateway_counters;
    let client = |cert: &str, key: &str, id: &str| {
        let endpoint = endpoint.clone();
        let (cert, key, id) = (tls(cert), tls(key), id.to_string());
        async move {
            let bridge =
                vigil_device::agent::start_tls_bridge(&endpoint, &cert, &key, &tls("ca.pem"))
                    .await
                    .expect("TLS bridge");
            let mut options = MqttOptions::new(id, "127.0.0.1", bridge.port());
            options.set_keep_alive(Duration::from_secs(30));
            AsyncClient::new(options, 8)
        }
    };
    // Until the connection ends; whether a CONNACK came first.
    async fn until_closed(events: &mut rumqttc::EventLoop) -> bool {
        let mut acked = false;
        loop {
            match tokio::time::timeout(Duration::from_secs(10), events.poll())
                .await
                .expect("the gateway ends the connection within 10 s")
            {
                Ok(Event::Incoming(Packet::ConnAck(_))) => acked = true,
                Ok(_) => {}
                Err(_) => return acked,
            }
        }
    }
    /// Counters bump after the client has seen the outcome: wait for them, bounded.
    async fn until_counted(what: &str, count: impl Fn() -> u64, want: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while count() < want {
            assert!(Instant::now() < deadline, "{what}: {} of {want}", count());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(count(), want, "{what}");
    }

    let (_c, mut events) = client("impostor.pem", "impostor.key", THING).await;
    assert!(
        !until_closed(&mut events).await,
        "another CA's certificate got a session"
    );
    until_counted(
        "failed handshakes",
        || counters.failed_handshakes.load(Ordering::Relaxed),
        1,
    )
    .await;

    let (_c, mut events) = client("other.pem", "other.key", THING).await;
    assert!(
        !until_closed(&mut events).await,
        "another thing's certificate connected as {THING}"
    );
    until_counted(
        "violations",
        || counters.policy_violations.load(Ordering::Relaxed),
        1,
    )
    .await;

    let (other, mut events) = client("other.pem", "other.key", OTHER_THING).await;
    other
        .publish(
            format!("dt/vigil/{THING}/telemetry"),
            QoS::AtLeastOnce,
            false,
            "{}",
        )
        .await
        .unwrap();
    assert!(
        until_closed(&mut events).await,
        "{OTHER_THING} connects as itself"
    );
    until_counted(
        "violations",
        || counters.policy_violations.load(Ordering::Relaxed),
        2,
    )
    .await;
    assert_eq!(
        stack.invocations.invocations.load(Ordering::Relaxed),
        messages
    );
    assert_eq!(stack.rule.matched.load(Ordering::Relaxed), messages);
}
