//! Edge and Lambda accept exactly the same payloads: every event of `events/ingest/` through
//! the Lambda's handler, and each payload it carries through the path the edge takes (device
//! from the MQTT topic, the publish's bytes into the same core pipeline and validation),
//! with the same code and field on both. Cases that exist only in the rule's envelope (bad
//! base64, a smuggled `Records`, the retired `SELECT *` shape...) have no edge counterpart:
//! the edge has no envelope, its device is the topic.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;
use vigil_core::memory::MemoryPorts;
use vigil_core::scorer::ZScoreScorer;
use vigil_core::telemetry::{parse_message, telemetry_topic};
use vigil_core::{
    CompiledProfile, DeviceId, Message, MessageOutcome, Pipeline, PipelineConfig, Profile,
    ScorerSpec,
};
use vigil_ingest::event::parse_event;
use vigil_ingest::{handle_detailed, App, Invocation, RecordOutcome};

const PROFILE: &str = r#"
name = "cooler"
channels = ["TS1", "TS2", "TS3", "TS4"]
sample_rate_hz = 1.0
[window]
size = 60
hop = 60
[scorer]
kind = "zscore"
warmup = 2
[alert]
unhealthy = ["anomaly"]
"#;

/// Where a case is decided.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Layer {
    /// In the device's bytes: the edge must say exactly the same.
    Payload,
    /// In the rule's envelope: no edge counterpart.
    Envelope,
    /// The device id: from the rule's `topic(3)` in the Lambda, the topic at the edge.
    Device,
}

/// file → (code, field, layer). Every `bad-*.json` must be listed.
const TABLE: &[(&str, &str, &str, Layer)] = &[
    ("bad-ambiguous.json", "ambiguous", "$", Layer::Payload),
    (
        "bad-duplicate_key--sqs-envelope.json",
        "duplicate_key",
        "device",
        Layer::Envelope,
    ),
    (
        "bad-duplicate_key.json",
        "duplicate_key",
        "seq",
        Layer::Payload,
    ),
    (
        "bad-duplicate_seq.json",
        "duplicate_seq",
        "samples",
        Layer::Payload,
    ),
    (
        "bad-empty_batch.json",
        "empty_batch",
        "samples",
        Layer::Payload,
    ),
    (
        "bad-invalid_device.json",
        "invalid_device",
        "device",
        Layer::Device,
    ),
    (
        "bad-invalid_json--payload.json",
        "invalid_json",
        "$",
        Layer::Payload,
    ),
    (
        "bad-invalid_json--sqs-mixed.json",
        "invalid_json",
        "$",
        Layer::Envelope,
    ),
    (
        "bad-invalid_json.json",
        "invalid_json",
        "$",
        Layer::Envelope,
    ),
    (
        "bad-missing_channel.json",
        "missing_channel",
        "values",
        Layer::Payload,
    ),
    (
        "bad-missing_field--device.json",
        "missing_field",
        "device",
        Layer::Envelope,
    ),
    (
        "bad-missing_field--ts.json",
        "missing_field",
        "ts",
        Layer::Payload,
    ),
    ("bad-negative.json", "negative", "seq", Layer::Payload),
    (
        "bad-not_finite.json",
        "not_finite",
        "values.TS1",
        Layer::Payload,
    ),
    ("bad-oversize.json", "oversize", "$", Layer::Payload),
    (
        "bad-repeated_channel.json",
        "repeated_channel",
        "values.TS1",
        Layer::Payload,
    ),
    ("bad-seq_jump.json", "seq_jump", "seq", Layer::Payload),
    ("bad-too_large.json", "too_large", "seq", Layer::Payload),
    (
        "bad-unexpected_key--records.json",
        "unexpected_key",
        "Records",
        Layer::Envelope,
    ),
    (
        "bad-unexpected_key--select-star.json",
        "unexpected_key",
        "seq",
        Layer::Envelope,
    ),
    (
        "bad-unexpected_key--sqs-records.json",
        "unexpected_key",
        "Records",
        Layer::Envelope,
    ),
    (
        "bad-unknown_channel.json",
        "unknown_channel",
        "values.PS1",
        Layer::Payload,
    ),
    (
        "bad-unknown_field--device-key.json",
        "unknown_field",
        "device",
        Layer::Payload,
    ),
    (
        "bad-unknown_field--error-text-key.json",
        "unknown_field",
        "x|expected a number",
        Layer::Payload,
    ),
    (
        "bad-unknown_field--payload-key.json",
        "unknown_field",
        "payload",
        Layer::Payload,
    ),
    (
        "bad-unknown_field.json",
        "unknown_field",
        "temperature",
        Layer::Payload,
    ),
    (
        "bad-wrong_type--kinesis-data.json",
        "wrong_type",
        "kinesis.data",
        Layer::Envelope,
    ),
    (
        "bad-wrong_type--payload-base64.json",
        "wrong_type",
        "payload",
        Layer::Envelope,
    ),
    (
        "bad-wrong_type--value.json",
        "wrong_type",
        "values.TS1",
        Layer::Payload,
    ),
];

