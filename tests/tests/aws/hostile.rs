//! Hostile input against the real SDK clients (DynamoDB Local, moto SQS): dead letters stay
//! under their cap whatever the device sent, one device cannot speak for another, and a
//! far-future seq is rejected without blinding the device's alerting.

use serde_json::{json, Value};
use vigil_core::documents::{payload_sha256, SQS_DEAD_LETTER_MAX_BYTES};
use vigil_ingest::RecordOutcome;
use vigil_tests::fixture::{batch, direct_b64, direct_star, one, sqs_batch, Fixture, Options};

use crate::cycles;

fn codes(h: &vigil_ingest::Handled) -> Vec<(&str, &str)> {
    h.outcomes
        .iter()
        .filter_map(|(id, o)| match o {
            RecordOutcome::Rejected { code, .. } => Some((id.as_str(), *code)),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_60_kb_hostile_message_becomes_a_dead_letter_under_the_cap() {
    let fx = Fixture::new(Options::default()).await;
    let thing = fx.thing("hostile").await;
    // Escaping makes these grow: `"` to 2 bytes, a control character to 6 (~360 KB of JSON).
    let quotes = vec![b'"'; 60_000];
    let control = vec![0x01u8; 60_000];
    // A 60 KB key made of escaped quotes: valid JSON, an unknown field.
    let mut quoted_key = b"{\"".to_vec();
    for _ in 0..30_000 {
        quoted_key.extend_from_slice(b"\\\"");
    }
    quoted_key.extend_from_slice(b"\":1}");
    // An envelope with an extra 180 KB key (under the 256 KiB body limit).
    let big_envelope = json!({
        "device": thing,
        "payload": "e30=",
        "x": "\u{1}".repeat(30_000),
    });
    let good = cycles(0..1);
    let mut records: Vec<(String, Value)> = good[..30]
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("good-{i}"), direct_b64(&thing, &one(s))))
        .collect();
    records.insert(5, ("quotes".into(), direct_b64(&thing, &quotes)));
    records.insert(10, ("control".into(), direct_b64(&thing, &control)));
    records.insert(15, ("quoted-key".into(), direct_b64(&thing, &quoted_key)));
    records.insert(20, ("envelope".into(), big_envelope.clone()));
    let h = fx.invoke(&sqs_batch(&records), "req-hostile").await;

    assert_eq!(h.response.as_ref().unwrap()["batchItemFailures"], json!([]));
    let mut got = codes(&h);
    got.sort();
    assert_eq!(
        got,
        vec![
            ("control", "invalid_json"),
            ("envelope", "unexpected_key"),
            ("quoted-key", "unknown_field"),
            ("quotes", "wrong_type"),
        ]
    );
    let accepted = h
        .outcomes
        .iter()
        .filter(|(_, o)| matches!(o, RecordOutcome::Accepted { samples: 1, .. }))
        .count();
    assert_eq!(accepted, 30, "the rest of the batch is processed");
    assert_eq!(h.metrics.counters.rejected, 4);
    assert_eq!(h.metrics.dead_letters_undelivered, 0);

    let dead = fx.drain(&fx.rejects_queue_url).await;
    assert_eq!(
        dead.len(),
        4,
        "the reject counter counts what was delivered"
    );
    let envelope_bytes = big_envelope.to_string().into_bytes();
    for (body, attrs) in &dead {
        let size = serde_json::to_string(body).unwrap().len();
        assert!(size <= SQS_DEAD_LETTER_MAX_BYTES, "{size} bytes");
        assert_eq!(body["payload_truncated"], true, "{}", body["code"]);
        let original: &[u8] = match body["code"].as_str().unwrap() {
            "wrong_type" => &quotes,
            "invalid_json" => &control,
            "unknown_field" => &quoted_key,
            _ => &envelope_bytes,
        };
        assert_eq!(body["payload_bytes"], original.len());
        if body["code"] != "unexpected_key" {
            // The envelope is re-serialized by the handler; the device's bytes are exact.
            assert_eq!(body["payload_sha256"], payload_sha256(original));
        }
        assert_eq!(attrs.get("code").map(String::as_str), body["code"].as_str());
        assert!(
            body["field"].as_str().unwrap().len() <= 256,
            "{}",
            body["field"]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_device_cannot_write_as_another() {
    let fx = Fixture::new(Options::default()).await;
    let attacker = fx.thing("attacker").await;
    let victim = fx.thing("victim").await;
    let samples = cycles(0..1);
    // Under the retired `SELECT *` rule, a device's `Records` key made the event a batch.
    let body = direct_b64(&victim, &batch(&samples));
    let mut smuggled = sqs_batch(&[("smuggled".into(), body.clone())]);
    smuggled["device"] = json!(attacker);
    let h = fx.invoke(&smuggled, "req-smuggle").await;
    assert_eq!(codes(&h), vec![("req-smuggle", "unexpected_key")]);
    // The same inside an SQS body, and a payload naming another device.
    let nested = sqs_batch(&[(
        "nested".into(),
        sqs_batch(&[("inner".into(), body.clone())]),
    )]);
    let h = fx.invoke(&nested, "req-nested").await;
    assert_eq!(codes(&h), vec![("nested", "unexpected_key")]);
    let mut claims: Value = serde_json::from_slice(&one(&samples[0])).unwrap();
    claims["device"] = json!(victim);
    let h = fx
        .invoke(
            &direct_b64(&attacker, claims.to_string().as_bytes()),
            "req-claim",
        )
        .await;
    assert_eq!(codes(&h), vec![("req-claim", "unknown_field")]);
    let h = fx
        .invoke(&direct_star(&attacker, &one(&samples[0])), "req-star")
        .await;
    assert_eq!(codes(&h), vec![("req-star", "unexpected_key")]);

    assert!(fx.manifests(&victim, "hydraulic-cooler").await.is_empty());
    assert!(fx.manifests(&attacker, "hydraulic-cooler").await.is_empty());
    let dead = fx.drain(&fx.rejects_queue_url).await;
    assert_eq!(dead.len(), 4);
    for (body, attrs) in &dead {
        // Nothing is attributed to the victim; the envelope cases to no device at all.
        assert_ne!(body["device"], json!(victim), "{body}");
        assert_ne!(attrs.get("device"), Some(&victim));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_far_future_seq_is_rejected_and_the_device_keeps_being_scored() {
    let fx = Fixture::new(Options::default()).await;
    let thing = fx.thing("jumpy").await;
    let samples = cycles(0..3);
    let h = fx
        .invoke(&direct_b64(&thing, &batch(&samples[..60])), "req-0")
        .await;
    assert_eq!(h.results.len(), 1, "window 0 scored");
    let mut far = samples[60].clone();
    far.seq = (1 << 53) - 2;
    let h = fx.invoke(&direct_b64(&thing, &one(&far)), "req-far").await;
    assert_eq!(codes(&h), vec![("req-far", "seq_jump")]);
    assert_eq!(h.response.as_ref().unwrap()["code"], "seq_jump");
    for (k, cycle) in [(1u64, &samples[60..120]), (2, &samples[120..180])] {
        let h = fx
            .invoke(&direct_b64(&thing, &batch(cycle)), &format!("req-{k}"))
            .await;
        assert_eq!(h.results.len(), 1, "window {k}");
        assert_eq!(h.results[0].window, k);
    }
    let (state, _) = fx.state(&thing, "hydraulic-cooler").await.expect("state");
    assert_eq!(state["applied_window"], 2, "{state}");
    let dead = fx.drain(&fx.rejects_queue_url).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0["field"], "seq");
}
