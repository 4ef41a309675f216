//! The ingest Lambda's entry point: wiring only.

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::Value;
use vigil_ingest::{handle, Config, HandlerError, Invocation};

#[derive(Debug)]
struct Failure(HandlerError);

impl From<Failure> for Diagnostic {
    fn from(f: Failure) -> Self {
        Diagnostic {
            error_type: f.0.error_type().to_string(),
            error_message: f.0.to_string(),
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    vigil_ingest::init_logging();
    let config = Config::from_env().inspect_err(|e| tracing::error!(error = %e, "cold start"))?;
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(vigil_ingest::sdk_timeouts())
        .load()
        .await;
    let function =
        std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "vigil-ingest".into());
    let runtime = vigil_ingest::build(config, &sdk, &function)
        .await
        .inspect_err(|e| tracing::error!(error = %e, "cold start"))?;
    tracing::info!(profiles = ?runtime.profiles.keys().collect::<Vec<_>>(), models = %runtime.models_dir.display(), "ready");
    let app = runtime.app();
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let app = &app;
        async move {
            let inv = Invocation {
                request_id: event.context.request_id.clone(),
                deadline_ms: Some(event.context.deadline),
                now_ms: None,
            };
            handle(app, &event.payload, &inv).await.map_err(Failure)
        }
    }))
    .await
    .map_err(|e| anyhow::anyhow!(e))
}