const GOOD: &[&str] = &[
    "direct-b64.json",
    "direct-batch.json",
    "sqs-batch.json",
    "kinesis-batch.json",
];

fn events_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../events/ingest")
}

fn read(name: &str) -> Value {
    let text = std::fs::read_to_string(events_dir().join(name)).expect("event file");
    serde_json::from_str(&text).expect("event JSON")
}

fn profiles() -> BTreeMap<String, CompiledProfile> {
    let p = Profile::from_toml(PROFILE, "cooler.toml").unwrap();
    let ScorerSpec::Zscore(c) = &p.scorer else {
        unreachable!()
    };
    let scorer = Arc::new(ZScoreScorer::new(c.clone()));
    BTreeMap::from([(
        "cooler".to_string(),
        CompiledProfile::new(p, scorer).unwrap(),
    )])
}

fn channels() -> Vec<String> {
    ["TS1", "TS2", "TS3", "TS4"].map(String::from).to_vec()
}

/// The Lambda: the whole handler over fresh in-memory ports; (code, field) per record.
async fn lambda(profiles: &BTreeMap<String, CompiledProfile>, event: &Value) -> Vec<Verdict> {
    let mem = MemoryPorts::new();
    let app = App {
        profiles,
        ports: mem.ports(),
        default_profile: "cooler".into(),
        usage: None,
        function: "test".into(),
        print_metrics: false,
        close_hints: Default::default(),
        alarm_reports: None,
    };
    let inv = Invocation {
        request_id: "req".into(),
        deadline_ms: None,
        now_ms: Some(1_000),
    };
    let h = handle_detailed(&app, event, &inv).await;
    let rejected = mem.recorder.rejected.lock().unwrap().clone();
    h.outcomes
        .iter()
        .map(|(id, o)| match o {
            RecordOutcome::Accepted { samples, .. } => Verdict::Accepted(*samples),
            RecordOutcome::Rejected { code, .. } => {
                let r = rejected
                    .iter()
                    .find(|r| &r.message_id == id)
                    .expect("a reject is dead-lettered");
                assert_eq!(r.error.code(), *code);
                Verdict::Rejected(code.to_string(), r.error.field.clone())
            }
            RecordOutcome::Failed { error, .. } => panic!("record {id} failed: {error}"),
        })
        .collect()
}

