//! The local IoT data plane, driven by the AWS SDK client the function uses
//! (aws-sdk-iotdataplane, pointed at it with a per-service endpoint), delivers to a real broker.

use std::time::Duration;

use aws_sdk_iotdataplane::primitives::Blob;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use vigil_local::dataplane::DataPlane;

const WAIT: Duration = Duration::from_secs(10);

async fn next_publish(events: &mut rumqttc::EventLoop) -> (String, Value) {
    loop {
        let event = tokio::time::timeout(WAIT, events.poll())
            .await
            .expect("a message within 10 s")
            .expect("broker connection");
        if let Event::Incoming(Packet::Publish(p)) = event {
            return (p.topic, serde_json::from_slice(&p.payload).expect("JSON"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_publishes_and_keeps_shadows_through_the_local_data_plane() {
    let broker = vigil_edge::broker::start_embedded("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = broker.addr().port();
    // The device's side: its condition topic and its shadow's replies.
    let (device, mut device_events) =
        AsyncClient::new(MqttOptions::new("rig-001", "127.0.0.1", port), 16);
    device
        .subscribe("dt/vigil/rig-001/condition", QoS::AtLeastOnce)
        .await
        .unwrap();
    // (Not the shadow's `$aws/...` replies: the embedded broker, rumqttd, refuses `$` filters;
    // docs/local.md.)
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = tokio::time::timeout(WAIT, device_events.poll())
            .await
            .unwrap()
            .unwrap()
        {
            break;
        }
    }

    let (mqtt, mut mqtt_events) = AsyncClient::new(
        MqttOptions::new("vigil-local-data-plane", "127.0.0.1", port),
        64,
    );
    tokio::spawn(async move { while mqtt_events.poll().await.is_ok() {} });
    let plane = DataPlane::new(mqtt);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(plane.clone().serve(listener));

    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_iotdataplane::config::Credentials::new(
            "test", "test", None, None, "local",
        ))
        .load()
        .await;
    let client = aws_sdk_iotdataplane::Client::from_conf(
        aws_sdk_iotdataplane::config::Builder::from(&sdk)
            .endpoint_url(&endpoint)
            .build(),
    );

    client
        .publish()
        .topic("dt/vigil/rig-001/condition")
        .qos(1)
        .payload(Blob::new(br#"{"label":"healthy"}"#.to_vec()))
        .send()
        .await
        .expect("Publish");
    assert_eq!(
        next_publish(&mut device_events).await,
        (
            "dt/vigil/rig-001/condition".into(),
            json!({"label": "healthy"})
        )
    );

    let missing = client
        .get_thing_shadow()
        .thing_name("rig-001")
        .shadow_name("condition")
        .send()
        .await;
    assert!(
        missing
            .as_ref()
            .err()
            .and_then(|e| e.as_service_error())
            .is_some_and(|e| e.is_resource_not_found_exception()),
        "{missing:?}"
    );

    for label in ["healthy", "degraded"] {
        let update = client
            .update_thing_shadow()
            .thing_name("rig-001")
            .shadow_name("condition")
            .payload(Blob::new(
                json!({"state": {"reported": {"label": label, "seq": 1}}})
                    .to_string()
                    .into_bytes(),
            ))
            .send()
            .await
            .expect("UpdateThingShadow");
        let accepted: Value = serde_json::from_slice(update.payload().unwrap().as_ref()).unwrap();
        assert_eq!(accepted["state"]["reported"]["label"], label);
    }
    let shadow = client
        .get_thing_shadow()
        .thing_name("rig-001")
        .shadow_name("condition")
        .send()
        .await
        .expect("GetThingShadow");
    let doc: Value = serde_json::from_slice(shadow.payload().unwrap().as_ref()).unwrap();
    assert_eq!(
        doc["state"]["reported"],
        json!({"label": "degraded", "seq": 1})
    );
    assert_eq!(doc["version"], 2);
}
