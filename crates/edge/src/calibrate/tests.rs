use super::*;

const PROFILES: &[(&str, &str)] = &[
    (
        "cal",
        r#"name = "cal"
channels = ["a", "b"]
sample_rate_hz = 2.0
[window]
size = 2
hop = 2
[scorer]
kind = "zscore"
warmup = 3
[alert]
unhealthy = ["anomaly"]
"#,
    ),
    (
        "clf",
        r#"name = "clf"
channels = ["a"]
sample_rate_hz = 1.0
[window]
size = 2
hop = 2
[scorer]
kind = "onnx"
model = "m.onnx"
labels = ["ok", "bad"]
[alert]
unhealthy = ["bad"]
"#,
    ),
];

fn models() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("profiles")).unwrap();
    for (name, text) in PROFILES {
        std::fs::write(dir.path().join(format!("profiles/{name}.toml")), text).unwrap();
    }
    dir
}

fn request(models: &Path, file: &Path, to: &Path) -> Request {
    Request {
        profile: load_profile(models, "cal").unwrap(),
        device: DeviceId::new("d-1").unwrap(),
        source: Source::File(file.to_path_buf()),
        last: None,
        include_flagged: false,
        keep_learning: false,
        target: Target::Dir(to.to_path_buf()),
        now_ms: 1_700_000_000_000,
    }
}

#[test]
fn profiles_without_a_baseline_and_unknown_ones_are_refused() {
    let m = models();
    let e = load_profile(m.path(), "clf").unwrap_err();
    assert!(
        matches!(
            e,
            CalibrateError::Calibration(CalibrationError::NoBaseline { .. })
        ),
        "{e}"
    );
    let e = load_profile(m.path(), "nope").unwrap_err();
    assert!(e.to_string().contains("unknown profile \"nope\""), "{e}");
    assert!(e.to_string().contains("cal, clf"), "{e}");
}

#[test]
fn csv_and_json_lines_give_the_same_samples() {
    let m = models();
    let p = load_profile(m.path(), "cal").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("d.csv");
    std::fs::write(&csv, "b,a\n2,1\n\n4,3.5\n").unwrap();
    let json = dir.path().join("d.jsonl");
    std::fs::write(
        &json,
        "{\"seq\":0,\"ts\":0,\"values\":{\"a\":1,\"b\":2}}\n\n{\"samples\":[{\"seq\":1,\"ts\":500,\"values\":{\"a\":3.5,\"b\":4}}]}\n",
    )
    .unwrap();
    let a = read_samples(&csv, &p).unwrap();
    assert_eq!(a, read_samples(&json, &p).unwrap());
    assert_eq!(a[1].values, vec![3.5, 4.0]);
    assert_eq!(a[1].ts, 500);

    for (text, needle) in [
        ("a,b\n1,NaN\n", "not a finite number"),
        ("a,b\n1,inf\n", "not a finite number"),
        ("a,b\n1\n", "1 cells"),
        ("a,c\n1,2\n", "unknown column \"c\""),
        ("a\n1\n", "no column for channel \"b\""),
        ("seq,a,b\n-1,1,2\n", "seq \"-1\""),
    ] {
        std::fs::write(&csv, text).unwrap();
        let e = read_samples(&csv, &p).unwrap_err().to_string();
        assert!(e.contains(needle), "{text:?}: {e}");
    }
    std::fs::write(&json, "{\"seq\":0,\"ts\":0,\"values\":{\"a\":1}}\n").unwrap();
    let e = read_samples(&json, &p).unwrap_err().to_string();
    assert!(
        e.contains("d.jsonl:1:") && e.contains("missing channel"),
        "{e}"
    );
    std::fs::write(&json, "\n").unwrap();
    assert!(matches!(
        read_samples(&json, &p),
        Err(CalibrateError::Empty(_))
    ));
}

#[tokio::test]
async fn fits_publishes_atomically_and_refuses_too_little_data() {
    let m = models();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d.csv");
    // Window means of a: 1, 2, 3, 4 (b: 10 each) and a trailing half window.
    std::fs::write(
        &data,
        "a,b\n0.5,10\n1.5,10\n1.5,10\n2.5,10\n2.5,10\n3.5,10\n3.5,10\n4.5,10\n9,9\n",
    )
    .unwrap();
    let state = dir.path().join("state");
    let mut req = request(m.path(), &data, &state);
    let r = calibrate(&req, None).await.unwrap();
    assert_eq!((r.windows, r.first_window, r.last_window), (4, 0, 3));
    assert_eq!(r.skipped, 1, "{}", r.skipped_why);
    assert!((r.mean[0] - 2.5).abs() < 1e-9 && (r.mean[1] - 10.0).abs() < 1e-9);
    assert!((r.std[0] - (5.0f64 / 3.0).sqrt()).abs() < 1e-9);
    assert!(r.frozen && r.version.starts_with("calib-20231114T221320Z-"));
    let path = state.join("baselines/cal/d-1.json");
    assert_eq!(r.published.as_deref(), Some(path.to_str().unwrap()));
    let stored: vigil_core::scorer::Baseline =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(stored, r.fitted.baseline);
    // No temporary file left behind.
    let names: Vec<String> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["d-1.json"]);

    req.last = Some(2);
    let e = calibrate(&req, None).await.unwrap_err();
    assert!(
        matches!(
            e,
            CalibrateError::Calibration(CalibrationError::TooFewWindows { got: 2, min: 3, .. })
        ),
        "{e}"
    );
}

#[test]
fn locations_parse_with_default_prefixes() {
    assert_eq!(
        S3Location::parse("s3://b", "windows").unwrap(),
        S3Location {
            bucket: "b".into(),
            prefix: "windows".into()
        }
    );
    assert_eq!(
        S3Location::parse("s3://b/x/y/", "windows").unwrap().prefix,
        "x/y"
    );
    assert!(S3Location::parse("b/x", "windows").is_err());
    assert!(S3Location::parse("s3:///x", "windows").is_err());
    assert!(matches!(
        Target::parse(Some("/tmp/state")).unwrap(),
        Target::Dir(_)
    ));
    assert!(valid_date("2026-01-31") && !valid_date("2026-1-31"));
}
