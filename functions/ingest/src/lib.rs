//! The ingest Lambda: IoT rule events (direct), SQS and Kinesis batches through the Vigil
//! pipeline, with partial batch failure reporting, structured JSON logs and EMF metrics.
//!
//! `main.rs` is wiring only: [`config::Config::from_env`], [`wiring::build`], then
//! [`handler::handle`] for every event.

pub mod alarm;
pub mod config;
pub mod dead_letters;
pub mod event;
pub mod handler;
pub mod metrics;
pub mod wiring;

pub use config::Config;
pub use handler::{handle, handle_detailed, App, Handled, HandlerError, Invocation, RecordOutcome};
pub use wiring::{build, sdk_timeouts, Runtime};

/// JSON logs on stdout (CloudWatch Logs), level from `RUST_LOG` (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .without_time()
        .init();
}
