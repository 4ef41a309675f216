//! MQTT 5 at the edge, with a real v5 client (rumqttc's `v5` module): the embedded broker speaks
//! 3.1.1 and 5 on one port and routes between them; the device gateway holds v5 devices to the
//! same per-device policy, refuses with v5 reason codes, and ends sessions at their expiry.
//! Certificates: the test PKI of crates/cli/tests/fixtures/tls (`device.pem` is thing `tls-rig`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, DisconnectReasonCode, Packet};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, StateError};
use tokio_rustls::rustls;
use vigil_edge::broker::start_embedded;
use vigil_edge::gateway::{Gateway, GatewayConfig, GatewayCounters, PolicyDocument};

const THING: &str = "tls-rig";
const WAIT: Duration = Duration::from_secs(10);

fn tls_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../cli/tests/fixtures/tls")
        .join(name)
}

fn v5_options(id: &str, port: u16, clean_start: bool, expiry: Option<u32>) -> MqttOptions {
    let mut options = MqttOptions::new(id, "127.0.0.1", port);
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_clean_start(clean_start)
        .set_session_expiry_interval(expiry);
    options
}

/// Polls until `want` picks something out of an event, or fails with what came instead.
async fn until<T>(
    events: &mut EventLoop,
    mut want: impl FnMut(&Result<Event, ConnectionError>) -> Option<T>,
) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = tokio::time::timeout(left, events.poll())
            .await
            .expect("an expected MQTT event within 10 s");
        if let Some(found) = want(&event) {
            return found;
        }
        if let Err(e) = event {
            panic!("connection ended before the expected event: {e}");
        }
    }
}

async fn connack(events: &mut EventLoop) -> bool {
    until(events, |e| match e {
        Ok(Event::Incoming(Packet::ConnAck(c))) => Some(c.session_present),
        _ => None,
    })
    .await
}

async fn suback(events: &mut EventLoop) {
    until(events, |e| {
        matches!(e, Ok(Event::Incoming(Packet::SubAck(_)))).then_some(())
    })
    .await
}

async fn message(events: &mut EventLoop, topic: &str) -> Vec<u8> {
    until(events, |e| match e {
        Ok(Event::Incoming(Packet::Publish(p))) if p.topic == topic.as_bytes() => {
            Some(p.payload.to_vec())
        }
        _ => None,
    })
    .await
}

/// The embedded broker and a gateway in front of it, `tls-rig` attached to `device.pem`, plus a
/// loopback TLS bridge that presents `cert`/`key` to the gateway (rumqttc is built without TLS
/// here, as the device agent bridges).
struct Edge {
    broker: u16,
    bridge: u16,
    gateway: u16,
    counters: Arc<GatewayCounters>,
}

async fn gateway_with_device(cert: &str, key: &str) -> Edge {
    gateway_with(cert, key, |g| g).await
}

async fn gateway_with(cert: &str, key: &str, setup: impl FnOnce(Gateway) -> Gateway) -> Edge {
    let broker = start_embedded("127.0.0.1:0".parse().unwrap()).expect("broker");
    let certs = tempfile::tempdir().expect("tempdir").keep();
    std::fs::copy(tls_file("device.pem"), certs.join(format!("{THING}.pem"))).unwrap();
    let config = GatewayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        cert: tls_file("endpoint.pem"),
        key: tls_file("endpoint.key"),
        device_ca: Some(tls_file("ca.pem")),
        device_certs: certs,
    };
    let gateway = Gateway::bind(&config, ("127.0.0.1".into(), broker.addr().port()))
        .await
        .expect("gateway");
    let gateway = setup(gateway);
    let counters = Arc::clone(&gateway.counters);
    let gateway_addr = gateway.addr;
    tokio::spawn(gateway.serve());
    let bridge = tls_bridge(gateway_addr, cert, key).await;
    Edge {
        broker: broker.addr().port(),
        bridge,
        gateway: gateway_addr.port(),
        counters,
    }
}

