//! The ingest Lambda's event parser, compiled from its own source file: the `event` target
//! fuzzes exactly the code the Lambda runs, without building the AWS SDK under the fuzzer.

#[path = "../../functions/ingest/src/event.rs"]
pub mod event;

/// The edge gateway's MQTT packet framer, compiled from its own source file: the `framer`
/// target fuzzes the code the gateway runs, without building the edge (rumqttd, redb, TLS).
#[path = "../../crates/edge/src/mqtt_frames.rs"]
pub mod mqtt_frames;
