//! The device agent (`vigil device`): sensor sources, the on-disk queue that loses nothing, the
//! MQTT / mutual-TLS session with backoff, and the condition display. What a device image
//! carries: must not depend on the edge runtime (rumqttd, its redb store), ONNX Runtime or AWS.

pub mod agent;
pub mod queue;
pub mod shadow;
pub mod source;

pub use agent::*;