async fn tls_bridge(to: SocketAddr, cert: &str, key: &str) -> u16 {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(vigil_mqtt::tls::roots("ca", &tls_file("ca.pem")).unwrap())
        .with_client_auth_cert(
            vigil_mqtt::tls::certificates("cert", &tls_file(cert)).unwrap(),
            vigil_mqtt::tls::private_key("key", &tls_file(key)).unwrap(),
        )
        .unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut local, _)) = listener.accept().await {
            let connector = connector.clone();
            tokio::spawn(async move {
                let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
                let Ok(tcp) = tokio::net::TcpStream::connect(to).await else {
                    return;
                };
                if let Ok(mut tls) = connector.connect(name, tcp).await {
                    let _ = tokio::io::copy_bidirectional(&mut local, &mut tls).await;
                }
            });
        }
    });
    port
}

/// Waits (bounded) until a gateway counter, which the gateway bumps after the client has seen
/// the outcome, is no longer 0.
async fn eventually(counter: &std::sync::atomic::AtomicU64) {
    let deadline = Instant::now() + WAIT;
    while counter.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "the gateway never counted it");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A v4 client (what `vigil edge` itself is) on the broker.
fn v4_client(id: &str, port: u16) -> (rumqttc::AsyncClient, rumqttc::EventLoop) {
    rumqttc::AsyncClient::new(rumqttc::MqttOptions::new(id, "127.0.0.1", port), 16)
}

async fn v4_until_suback(events: &mut rumqttc::EventLoop) {
    loop {
        let event = tokio::time::timeout(WAIT, events.poll())
            .await
            .unwrap()
            .unwrap();
        if matches!(event, rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) {
            return;
        }
    }
}

/// Publishes `payload` on `topic` from a v4 client (QoS 1), driving its event loop until
/// `received` — the receiving side's read — completes; returns what it read.
async fn v4_send_for(
    client: &rumqttc::AsyncClient,
    mut events: rumqttc::EventLoop,
    topic: &str,
    payload: &str,
    received: tokio::task::JoinHandle<Vec<u8>>,
) -> Vec<u8> {
    client
        .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload.to_string())
        .await
        .unwrap();
    let pump = tokio::spawn(async move { while events.poll().await.is_ok() {} });
    let got = received.await.unwrap();
    pump.abort();
    got
}

async fn v4_message(events: &mut rumqttc::EventLoop) -> rumqttc::Publish {
    loop {
        let event = tokio::time::timeout(WAIT, events.poll())
            .await
            .unwrap()
            .unwrap();
        if let rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) = event {
            return p;
        }
    }
}

/// A plain device (`vigil edge --listen`) may speak v5 to the broker's one port: its telemetry
/// reaches a v4 subscriber and a v4 publisher's verdict reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_routes_between_v5_and_v4_clients_on_one_port() {
    let broker = start_embedded("127.0.0.1:0".parse().unwrap()).expect("broker");
    let port = broker.addr().port();
    let (edge, mut edge_events) = v4_client("edge", port);
    edge.subscribe("dt/vigil/+/telemetry", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    v4_until_suback(&mut edge_events).await;

    let (device, mut device_events) =
        AsyncClient::new(v5_options("plain-rig", port, true, None), 16);
    assert!(!connack(&mut device_events).await);
    device
        .subscribe("dt/vigil/plain-rig/condition", QoS::AtLeastOnce)
        .await
        .unwrap();
    suback(&mut device_events).await;
    device
        .publish(
            "dt/vigil/plain-rig/telemetry",
            QoS::AtLeastOnce,
            false,
            "{\"seq\":1}",
        )
        .await
        .unwrap();
    // Drive the v5 client while waiting on the v4 side.
    let pump =
        tokio::spawn(
            async move { message(&mut device_events, "dt/vigil/plain-rig/condition").await },
        );
    let got = v4_message(&mut edge_events).await;
    assert_eq!(got.topic, "dt/vigil/plain-rig/telemetry");
    assert_eq!(&got.payload[..], b"{\"seq\":1}");
    let got = v4_send_for(
        &edge,
        edge_events,
        "dt/vigil/plain-rig/condition",
        "healthy",
        pump,
    )
    .await;
    assert_eq!(got, b"healthy");
}

