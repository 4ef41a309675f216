//! The evaluation protocol on a classification task: `vigil eval` scores each contiguous fold
//! with the model trained without it, and reports every fold, the worst of them and the mean;
//! the folds partition the items.

use std::path::PathBuf;

use vigil_eval::options::{EvalArgs, Task};

#[tokio::test]
async fn classification_tasks_report_every_fold_and_the_worst() {
    let args = EvalArgs {
        task: Task::Hydraulic,
        data: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets/hydraulic"),
        target: Some("pump".into()),
        models: None,
    };
    let j = vigil_eval::tasks::hydraulic::eval(&args).await.unwrap();
    let folds = j["folds"].as_array().unwrap();
    assert_eq!(folds.len(), vigil_eval::folds::models::FOLDS, "{j}");
    let n: u64 = folds.iter().map(|f| f["n"].as_u64().unwrap()).sum();
    assert_eq!(
        n,
        j["n"].as_u64().unwrap(),
        "the folds partition the cycles"
    );
    let accuracies: Vec<f64> = folds
        .iter()
        .map(|f| f["accuracy"].as_f64().unwrap())
        .collect();
    let worst = j["worst_fold"]["accuracy"].as_f64().unwrap();
    assert!(
        accuracies.iter().all(|&a| a >= worst),
        "{accuracies:?} vs {worst}"
    );
    assert!(accuracies.contains(&worst));
    let mean = j["mean"]["accuracy"].as_f64().unwrap();
    assert!((mean - accuracies.iter().sum::<f64>() / accuracies.len() as f64).abs() < 1e-12);
    // Every class appears in every fold (blocks are cut per class).
    for f in folds {
        assert_eq!(f["per_class"].as_object().unwrap().len(), 3, "{f}");
    }
}
