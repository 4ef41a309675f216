//! `vigil eval nab` on the real NAB series: the EWMA profile finds every labelled window with
//! at most 5 false alert episodes (the bar of the issue), and beats the z-score reference.

use std::path::PathBuf;

use vigil_eval::options::{EvalArgs, Task};

fn data(task: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/datasets")
        .join(task)
}

#[tokio::test]
async fn nab_ewma_finds_every_window_with_few_false_episodes() {
    let args = EvalArgs {
        task: Task::Nab,
        data: data("nab"),
        target: None,
        models: None,
    };
    let j = vigil_eval::tasks::nab::eval(&args).await.unwrap();
    assert_eq!(j["windows"], 4, "{j}");
    assert_eq!(j["windows_detected"], j["windows"], "{j}");
    assert!(j["false_episodes"].as_u64().unwrap() <= 5, "{j}");
    assert!(
        j["zscore"]["false_episodes"].as_u64().unwrap() > j["false_episodes"].as_u64().unwrap(),
        "{j}"
    );
}