/// Through the gateway: a v5 device on its own certificate uses its own topics (a topic alias
/// included) and sees what is published to it; a v4 edge client receives its telemetry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v5_device_is_admitted_on_its_certificate_and_its_own_topics() {
    let Edge {
        broker,
        bridge,
        counters,
        ..
    } = gateway_with_device("device.pem", "device.key").await;
    let (edge, mut edge_events) = v4_client("edge", broker);
    edge.subscribe("dt/vigil/+/telemetry", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    v4_until_suback(&mut edge_events).await;

    let (device, mut events) = AsyncClient::new(v5_options(THING, bridge, true, None), 16);
    connack(&mut events).await;
    device
        .subscribe(format!("dt/vigil/{THING}/condition"), QoS::AtLeastOnce)
        .await
        .unwrap();
    suback(&mut events).await;
    let alias = rumqttc::v5::mqttbytes::v5::PublishProperties {
        topic_alias: Some(1),
        ..Default::default()
    };
    device
        .publish_with_properties(
            format!("dt/vigil/{THING}/telemetry"),
            QoS::AtLeastOnce,
            false,
            "{\"seq\":1}",
            alias.clone(),
        )
        .await
        .unwrap();
    // The same topic, by alias only.
    device
        .publish_with_properties("", QoS::AtLeastOnce, false, "{\"seq\":2}", alias)
        .await
        .unwrap();
    let pump =
        tokio::spawn(
            async move { message(&mut events, &format!("dt/vigil/{THING}/condition")).await },
        );
    for seq in 1..=2 {
        let got = v4_message(&mut edge_events).await;
        assert_eq!(got.topic, format!("dt/vigil/{THING}/telemetry"));
        assert_eq!(got.payload, format!("{{\"seq\":{seq}}}").as_bytes());
    }
    let topic = format!("dt/vigil/{THING}/condition");
    let got = v4_send_for(&edge, edge_events, &topic, "healthy", pump).await;
    assert_eq!(got, b"healthy");
    assert_eq!(counters.policy_violations.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v5_connect_as_another_thing_is_refused_with_not_authorized() {
    let Edge {
        bridge, counters, ..
    } = gateway_with_device("device.pem", "device.key").await;
    let (_c, mut events) = AsyncClient::new(v5_options("rig-other", bridge, true, None), 4);
    let refused = until(&mut events, |e| match e {
        Err(ConnectionError::ConnectionRefused(code)) => Some(*code),
        _ => None,
    })
    .await;
    assert_eq!(refused, ConnectReturnCode::NotAuthorized);
    eventually(&counters.policy_violations).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v5_publish_to_another_things_topic_ends_with_disconnect_not_authorized() {
    let Edge {
        broker,
        bridge,
        counters,
        ..
    } = gateway_with_device("device.pem", "device.key").await;
    let (edge, mut edge_events) = v4_client("edge", broker);
    edge.subscribe("#", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    v4_until_suback(&mut edge_events).await;

    let (device, mut events) = AsyncClient::new(v5_options(THING, bridge, true, None), 4);
    connack(&mut events).await;
    device
        .publish("dt/vigil/rig-002/telemetry", QoS::AtLeastOnce, false, "{}")
        .await
        .unwrap();
    let (reason, why) = until(&mut events, |e| match e {
        Err(ConnectionError::MqttState(StateError::ServerDisconnect {
            reason_code,
            reason_string,
        })) => Some((*reason_code, reason_string.clone())),
        _ => None,
    })
    .await;
    assert_eq!(reason, DisconnectReasonCode::NotAuthorized);
    assert!(why
        .unwrap_or_default()
        .contains("dt/vigil/rig-002/telemetry"));
    eventually(&counters.policy_violations).await;
    // Nothing of it reached the broker: the next thing the edge sees is its own marker.
    edge.publish("marker", rumqttc::QoS::AtLeastOnce, false, "m")
        .await
        .unwrap();
    assert_eq!(v4_message(&mut edge_events).await.topic, "marker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impostor_certificate_gets_no_v5_session() {
    let Edge {
        bridge, counters, ..
    } = gateway_with_device("impostor.pem", "impostor.key").await;
    let (_c, mut events) = AsyncClient::new(v5_options(THING, bridge, true, None), 4);
    until(&mut events, |e| e.is_err().then_some(())).await;
    // With TLS 1.3 the client may finish before the gateway has judged its certificate.
    eventually(&counters.failed_handshakes).await;
    assert_eq!(counters.connections.load(Ordering::Relaxed), 0);
}

/// A session kept with `clean_start = false` lives as long as its Session Expiry Interval says:
/// with 3600 s it is there on reconnect; with 0 the gateway ends it once the device is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v5_session_is_kept_for_its_expiry_interval_and_then_ended() {
    let Edge {
        bridge, counters, ..
    } = gateway_with_device("device.pem", "device.key").await;
    async fn session(bridge: u16, expiry: u32) -> bool {
        let (device, mut events) =
            AsyncClient::new(v5_options(THING, bridge, false, Some(expiry)), 4);
        let present = connack(&mut events).await;
        device
            .subscribe(format!("dt/vigil/{THING}/condition"), QoS::AtLeastOnce)
            .await
            .unwrap();
        suback(&mut events).await;
        device.disconnect().await.unwrap();
        until(&mut events, |e| e.is_err().then_some(())).await;
        present
    }
    assert!(!session(bridge, 3600).await, "a first session is new");
    assert!(session(bridge, 0).await, "kept for its 3600 s");
    eventually(&counters.sessions_expired).await;
    assert!(!session(bridge, 0).await, "ended at its 0 s expiry");
}

/// The CONNACK says which Session Expiry Interval the gateway uses when it is not the one the
/// device asked for (MQTT 5 §3.2.2.3.2): the one-hour cap, or 0 for a clean start (the broker
/// ends that session with the connection); nothing when it is the device's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connack_carries_the_session_expiry_the_gateway_grants() {
    let Edge { bridge, .. } = gateway_with_device("device.pem", "device.key").await;
    for (clean_start, asked, announced) in [
        (false, Some(7200), Some(3600)),
        (false, Some(600), None),
        (false, None, None),
        (true, Some(600), Some(0)),
    ] {
        let (device, mut events) =
            AsyncClient::new(v5_options(THING, bridge, clean_start, asked), 4);
        let got = until(&mut events, |e| match e {
            Ok(Event::Incoming(Packet::ConnAck(c))) => Some(
                c.properties
                    .as_ref()
                    .and_then(|p| p.session_expiry_interval),
            ),
            _ => None,
        })
        .await;
        assert_eq!(got, announced, "clean start {clean_start}, asked {asked:?}");
        device.disconnect().await.unwrap();
        until(&mut events, |e| e.is_err().then_some(())).await;
    }
}

/// `$aws/` topics through a broker that refuses them: the device's shadow subscription and its
/// shadow `get` travel the broker renamed, and what is published for its shadow reaches it as
/// `$aws/...`; a Basic Ingest publish goes to the rule sink only, acknowledged to the device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_topics_reach_the_device_and_basic_ingest_goes_to_the_rule_only() {
    let (sink, mut rule) = tokio::sync::mpsc::channel(4);
    let Edge {
        broker,
        bridge,
        counters,
        ..
    } = gateway_with("device.pem", "device.key", |g| {
        g.with_policy(PolicyDocument::builtin(Some("vigil_ingest")))
            .with_basic_ingest(sink)
    })
    .await;
    let (service, mut service_events) = v4_client("shadow-service", broker);
    service
        .subscribe("#", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    v4_until_suback(&mut service_events).await;

    let shadow = format!("$aws/things/{THING}/shadow/name/condition");
    let (device, mut events) = AsyncClient::new(v5_options(THING, bridge, true, None), 16);
    connack(&mut events).await;
    device
        .subscribe(format!("{shadow}/update/accepted"), QoS::AtLeastOnce)
        .await
        .unwrap();
    suback(&mut events).await;
    let ingest = format!("$aws/rules/vigil_ingest/dt/vigil/{THING}/telemetry");
    device
        .publish(&ingest, QoS::AtLeastOnce, false, "{\"seq\":7}")
        .await
        .unwrap();
    until(&mut events, |e| {
        matches!(e, Ok(Event::Incoming(Packet::PubAck(_)))).then_some(())
    })
    .await;
    let taken = rule.recv().await.expect("the rule got the message");
    assert_eq!(
        (
            taken.thing.as_str(),
            taken.topic.as_str(),
            &taken.payload[..]
        ),
        (THING, ingest.as_str(), &b"{\"seq\":7}"[..])
    );
    device
        .publish(format!("{shadow}/get"), QoS::AtLeastOnce, false, "")
        .await
        .unwrap();
    let accepted = format!("{shadow}/update/accepted");
    let pump = tokio::spawn(async move { message(&mut events, &accepted).await });
    // The first thing the broker saw is the `get`, renamed (the Basic Ingest message never
    // reached it).
    let get = v4_message(&mut service_events).await;
    assert_eq!(
        get.topic,
        format!("vigil-aws/things/{THING}/shadow/name/condition/get")
    );
    let topic = format!("vigil-aws/things/{THING}/shadow/name/condition/update/accepted");
    let got = v4_send_for(&service, service_events, &topic, "{\"version\":1}", pump).await;
    assert_eq!(got, b"{\"version\":1}");
    assert_eq!(counters.policy_violations.load(Ordering::Relaxed), 0);
}

/// iot:Receive is enforced on what the broker delivers: with a document that lets the thing
/// subscribe to a wildcard but receive only its results, a message on another topic under it
/// never reaches the device (the gateway acknowledges it to the broker), the next one does,
/// under its own topic name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receive_is_held_to_the_policy_document() {
    let document = PolicyDocument::from_json(
        r#"{"Statement":[
            {"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws:iot:*:*:client/${iot:ClientId}"},
            {"Effect":"Allow","Action":"iot:Subscribe","Resource":"arn:aws:iot:*:*:topicfilter/dt/vigil/${iot:Connection.Thing.ThingName}/#"},
            {"Effect":"Allow","Action":"iot:Receive","Resource":"arn:aws:iot:*:*:topic/dt/vigil/${iot:Connection.Thing.ThingName}/*"},
            {"Effect":"Deny","Action":"iot:Receive","Resource":"arn:aws:iot:*:*:topic/dt/vigil/*/alerts"}
        ]}"#,
    )
    .unwrap();
    let Edge {
        broker,
        bridge,
        counters,
        ..
    } = gateway_with("device.pem", "device.key", |g| g.with_policy(document)).await;
    // The device offers the server topic aliases: the gateway keeps the broker from using them,
    // so that every delivered topic is seen (and checked).
    let mut options = v5_options(THING, bridge, true, None);
    options.set_topic_alias_max(Some(10));
    let (device, mut events) = AsyncClient::new(options, 16);
    connack(&mut events).await;
    device
        .subscribe(format!("dt/vigil/{THING}/#"), QoS::AtLeastOnce)
        .await
        .unwrap();
    suback(&mut events).await;
    let (edge, mut edge_events) = v4_client("edge", broker);
    for (topic, payload) in [("alerts", "denied"), ("condition", "allowed")] {
        edge.publish(
            format!("dt/vigil/{THING}/{topic}"),
            rumqttc::QoS::AtLeastOnce,
            false,
            payload,
        )
        .await
        .unwrap();
    }
    let edge_pump = tokio::spawn(async move { while edge_events.poll().await.is_ok() {} });
    let first = until(&mut events, |e| match e {
        Ok(Event::Incoming(Packet::Publish(p))) => Some((p.topic.clone(), p.payload.clone())),
        _ => None,
    })
    .await;
    assert_eq!(
        (&first.0[..], &first.1[..]),
        (
            format!("dt/vigil/{THING}/condition").as_bytes(),
            &b"allowed"[..]
        )
    );
    edge_pump.abort();
    assert_eq!(counters.policy_violations.load(Ordering::Relaxed), 0);
}

