//! Rust (ort) and Python (onnxruntime) give the same probabilities on the committed fixture
//! windows: the fixture file was written by `models/fixtures/make_fixtures.py`.

use std::path::PathBuf;

use serde::Deserialize;
use vigil_core::profile::OnnxOutput;
use vigil_core::transform::Matrix;
use vigil_onnx::OnnxScorer;

#[derive(Deserialize)]
struct Fixtures {
    model: String,
    classes: Vec<String>,
    windows: Vec<FixtureWindow>,
}

#[derive(Deserialize)]
struct FixtureWindow {
    cycle: usize,
    label: String,
    window: Vec<Vec<f32>>,
    probabilities: Vec<f32>,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn scorer(fixtures: &Fixtures) -> OnnxScorer {
    if std::env::var_os("ORT_DYLIB_PATH").is_none() {
        std::env::set_var(
            "ORT_DYLIB_PATH",
            repo().join(".tools/lib/libonnxruntime.so"),
        );
    }
    OnnxScorer::load(
        &repo().join("models").join(&fixtures.model),
        fixtures.classes.clone(),
        "window",
        "probabilities",
        OnnxOutput::Probabilities,
    )
    .expect("model loads (run `make setup` for libonnxruntime)")
}

fn fixtures() -> Fixtures {
    let text =
        std::fs::read_to_string(repo().join("models/fixtures/hydraulic-cooler-windows.json"))
            .unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn rust_matches_python_onnxruntime_within_1e_5() {
    let fixtures = fixtures();
    let scorer = scorer(&fixtures);
    assert!(fixtures.windows.len() >= 12);
    let mut labels_seen = std::collections::BTreeSet::new();
    for w in &fixtures.windows {
        let data: Vec<f32> = w.window.iter().flatten().copied().collect();
        let m = Matrix::new(w.window.len(), 4, data);
        let out = scorer.predict(&[&m]).unwrap().remove(0);
        assert_eq!(out.len(), fixtures.classes.len());
        for (rust, python) in out.iter().zip(&w.probabilities) {
            assert!(
                (rust - python).abs() <= 1e-5,
                "cycle {}: rust {rust} vs python {python}",
                w.cycle
            );
        }
        let score = scorer.interpret(out).unwrap();
        assert_eq!(score.label, w.label, "cycle {}", w.cycle);
        assert!(score.model_version.starts_with("hydraulic-cooler@"));
        labels_seen.insert(w.label.clone());
    }
    assert_eq!(labels_seen.len(), 3, "fixtures cover every class");
}

/// The Lambda builds its sessions with basic graph optimisation only (less resident memory):
/// the same probabilities as Python's fully optimised session, within the same 1e-5.
#[test]
fn basic_graph_optimisation_matches_python_within_1e_5() {
    let fixtures = fixtures();
    drop(scorer(&fixtures)); // ORT_DYLIB_PATH
    let path = repo().join("models").join(&fixtures.model);
    let basic = OnnxScorer::from_bytes_with(
        &std::fs::read(&path).unwrap(),
        &path.display().to_string(),
        fixtures.classes.clone(),
        "window",
        "probabilities",
        OnnxOutput::Probabilities,
        vigil_onnx::GraphOptimization::Basic,
    )
    .unwrap();
    for w in &fixtures.windows {
        let data: Vec<f32> = w.window.iter().flatten().copied().collect();
        let out = basic
            .predict(&[&Matrix::new(w.window.len(), 4, data)])
            .unwrap()
            .remove(0);
        for (rust, python) in out.iter().zip(&w.probabilities) {
            assert!(
                (rust - python).abs() <= 1e-5,
                "cycle {}: rust {rust} vs python {python}",
                w.cycle
            );
        }
        assert_eq!(basic.interpret(out).unwrap().label, w.label);
    }
}

#[test]
fn batched_inference_equals_one_by_one() {
    let fixtures = fixtures();
    let scorer = scorer(&fixtures);
    let mats: Vec<Matrix> = fixtures
        .windows
        .iter()
        .map(|w| Matrix::new(60, 4, w.window.iter().flatten().copied().collect()))
        .collect();
    let refs: Vec<&Matrix> = mats.iter().collect();
    let batched = scorer.predict(&refs).unwrap();
    for (m, b) in mats.iter().zip(&batched) {
        let single = scorer.predict(&[m]).unwrap().remove(0);
        for (x, y) in single.iter().zip(b) {
            assert!((x - y).abs() <= 1e-6);
        }
    }
}

#[test]
fn wrong_names_and_shapes_are_clear_errors() {
    let fixtures = fixtures();
    std::env::set_var(
        "ORT_DYLIB_PATH",
        std::env::var_os("ORT_DYLIB_PATH")
            .unwrap_or_else(|| repo().join(".tools/lib/libonnxruntime.so").into()),
    );
    let path = repo().join("models").join(&fixtures.model);
    let e = OnnxScorer::load(
        &path,
        fixtures.classes.clone(),
        "nope",
        "probabilities",
        OnnxOutput::Probabilities,
    )
    .unwrap_err();
    assert!(e.to_string().contains("no input named \"nope\""), "{e}");
    let scorer = scorer(&fixtures);
    let bad = Matrix::new(30, 4, vec![30.0; 120]);
    let e = scorer.predict(&[&bad]).unwrap_err();
    assert!(e.to_string().contains("hydraulic-cooler"), "{e}");
}

/// Contributions by occlusion: shares of the four channels sum to 1, the verdict is the one the
/// window alone gives, and a channel that is flat already (its own mean) can explain nothing.
#[test]
fn occlusion_contributions_explain_the_verdict() {
    use vigil_core::scorer::Scorer;
    let fixtures = fixtures();
    let scorer = scorer(&fixtures);
    let mut explained = 0;
    for w in &fixtures.windows {
        let rows = w.window.len();
        let cols = w.window[0].len();
        let mut data: Vec<f32> = w.window.iter().flatten().copied().collect();
        let input = Matrix::new(rows, cols, data.clone());
        let score = futures_executor::block_on(scorer.score(&input, &mut None)).unwrap();
        let alone = scorer.predict(&[&input]).unwrap().remove(0);
        assert_eq!(score.probabilities, alone, "cycle {}", w.cycle);
        if score.contributions.is_empty() {
            continue;
        }
        explained += 1;
        assert_eq!(score.contributions.len(), cols);
        let total: f64 = score.contributions.iter().map(|c| c.share).sum();
        assert!((total - 1.0).abs() < 1e-4, "cycle {}: {total}", w.cycle);

        // Flatten channel 0 to its mean: occluding it changes nothing, so it gets no share.
        let mean = (0..rows).map(|r| data[r * cols]).sum::<f32>() / rows as f32;
        for r in 0..rows {
            data[r * cols] = mean;
        }
        let flat = Matrix::new(rows, cols, data);
        let s = futures_executor::block_on(scorer.score(&flat, &mut None)).unwrap();
        if let Some(first) = s.contributions.first() {
            assert!(
                first.share.abs() < 1e-6,
                "cycle {}: {:?}",
                w.cycle,
                s.contributions
            );
        }
    }
    assert!(explained > 0, "no window was explained");
}
