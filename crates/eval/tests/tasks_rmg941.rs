//! `vigil eval rmg941` on the real fan IMU frames, through the pipeline and ONNX Runtime:
//! ≥ 98 % accuracy and ≥ 95 % error recall on the contiguous validation split.

use std::path::PathBuf;

use vigil_eval::options::{EvalArgs, Task};

fn data(task: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/datasets")
        .join(task)
}

#[tokio::test(flavor = "multi_thread")]
async fn rmg941_meets_the_bar_on_the_contiguous_split() {
    let args = EvalArgs {
        task: Task::Rmg941,
        data: data("rmg941"),
        target: None,
        models: None,
    };
    let j = vigil_eval::tasks::rmg941::eval(&args).await.unwrap();
    assert!(j["n"].as_u64().unwrap() >= 60, "{j}");
    assert!(j["accuracy"].as_f64().unwrap() >= 0.98, "{j}");
    assert!(j["error_recall"].as_f64().unwrap() >= 0.95, "{j}");
    for c in ["0", "1", "2"] {
        assert!(j["per_class"][c].is_number(), "{j}");
    }
}
