//! `vigil eval cwru` on the real CWRU recordings, through the pipeline and ONNX Runtime:
//! ≥ 99 % of fault frames detected at ≤ 1 % false positives on the held-out healthy frames.

use std::path::PathBuf;

use vigil_eval::options::{EvalArgs, Task};

fn data(task: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/datasets")
        .join(task)
}

#[tokio::test(flavor = "multi_thread")]
async fn cwru_detects_faults_at_low_false_positive_rate() {
    let args = EvalArgs {
        task: Task::Cwru,
        data: data("cwru"),
        target: None,
        models: None,
    };
    let j = vigil_eval::tasks::cwru::eval(&args).await.unwrap();
    assert!(j["frames_normal"].as_u64().unwrap() >= 40, "{j}");
    assert!(j["frames_fault"].as_u64().unwrap() >= 700, "{j}");
    assert!(j["detection_rate"].as_f64().unwrap() >= 0.99, "{j}");
    assert!(j["false_positive_rate"].as_f64().unwrap() <= 0.01, "{j}");
}
