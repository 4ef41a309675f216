//! `vigil eval hydraulic --target valve|pump|accumulator` on the real rig, through the pipeline
//! and ONNX Runtime, under contiguous 5-fold by blocks of each class (fold models,
//! models/hydraulic-health.md). The bars sit at or slightly under the card's figures: pump and the
//! valve's recognisable classes hold; the accumulator does NOT meet issue 13's bar (≥ 90 %, every
//! class ≥ 80 % in the worst fold), which the card says; its test pins what it does reach so a
//! regression shows. The `uncertain` verdict (min_confidence) must buy accuracy for coverage.

use std::path::{Path, PathBuf};
use std::time::Instant;

use vigil_eval::options::{EvalArgs, Task};

fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets/hydraulic")
}

fn args(dir: &Path, target: &str) -> EvalArgs {
    EvalArgs {
        task: Task::Hydraulic,
        data: dir.to_path_buf(),
        target: Some(target.to_string()),
        models: None,
    }
}

async fn folds(target: &str) -> serde_json::Value {
    let j = vigil_eval::tasks::hydraulic::eval(&args(&data(), target))
        .await
        .unwrap();
    assert_eq!(j["n"].as_u64(), Some(1769), "{j}");
    assert_eq!(j["folds"].as_array().unwrap().len(), 5, "{j}");
    j
}

fn f(j: &serde_json::Value, path: &[&str]) -> f64 {
    path.iter()
        .fold(j, |v, k| &v[*k])
        .as_f64()
        .unwrap_or_else(|| panic!("{path:?} in {j}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn valve_folds_and_uncertain() {
    // Card: worst fold 70.1 %, mean 79.5 %; 80 % and 73 % recognised in every fold, 90 % not.
    let j = folds("valve").await;
    assert!(f(&j, &["worst_fold", "accuracy"]) >= 0.69, "{j}");
    assert!(f(&j, &["mean", "accuracy"]) >= 0.78, "{j}");
    for fold in j["folds"].as_array().unwrap() {
        assert!(f(fold, &["per_class", "73"]) >= 0.97, "{fold}");
        assert!(f(fold, &["per_class", "80"]) >= 0.9, "{fold}");
    }
    // min_confidence 0.9: about a third of the cycles keep a verdict, and those are ≥ 95 % right.
    assert_eq!(j["min_confidence"].as_f64(), Some(0.9f32 as f64), "{j}");
    let coverage = f(&j, &["coverage"]);
    assert!((0.25..0.5).contains(&coverage), "{j}");
    assert!(f(&j, &["covered_accuracy"]) >= 0.95, "{j}");
    assert!(
        f(&j, &["covered_accuracy"]) > f(&j, &["accuracy"]) + 0.1,
        "{j}"
    );
    assert!(j["uncertain"].as_u64().unwrap() > 0, "{j}");
}

#[tokio::test(flavor = "multi_thread")]
async fn pump_worst_fold_holds() {
    // Card: worst fold 96.6 %, every class ≥ 91.5 % in every fold; no min_confidence.
    let j = folds("pump").await;
    assert!(f(&j, &["worst_fold", "accuracy"]) >= 0.96, "{j}");
    assert!(f(&j, &["worst_fold", "class"]) >= 0.9, "{j}");
    assert_eq!(j["uncertain"].as_u64(), Some(0), "{j}");
}

#[tokio::test(flavor = "multi_thread")]
async fn accumulator_folds_and_uncertain() {
    // Card: worst fold 79.3 % (bar 90 % not met), worst class 51.6 %, mean 86.8 %;
    // min_confidence 0.8 keeps 83 % of the cycles at ≥ 90 % accuracy (pooled) and 74 % of the
    // worst fold at 80 %, which is what the `uncertain` verdict is for.
    let j = folds("accumulator").await;
    assert!(f(&j, &["worst_fold", "accuracy"]) >= 0.78, "{j}");
    assert!(f(&j, &["worst_fold", "class"]) >= 0.5, "{j}");
    assert!(f(&j, &["mean", "accuracy"]) >= 0.86, "{j}");
    assert!(f(&j, &["covered_accuracy"]) >= 0.9, "{j}");
    assert!(f(&j, &["coverage"]) >= 0.8, "{j}");
    assert!(f(&j, &["worst_fold", "covered_accuracy"]) >= 0.8, "{j}");
    assert!(f(&j, &["worst_fold", "coverage"]) >= 0.7, "{j}");
}

const FILES: [&str; 9] = [
    "TS1", "TS2", "TS3", "TS4", "CE", "CP", "SE", "VS1", "profile",
];

/// Copies the first `rows` lines of each of `files` into `dir`.
fn partial_copy(dir: &Path, files: &[&str], rows: usize) {
    for name in files {
        let text = std::fs::read_to_string(data().join(format!("{name}.txt"))).unwrap();
        let mut out: Vec<&str> = text.lines().take(rows).collect();
        out.push("");
        std::fs::write(dir.join(format!("{name}.txt")), out.join("\n")).unwrap();
    }
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
    partial_copy(
        dir.path(),
        &FILES[..4]
            .iter()
            .chain(&FILES[8..])
            .copied()
            .collect::<Vec<_>>(),
        20,
    );
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
