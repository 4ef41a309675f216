//! Evaluation task `cwru` (being built).

use crate::eval::EvalArgs;

pub async fn eval(_args: &EvalArgs) -> anyhow::Result<serde_json::Value> {
    anyhow::bail!("vigil eval cwru is not available in this build yet")
}