/// The edge: the device from the MQTT topic, the publish's bytes as they are, into the same
/// pipeline over fresh in-memory ports (what `vigil edge` does with each publish).
async fn edge(
    profiles: &BTreeMap<String, CompiledProfile>,
    topic: &str,
    payload: &[u8],
) -> Verdict {
    let device = match DeviceId::from_topic(topic) {
        Ok(d) => d,
        Err(e) => return Verdict::Rejected(e.code().to_string(), e.field),
    };
    let mem = MemoryPorts::new();
    let config = PipelineConfig {
        default_profile: "cooler".into(),
        ..PipelineConfig::default()
    };
    let pipeline = Pipeline::new(profiles, mem.ports(), config).unwrap();
    let message = Message {
        id: "pkid-1".into(),
        device,
        payload: payload.to_vec(),
    };
    match pipeline.process(&[message], 1_000).await.outcomes.remove(0) {
        MessageOutcome::Accepted { samples, .. } => Verdict::Accepted(samples),
        MessageOutcome::Rejected(e) => Verdict::Rejected(e.code().to_string(), e.field),
        MessageOutcome::Failed { error, .. } => panic!("edge failed: {error}"),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Verdict {
    Accepted(usize),
    Rejected(String, String),
}

/// The device's bytes and topic in each record the envelope accepted.
fn payloads(event: &Value) -> Vec<Option<(String, Vec<u8>)>> {
    parse_event(event, "req")
        .expect("supported event")
        .records
        .into_iter()
        .map(|r| {
            r.content
                .ok()
                .map(|m| (telemetry_topic(&m.device), m.payload))
        })
        .collect()
}

#[tokio::test]
async fn every_event_gets_the_same_verdict_on_both_paths() {
    let profiles = profiles();
    let mut listed: Vec<String> = std::fs::read_dir(events_dir())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("bad-"))
        .collect();
    listed.sort();
    let mut in_table: Vec<String> = TABLE.iter().map(|t| t.0.to_string()).collect();
    in_table.sort();
    assert_eq!(listed, in_table, "every bad-*.json has a row in TABLE");

    for &(name, code, field, layer) in TABLE {
        assert!(
            name.starts_with(&format!("bad-{code}")),
            "{name}: code in its name"
        );
        let event = read(name);
        let expected = Verdict::Rejected(code.into(), field.into());
        let verdicts = lambda(&profiles, &event).await;
        assert!(!verdicts.is_empty(), "{name}");
        for v in &verdicts {
            assert_eq!(v, &expected, "{name}: the Lambda");
        }
        let carried = payloads(&event);
        match layer {
            Layer::Payload => {
                for p in &carried {
                    let (topic, payload) = p.as_ref().expect("the envelope is valid");
                    assert_eq!(
                        edge(&profiles, topic, payload).await,
                        expected,
                        "{name}: edge"
                    );
                    // Stateless codes come from the core validation itself.
                    if code != "seq_jump" {
                        let e = parse_message(payload, &channels()).unwrap_err();
                        assert_eq!((e.code(), e.field.as_str()), (code, field), "{name}");
                    }
                }
            }
            Layer::Envelope => {
                assert!(carried.iter().all(Option::is_none), "{name}: no message");
            }
            Layer::Device => {
                // The rule's `topic(3)` is the thing name; the edge reads it from the topic.
                let device = event["device"].as_str().expect("device");
                let topic = format!("dt/vigil/{device}/telemetry");
                let payload = base64_payload(&event);
                match edge(&profiles, &topic, &payload).await {
                    Verdict::Rejected(c, _) => assert_eq!(c, code, "{name}: edge"),
                    other => panic!("{name}: edge accepted {other:?}"),
                }
            }
        }
    }

    for name in GOOD {
        let event = read(name);
        let verdicts = lambda(&profiles, &event).await;
        let carried = payloads(&event);
        assert_eq!(verdicts.len(), carried.len());
        for (v, p) in verdicts.iter().zip(&carried) {
            assert!(matches!(v, Verdict::Accepted(n) if *n > 0), "{name}: {v:?}");
            let (topic, payload) = p.as_ref().expect("valid envelope");
            assert_eq!(&edge(&profiles, topic, payload).await, v, "{name}: edge");
        }
    }
}

fn base64_payload(event: &Value) -> Vec<u8> {
    use base64::Engine as _;
    let text = event["payload"].as_str().expect("payload");
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("base64")
}