/// The Python interpreter of the tools venv (`make setup` installs paho-mqtt there, pinned in
/// scripts/requirements-tools.txt).
fn tools_python() -> PathBuf {
    std::env::var_os("VIGIL_TOOLS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.tools/venv"))
        .join("bin/python")
}

/// paho-mqtt, the client the issue was found with, speaking MQTT 5 over mutual TLS: admitted on
/// its certificate, its telemetry answered; another thing's client id refused with 0x87.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paho_mqtt_over_v5_gets_its_verdict_and_a_foreign_client_id_gets_0x87() {
    let python = tools_python();
    assert!(
        python.exists(),
        "{} missing: run `make setup` (it installs paho-mqtt)",
        python.display()
    );
    // paho does its own TLS, to the gateway itself.
    let Edge {
        broker,
        gateway: port,
        ..
    } = gateway_with_device("device.pem", "device.key").await;
    // The edge's part: every telemetry message is answered on the device's condition topic.
    let (edge, mut edge_events) = v4_client("edge", broker);
    edge.subscribe("dt/vigil/+/telemetry", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    v4_until_suback(&mut edge_events).await;
    let answer = tokio::spawn(async move {
        let got = v4_message(&mut edge_events).await;
        let thing = got.topic.split('/').nth(2).unwrap().to_string();
        edge.publish(
            format!("dt/vigil/{thing}/condition"),
            rumqttc::QoS::AtLeastOnce,
            false,
            "healthy",
        )
        .await
        .unwrap();
        while edge_events.poll().await.is_ok() {}
    });

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/paho_v5.py");
    let run = tokio::time::timeout(
        Duration::from_secs(40),
        tokio::process::Command::new(&python)
            .arg(script)
            .arg(port.to_string())
            .arg(tls_file(""))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("paho script within 40 s")
    .expect("run python");
    answer.abort();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "paho: {stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines[0]["admitted"]["connack"], 0);
    assert_eq!(lines[0]["admitted"]["suback"], serde_json::json!([1]));
    assert_eq!(lines[0]["admitted"]["verdict"], "healthy");
    assert_eq!(lines[1]["refused"]["connack"], 0x87);
}

/// Waits for the gateway's DISCONNECT and gives its reason code.
async fn disconnect_reason(events: &mut EventLoop) -> DisconnectReasonCode {
    until(events, |e| match e {
        Err(ConnectionError::MqttState(StateError::ServerDisconnect { reason_code, .. })) => {
            Some(*reason_code)
        }
        _ => None,
    })
    .await
}

/// Whether anything reached the broker under `filter`: a subscriber that joins afterwards
/// gets a retained message first, anything else before its own marker.
async fn first_under(broker: u16, filter: &str, marker_topic: &str) -> rumqttc::Publish {
    let (watcher, mut watcher_events) = v4_client("watcher", broker);
    watcher
        .subscribe(filter, rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    v4_until_suback(&mut watcher_events).await;
    watcher
        .publish(marker_topic, rumqttc::QoS::AtLeastOnce, false, "marker")
        .await
        .unwrap();
    v4_message(&mut watcher_events).await
}

/// A device on the gateway sets the retain flag on its shadow `get`: IoT Core retains nothing on
/// `$aws/` topics, and a retained `get` on the broker would be asked again at every
/// resubscription of the edge. The device is cut off with 0x9A and nothing is retained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_message_on_a_reserved_topic_ends_with_retain_not_supported() {
    let Edge {
        broker,
        bridge,
        counters,
        ..
    } = gateway_with_device("device.pem", "device.key").await;
    let (device, mut events) = AsyncClient::new(v5_options(THING, bridge, true, None), 4);
    connack(&mut events).await;
    device
        .publish(
            format!("$aws/things/{THING}/shadow/name/condition/get"),
            QoS::AtLeastOnce,
            true,
            "",
        )
        .await
        .unwrap();
    assert_eq!(
        disconnect_reason(&mut events).await,
        DisconnectReasonCode::RetainNotSupported
    );
    eventually(&counters.policy_violations).await;
    let marker = "vigil-aws/things/marker/shadow/name/condition/get";
    let first = first_under(
        broker,
        "vigil-aws/things/+/shadow/name/condition/get",
        marker,
    )
    .await;
    assert_eq!((first.topic.as_str(), first.retain), (marker, false));
}

/// `vigil-aws/...` is the broker's name for `$aws/...`: a device whose policy lets it publish
/// anywhere still cannot publish there, which would reach another thing as its shadow's reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_policy_lets_a_device_speak_in_the_broker_s_aws_namespace() {
    let anything = PolicyDocument::from_json(
        r#"{"Statement":[{"Effect":"Allow","Action":"iot:*","Resource":"*"}]}"#,
    )
    .unwrap();
    let Edge {
        broker,
        bridge,
        counters,
        ..
    } = gateway_with("device.pem", "device.key", |g| g.with_policy(anything)).await;
    let (device, mut events) = AsyncClient::new(v5_options(THING, bridge, true, None), 4);
    connack(&mut events).await;
    device
        .publish(
            "vigil-aws/things/rig-002/shadow/name/condition/get/accepted",
            QoS::AtLeastOnce,
            false,
            r#"{"state":{"reported":{"window":0,"seq_start":0,"seq_end":60}}}"#,
        )
        .await
        .unwrap();
    assert_eq!(
        disconnect_reason(&mut events).await,
        DisconnectReasonCode::NotAuthorized
    );
    eventually(&counters.policy_violations).await;
    let marker = "vigil-aws/marker";
    let first = first_under(broker, "vigil-aws/#", marker).await;
    assert_eq!(first.topic, marker);
}

