//! `vigil eval rmg941` on the real fan IMU frames, through the pipeline and ONNX Runtime, under
//! contiguous 5-fold by blocks of each class (fold models, models/rmg941.md): the worst fold
//! meets the bar of issue 13, ≥ 98 % accuracy and ≥ 95 % error recall.

use std::path::PathBuf;

use vigil_eval::options::{EvalArgs, Task};

fn data(task: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/datasets")
        .join(task)
}

#[tokio::test(flavor = "multi_thread")]
async fn rmg941_worst_fold_meets_the_bar() {
    let args = EvalArgs {
        task: Task::Rmg941,
        data: data("rmg941"),
        target: None,
        models: None,
    };
    let j = vigil_eval::tasks::rmg941::eval(&args).await.unwrap();
    assert_eq!(j["n"].as_u64(), Some(320), "{j}");
    let folds = j["folds"].as_array().unwrap();
    assert_eq!(folds.len(), 5, "{j}");
    assert_eq!(
        folds.iter().map(|f| f["n"].as_u64().unwrap()).sum::<u64>(),
        320
    );
    for f in folds {
        // Every fold holds every class (blocks of each class).
        for c in ["0", "1", "2"] {
            assert!(f["per_class"][c].is_number(), "{f}");
        }
    }
    assert!(j["worst_fold"]["accuracy"].as_f64().unwrap() >= 0.98, "{j}");
    assert!(
        j["worst_fold"]["error_recall"].as_f64().unwrap() >= 0.95,
        "{j}"
    );
    assert!(j["mean"]["accuracy"].as_f64().unwrap() >= 0.98, "{j}");
}
