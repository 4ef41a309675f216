//! `vigil eval hydraulic --target valve|pump|accumulator` on the real rig, through the pipeline and
//! ONNX Runtime, on the models' contiguous validation block only: the last 20 % of the cycles
//! (rows 1415-1768 of 1769), copied into a temporary directory in the dataset's own format.
//! The bars sit slightly under the figures in models/hydraulic-health.md.

use std::path::{Path, PathBuf};
use std::time::Instant;

use vigil_eval::options::{EvalArgs, Task};

const FILES: [&str; 9] = [
    "TS1", "TS2", "TS3", "TS4", "CE", "CP", "SE", "VS1", "profile",
];

fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets/hydraulic")
}

/// Writes the validation rows (the last 20 %) of every file into `dir`; returns their count.
fn validation_copy(dir: &Path, files: &[&str]) -> usize {
    let mut count = 0;
    for name in files {
        let text = std::fs::read_to_string(data().join(format!("{name}.txt"))).unwrap();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let start = lines.len() * 4 / 5;
        let mut out = lines[start..].join("\n");
        out.push('\n');
        std::fs::write(dir.join(format!("{name}.txt")), out).unwrap();
        count = lines.len() - start;
    }
    count
}

fn args(dir: &Path, target: &str) -> EvalArgs {
    EvalArgs {
        task: Task::Hydraulic,
        data: dir.to_path_buf(),
        target: Some(target.to_string()),
        models: None,
    }
}

/// Runs the eval on the validation block and checks n, the accuracy and each class's bar.
async fn meets_the_bar(target: &str, accuracy: f64, per_class: &[(&str, f64)]) {
    let dir = tempfile::tempdir().unwrap();
    let rows = validation_copy(dir.path(), &FILES);
    assert_eq!(rows, 354);
    let j = vigil_eval::tasks::hydraulic::eval(&args(dir.path(), target))
        .await
        .unwrap();
    assert_eq!(j["n"].as_u64(), Some(rows as u64), "{j}");
    assert!(j["accuracy"].as_f64().unwrap() >= accuracy, "{target}: {j}");
    for (label, bar) in per_class {
        let got = j["per_class"][label].as_f64();
        assert!(got.is_some_and(|a| a >= *bar), "{target} {label}: {j}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn valve_meets_the_bar_on_the_contiguous_split() {
    // Measured 77.1 %: 100 → 99.1 %, 90 → 0 % (called 100), 80 and 73 → 100 %.
    meets_the_bar(
        "valve",
        0.76,
        &[("100", 0.97), ("90", 0.0), ("80", 0.97), ("73", 0.97)],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pump_meets_the_bar_on_the_contiguous_split() {
    // Measured 100 % in every class.
    meets_the_bar("pump", 0.99, &[("0", 0.98), ("1", 0.98), ("2", 0.98)]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn accumulator_meets_the_bar_on_the_contiguous_split() {
    // Measured 83.6 %: 130 → 100 %, 115 → 54.1 %, 100 → 94.1 %, 90 → 100 %.
    meets_the_bar(
        "accumulator",
        0.82,
        &[("130", 0.95), ("115", 0.50), ("100", 0.92), ("90", 0.97)],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_target_and_missing_channel_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = vigil_eval::tasks::hydraulic::eval(&args(dir.path(), "hose"))
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("unknown hydraulic target \"hose\""),
        "{err:#}"
    );
    // A directory without CE.txt: the error names the missing file.
    validation_copy(dir.path(), &["TS1", "TS2", "TS3", "TS4", "profile"]);
    let err = vigil_eval::tasks::hydraulic::eval(&args(dir.path(), "pump"))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("CE.txt"), "{err:#}");
}

/// Load time of each health model in ONNX Runtime (session creation, graph optimisation included).
/// Reported by `cargo test ... -- --nocapture`; the bar is loose (these are a few kB each).
#[test]
fn health_models_load_fast() {
    let models = vigil_datasets::models::models_dir(None);
    vigil_datasets::models::ensure_onnxruntime();
    for target in ["valve", "pump", "accumulator"] {
        let name = format!("hydraulic-{target}");
        let profile =
            vigil_core::Profile::load(&models.join(format!("profiles/{name}.toml"))).unwrap();
        let mut times = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            vigil_onnx::OnnxScorer::from_spec(&profile.scorer, &models).unwrap();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        eprintln!(
            "load {name}: {times:.2?} ms (first includes ORT environment init if not yet done)"
        );
        assert!(times[1..].iter().all(|ms| *ms < 500.0), "{name}: {times:?}");
    }
}