/// A topic alias set on a renamed `$aws/` topic stands for the broker's name of it: the second
/// `get`, by alias only, reaches the broker under `vigil-aws/...` as the first did; a retained
/// publish by that alias is a retained `$aws/` message, refused with 0x9A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alias_of_a_renamed_topic_is_renamed_and_held_to_the_same_rules() {
    let Edge { broker, bridge, .. } = gateway_with_device("device.pem", "device.key").await;
    let (service, mut service_events) = v4_client("shadow-service", broker);
    service
        .subscribe("#", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    v4_until_suback(&mut service_events).await;
    let (device, mut events) = AsyncClient::new(v5_options(THING, bridge, true, None), 8);
    connack(&mut events).await;
    let alias = |retain: bool, topic: &str, payload: &'static str| {
        let device = device.clone();
        let topic = topic.to_string();
        async move {
            let properties = rumqttc::v5::mqttbytes::v5::PublishProperties {
                topic_alias: Some(1),
                ..Default::default()
            };
            device
                .publish_with_properties(topic, QoS::AtMostOnce, retain, payload, properties)
                .await
                .unwrap();
        }
    };
    alias(
        false,
        &format!("$aws/things/{THING}/shadow/name/condition/get"),
        "1",
    )
    .await;
    alias(false, "", "2").await;
    alias(true, "", "3").await;
    assert_eq!(
        disconnect_reason(&mut events).await,
        DisconnectReasonCode::RetainNotSupported
    );
    let renamed = format!("vigil-aws/things/{THING}/shadow/name/condition/get");
    for payload in ["1", "2"] {
        let got = v4_message(&mut service_events).await;
        assert_eq!(
            (got.topic.as_str(), &got.payload[..]),
            (renamed.as_str(), payload.as_bytes())
        );
    }
    service
        .publish("marker", rumqttc::QoS::AtLeastOnce, false, "m")
        .await
        .unwrap();
    assert_eq!(v4_message(&mut service_events).await.topic, "marker");
}
