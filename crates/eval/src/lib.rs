//! Evaluations on the public datasets and the feature export for training: each dataset through
//! the full `vigil_core::Pipeline` with real ONNX Runtime, scored against its truth. Must not
//! depend on MQTT, the edge runtime, the device agent or AWS.

pub mod confusion;
pub mod eval;
pub mod features;
pub mod options;
pub mod tasks;
