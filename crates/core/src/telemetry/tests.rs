use super::*;

fn channels() -> Vec<String> {
    vec!["TS1".into(), "TS2".into()]
}

fn err(payload: &str) -> TelemetryError {
    parse_message(payload.as_bytes(), &channels()).unwrap_err()
}

#[test]
fn parses_single_sample_in_profile_order() {
    let s = parse_message(
        br#"{"seq": 7, "ts": 1700000000123, "values": {"TS2": 2.5, "TS1": 1}}"#,
        &channels(),
    )
    .unwrap();
    assert_eq!(
        s,
        vec![Sample {
            seq: 7,
            ts: 1_700_000_000_123,
            values: vec![1.0, 2.5]
        }]
    );
}

#[test]
fn parses_batch() {
    let s = parse_message(
        br#"{"samples":[{"seq":1,"ts":5,"values":{"TS1":1,"TS2":2}},{"seq":2,"ts":6,"values":{"TS1":3,"TS2":4}}]}"#,
        &channels(),
    )
    .unwrap();
    assert_eq!(s.len(), 2);
    assert_eq!(s[1].values, vec![3.0, 4.0]);
}

#[test]
fn a_payload_never_names_its_device() {
    // Identity is the topic's; a payload claiming one is refused, on every path alike.
    for payload in [
        r#"{"device":"other","seq":1,"ts":5,"values":{"TS1":1,"TS2":2}}"#,
        r#"{"samples":[{"seq":1,"ts":5,"values":{"TS1":1,"TS2":2}}],"device":"other"}"#,
        r#"{"received_at":1,"seq":1,"ts":5,"values":{"TS1":1,"TS2":2}}"#,
        r#"{"payload":"e30=","seq":1,"ts":5,"values":{"TS1":1,"TS2":2}}"#,
    ] {
        let e = err(payload);
        assert_eq!(e.code(), "unknown_field", "{payload}");
    }
}

