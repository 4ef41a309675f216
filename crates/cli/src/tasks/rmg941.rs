//! Evaluation task `rmg941` (being built).

use crate::eval::EvalArgs;

pub async fn eval(_args: &EvalArgs) -> anyhow::Result<serde_json::Value> {
    anyhow::bail!("vigil eval rmg941 is not available in this build yet")
}
