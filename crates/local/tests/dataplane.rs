//! The local IoT data plane, driven by the AWS SDK client the function uses
//! (aws-sdk-iotdataplane, pointed at it with a per-service endpoint), delivers to a real broker;
//! and answers a device's MQTT shadow `get`. The device here is a plain client of the broker,
//! so it names `$aws/...` topics as the gateway carries them there (`vigil-aws/...`).

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
    let shadow = "vigil-aws/things/rig-001/shadow/name/condition";
    for filter in [
        "dt/vigil/rig-001/condition".to_string(),
        format!("{shadow}/update/accepted"),
        format!("{shadow}/get/+"),
    ] {
        device.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        loop {
            if let Event::Incoming(Packet::SubAck(_)) =
                tokio::time::timeout(WAIT, device_events.poll())
                    .await
                    .unwrap()
                    .unwrap()
            {
                break;
            }
        }
    }

    let (mqtt, mqtt_events) = AsyncClient::new(
        MqttOptions::new("vigil-local-data-plane", "127.0.0.1", port),
        64,
    );
    let plane = DataPlane::new(mqtt);
    tokio::spawn(plane.clone().serve_mqtt(mqtt_events));
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

    // No shadow yet: a `get` over MQTT is rejected with 404.
    device
        .publish(format!("{shadow}/get"), QoS::AtLeastOnce, false, "")
        .await
        .unwrap();
    let (topic, rejected) = next_publish(&mut device_events).await;
    assert_eq!(topic, format!("{shadow}/get/rejected"));
    assert_eq!(rejected["code"], 404, "{rejected}");

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
        assert_eq!(
            next_publish(&mut device_events).await,
            (format!("{shadow}/update/accepted"), accepted)
        );
    }
    // The device asks for its shadow over MQTT.
    device
        .publish(format!("{shadow}/get"), QoS::AtLeastOnce, false, "")
        .await
        .unwrap();
    let (topic, doc) = next_publish(&mut device_events).await;
    assert_eq!(topic, format!("{shadow}/get/accepted"));
    assert_eq!(doc["state"]["reported"]["label"], "degraded");

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