#[test]
fn duplicate_keys_are_rejected_wherever_they_are() {
    let ok_values = r#"{"TS1":1,"TS2":2}"#;
    let cases = [
        (
            format!(r#"{{"seq":1,"seq":2,"ts":5,"values":{ok_values}}}"#),
            "seq",
        ),
        (
            format!(r#"{{"seq":1,"ts":5,"ts":5,"values":{ok_values}}}"#),
            "ts",
        ),
        (
            format!(r#"{{"seq":1,"ts":5,"values":{ok_values},"values":{ok_values}}}"#),
            "values",
        ),
        (
            format!(r#"{{"samples":[{{"seq":1,"ts":5,"values":{ok_values}}}],"samples":[]}}"#),
            "samples",
        ),
        (
            format!(r#"{{"samples":[{{"seq":1,"ts":5,"seq":9,"values":{ok_values}}}]}}"#),
            "samples[0].seq",
        ),
    ];
    for (payload, field) in &cases {
        let e = err(payload);
        assert_eq!(
            (e.code(), e.field.as_str()),
            ("duplicate_key", *field),
            "{payload}"
        );
    }
    // A channel twice has its own, older code.
    let e = err(r#"{"seq":1,"ts":5,"values":{"TS1":1,"TS2":2,"TS2":3}}"#);
    assert_eq!(e.code(), "repeated_channel");
}

#[test]
fn keys_that_look_like_error_text_change_nothing() {
    // Codes and fields are data: text a device puts in a key is quoted, never interpreted.
    for key in [
        "x|expected a number",
        "@seq|expected an integer",
        "|unknown field",
        "samples|too many samples",
        ", expected @ts|expected a number",
    ] {
        let escaped = serde_json::to_string(key).unwrap();
        let e = err(&format!(
            r#"{{"seq":1,"ts":5,"values":{{"TS1":1,"TS2":2}},{escaped}:1}}"#
        ));
        assert_eq!(
            (e.code(), e.field.as_str()),
            ("unknown_field", key),
            "{key}"
        );
        assert_eq!(e.reason, Reason::UnknownField);
        let e = err(&format!(
            r#"{{"seq":1,"ts":5,"values":{{"TS1":1,"TS2":2,{escaped}:1}}}}"#
        ));
        assert_eq!(e.code(), "unknown_channel", "{key}");
        assert_eq!(e.field, format!("values.{key}"));
        let e = err(&format!(
            r#"{{"samples":[{{"seq":1,"ts":5,"values":{{"TS1":1,"TS2":2}},{escaped}:"x"}}]}}"#
        ));
        assert_eq!(e.code(), "unknown_field", "{key}");
        assert_eq!(e.field, format!("samples[0].{key}"));
    }
    // The empty key is named, not an empty field (found by `make fuzz`).
    let e = err(r#"{"seq":1,"ts":5,"values":{"TS1":1,"TS2":2},"":1}"#);
    assert_eq!((e.code(), e.field.as_str()), ("unknown_field", "\"\""));
    // A long key is quoted, not carried whole.
    let long = "k".repeat(10_000);
    let e = err(&format!(
        r#"{{"seq":1,"ts":5,"values":{{"TS1":1,"TS2":2}},"{long}":1}}"#
    ));
    assert!(
        e.field.chars().count() <= MAX_KEY_IN_FIELD + 1,
        "{}",
        e.field.len()
    );
    assert!(e.to_string().len() < 200);
}

#[test]
fn errors_name_field_and_reason() {
    let e = err(r#"{"seq": 1, "ts": 2, "values": {"TS1": 1}}"#);
    assert_eq!(e.field, "values");
    assert_eq!(e.reason, Reason::MissingChannel("TS2".into()));

    let e = err(r#"{"seq": 1, "ts": 2, "values": {"TS1": 1, "TS2": 2, "TS9": 3}}"#);
    assert_eq!(e.field, "values.TS9");
    assert!(matches!(e.reason, Reason::UnknownChannel(..)));

    let e = err(r#"{"seq": -4, "ts": 2, "values": {"TS1": 1, "TS2": 2}}"#);
    assert_eq!((e.field.as_str(), e.reason), ("seq", Reason::Negative));

    let e = err(r#"{"seq": 1, "values": {"TS1": 1, "TS2": 2}}"#);
    assert_eq!((e.field.as_str(), e.reason), ("ts", Reason::Missing));

    let e = err(
        r#"{"samples":[{"seq":1,"ts":1,"values":{"TS1":1,"TS2":2}},{"seq":2,"ts":1,"values":{"TS1":"x","TS2":2}}]}"#,
    );
    assert_eq!(e.field, "samples[1].values.TS1");
    assert_eq!(e.reason, Reason::WrongType("a number"));

    // Every kind of problem inside a batch names the element it is in.
    let ok = r#"{"seq":1,"ts":1,"values":{"TS1":1,"TS2":2}}"#;
    let e = err(&format!(
        r#"{{"samples":[{ok},{ok},{{"seq":3,"ts":1,"colour":1}}]}}"#
    ));
    assert_eq!(e.field, "samples[2].colour");
    let e = err(&format!(
        r#"{{"samples":[{ok},{{"ts":1,"values":{{"TS1":1,"TS2":2}}}}]}}"#
    ));
    assert_eq!(
        (e.field.as_str(), e.reason),
        ("samples[1].seq", Reason::Missing)
    );
    let e = err(&format!(
        r#"{{"samples":[{ok},{{"seq":2,"ts":1,"values":{{"TS1":1}}}}]}}"#
    ));
    assert_eq!(e.field, "samples[1].values");
    assert!(matches!(e.reason, Reason::MissingChannel(ref c) if c == "TS2"));
    let e = err(r#"{"samples":[{"seq":1,"ts":1,"values":[1,2]}]}"#);
    assert_eq!(e.field, "samples[0].values");
    let e = err(r#"{"samples":[{"seq":1,"ts":1,"values":{"TS1":1,"TS2":2}}, 7]}"#);
    assert_eq!(e.field, "samples[1]");

    let e = err(r#"{"seq": 1, "ts": 2, "values": {"TS1": 1e39, "TS2": 2}}"#);
    assert_eq!(
        (e.field.as_str(), e.reason),
        ("values.TS1", Reason::NotFinite)
    );

    let e = err(
        r#"{"samples":[{"seq":3,"ts":1,"values":{"TS1":1,"TS2":2}},{"seq":3,"ts":1,"values":{"TS1":1,"TS2":2}}]}"#,
    );
    assert_eq!(e.reason, Reason::DuplicateSeq(3));

    let e = err(r#"{"seq": 1.5, "ts": 2, "values": {"TS1": 1, "TS2": 2}}"#);
    assert_eq!(e.field, "seq");

    let e = err(r#"{"seq": 1, "ts": 2, "values": {"TS1": 1, "TS2": 2}, "extra": 1}"#);
    assert_eq!(
        (e.field.as_str(), e.reason),
        ("extra", Reason::UnknownField)
    );

    let e = err(r#"{"samples": []}"#);
    assert_eq!(e.reason, Reason::EmptyBatch);

    let e = err(r#"{"seq": 1, "ts": 2, "values": {"TS1": 1, "TS2": 2"#);
    assert_eq!(e.code(), "invalid_json");

    let e = err(r#"[1,2]"#);
    assert_eq!(e.field, "$");

    let e = err(r#"{"seq": 9007199254740993, "ts": 2, "values": {"TS1": 1, "TS2": 2}}"#);
    assert_eq!(e.reason, Reason::TooLarge);

    let e = err(r#"{"seq": 1, "ts": 2, "values": {"TS1": 1, "TS1": 2, "TS2": 3}}"#);
    assert_eq!(
        (e.field.as_str(), e.reason),
        ("values.TS1", Reason::RepeatedChannel)
    );
}

#[test]
fn rejects_oversize_and_overlong_batches() {
    let big = vec![b' '; MAX_PAYLOAD_BYTES + 1];
    assert!(matches!(
        parse_message(&big, &channels()).unwrap_err().reason,
        Reason::Oversize(_)
    ));
    let one = vec!["A".to_string()];
    let samples: Vec<Sample> = (0..=MAX_SAMPLES_PER_MESSAGE as u64)
        .map(|i| Sample {
            seq: i,
            ts: 0,
            values: vec![0.0],
        })
        .collect();
    let payload = encode_batch(&samples, &one);
    assert!(payload.len() < MAX_PAYLOAD_BYTES);
    let e = parse_message(&payload, &one).unwrap_err();
    assert_eq!(e.code(), "too_many_samples");
}

#[test]
fn encode_round_trips() {
    let samples = vec![
        Sample {
            seq: 1,
            ts: 2,
            values: vec![35.57, -0.125],
        },
        Sample {
            seq: 2,
            ts: 3,
            values: vec![1e-7, 3.0],
        },
    ];
    assert_eq!(
        parse_message(&encode_batch(&samples, &channels()), &channels()).unwrap(),
        samples
    );
    assert_eq!(
        parse_message(&encode_sample(&samples[0], &channels()), &channels()).unwrap(),
        samples[..1]
    );
}

#[test]
fn device_ids_come_from_topics() {
    assert_eq!(
        DeviceId::from_topic("dt/vigil/rig-7/telemetry")
            .unwrap()
            .as_str(),
        "rig-7"
    );
    assert!(DeviceId::from_topic("dt/vigil/rig-7/condition").is_err());
    assert!(DeviceId::from_topic("dt/vigil/a/b/telemetry").is_err());
    assert!(DeviceId::new("bad name").is_err());
    assert!(DeviceId::new("").is_err());
}
