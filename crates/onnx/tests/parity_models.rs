//! Rust (ort) and Python (onnxruntime) give the same probabilities on the fixtures the training
//! scripts write next to the models they export (`models/train/rmg941.py`,
//! `models/train/hydraulic_health.py`): the rmg941 graph computes its features from the FFT bands
//! itself, the hydraulic graphs carry their calibration in the weights.

use std::path::PathBuf;

use serde::Deserialize;
use vigil_core::profile::OnnxOutput;
use vigil_core::scorer::argmax_label;
use vigil_core::transform::Matrix;
use vigil_onnx::OnnxScorer;

#[derive(Deserialize)]
struct Fixtures {
    model: String,
    classes: Vec<String>,
    input: String,
    output: String,
    /// Rows and columns of one window's input matrix.
    shape: [usize; 2],
    windows: Vec<FixtureWindow>,
}

#[derive(Deserialize)]
struct FixtureWindow {
    index: usize,
    input: Vec<f32>,
    probabilities: Vec<f32>,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn check(fixture: &str, classes: usize) {
    if std::env::var_os("ORT_DYLIB_PATH").is_none() {
        std::env::set_var(
            "ORT_DYLIB_PATH",
            repo().join(".tools/lib/libonnxruntime.so"),
        );
    }
    let text = std::fs::read_to_string(repo().join("models/fixtures").join(fixture)).unwrap();
    let f: Fixtures = serde_json::from_str(&text).unwrap();
    let scorer = OnnxScorer::load(
        &repo().join("models").join(&f.model),
        f.classes.clone(),
        &f.input,
        &f.output,
        OnnxOutput::Probabilities,
    )
    .expect("model loads (run `make setup` for libonnxruntime)");
    assert_eq!(f.classes.len(), classes);
    assert!(f.windows.len() >= 2 * classes, "{fixture}: too few windows");
    let [rows, cols] = f.shape;
    let matrices: Vec<Matrix> = f
        .windows
        .iter()
        .map(|w| Matrix::new(rows, cols, w.input.clone()))
        .collect();
    // One batch, as the pipeline scores them.
    let refs: Vec<&Matrix> = matrices.iter().collect();
    let outputs = scorer.predict(&refs).unwrap();
    for (w, out) in f.windows.iter().zip(outputs) {
        assert_eq!(out.len(), classes);
        for (rust, python) in out.iter().zip(&w.probabilities) {
            assert!(
                (rust - python).abs() <= 1e-5,
                "{fixture} window {}: rust {rust} vs python {python}",
                w.index
            );
        }
        assert_eq!(
            argmax_label(&f.classes, &out),
            argmax_label(&f.classes, &w.probabilities),
            "{fixture} window {}",
            w.index
        );
    }
}

#[test]
fn rmg941_rust_matches_python_onnxruntime() {
    check("rmg941-frames.json", 3);
}

#[test]
fn hydraulic_health_rust_matches_python_onnxruntime() {
    check("hydraulic-valve-windows.json", 4);
    check("hydraulic-pump-windows.json", 3);
    check("hydraulic-accumulator-windows.json", 4);
}
