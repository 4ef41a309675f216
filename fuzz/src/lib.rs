//! The ingest Lambda's event parser, compiled from its own source file: the `event` target
//! fuzzes exactly the code the Lambda runs, without building the AWS SDK under the fuzzer.

#[path = "../../functions/ingest/src/event.rs"]
pub mod event;
